// StopState: a worker's stop, from the SIGTERM (or SIGINT) that asks for it
// to the end of the grace that follows. The signal handler sets it; the
// service loop, the job uplink and the coordinator client read it.
//
// Until the stop, calls to a coordinator that does not answer are retried
// without end. After it they are retried for the grace at most, and no call
// runs past the grace's end (GrpcCoordinatorClient caps deadlines at
// CapDeadline and cancels the calls still in flight). Giving up loses nothing
// acknowledged: the job's lease lapses and it resumes from its last uploaded
// checkpoint.
#ifndef ABLATE_WORKER_STOP_STATE_H_
#define ABLATE_WORKER_STOP_STATE_H_

#include <atomic>
#include <chrono>
#include <cstdint>

namespace ablate {

// Thread-safe. Request() is async-signal-safe.
class StopState {
 public:
  explicit StopState(double grace_seconds);
  // Detaches from the signals if installed: one that comes later is ignored.
  ~StopState();
  StopState(const StopState&) = delete;
  StopState& operator=(const StopState&) = delete;

  // Makes SIGTERM and SIGINT call Request() on this instance. One instance of
  // a process is installed at a time; installing another replaces it.
  void InstallSignalHandlers();

  // Marks the stop and starts the grace; later calls change nothing. Only
  // atomic stores and clock_gettime: safe in a signal handler.
  void Request();

  // Whether Request() was called.
  bool requested() const { return requested_.load(); }
  double grace_seconds() const { return grace_seconds_; }

  // True until the stop, then for the grace more: whether a call to the
  // coordinator is still worth retrying.
  bool WithinGrace() const;

  // `deadline`, or the end of the grace when that comes first. gRPC's
  // deadlines are on the wall clock, so the end of the grace is too.
  std::chrono::system_clock::time_point CapDeadline(
      std::chrono::system_clock::time_point deadline) const;

  // Whether the stop came and the end of its grace, as CapDeadline sees it,
  // has passed.
  bool PastDeadlineCap() const;

 private:
  const double grace_seconds_;
  // When the stop came, nanoseconds of CLOCK_MONOTONIC; 0 before. Set first,
  // so whoever sees another field set sees it.
  std::atomic<int64_t> requested_monotonic_ns_{0};
  // The end of the grace, nanoseconds of CLOCK_REALTIME; 0 before the stop.
  std::atomic<int64_t> deadline_cap_ns_{0};
  std::atomic<bool> requested_{false};
};

}  // namespace ablate

#endif  // ABLATE_WORKER_STOP_STATE_H_
