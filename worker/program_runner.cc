#include "worker/program_runner.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <utility>

#include "common/metric.h"
#include "common/subprocess.h"
#include "worker/checkpoint_archive.h"

namespace ablate {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr char kConfigArgument[] = "${args_json_file}";
// A metrics line longer than this is refused (and not buffered further).
constexpr size_t kMaxLineBytes = 64 * 1024;
// What is kept of stderr for a failure message.
constexpr size_t kStderrTailBytes = 4096;
constexpr int kStderrTailLines = 20;
// Refused lines logged one by one; past this, only the count at the end.
constexpr int kLoggedRefusals = 10;
// How often the loop looks at the listener, the exit, the silence and the grace.
constexpr int kPollMillis = 100;
// Read from a pipe at a time.
constexpr size_t kReadChunk = 64 * 1024;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// The first word as exec wants it: a path, found on PATH when it has no slash.
StatusOr<std::string> ResolveProgram(const std::string& word, const std::string& path_var) {
  if (word.empty()) return Status::InvalidArgument("the command's first word is empty");
  if (word.find('/') != std::string::npos) return word;
  size_t begin = 0;
  while (begin <= path_var.size()) {
    size_t end = path_var.find(':', begin);
    if (end == std::string::npos) end = path_var.size();
    const std::string dir = end > begin ? path_var.substr(begin, end - begin) : ".";
    const std::string candidate = dir + "/" + word;
    if (access(candidate.c_str(), X_OK) == 0 && !fs::is_directory(candidate)) return candidate;
    begin = end + 1;
  }
  return Status::NotFound("program " + word + " not found on PATH (" + path_var + ")");
}

std::string Replace(std::string text, const std::string& from, const std::string& to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
  return text;
}

// The last kStderrTailLines lines of `tail`.
std::string LastLines(const std::string& tail) {
  size_t end = tail.size();
  while (end > 0 && tail[end - 1] == '\n') --end;
  size_t begin = end;
  for (int lines = 0; begin > 0; --begin) {
    if (tail[begin - 1] == '\n' && ++lines == kStderrTailLines) break;
  }
  return tail.substr(begin, end - begin);
}

std::string DescribeExit(int wait_status) {
  if (WIFEXITED(wait_status)) return "exited with code " + std::to_string(WEXITSTATUS(wait_status));
  const int signal = WTERMSIG(wait_status);
  const char* name = sigabbrev_np(signal);
  return "was killed by signal " + std::to_string(signal) +
         (name != nullptr ? std::string(" (SIG") + name + ")" : "");
}

struct Pipe {
  int read = -1, write = -1;
};

StatusOr<Pipe> MakePipe() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return Status::Internal(std::string("pipe: ") + strerror(errno));
  fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
  return Pipe{fds[0], fds[1]};
}

class ProgramRun {
 public:
  ProgramRun(const ProgramJob& job, TrainerListener* listener) : job_(job), listener_(listener) {}
  ~ProgramRun() {
    for (int fd : {metrics_fd_, stdout_fd_, stderr_fd_}) {
      if (fd >= 0) close(fd);
    }
  }

  StatusOr<ProgramSummary> Run() {
    ABLATE_RETURN_IF_ERROR(PrepareWorkDir());
    ABLATE_RETURN_IF_ERROR(Start());
    Loop();
    // Whatever the leader left behind in its group goes with it.
    kill(-pid_, SIGKILL);
    summary_.wall_time = wall_before_ + Seconds(Clock::now() - started_);
    if (summary_.refused_lines > kLoggedRefusals) {
      spdlog::warn("job {}: {} metrics lines refused in all", job_.job_id, summary_.refused_lines);
    }
    if (!error_.ok()) return error_;
    Conclude();
    return summary_;
  }

 private:
  std::string CheckpointDir() const { return job_.work_dir + "/checkpoint"; }
  std::string ConfigPath() const { return job_.work_dir + "/config.json"; }
  std::string ArchivePath() const { return job_.work_dir + "/checkpoint.zip"; }

  Status PrepareWorkDir() {
    std::error_code error;
    fs::remove_all(job_.work_dir, error);
    fs::create_directories(CheckpointDir(), error);
    if (error) return Status::Internal("cannot create " + CheckpointDir() + ": " + error.message());
    std::ofstream config(ConfigPath(), std::ios::binary);
    config << job_.config_json;
    config.close();
    if (!config) return Status::Internal("cannot write " + ConfigPath());
    if (job_.resume_archive.empty()) return Status::OK();
    StatusOr<std::string> comment = ExtractArchive(job_.resume_archive, CheckpointDir());
    if (!comment.ok()) return comment.status().WithContext("restoring the program's checkpoint");
    const nlohmann::json about = nlohmann::json::parse(*comment, nullptr, false);
    if (!about.is_object() || !about.contains("step") || !about["step"].is_number_integer()) {
      return Status::DataLoss("checkpoint archive " + job_.resume_archive +
                              " does not say its step");
    }
    resume_step_ = about["step"].get<int64_t>();
    wall_before_ = about["wall_time"].is_number() ? about["wall_time"].get<double>() : 0.0;
    last_step_ = resume_step_;
    summary_.step = resume_step_;
    return Status::OK();
  }

  Status Start() {
    if (job_.command.empty()) return Status::InvalidArgument("the job has no command");
    std::vector<std::string> argv;
    for (const std::string& word : job_.command) {
      argv.push_back(Replace(word, kConfigArgument, fs::absolute(ConfigPath()).string()));
    }
    const char* path_var = std::getenv("PATH");
    auto path_it = job_.env.find("PATH");
    StatusOr<std::string> program = ResolveProgram(
        argv[0],
        path_it != job_.env.end() ? path_it->second : (path_var ? path_var : "/usr/bin:/bin"));
    if (!program.ok()) return program.status();
    argv[0] = *program;

    // The read ends are the run's (the destructor closes them); the write
    // ends are the child's, closed here once it has them.
    Pipe metrics, out, err;
    for (auto [pipe, read_end] : {std::pair{&metrics, &metrics_fd_}, std::pair{&out, &stdout_fd_},
                                  std::pair{&err, &stderr_fd_}}) {
      StatusOr<Pipe> made = MakePipe();
      if (!made.ok()) {
        for (int fd : {metrics.write, out.write, err.write}) {
          if (fd >= 0) close(fd);
        }
        return made.status();
      }
      *pipe = *made;
      *read_end = made->read;
    }

    SpawnOptions options;
    options.argv = argv;
    options.env = {{"ABLATE_CONFIG", fs::absolute(ConfigPath())},
                   {"ABLATE_METRICS_FD", std::to_string(kMetricsFd)},
                   {"ABLATE_CHECKPOINT_DIR", fs::absolute(CheckpointDir())},
                   {"ABLATE_RESUME_STEP", std::to_string(resume_step_)},
                   {"ABLATE_JOB_ID", std::to_string(job_.job_id)},
                   {"ABLATE_ATTEMPT", std::to_string(job_.attempt)}};
    for (const auto& [key, value] : job_.env) options.env[key] = value;
    options.stdin_null = true;
    options.stdout_fd = out.write;
    options.stderr_fd = err.write;
    options.extra_fds = {{kMetricsFd, metrics.write}};
    options.working_dir = job_.program_dir;
    options.new_process_group = true;
    options.death_signal = SIGKILL;
    sigset_t none;
    sigemptyset(&none);
    options.signal_mask = none;
    StatusOr<pid_t> pid = Spawn(options);
    for (int fd : {metrics.write, out.write, err.write}) close(fd);
    if (!pid.ok()) return pid.status();
    pid_ = *pid;
    started_ = last_activity_ = Clock::now();
    spdlog::info("job {}: started {} (pid {}{})", job_.job_id, argv[0], pid_,
                 resume_step_ > 0 ? ", resuming at step " + std::to_string(resume_step_) : "");
    return Status::OK();
  }

  void Loop() {
    while (true) {
      if (!exited_) {
        int status = 0;
        if (waitpid(pid_, &status, WNOHANG) == pid_) {
          exited_ = true;
          wait_status_ = status;
        }
      }
      if (exited_) {
        DrainAfterExit();
        return;
      }
      pollfd fds[3] = {{metrics_fd_, POLLIN, 0}, {stdout_fd_, POLLIN, 0}, {stderr_fd_, POLLIN, 0}};
      if (poll(fds, 3, kPollMillis) > 0) {
        for (pollfd& p : fds) {
          if (p.fd >= 0 && (p.revents & (POLLIN | POLLHUP | POLLERR))) ReadFrom(p.fd);
        }
      }
      Supervise();
    }
  }

  // After the leader's exit: what its pipes still hold, up to a bound (a
  // child it left behind may keep writing).
  void DrainAfterExit() {
    for (int round = 0; round < 256; ++round) {
      bool more = false;
      for (int fd : {metrics_fd_, stdout_fd_, stderr_fd_}) more = ReadFrom(fd) || more;
      if (!more) return;
    }
  }

  // Reads what `fd` has now; true when it gave bytes.
  bool ReadFrom(int fd) {
    if (fd < 0) return false;
    char buffer[kReadChunk];
    const ssize_t got = read(fd, buffer, sizeof(buffer));
    if (got <= 0) {
      if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
        // A last line without its newline still counts.
        if (fd == metrics_fd_ && !overlong_ && !line_.empty()) OnLine(line_);
        close(fd);
        if (fd == metrics_fd_) metrics_fd_ = -1;
        if (fd == stdout_fd_) stdout_fd_ = -1;
        if (fd == stderr_fd_) stderr_fd_ = -1;
      }
      return false;
    }
    last_activity_ = Clock::now();
    const std::string_view bytes(buffer, static_cast<size_t>(got));
    if (fd == metrics_fd_) {
      OnMetricsBytes(bytes);
    } else if (fd == stderr_fd_) {
      stderr_tail_.append(bytes);
      if (stderr_tail_.size() > kStderrTailBytes) {
        stderr_tail_.erase(0, stderr_tail_.size() - kStderrTailBytes);
      }
    }
    return true;
  }

  void OnMetricsBytes(std::string_view bytes) {
    while (!bytes.empty() && error_.ok()) {
      const size_t newline = bytes.find('\n');
      const std::string_view piece = bytes.substr(0, newline);
      if (!overlong_) {
        line_.append(piece);
        if (line_.size() > kMaxLineBytes) {
          overlong_ = true;
          Refuse("longer than " + std::to_string(kMaxLineBytes) + " bytes", line_.substr(0, 80));
          line_.clear();
        }
      }
      if (newline == std::string_view::npos) return;
      if (!overlong_ && !line_.empty()) OnLine(line_);
      line_.clear();
      overlong_ = false;
      bytes.remove_prefix(newline + 1);
    }
  }

  void OnLine(const std::string& line) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) return;
    const nlohmann::json value = nlohmann::json::parse(line, nullptr, false);
    if (value.is_discarded()) return Refuse("not JSON", line);
    if (!value.is_object()) return Refuse("not a JSON object", line);
    if (value.contains("checkpoint")) return OnCheckpointLine(value, line);
    if (!value.contains("step")) return Refuse("no \"step\"", line);
    const std::optional<int64_t> step = NonNegativeInteger(value["step"]);
    if (!step) return Refuse("\"step\" is not a non-negative integer", line);
    if (*step < last_step_) {
      return Refuse("step " + std::to_string(*step) + " is below the last step reported, " +
                        std::to_string(last_step_),
                    line);
    }
    if (value.size() < 2) return Refuse("no metric", line);
    for (const auto& [name, metric] : value.items()) {
      if (name == "step") continue;
      if (Status named = CheckMetricName(name); !named.ok()) return Refuse(named.message(), line);
      if (!metric.is_number() || !std::isfinite(metric.get<double>())) {
        return Refuse("the value of " + name + " is not a finite number", line);
      }
      // The coordinator keeps one point a metric and step.
      auto reported = metric_steps_.find(name);
      if (reported != metric_steps_.end() && reported->second >= *step) {
        return Refuse(name + " was already reported at step " + std::to_string(reported->second),
                      line);
      }
    }
    for (const auto& [name, metric] : value.items()) {
      if (name != "step") metric_steps_[name] = *step;
    }
    last_step_ = *step;
    summary_.step = *step;
    const double wall_time = wall_before_ + Seconds(Clock::now() - started_);
    for (const auto& [name, metric] : value.items()) {
      if (name == "step") continue;
      CurvePoint point;
      point.metric = name;
      point.step = *step;
      point.bpc = metric.get<double>();
      point.wall_time = wall_time;
      listener_->OnPoint(point);
    }
    Progress progress;
    progress.step = *step;
    listener_->OnProgress(progress);
  }

  static std::optional<int64_t> NonNegativeInteger(const nlohmann::json& value) {
    if (value.is_number_unsigned()) {
      if (value.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
      return static_cast<int64_t>(value.get<uint64_t>());
    }
    if (value.is_number_integer() && value.get<int64_t>() >= 0) return value.get<int64_t>();
    return std::nullopt;
  }

  // {"checkpoint": STEP}: archive the directory with the program paused and
  // hand it over.
  void OnCheckpointLine(const nlohmann::json& value, const std::string& line) {
    if (value.size() != 1) return Refuse("a checkpoint line has no other keys", line);
    const std::optional<int64_t> step = NonNegativeInteger(value["checkpoint"]);
    if (!step) return Refuse("\"checkpoint\" is not a non-negative integer", line);
    const int64_t lowest = std::max({int64_t{1}, resume_step_, summary_.checkpoint_step});
    if (*step < lowest) {
      return Refuse("a checkpoint's step is at least 1 and never below the last checkpoint's, " +
                        std::to_string(lowest),
                    line);
    }
    kill(-pid_, SIGSTOP);
    const double wall_time = wall_before_ + Seconds(Clock::now() - started_);
    const nlohmann::json about = {{"step", *step}, {"wall_time", wall_time}};
    Status s = ArchiveDirectory(CheckpointDir(), ArchivePath(), about.dump());
    if (s.ok()) {
      s = listener_->OnCheckpoint(ArchivePath(), *step);
      if (s.ok()) summary_.checkpoint_step = *step;
    } else {
      s = s.WithContext("archiving the checkpoint announced at step " + std::to_string(*step));
    }
    kill(-pid_, SIGCONT);
    last_activity_ = Clock::now();
    if (!s.ok()) {
      error_ = s;
      kill(-pid_, SIGKILL);
    }
  }

  void Refuse(const std::string& why, const std::string& line) {
    ++summary_.refused_lines;
    if (summary_.refused_lines <= kLoggedRefusals) {
      spdlog::warn("job {}: metrics line refused ({}): {}", job_.job_id, why,
                   line.size() > 200 ? line.substr(0, 200) + "..." : line);
    }
    if (summary_.refused_lines >= kMaxRefusedLines && !failure_) {
      failure_ =
          std::to_string(summary_.refused_lines) + " metrics lines refused; the last: " + why;
      summary_.retryable = false;
      kill(-pid_, SIGKILL);
    }
  }

  // The stop, the grace and the silence.
  void Supervise() {
    const Clock::time_point now = Clock::now();
    if (!stopping_ && !failure_ && listener_->ShouldStop()) {
      stopping_ = true;
      kill_at_ = now + std::chrono::duration_cast<Clock::duration>(
                           std::chrono::duration<double>(job_.stop_grace_seconds));
      kill(-pid_, SIGTERM);
      spdlog::info("job {}: stopping the program (SIGTERM, {} s grace)", job_.job_id,
                   job_.stop_grace_seconds);
    }
    if (stopping_ && !killed_ && now >= kill_at_) {
      killed_ = true;
      kill(-pid_, SIGKILL);
      spdlog::warn("job {}: the program outlived its {} s grace; killed", job_.job_id,
                   job_.stop_grace_seconds);
    }
    if (!stopping_ && !failure_ && job_.silence_seconds > 0 &&
        Seconds(now - last_activity_) >= job_.silence_seconds) {
      failure_ = "the program wrote no metrics and no output for " +
                 fmt::format("{:g}", job_.silence_seconds) + " s; it was ended as hung";
      summary_.retryable = true;
      kill(-pid_, SIGKILL);
    }
  }

  void Conclude() {
    if (failure_) {
      summary_.outcome = ProgramSummary::Outcome::kFailed;
      summary_.message = *failure_;
      return;
    }
    if (stopping_) {
      summary_.outcome = ProgramSummary::Outcome::kStopped;
      return;
    }
    if (WIFEXITED(wait_status_) && WEXITSTATUS(wait_status_) == 0) {
      summary_.outcome = ProgramSummary::Outcome::kFinished;
      return;
    }
    summary_.outcome = ProgramSummary::Outcome::kFailed;
    summary_.retryable = true;
    summary_.message = "the program " + DescribeExit(wait_status_);
    const std::string tail = LastLines(stderr_tail_);
    summary_.message +=
        tail.empty() ? "; its stderr was empty" : "; the last lines of its stderr:\n" + tail;
  }

  const ProgramJob& job_;
  TrainerListener* const listener_;
  pid_t pid_ = -1;
  int metrics_fd_ = -1, stdout_fd_ = -1, stderr_fd_ = -1;
  std::string line_;       // the metrics line being read
  bool overlong_ = false;  // skipping the rest of a line too long to keep
  std::string stderr_tail_;
  int64_t resume_step_ = 0, last_step_ = 0;
  std::map<std::string, int64_t> metric_steps_;  // each metric's last step reported
  double wall_before_ = 0;  // the earlier attempts' seconds, from the checkpoint
  Clock::time_point started_, last_activity_, kill_at_;
  bool exited_ = false, stopping_ = false, killed_ = false;
  int wait_status_ = 0;
  std::optional<std::string> failure_;  // ended by us: hung or refusing lines
  Status error_;
  ProgramSummary summary_;
};

}  // namespace

StatusOr<ProgramSummary> RunProgram(const ProgramJob& job, TrainerListener* listener) {
  ProgramRun run(job, listener);
  return run.Run();
}

}  // namespace ablate
