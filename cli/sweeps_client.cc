#include "cli/sweeps_client.h"

#include <chrono>

namespace ablate {

namespace {

// Long enough for a launch of a large grid to commit; an unreachable
// coordinator fails at once (UNAVAILABLE) without waiting for it.
constexpr auto kCallDeadline = std::chrono::seconds(30);
// Results and curves over millions of points, on a busy coordinator.
constexpr auto kQueryDeadline = std::chrono::seconds(120);
// A checkpoint of the seed's model (hundreds of MB) over a slow link.
constexpr auto kCheckpointDeadline = std::chrono::minutes(30);

}  // namespace

StatusOr<std::unique_ptr<SweepsClient>> SweepsClient::Connect(const ClientOptions& options) {
  if (options.address.empty()) {
    return Status::InvalidArgument(
        "no coordinator given: pass --coordinator HOST:PORT or set ABLATE_COORDINATOR");
  }
  return std::unique_ptr<SweepsClient>(new SweepsClient(options.address, MakeChannel(options)));
}

SweepsClient::SweepsClient(std::string address, std::shared_ptr<grpc::Channel> channel)
    : address_(std::move(address)),
      channel_(std::move(channel)),
      stub_(v1::Sweeps::NewStub(channel_)) {}

template <typename Call>
Status SweepsClient::Invoke(Call&& call, std::chrono::seconds deadline) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + deadline);
  return CallOutcome(call(&context), *channel_, address_);
}

Status SweepsClient::Launch(const v1::LaunchRequest& request, v1::LaunchResponse* response) {
  return Invoke([&](grpc::ClientContext* c) { return stub_->Launch(c, request, response); },
                kCallDeadline);
}

Status SweepsClient::ListSweeps(v1::ListSweepsResponse* response) {
  return Invoke(
      [&](grpc::ClientContext* c) {
        return stub_->ListSweeps(c, v1::ListSweepsRequest(), response);
      },
      kCallDeadline);
}

Status SweepsClient::GetStatus(const v1::GetStatusRequest& request,
                               v1::GetStatusResponse* response) {
  return Invoke([&](grpc::ClientContext* c) { return stub_->GetStatus(c, request, response); },
                kCallDeadline);
}

Status SweepsClient::Cancel(const v1::CancelRequest& request, v1::CancelResponse* response) {
  return Invoke([&](grpc::ClientContext* c) { return stub_->Cancel(c, request, response); },
                kCallDeadline);
}

Status SweepsClient::Retry(const v1::RetryRequest& request, v1::RetryResponse* response) {
  return Invoke([&](grpc::ClientContext* c) { return stub_->Retry(c, request, response); },
                kCallDeadline);
}

Status SweepsClient::ListWorkers(v1::ListWorkersResponse* response) {
  return Invoke(
      [&](grpc::ClientContext* c) {
        return stub_->ListWorkers(c, v1::ListWorkersRequest(), response);
      },
      kCallDeadline);
}

Status SweepsClient::Results(const v1::ResultsRequest& request, v1::ResultsResponse* response) {
  return Invoke([&](grpc::ClientContext* c) { return stub_->Results(c, request, response); },
                kQueryDeadline);
}

Status SweepsClient::Curves(const v1::CurvesRequest& request, v1::CurvesResponse* response) {
  return Invoke([&](grpc::ClientContext* c) { return stub_->Curves(c, request, response); },
                kQueryDeadline);
}

Status SweepsClient::GetJob(const v1::GetJobRequest& request, v1::GetJobResponse* response) {
  return Invoke([&](grpc::ClientContext* c) { return stub_->GetJob(c, request, response); },
                kQueryDeadline);
}

StatusOr<v1::CheckpointInfo> SweepsClient::GetCheckpoint(int64_t job_id, const std::string& path) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kCheckpointDeadline);
  v1::GetCheckpointRequest request;
  request.set_job_id(job_id);
  auto reader = stub_->GetCheckpoint(&context, request);
  return ReceiveCheckpoint(
      reader.get(),
      [this](const grpc::Status& status) { return CallOutcome(status, *channel_, address_); },
      "checkpoint of job " + std::to_string(job_id), path);
}

}  // namespace ablate
