#include "cli/results_commands.h"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <memory>

#include "cli/commands.h"
#include "cli/report.h"
#include "cli/results_format.h"
#include "cli/source.h"
#include "cli/table.h"

namespace ablate {

namespace {

struct ResultsOptions {
  std::string sweep;
  std::string group_by;
  std::string metric;  // empty: the sweep's own
  std::string at = "final";
  std::string format = "table";
  bool include_unfinished = false;
  SourceOptions source;
};

struct CurvesOptions {
  std::string sweep;
  std::string group_by;
  std::string metric;  // empty: the sweep's own
  int points = 0;
  std::string format = "csv";
  bool include_unfinished = false;
  SourceOptions source;
};

struct ReportOptions {
  std::string sweep;
  std::string output;
  SourceOptions source;
};

// Opens the source and resolves SWEEP to an id.
StatusOr<std::unique_ptr<Source>> OpenSweep(const SourceOptions& options, const std::string& sweep,
                                            v1::SweepRef* ref) {
  ABLATE_ASSIGN_OR_RETURN(std::unique_ptr<Source> source, Source::Open(options));
  ABLATE_ASSIGN_OR_RETURN(int64_t id, source->ResolveSweep(sweep));
  ref->set_id(id);
  return source;
}

int RunResults(const ResultsOptions& options) {
  const char* command = "results";
  v1::ResultsRequest request;
  Status flags = ParseValueFlags(options.metric, options.at, &request);
  if (!flags.ok()) return ReportError(command, flags);
  StatusOr<std::vector<std::string>> group_by = ParseGroupBy(options.group_by);
  if (!group_by.ok()) return ReportError(command, group_by.status());
  for (const std::string& name : *group_by) request.add_group_by(name);
  request.set_include_unfinished(options.include_unfinished);
  StatusOr<Format> format =
      ParseFormat(options.format, {Format::kTable, Format::kCsv, Format::kJson});
  if (!format.ok()) return ReportError(command, format.status());

  auto source = OpenSweep(options.source, options.sweep, request.mutable_sweep());
  if (!source.ok()) return ReportError(command, source.status());
  v1::ResultsResponse response;
  Status status = (*source)->Results(request, &response);
  if (!status.ok()) return ReportError(command, status);
  request.set_metric(response.metric());
  if (*format == Format::kTable) {
    std::fputs(ResultsTable(request, response).c_str(), stdout);
    return 0;
  }
  std::fputs(
      (*format == Format::kCsv ? ResultsCsv(request, response) : ResultsJson(request, response))
          .c_str(),
      stdout);
  std::fputs(
      LeftOutFooter(response.left_out(), request.include_unfinished(), ValueName(request)).c_str(),
      stderr);
  return 0;
}

int RunCurves(const CurvesOptions& options) {
  const char* command = "curves";
  v1::CurvesRequest request;
  Status metric = ParseMetric(options.metric, request.mutable_metric());
  if (!metric.ok()) return ReportError(command, metric);
  StatusOr<std::vector<std::string>> group_by = ParseGroupBy(options.group_by);
  if (!group_by.ok()) return ReportError(command, group_by.status());
  for (const std::string& name : *group_by) request.add_group_by(name);
  if (options.points < 0) {
    return ReportError(
        command,
        Status::InvalidArgument("--points: " + std::to_string(options.points) + " is negative"));
  }
  request.set_points(options.points);
  request.set_include_unfinished(options.include_unfinished);
  StatusOr<Format> format = ParseFormat(options.format, {Format::kCsv, Format::kJson});
  if (!format.ok()) return ReportError(command, format.status());

  auto source = OpenSweep(options.source, options.sweep, request.mutable_sweep());
  if (!source.ok()) return ReportError(command, source.status());
  v1::CurvesResponse response;
  Status status = (*source)->Curves(request, &response);
  if (!status.ok()) return ReportError(command, status);
  std::fputs((*format == Format::kCsv ? CurvesCsv(response) : CurvesJson(response)).c_str(),
             stdout);
  std::fputs(
      LeftOutFooter(response.left_out(), request.include_unfinished(), response.metric() + " point")
          .c_str(),
      stderr);
  return 0;
}

int RunReport(const ReportOptions& options) {
  const char* command = "report";
  v1::SweepRef sweep;
  auto source = OpenSweep(options.source, options.sweep, &sweep);
  if (!source.ok()) return ReportError(command, source.status());
  StatusOr<ReportData> data = CollectReport(**source, sweep);
  if (!data.ok()) return ReportError(command, data.status());
  const std::string html = RenderReport(*data);
  std::ofstream file(options.output, std::ios::binary | std::ios::trunc);
  file << html;
  file.close();
  if (!file) {
    return ReportError(command, Status::IOError("cannot write " + options.output));
  }
  std::printf("wrote %s\n", options.output.c_str());
  return 0;
}

}  // namespace

void AddResultsCommands(CLI::App* app) {
  auto results = std::make_shared<ResultsOptions>();
  CLI::App* cmd = app->add_subcommand(
      "results", "A sweep's final (or best, or at-step) bpc averaged by group, with spread");
  cmd->add_option("sweep", results->sweep, "Sweep name (the newest of that name) or id")
      ->required();
  cmd->add_option("--group-by", results->group_by,
                  "Factors to group by, comma-separated (cell, layer_norm, init, seed or dotted "
                  "keys), or none for one row per job")
      ->required();
  cmd->add_option("--metric", results->metric, kMetricHelp);
  cmd->add_option("--at", results->at,
                  "final, best (the curve's minimum; its maximum for a sweep metric whose goal is "
                  "maximize) or step:N")
      ->capture_default_str();
  cmd->add_option("--format", results->format, "table, csv or json")->capture_default_str();
  cmd->add_flag("--include-unfinished", results->include_unfinished,
                "Count pending and running jobs at their latest point (marked)");
  AddSourceFlags(cmd, &results->source);
  cmd->callback([results] { FinishCommand(RunResults(*results)); });

  auto curves = std::make_shared<CurvesOptions>();
  cmd = app->add_subcommand("curves", "Learning curves averaged by group on a common step grid");
  cmd->add_option("sweep", curves->sweep, "Sweep name (the newest of that name) or id")->required();
  cmd->add_option("--group-by", curves->group_by,
                  "Factors to group by, comma-separated, or none for one curve per job")
      ->required();
  cmd->add_option("--metric", curves->metric, kMetricHelp);
  cmd->add_option("--points", curves->points,
                  "K evenly spaced steps; 0: every step some job evaluated at")
      ->capture_default_str();
  cmd->add_option("--format", curves->format, "csv or json")->capture_default_str();
  cmd->add_flag("--include-unfinished", curves->include_unfinished,
                "Add the partial curves of pending and running jobs");
  AddSourceFlags(cmd, &curves->source);
  cmd->callback([curves] { FinishCommand(RunCurves(*curves)); });

  auto report = std::make_shared<ReportOptions>();
  cmd = app->add_subcommand("report", "A self-contained HTML report of a sweep");
  cmd->add_option("sweep", report->sweep, "Sweep name (the newest of that name) or id")->required();
  cmd->add_option("-o,--output", report->output, "The HTML file to write")->required();
  AddSourceFlags(cmd, &report->source);
  cmd->callback([report] { FinishCommand(RunReport(*report)); });
}

Status PrintResultsTable(Source& source, const std::string& sweep,
                         const std::vector<std::string>& group_by, std::ostream& out) {
  v1::ResultsRequest request;
  *request.mutable_sweep() = ParseSweepRef(sweep);
  for (const std::string& name : group_by) request.add_group_by(name);
  request.set_at(v1::VALUE_AT_FINAL);
  v1::ResultsResponse response;
  ABLATE_RETURN_IF_ERROR(source.Results(request, &response));
  request.set_metric(response.metric());
  out << ResultsTable(request, response);
  return Status::OK();
}

}  // namespace ablate
