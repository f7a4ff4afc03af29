// Runs a user's training program as a job, following the run protocol
// (README, "Running your own program"):
//  - environment: ABLATE_CONFIG (the job's parameters as a JSON file),
//    ABLATE_METRICS_FD (3), ABLATE_CHECKPOINT_DIR, ABLATE_RESUME_STEP,
//    ABLATE_JOB_ID, ABLATE_ATTEMPT, and whatever the job adds
//    (CUDA_VISIBLE_DEVICES);
//  - JSON lines on the metrics descriptor: {"step": 100, "valid/loss": 1.2}
//    becomes one CurvePoint per metric; {"checkpoint": 1200} says the
//    checkpoint directory holds the state after step 1200: the program's
//    process group is paused (SIGSTOP) while the directory is archived and
//    handed to the listener's OnCheckpoint, so what is uploaded is what was
//    announced;
//  - a line that breaks the rules (not JSON, not an object, a step that is
//    missing, negative, not an integer or lower than the last one, a value
//    that is not a finite number, a bad metric name, longer than 64 KiB) is
//    refused: logged, counted, never reported. After kMaxRefusedLines the
//    program is killed and the job fails for good;
//  - stdout and stderr are drained as they come; only the last 4 KiB of
//    stderr is kept, for the failure message;
//  - the listener's ShouldStop sends SIGTERM to the program's process group,
//    SIGKILL after the grace; a checkpoint announced in between is still
//    handed over;
//  - silent (no byte on any of the three) for silence_seconds: killed, a
//    retryable failure.
// The program starts in a process group of its own and is SIGKILLed if the
// worker dies (it cannot upload anything then).
#ifndef ABLATE_WORKER_PROGRAM_RUNNER_H_
#define ABLATE_WORKER_PROGRAM_RUNNER_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/status.h"
#include "worker/run_listener.h"

namespace ablate {

// Refused metrics lines after which the job fails.
constexpr int kMaxRefusedLines = 100;
// The descriptor a program writes its metrics lines to.
constexpr int kMetricsFd = 3;

struct ProgramJob {
  // The command line; "${args_json_file}" anywhere in an argument becomes the
  // config file's path. A first word without a slash is looked up on PATH.
  std::vector<std::string> command;
  std::string config_json;  // the job's parameters: ABLATE_CONFIG's contents
  int64_t job_id = 0;
  int attempt = 1;
  // This attempt's folder, made afresh: config.json, checkpoint/ (the
  // program's ABLATE_CHECKPOINT_DIR) and checkpoint.zip.
  std::string work_dir;
  // The program's working directory; empty: ours.
  std::string program_dir;
  // A checkpoint archive (as OnCheckpoint received it) to restore into the
  // checkpoint directory before the program starts; empty: a fresh start.
  std::string resume_archive;
  std::map<std::string, std::string> env;  // set over ours and the protocol's
  double silence_seconds = 0;              // 0: never ended as hung
  double stop_grace_seconds = 30;          // SIGTERM to SIGKILL
};

struct ProgramSummary {
  enum class Outcome {
    kFinished,  // exited 0 on its own
    kStopped,   // the listener asked to stop; the program was terminated
    kFailed,    // `message` says why; `retryable` whether another try may do better
  } outcome = Outcome::kFinished;
  std::string message;
  bool retryable = true;
  int64_t step = 0;              // the last step reported (or restored)
  int64_t checkpoint_step = -1;  // the last checkpoint handed over; -1: none
  int64_t refused_lines = 0;
  double wall_time = 0;  // seconds the program ran, across resumed attempts
};

// Runs the program to its end. Errors: the work folder cannot be made, the
// checkpoint cannot be restored or the program not started (each named), or
// the listener's OnCheckpoint failed (the program is then killed).
StatusOr<ProgramSummary> RunProgram(const ProgramJob& job, TrainerListener* listener);


}  // namespace ablate

#endif  // ABLATE_WORKER_PROGRAM_RUNNER_H_
