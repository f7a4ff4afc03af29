#include "tests/support/process.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include "common/subprocess.h"

namespace ablate::testing {

namespace {

std::string EnvOr(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value && *value ? value : fallback;
}

}  // namespace

std::string BinDir() { return EnvOr("ABLATE_BIN_DIR", "build/bin"); }
std::string Binary(const std::string& name) { return BinDir() + "/" + name; }
std::string SourceDir() { return EnvOr("ABLATE_SOURCE_DIR", ABLATE_SOURCE_ROOT); }

Process::Process(const std::string& name, std::vector<std::string> argv,
                 const std::string& log_dir, std::map<std::string, std::string> env)
    : name_(name),
      stdout_path_(log_dir + "/" + name + ".out"),
      stderr_path_(log_dir + "/" + name + ".err") {
  const int out =
      open(stdout_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
  const int err =
      open(stderr_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
  SpawnOptions options;
  options.argv = std::move(argv);
  options.env = std::move(env);
  options.stdout_fd = out;
  options.stderr_fd = err;
  // Die with the test, whatever kills it.
  options.death_signal = SIGKILL;
  StatusOr<pid_t> pid =
      out >= 0 && err >= 0 ? Spawn(options) : StatusOr<pid_t>(Status::IOError("cannot open logs"));
  if (out >= 0) close(out);
  if (err >= 0) close(err);
  if (pid.ok()) {
    pid_ = *pid;
  } else {
    // Reads as a program that exited at once, as a failed exec always did.
    std::fprintf(stderr, "process %s: %s\n", name_.c_str(), pid.status().ToString().c_str());
    exit_status_ = 127;
  }
}

Process::~Process() {
  if (pid_ > 0 && exit_status_ < 0) {
    kill(pid_, SIGKILL);
    (void)WaitForExit(pid_);
  }
}

bool Process::running() {
  if (exit_status_ >= 0) return false;
  if (std::optional<int> code = PollExit(pid_)) {
    exit_status_ = *code;
    return false;
  }
  return true;
}

void Process::Signal(int signal) {
  if (running()) kill(pid_, signal);
}

int Process::Wait(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (running()) {
    if (std::chrono::steady_clock::now() > deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return exit_status_;
}

std::string Process::WaitForLine(const std::string& needle, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    for (const std::string& line : Lines(Stdout())) {
      if (line.find(needle) != std::string::npos) return line;
    }
    if (!running() || std::chrono::steady_clock::now() > deadline) return "";
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string Process::Stdout() const { return ReadFile(stdout_path_); }
std::string Process::Stderr() const { return ReadFile(stderr_path_); }

RunResult RunCommand(const std::vector<std::string>& argv, const std::string& log_dir,
              std::chrono::milliseconds timeout, std::map<std::string, std::string> env) {
  static int counter = 0;
  Process p("run" + std::to_string(++counter), argv, log_dir, std::move(env));
  RunResult result;
  result.exit_code = p.Wait(timeout);
  result.out = p.Stdout();
  result.err = p.Stderr();
  return result;
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

}  // namespace ablate::testing
