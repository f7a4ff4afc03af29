// JobUplink: the link between one training job and the coordinator. The
// trainer's thread hands it curve points and progress (it is the job's
// TrainerListener); a thread of its own sends heartbeats that carry the
// latest progress, and the queued points in batches, in the order they came,
// retrying with backoff while the coordinator is away. A heartbeat's answer
// tells it when the job was cancelled or its lease lost; the trainer then
// stops at its next step.
//
// Every point queued is acknowledged once, unless the lease is lost (then the
// job's points go with it) or the worker stops and the coordinator does not
// answer within the stop's grace. Before a checkpoint is uploaded every point
// queued before it is acknowledged, so a job resumed from it misses none.
#ifndef ABLATE_WORKER_JOB_UPLINK_H_
#define ABLATE_WORKER_JOB_UPLINK_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <thread>

#include "common/mutex.h"
#include "common/status.h"
#include "proto/ablate.pb.h"
#include "worker/coordinator_client.h"
#include "worker/stop_state.h"
#include "worker/trainer.h"

namespace ablate {

// Why a job's training stopped early, as the coordinator said.
enum class StopReason { kNone, kCancelled, kLeaseLost };

class JobUplink : public TrainerListener {
 public:
  // Starts the uplink's thread for the job `lease` leased, with heartbeats
  // every lease.heartbeat_seconds() (50 ms at least) and at most
  // `max_points` points per report. `client` and `stop` must outlive it.
  JobUplink(CoordinatorClient* client, const StopState* stop, const v1::JobLease& lease,
            int max_points);
  // Sends what is still queued (for the stop's grace at most, once the
  // worker is stopping), then stops the thread. Sends no more heartbeats:
  // the job is over.
  ~JobUplink() override EXCLUDES(mu_);
  JobUplink(const JobUplink&) = delete;
  JobUplink& operator=(const JobUplink&) = delete;

  // TrainerListener, on the training thread.
  void OnPoint(const CurvePoint& point) override EXCLUDES(mu_);
  void OnProgress(const Progress& progress) override EXCLUDES(mu_);
  Status OnCheckpoint(const std::string& path, int64_t step) override EXCLUDES(mu_);
  // True once the worker is stopping or the coordinator gave a stop reason.
  bool ShouldStop() override EXCLUDES(mu_);

  StopReason stop_reason() const EXCLUDES(mu_);

  // Blocks until every point queued so far is acknowledged: OK. Or until the
  // lease is lost (FailedPrecondition), or the stop's grace is over
  // (Unavailable).
  Status Flush() EXCLUDES(mu_);

  // Flushes the points, then uploads the checkpoint at `path`, retrying
  // while the lease holds and the stop's grace lasts.
  Status UploadCheckpoint(const std::string& path, int64_t step) EXCLUDES(mu_);

 private:
  using SteadyClock = std::chrono::steady_clock;

  void Loop() EXCLUDES(mu_);
  // Whether the thread has nothing left to do: the job is over, and its
  // points are delivered, or given up.
  bool Finished() const REQUIRES(mu_);
  bool HeartbeatDue(SteadyClock::time_point now) const REQUIRES(mu_);
  bool PointsDue(SteadyClock::time_point now) const REQUIRES(mu_);
  // Sleeps until there may be something to do: a heartbeat or a batch
  // falls due, or a point, a flush or the close comes.
  void WaitForWork() REQUIRES(mu_);
  // Both release mu_ during the call.
  void SendHeartbeat() REQUIRES(mu_);
  void SendPoints() REQUIRES(mu_);
  // After a transient failure: the next try waits longer, up to a bound.
  void BackOff() REQUIRES(mu_);

  CoordinatorClient* const client_;
  const StopState* const stop_;
  const int64_t job_id_, token_;
  const std::chrono::milliseconds heartbeat_period_;
  const size_t max_points_;

  mutable Mutex mu_;
  CondVar wake_{&mu_};
  std::deque<v1::CurvePoint> pending_ GUARDED_BY(mu_);
  int64_t queued_ GUARDED_BY(mu_) = 0;
  int64_t acked_ GUARDED_BY(mu_) = 0;
  Progress progress_ GUARDED_BY(mu_);
  StopReason reason_ GUARDED_BY(mu_) = StopReason::kNone;
  bool flush_requested_ GUARDED_BY(mu_) = false;
  bool closing_ GUARDED_BY(mu_) = false;  // the job is over
  bool give_up_ GUARDED_BY(mu_) = false;  // on the points a closing uplink cannot send
  int closing_failures_ GUARDED_BY(mu_) = 0;
  SteadyClock::time_point next_heartbeat_ GUARDED_BY(mu_);
  SteadyClock::time_point last_send_ GUARDED_BY(mu_);
  SteadyClock::time_point retry_at_ GUARDED_BY(mu_);
  std::chrono::milliseconds backoff_ GUARDED_BY(mu_);
  std::thread thread_;  // last: starts after everything above is built
};

}  // namespace ablate

#endif  // ABLATE_WORKER_JOB_UPLINK_H_
