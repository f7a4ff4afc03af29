// Real processes for integration tests: start the project's binaries, read
// their output, send them real signals, and never leave one running.
#ifndef ABLATE_TESTS_SUPPORT_PROCESS_H_
#define ABLATE_TESTS_SUPPORT_PROCESS_H_

#include <sys/types.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "common/temp_dir.h"
#include "common/test_files.h"  // ReadFile, WriteFile

namespace ablate::testing {

// The directory of the project's binaries ($ABLATE_BIN_DIR, set by CTest).
std::string BinDir();
// BinDir() + "/" + name.
std::string Binary(const std::string& name);
// The source tree: $ABLATE_SOURCE_DIR, else the one this test was built from.
std::string SourceDir();

// A child process with its stdout and stderr captured to files (so a chatty
// child never blocks on a full pipe). Killed with SIGKILL and reaped when
// destroyed, unless it already exited.
class Process {
 public:
  // Starts argv[0] with `env` added to this process's environment; stdout
  // and stderr go to files in `log_dir` named after `name`.
  Process(const std::string& name, std::vector<std::string> argv, const std::string& log_dir,
          std::map<std::string, std::string> env = {});
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  bool running();
  void Signal(int signal);
  // Waits for exit; returns the exit code, 128 + signal for a signal, or -1
  // on timeout (the process is left running).
  int Wait(std::chrono::milliseconds timeout = std::chrono::seconds(60));
  // Waits until stdout has a line containing `needle`; returns that line or ""
  // on timeout or exit.
  std::string WaitForLine(const std::string& needle,
                          std::chrono::milliseconds timeout = std::chrono::seconds(30));
  std::string Stdout() const;
  std::string Stderr() const;
  const std::string& name() const { return name_; }

 private:
  std::string name_, stdout_path_, stderr_path_;
  pid_t pid_ = -1;
  int exit_status_ = -1;  // once reaped
};

struct RunResult {
  int exit_code = -1;
  std::string out, err;
};

// Runs a command to completion (killing it after `timeout`).
RunResult RunCommand(const std::vector<std::string>& argv, const std::string& log_dir,
              std::chrono::milliseconds timeout = std::chrono::seconds(120),
              std::map<std::string, std::string> env = {});

// A TCP port on 127.0.0.1 that was free a moment ago.
int FreePort();

using ablate::TempDir;

std::vector<std::string> Lines(const std::string& text);

}  // namespace ablate::testing

#endif  // ABLATE_TESTS_SUPPORT_PROCESS_H_
