// ablate-worker: trains jobs. Without a subcommand it serves a coordinator;
// `train` runs one configuration locally; `data` prepares corpora;
// `time-steps` (hidden: the CLI's, not people's) times steps for an estimate.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>

#include "data/fetch.h"
#include "data/text8.h"
#include "proto/rpc.h"
#include "worker/gpu_supervisor.h"
#include "worker/startup.h"
#include "worker/time_steps_command.h"
#include "worker/train_command.h"
#include "worker/worker_loop.h"

namespace ablate {
namespace {

// The flags of serving a coordinator, the command without a subcommand.
struct ServeFlags {
  WorkerOptions worker;
  std::string gpus;
  // Taken as text: ParseJobsPerGpu checks it, and that it came with --gpus.
  std::string jobs_per_gpu;
  CLI::Option* gpus_opt = nullptr;
  CLI::Option* jobs_per_gpu_opt = nullptr;
};

void AddServeFlags(CLI::App* app, ServeFlags* f) {
  WorkerOptions& worker = f->worker;
  AddClientFlags(app, &worker.client);
  CLI::Option* device_opt = app->add_option("--device", worker.device, "auto, cpu, cuda or cuda:N");
  f->gpus_opt = app->add_option(
      "--gpus", f->gpus,
      "One worker process per GPU: all, or indices such as 0,2; each is named NAME/gpuI and "
      "gets the other flags");
  f->gpus_opt->excludes(device_opt);
  f->jobs_per_gpu_opt = app->add_option(
      "--jobs-per-gpu", f->jobs_per_gpu,
      "With --gpus: N worker processes share each GPU (1 to 64, default 1), named NAME/gpuI.J; "
      "each gets --threads, and the N share the GPU's memory");
  f->jobs_per_gpu_opt->type_name("N");
  app->add_option("--threads", worker.threads, "Intra-op threads (default: all cores)")
      ->check(CLI::Range(0, 1024));
  app->add_option("--data-dir", worker.data_dir,
                  "Cache for corpus: text8 (default $ABLATE_DATA_DIR or ./data)");
  app->add_option("--name", worker.name,
                  "Worker name, stable across restarts and unique among live workers: "
                  "registering a name frees the jobs its previous process held (default HOST-PID)");
  app->add_option("--work-dir", worker.work_dir,
                  "Local checkpoint directory (default: a temp dir)");
  app->add_option("--program-dir", worker.program_dir,
                  "Where a program sweep's command runs, its relative paths found from there "
                  "(default: the current directory)");
  app->add_flag("--exit-when-idle", worker.exit_when_idle,
                "Exit once no job is pending or running anywhere");
  app->add_option("--max-jobs", worker.max_jobs,
                  "Exit after running this many jobs, finished or failed; with --gpus, each "
                  "worker process does (default 0: no limit)")
      ->check(CLI::NonNegativeNumber);
  app->add_option("--poll", worker.idle_poll_seconds, "Seconds between lease attempts when idle")
      ->check(CLI::PositiveNumber);
  app->add_option("--stop-grace", worker.stop_grace_seconds,
                  "Seconds after SIGTERM by which the worker exits, its job released or, if the "
                  "coordinator does not answer by then, left to its lease")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
}

CLI::App* AddTrainCommand(CLI::App* app, TrainCommandOptions* train) {
  CLI::App* cmd = app->add_subcommand("train", "Train one configuration on this machine");
  cmd->add_option("config", train->config_path, "YAML with data:, model: and train:")->required();
  cmd->add_option("--threads", train->threads, "Intra-op threads (default: all cores)")
      ->check(CLI::Range(0, 1024));
  cmd->add_option("--device", train->device, "cpu, cuda, cuda:N or auto");
  cmd->add_option("--format", train->format, "table or json");
  cmd->add_option("--data-dir", train->data_dir,
                  "Cache for corpus: text8 (default $ABLATE_DATA_DIR or ./data)");
  cmd->add_option("--kernel", train->kernel, "auto, fused (CPU) or reference");
  cmd->add_option("--checkpoint", train->checkpoint_path,
                  "Where checkpoints go (train.checkpoint_every, and on stop)");
  cmd->add_option("--resume", train->resume_path, "Start from this checkpoint");
  cmd->add_option("--stop-at", train->stop_at, "Stop after this step")->check(CLI::PositiveNumber);
  return cmd;
}

// `data prepare` and `data fetch`.
struct DataCommands {
  CLI::App* data = nullptr;
  CLI::App* prepare = nullptr;
  CLI::App* fetch = nullptr;
  std::string prepare_in, prepare_out;
  std::string fetch_dir = DefaultDataDir(), fetch_url = kText8Url;
};

void AddDataCommands(CLI::App* app, DataCommands* d) {
  d->data = app->add_subcommand("data", "Prepare corpora");
  d->data->require_subcommand(1);
  d->prepare = d->data->add_subcommand(
      "prepare", "Clean any text or HTML into text8 format (Mahoney's rules)");
  d->prepare->add_option("input", d->prepare_in, "Text or HTML file, - for stdin")->required();
  d->prepare->add_option("output", d->prepare_out, "text8-format file to write")->required();
  d->fetch = d->data->add_subcommand("fetch", "Download and verify text8 into a cache");
  d->fetch->add_option("--data-dir", d->fetch_dir, "Cache directory");
  d->fetch->add_option("--url", d->fetch_url, "Where text8.zip is served");
}

int RunDataCommand(const DataCommands& d) {
  if (*d.prepare) {
    text8::PrepareStats stats;
    Status s = text8::PrepareFile(d.prepare_in, d.prepare_out, &stats);
    if (!s.ok()) {
      std::fprintf(stderr, "ablate-worker data prepare: %s\n", s.message().c_str());
      return 1;
    }
    std::printf("%s\n", text8::FormatPrepareSummary(d.prepare_in, d.prepare_out, stats).c_str());
    return 0;
  }
  text8::FetchOptions options;
  options.data_dir = d.fetch_dir;
  options.url = d.fetch_url;
  auto path = text8::EnsureText8(options, nullptr);
  if (!path.ok()) {
    std::fprintf(stderr, "ablate-worker data fetch: %s\n", path.status().message().c_str());
    return 1;
  }
  std::printf("%s\n", path->c_str());
  return 0;
}

}  // namespace
}  // namespace ablate

int main(int argc, char** argv) {
  CLI::App app{
      "ablate-worker: trains the jobs of ablation sweeps.\n"
      "Without a subcommand it serves a coordinator: ablate-worker --coordinator HOST:PORT"};
  app.require_subcommand(0, 1);
  ablate::ServeFlags serve;
  ablate::AddServeFlags(&app, &serve);
  ablate::TrainCommandOptions train;
  CLI::App* train_cmd = ablate::AddTrainCommand(&app, &train);
  ablate::DataCommands data;
  ablate::AddDataCommands(&app, &data);
  // No group: hidden from --help, since `ablate launch --dry-run` is its user.
  CLI::App* time_steps_cmd = app.add_subcommand(
      "time-steps", "Time trainer steps: a JSON request on stdin, a JSON reply on stdout");
  time_steps_cmd->group("");
  for (CLI::App* cmd : {train_cmd, data.data, time_steps_cmd}) cmd->excludes(serve.gpus_opt);

  CLI11_PARSE(app, argc, argv);
  int jobs_per_gpu = 1;
  if (*serve.jobs_per_gpu_opt) {
    auto parsed = ablate::ParseJobsPerGpu(serve.jobs_per_gpu, !serve.gpus.empty());
    if (!parsed.ok()) {
      std::fprintf(stderr, "ablate-worker: %s\n", parsed.status().message().c_str());
      return 2;
    }
    jobs_per_gpu = *parsed;
  }
  // Training commands restart once with the settings LibTorch's libraries read
  // at start (worker/startup.h); --help, parse errors and `data` need none.
  if (!*data.data) ablate::MaybeRestartForSpeed(argv);

  if (*train_cmd) return ablate::RunTrainCommand(train);
  if (*time_steps_cmd) return ablate::RunTimeStepsCommand();
  if (*data.data) return ablate::RunDataCommand(data);
  spdlog::set_default_logger(spdlog::stderr_color_mt("worker"));
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
  if (!serve.gpus.empty()) {
    return ablate::RunGpuWorkers(serve.gpus, jobs_per_gpu, serve.worker.name, argc, argv);
  }
  return ablate::RunWorker(serve.worker);
}
