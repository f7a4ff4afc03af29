// `ablate workers`: the registered workers, when each was last heard from and
// the jobs it runs.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "cli/source.h"
#include "cli/status_view.h"
#include "cli/table.h"

namespace ablate {

namespace {

struct WorkersOptions {
  std::string format = "table";
  SourceOptions source;
};

int RunWorkers(const WorkersOptions& options) {
  auto format = ParseFormat(options.format, {Format::kTable, Format::kJson, Format::kCsv});
  if (!format.ok()) return ReportError("workers", format.status());
  auto source = Source::Open(options.source);
  if (!source.ok()) return ReportError("workers", source.status());
  v1::ListWorkersResponse workers;
  Status listed = (*source)->ListWorkers(&workers);
  if (!listed.ok()) return ReportError("workers", listed);

  if (*format == Format::kJson) {
    std::printf("%s\n", WorkersJson(workers).dump().c_str());
    return 0;
  }
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  const bool csv = *format == Format::kCsv;
  Table table({"id", "name", "host", "device", "threads", "version",
               csv ? "last_seen_ms" : "last seen", csv ? "running_job_ids" : "running jobs"});
  for (const v1::WorkerInfo& w : workers.workers()) {
    std::string jobs;
    for (int64_t id : w.running_job_ids()) jobs += (jobs.empty() ? "" : " ") + std::to_string(id);
    const double ago = double(now_ms - w.last_seen_ms()) / 1000;
    table.AddRow(
        {std::to_string(w.id()), w.name(), w.host(), w.device(), std::to_string(w.threads()),
         w.version(),
         csv ? std::to_string(w.last_seen_ms()) : FormatDuration(std::max(0.0, ago)) + " ago",
         jobs.empty() && !csv ? "-" : jobs});
  }
  if (csv) {
    std::printf("%s", table.ToCsv().c_str());
  } else if (table.empty()) {
    std::printf("no workers registered in %s\n", (*source)->Describe().c_str());
  } else {
    std::printf("%s", table.ToText().c_str());
  }
  return 0;
}

}  // namespace

void AddWorkersCommand(CLI::App* app) {
  auto options = std::make_shared<WorkersOptions>();
  CLI::App* cmd = app->add_subcommand("workers", "The registered workers and their jobs");
  cmd->add_option("--format", options->format, "table, json or csv");
  AddSourceFlags(cmd, &options->source);
  cmd->callback([options] { FinishCommand(RunWorkers(*options)); });
}

}  // namespace ablate
