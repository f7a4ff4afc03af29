// ablate-coordinator: serves sweeps to workers and to the CLI from one
// SQLite database. Prints "listening on HOST:PORT" on stdout once it serves
// (logs go to stderr, so stdout stays machine-readable); SIGTERM or SIGINT
// shut it down gracefully.
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <map>
#include <string>

#include "coordinator/server.h"

int main(int argc, char** argv) {
  ablate::CoordinatorOptions options;
  std::string log_level = "info";
  std::string sync = "normal";

  CLI::App app{"ablate coordinator: hands out sweep jobs to workers and keeps their results"};
  app.add_option("--db", options.db_path, "SQLite database file (created if missing)")->required();
  app.add_option("--listen", options.listen, "HOST:PORT to serve on; port 0 picks a free one")
      ->capture_default_str();
  app.add_option("--checkpoint-dir", options.checkpoint_dir,
                 "where job checkpoints are kept (default: the database path + .ckpt)");
  app.add_option("--sync", sync,
                 "normal: commits survive a process crash; full: also a power loss, slower")
      ->check(CLI::IsMember({"normal", "full"}))
      ->capture_default_str();
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  spdlog::set_default_logger(spdlog::stderr_color_mt("coordinator"));
  spdlog::set_level(spdlog::level::from_str(log_level));
  options.store.sync =
      sync == "full" ? ablate::StoreOptions::Sync::kFull : ablate::StoreOptions::Sync::kNormal;

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
