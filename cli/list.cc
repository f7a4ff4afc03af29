// `ablate list`: every sweep with its job counts, oldest first.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <ctime>
#include <memory>

#include "cli/commands.h"
#include "cli/source.h"
#include "cli/status_view.h"
#include "cli/table.h"

namespace ablate {

namespace {

struct ListOptions {
  std::string format = "table";
  SourceOptions source;
};

// Local time, to the minute.
std::string FormatTime(int64_t ms) {
  const std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm;
  localtime_r(&t, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M", &tm);
  return text;
}

int RunList(const ListOptions& options) {
  auto format = ParseFormat(options.format, {Format::kTable, Format::kJson, Format::kCsv});
  if (!format.ok()) return ReportError("list", format.status());
  auto source = Source::Open(options.source);
  if (!source.ok()) return ReportError("list", source.status());
  v1::ListSweepsResponse sweeps;
  Status listed = (*source)->ListSweeps(&sweeps);
  if (!listed.ok()) return ReportError("list", listed);

  if (*format == Format::kJson) {
    std::printf("%s\n", SweepListJson(sweeps).dump().c_str());
    return 0;
  }
  Table table({"id", "name", "state", "created", "total", "done", "running", "pending", "failed",
               "cancelled", "description"});
  for (const v1::SweepSummary& s : sweeps.sweeps()) {
    const v1::JobCounts& c = s.counts();
    table.AddRow({std::to_string(s.id()), s.name(), s.state(), FormatTime(s.created_ms()),
                  std::to_string(c.total()), std::to_string(c.done()), std::to_string(c.running()),
                  std::to_string(c.pending()), std::to_string(c.failed()),
                  std::to_string(c.cancelled()), s.description()});
  }
  if (*format == Format::kCsv) {
    std::printf("%s", table.ToCsv().c_str());
  } else if (table.empty()) {
    std::printf("no sweeps in %s\n", (*source)->Describe().c_str());
  } else {
    std::printf("%s", table.ToText().c_str());
  }
  return 0;
}

}  // namespace

void AddListCommand(CLI::App* app) {
  auto options = std::make_shared<ListOptions>();
  CLI::App* cmd = app->add_subcommand("list", "Every sweep with its job counts");
  cmd->add_option("--format", options->format, "table, json or csv");
  AddSourceFlags(cmd, &options->source);
  cmd->callback([options] { FinishCommand(RunList(*options)); });
}

}  // namespace ablate
