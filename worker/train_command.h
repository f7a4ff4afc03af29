// `ablate-worker train CONFIG.yaml`: trains one configuration on this machine
// and prints its curve, as a table with a progress bar or as JSON lines.
#ifndef ABLATE_WORKER_TRAIN_COMMAND_H_
#define ABLATE_WORKER_TRAIN_COMMAND_H_

#include <string>

#include "common/run_config.h"
#include "common/status.h"

namespace ablate {

struct TrainCommandOptions {
  std::string config_path;
  int threads = 0;  // 0: the machine's cores
  std::string device = "auto";
  std::string format = "table";  // table | json
  std::string data_dir;          // where `corpus: text8` is cached
  std::string kernel = "auto";   // auto | fused | reference
  std::string checkpoint_path;   // periodic checkpoints, and one when stopped early
  std::string resume_path;       // start from this checkpoint
  int64_t stop_at = 0;           // > 0: stop after this step (checkpointing if a path is set)
};

// Runs the command; returns the process exit code (0 finished or stopped as
// asked, 1 error, 3 the loss diverged). Errors are printed as one line.
int RunTrainCommand(const TrainCommandOptions& options);

}  // namespace ablate

#endif  // ABLATE_WORKER_TRAIN_COMMAND_H_
