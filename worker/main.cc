// ablate-worker: trains jobs. Without a subcommand it serves a coordinator;
// `train` runs one configuration locally; `data` prepares corpora;
// `time-steps` (hidden: the CLI's, not people's) times steps for an estimate.
#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "proto/rpc.h"
#include "worker/gpu_supervisor.h"
#include "worker/startup.h"
#include "data/text8.h"
#include "data/fetch.h"
#include "worker/time_steps_command.h"
#include "worker/train_command.h"
#include "worker/worker_loop.h"

int main(int argc, char** argv) {
  CLI::App app{
      "ablate-worker: trains the jobs of ablation sweeps.\n"
      "Without a subcommand it serves a coordinator: ablate-worker --coordinator HOST:PORT"};
  app.require_subcommand(0, 1);
  ablate::WorkerOptions worker;
  ablate::AddClientFlags(&app, &worker.client);
  CLI::Option* device_opt = app.add_option("--device", worker.device, "auto, cpu, cuda or cuda:N");
  std::string gpus;
  CLI::Option* gpus_opt = app.add_option(
      "--gpus", gpus,
      "One worker process per GPU: all, or indices such as 0,2; each is named NAME/gpuI and "
      "gets the other flags");
  gpus_opt->excludes(device_opt);
  // Taken as text: ParseJobsPerGpu checks it, and that it came with --gpus.
  std::string jobs_per_gpu_text;
  CLI::Option* jobs_per_gpu_opt = app.add_option(
      "--jobs-per-gpu", jobs_per_gpu_text,
      "With --gpus: N worker processes share each GPU (1 to 64, default 1), named NAME/gpuI.J; "
      "each gets --threads, and the N share the GPU's memory");
  jobs_per_gpu_opt->type_name("N");
  app.add_option("--threads", worker.threads, "Intra-op threads (default: all cores)")
      ->check(CLI::Range(0, 1024));
  app.add_option("--data-dir", worker.data_dir,
                 "Cache for corpus: text8 (default $ABLATE_DATA_DIR or ./data)");
  app.add_option("--name", worker.name, "Worker name, stable across restarts and unique among live workers: registering "
                 "a name frees the jobs its previous process held (default HOST-PID)");
  app.add_option("--work-dir", worker.work_dir, "Local checkpoint directory (default: a temp dir)");
  app.add_flag("--exit-when-idle", worker.exit_when_idle,
               "Exit once no job is pending or running anywhere");
  app.add_option("--max-jobs", worker.max_jobs,
                 "Exit after running this many jobs, finished or failed; with --gpus, each "
                 "worker process does (default 0: no limit)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--poll", worker.idle_poll_seconds, "Seconds between lease attempts when idle")
      ->check(CLI::PositiveNumber);
  app.add_option("--stop-grace", worker.stop_grace_seconds,
                 "Seconds after SIGTERM by which the worker exits, its job released or, if the "
                 "coordinator does not answer by then, left to its lease")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();

  ablate::TrainCommandOptions train;
  CLI::App* train_cmd = app.add_subcommand("train", "Train one configuration on this machine");
  train_cmd->add_option("config", train.config_path, "YAML with data:, model: and train:")
      ->required();
  train_cmd->add_option("--threads", train.threads, "Intra-op threads (default: all cores)")
      ->check(CLI::Range(0, 1024));
  train_cmd->add_option("--device", train.device, "cpu, cuda, cuda:N or auto");
  train_cmd->add_option("--format", train.format, "table or json");
  train_cmd->add_option("--data-dir", train.data_dir,
                        "Cache for corpus: text8 (default $ABLATE_DATA_DIR or ./data)");
  train_cmd->add_option("--kernel", train.kernel, "auto, fused (CPU) or reference");
  train_cmd->add_option("--checkpoint", train.checkpoint_path,
                        "Where checkpoints go (train.checkpoint_every, and on stop)");
  train_cmd->add_option("--resume", train.resume_path, "Start from this checkpoint");
  train_cmd->add_option("--stop-at", train.stop_at, "Stop after this step")
      ->check(CLI::PositiveNumber);

  CLI::App* data_cmd = app.add_subcommand("data", "Prepare corpora");
  data_cmd->require_subcommand(1);
  std::string prepare_in, prepare_out;
  CLI::App* prepare = data_cmd->add_subcommand(
      "prepare", "Clean any text or HTML into text8 format (Mahoney's rules)");
  prepare->add_option("input", prepare_in, "Text or HTML file, - for stdin")->required();
  prepare->add_option("output", prepare_out, "text8-format file to write")->required();
  std::string fetch_dir = ablate::DefaultDataDir(), fetch_url = ablate::kText8Url;
  CLI::App* fetch = data_cmd->add_subcommand("fetch", "Download and verify text8 into a cache");
  fetch->add_option("--data-dir", fetch_dir, "Cache directory");
  fetch->add_option("--url", fetch_url, "Where text8.zip is served");

  // No group: hidden from --help, since `ablate launch --dry-run` is its user.
  CLI::App* time_steps_cmd = app.add_subcommand(
      "time-steps", "Time trainer steps: a JSON request on stdin, a JSON reply on stdout");
  time_steps_cmd->group("");

  train_cmd->excludes(gpus_opt);
  data_cmd->excludes(gpus_opt);
  time_steps_cmd->excludes(gpus_opt);

  CLI11_PARSE(app, argc, argv);
  int jobs_per_gpu = 1;
  if (*jobs_per_gpu_opt) {
    auto parsed = ablate::ParseJobsPerGpu(jobs_per_gpu_text, !gpus.empty());
    if (!parsed.ok()) {
      std::fprintf(stderr, "ablate-worker: %s\n", parsed.status().message().c_str());
      return 2;
    }
    jobs_per_gpu = *parsed;
  }
  // Training commands restart once with the settings LibTorch's libraries read
  // at start (worker/startup.h); --help, parse errors and `data` need none.
  if (!*data_cmd) ablate::MaybeRestartForSpeed(argv);

  if (*train_cmd) return ablate::RunTrainCommand(train);
  if (*time_steps_cmd) return ablate::RunTimeStepsCommand();
  if (*prepare) {
    ablate::text8::PrepareStats stats;
    ablate::Status s = ablate::text8::PrepareFile(prepare_in, prepare_out, &stats);
    if (!s.ok()) {
      std::fprintf(stderr, "ablate-worker data prepare: %s\n", s.message().c_str());
      return 1;
    }
    std::printf("%s\n", ablate::text8::FormatPrepareSummary(prepare_in, prepare_out, stats).c_str());
    return 0;
  }
  if (*fetch) {
    ablate::text8::FetchOptions options;
    options.data_dir = fetch_dir;
    options.url = fetch_url;
    auto path = ablate::text8::EnsureText8(options, nullptr);
    if (!path.ok()) {
      std::fprintf(stderr, "ablate-worker data fetch: %s\n", path.status().message().c_str());
      return 1;
    }
    std::printf("%s\n", path->c_str());
    return 0;
  }
  spdlog::set_default_logger(spdlog::stderr_color_mt("worker"));
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
  if (!gpus.empty()) return ablate::RunGpuWorkers(gpus, jobs_per_gpu, worker.name, argc, argv);
  return ablate::RunWorker(worker);
}
