// The user's own program as a job, end to end: the real coordinator and
// workers on loopback, examples/charlm (PyTorch on the CPU, reporting through
// python/ablate_run) launched from its W&B-style spec, real signals. A killed
// worker's job resumes elsewhere from the program's own checkpoint and ends
// with the curve of an undisturbed run; a terminated worker's program
// checkpoints and the job is released at once; programs that crash, hang,
// flood their output or write malformed lines end as clear failures or
// refused lines, and nothing wrong is stored.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <iostream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/corpus.h"
#include "tests/support/sqlite_query.h"
#include "tests/support/sweep_harness.h"

namespace ablate {
namespace {

using std::chrono::seconds;
using testing::CoordinatorProcess;
using testing::Process;
using testing::Query;
using testing::QueryInt;
using testing::StartWorker;
using testing::TempDir;
using testing::WaitUntil;
using testing::WorkerFlags;

// One stored point of a named metric; the value as SQLite's exact decimal
// (17 digits round-trip a double), so equal strings mean equal bits.
struct StoredPoint {
  std::string metric;
  int64_t step = 0;
  std::string value;
  int64_t attempt = 0;
};

class ProgramTest : public ::testing::Test {
 protected:
  void SetUp() override {
    corpus_ = dir_.File("corpus.txt");
    testing::WriteFile(corpus_, testing::EnglishText8(60));
    db_ = dir_.File("sweep.db");
    coordinator_ = std::make_unique<CoordinatorProcess>(dir_.path(), db_, testing::FreePort());
    ASSERT_TRUE(coordinator_->serving()) << coordinator_->Logs();
  }

  // A failure shows what every process logged.
  void TearDown() override {
    if (HasFailure()) std::cerr << testing::ProcessLogs(dir_.path());
  }

  // examples/charlm as its sweep file names it, one job, long enough on the
  // CPU (a few seconds) to be hit mid-flight between checkpoints.
  std::string CharLmSpec(const std::string& name) const {
    return fmt::format(
        "name: {}\n"
        "program: {}/examples/charlm/train.py\n"
        // Debian's interpreter, which has python3-torch, whatever is first
        // on the PATH.
        "command: [/usr/bin/python3, \"${{program}}\", \"${{args}}\"]\n"
        "method: grid\n"
        "metric: {{name: valid/loss, goal: minimize}}\n"
        "parameters:\n"
        "  data: {{value: {}}}\n"
        "  hidden: {{value: 32}}\n"
        "  steps: {{value: 1500}}\n"
        "  log-every: {{value: 10}}\n"
        "  eval-every: {{value: 100}}\n"
        "  checkpoint-every: {{value: 300}}\n"
        "  seed: {{values: [0]}}\n"
        "schedule: {{lease_seconds: 3, max_attempts: 3}}\n",
        name, testing::SourceDir(), corpus_);
  }

  int64_t Launch(const std::string& spec, const std::string& filename) {
    auto launched = testing::Launch(coordinator_->Channel(), spec, filename);
    EXPECT_TRUE(launched.ok()) << launched.status().ToString();
    return launched.ok() ? launched->sweep_id() : -1;
  }

  std::unique_ptr<Process> Worker(const std::string& name) {
    WorkerFlags flags;
    flags.name = name;
    return StartWorker(dir_.path(), name, coordinator_->address(), flags);
  }

  int64_t JobOf(int64_t sweep) {
    return QueryInt(db_, fmt::format("SELECT min(id) FROM jobs WHERE sweep_id = {}", sweep));
  }
  std::string StateOf(int64_t job) {
    auto rows = Query(db_, fmt::format("SELECT state FROM jobs WHERE id = {}", job));
    return rows.empty() ? "" : rows[0][0];
  }
  int64_t CheckpointStep(int64_t job) {
    return QueryInt(db_, fmt::format("SELECT checkpoint_step FROM jobs WHERE id = {}", job));
  }

  std::vector<StoredPoint> PointsOf(int64_t job) {
    std::vector<StoredPoint> points;
    for (const auto& row :
         Query(db_, fmt::format("SELECT metric, step, printf('%.17g', value), attempt "
                                "FROM curve_points WHERE job_id = {} ORDER BY metric, step",
                                job))) {
      points.push_back({row[0], std::stoll(row[1]), row[2], std::stoll(row[3])});
    }
    return points;
  }
  int64_t PointsAfterCheckpoint(int64_t job) {
    const int64_t checkpoint = CheckpointStep(job);
    int64_t n = 0;
    for (const StoredPoint& p : PointsOf(job)) n += p.step > checkpoint;
    return n;
  }

  TempDir dir_;
  std::string corpus_, db_;
  std::unique_ptr<CoordinatorProcess> coordinator_;
};

// Killed after the program's checkpoint was uploaded and points past it
// were stored: the lease lapses, another worker restores the program's
// checkpoint and the program resumes from it; the curve is one trajectory,
// each step once, equal to that of a run never disturbed.
TEST_F(ProgramTest, KilledWorkersProgramResumesElsewhereAndEqualsAnUndisturbedRun) {
  const int64_t sweep = Launch(CharLmSpec("charlm-killed"), "charlm.yaml");
  ASSERT_GT(sweep, 0);
  const int64_t job = JobOf(sweep);
  auto a = Worker("a");
  ASSERT_TRUE(testing::FreezeWhen(
      *a,
      [&] {
        return StateOf(job) == "running" && CheckpointStep(job) > 0 &&
               PointsAfterCheckpoint(job) > 0;
      },
      seconds(120)))
      << a->Stderr();
  a->Signal(SIGKILL);
  a->Wait();
  ASSERT_TRUE(WaitUntil([&] { return StateOf(job) == "pending"; }, seconds(60)));
  const int64_t checkpoint = CheckpointStep(job);
  ASSERT_GT(checkpoint, 0);

  auto b = Worker("b");
  EXPECT_EQ(b->Wait(seconds(180)), 0) << b->Stderr();
  EXPECT_EQ(StateOf(job), "done");
  const std::vector<StoredPoint> resumed = PointsOf(job);
  for (const StoredPoint& p : resumed) {
    EXPECT_EQ(p.attempt, p.step <= checkpoint ? 1 : 2) << p.metric << " step " << p.step;
  }

  // The same configuration under another name, never disturbed.
  const int64_t reference_sweep = Launch(CharLmSpec("charlm-undisturbed"), "charlm.yaml");
  auto c = Worker("c");
  EXPECT_EQ(c->Wait(seconds(180)), 0) << c->Stderr();
  const std::vector<StoredPoint> reference = PointsOf(JobOf(reference_sweep));
  ASSERT_EQ(resumed.size(), reference.size());
  // train/loss every 10 steps and valid/loss every 100, to step 1500.
  EXPECT_EQ(resumed.size(), 150u + 15u);
  for (size_t i = 0; i < resumed.size(); ++i) {
    EXPECT_EQ(resumed[i].metric, reference[i].metric);
    EXPECT_EQ(resumed[i].step, reference[i].step);
    EXPECT_EQ(resumed[i].value, reference[i].value)
        << resumed[i].metric << " step " << resumed[i].step;
  }
}

// SIGTERM to the worker: the program is told, checkpoints where it is and
// exits; the worker uploads that checkpoint and releases the job at once,
// long before its lease would lapse; the next worker finishes it from there.
TEST_F(ProgramTest, TerminatedWorkersProgramCheckpointsAndTheJobIsReleasedAtOnce) {
  std::string spec = CharLmSpec("charlm-terminated");
  spec.replace(spec.find("lease_seconds: 3"), 16, "lease_seconds: 600");
  const int64_t sweep = Launch(spec, "charlm.yaml");
  ASSERT_GT(sweep, 0);
  const int64_t job = JobOf(sweep);
  auto a = Worker("a");
  ASSERT_TRUE(WaitUntil(
      [&] {
        return QueryInt(db_, fmt::format("SELECT count(*) FROM curve_points WHERE job_id = {} "
                                         "AND metric = 'train/loss' AND step >= 100",
                                         job)) > 0;
      },
      seconds(120)))
      << a->Stderr();
  a->Signal(SIGTERM);
  EXPECT_EQ(a->Wait(seconds(60)), 0) << a->Stderr();
  // Released, not lapsed: the lease had ten minutes to run.
  EXPECT_EQ(StateOf(job), "pending");
  const int64_t checkpoint = CheckpointStep(job);
  EXPECT_GT(checkpoint, 0);
  EXPECT_GE(checkpoint, 100);
  EXPECT_EQ(QueryInt(db_, fmt::format("SELECT count(*) FROM events WHERE job_id = {} AND kind = "
                                      "'release'",
                                      job)),
            1);

  auto b = Worker("b");
  EXPECT_EQ(b->Wait(seconds(180)), 0) << b->Stderr();
  EXPECT_EQ(StateOf(job), "done");
  EXPECT_EQ(QueryInt(db_, fmt::format("SELECT max(step) FROM curve_points WHERE job_id = {}", job)),
            1500);
}

// Programs that break the protocol, one job each: a crash fails with the
// end of its stderr; a hang is ended after schedule.silence_seconds; 64 MiB
// on stdout neither blocks nor fails the job; malformed and backward lines
// are refused and only the well-formed points are stored.
TEST_F(ProgramTest, ProgramsThatBreakTheProtocolEndClearlyAndStoreNothingWrong) {
  const std::string spec = fmt::format(
      "name: bad-programs\n"
      "program: {}/tests/testdata/bad_program.py\n"
      "command: [/usr/bin/python3, \"${{program}}\", \"${{args}}\"]\n"
      "parameters:\n"
      "  mode: {{values: [crash, hang, flood, malformed]}}\n"
      "schedule: {{max_attempts: 1, silence_seconds: 2, lease_seconds: 30}}\n",
      testing::SourceDir());
  const int64_t sweep = Launch(spec, "bad.yaml");
  ASSERT_GT(sweep, 0);
  auto a = Worker("a");
  EXPECT_EQ(a->Wait(seconds(180)), 0) << a->Stderr();

  std::map<std::string, std::vector<std::string>> jobs;  // mode -> id, state, last_error
  for (const auto& row :
       Query(db_, fmt::format("SELECT json_extract(config_json, '$.mode'), id, state, last_error "
                              "FROM jobs WHERE sweep_id = {}",
                              sweep))) {
    jobs[row[0]] = {row[1], row[2], row[3]};
  }
  ASSERT_EQ(jobs.size(), 4u);
  EXPECT_EQ(jobs["crash"][1], "failed");
  EXPECT_NE(jobs["crash"][2].find("RuntimeError: the program broke at step 2"), std::string::npos)
      << jobs["crash"][2];
  EXPECT_NE(jobs["crash"][2].find("exited with code 3"), std::string::npos) << jobs["crash"][2];
  EXPECT_EQ(jobs["hang"][1], "failed");
  EXPECT_NE(jobs["hang"][2].find("2 s; it was ended as hung"), std::string::npos) << jobs["hang"][2];
  EXPECT_EQ(jobs["flood"][1], "done") << jobs["flood"][2];
  EXPECT_EQ(jobs["malformed"][1], "done") << jobs["malformed"][2];

  auto points = [&](const std::string& mode) {
    std::vector<std::string> out;
    for (const auto& row : Query(db_, "SELECT metric, step, value FROM curve_points WHERE job_id = " +
                                          jobs[mode][0] + " ORDER BY step")) {
      out.push_back(row[0] + "@" + row[1] + "=" + row[2]);
    }
    return out;
  };
  EXPECT_EQ(points("crash"), std::vector<std::string>({"x@1=0.5"}));
  EXPECT_EQ(points("hang"), std::vector<std::string>({"x@1=0.5"}));
  EXPECT_EQ(points("flood"), std::vector<std::string>({"x@1=0.25"}));
  EXPECT_EQ(points("malformed"), std::vector<std::string>({"x@10=0.75", "x@20=0.125"}));
}

}  // namespace
}  // namespace ablate
