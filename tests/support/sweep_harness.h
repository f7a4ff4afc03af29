// A sweep on loopback for fault tests and the chaos driver: the real
// coordinator on a fixed port (so it can be killed and restarted at the same
// address), real workers, launching through the Sweeps service, reading what
// the coordinator committed, and checking it against undisturbed reference
// runs of `ablate-worker train`.
//
// Nothing here calls gtest: results come back as values and strings so the
// chaos driver (a plain binary) uses the same checks as the tests.
#ifndef ABLATE_TESTS_SUPPORT_SWEEP_HARNESS_H_
#define ABLATE_TESTS_SUPPORT_SWEEP_HARNESS_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "proto/ablate.grpc.pb.h"
#include "tests/support/corpus.h"
#include "tests/support/process.h"

namespace ablate::testing {

// The real coordinator binary on 127.0.0.1:`port`, stderr appended across
// restarts to `log_dir`/coordinator-N.err.
class CoordinatorProcess {
 public:
  // Starts it and waits until it prints its port. `extra_args` are appended.
  CoordinatorProcess(std::string log_dir, std::string db_path, int port,
                     std::vector<std::string> extra_args = {},
                     std::map<std::string, std::string> env = {});

  // True once it printed "listening on".
  bool serving() const { return serving_; }
  const std::string& address() const { return address_; }
  Process& process() { return *process_; }
  // Sends `signal` (SIGKILL, SIGTERM) and reaps it.
  void Stop(int signal);
  // Starts a fresh process on the same database and port; false when it does
  // not come up.
  bool Restart();
  // Everything every incarnation wrote to stderr.
  std::string Logs() const;
  std::shared_ptr<grpc::Channel> Channel() const;

 private:
  bool Start();

  const std::string log_dir_, db_path_, address_;
  const std::vector<std::string> extra_args_;
  const std::map<std::string, std::string> env_;
  int incarnation_ = 0;
  bool serving_ = false;
  std::unique_ptr<Process> process_;
};

struct WorkerFlags {
  std::string name;
  int threads = 1;
  bool exit_when_idle = true;
  double poll_seconds = 0.2;
  std::vector<std::string> extra_args;  // appended as given
};

// An ablate-worker serving `address`; stdout/stderr in `log_dir`/`log_name`.*
std::unique_ptr<Process> StartWorker(const std::string& log_dir, const std::string& log_name,
                                     const std::string& address, const WorkerFlags& flags);

// Every process's stderr in `log_dir` (its *.err files), the last 20,000
// bytes of each, for a failed test's output.
std::string ProcessLogs(const std::string& log_dir);

// Launches a sweep through the Sweeps service.
StatusOr<v1::LaunchResponse> Launch(const std::shared_ptr<grpc::Channel>& channel,
                                    const std::string& spec_text, const std::string& filename);

// One stored or reference curve point; bpc exact, as the trainer computed it.
struct Point {
  std::string split;
  int64_t step = 0;
  double bpc = 0;
  int64_t bytes_seen = 0;
  int64_t attempt = 0;  // the attempt that stored it (0 for a reference)
  bool operator<(const Point& other) const {
    return std::tie(split, step) < std::tie(other.split, other.step);
  }
};
using Curve = std::vector<Point>;  // sorted by split, then step

struct JobRecord {
  int64_t id = 0;
  std::string state, config_json, last_error;
  int64_t attempts = 0, lease_token = 0, checkpoint_step = 0, lease_owner = 0;
  bool has_final_test = false;
  double final_test_bpc = 0;
};

// Read-only snapshots of what the coordinator committed (safe while it runs).
StatusOr<std::vector<JobRecord>> ReadJobs(const std::string& db_path);
StatusOr<std::map<int64_t, Curve>> ReadCurves(const std::string& db_path);
// Events of `kind` ("lease", "complete", ...) per job.
StatusOr<std::map<int64_t, int64_t>> CountEvents(const std::string& db_path,
                                                 const std::string& kind);
// Runs one read-only query returning one integer.
StatusOr<int64_t> QueryInt64(const std::string& db_path, const std::string& sql);

// Waits until `condition` holds, polling; false on timeout.
bool WaitUntil(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
               std::chrono::milliseconds poll = std::chrono::milliseconds(20));

// Waits until `caught_mid_job` holds for `worker`, checking it with the
// worker frozen (SIGSTOP) for 300 ms so that requests already on their way
// land first; leaves it frozen when it held, thaws it otherwise. False on
// timeout.
bool FreezeWhen(Process& worker, const std::function<bool()>& caught_mid_job,
                std::chrono::milliseconds timeout);

// The curve an undisturbed `ablate-worker train --format json --threads
// `threads`` run of `config_json` (a job's canonical RunConfig) produces.
// Reference runs are cached by config in `cache` so a chaos run pays once.
class References {
 public:
  References(std::string work_dir, int threads)
      : work_dir_(std::move(work_dir)), threads_(threads) {}
  StatusOr<Curve> Get(const std::string& config_json);

 private:
  const std::string work_dir_;
  const int threads_;
  std::map<std::string, Curve> cache_;
};

// The (split, step) pairs a finished job's curve holds: train every log_every
// steps and at the end, valid every eval_every steps and at the end, test at
// the end.
StatusOr<std::set<std::pair<std::string, int64_t>>> ScheduledPoints(const std::string& config_json);

// The invariants of a finished sweep, counted.
struct SweepCheck {
  int64_t jobs = 0, done = 0, points = 0;
  int64_t lost_points = 0;        // scheduled but not stored
  int64_t unexpected_points = 0;  // stored but not scheduled
  int64_t duplicate_points = 0;   // the same (job, split, step) twice
  int64_t jobs_completed_twice = 0;
  int64_t mismatched_points = 0;  // bpc or bytes_seen differ from the reference
  int64_t mismatched_finals = 0;  // final_test_bpc differs from the reference
  int64_t compared_jobs = 0;
  std::vector<std::string> problems;  // one line per defect, for the report
  bool ok() const { return problems.empty(); }
  std::string Summary() const;
};

// Checks every job of `db_path`: all done, each curve exactly its schedule,
// each completed once, and, with `references`, equal to them bit for bit.
SweepCheck CheckSweep(const std::string& db_path, References* references);

}  // namespace ablate::testing

#endif  // ABLATE_TESTS_SUPPORT_SWEEP_HARNESS_H_
