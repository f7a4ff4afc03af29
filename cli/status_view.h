// StatusView: what `ablate status` and `ablate local` show of Sweeps.GetStatus
// answers: per sweep a progress bar with its job counts and an ETA, and a line
// per running job (id, factors, worker, step/steps_total, bytes/s, last
// training bpc, ETA). It keeps what earlier answers said, so that over
// repeated refreshes ETAs come from the observed progress.
//
// ETAs: a running job's from its step rate: the worker's throughput over the
// bytes a step reads; before its first heartbeat says so, the rate between
// the step changes seen over refreshes, or since its lease began while only
// one was seen. A sweep's from its running jobs' rates and progress, spread
// over the jobs still to do, or from the observed rate of finished jobs when
// none says its speed. "-" when unknown.
// Not thread-safe.
#ifndef ABLATE_CLI_STATUS_VIEW_H_
#define ABLATE_CLI_STATUS_VIEW_H_

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "proto/ablate.pb.h"

namespace ablate {

class StatusView {
 public:
  using Clock = std::chrono::steady_clock;

  // Records an answer received at `now`; `now_ms` is the wall clock then
  // (milliseconds since the epoch), to age leases by.
  void Update(const v1::GetStatusResponse& status, Clock::time_point now, int64_t now_ms);

  // Every sweep, then its running jobs as a table; lines end in '\n'.
  std::string Render() const;
  // One line per sweep without job lines, for logs that are not a terminal.
  std::string RenderBrief() const;

  // True once an answer was recorded and none of its sweeps has a pending or
  // running job.
  bool Finished() const;

  const v1::GetStatusResponse& latest() const { return latest_; }

  // Seconds until the sweep or the job finishes; negative when unknown.
  double SweepEta(const v1::SweepStatus& sweep) const;
  double JobEta(const v1::RunningJob& job) const;

 private:
  struct Sample {
    Clock::time_point time;
    int64_t value;  // a job's step, or a sweep's finished jobs
  };
  // Steps per second of a running job; negative when unknown.
  double StepRate(const v1::RunningJob& job) const;
  std::string SweepLine(const v1::SweepStatus& sweep) const;

  v1::GetStatusResponse latest_;
  bool updated_ = false;
  Clock::time_point now_;
  int64_t now_ms_ = 0;
  // When each value was first seen, oldest first, pruned to about kWindow.
  std::map<int64_t, std::deque<Sample>> job_steps_;       // by job id
  std::map<int64_t, std::deque<Sample>> sweep_finished_;  // by sweep id
};

// `ablate status --format json`'s object for one sweep:
// {"sweep": NAME, "total": N, "jobs": {"pending": a, "running": b, "done": c,
// "failed": d, "cancelled": e}}, keys in that order.
nlohmann::ordered_json SweepCountsJson(const v1::SweepSummary& sweep);

// `ablate list --format json`: one object per sweep, oldest first, with its
// id, name, description, state, created_ms, spec_hash, total and jobs.
nlohmann::ordered_json SweepListJson(const v1::ListSweepsResponse& sweeps);
// `ablate workers --format json`: one object per worker.
nlohmann::ordered_json WorkersJson(const v1::ListWorkersResponse& workers);

// A text progress bar `width` characters wide: '#' done, 'x' failed,
// '-' cancelled, '>' running, '.' pending.
std::string ProgressBar(const v1::JobCounts& counts, int width);

}  // namespace ablate

#endif  // ABLATE_CLI_STATUS_VIEW_H_
