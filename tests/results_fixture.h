// Sweep databases for the results, curves and report tests, written through
// the coordinator's own managers (launch, lease, report, complete, fail,
// cancel) with curves the test chooses, so that every expected number can be
// computed independently from what was reported.
#ifndef ABLATE_TESTS_RESULTS_FIXTURE_H_
#define ABLATE_TESTS_RESULTS_FIXTURE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "coordinator/test_util.h"
#include "proto/ablate.pb.h"

namespace ablate::testing {

// The seed's grid at the seed's size (2000 units, 256 symbols; nothing is
// trained here): 3 cells x 2 layer_norm x 3 inits, and `seeds` seeds when it
// is above 0 (the seeds axis then makes the 4th factor). Its description
// holds HTML's special characters.
std::string GridSpec(const std::string& name, int seeds = 0);

// A point of the fixture's runs, which read 32 streams x 4 bytes and take
// 1.5 s a step.
v1::CurvePoint FixturePoint(v1::Split split, int64_t step, double bpc);

// One job as the fixture leased it.
struct LeasedJob {
  v1::JobLease lease;
  nlohmann::json factors;  // {"model.cell": "gru", ...}
  int64_t id() const { return lease.job_id(); }
};

// Writes to the database at `path` (created as needed) through the real
// managers, with a fake clock. Every call asserts success (gtest failures).
class SweepWriter {
 public:
  explicit SweepWriter(const std::string& path);
  ~SweepWriter();

  // Launches a sweep spec; returns the sweep id.
  int64_t Launch(const std::string& spec_yaml);
  // Leases the next pending job (in hand-out order) to `worker` on `device`.
  LeasedJob Lease(const std::string& worker = "w0", const std::string& device = "cpu");
  void Report(const LeasedJob& job, const std::vector<v1::CurvePoint>& points);
  // Completes with final metrics; `metrics` unset fields stay NULL.
  void Complete(const LeasedJob& job, const v1::FinalMetrics& metrics);
  // Fails for good (not retryable).
  void Fail(const LeasedJob& job, const std::string& error);
  void CancelJob(int64_t job_id);
  // Moves the fake clock.
  void AdvanceMs(int64_t ms) { m_.clock.AdvanceMs(ms); }

  // Closes the database; everything written is committed.
  void Close();

 private:
  testing::Managers m_;
  // Worker name -> id. A worker registers once per process: registering a
  // known name again would lapse the leases it holds.
  std::map<std::string, int64_t> worker_ids_;
};

// The final valid bpc the standard fixture gives a job with these factors
// (cell, layer norm and init effects plus a small seed offset), so that
// groups differ and spreads are non-zero.
double FixtureValidBpc(const nlohmann::json& factors);

// A done job of the standard fixture: train points at 20, 40, 60 (final
// valid + 0.3, + 0.2, + 0.1), valid points at 30 and 60 (final valid + 0.5,
// final valid), a test point at 60 (final valid + 0.02), and final metrics
// that match the curve. Returns the final valid bpc.
double FinishStandardJob(SweepWriter& writer, const LeasedJob& job, int64_t wall_seconds = 90);

// The report's sweep: GridSpec("seed-grid", 2) with 33 jobs done (one
// configuration keeps a single seed), one failed with `error`, one running
// (a training and a validation point at step 100) and one pending. Returns
// the running job's id.
int64_t WriteReportSweep(SweepWriter& writer, const std::string& error);

// A done job with learning curves shaped like real ones: from 8 bits down
// to FixtureValidBpc (faster with layer norm), train every `log_every`
// steps, valid every `eval_every` steps, test at `steps`, with a little
// noise from `noise_seed`. Returns the final valid bpc.
double FinishRealisticJob(SweepWriter& writer, const LeasedJob& job, int64_t steps,
                          int64_t log_every, int64_t eval_every, uint64_t noise_seed);

}  // namespace ablate::testing

#endif  // ABLATE_TESTS_RESULTS_FIXTURE_H_
