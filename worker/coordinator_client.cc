#include "worker/coordinator_client.h"

#include <algorithm>
#include <fstream>
#include <random>
#include <thread>

#include "common/config_hash.h"
#include "data/text8.h"

namespace ablate {

namespace {

constexpr auto kUnaryDeadline = std::chrono::seconds(10);
constexpr auto kStreamDeadline = std::chrono::minutes(30);
constexpr size_t kChunkBytes = 1 << 20;

}  // namespace

// One call's context, with its deadline (capped at the end of the stop's
// grace), listed among the client's calls in flight for as long as it runs.
//
// Unary calls wait for the coordinator to be reachable, up to their deadline,
// instead of failing at once: a call in flight is what makes gRPC notice a
// restarted coordinator at once (between calls only its 5 s backup poller
// looks), so fail-fast calls retried with backoff would find it seconds late,
// possibly after the leases it renewed at start lapsed again. Streams fail
// fast and are retried; the heartbeats running beside them keep the channel
// watched.
class GrpcCoordinatorClient::Call {
 public:
  enum Kind { kUnary, kStream };

  Call(GrpcCoordinatorClient* client, Kind kind) EXCLUDES(client->calls_mu_) : client_(client) {
    if (kind == kUnary) context_.set_wait_for_ready(true);
    context_.set_deadline(client_->stop_->CapDeadline(
        std::chrono::system_clock::now() + (kind == kUnary ? kUnaryDeadline : kStreamDeadline)));
    MutexLock lock(&client_->calls_mu_);
    client_->calls_.insert(&context_);
  }
  ~Call() EXCLUDES(client_->calls_mu_) {
    MutexLock lock(&client_->calls_mu_);
    client_->calls_.erase(&context_);
  }
  Call(const Call&) = delete;
  Call& operator=(const Call&) = delete;

  grpc::ClientContext* context() { return &context_; }

  // The call's status; one CancelCallsPastCap ended reads as the deadline
  // it is (transient: the caller treats it as a coordinator still away).
  Status Finish(const grpc::Status& status) const {
    if (status.error_code() == grpc::StatusCode::CANCELLED && client_->stop_->PastDeadlineCap()) {
      return Status::DeadlineExceeded("the worker's stop grace ran out");
    }
    return FromGrpc(status);
  }

 private:
  GrpcCoordinatorClient* const client_;
  grpc::ClientContext context_;
};

int GrpcCoordinatorClient::CancelCallsPastCap() {
  if (!stop_->PastDeadlineCap()) return 0;
  MutexLock lock(&calls_mu_);
  // TryCancel on a context whose call has not started yet cancels the call
  // when it starts.
  for (grpc::ClientContext* context : calls_) context->TryCancel();
  return static_cast<int>(calls_.size());
}

GrpcCoordinatorClient::GrpcCoordinatorClient(std::shared_ptr<grpc::Channel> channel,
                                             const StopState* stop)
    : stub_(v1::Coordinator::NewStub(std::move(channel))), stop_(stop) {}

Status GrpcCoordinatorClient::Register(const v1::RegisterWorkerRequest& request,
                                       v1::RegisterWorkerResponse* response) {
  Call call(this, Call::kUnary);
  return call.Finish(stub_->RegisterWorker(call.context(), request, response));
}

Status GrpcCoordinatorClient::Lease(int64_t worker_id, v1::LeaseJobResponse* response) {
  Call call(this, Call::kUnary);
  v1::LeaseJobRequest request;
  request.set_worker_id(worker_id);
  return call.Finish(stub_->LeaseJob(call.context(), request, response));
}

Status GrpcCoordinatorClient::Heartbeat(const v1::HeartbeatRequest& request,
                                        v1::HeartbeatResponse* response) {
  Call call(this, Call::kUnary);
  return call.Finish(stub_->Heartbeat(call.context(), request, response));
}

Status GrpcCoordinatorClient::ReportPoints(const v1::ReportPointsRequest& request) {
  Call call(this, Call::kUnary);
  v1::ReportPointsResponse response;
  return call.Finish(stub_->ReportPoints(call.context(), request, &response));
}

Status GrpcCoordinatorClient::Complete(const v1::CompleteJobRequest& request) {
  Call call(this, Call::kUnary);
  v1::CompleteJobResponse response;
  return call.Finish(stub_->CompleteJob(call.context(), request, &response));
}

Status GrpcCoordinatorClient::Fail(const v1::FailJobRequest& request,
                                   v1::FailJobResponse* response) {
  Call call(this, Call::kUnary);
  return call.Finish(stub_->FailJob(call.context(), request, response));
}

Status GrpcCoordinatorClient::Release(const v1::ReleaseJobRequest& request) {
  Call call(this, Call::kUnary);
  v1::ReleaseJobResponse response;
  return call.Finish(stub_->ReleaseJob(call.context(), request, &response));
}

Status GrpcCoordinatorClient::UploadCheckpoint(int64_t job_id, int64_t lease_token, int64_t step,
                                               const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("checkpoint " + path + " cannot be read");
  const std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Call call(this, Call::kStream);
  v1::UploadCheckpointResponse response;
  auto writer = stub_->UploadCheckpoint(call.context(), &response);
  v1::UploadCheckpointRequest first;
  first.set_job_id(job_id);
  first.set_lease_token(lease_token);
  first.mutable_info()->set_step(step);
  first.mutable_info()->set_total_bytes(static_cast<int64_t>(data.size()));
  first.mutable_info()->set_sha256_hex(Sha256Hex(data));
  bool ok = writer->Write(first);
  for (size_t offset = 0; ok && offset < data.size(); offset += kChunkBytes) {
    v1::UploadCheckpointRequest chunk;
    chunk.set_chunk(data.substr(offset, kChunkBytes));
    ok = writer->Write(chunk);
  }
  writer->WritesDone();
  return call.Finish(writer->Finish());
}

StatusOr<int64_t> GrpcCoordinatorClient::DownloadCheckpoint(int64_t job_id, int64_t lease_token,
                                                            const std::string& path) {
  Call call(this, Call::kStream);
  v1::DownloadCheckpointRequest request;
  request.set_job_id(job_id);
  request.set_lease_token(lease_token);
  auto reader = stub_->DownloadCheckpoint(call.context(), request);
  ABLATE_ASSIGN_OR_RETURN(
      v1::CheckpointInfo info,
      ReceiveCheckpoint(
          reader.get(), [&call](const grpc::Status& status) { return call.Finish(status); },
          "checkpoint of job " + std::to_string(job_id), path));
  return info.step();
}

Status CoordinatorClient::CallWithRetry(const std::function<Status()>& call,
                                        const std::function<bool()>& keep_trying) {
  thread_local std::mt19937 rng{std::random_device{}()};
  auto backoff = std::chrono::milliseconds(100);
  while (true) {
    Status status = call();
    if (!IsTransient(status) || !keep_trying()) return status;
    std::uniform_int_distribution<int> jitter(0, static_cast<int>(backoff.count() / 2));
    std::this_thread::sleep_for(backoff + std::chrono::milliseconds(jitter(rng)));
    backoff = std::min<std::chrono::milliseconds>(backoff * 2, std::chrono::seconds(5));
  }
}

}  // namespace ablate
