// What a training run reports as it goes, and the listener that receives it:
// shared by the built-in trainer and the runner of a user's program, so the
// worker streams both to the coordinator the same way. No LibTorch here.
#ifndef ABLATE_WORKER_RUN_LISTENER_H_
#define ABLATE_WORKER_RUN_LISTENER_H_

#include <cstdint>
#include <string>

#include "common/status.h"

namespace ablate {

enum class Split { kTrain, kValid, kTest };

struct CurvePoint {
  Split split = Split::kTrain;  // the built-in trainer's points only
  int64_t step = 0;
  double bpc = 0;          // the bpc, or the named metric's value
  int64_t bytes_seen = 0;  // training bytes consumed up to this step
  double wall_time = 0;    // seconds of training since the job began, across resumes
  // A program's named metric ("valid/loss"); empty for the built-in trainer,
  // whose points are a split's bits per character.
  std::string metric;
};

struct Progress {
  int64_t step = 0;
  int64_t steps_total = 0;
  double bytes_per_s = 0;  // training throughput over the recent steps
  double train_bpc = 0;    // latest training point; 0 before the first
  double eta_seconds = 0;
};

// Receives what a run produces. Called on the thread that runs the training
// (the trainer's, or the one reading a program's output).
class TrainerListener {
 public:
  virtual ~TrainerListener() = default;
  virtual void OnPoint(const CurvePoint& point) = 0;
  // After every step (the trainer), or every step a program reports.
  virtual void OnProgress(const Progress& progress) { (void)progress; }
  // After a periodic checkpoint was written to `path` (train.checkpoint_every,
  // or a program's announcement).
  // An error stops the run and is returned by Run.
  virtual Status OnCheckpoint(const std::string& path, int64_t step) {
    (void)path;
    (void)step;
    return Status::OK();
  }
  // Polled before every step (a program: several times a second); true ends
  // the run early (cancel, SIGTERM).
  virtual bool ShouldStop() { return false; }
};

}  // namespace ablate

#endif  // ABLATE_WORKER_RUN_LISTENER_H_
