// Starting a program in a child process and collecting its exit: the one
// fork/exec of the tree, for code (`ablate local`'s workers, the GPU
// supervisor's children, `time-steps`) and tests alike.
#ifndef ABLATE_COMMON_SUBPROCESS_H_
#define ABLATE_COMMON_SUBPROCESS_H_

#include <signal.h>
#include <sys/types.h>

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace ablate {

struct SpawnOptions {
  // argv[0] is the program's path; PATH is not searched.
  std::vector<std::string> argv;
  // Set in the child over this process's environment.
  std::map<std::string, std::string> env;
  // Descriptors that become the child's standard streams; -1 keeps ours.
  int stdin_fd = -1, stdout_fd = -1, stderr_fd = -1;
  // Opened (read-only) as the child's stdin instead of stdin_fd.
  bool stdin_null = false;
  // More descriptors the child gets: {child's number, our descriptor}, after
  // the standard streams. A program reads the number from its environment.
  std::vector<std::pair<int, int>> extra_fds;
  // The child's working directory; empty keeps ours. A relative argv[0] is
  // found from there.
  std::string working_dir;
  // The child leads a process group of its own: a terminal's Ctrl-C then
  // reaches only us, and kill(-pid, ...) reaches the child's own children.
  bool new_process_group = false;
  // Sent to the child when this process dies (PR_SET_PDEATHSIG); 0 for none.
  // A child whose parent died before this took effect exits at once.
  int death_signal = 0;
  // The child's blocked signals; unset keeps ours.
  std::optional<sigset_t> signal_mask;
};

// Starts the program. Everything the child needs is built before the fork,
// so the child makes only async-signal-safe calls: safe in a process with
// threads. Errors name the program: it could not be executed (missing, not
// executable), or the fork failed.
StatusOr<pid_t> Spawn(const SpawnOptions& options);

// The exit code of a waitpid status: the code, or 128 + the signal.
int ExitCode(int wait_status);

// Waits for the child to exit and returns its ExitCode; retries on EINTR.
StatusOr<int> WaitForExit(pid_t pid);

// The child's ExitCode once it has exited (reaping it), nothing while it
// runs. A pid that is not our child reads as exited with -1.
std::optional<int> PollExit(pid_t pid);

}  // namespace ablate

#endif  // ABLATE_COMMON_SUBPROCESS_H_
