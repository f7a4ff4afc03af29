#include "coordinator/grpc_services.h"

#include <memory>
#include <utility>

#include "proto/rpc.h"

namespace ablate {

bool CallGate::Enter() {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return false;
  ++in_flight_;
  return true;
}

void CallGate::Leave() {
  std::lock_guard<std::mutex> lock(mu_);
  if (--in_flight_ == 0) idle_.notify_all();
}

bool CallGate::CloseAndWait(std::chrono::system_clock::time_point deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  closed_ = true;
  return idle_.wait_until(lock, deadline, [this] { return in_flight_ == 0; });
}

namespace {

const grpc::Status kShuttingDown(grpc::StatusCode::UNAVAILABLE, "coordinator is shutting down");

// Starts `call` with a completion that finishes the RPC.
template <typename Call>
grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* context, CallGate* gate, Call&& call) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (!gate->Enter()) {
    reactor->Finish(kShuttingDown);
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
  UploadReactor(CheckpointManager* checkpoints, CallGate* gate, v1::UploadCheckpointResponse* reply)
      : checkpoints_(checkpoints), gate_(gate), entered_(gate->Enter()), reply_(reply) {
    if (!entered_) {
      Finish(kShuttingDown);
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
    if (entered_) gate_->Leave();
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
  const bool entered_;
  v1::UploadCheckpointResponse* const reply_;
  v1::UploadCheckpointRequest request_;
  std::unique_ptr<CheckpointUpload> upload_;
};

// Sends a checkpoint: the first message carries its info, each message a
// chunk read once the previous one is on its way.
class DownloadReactor : public grpc::ServerWriteReactor<v1::DownloadCheckpointResponse> {
 public:
  DownloadReactor(CheckpointManager* checkpoints, CallGate* gate,
                  const v1::DownloadCheckpointRequest& request)
      : gate_(gate), entered_(gate->Enter()) {
    if (!entered_) {
      Finish(kShuttingDown);
      return;
    }
    checkpoints->BeginDownload(request,
                               [this](StatusOr<std::unique_ptr<CheckpointDownload>> download) {
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
    if (entered_) gate_->Leave();
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
  const bool entered_;
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
    grpc::CallbackServerContext*, v1::UploadCheckpointResponse* reply) {
  return new UploadReactor(checkpoints_, gate_, reply);
}

grpc::ServerWriteReactor<v1::DownloadCheckpointResponse>* CoordinatorService::DownloadCheckpoint(
    grpc::CallbackServerContext*, const v1::DownloadCheckpointRequest* request) {
  return new DownloadReactor(checkpoints_, gate_, *request);
}

grpc::ServerUnaryReactor* CoordinatorService::CompleteJob(grpc::CallbackServerContext* context,
                                                          const v1::CompleteJobRequest* request,
                                                          v1::CompleteJobResponse*) {
  return Unary(context, gate_,
               [&](Writer::Done done) { jobs_->CompleteJob(*request, std::move(done)); });
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

}  // namespace ablate
