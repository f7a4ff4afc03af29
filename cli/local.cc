// `ablate local SPEC.yaml --workers N --db PATH`: a whole sweep on this
// machine. A coordinator runs in this process on a loopback port, the spec is
// launched into it, and N `ablate-worker` processes (the binary next to this
// one, else on PATH) train its jobs, each with cores / N threads unless told
// otherwise. The progress shows while they run: redrawn in place on a terminal, a line every
// few seconds otherwise. SIGINT, SIGTERM or SIGHUP (the terminal closed) is
// forwarded to the workers as SIGTERM (they checkpoint and hand their jobs
// back to the coordinator, which lives until they are gone; a second signal
// kills them). Running it again on the same database resumes: done jobs are not
// redone, and released ones go on from their checkpoints.
//
// At the end it prints the sweep's job counts and its final validation bpc
// averaged by each factor (PrintResultsTable). Workers write their logs to
// PATH.logs/worker-I.log. Exit status: 0 when every job of the sweep is done;
// 1 when a job failed, a worker failed or jobs are left unfinished; 130 after
// an interruption.
#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "cli/commands.h"
#include "cli/results_commands.h"
#include "cli/source.h"
#include "cli/status_view.h"
#include "cli/sweeps_client.h"
#include "cli/table.h"
#include "cli/worker_process.h"
#include "common/spec.h"
#include "common/subprocess.h"
#include "coordinator/server.h"

namespace ablate {

namespace {

// How often the workers and the sweep are looked at.
constexpr auto kPollInterval = std::chrono::milliseconds(500);
// Without a terminal, a progress line this often.
constexpr auto kLogInterval = std::chrono::seconds(5);
// Exit status after a signal, as a shell reports a SIGINT death.
constexpr int kInterruptedExit = 130;

struct LocalOptions {
  std::string spec_path;
  int workers = 0;
  int threads = 0;  // per worker; 0: cores / workers, at least 1
  std::string db_path;
  std::string data_dir;
  std::string device = "auto";
};

struct WorkerProcess {
  pid_t pid = -1;
  std::string log_path;
  int exit_code = -1;  // once exited: the code, or 128 + signal
};

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Starts a worker in its own process group (a terminal's Ctrl-C reaches only
// us; we forward it). Should this process die first, the worker is killed:
// its coordinator died with us, so it has nowhere to hand its job back to
// (the job's lease lapses and the next run resumes it from its last
// checkpoint).
StatusOr<WorkerProcess> SpawnWorker(const std::vector<std::string>& args,
                                    const std::string& log_path) {
  const int log = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log < 0) return Status::IOError("cannot open " + log_path + ": " + std::strerror(errno));
  SpawnOptions options;
  options.argv = args;
  options.stdin_null = true;
  options.stdout_fd = log;
  options.stderr_fd = log;
  options.new_process_group = true;
  options.death_signal = SIGKILL;
  options.signal_mask.emplace();
  sigemptyset(&*options.signal_mask);
  StatusOr<pid_t> pid = Spawn(options);
  close(log);
  if (!pid.ok()) return pid.status();
  WorkerProcess worker;
  worker.pid = *pid;
  worker.log_path = log_path;
  return worker;
}

// Reaps the workers that exited; true while any still runs.
bool ReapWorkers(std::vector<WorkerProcess>* workers) {
  bool running = false;
  for (WorkerProcess& w : *workers) {
    if (w.exit_code >= 0) continue;
    if (std::optional<int> code = PollExit(w.pid)) {
      w.exit_code = *code;
    } else {
      running = true;
    }
  }
  return running;
}

void SignalWorkers(const std::vector<WorkerProcess>& workers, int signal) {
  for (const WorkerProcess& w : workers) {
    if (w.exit_code < 0) kill(w.pid, signal);
  }
}

// The sweep's final counts, once the workers are gone.
void PrintCounts(const v1::SweepStatus& sweep) {
  const v1::JobCounts& c = sweep.sweep().counts();
  std::printf(
      "sweep %lld '%s': %lld of %lld jobs done, %lld failed, %lld cancelled, %lld pending, "
      "%lld running\n",
      static_cast<long long>(sweep.sweep().id()), sweep.sweep().name().c_str(),
      static_cast<long long>(c.done()), static_cast<long long>(c.total()),
      static_cast<long long>(c.failed()), static_cast<long long>(c.cancelled()),
      static_cast<long long>(c.pending()), static_cast<long long>(c.running()));
}

// The final validation bpc averaged by each factor of the grid in turn (over
// all the others), or per job when the grid varies only seeds.
Status PrintResults(const std::string& db_path, const SweepSpec& spec, int64_t sweep_id) {
  SourceOptions from_file;
  from_file.db_path = db_path;
  ABLATE_ASSIGN_OR_RETURN(std::unique_ptr<Source> source, Source::Open(from_file));
  std::vector<std::string> keys;
  for (const GridAxis& axis : spec.axes) keys.push_back(axis.key);
  const std::vector<std::string> names = FactorHeader(keys);
  std::vector<std::vector<std::string>> groupings;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (keys[i] != "train.seed") groupings.push_back({names[i]});
  }
  if (groupings.empty()) groupings.push_back({});
  for (const std::vector<std::string>& group_by : groupings) {
    std::printf("\n");
    std::fflush(stdout);
    ABLATE_RETURN_IF_ERROR(
        PrintResultsTable(*source, std::to_string(sweep_id), group_by, std::cout));
    std::cout.flush();
  }
  return Status::OK();
}

// Blocks SIGINT, SIGTERM and SIGHUP for this thread and the coordinator's
// threads it starts, so that they wait for sigtimedwait in Watch.
sigset_t BlockStopSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

StatusOr<v1::LaunchResponse> Launch(SweepsClient& sweeps, const SweepSpec& spec,
                                    const LocalOptions& options) {
  v1::LaunchRequest launch;
  launch.set_spec_text(spec.source_text);
  launch.set_filename(options.spec_path);
  v1::LaunchResponse launched;
  ABLATE_RETURN_IF_ERROR(sweeps.Launch(launch, &launched));
  std::printf("sweep %lld '%s' in %s: %lld jobs created, %lld already there\n",
              static_cast<long long>(launched.sweep_id()), launched.name().c_str(),
              options.db_path.c_str(), static_cast<long long>(launched.jobs_created()),
              static_cast<long long>(launched.jobs_existing()));
  return launched;
}

// options.workers worker processes of `worker_binary` serving `address`,
// each logging to a file beside the database.
StatusOr<std::vector<WorkerProcess>> StartWorkers(const LocalOptions& options,
                                                  const std::string& worker_binary,
                                                  const std::string& address) {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int threads = options.threads > 0 ? options.threads : std::max(1, cores / options.workers);
  const std::string log_dir = options.db_path + ".logs";
  std::error_code error;
  std::filesystem::create_directories(log_dir, error);
  if (error) return Status::IOError("cannot create " + log_dir + ": " + error.message());
  std::vector<WorkerProcess> workers;
  for (int i = 0; i < options.workers; ++i) {
    std::vector<std::string> args = {
        worker_binary, "--coordinator",         address, "--exit-when-idle",
        "--threads",   std::to_string(threads), "--name", fmt::format("local-{}", i),
        "--device",    options.device,          "--poll", "0.5"};
    if (!options.data_dir.empty()) {
      args.push_back("--data-dir");
      args.push_back(options.data_dir);
    }
    auto worker = SpawnWorker(args, fmt::format("{}/worker-{}.log", log_dir, i));
    if (!worker.ok()) {
      SignalWorkers(workers, SIGTERM);
      return worker.status();
    }
    workers.push_back(*worker);
  }
  std::printf("%d worker%s with %d thread%s%s; logs in %s/\n", options.workers,
              options.workers == 1 ? "" : "s", threads, threads == 1 ? "" : "s",
              options.workers == 1 ? "" : " each", log_dir.c_str());
  return workers;
}

// Shows the sweep's progress until every worker has exited; a first signal
// asks the workers to hand their jobs back, a second kills them. Returns
// how many signals came.
int Watch(std::vector<WorkerProcess>* workers, SweepsClient& sweeps,
          const v1::GetStatusRequest& request, const sigset_t& signals) {
  const bool terminal = isatty(STDOUT_FILENO);
  StatusView view;
  int drawn_lines = 0;
  int interrupts = 0;
  auto last_log = std::chrono::steady_clock::now() - kLogInterval;
  bool running = !workers->empty();
  while (running) {
    const timespec wait = {0, std::chrono::nanoseconds(kPollInterval).count()};
    if (sigtimedwait(&signals, nullptr, &wait) > 0) {
      ++interrupts;
      SignalWorkers(*workers, interrupts == 1 ? SIGTERM : SIGKILL);
      std::fprintf(stderr, interrupts == 1
                               ? "\ninterrupted: the workers checkpoint and hand their jobs back "
                                 "(again to kill them)\n"
                               : "\nkilling the workers\n");
      drawn_lines = 0;
    }
    running = ReapWorkers(workers);
    v1::GetStatusResponse now;
    if (!sweeps.GetStatus(request, &now).ok()) continue;
    view.Update(now, std::chrono::steady_clock::now(), NowMs());
    if (terminal) {
      const std::string frame = view.Render();
      if (drawn_lines > 0) std::printf("\033[%dA\r\033[J", drawn_lines);
      std::fputs(frame.c_str(), stdout);
      drawn_lines = static_cast<int>(std::count(frame.begin(), frame.end(), '\n'));
    } else if (std::chrono::steady_clock::now() - last_log >= kLogInterval || !running) {
      std::fputs(view.RenderBrief().c_str(), stdout);
      last_log = std::chrono::steady_clock::now();
    }
    std::fflush(stdout);
  }
  return interrupts;
}

// The exit code of a run whose workers have exited: interrupted, a worker
// failed (its log named), or the sweep did not finish cleanly.
int ExitCode(const std::vector<WorkerProcess>& workers, int interrupts,
             const v1::JobCounts& counts) {
  if (interrupts > 0) return kInterruptedExit;
  int exit_code = 0;
  for (size_t i = 0; i < workers.size(); ++i) {
    if (workers[i].exit_code == 0) continue;
    std::fprintf(stderr, "ablate local: worker %zu exited with status %d; see %s\n", i,
                 workers[i].exit_code, workers[i].log_path.c_str());
    exit_code = 1;
  }
  if (counts.failed() > 0 || counts.pending() + counts.running() > 0) exit_code = 1;
  return exit_code;
}

int RunLocal(const LocalOptions& options) {
  auto spec = LoadSpecFile(options.spec_path);
  if (!spec.ok()) return ReportError("local", spec.status());
  auto jobs = ExpandGrid(*spec);
  if (!jobs.ok()) return ReportError("local", jobs.status());
  auto worker_binary = FindWorkerBinary();
  if (!worker_binary.ok()) return ReportError("local", worker_binary.status());

  const sigset_t signals = BlockStopSignals();
  // Output to a closed terminal or pipe must not end us before the workers.
  std::signal(SIGPIPE, SIG_IGN);
  // The coordinator's log would tear the progress display; only problems show.
  spdlog::set_default_logger(spdlog::stderr_color_mt("coordinator"));
  spdlog::set_level(spdlog::level::warn);
  CoordinatorOptions coordinator;
  coordinator.db_path = options.db_path;
  coordinator.listen = "127.0.0.1:0";
  auto server = CoordinatorServer::Start(coordinator);
  if (!server.ok()) return ReportError("local", server.status());
  ClientOptions client;
  client.address = (*server)->address();
  auto sweeps = SweepsClient::Connect(client);
  if (!sweeps.ok()) return ReportError("local", sweeps.status());
  auto launched = Launch(**sweeps, *spec, options);
  if (!launched.ok()) return ReportError("local", launched.status());

  v1::GetStatusRequest request;
  request.mutable_sweep()->set_id(launched->sweep_id());
  v1::GetStatusResponse status;
  Status s = (*sweeps)->GetStatus(request, &status);
  if (!s.ok()) return ReportError("local", s);
  std::vector<WorkerProcess> workers;
  const v1::JobCounts& initial = status.sweeps(0).sweep().counts();
  if (initial.pending() + initial.running() == 0) {
    std::printf("nothing to do: no job of the sweep is pending or running\n");
  } else {
    auto started = StartWorkers(options, *worker_binary, client.address);
    if (!started.ok()) return ReportError("local", started.status());
    workers = std::move(started).value();
  }
  std::fflush(stdout);
  const int interrupts = Watch(&workers, **sweeps, request, signals);

  s = (*sweeps)->GetStatus(request, &status);
  if (!s.ok()) return ReportError("local", s);
  const v1::SweepStatus& sweep = status.sweeps(0);
  const int exit_code = ExitCode(workers, interrupts, sweep.sweep().counts());
  PrintCounts(sweep);
  // Read while the coordinator still holds the database, so that its
  // shutdown leaves no journal files behind a reader.
  s = PrintResults(options.db_path, *spec, sweep.sweep().id());
  (*server)->Shutdown();
  if (!s.ok()) return ReportError("local", s);
  return exit_code;
}

}  // namespace

void AddLocalCommand(CLI::App* app) {
  auto options = std::make_shared<LocalOptions>();
  CLI::App* cmd = app->add_subcommand(
      "local", "Run a whole sweep on this machine: an in-process coordinator and N workers");
  cmd->add_option("spec", options->spec_path, "Sweep spec (YAML)")->required();
  cmd->add_option("--workers", options->workers, "Worker processes")
      ->required()
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--threads", options->threads,
                  "Threads per worker (default: cores / workers, at least 1)")
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--db", options->db_path,
                  "Database file (created if missing; run again on it to resume)")
      ->required();
  cmd->add_option("--data-dir", options->data_dir, "Workers' cache for corpus: text8");
  cmd->add_option("--device", options->device, "Workers' device: auto, cpu, cuda or cuda:N");
  cmd->callback([options] { FinishCommand(RunLocal(*options)); });
}

}  // namespace ablate
