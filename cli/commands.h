// The subcommands of `ablate`. Each Add*Command registers one subcommand on
// `app` with its flags and a callback that runs it. A failing command prints
// one line, "ablate COMMAND: message", on stderr and makes the process exit
// non-zero (by throwing CLI::RuntimeError from the callback, which CLI11's
// parse turns into the exit code).
#ifndef ABLATE_CLI_COMMANDS_H_
#define ABLATE_CLI_COMMANDS_H_

#include <string>

#include "common/status.h"

namespace CLI {
class App;
}

namespace ablate {

// launch SPEC.yaml [--extend] [--dry-run [--device D] [--threads N]] [--format F]
void AddLaunchCommand(CLI::App* app);
// status [SWEEP] [--watch [SECONDS]] [--db PATH | --coordinator ADDR] [--format F]
void AddStatusCommand(CLI::App* app);
// list [--db PATH | --coordinator ADDR] [--format F]
void AddListCommand(CLI::App* app);
// workers [--db PATH | --coordinator ADDR] [--format F]
void AddWorkersCommand(CLI::App* app);
// cancel SWEEP | --job ID, and retry SWEEP | --job ID (a coordinator only)
void AddCancelCommand(CLI::App* app);
void AddRetryCommand(CLI::App* app);
// local SPEC.yaml --workers N [--threads N] --db PATH [--data-dir DIR]
void AddLocalCommand(CLI::App* app);
// checkpoint JOB -o PATH [--db PATH [--checkpoint-dir DIR] | --coordinator ADDR]
void AddCheckpointCommand(CLI::App* app);

// Prints "ablate COMMAND: message" on stderr and returns 1.
int ReportError(const std::string& command, const Status& status);
// Ends a command's callback: returns for 0, else throws CLI::RuntimeError.
void FinishCommand(int exit_code);

}  // namespace ablate

#endif  // ABLATE_CLI_COMMANDS_H_
