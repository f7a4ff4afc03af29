#include "cli/worker_process.h"

#include <spawn.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <sstream>

extern char** environ;

namespace ablate {

namespace {

constexpr const char* kWorkerName = "ablate-worker";

// An anonymous in-memory file, closed when it goes out of scope.
class MemoryFile {
 public:
  explicit MemoryFile(const char* name) : fd_(memfd_create(name, MFD_CLOEXEC)) {}
  ~MemoryFile() {
    if (fd_ >= 0) close(fd_);
  }
  MemoryFile(const MemoryFile&) = delete;
  MemoryFile& operator=(const MemoryFile&) = delete;
  int fd() const { return fd_; }

  bool Write(const std::string& text) {
    for (size_t done = 0; done < text.size();) {
      const ssize_t n = write(fd_, text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    return lseek(fd_, 0, SEEK_SET) == 0;
  }

  std::string ReadAll() {
    std::string text;
    if (lseek(fd_, 0, SEEK_SET) != 0) return text;
    char buffer[65536];
    for (;;) {
      const ssize_t n = read(fd_, buffer, sizeof buffer);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      text.append(buffer, static_cast<size_t>(n));
    }
    return text;
  }

 private:
  int fd_;
};

bool IsExecutable(const std::filesystem::path& path) {
  std::error_code error;
  return std::filesystem::is_regular_file(path, error) && access(path.c_str(), X_OK) == 0;
}

}  // namespace

StatusOr<std::string> FindWorkerBinary() {
  std::error_code error;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", error);
  if (error) return Status::Internal("cannot read /proc/self/exe: " + error.message());
  const std::filesystem::path beside = self.parent_path() / kWorkerName;
  if (IsExecutable(beside)) return beside.string();
  const char* path_env = std::getenv("PATH");
  std::stringstream dirs(path_env ? path_env : "");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    if (dir.empty()) continue;  // a relative lookup would depend on the working directory
    const std::filesystem::path candidate = std::filesystem::path(dir) / kWorkerName;
    if (IsExecutable(candidate)) return candidate.string();
  }
  return Status::NotFound(std::string("no ") + kWorkerName + " next to ablate (looked for " +
                          beside.string() + ") nor on PATH");
}

StatusOr<CommandOutput> RunWithInput(const std::vector<std::string>& argv,
                                     const std::string& input) {
  MemoryFile in("stdin"), out("stdout"), err("stderr");
  if (in.fd() < 0 || out.fd() < 0 || err.fd() < 0) {
    return Status::Internal(std::string("memfd_create: ") + std::strerror(errno));
  }
  if (!in.Write(input)) {
    return Status::Internal(std::string("writing a child's input: ") + std::strerror(errno));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in.fd(), STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, out.fd(), STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err.fd(), STDERR_FILENO);
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  // The child's environment: ours, and our pid, so that it can tell when it
  // has outlived us (see the header).
  const std::string parent = "ABLATE_PARENT_PID=" + std::to_string(getpid());
  std::vector<char*> env;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "ABLATE_PARENT_PID=", 18) != 0) env.push_back(*e);
  }
  env.push_back(const_cast<char*>(parent.c_str()));
  env.push_back(nullptr);
  pid_t pid = -1;
  const int spawn_error = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), env.data());
  posix_spawn_file_actions_destroy(&actions);
  if (spawn_error != 0) {
    return Status::Internal("cannot start " + argv[0] + ": " + std::strerror(spawn_error));
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return Status::Internal(std::string("waitpid: ") + std::strerror(errno));
  }
  CommandOutput result;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.out = out.ReadAll();
  result.err = err.ReadAll();
  return result;
}

}  // namespace ablate
