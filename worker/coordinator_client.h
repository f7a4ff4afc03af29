// CoordinatorClient: the worker's side of the Coordinator service. Each call
// is one RPC with a deadline; `CallWithRetry` repeats a call while the
// coordinator is unreachable or cannot commit (UNAVAILABLE, DEADLINE_EXCEEDED),
// with capped exponential backoff and jitter, so a worker rides out a
// coordinator restart. Thread-safe.
#ifndef ABLATE_WORKER_COORDINATOR_CLIENT_H_
#define ABLATE_WORKER_COORDINATOR_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "common/status.h"
#include "proto/ablate.grpc.pb.h"
#include "proto/rpc.h"

namespace ablate {

class CoordinatorClient {
 public:
  explicit CoordinatorClient(std::shared_ptr<grpc::Channel> channel);

  Status Register(const v1::RegisterWorkerRequest& request, v1::RegisterWorkerResponse* response);
  Status Lease(int64_t worker_id, v1::LeaseJobResponse* response);
  Status Heartbeat(const v1::HeartbeatRequest& request, v1::HeartbeatResponse* response);
  Status ReportPoints(const v1::ReportPointsRequest& request);
  Status Complete(const v1::CompleteJobRequest& request);
  Status Fail(const v1::FailJobRequest& request, v1::FailJobResponse* response);
  Status Release(const v1::ReleaseJobRequest& request);
  // Streams the file at `path` (1 MiB chunks) as the job's checkpoint at `step`.
  Status UploadCheckpoint(int64_t job_id, int64_t lease_token, int64_t step,
                          const std::string& path);
  // Writes the job's checkpoint to `path` atomically after checking its
  // SHA-256; returns its step.
  StatusOr<int64_t> DownloadCheckpoint(int64_t job_id, int64_t lease_token,
                                       const std::string& path);

  // Repeats `call` while it fails transiently and `keep_trying()` holds.
  // Backoff starts at 100 ms and doubles up to 5 s, with jitter.
  static Status CallWithRetry(const std::function<Status()>& call,
                              const std::function<bool()>& keep_trying);

  // No call of any client in this process, started now or later, runs past
  // `seconds_from_now`: the bound on a worker's stop. Async-signal-safe.
  static void CapDeadlines(double seconds_from_now);

  // Once the cap CapDeadlines set has passed, cancels every call still in
  // flight (one started before the cap keeps its own, later deadline);
  // before that, or with no cap, does nothing. Returns how many it cancelled.
  // Not async-signal-safe: a watching thread calls it.
  static int CancelCallsPastCap();

 private:
  std::unique_ptr<v1::Coordinator::Stub> stub_;
};

}  // namespace ablate

#endif  // ABLATE_WORKER_COORDINATOR_CLIENT_H_
