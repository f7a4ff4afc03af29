// `ablate checkpoint JOB -o PATH`: a job's checkpoint out of the coordinator
// (or its database and checkpoint directory), checked against its SHA-256.
// For a done job of a sweep that keeps them (schedule.keep_checkpoints:
// final), the trained model; `ablate-worker train CONFIG --resume PATH`
// loads it.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "cli/source.h"

namespace ablate {

namespace {

struct CheckpointOptions {
  int64_t job_id = 0;
  std::string output;
  SourceOptions source;
};

int RunCheckpoint(const CheckpointOptions& options) {
  const char* command = "checkpoint";
  if (options.output.empty()) {
    return ReportError(command, Status::InvalidArgument("-o PATH: where to write the checkpoint"));
  }
  auto source = Source::Open(options.source);
  if (!source.ok()) return ReportError(command, source.status());
  StatusOr<v1::CheckpointInfo> info = (*source)->FetchCheckpoint(options.job_id, options.output);
  if (!info.ok()) return ReportError(command, info.status());
  std::printf("%s\n", fmt::format("job {}: checkpoint at step {}, {} bytes, sha256 {} -> {}",
                                  options.job_id, info->step(), info->total_bytes(),
                                  info->sha256_hex(), options.output)
                          .c_str());
  return 0;
}

}  // namespace

void AddCheckpointCommand(CLI::App* app) {
  auto options = std::make_shared<CheckpointOptions>();
  CLI::App* cmd = app->add_subcommand(
      "checkpoint",
      "Fetch a job's checkpoint (a done job's trained model, where its sweep keeps them)");
  cmd->add_option("job", options->job_id, "Job id (as `ablate results --group-by none` lists)")
      ->required()
      ->check(CLI::PositiveNumber);
  cmd->add_option("-o,--output", options->output, "File to write (replaced whole)")->required();
  cmd->add_option("--checkpoint-dir", options->source.checkpoint_dir,
                  "With --db: the coordinator's --checkpoint-dir (default: the database path + "
                  ".ckpt)");
  AddSourceFlags(cmd, &options->source);
  cmd->callback([options] { FinishCommand(RunCheckpoint(*options)); });
}

}  // namespace ablate
