#include "common/subprocess.h"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

extern char** environ;

namespace ablate {

namespace {

// What the child needs, as exec takes it, built before the fork.
struct ExecArgs {
  std::vector<std::string> env_strings;
  std::vector<char*> argv, envp;

  explicit ExecArgs(const SpawnOptions& options) {
    std::map<std::string, std::string> env;
    for (char** e = environ; *e != nullptr; ++e) {
      const char* eq = std::strchr(*e, '=');
      if (eq != nullptr) env[std::string(*e, static_cast<size_t>(eq - *e))] = eq + 1;
    }
    for (const auto& [key, value] : options.env) env[key] = value;
    for (const auto& [key, value] : env) env_strings.push_back(key + "=" + value);
    for (const std::string& arg : options.argv) argv.push_back(const_cast<char*>(arg.c_str()));
    argv.push_back(nullptr);
    for (std::string& entry : env_strings) envp.push_back(entry.data());
    envp.push_back(nullptr);
  }
};

// Above any descriptor a child is handed (standard streams and extra_fds).
constexpr int kFirstFreeFd = 64;

// In the child, after the fork: async-signal-safe calls only. On failure
// writes errno to `report` and exits 127.
[[noreturn]] void ExecChild(const SpawnOptions& options, const ExecArgs& args, pid_t parent,
                            int report) {
  // Out of the way of the descriptors the child is given below.
  const int moved = fcntl(report, F_DUPFD_CLOEXEC, kFirstFreeFd);
  if (moved >= 0) report = moved;
  auto fail = [report] {
    const int error = errno;
    (void)!write(report, &error, sizeof(error));
    _exit(127);
  };
  if (options.new_process_group && setpgid(0, 0) != 0) fail();
  if (options.death_signal != 0) {
    if (prctl(PR_SET_PDEATHSIG, options.death_signal) != 0) fail();
    if (getppid() != parent) _exit(127);  // the parent is already gone
  }
  if (options.signal_mask && sigprocmask(SIG_SETMASK, &*options.signal_mask, nullptr) != 0) {
    fail();
  }
  int stdin_fd = options.stdin_fd;
  if (options.stdin_null && (stdin_fd = open("/dev/null", O_RDONLY)) < 0) fail();
  const int fds[3] = {stdin_fd, options.stdout_fd, options.stderr_fd};
  for (int target = 0; target < 3; ++target) {
    if (fds[target] >= 0 && dup2(fds[target], target) < 0) fail();
  }
  for (const auto& [target, source] : options.extra_fds) {
    if (target == source) {
      if (fcntl(target, F_SETFD, 0) != 0) fail();  // keep it across exec
    } else if (dup2(source, target) < 0) {
      fail();
    }
  }
  if (!options.working_dir.empty() && chdir(options.working_dir.c_str()) != 0) fail();
  execve(args.argv[0], args.argv.data(), args.envp.data());
  fail();
  _exit(127);  // not reached: fail() exits
}

}  // namespace

StatusOr<pid_t> Spawn(const SpawnOptions& options) {
  if (options.argv.empty()) return Status::InvalidArgument("no program to start");
  const std::string& program = options.argv[0];
  const ExecArgs args(options);
  // Closed by a successful exec; carries errno back when exec fails.
  int report[2];
  if (pipe2(report, O_CLOEXEC) != 0) {
    return Status::Internal("cannot start " + program + ": pipe: " + std::strerror(errno));
  }
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid == 0) {
    close(report[0]);
    ExecChild(options, args, parent, report[1]);
  }
  const int fork_errno = errno;
  close(report[1]);
  if (pid < 0) {
    close(report[0]);
    return Status::Internal("cannot start " + program + ": fork: " + std::strerror(fork_errno));
  }
  int child_errno = 0;
  ssize_t got;
  do {
    got = read(report[0], &child_errno, sizeof(child_errno));
  } while (got < 0 && errno == EINTR);
  close(report[0]);
  if (got == sizeof(child_errno)) {
    (void)WaitForExit(pid);
    return Status::Internal("cannot start " + program + ": " + std::strerror(child_errno));
  }
  return pid;
}

int ExitCode(int wait_status) {
  return WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : 128 + WTERMSIG(wait_status);
}

StatusOr<int> WaitForExit(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return Status::Internal(std::string("waitpid: ") + std::strerror(errno));
  }
  return ExitCode(status);
}

std::optional<int> PollExit(pid_t pid) {
  int status = 0;
  const pid_t done = waitpid(pid, &status, WNOHANG);
  if (done == pid) return ExitCode(status);
  if (done < 0 && errno != EINTR) return -1;
  return std::nullopt;
}

}  // namespace ablate
