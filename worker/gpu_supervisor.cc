#include "worker/gpu_supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <torch/cuda.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "common/subprocess.h"

namespace ablate {

namespace {

using SteadyClock = std::chrono::steady_clock;

std::vector<std::string> Split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t end = text.find(separator, start);
    parts.push_back(text.substr(start, end - start));
    if (end == std::string::npos) return parts;
    start = end + 1;
  }
}

std::string Trim(const std::string& text) {
  const size_t first = text.find_first_not_of(" \t");
  if (first == std::string::npos) return "";
  return text.substr(first, text.find_last_not_of(" \t") - first + 1);
}

bool IsIndex(const std::string& text) {
  return !text.empty() && text.size() <= 3 &&
         text.find_first_not_of("0123456789") == std::string::npos;
}

// Writes all of `text` to stderr, retrying short writes.
void WriteStderr(const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(STDERR_FILENO, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

// The signals the supervisor takes through a signalfd rather than handlers.
sigset_t SupervisedSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGCHLD);
  return set;
}

std::string DescribeExit(int status) {
  if (WIFEXITED(status)) return "exited with " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return "died of signal " + std::to_string(WTERMSIG(status)) + " (" +
           strsignal(WTERMSIG(status)) + ")";
  }
  return "stopped";
}

class Supervisor {
 public:
  explicit Supervisor(const SupervisorOptions& options) : options_(options) {
    children_.resize(options.slots.size());
    for (size_t i = 0; i < children_.size(); ++i) children_[i].slot = &options_.slots[i];
  }

  int Run() {
    // Children inherit the ignored SIGPIPE across exec, so a worker that
    // outlives a killed supervisor still checkpoints: its log writes to the
    // dead pipe fail instead of killing it.
    signal(SIGPIPE, SIG_IGN);
    const sigset_t handled = SupervisedSignals();
    pthread_sigmask(SIG_BLOCK, &handled, &child_mask_);
    sigdelset(&child_mask_, SIGTERM);
    sigdelset(&child_mask_, SIGINT);
    sigdelset(&child_mask_, SIGCHLD);
    const int signals = signalfd(-1, &handled, SFD_CLOEXEC | SFD_NONBLOCK);
    if (signals < 0) {
      spdlog::error("supervisor: signalfd: {}", strerror(errno));
      return 1;
    }

    for (Child& child : children_) Start(child);
    while (!AllFinished()) {
      std::vector<pollfd> fds = {{signals, POLLIN, 0}};
      std::vector<Child*> readers;
      int timeout_ms = -1;
      const auto now = SteadyClock::now();
      for (Child& child : children_) {
        if (child.output >= 0) {
          fds.push_back({child.output, POLLIN, 0});
          readers.push_back(&child);
        }
        if (child.restart_pending) {
          const auto wait =
              std::chrono::duration_cast<std::chrono::milliseconds>(child.restart_at - now);
          const int ms = static_cast<int>(std::max<int64_t>(0, wait.count()));
          timeout_ms = timeout_ms < 0 ? ms : std::min(timeout_ms, ms);
        }
      }
      if (poll(fds.data(), fds.size(), timeout_ms) < 0 && errno != EINTR) {
        spdlog::error("supervisor: poll: {}", strerror(errno));
        return 1;
      }
      for (size_t i = 0; i < readers.size(); ++i) {
        if (fds[i + 1].revents != 0) Drain(*readers[i]);
      }
      if (fds[0].revents & POLLIN) HandleSignals(signals);
      for (Child& child : children_) {
        if (child.restart_pending && SteadyClock::now() >= child.restart_at) Start(child);
      }
    }
    close(signals);
    const bool all_clean = std::all_of(children_.begin(), children_.end(),
                                       [](const Child& child) { return child.clean; });
    return all_clean ? 0 : 1;
  }

 private:
  struct Child {
    const WorkerSlot* slot = nullptr;
    pid_t pid = -1;
    int output = -1;      // read end of its stdout and stderr
    std::string partial;  // output after its last newline
    SteadyClock::time_point started;
    int crashes = 0;  // in a row
    bool restart_pending = false;
    SteadyClock::time_point restart_at;
    bool finished = false;  // exited and stays down
    bool clean = false;     // its last exit was clean
  };

  bool AllFinished() const {
    return std::all_of(children_.begin(), children_.end(),
                       [](const Child& child) { return child.finished; });
  }

  std::string ChildName(const Child& child) const {
    return options_.name + "/" + child.slot->label;
  }

  void Start(Child& child) {
    child.restart_pending = false;
    child.started = SteadyClock::now();
    std::vector<std::string> argv = {options_.program};
    argv.insert(argv.end(), options_.args.begin(), options_.args.end());
    argv.insert(argv.end(), {"--device", child.slot->device, "--name", ChildName(child)});
    SpawnOptions options;
    options.argv = std::move(argv);
    std::string pinned;
    for (const auto& [key, value] : child.slot->env) {
      options.env[key] = value;
      pinned += ", " + key + "=" + value;
    }
    int pipe_fds[2];
    if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
      Crashed(child, std::string("could not be started: pipe: ") + strerror(errno));
      return;
    }
    options.stdout_fd = pipe_fds[1];
    options.stderr_fd = pipe_fds[1];
    // A supervisor killed outright still gets its workers to checkpoint.
    options.death_signal = SIGTERM;
    options.signal_mask = child_mask_;
    StatusOr<pid_t> pid = Spawn(options);
    close(pipe_fds[1]);
    if (!pid.ok()) {
      close(pipe_fds[0]);
      Crashed(child, "could not be started: " + pid.status().message());
      return;
    }
    fcntl(pipe_fds[0], F_SETFL, O_NONBLOCK);
    child.pid = *pid;
    child.output = pipe_fds[0];
    spdlog::info("supervisor: started {} as pid {}: --device {} --name {}{}", child.slot->label,
                 *pid, child.slot->device, ChildName(child), pinned);
  }

  // Reads what the child wrote and passes on its complete lines; at end of
  // file also the rest, and closes the pipe.
  void Drain(Child& child) {
    char buffer[65536];
    while (child.output >= 0) {
      const ssize_t n = read(child.output, buffer, sizeof(buffer));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) break;
      if (n > 0) child.partial.append(buffer, static_cast<size_t>(n));
      size_t line_end;
      while ((line_end = child.partial.find('\n')) != std::string::npos) {
        WriteStderr("[" + child.slot->label + "] " + child.partial.substr(0, line_end + 1));
        child.partial.erase(0, line_end + 1);
      }
      if (n <= 0) {
        if (!child.partial.empty())
          WriteStderr("[" + child.slot->label + "] " + child.partial + "\n");
        child.partial.clear();
        close(child.output);
        child.output = -1;
      }
    }
  }

  void HandleSignals(int signals) {
    signalfd_siginfo info;
    while (read(signals, &info, sizeof(info)) == static_cast<ssize_t>(sizeof(info))) {
      const int signal = static_cast<int>(info.ssi_signo);
      if (signal == SIGTERM || signal == SIGINT) Stop(signal);
    }
    // SIGCHLDs merge: reap every child that has exited.
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
      for (Child& child : children_) {
        if (child.pid == pid) Exited(child, status);
      }
    }
  }

  void Stop(int signal) {
    stopping_ = true;
    int running = 0;
    for (Child& child : children_) {
      if (child.pid > 0) {
        kill(child.pid, signal);
        ++running;
      }
      if (child.restart_pending) {
        child.restart_pending = false;
        child.finished = true;
      }
    }
    spdlog::info("supervisor: {} passed on to {} worker(s); waiting for them to checkpoint",
                 signal == SIGTERM ? "SIGTERM" : "SIGINT", running);
  }

  void Exited(Child& child, int status) {
    child.pid = -1;
    if (child.output >= 0) {
      Drain(child);  // what it wrote before exiting, and the end of file
      if (child.output >= 0) {
        // Someone else holds the pipe open; what it writes is not ours.
        close(child.output);
        child.output = -1;
      }
    }
    const bool exited_zero = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    const bool told_to_stop = stopping_ && WIFSIGNALED(status) &&
                              (WTERMSIG(status) == SIGTERM || WTERMSIG(status) == SIGINT);
    if (exited_zero || told_to_stop) {
      spdlog::info("supervisor: {} {}", child.slot->label, DescribeExit(status));
      child.finished = true;
      child.clean = true;
      return;
    }
    if (stopping_) {
      spdlog::error("supervisor: {} {} while stopping", child.slot->label, DescribeExit(status));
      child.finished = true;
      child.clean = false;
      return;
    }
    Crashed(child, DescribeExit(status));
  }

  void Crashed(Child& child, const std::string& what) {
    child.clean = false;
    if (SteadyClock::now() - child.started >= options_.stable_after) child.crashes = 0;
    ++child.crashes;
    if (child.crashes > options_.max_restarts) {
      spdlog::error("supervisor: {} {}; {} crashes in a row, leaving it stopped", child.slot->label,
                    what, child.crashes);
      child.finished = true;
      return;
    }
    auto backoff = options_.first_backoff;
    for (int i = 1; i < child.crashes && backoff < options_.max_backoff; ++i) backoff *= 2;
    backoff = std::min(backoff, options_.max_backoff);
    spdlog::warn("supervisor: {} {}; restarting it in {} ms (restart {} of at most {})",
                 child.slot->label, what, backoff.count(), child.crashes, options_.max_restarts);
    child.restart_pending = true;
    child.restart_at = SteadyClock::now() + backoff;
  }

  const SupervisorOptions options_;
  std::vector<Child> children_;
  sigset_t child_mask_;  // the mask the children start with: ours, less what we block
  bool stopping_ = false;
};

}  // namespace

std::optional<std::string> VisibleGpu(const char* visible_devices, int index) {
  if (index < 0) return std::nullopt;
  if (visible_devices == nullptr) return std::to_string(index);
  const std::vector<std::string> names = Split(visible_devices, ',');
  if (static_cast<size_t>(index) >= names.size()) return std::nullopt;
  std::string name = Trim(names[index]);
  if (name.empty()) return std::nullopt;
  return name;
}

StatusOr<std::vector<WorkerSlot>> ResolveGpuSlots(const std::string& spec, int device_count,
                                                  const char* visible_devices) {
  const std::string flag = "--gpus " + spec;
  if (device_count <= 0) {
    const std::string why =
        visible_devices != nullptr
            ? "CUDA_VISIBLE_DEVICES=\"" + std::string(visible_devices) +
                  "\" may hide them, or this LibTorch was built without CUDA"
            : "this LibTorch was built without CUDA, or the machine has no usable GPU "
              "(nvidia-smi tells)";
    return Status::InvalidArgument(flag + ": no GPU is visible: " + why +
                                   "; use --device cpu to train on the CPU");
  }
  std::vector<int> indices;
  if (spec == "all") {
    for (int i = 0; i < device_count; ++i) indices.push_back(i);
  } else {
    for (const std::string& part : Split(spec, ',')) {
      if (!IsIndex(part)) {
        return Status::InvalidArgument(flag + ": expected all, or GPU indices such as 0,2");
      }
      const int index = std::stoi(part);
      if (index >= device_count) {
        return Status::InvalidArgument(flag + ": GPU " + part + " is not visible; CUDA sees " +
                                       std::to_string(device_count) + " GPU(s), 0 to " +
                                       std::to_string(device_count - 1));
      }
      if (std::find(indices.begin(), indices.end(), index) != indices.end()) {
        return Status::InvalidArgument(flag + ": GPU " + part + " is named twice");
      }
      indices.push_back(index);
    }
  }
  std::vector<WorkerSlot> slots;
  for (const int index : indices) {
    const std::optional<std::string> gpu = VisibleGpu(visible_devices, index);
    if (!gpu) {
      return Status::FailedPrecondition(flag + ": CUDA sees " + std::to_string(device_count) +
                                        " GPU(s) but CUDA_VISIBLE_DEVICES=\"" + visible_devices +
                                        "\" names fewer");
    }
    slots.push_back({"gpu" + std::to_string(index), "cuda:0", {{"CUDA_VISIBLE_DEVICES", *gpu}}});
  }
  return slots;
}

StatusOr<int> ParseJobsPerGpu(const std::string& text, bool with_gpus) {
  const std::string flag = "--jobs-per-gpu " + text;
  if (!with_gpus) {
    return Status::InvalidArgument(
        flag + ": only with --gpus: it is how many workers share each of those GPUs");
  }
  const bool whole_number = !text.empty() && text.size() <= 9 &&
                            text.find_first_not_of("0123456789") == std::string::npos;
  const int jobs = whole_number ? std::stoi(text) : 0;
  if (jobs < 1 || jobs > kMaxJobsPerGpu) {
    return Status::InvalidArgument(flag + ": expected a whole number of workers per GPU, 1 to " +
                                   std::to_string(kMaxJobsPerGpu));
  }
  return jobs;
}

std::vector<WorkerSlot> SharedGpuSlots(const std::vector<WorkerSlot>& gpu_slots, int jobs_per_gpu) {
  if (jobs_per_gpu < 1 || jobs_per_gpu > kMaxJobsPerGpu) {
    std::fprintf(stderr, "SharedGpuSlots: %d jobs per GPU; ParseJobsPerGpu allows 1 to %d\n",
                 jobs_per_gpu, kMaxJobsPerGpu);
    std::abort();
  }
  if (jobs_per_gpu == 1) return gpu_slots;
  std::vector<WorkerSlot> slots;
  for (const WorkerSlot& gpu : gpu_slots) {
    for (int job = 0; job < jobs_per_gpu; ++job) {
      WorkerSlot slot = gpu;
      slot.label += "." + std::to_string(job);
      slots.push_back(std::move(slot));
    }
  }
  return slots;
}

std::vector<std::string> WithoutOptions(const std::vector<std::string>& args,
                                        const std::vector<std::string>& options) {
  std::vector<std::string> kept;
  for (size_t i = 0; i < args.size(); ++i) {
    bool drop = false;
    for (const std::string& option : options) {
      if (args[i] == option) {
        drop = true;
        ++i;  // and its value
        break;
      }
      if (args[i].rfind(option + "=", 0) == 0) {
        drop = true;
        break;
      }
    }
    if (!drop) kept.push_back(args[i]);
  }
  return kept;
}

int RunSupervisor(const SupervisorOptions& options) { return Supervisor(options).Run(); }

int RunGpuWorkers(const std::string& spec, int jobs_per_gpu, const std::string& name, int argc,
                  char** argv) {
  // Blocked before CUDA starts threads of its own, which inherit the mask:
  // otherwise one of them could take a SIGTERM meant for the supervisor.
  const sigset_t handled = SupervisedSignals();
  pthread_sigmask(SIG_BLOCK, &handled, nullptr);
  auto slots = ResolveGpuSlots(spec, static_cast<int>(torch::cuda::device_count()),
                               std::getenv("CUDA_VISIBLE_DEVICES"));
  if (!slots.ok()) {
    spdlog::error("{}", slots.status().message());
    return 1;
  }
  SupervisorOptions options;
  std::error_code error;
  options.program = std::filesystem::read_symlink("/proc/self/exe", error).string();
  if (error) options.program = argv[0];
  options.args = WithoutOptions(std::vector<std::string>(argv + 1, argv + argc),
                                {"--gpus", "--jobs-per-gpu", "--name"});
  if (name.empty()) {
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    options.name = std::string(host) + "-" + std::to_string(getpid());
  } else {
    options.name = name;
  }
  options.slots = SharedGpuSlots(*slots, jobs_per_gpu);
  return RunSupervisor(options);
}

}  // namespace ablate
