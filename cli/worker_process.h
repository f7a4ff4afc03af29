// Running the `ablate-worker` binary from the CLI: `ablate local` starts
// workers, `ablate launch --dry-run` asks one to time steps. The CLI leaves
// everything that needs LibTorch to it.
#ifndef ABLATE_CLI_WORKER_PROCESS_H_
#define ABLATE_CLI_WORKER_PROCESS_H_

#include <string>
#include <vector>

#include "common/status.h"

namespace ablate {

// The ablate-worker next to this binary, else the first on PATH. NotFound
// names both places looked in.
StatusOr<std::string> FindWorkerBinary();

struct CommandOutput {
  int exit_code = -1;  // the code, or 128 + signal
  std::string out, err;
};

// Runs argv (argv[0] a path) to completion with `input` on its stdin, and
// returns what it printed. Output is buffered in memory files, so a child
// that writes much before reading its input cannot block. The child's
// environment adds ABLATE_PARENT_PID (this process's pid): `ablate-worker
// time-steps` uses it to stop when this process dies, which a SIGTERM sent to
// this process alone would otherwise leave running. Errors: the program could
// not be started.
StatusOr<CommandOutput> RunWithInput(const std::vector<std::string>& argv,
                                     const std::string& input);

}  // namespace ablate

#endif  // ABLATE_CLI_WORKER_PROCESS_H_
