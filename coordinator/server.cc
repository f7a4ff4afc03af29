#include "coordinator/server.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
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

// Frees OpenSSL objects.
struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct X509Free {
  void operator()(X509* cert) const { X509_free(cert); }
};
struct KeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};

std::unique_ptr<BIO, BioFree> MemoryBio(const std::string& pem) {
  return std::unique_ptr<BIO, BioFree>(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

std::unique_ptr<X509, X509Free> FirstCertificate(const std::string& pem) {
  auto bio = MemoryBio(pem);
  return std::unique_ptr<X509, X509Free>(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

// Checks what gRPC would otherwise only report as "cannot listen".
Status CheckTls(const CoordinatorOptions& options) {
  const bool cert = !options.tls_cert_pem.empty(), key = !options.tls_key_pem.empty();
  if (cert != key) return Status::InvalidArgument("--tls-cert and --tls-key go together");
  if (!options.tls_client_ca_pem.empty() && !cert) {
    return Status::InvalidArgument("--tls-client-ca needs --tls-cert and --tls-key");
  }
  if (!cert) return Status::OK();
  auto certificate = FirstCertificate(options.tls_cert_pem);
  if (!certificate) return Status::InvalidArgument("--tls-cert: no PEM certificate in it");
  auto bio = MemoryBio(options.tls_key_pem);
  std::unique_ptr<EVP_PKEY, KeyFree> private_key(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!private_key) {
    return Status::InvalidArgument("--tls-key: no unencrypted PEM private key in it");
  }
  if (X509_check_private_key(certificate.get(), private_key.get()) != 1) {
    return Status::InvalidArgument("--tls-key is not the key of --tls-cert");
  }
  if (!options.tls_client_ca_pem.empty() && !FirstCertificate(options.tls_client_ca_pem)) {
    return Status::InvalidArgument("--tls-client-ca: no PEM certificate in it");
  }
  ERR_clear_error();
  return Status::OK();
}

// The one place where the transport's security is decided.
std::shared_ptr<grpc::ServerCredentials> ServerCredentials(const CoordinatorOptions& options) {
  if (options.tls_cert_pem.empty()) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions ssl(
      options.tls_client_ca_pem.empty()
          ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
          : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  ssl.pem_root_certs = options.tls_client_ca_pem;
  ssl.pem_key_cert_pairs.push_back({options.tls_key_pem, options.tls_cert_pem});
  return grpc::SslServerCredentials(ssl);
}

std::string HostOf(const std::string& listen) {
  size_t colon = listen.rfind(':');
  return colon == std::string::npos ? listen : listen.substr(0, colon);
}

}  // namespace

bool IsLoopbackAddress(const std::string& listen) {
  if (listen.rfind("unix:", 0) == 0) return true;
  std::string host = HostOf(listen);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host == "localhost" || host == "::1") return true;
  in_addr ipv4{};
  return inet_pton(AF_INET, host.c_str(), &ipv4) == 1 && (ntohl(ipv4.s_addr) >> 24) == 127;
}

StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Start(
    const CoordinatorOptions& options) {
  if (options.token.empty() && !IsLoopbackAddress(options.listen)) {
    return Status::InvalidArgument(
        fmt::format("refusing to listen on {} without a token: anyone who can reach it could "
                    "run and cancel sweeps. Pass --token-file FILE (or set ABLATE_TOKEN), or "
                    "listen on 127.0.0.1",
                    options.listen));
  }
  ABLATE_RETURN_IF_ERROR(CheckTls(options));
  std::unique_ptr<CoordinatorServer> s(new CoordinatorServer(options));
  Clock* clock = options.clock;
  ABLATE_ASSIGN_OR_RETURN(s->db_, OpenStore(options.db_path, options.store));
  ABLATE_ASSIGN_OR_RETURN(s->wal_checkpointer_,
                          WalCheckpointer::Start(options.db_path, s->db_.get()));
  s->writer_ = std::make_unique<Writer>(s->db_.get(), options.writer);
  s->workers_ = std::make_unique<WorkerManager>(s->writer_.get(), clock);
  s->jobs_ = std::make_unique<JobManager>(s->writer_.get(), clock);
  s->sweeps_ = std::make_unique<SweepManager>(s->writer_.get(), clock);
  std::string checkpoint_dir =
      options.checkpoint_dir.empty() ? options.db_path + ".ckpt" : options.checkpoint_dir;
  s->checkpoints_ = std::make_unique<CheckpointManager>(checkpoint_dir, s->writer_.get(), clock);
  ABLATE_RETURN_IF_ERROR(s->checkpoints_->Start());
  s->results_ = std::make_unique<ResultsManager>(options.db_path, s->writer_.get());
  ABLATE_RETURN_IF_ERROR(
      Await([&](Writer::Done done) { s->jobs_->RenewLeasesAfterRestart(std::move(done)); }));

  s->coordinator_service_ = std::make_unique<CoordinatorService>(s->workers_.get(), s->jobs_.get(),
                                                                 s->checkpoints_.get(), &s->gate_);
  s->sweeps_service_ =
      std::make_unique<SweepsService>(s->sweeps_.get(), s->jobs_.get(), s->workers_.get(),
                                      s->results_.get(), s->checkpoints_.get(), &s->gate_);
  s->gate_.RequireToken(options.token);
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
  spdlog::info("coordinator serving {} on {} ({}, {}), checkpoints in {}", options.db_path,
               s->address_,
               options.tls_cert_pem.empty()        ? "plaintext"
               : options.tls_client_ca_pem.empty() ? "TLS"
                                                   : "mutual TLS",
               options.token.empty() ? "no token" : "token required", checkpoint_dir);
  return s;
}

CoordinatorServer::~CoordinatorServer() { Shutdown(); }

void CoordinatorServer::Shutdown(int grace_ms) {
  {
    MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  wake_.SignalAll();
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
  MutexLock lock(&mu_);
  while (!StoppingWithin(std::chrono::milliseconds(options_.lease_sweep_ms))) {
    mu_.Unlock();
    jobs_->ExpireLeases([](Status status) {
      if (!status.ok()) spdlog::warn("lease sweep: {}", status.ToString());
    });
    mu_.Lock();
  }
}

bool CoordinatorServer::StoppingWithin(std::chrono::milliseconds period) {
  const auto deadline = std::chrono::steady_clock::now() + period;
  bool timed_out = false;
  while (!stopping_ && !timed_out) timed_out = wake_.WaitUntil(deadline);
  return stopping_;
}

}  // namespace ablate
