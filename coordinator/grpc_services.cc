#include "coordinator/grpc_services.h"

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <utility>

#include "proto/rpc.h"

namespace ablate {

namespace {

// SHA-256 of `text`, as 32 raw bytes.
std::string Digest(grpc::string_ref text) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  return std::string(reinterpret_cast<const char*>(digest), sizeof digest);
}

}  // namespace

void CallGate::RequireToken(const std::string& token) {
  expected_digest_ = token.empty() ? "" : Digest("Bearer " + token);
}

grpc::Status CallGate::Authenticate(const grpc::ServerContextBase& context) {
  if (expected_digest_.empty()) return grpc::Status::OK;
  const auto& metadata = context.client_metadata();
  auto header = metadata.find(kAuthorizationHeader);
  const char* why = "no token";
  if (header != metadata.end()) {
    const std::string presented = Digest(header->second);
    if (CRYPTO_memcmp(presented.data(), expected_digest_.data(), presented.size()) == 0) {
      return grpc::Status::OK;
    }
    why = "a wrong token";
  }
  {
    MutexLock lock(&mu_);
    auto now = std::chrono::steady_clock::now();
    if (now - last_refusal_log_ >= std::chrono::seconds(1)) {
      spdlog::warn("refused a call from {} with {}{}", context.peer(), why,
                   refusals_unlogged_ == 0 ? ""
                                           : fmt::format(" ({} more refused since the last report)",
                                                         refusals_unlogged_));
      last_refusal_log_ = now;
      refusals_unlogged_ = 0;
    } else {
      ++refusals_unlogged_;
    }
  }
  if (header == metadata.end()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "this coordinator requires a token: pass --token-file or set ABLATE_TOKEN");
  }
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                      "the coordinator refused the token: it is not the one the coordinator was "
                      "started with (check --token-file or ABLATE_TOKEN)");
}

grpc::Status CallGate::Enter(const grpc::ServerContextBase& context) {
  grpc::Status authenticated = Authenticate(context);
  if (!authenticated.ok()) return authenticated;
  MutexLock lock(&mu_);
  if (closed_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "coordinator is shutting down");
  ++in_flight_;
  return grpc::Status::OK;
}

void CallGate::Leave() {
  MutexLock lock(&mu_);
  if (--in_flight_ == 0) idle_.SignalAll();
}

bool CallGate::CloseAndWait(std::chrono::system_clock::time_point deadline) {
  MutexLock lock(&mu_);
  closed_ = true;
  bool timed_out = false;
  while (in_flight_ != 0 && !timed_out) timed_out = idle_.WaitUntil(deadline);
  return in_flight_ == 0;
}

namespace {

// Starts `call` with a completion that finishes the RPC.
template <typename Call>
grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* context, CallGate* gate, Call&& call) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  grpc::Status admitted = gate->Enter(*context);
  if (!admitted.ok()) {
    reactor->Finish(admitted);
    return reactor;
  }
  call([reactor, gate](Status status) {
    reactor->Finish(ToGrpc(status));
    gate->Leave();
  });
  return reactor;
}

// Receives a checkpoint: the first message opens the upload once its lease
// checks out, every message's chunk is appended, the end of the stream
// verifies and commits it.
class UploadReactor : public grpc::ServerReadReactor<v1::UploadCheckpointRequest> {
 public:
  UploadReactor(CheckpointManager* checkpoints, CallGate* gate,
                const grpc::CallbackServerContext& context, v1::UploadCheckpointResponse* reply)
      : checkpoints_(checkpoints), gate_(gate), admitted_(gate->Enter(context)), reply_(reply) {
    if (!admitted_.ok()) {
      Finish(admitted_);
      return;
    }
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the client half-closed: the whole file is here
      if (!upload_) return Finish(ToGrpc(Status::InvalidArgument("empty checkpoint stream")));
      checkpoints_->FinishUpload(std::move(upload_), reply_,
                                 [this](Status status) { Finish(ToGrpc(status)); });
      return;
    }
    if (!upload_) {
      checkpoints_->BeginUpload(request_,
                                [this](StatusOr<std::unique_ptr<CheckpointUpload>> upload) {
                                  if (!upload.ok()) return Finish(ToGrpc(upload.status()));
                                  upload_ = std::move(upload).value();
                                  AppendAndReadOn();
                                });
      return;
    }
    AppendAndReadOn();
  }

  void OnDone() override {
    if (admitted_.ok()) gate_->Leave();
    delete this;
  }

 private:
  void AppendAndReadOn() {
    Status appended = upload_->Append(request_.chunk());
    if (!appended.ok()) return Finish(ToGrpc(appended));
    StartRead(&request_);
  }

  CheckpointManager* const checkpoints_;
  CallGate* const gate_;
  const grpc::Status admitted_;
  v1::UploadCheckpointResponse* const reply_;
  v1::UploadCheckpointRequest request_;
  std::unique_ptr<CheckpointUpload> upload_;
};

// Sends a checkpoint: the first message carries its info, each message a
// chunk read once the previous one is on its way.
class DownloadReactor : public grpc::ServerWriteReactor<v1::DownloadCheckpointResponse> {
 public:
  using Opened = CheckpointManager::Callback<std::unique_ptr<CheckpointDownload>>;

  // `begin` asks the checkpoint manager for the file, once the call is
  // admitted; its callback starts the stream.
  DownloadReactor(CallGate* gate, const grpc::CallbackServerContext& context,
                  const std::function<void(Opened)>& begin)
      : gate_(gate), admitted_(gate->Enter(context)) {
    if (!admitted_.ok()) {
      Finish(admitted_);
      return;
    }
    begin([this](StatusOr<std::unique_ptr<CheckpointDownload>> download) {
      if (!download.ok()) return Finish(ToGrpc(download.status()));
      download_ = std::move(download).value();
      *response_.mutable_info() = download_->info();
      WriteNext();
    });
  }

  void OnWriteDone(bool ok) override {
    if (!ok) return Finish(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
    response_.clear_info();
    WriteNext();
  }

  void OnDone() override {
    if (admitted_.ok()) gate_->Leave();
    delete this;
  }

 private:
  void WriteNext() {
    bool first = response_.has_info();
    StatusOr<bool> more = download_->Read(response_.mutable_chunk());
    if (!more.ok()) return Finish(ToGrpc(more.status()));
    if (!*more && !first) return Finish(grpc::Status::OK);
    StartWrite(&response_);
  }

  CallGate* const gate_;
  const grpc::Status admitted_;
  std::unique_ptr<CheckpointDownload> download_;
  v1::DownloadCheckpointResponse response_;
};

}  // namespace

grpc::ServerUnaryReactor* CoordinatorService::RegisterWorker(
    grpc::CallbackServerContext* context, const v1::RegisterWorkerRequest* request,
    v1::RegisterWorkerResponse* reply) {
  return Unary(context, gate_, [&](Writer::Done done) {
    workers_->RegisterWorker(*request, reply, std::move(done));
  });
}

grpc::ServerUnaryReactor* CoordinatorService::LeaseJob(grpc::CallbackServerContext* context,
                                                       const v1::LeaseJobRequest* request,
                                                       v1::LeaseJobResponse* reply) {
  return Unary(context, gate_,
               [&](Writer::Done done) { jobs_->LeaseJob(*request, reply, std::move(done)); });
}

grpc::ServerUnaryReactor* CoordinatorService::Heartbeat(grpc::CallbackServerContext* context,
                                                        const v1::HeartbeatRequest* request,
                                                        v1::HeartbeatResponse* reply) {
  return Unary(context, gate_,
               [&](Writer::Done done) { jobs_->Heartbeat(*request, reply, std::move(done)); });
}

grpc::ServerUnaryReactor* CoordinatorService::ReportPoints(grpc::CallbackServerContext* context,
                                                           const v1::ReportPointsRequest* request,
                                                           v1::ReportPointsResponse*) {
  return Unary(context, gate_,
               [&](Writer::Done done) { jobs_->ReportPoints(*request, std::move(done)); });
}

grpc::ServerReadReactor<v1::UploadCheckpointRequest>* CoordinatorService::UploadCheckpoint(
    grpc::CallbackServerContext* context, v1::UploadCheckpointResponse* reply) {
  return new UploadReactor(checkpoints_, gate_, *context, reply);
}

grpc::ServerWriteReactor<v1::DownloadCheckpointResponse>* CoordinatorService::DownloadCheckpoint(
    grpc::CallbackServerContext* context, const v1::DownloadCheckpointRequest* request) {
  return new DownloadReactor(gate_, *context, [this, request](DownloadReactor::Opened opened) {
    checkpoints_->BeginDownload(*request, std::move(opened));
  });
}

grpc::ServerUnaryReactor* CoordinatorService::CompleteJob(grpc::CallbackServerContext* context,
                                                          const v1::CompleteJobRequest* request,
                                                          v1::CompleteJobResponse*) {
  // The checkpoint of a sweep that keeps none goes once the completion commits.
  auto dropped = std::make_shared<std::string>();
  return Unary(context, gate_, [&, dropped](Writer::Done done) {
    jobs_->CompleteJob(*request, dropped.get(),
                       [this, dropped, done = std::move(done)](Status status) {
                         if (status.ok() && !dropped->empty()) checkpoints_->Remove(*dropped);
                         done(std::move(status));
                       });
  });
}

grpc::ServerUnaryReactor* CoordinatorService::FailJob(grpc::CallbackServerContext* context,
                                                      const v1::FailJobRequest* request,
                                                      v1::FailJobResponse* reply) {
  return Unary(context, gate_,
               [&](Writer::Done done) { jobs_->FailJob(*request, reply, std::move(done)); });
}

grpc::ServerUnaryReactor* CoordinatorService::ReleaseJob(grpc::CallbackServerContext* context,
                                                         const v1::ReleaseJobRequest* request,
                                                         v1::ReleaseJobResponse*) {
  return Unary(context, gate_,
               [&](Writer::Done done) { jobs_->ReleaseJob(*request, std::move(done)); });
}

grpc::ServerUnaryReactor* SweepsService::Launch(grpc::CallbackServerContext* context,
                                                const v1::LaunchRequest* request,
                                                v1::LaunchResponse* reply) {
  return Unary(context, gate_,
               [&](Writer::Done done) { sweeps_->Launch(*request, reply, std::move(done)); });
}

grpc::ServerUnaryReactor* SweepsService::ListSweeps(grpc::CallbackServerContext* context,
                                                    const v1::ListSweepsRequest*,
                                                    v1::ListSweepsResponse* reply) {
  return Unary(context, gate_,
               [&](Writer::Done done) { sweeps_->ListSweeps(reply, std::move(done)); });
}

grpc::ServerUnaryReactor* SweepsService::GetStatus(grpc::CallbackServerContext* context,
                                                   const v1::GetStatusRequest* request,
                                                   v1::GetStatusResponse* reply) {
  return Unary(context, gate_,
               [&](Writer::Done done) { sweeps_->GetStatus(*request, reply, std::move(done)); });
}

grpc::ServerUnaryReactor* SweepsService::Cancel(grpc::CallbackServerContext* context,
                                                const v1::CancelRequest* request,
                                                v1::CancelResponse* reply) {
  return Unary(context, gate_,
               [&](Writer::Done done) { jobs_->Cancel(*request, reply, std::move(done)); });
}

grpc::ServerUnaryReactor* SweepsService::Retry(grpc::CallbackServerContext* context,
                                               const v1::RetryRequest* request,
                                               v1::RetryResponse* reply) {
  return Unary(context, gate_,
               [&](Writer::Done done) { jobs_->Retry(*request, reply, std::move(done)); });
}

grpc::ServerUnaryReactor* SweepsService::ListWorkers(grpc::CallbackServerContext* context,
                                                     const v1::ListWorkersRequest*,
                                                     v1::ListWorkersResponse* reply) {
  return Unary(context, gate_,
               [&](Writer::Done done) { workers_->ListWorkers(reply, std::move(done)); });
}

grpc::ServerUnaryReactor* SweepsService::Results(grpc::CallbackServerContext* context,
                                                 const v1::ResultsRequest* request,
                                                 v1::ResultsResponse* reply) {
  return Unary(context, gate_,
               [&](Writer::Done done) { results_->Results(*request, reply, std::move(done)); });
}

grpc::ServerUnaryReactor* SweepsService::Curves(grpc::CallbackServerContext* context,
                                                const v1::CurvesRequest* request,
                                                v1::CurvesResponse* reply) {
  return Unary(context, gate_,
               [&](Writer::Done done) { results_->Curves(*request, reply, std::move(done)); });
}

grpc::ServerUnaryReactor* SweepsService::GetJob(grpc::CallbackServerContext* context,
                                                const v1::GetJobRequest* request,
                                                v1::GetJobResponse* reply) {
  return Unary(context, gate_,
               [&](Writer::Done done) { results_->GetJob(*request, reply, std::move(done)); });
}

grpc::ServerWriteReactor<v1::DownloadCheckpointResponse>* SweepsService::GetCheckpoint(
    grpc::CallbackServerContext* context, const v1::GetCheckpointRequest* request) {
  const int64_t job_id = request->job_id();
  return new DownloadReactor(gate_, *context, [this, job_id](DownloadReactor::Opened opened) {
    checkpoints_->BeginJobDownload(job_id, std::move(opened));
  });
}

}  // namespace ablate
