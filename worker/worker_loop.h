// The worker's service loop: register with the coordinator, lease jobs one at
// a time, train each (resuming from its checkpoint when it has one), stream
// its curve points and heartbeats from a second thread, upload checkpoints,
// and complete, fail or release the job.
//
// Nothing is lost when the coordinator goes away: points wait in a buffer and
// every call is retried with backoff until it answers (once the worker is told
// to stop, for WorkerOptions::stop_grace_seconds at most). Before a checkpoint
// at step S is uploaded, every point up to S is acknowledged, so a job resumed
// from that checkpoint never misses one. SIGTERM (or SIGINT) makes the worker
// checkpoint the running job, upload it, release the lease and exit 0.
//
// A lease with a command runs the user's program instead of the built-in
// trainer (program_runner.h), with the same outcomes: it exits 0, the job is
// complete; it fails, the job fails with its stderr's last lines; the worker
// stops, the program gets SIGTERM and half the stop's grace to checkpoint
// (uploaded when announced), then the job is released.
#ifndef ABLATE_WORKER_WORKER_LOOP_H_
#define ABLATE_WORKER_WORKER_LOOP_H_

#include <string>

#include "proto/rpc.h"

namespace ablate {

struct WorkerOptions {
  ClientOptions client;     // how to reach the coordinator
  std::string device = "auto";
  int threads = 0;          // 0: the machine's cores
  std::string data_dir;     // cache for corpus: text8 (default: DefaultDataDir())
  std::string name;         // default: HOST-PID
  std::string work_dir;     // local checkpoints (default: a fresh temp directory)
  bool exit_when_idle = false;
  int64_t max_jobs = 0;     // exit after running this many jobs; 0: no limit
  double idle_poll_seconds = 1.0;
  int max_points_per_report = 1000;
  // Seconds after SIGTERM by which every call to the coordinator has ended:
  // the worker exits by then, its job released or, when the coordinator
  // does not answer, left to lapse with its lease.
  double stop_grace_seconds = 60;
  // Where a program job's command runs (its relative paths start there);
  // empty: the worker's current directory.
  std::string program_dir;
};

// Runs until SIGTERM/SIGINT, or, with exit_when_idle, until no job is pending
// or running anywhere. Returns the process exit code.
int RunWorker(const WorkerOptions& options);

}  // namespace ablate

#endif  // ABLATE_WORKER_WORKER_LOOP_H_
