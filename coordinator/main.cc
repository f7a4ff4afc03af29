// ablate-coordinator: serves sweeps to workers and to the CLI from one
// SQLite database. Prints "listening on HOST:PORT" on stdout once it serves
// (logs go to stderr, so stdout stays machine-readable); SIGTERM or SIGINT
// shut it down gracefully.
//
// `ablate-coordinator health` asks a running coordinator's standard health
// service whether it is SERVING (exit 0) or not (exit 1), for container
// health checks; it needs no token.
#include <absl/synchronization/mutex.h>
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "coordinator/server.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "proto/rpc.h"

namespace {

// Exit codes of `health`.
constexpr int kServing = 0;
constexpr int kNotServing = 1;

int CheckHealth(const ablate::ClientOptions& client, double timeout_seconds) {
  auto health = grpc::health::v1::Health::NewStub(ablate::MakeChannel(client));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(static_cast<int64_t>(timeout_seconds * 1000)));
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse reply;
  grpc::Status status = health->Check(&context, request, &reply);
  if (!status.ok()) {
    std::fprintf(stderr, "ablate-coordinator health: %s: %s\n", client.address.c_str(),
                 ablate::FromGrpc(status).ToString().c_str());
    return kNotServing;
  }
  const bool serving = reply.status() == grpc::health::v1::HealthCheckResponse::SERVING;
  std::printf("%s\n",
              grpc::health::v1::HealthCheckResponse::ServingStatus_Name(reply.status()).c_str());
  return serving ? kServing : kNotServing;
}

// Reads a PEM flag's file into `*into`; false (after printing why) on error.
bool LoadPem(const std::string& path, std::string* into) {
  if (path.empty()) return true;
  auto pem = ablate::ReadPemFile(path);
  if (!pem.ok()) {
    spdlog::error("cannot start: {}", pem.status().message());
    return false;
  }
  *into = std::move(pem).value();
  return true;
}

// The flags of serving, as given; Resolve turns them into options.
struct ServeFlags {
  ablate::CoordinatorOptions options;
  std::string log_level = "info";
  std::string sync = "normal";
  std::string token_file, tls_cert, tls_key, tls_client_ca;
};

void AddServeFlags(CLI::App* app, ServeFlags* f) {
  app->add_option("--db", f->options.db_path, "SQLite database file (created if missing)");
  app->add_option("--listen", f->options.listen,
                  "HOST:PORT to serve on; port 0 picks a free one. A non-loopback address needs "
                  "a token")
      ->capture_default_str();
  app->add_option("--checkpoint-dir", f->options.checkpoint_dir,
                  "where job checkpoints are kept (default: the database path + .ckpt)");
  app->add_option("--sync", f->sync,
                  "normal: commits survive a process crash; full: also a power loss, slower")
      ->check(CLI::IsMember({"normal", "full"}))
      ->capture_default_str();
  app->add_option("--log-level", f->log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  app->add_option("--token-file", f->token_file,
                  "file with the shared token every client must send (or set ABLATE_TOKEN)")
      ->envname("ABLATE_TOKEN_FILE");
  app->add_option("--tls-cert", f->tls_cert, "server certificate chain (PEM): serve TLS only");
  app->add_option("--tls-key", f->tls_key, "private key (PEM) of --tls-cert");
  app->add_option("--tls-client-ca", f->tls_client_ca,
                  "CA (PEM) whose certificates clients must present (mutual TLS)");
}

// Completes the options from the flags: the database's sync, the token (a
// file, or $ABLATE_TOKEN) and the TLS files. False, after logging why, when
// one cannot be had.
bool Resolve(ServeFlags* f) {
  ablate::CoordinatorOptions& options = f->options;
  if (options.db_path.empty()) {
    spdlog::error("cannot start: --db is required");
    return false;
  }
  options.store.sync =
      f->sync == "full" ? ablate::StoreOptions::Sync::kFull : ablate::StoreOptions::Sync::kNormal;
  if (!f->token_file.empty()) {
    auto token = ablate::ReadTokenFile(f->token_file);
    if (!token.ok()) {
      spdlog::error("cannot start: --token-file {}", token.status().message());
      return false;
    }
    options.token = std::move(token).value();
  } else if (const char* env = std::getenv("ABLATE_TOKEN")) {
    auto token = ablate::ParseToken(env, "$ABLATE_TOKEN");
    if (!token.ok()) {
      spdlog::error("cannot start: {}", token.status().message());
      return false;
    }
    options.token = std::move(token).value();
  }
  return LoadPem(f->tls_cert, &options.tls_cert_pem) && LoadPem(f->tls_key, &options.tls_key_pem) &&
         LoadPem(f->tls_client_ca, &options.tls_client_ca_pem);
}

// Serves until SIGTERM or SIGINT, then shuts down gracefully. Returns the
// exit code.
int Serve(const ablate::CoordinatorOptions& options) {
  // A file-size limit (ulimit -f) must fail the write, which the writer
  // reports as Unavailable and retries, rather than kill the process.
  signal(SIGXFSZ, SIG_IGN);
  // Blocked before any thread starts, so every thread inherits the mask and
  // the signals arrive only at the sigwait below.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto server = ablate::CoordinatorServer::Start(options);
  if (!server.ok()) {
    spdlog::error("cannot start: {}", server.status().ToString());
    return 1;
  }
  std::printf("listening on %s\n", (*server)->address().c_str());
  std::fflush(stdout);

  int signal = 0;
  sigwait(&signals, &signal);
  spdlog::info("{}: shutting down", signal == SIGTERM ? "SIGTERM" : "SIGINT");
  (*server)->Shutdown();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Debian builds Abseil without NDEBUG, which leaves lock-order checking on
  // for every absl::Mutex inside gRPC: a global graph behind a global lock,
  // about 5% of the coordinator's CPU under a thousand workers (bench/
  // coordinator_load). The coordinator holds no absl::Mutex of its own.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  CLI::App app{"ablate coordinator: hands out sweep jobs to workers and keeps their results"};
  app.require_subcommand(0, 1);
  ServeFlags serve;
  AddServeFlags(&app, &serve);

  ablate::ClientOptions client;
  client.address = "127.0.0.1:50051";
  double timeout_seconds = 5;
  CLI::App* health = app.add_subcommand(
      "health", "Exit 0 if the coordinator's health service answers SERVING, 1 otherwise");
  ablate::AddClientFlags(health, &client);
  health->add_option("--timeout", timeout_seconds, "seconds to wait for the answer")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  if (*health) return CheckHealth(client, timeout_seconds);

  spdlog::set_default_logger(spdlog::stderr_color_mt("coordinator"));
  spdlog::set_level(spdlog::level::from_str(serve.log_level));
  if (!Resolve(&serve)) return 2;
  return Serve(serve.options);
}
