// `ablate launch SPEC.yaml`: sends a spec to the coordinator. With --dry-run
// it contacts nothing and stores nothing: it expands the grid here and prints
// the jobs with their sizes and an estimate of the sweep's cost, from
// training steps timed on this machine; for a program sweep, each job's
// exact command line instead.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/estimate.h"
#include "cli/sweeps_client.h"
#include "cli/table.h"
#include "common/run_config.h"
#include "common/spec.h"

namespace ablate {

namespace {

struct LaunchOptions {
  std::string spec_path;
  bool extend = false;
  bool dry_run = false;
  std::string format = "table";
  ClientOptions client;
  EstimateOptions estimate;
};

std::string Hours(double seconds) {
  const double hours = seconds / 3600;
  return hours >= 10 ? fmt::format("{:.0f}", hours) : fmt::format("{:.2g}", hours);
}

// The estimate's provenance and caveats, in words.
std::string DescribeEstimate(const SweepEstimate& e, const std::vector<Job>& jobs) {
  std::vector<int64_t> trained;
  for (const Job& job : jobs) {
    if (std::find(trained.begin(), trained.end(), job.config.train.seq) == trained.end()) {
      trained.push_back(job.config.train.seq);
    }
  }
  std::string text = fmt::format(
      "Estimated from real training steps timed on this machine ({}, {} thread{}{}), {} model "
      "shape{}, batch as configured, at sequence length {}",
      e.device, e.threads, e.threads == 1 ? "" : "s", e.blas.empty() ? "" : ", OpenBLAS " + e.blas,
      e.shapes, e.shapes == 1 ? "" : "s", fmt::join(e.seq_measured, ", "));
  if (e.scaled) {
    text += fmt::format(
        " and scaled linearly to the jobs' {} (which overstates clipping and the Adam update a "
        "little)",
        fmt::join(trained, ", "));
  }
  text += fmt::format(
      "; evaluation counted at a third of a training step per position. Measuring took {:.1f} s. "
      "An estimate: load, data and hardware change it.",
      e.measuring_seconds);
  for (const std::string& path : e.unknown_corpora) {
    text += "\nEvaluation not counted for data.path " + path + ": it is not readable here.";
  }
  return text;
}

// The jobs' train.precision, in words, and whether it applies on the
// estimate's device: one value for every job, or each job's in its column
// (the setting is then an axis).
std::string DescribePrecision(const std::vector<Job>& jobs, bool gpu) {
  std::vector<std::string> names;
  for (Precision precision : {Precision::kFp32, Precision::kTf32, Precision::kBf16}) {
    const bool used = std::any_of(jobs.begin(), jobs.end(), [&](const Job& job) {
      return job.config.train.precision == precision;
    });
    if (used) names.push_back(PrecisionName(precision));
  }
  const std::string which =
      names.size() == 1 ? names[0] + " for every job"
                        : fmt::format("{} as the precision column says", fmt::join(names, " or "));
  std::string text = "train.precision: " + which + " (the recurrent matrix products on CUDA)";
  if (!gpu) text += "; ignored here: the CPU trains, and was timed, in float32";
  return text + ".";
}

nlohmann::ordered_json DryRunJson(const SweepSpec& spec, const std::vector<Job>& jobs,
                                  const SweepEstimate& e) {
  nlohmann::ordered_json out;
  out["sweep"] = spec.name;
  out["dry_run"] = true;
  out["jobs"] = nlohmann::ordered_json::array();
  for (size_t i = 0; i < jobs.size(); ++i) {
    nlohmann::ordered_json job;
    job["order"] = jobs[i].order;
    job["factors"] = jobs[i].factors;
    const Precision precision = jobs[i].config.train.precision;
    job["precision"] = PrecisionName(precision);
    job["effective_precision"] = PrecisionName(EffectivePrecision(precision, e.device));
    job["parameters"] = e.jobs[i].parameters;
    job["macs_per_symbol"] = e.jobs[i].macs_per_symbol;
    job["flops_per_step"] = e.jobs[i].flops_per_step;
    job["eval_flops"] = e.jobs[i].eval_flops;
    job["flops"] = e.jobs[i].flops;
    job["estimated_seconds"] = e.jobs[i].seconds;
    out["jobs"].push_back(std::move(job));
  }
  out["total_flops"] = e.flops;
  out["estimated_seconds"] = e.seconds;
  out[IsCudaDevice(e.device) ? "estimated_gpu_hours" : "estimated_cpu_hours"] = e.seconds / 3600;
  out["device"] = e.device;
  out["threads"] = e.threads;
  out["seq_measured"] = e.seq_measured;
  out["measuring_seconds"] = e.measuring_seconds;
  out["evaluation_not_counted_for"] = e.unknown_corpora;
  return out;
}

// One row per job: its factors and estimated size; exact numbers for CSV,
// rounded ones for reading.
Table DryRunTable(const SweepSpec& spec, const std::vector<Job>& jobs, const SweepEstimate& e,
                  Format format) {
  std::vector<std::string> keys;
  for (const GridAxis& axis : spec.axes) keys.push_back(axis.key);
  std::vector<std::string> header = {"order"};
  for (std::string& name : FactorHeader(keys)) header.push_back(std::move(name));
  for (const char* name :
       {"parameters", "FLOPs/step", "eval FLOPs", "FLOPs/job", "est. time/job"}) {
    header.push_back(name);
  }
  Table table(header);
  for (size_t i = 0; i < jobs.size(); ++i) {
    const JobEstimate& job = e.jobs[i];
    std::vector<std::string> row = {std::to_string(jobs[i].order)};
    for (const std::string& key : keys) row.push_back(FactorCell(jobs[i].factors.at(key)));
    if (format == Format::kCsv) {
      row.push_back(std::to_string(job.parameters));
      row.push_back(fmt::format("{:.6g}", job.flops_per_step));
      row.push_back(fmt::format("{:.6g}", job.eval_flops));
      row.push_back(fmt::format("{:.6g}", job.flops));
      row.push_back(fmt::format("{:.1f}", job.seconds));
    } else {
      row.push_back(FormatThousands(job.parameters));
      row.push_back(FormatSi(job.flops_per_step));
      row.push_back(job.eval_symbols ? FormatSi(job.eval_flops) : "-");
      row.push_back(FormatSi(job.flops));
      row.push_back(FormatDuration(job.seconds));
    }
    table.AddRow(std::move(row));
  }
  return table;
}

// A program sweep's dry run: each job's exact command line. Nothing is
// timed: ablate can time its own trainer, not a program it has never seen.
int ProgramDryRun(const SweepSpec& spec, const std::vector<Job>& jobs, Format format) {
  std::vector<std::string> keys;
  for (const GridAxis& axis : spec.axes) keys.push_back(axis.key);
  if (format == Format::kJson) {
    nlohmann::ordered_json out;
    out["sweep"] = spec.name;
    out["dry_run"] = true;
    out["program"] = spec.program->program;
    out["jobs"] = nlohmann::ordered_json::array();
    for (const Job& job : jobs) {
      nlohmann::ordered_json entry;
      entry["order"] = job.order;
      entry["factors"] = job.factors;
      entry["config"] = job.parameters;
      entry["command"] = job.command;
      entry["command_line"] = ShellQuote(job.command);
      out["jobs"].push_back(std::move(entry));
    }
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  std::vector<std::string> header = {"order"};
  header.insert(header.end(), keys.begin(), keys.end());
  header.push_back("command");
  Table table(header);
  for (const Job& job : jobs) {
    std::vector<std::string> row = {std::to_string(job.order)};
    for (const std::string& key : keys) row.push_back(FactorCell(job.factors.at(key)));
    row.push_back(ShellQuote(job.command));
    table.AddRow(std::move(row));
  }
  if (format == Format::kCsv) {
    std::printf("%s", table.ToCsv().c_str());
    return 0;
  }
  std::printf("Dry run of sweep '%s' (%s): %zu jobs running %s. Nothing was sent or stored.\n\n",
              spec.name.c_str(), spec.filename.c_str(), jobs.size(),
              spec.program->program.empty() ? "their command" : spec.program->program.c_str());
  std::printf("%s\n", table.ToText().c_str());
  const std::vector<std::string>& command = spec.program->command;
  std::printf("Each worker runs the command in its own working directory%s.\n",
              std::find(command.begin(), command.end(), "${args_json_file}") == command.end()
                  ? ""
                  : "; ${args_json_file} becomes the path of the job's config file there");
  std::printf(
      "No cost estimate: ablate times only its built-in trainer, not a program it has never "
      "run.\n");
  return 0;
}

int DryRun(const LaunchOptions& options, const SweepSpec& spec, const std::vector<Job>& jobs,
           Format format) {
  if (spec.program) return ProgramDryRun(spec, jobs, format);
  auto estimate = EstimateSweep(jobs, options.estimate);
  if (!estimate.ok()) return ReportError("launch", estimate.status());
  const SweepEstimate& e = *estimate;
  if (format == Format::kJson) {
    std::printf("%s\n", DryRunJson(spec, jobs, e).dump(2).c_str());
    return 0;
  }
  const Table table = DryRunTable(spec, jobs, e, format);
  if (format == Format::kCsv) {
    std::printf("%s", table.ToCsv().c_str());
    return 0;
  }
  const bool gpu = IsCudaDevice(e.device);
  std::printf("Dry run of sweep '%s' (%s): %zu jobs. Nothing was sent or stored.\n\n",
              spec.name.c_str(), spec.filename.c_str(), jobs.size());
  std::printf("%s\n", table.ToText().c_str());
  std::string cost = gpu ? fmt::format("about {} GPU-hours on {}", Hours(e.seconds), e.device)
                         : fmt::format("about {} CPU-hours at {} thread{} per job ({} core-hours)",
                                       Hours(e.seconds), e.threads, e.threads == 1 ? "" : "s",
                                       Hours(e.seconds * e.threads));
  std::printf("Total: %zu jobs, %s FLOPs, %s, one job at a time.\n", jobs.size(),
              FormatSi(e.flops).c_str(), cost.c_str());
  std::printf("%s\n", DescribePrecision(jobs, gpu).c_str());
  std::printf("%s\n", DescribeEstimate(e, jobs).c_str());
  return 0;
}

int Launch(const LaunchOptions& options) {
  auto format = ParseFormat(options.format, {Format::kTable, Format::kJson, Format::kCsv});
  if (!format.ok()) return ReportError("launch", format.status());
  // Checked here first, so that a bad spec never needs a coordinator.
  auto spec = LoadSpecFile(options.spec_path);
  if (!spec.ok()) return ReportError("launch", spec.status());
  auto jobs = ExpandGrid(*spec);
  if (!jobs.ok()) return ReportError("launch", jobs.status());
  if (options.dry_run) return DryRun(options, *spec, *jobs, *format);

  auto client = SweepsClient::Connect(options.client);
  if (!client.ok()) return ReportError("launch", client.status());
  v1::LaunchRequest request;
  request.set_spec_text(spec->source_text);
  request.set_filename(options.spec_path);
  request.set_extend(options.extend);
  v1::LaunchResponse response;
  Status launched = (*client)->Launch(request, &response);
  if (!launched.ok()) return ReportError("launch", launched);

  if (*format == Format::kJson) {
    nlohmann::ordered_json out;
    out["sweep_id"] = response.sweep_id();
    out["name"] = response.name();
    out["jobs_created"] = response.jobs_created();
    out["jobs_existing"] = response.jobs_existing();
    std::printf("%s\n", out.dump().c_str());
  } else if (*format == Format::kCsv) {
    Table table({"sweep_id", "name", "jobs_created", "jobs_existing"});
    table.AddRow({std::to_string(response.sweep_id()), response.name(),
                  std::to_string(response.jobs_created()),
                  std::to_string(response.jobs_existing())});
    std::printf("%s", table.ToCsv().c_str());
  } else {
    std::printf("sweep %lld '%s': %lld jobs created, %lld already there\n",
                static_cast<long long>(response.sweep_id()), response.name().c_str(),
                static_cast<long long>(response.jobs_created()),
                static_cast<long long>(response.jobs_existing()));
  }
  return 0;
}

}  // namespace

void AddLaunchCommand(CLI::App* app) {
  auto options = std::make_shared<LaunchOptions>();
  CLI::App* cmd = app->add_subcommand("launch", "Start a sweep from a YAML spec");
  cmd->add_option("spec", options->spec_path, "Sweep spec (YAML)")->required();
  cmd->add_flag("--extend", options->extend,
                "Add the spec's new grid points to the newest sweep of its name");
  cmd->add_flag("--dry-run", options->dry_run,
                "Expand and cost the grid here; contact and store nothing");
  cmd->add_option("--device", options->estimate.device,
                  "With --dry-run: where to time training steps (auto, cpu, cuda, cuda:N)");
  cmd->add_option("--threads", options->estimate.threads,
                  "With --dry-run: threads for timing (default: all cores)")
      ->check(CLI::Range(0, 1024));
  cmd->add_option("--format", options->format, "table, json or csv");
  AddClientFlags(cmd, &options->client);
  cmd->callback([options] { FinishCommand(Launch(*options)); });
}

}  // namespace ablate
