// JobManager: the scheduler. Hands out jobs under leases, extends and fences
// them, takes their results, and returns abandoned jobs to the queue.
//
// Scheduling: LeaseJob offers the pending job with the lowest order across
// all sweeps, the older sweep first among equal orders. Sweeps therefore
// interleave: a sweep launched later starts at once instead of waiting for
// earlier ones to drain, and every sweep's grid fills in the spec's balanced
// order. A job coming back (expired, released, retried) keeps its order, so
// it is offered again before fresh ones.
//
// Leases: a lease lasts the sweep's lease_seconds after the latest heartbeat.
// Every lease gives the job a new lease_token (the previous one plus 1); a
// request carrying any other token, or about a job that is not running, is
// fenced off with FailedPrecondition and changes nothing. An expired lease is
// noticed by ExpireLeases (the server calls it every second) and lazily by
// LeaseJob; until then the job still belongs to its worker.
//
// Refused writes: when the database refuses a write (disk full, read-only,
// I/O errors, an overloaded writer), heartbeats are refused with it, so the
// leases that lapse meanwhile say nothing about their workers. Once any of
// this manager's operations was answered Unavailable, the next lease check
// first renews every running lease, as a restart does, and only then expires
// what lapses after that.
//
// Thread safety: every method may be called from any thread; `done` runs on
// the writer thread once the effect is committed. Requests and replies must
// stay alive until `done` runs.
#ifndef ABLATE_COORDINATOR_JOB_MANAGER_H_
#define ABLATE_COORDINATOR_JOB_MANAGER_H_

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "common/status.h"
#include "coordinator/clock.h"
#include "proto/ablate.pb.h"
#include "store/job_state.h"
#include "store/sqlite.h"
#include "store/writer.h"

namespace ablate {

// The scheduling state of a job, as stored.
struct JobRow {
  int64_t id = 0;
  int64_t sweep_id = 0;
  JobState state = JobState::kPending;
  int64_t attempts = 0;
  int64_t lease_owner = 0;
  int64_t lease_token = 0;
  int64_t checkpoint_step = 0;
  int64_t max_attempts = 0;
  int64_t lease_ms = 0;
  bool retry_on_nan = false;
};

class JobManager {
 public:
  // `writer` and `clock` must outlive the manager.
  JobManager(Writer* writer, Clock* clock) : writer_(writer), clock_(clock) {}

  // NotFound for an unknown worker (it must register again).
  void LeaseJob(const v1::LeaseJobRequest& request, v1::LeaseJobResponse* reply, Writer::Done done);
  void Heartbeat(const v1::HeartbeatRequest& request, v1::HeartbeatResponse* reply,
                 Writer::Done done);
  // Stores built-in points (split, bpc) as the metric "<split>_bpc" and a
  // program's points (metric, value) under their name. InvalidArgument
  // naming the first bad point, and nothing stored, for a negative step, a
  // non-finite value, an unknown split, a bad metric name, a point with both
  // a split and a metric, or steps that do not increase within a metric.
  void ReportPoints(const v1::ReportPointsRequest& request, Writer::Done done);
  // Completing a done job again with its token is OK. When the sweep keeps
  // no checkpoints (schedule.keep_checkpoints: none), the job's checkpoint
  // is forgotten in the same transaction and its file name, for the caller
  // to remove once this commits, goes to `*dropped_checkpoint` (may be null).
  void CompleteJob(const v1::CompleteJobRequest& request, std::string* dropped_checkpoint,
                   Writer::Done done);
  // The job goes back to pending while attempts remain and the failure is
  // retryable (for a non-finite loss: while the sweep's retry_on_nan is set);
  // otherwise it fails, keeping `error`.
  void FailJob(const v1::FailJobRequest& request, v1::FailJobResponse* reply, Writer::Done done);
  // Back to pending at once; the attempt does not count.
  void ReleaseJob(const v1::ReleaseJobRequest& request, Writer::Done done);

  // Pending and running jobs of the target become cancelled.
  void Cancel(const v1::CancelRequest& request, v1::CancelResponse* reply, Writer::Done done);
  // Failed and cancelled jobs of the target become pending with no attempts.
  void Retry(const v1::RetryRequest& request, v1::RetryResponse* reply, Writer::Done done);

  // Every running job whose lease expired goes back to pending, or fails once
  // it used all its attempts.
  void ExpireLeases(Writer::Done done);
  // For a coordinator starting on an existing database: its workers could not
  // heartbeat while it was down, so every running job gets a fresh lease.
  void RenewLeasesAfterRestart(Writer::Done done);

  // On the writer thread: the job, if `lease_token` is its current lease
  // (the job's latest lease, and the job still running); NotFound or
  // FailedPrecondition ("stale lease ...") otherwise. A job that the same
  // lease already moved to a state of `repeated` (a request retried after it
  // took effect) is returned too, with that state, for the caller to answer
  // as it did the first time.
  static StatusOr<JobRow> CheckLease(Database& db, int64_t job_id, int64_t lease_token,
                                     std::initializer_list<JobState> repeated = {});
  // On the writer thread: the job with its sweep's schedule; NotFound if none.
  static StatusOr<JobRow> ReadJob(Database& db, int64_t job_id);

 private:
  // writer_->Submit, noting refused writes (see the class comment).
  void Submit(Writer::Op op, Writer::Done done);
  Status Lease(Database& db, int64_t worker_id, v1::LeaseJobResponse* reply);
  // Renews first when writes were refused since the last check.
  Status ExpireOverdue(Database& db, int64_t now);
  // A done job of a sweep that keeps no checkpoints forgets its own; the
  // file's name goes to `*dropped` (when not null).
  static Status DropCheckpointUnlessKept(Database& db, int64_t job_id, std::string* dropped);

  Writer* const writer_;
  Clock* const clock_;
  // Set by any operation answered Unavailable; cleared on the writer thread
  // by the check that renews the leases (and set again if that check's batch
  // is refused in turn).
  std::atomic<bool> renew_leases_{false};
};

}  // namespace ablate

#endif  // ABLATE_COORDINATOR_JOB_MANAGER_H_
