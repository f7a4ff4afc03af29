#include "coordinator/server.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <future>

namespace ablate {

namespace {

// How long shutdown waits for the replies of finished calls to be sent.
constexpr std::chrono::milliseconds kReplyFlush{100};

// Runs `call` (which takes a completion) and waits for its status.
template <typename Call>
Status Await(Call&& call) {
  std::promise<Status> result;
  call([&result](Status status) { result.set_value(std::move(status)); });
  return result.get_future().get();
}

// The one place where the transport's security is decided.
std::shared_ptr<grpc::ServerCredentials> ServerCredentials(const CoordinatorOptions&) {
  return grpc::InsecureServerCredentials();
}

std::string HostOf(const std::string& listen) {
  size_t colon = listen.rfind(':');
  return colon == std::string::npos ? listen : listen.substr(0, colon);
}

}  // namespace

StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Start(
    const CoordinatorOptions& options) {
  std::unique_ptr<CoordinatorServer> s(new CoordinatorServer(options));
  Clock* clock = options.clock;
  ABLATE_ASSIGN_OR_RETURN(s->db_, OpenStore(options.db_path, options.store));
  s->writer_ = std::make_unique<Writer>(s->db_.get(), options.writer);
  s->workers_ = std::make_unique<WorkerManager>(s->writer_.get(), clock);
  s->jobs_ = std::make_unique<JobManager>(s->writer_.get(), clock);
  s->sweeps_ = std::make_unique<SweepManager>(s->writer_.get(), clock);
  std::string checkpoint_dir =
      options.checkpoint_dir.empty() ? options.db_path + ".ckpt" : options.checkpoint_dir;
  s->checkpoints_ = std::make_unique<CheckpointManager>(checkpoint_dir, s->writer_.get(), clock);
  ABLATE_RETURN_IF_ERROR(s->checkpoints_->Start());
  ABLATE_RETURN_IF_ERROR(
      Await([&](Writer::Done done) { s->jobs_->RenewLeasesAfterRestart(std::move(done)); }));

  s->coordinator_service_ = std::make_unique<CoordinatorService>(s->workers_.get(), s->jobs_.get(),
                                                                 s->checkpoints_.get(), &s->gate_);
  s->sweeps_service_ = std::make_unique<SweepsService>(s->sweeps_.get(), s->jobs_.get(),
                                                       s->workers_.get(), &s->gate_);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, ServerCredentials(options), &s->port_);
  builder.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  builder.RegisterService(s->coordinator_service_.get());
  builder.RegisterService(s->sweeps_service_.get());
  s->server_ = builder.BuildAndStart();
  if (!s->server_ || s->port_ == 0) {
    return Status::Unavailable("cannot listen on " + options.listen);
  }
  s->address_ = fmt::format("{}:{}", HostOf(options.listen), s->port_);
  s->lease_sweeper_ = std::thread([raw = s.get()] { raw->SweepLeases(); });
  spdlog::info("coordinator serving {} on {}, checkpoints in {}", options.db_path, s->address_,
               checkpoint_dir);
  return s;
}

CoordinatorServer::~CoordinatorServer() { Shutdown(); }

void CoordinatorServer::Shutdown(int grace_ms) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  wake_.notify_all();
  if (lease_sweeper_.joinable()) lease_sweeper_.join();
  if (server_) {
    server_->GetHealthCheckService()->SetServingStatus(false);
    auto deadline = std::chrono::system_clock::now() + std::chrono::milliseconds(grace_ms);
    if (!gate_.CloseAndWait(deadline)) spdlog::warn("cancelling the calls still in flight");
    // The last replies are on their way; give them a moment to leave.
    server_->Shutdown(std::chrono::system_clock::now() + kReplyFlush);
    server_->Wait();
  }
  // Commits what the last calls queued.
  if (writer_) writer_->Stop();
  spdlog::info("coordinator stopped");
}

void CoordinatorServer::SweepLeases() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!wake_.wait_for(lock, std::chrono::milliseconds(options_.lease_sweep_ms),
                         [this] { return stopping_; })) {
    lock.unlock();
    jobs_->ExpireLeases([](Status status) {
      if (!status.ok()) spdlog::warn("lease sweep: {}", status.ToString());
    });
    lock.lock();
  }
}

}  // namespace ablate
