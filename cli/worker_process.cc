#include "cli/worker_process.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "common/subprocess.h"

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
  SpawnOptions options;
  options.argv = argv;
  options.stdin_fd = in.fd();
  options.stdout_fd = out.fd();
  options.stderr_fd = err.fd();
  // Our pid, so that the child can tell when it has outlived us (see the
  // header).
  options.env["ABLATE_PARENT_PID"] = std::to_string(getpid());
  ABLATE_ASSIGN_OR_RETURN(pid_t pid, Spawn(options));
  ABLATE_ASSIGN_OR_RETURN(int exit_code, WaitForExit(pid));
  CommandOutput result;
  result.exit_code = exit_code;
  result.out = out.ReadAll();
  result.err = err.ReadAll();
  return result;
}

}  // namespace ablate
