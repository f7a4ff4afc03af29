// Faults a sweep must survive, each with the real coordinator and real
// workers on loopback and real signals: whatever dies, every job is trained
// once and every curve is whole and, on CPU with one thread, bit for bit the
// curve of a run that was never disturbed.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>

#include <filesystem>
#include <iostream>
#include <map>
#include <thread>

#include "proto/ablate.grpc.pb.h"
#include "tests/support/sweep_harness.h"

namespace ablate {
namespace {

using std::chrono::seconds;
using testing::CheckSweep;
using testing::CoordinatorProcess;
using testing::Curve;
using testing::JobRecord;
using testing::Process;
using testing::References;
using testing::StartWorker;
using testing::TempDir;
using testing::WaitUntil;
using testing::WorkerFlags;

// A job of a few seconds on one thread: long enough to be hit mid-flight.
struct SpecOptions {
  std::string name = "faults";
  std::string grid = "  cell: [gru]\n";
  int steps = 400;
  int checkpoint_every = 60;
  double lease_seconds = 3;
  int max_attempts = 3;
  std::string train_extra;
  std::string schedule_extra;
};

std::string Spec(const std::string& corpus, const SpecOptions& o) {
  return fmt::format(
      "name: {}\n"
      "data: {{path: {}}}\n"
      "model: {{hidden: 128, vocab: 27}}\n"
      "train: {{batch: 8, seq: 48, steps: {}, log_every: 10, eval_every: 60, eval_bytes: 2000, "
      "checkpoint_every: {}{}}}\n"
      "schedule: {{lease_seconds: {}, max_attempts: {}{}}}\n"
      "grid:\n{}",
      o.name, corpus, o.steps, o.checkpoint_every, o.train_extra, o.lease_seconds, o.max_attempts,
      o.schedule_extra, o.grid);
}

class FaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    corpus_ = dir_.File("corpus.txt");
    testing::WriteFile(corpus_, testing::EnglishText8(60));
    db_ = dir_.File("sweep.db");
  }

  // A failure shows what every process logged.
  void TearDown() override {
    if (HasFailure()) std::cerr << testing::ProcessLogs(dir_.path());
  }

  void StartCoordinator() {
    coordinator_ = std::make_unique<CoordinatorProcess>(dir_.path(), db_, testing::FreePort());
    ASSERT_TRUE(coordinator_->serving()) << coordinator_->Logs();
  }

  void Launch(const SpecOptions& options) {
    auto launched = testing::Launch(coordinator_->Channel(), Spec(corpus_, options), "faults.yaml");
    ASSERT_TRUE(launched.ok()) << launched.status().ToString();
  }

  std::unique_ptr<Process> Worker(const std::string& name) {
    WorkerFlags flags;
    flags.name = name;
    return StartWorker(dir_.path(), name, coordinator_->address(), flags);
  }

  JobRecord Job(int64_t id) {
    auto jobs = testing::ReadJobs(db_);
    EXPECT_TRUE(jobs.ok()) << jobs.status().ToString();
    for (const JobRecord& job : jobs.ok() ? *jobs : std::vector<JobRecord>{}) {
      if (job.id == id) return job;
    }
    ADD_FAILURE() << "no job " << id;
    return {};
  }

  Curve CurveOf(int64_t job) {
    auto curves = testing::ReadCurves(db_);
    EXPECT_TRUE(curves.ok()) << curves.status().ToString();
    return curves.ok() ? (*curves)[job] : Curve{};
  }

  // Stored points of `job` after its checkpoint.
  int64_t PointsAfterCheckpoint(int64_t job) {
    const int64_t checkpoint = Job(job).checkpoint_step;
    int64_t n = 0;
    for (const auto& p : CurveOf(job)) n += p.step > checkpoint;
    return n;
  }

  int64_t WorkerId(const std::string& name) {
    auto id = testing::QueryInt64(db_, "SELECT id FROM workers WHERE name = '" + name + "'");
    EXPECT_TRUE(id.ok()) << id.status().ToString();
    return id.ok() ? *id : -1;
  }

  // The whole sweep is done, every curve is its schedule exactly once and
  // equals an undisturbed run bit for bit.
  void ExpectWholeAndExact() {
    References references(dir_.path(), 1);
    testing::SweepCheck check = CheckSweep(db_, &references);
    EXPECT_TRUE(check.ok()) << check.Summary() << "\n" << ::testing::PrintToString(check.problems);
    EXPECT_EQ(check.compared_jobs, check.jobs);
  }

  void ExpectExits(Process& worker, int code = 0) {
    EXPECT_EQ(worker.Wait(seconds(180)), code) << worker.name() << ":\n" << worker.Stderr();
  }

  TempDir dir_;
  std::string corpus_, db_;
  std::unique_ptr<CoordinatorProcess> coordinator_;
};

// Fault 1: SIGKILL after a checkpoint. The lease lapses, another worker
// resumes from the checkpoint, and the points the dead attempt reported past
// it are replaced by the new attempt's.
TEST_F(FaultTest, KilledWorkersJobResumesElsewhereFromItsCheckpointBitForBit) {
  StartCoordinator();
  // Checkpoints far enough apart (over a second here) that the worker's
  // half-second point reports land between them: points past a checkpoint
  // are in the database for a while, not an instant, whatever the trainer's
  // speed.
  SpecOptions spec;
  spec.steps = 2000;
  spec.checkpoint_every = 300;
  Launch(spec);
  auto a = Worker("a");
  // Frozen as soon as it reported points past an uploaded checkpoint, then
  // killed: its last moment had points that the next attempt must replace.
  // Requests already on their way land while it is frozen; what counts is
  // the state once they did.
  ASSERT_TRUE(testing::FreezeWhen(
      *a,
      [&] {
        const JobRecord job = Job(1);
        return job.state == "running" && job.checkpoint_step > 0 && PointsAfterCheckpoint(1) > 0;
      },
      seconds(120)))
      << a->Stderr();
  a->Signal(SIGKILL);
  a->Wait();
  // Once the lease has lapsed nothing a sent can still land.
  ASSERT_TRUE(WaitUntil([&] { return Job(1).state == "pending"; }, seconds(60)));
  const JobRecord killed = Job(1);
  const int64_t stale_points = PointsAfterCheckpoint(1);
  EXPECT_GT(stale_points, 0);

  auto b = Worker("b");
  ExpectExits(*b);
  const JobRecord done = Job(1);
  EXPECT_EQ(done.state, "done");
  EXPECT_EQ(done.attempts, 2);
  EXPECT_EQ(done.lease_owner, WorkerId("b"));
  EXPECT_NE(b->Stderr().find("resumed from the checkpoint at step " +
                             std::to_string(killed.checkpoint_step)),
            std::string::npos)
      << b->Stderr();
  // One trajectory: the first attempt's points up to its checkpoint, the
  // second's after it.
  for (const auto& p : CurveOf(1)) {
    EXPECT_EQ(p.attempt, p.step <= killed.checkpoint_step ? 1 : 2) << p.split << " step " << p.step;
  }
  ExpectWholeAndExact();
}

// Fault 2: the coordinator dies and comes back on the same database and
// port. Workers ride it out with their leases and buffered points.
TEST_F(FaultTest, CoordinatorKilledMidSweepLosesNoAcknowledgedPoint) {
  StartCoordinator();
  SpecOptions spec;
  spec.grid = "  cell: [gru, lstm]\n  layer_norm: [true, false]\n";
  spec.lease_seconds = 4;
  Launch(spec);
  auto a = Worker("a");
  auto b = Worker("b");
  ASSERT_TRUE(WaitUntil(
      [&] {
        auto running = testing::QueryInt64(
            db_, "SELECT count(*) FROM jobs WHERE state = 'running' AND checkpoint_step > 0");
        return running.ok() && *running == 2;
      },
      seconds(120)));
  coordinator_->Stop(SIGKILL);
  // What was acknowledged is what was committed.
  auto acknowledged = testing::ReadCurves(db_);
  ASSERT_TRUE(acknowledged.ok()) << acknowledged.status().ToString();
  size_t acknowledged_points = 0;
  for (const auto& [job, curve] : *acknowledged) acknowledged_points += curve.size();
  EXPECT_GT(acknowledged_points, 0u);
  // Down for longer than a lease: the leases survive only by being renewed.
  std::this_thread::sleep_for(seconds(5));
  ASSERT_TRUE(coordinator_->Restart()) << coordinator_->Logs();

  ExpectExits(*a);
  ExpectExits(*b);
  auto final_curves = testing::ReadCurves(db_);
  ASSERT_TRUE(final_curves.ok());
  for (const auto& [job, curve] : *acknowledged) {
    const Curve& now = (*final_curves)[job];
    for (const auto& p : curve) {
      auto it = std::find_if(now.begin(), now.end(), [&](const testing::Point& q) {
        return q.split == p.split && q.step == p.step;
      });
      ASSERT_NE(it, now.end()) << "job " << job << " lost " << p.split << " step " << p.step;
      EXPECT_EQ(it->bpc, p.bpc);
      EXPECT_EQ(it->attempt, p.attempt) << "job " << job << " was re-leased";
    }
  }
  auto jobs = testing::ReadJobs(db_);
  ASSERT_TRUE(jobs.ok());
  for (const JobRecord& job : *jobs) EXPECT_EQ(job.attempts, 1) << "job " << job.id;
  ExpectWholeAndExact();
}

// Fault 3: a worker frozen past its lease (a partition, a stopped VM). The
// job goes to another worker; the old one, back, is fenced off, drops the
// job and takes other work.
TEST_F(FaultTest, WorkerCutOffPastItsLeaseIsFencedOffAndMovesOn) {
  StartCoordinator();
  SpecOptions spec;
  // Enough jobs that some are still pending when a comes back, however
  // fast b trains.
  spec.grid = "  cell: [gru, lstm, mgu]\n  layer_norm: [true, false]\n";
  Launch(spec);
  auto a = Worker("a");
  ASSERT_TRUE(WaitUntil([&] { return Job(1).checkpoint_step > 0; }, seconds(120))) << a->Stderr();
  a->Signal(SIGSTOP);
  // b starts once a's lease has lapsed (the coordinator expires it within a
  // second), so its first lease takes job 1, the lowest pending job, ahead
  // of the untouched ones. From then on nothing a sent can still land.
  ASSERT_TRUE(WaitUntil([&] { return Job(1).state == "pending"; }, seconds(60)));
  const JobRecord frozen = Job(1);
  auto b = Worker("b");
  ASSERT_TRUE(WaitUntil(
      [&] {
        JobRecord job = Job(1);
        return job.state == "running" && job.lease_token > frozen.lease_token;
      },
      seconds(120)))
      << b->Stderr();
  a->Signal(SIGCONT);

  ExpectExits(*a);
  ExpectExits(*b);
  EXPECT_NE(a->Stderr().find("job 1: the lease is no longer ours; dropping it"), std::string::npos)
      << a->Stderr();
  EXPECT_EQ(Job(1).lease_owner, WorkerId("b"));
  auto done_by_a = testing::QueryInt64(
      db_, fmt::format("SELECT count(*) FROM jobs WHERE state = 'done' AND lease_owner = {}",
                       WorkerId("a")));
  EXPECT_GE(*done_by_a, 1) << "a did not carry on with other work";
  for (const auto& p : CurveOf(1)) {
    if (p.step > frozen.checkpoint_step) {
      EXPECT_EQ(p.attempt, 2) << "a late point of the fenced attempt: " << p.split << " step "
                              << p.step;
    }
  }
  ExpectWholeAndExact();
}

// Fault 4: SIGTERM. The worker checkpoints, uploads and releases: the job is
// leasable at once, keeps its attempt, and finishes bit for bit.
TEST_F(FaultTest, TerminatedWorkerHandsItsJobBackAtOnce) {
  StartCoordinator();
  SpecOptions spec;
  spec.checkpoint_every = 0;  // the checkpoint comes from the SIGTERM alone
  spec.lease_seconds = 600;   // a wait for the lease to lapse would time the test out
  spec.steps = 1200;          // far from done when the signal comes, however fast
  Launch(spec);
  auto a = Worker("a");
  ASSERT_TRUE(WaitUntil([&] { return CurveOf(1).size() >= 4; }, seconds(120))) << a->Stderr();
  a->Signal(SIGTERM);
  ExpectExits(*a);
  const JobRecord released = Job(1);
  EXPECT_EQ(released.state, "pending");
  EXPECT_EQ(released.attempts, 0);
  EXPECT_GT(released.checkpoint_step, 0);
  EXPECT_LT(released.checkpoint_step, spec.steps);

  const auto restarted = std::chrono::steady_clock::now();
  auto b = Worker("b");
  ExpectExits(*b);
  EXPECT_LT(std::chrono::steady_clock::now() - restarted, seconds(120));
  const JobRecord done = Job(1);
  EXPECT_EQ(done.state, "done");
  EXPECT_EQ(done.attempts, 1) << "the release used up an attempt";
  EXPECT_NE(b->Stderr().find("resumed from the checkpoint at step " +
                             std::to_string(released.checkpoint_step)),
            std::string::npos)
      << b->Stderr();
  ExpectWholeAndExact();
}

// Fault 4b: SIGTERM while the coordinator is gone. The worker checkpoints,
// retries for its --stop-grace, then exits without releasing; the job's lease
// lapses and the job resumes from its last uploaded checkpoint, bit for bit.
TEST_F(FaultTest, TerminatedWorkerWhoseCoordinatorIsGoneGivesUpAfterItsGrace) {
  StartCoordinator();
  SpecOptions spec;
  spec.lease_seconds = 4;
  Launch(spec);
  WorkerFlags flags;
  flags.name = "a";
  flags.extra_args = {"--stop-grace", "3"};
  auto a = StartWorker(dir_.path(), "a", coordinator_->address(), flags);
  ASSERT_TRUE(WaitUntil([&] { return Job(1).checkpoint_step > 0; }, seconds(120))) << a->Stderr();
  coordinator_->Stop(SIGKILL);
  const auto stopped = std::chrono::steady_clock::now();
  a->Signal(SIGTERM);
  ExpectExits(*a);
  // No call outlives the grace: it bounds the whole stop (plus exiting).
  EXPECT_LT(std::chrono::steady_clock::now() - stopped, seconds(8));
  EXPECT_NE(a->Stderr().find("its lease will lapse"), std::string::npos) << a->Stderr();

  ASSERT_TRUE(coordinator_->Restart()) << coordinator_->Logs();
  auto b = Worker("b");
  ExpectExits(*b);
  EXPECT_EQ(Job(1).state, "done");
  ExpectWholeAndExact();
}

// Fault 5: the database cannot grow (a full disk; here a file-size limit set
// on the running coordinator). Every write is refused as UNAVAILABLE, nothing
// unacknowledged is stored, workers hold their points, and service resumes
// once the disk has room.
TEST_F(FaultTest, FullDiskRefusesWritesAsUnavailableAndServiceResumes) {
  StartCoordinator();
  SpecOptions spec;
  spec.grid = "  cell: [gru, lstm]\n";
  Launch(spec);
  auto a = Worker("a");
  ASSERT_TRUE(WaitUntil([&] { return CurveOf(1).size() >= 2; }, seconds(120))) << a->Stderr();

  const pid_t pid = coordinator_->process().pid();
  rlimit full{0, RLIM_INFINITY};
  ASSERT_EQ(prlimit(pid, RLIMIT_FSIZE, &full, nullptr), 0) << std::strerror(errno);
  const auto disk_full = std::chrono::steady_clock::now();
  SpecOptions other;
  other.name = "refused";
  auto refused = testing::Launch(coordinator_->Channel(), Spec(corpus_, other), "refused.yaml");
  EXPECT_EQ(refused.status().code(), Status::kUnavailable) << refused.status().ToString();
  auto stored = testing::QueryInt64(db_, "SELECT count(*) FROM curve_points");
  ASSERT_TRUE(stored.ok());
  // The worker's calls are refused; it holds its points (and its checkpoint
  // upload) and retries. Nothing lands meanwhile.
  ASSERT_TRUE(WaitUntil(
      [&] { return a->Stderr().find("UNAVAILABLE: not committed, retry") != std::string::npos; },
      seconds(60)))
      << a->Stderr();
  // Longer than a lease: the heartbeats refused meanwhile must not cost the
  // worker its job once the disk has room again.
  std::this_thread::sleep_until(disk_full + seconds(5));
  EXPECT_EQ(*testing::QueryInt64(db_, "SELECT count(*) FROM curve_points"), *stored);
  EXPECT_TRUE(a->running());

  rlimit room{RLIM_INFINITY, RLIM_INFINITY};
  ASSERT_EQ(prlimit(pid, RLIMIT_FSIZE, &room, nullptr), 0) << std::strerror(errno);
  ExpectExits(*a);
  EXPECT_TRUE(coordinator_->process().running()) << coordinator_->Logs();
  EXPECT_EQ(*testing::QueryInt64(db_, "SELECT count(*) FROM sweeps WHERE name = 'refused'"), 0);
  EXPECT_EQ(Job(1).attempts, 1) << "the job was taken from a worker that kept heartbeating";
  EXPECT_GE(*testing::QueryInt64(
                db_, "SELECT count(*) FROM events WHERE kind = 'renew_after_refused_writes'"),
            1);
  ExpectWholeAndExact();
}

// Fault 6: a loss that blows up fails its job with the reason, once, unless
// the sweep asks for retries; the rest of the sweep finishes. No legal config
// makes the trainer diverge for sure (lr is capped at 10, Adam moves each
// weight by at most lr per step and the cells saturate: lr 10 without
// clipping gives a finite ~1000 bpc), so a scripted worker reports the
// divergence exactly as ablate-worker does when its trainer stops with
// kDiverged, and real workers train the rest.
class ScriptedWorker {
 public:
  ScriptedWorker(const std::shared_ptr<grpc::Channel>& channel, const std::string& name)
      : stub_(v1::Coordinator::NewStub(channel)) {
    v1::RegisterWorkerRequest request;
    request.set_name(name);
    request.set_device("cpu");
    v1::RegisterWorkerResponse reply;
    grpc::ClientContext context;
    EXPECT_TRUE(stub_->RegisterWorker(&context, request, &reply).ok());
    id_ = reply.worker_id();
  }

  v1::JobLease Lease() {
    v1::LeaseJobRequest request;
    request.set_worker_id(id_);
    v1::LeaseJobResponse reply;
    grpc::ClientContext context;
    EXPECT_TRUE(stub_->LeaseJob(&context, request, &reply).ok());
    return reply.job();
  }

  // What RunJob sends for TrainSummary::Outcome::kDiverged.
  bool FailDiverged(const v1::JobLease& lease) {
    v1::FailJobRequest request;
    request.set_job_id(lease.job_id());
    request.set_lease_token(lease.lease_token());
    request.set_error("training loss became NaN in steps 11-20");
    request.set_retryable(false);
    request.set_non_finite_loss(true);
    v1::FailJobResponse reply;
    grpc::ClientContext context;
    EXPECT_TRUE(stub_->FailJob(&context, request, &reply).ok());
    return reply.will_retry();
  }

  void Release(const v1::JobLease& lease) {
    v1::ReleaseJobRequest request;
    request.set_job_id(lease.job_id());
    request.set_lease_token(lease.lease_token());
    v1::ReleaseJobResponse reply;
    grpc::ClientContext context;
    EXPECT_TRUE(stub_->ReleaseJob(&context, request, &reply).ok());
  }

 private:
  std::unique_ptr<v1::Coordinator::Stub> stub_;
  int64_t id_ = 0;
};

TEST_F(FaultTest, DivergedJobFailsWithItsReasonAndIsRetriedOnlyIfTheSweepSaysSo) {
  StartCoordinator();
  SpecOptions once;
  once.name = "nan-once";
  once.steps = 60;
  once.checkpoint_every = 0;
  once.grid = "  lr: [0.003, 10]\n";
  Launch(once);
  SpecOptions retried = once;
  retried.name = "nan-retried";
  retried.max_attempts = 2;
  retried.schedule_extra = ", retry_on_nan: true";
  Launch(retried);

  // The scripted worker takes every lr 10 job as it comes up and lets the
  // others go back for the real worker.
  ScriptedWorker scripted(coordinator_->Channel(), "diverging");
  std::vector<v1::JobLease> held;
  std::map<int64_t, int> will_retry;
  for (int i = 0; i < 8; ++i) {
    v1::JobLease lease = scripted.Lease();
    if (lease.job_id() == 0) break;
    if (lease.config_json().find("\"lr\":10.0") == std::string::npos) {
      held.push_back(lease);
      continue;
    }
    will_retry[lease.job_id()] += scripted.FailDiverged(lease);
  }
  for (const v1::JobLease& lease : held) scripted.Release(lease);
  auto a = Worker("a");
  ExpectExits(*a);

  auto rows = testing::ReadJobs(db_);
  ASSERT_TRUE(rows.ok());
  auto leases = testing::CountEvents(db_, "lease");
  ASSERT_TRUE(leases.ok());
  int diverged = 0;
  for (const JobRecord& job : *rows) {
    if (job.config_json.find("\"lr\":10.0") == std::string::npos) {
      EXPECT_EQ(job.state, "done") << job.id << ": " << job.last_error;
      continue;
    }
    ++diverged;
    const bool retry_on_nan = job.id > 2;  // the second sweep's
    EXPECT_EQ(job.state, "failed") << job.id;
    EXPECT_EQ(job.last_error, "training loss became NaN in steps 11-20");
    EXPECT_EQ(job.attempts, retry_on_nan ? 2 : 1) << "job " << job.id;
    EXPECT_EQ((*leases)[job.id], retry_on_nan ? 2 : 1) << "job " << job.id;
    EXPECT_EQ(will_retry[job.id], retry_on_nan ? 1 : 0) << "job " << job.id;
  }
  EXPECT_EQ(diverged, 2);
}

}  // namespace
}  // namespace ablate
