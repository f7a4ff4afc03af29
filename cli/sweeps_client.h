// SweepsClient: the CLI's side of the Sweeps service. One RPC per call, with
// a deadline and no retries: a person is waiting, and the error says what
// failed. Every error message starts "coordinator HOST:PORT: ".
// Thread-compatible.
#ifndef ABLATE_CLI_SWEEPS_CLIENT_H_
#define ABLATE_CLI_SWEEPS_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>

#include "common/status.h"
#include "proto/ablate.grpc.pb.h"
#include "proto/rpc.h"

namespace ablate {

class SweepsClient {
 public:
  // A client for the coordinator `options` name (the channel connects lazily,
  // on the first call). InvalidArgument when no address is given.
  static StatusOr<std::unique_ptr<SweepsClient>> Connect(const ClientOptions& options);

  Status Launch(const v1::LaunchRequest& request, v1::LaunchResponse* response);
  Status ListSweeps(v1::ListSweepsResponse* response);
  Status GetStatus(const v1::GetStatusRequest& request, v1::GetStatusResponse* response);
  Status Cancel(const v1::CancelRequest& request, v1::CancelResponse* response);
  Status Retry(const v1::RetryRequest& request, v1::RetryResponse* response);
  Status ListWorkers(v1::ListWorkersResponse* response);
  // The results queries, with a longer deadline: over a large sweep they
  // read millions of points.
  Status Results(const v1::ResultsRequest& request, v1::ResultsResponse* response);
  Status Curves(const v1::CurvesRequest& request, v1::CurvesResponse* response);
  Status GetJob(const v1::GetJobRequest& request, v1::GetJobResponse* response);
  // Job `job_id`'s checkpoint, written to `path` once its size and SHA-256
  // check out (ReceiveCheckpoint); its info.
  StatusOr<v1::CheckpointInfo> GetCheckpoint(int64_t job_id, const std::string& path);

  const std::string& address() const { return address_; }

 private:
  SweepsClient(std::string address, std::shared_ptr<grpc::Channel> channel);
  // Runs one call with the deadline and turns its status into ours.
  template <typename Call>
  Status Invoke(Call&& call, std::chrono::seconds deadline);

  const std::string address_;
  const std::shared_ptr<grpc::Channel> channel_;
  const std::unique_ptr<v1::Sweeps::Stub> stub_;
};

}  // namespace ablate

#endif  // ABLATE_CLI_SWEEPS_CLIENT_H_
