// `ablate status [SWEEP]`: progress of one sweep or all, once or refreshed
// in place with --watch until every sweep shown is finished or the user
// interrupts.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <memory>
#include <thread>

#include "cli/commands.h"
#include "cli/source.h"
#include "cli/status_view.h"
#include "cli/table.h"

namespace ablate {

namespace {

struct StatusOptions {
  std::string sweep;
  double watch_seconds = 0;  // 0: print once
  std::string format = "table";
  SourceOptions source;
};

std::atomic<bool> g_interrupted{false};
void OnInterrupt(int) { g_interrupted = true; }

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A named sweep is one JSON object; all sweeps a list of them.
std::string StatusJson(const v1::GetStatusResponse& status, bool one) {
  auto sweep_json = [](const v1::SweepStatus& sweep) {
    nlohmann::ordered_json json = SweepCountsJson(sweep.sweep());
    json["checkpoint_bytes"] = sweep.checkpoint_bytes();
    return json;
  };
  if (one && status.sweeps_size() == 1) return sweep_json(status.sweeps(0)).dump();
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const v1::SweepStatus& sweep : status.sweeps()) list.push_back(sweep_json(sweep));
  return list.dump();
}

int RunStatus(const StatusOptions& options) {
  auto format = ParseFormat(options.format, {Format::kTable, Format::kJson});
  if (!format.ok()) return ReportError("status", format.status());
  if (options.watch_seconds < 0) {
    return ReportError("status",
                       Status::InvalidArgument("--watch: " + std::to_string(options.watch_seconds) +
                                               " is not a positive number of seconds"));
  }
  auto source = Source::Open(options.source);
  if (!source.ok()) return ReportError("status", source.status());
  v1::GetStatusRequest request;
  if (!options.sweep.empty()) {
    auto id = (*source)->ResolveSweep(options.sweep);
    if (!id.ok()) return ReportError("status", id.status());
    request.mutable_sweep()->set_id(*id);
  }

  const bool watch = options.watch_seconds > 0;
  const bool terminal = isatty(STDOUT_FILENO);
  if (watch) {
    std::signal(SIGINT, OnInterrupt);
    std::signal(SIGTERM, OnInterrupt);
  }
  StatusView view;
  int drawn_lines = 0;
  while (true) {
    v1::GetStatusResponse status;
    Status got = (*source)->GetStatus(request, &status);
    if (!got.ok() && !(watch && IsTransient(got))) return ReportError("status", got);
    std::string frame;
    if (got.ok()) {
      view.Update(status, std::chrono::steady_clock::now(), NowMs());
      frame = *format == Format::kJson ? StatusJson(status, !options.sweep.empty()) + "\n"
                                       : view.Render();
    } else {
      frame = "ablate status: " + got.message() + " (retrying)\n";
    }
    // On a terminal the previous frame is overwritten in place.
    if (terminal && watch && drawn_lines > 0) std::printf("\033[%dA\r\033[J", drawn_lines);
    std::fputs(frame.c_str(), stdout);
    if (watch && !terminal && *format == Format::kTable) std::fputs("\n", stdout);
    std::fflush(stdout);
    drawn_lines = static_cast<int>(std::count(frame.begin(), frame.end(), '\n'));
    if (!watch || view.Finished()) return 0;
    const auto until =
        std::chrono::steady_clock::now() + std::chrono::duration<double>(options.watch_seconds);
    while (!g_interrupted && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    // Watching ends when the user says so; that is not a failure.
    if (g_interrupted) return 0;
  }
}

}  // namespace

void AddStatusCommand(CLI::App* app) {
  auto options = std::make_shared<StatusOptions>();
  CLI::App* cmd = app->add_subcommand("status", "Progress of the sweeps and their running jobs");
  cmd->add_option("sweep", options->sweep, "Sweep name (the newest of that name) or id");
  cmd->add_option("--watch", options->watch_seconds,
                  "Refresh every SECONDS (default 2) until every sweep is finished")
      ->expected(0, 1)
      ->default_str("2");
  cmd->add_option("--format", options->format, "table or json");
  AddSourceFlags(cmd, &options->source);
  cmd->callback([options] { FinishCommand(RunStatus(*options)); });
}

}  // namespace ablate
