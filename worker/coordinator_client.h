// CoordinatorClient: the worker's side of the Coordinator service, one method
// per RPC. GrpcCoordinatorClient is the real one; tests put their own in its
// place. `CallWithRetry` repeats a call while the coordinator is unreachable
// or cannot commit (UNAVAILABLE, DEADLINE_EXCEEDED), with capped exponential
// backoff and jitter, so a worker rides out a coordinator restart.
#ifndef ABLATE_WORKER_COORDINATOR_CLIENT_H_
#define ABLATE_WORKER_COORDINATOR_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <set>
#include <string>

#include "common/mutex.h"
#include "common/status.h"
#include "proto/ablate.grpc.pb.h"
#include "proto/rpc.h"
#include "worker/stop_state.h"

namespace ablate {

// Implementations are thread-safe.
class CoordinatorClient {
 public:
  virtual ~CoordinatorClient() = default;

  virtual Status Register(const v1::RegisterWorkerRequest& request,
                          v1::RegisterWorkerResponse* response) = 0;
  virtual Status Lease(int64_t worker_id, v1::LeaseJobResponse* response) = 0;
  virtual Status Heartbeat(const v1::HeartbeatRequest& request,
                           v1::HeartbeatResponse* response) = 0;
  virtual Status ReportPoints(const v1::ReportPointsRequest& request) = 0;
  virtual Status Complete(const v1::CompleteJobRequest& request) = 0;
  virtual Status Fail(const v1::FailJobRequest& request, v1::FailJobResponse* response) = 0;
  virtual Status Release(const v1::ReleaseJobRequest& request) = 0;
  // Sends the file at `path` as the job's checkpoint at `step`.
  virtual Status UploadCheckpoint(int64_t job_id, int64_t lease_token, int64_t step,
                                  const std::string& path) = 0;
  // Writes the job's checkpoint to `path` atomically after checking its
  // SHA-256; returns its step.
  virtual StatusOr<int64_t> DownloadCheckpoint(int64_t job_id, int64_t lease_token,
                                               const std::string& path) = 0;

  // Repeats `call` while it fails transiently and `keep_trying()` holds.
  // Backoff starts at 100 ms and doubles up to 5 s, with jitter.
  static Status CallWithRetry(const std::function<Status()>& call,
                              const std::function<bool()>& keep_trying);
};

// Each call is one RPC with a deadline (10 s for a unary call, 30 min for a
// checkpoint stream), which never runs past the end of the stop's grace.
class GrpcCoordinatorClient : public CoordinatorClient {
 public:
  // `stop` must outlive the client.
  GrpcCoordinatorClient(std::shared_ptr<grpc::Channel> channel, const StopState* stop);

  Status Register(const v1::RegisterWorkerRequest& request,
                  v1::RegisterWorkerResponse* response) override;
  Status Lease(int64_t worker_id, v1::LeaseJobResponse* response) override;
  Status Heartbeat(const v1::HeartbeatRequest& request, v1::HeartbeatResponse* response) override;
  Status ReportPoints(const v1::ReportPointsRequest& request) override;
  Status Complete(const v1::CompleteJobRequest& request) override;
  Status Fail(const v1::FailJobRequest& request, v1::FailJobResponse* response) override;
  Status Release(const v1::ReleaseJobRequest& request) override;
  // Streams the file in 1 MiB chunks.
  Status UploadCheckpoint(int64_t job_id, int64_t lease_token, int64_t step,
                          const std::string& path) override;
  StatusOr<int64_t> DownloadCheckpoint(int64_t job_id, int64_t lease_token,
                                       const std::string& path) override;

  // Once the stop's grace is over, cancels every call of this client still
  // in flight (one started before the stop keeps its own, later deadline);
  // before that does nothing. Returns how many it cancelled. A watching
  // thread calls it; not async-signal-safe.
  int CancelCallsPastCap() EXCLUDES(calls_mu_);

 private:
  class Call;

  const std::unique_ptr<v1::Coordinator::Stub> stub_;
  const StopState* const stop_;
  Mutex calls_mu_;
  // Every call in flight, for CancelCallsPastCap.
  std::set<grpc::ClientContext*> calls_ GUARDED_BY(calls_mu_);
};

}  // namespace ablate

#endif  // ABLATE_WORKER_COORDINATOR_CLIENT_H_
