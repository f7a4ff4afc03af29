// The scheduler, with a fake clock, against a database file and ":memory:".
#include "coordinator/job_manager.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "coordinator/sweep_manager.h"
#include "coordinator/test_util.h"
#include "coordinator/worker_manager.h"
#include "store/reader.h"
#include "store/store.h"

namespace ablate {
namespace {

using testing::Await;
using testing::kTestSpecJobs;
using testing::Managers;
using testing::TempDir;
using testing::TestPoint;
using testing::TestSpec;

constexpr int64_t kSecond = 1000;
// The schedule most tests use: 10 s leases, 2 attempts.
const char* kSchedule = "schedule: {max_attempts: 2, lease_seconds: 10}\n";

class SchedulerTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override { Open(); }

  void Open() {
    if (!m_) m_ = std::make_unique<Managers>(GetParam() ? ":memory:" : dir_.File("ablate.db"));
    Status opened = m_->Open();
    ASSERT_TRUE(opened.ok()) << opened.ToString();
  }

  void Close() { m_->Close(); }

  int64_t Launch(const std::string& name, const std::string& extra = kSchedule) {
    v1::LaunchRequest request;
    request.set_spec_text(TestSpec(name, extra));
    request.set_filename(name + ".yaml");
    v1::LaunchResponse reply;
    Status status = Await([&](auto done) { m_->sweeps->Launch(request, &reply, done); });
    EXPECT_TRUE(status.ok()) << status.ToString();
    return reply.sweep_id();
  }

  int64_t Register(const std::string& name) {
    v1::RegisterWorkerRequest request;
    request.set_name(name);
    request.set_host("host");
    request.set_device("cpu");
    v1::RegisterWorkerResponse reply;
    Status status = Await([&](auto done) { m_->workers->RegisterWorker(request, &reply, done); });
    EXPECT_TRUE(status.ok()) << status.ToString();
    return reply.worker_id();
  }

  v1::LeaseJobResponse Lease(int64_t worker) {
    v1::LeaseJobRequest request;
    request.set_worker_id(worker);
    v1::LeaseJobResponse reply;
    Status status = Await([&](auto done) { m_->jobs->LeaseJob(request, &reply, done); });
    EXPECT_TRUE(status.ok()) << status.ToString();
    return reply;
  }

  v1::LeaseState Heartbeat(const v1::JobLease& lease, int64_t step = 1) {
    v1::HeartbeatRequest request;
    request.set_job_id(lease.job_id());
    request.set_lease_token(lease.lease_token());
    request.mutable_progress()->set_step(step);
    request.mutable_progress()->set_steps_total(100);
    v1::HeartbeatResponse reply;
    Status status = Await([&](auto done) { m_->jobs->Heartbeat(request, &reply, done); });
    EXPECT_TRUE(status.ok()) << status.ToString();
    return reply.state();
  }

  Status Report(const v1::JobLease& lease, const std::vector<v1::CurvePoint>& points) {
    v1::ReportPointsRequest request;
    request.set_job_id(lease.job_id());
    request.set_lease_token(lease.lease_token());
    for (const auto& p : points) *request.add_points() = p;
    return Await([&](auto done) { m_->jobs->ReportPoints(request, done); });
  }

  Status Complete(const v1::JobLease& lease) {
    v1::CompleteJobRequest request;
    request.set_job_id(lease.job_id());
    request.set_lease_token(lease.lease_token());
    request.mutable_metrics()->set_valid_bpc(1.5);
    request.mutable_metrics()->set_steps(100);
    return Await([&](auto done) { m_->jobs->CompleteJob(request, nullptr, done); });
  }

  StatusOr<bool> Fail(const v1::JobLease& lease, bool retryable, bool non_finite = false) {
    v1::FailJobRequest request;
    request.set_job_id(lease.job_id());
    request.set_lease_token(lease.lease_token());
    request.set_error(non_finite ? "loss is nan at step 7" : "CUDA out of memory");
    request.set_retryable(retryable);
    request.set_non_finite_loss(non_finite);
    v1::FailJobResponse reply;
    Status status = Await([&](auto done) { m_->jobs->FailJob(request, &reply, done); });
    if (!status.ok()) return status;
    return reply.will_retry();
  }

  Status Release(const v1::JobLease& lease) {
    v1::ReleaseJobRequest request;
    request.set_job_id(lease.job_id());
    request.set_lease_token(lease.lease_token());
    request.set_reason("SIGTERM");
    return Await([&](auto done) { m_->jobs->ReleaseJob(request, done); });
  }

  void ExpireLeases() {
    ASSERT_TRUE(Await([&](auto done) { m_->jobs->ExpireLeases(done); }).ok());
  }

  // Runs `read` on the writer thread.
  template <typename T>
  T Read(std::function<StatusOr<T>(Database&)> read) {
    std::optional<T> value;
    Status status = Await([&](auto done) {
      m_->writer->Submit(
          [&](Database& db) -> Status {
            StatusOr<T> result = read(db);
            if (!result.ok()) return result.status();
            value = std::move(result).value();
            return Status::OK();
          },
          done);
    });
    EXPECT_TRUE(status.ok()) << status.ToString();
    return value.value_or(T{});
  }

  int64_t QueryInt(const std::string& sql, int64_t arg) {
    return Read<int64_t>([&](Database& db) { return db.QueryInt(sql, arg); });
  }

  std::string JobText(const std::string& column, int64_t job_id) {
    return Read<std::string>([&](Database& db) -> StatusOr<std::string> {
      ABLATE_ASSIGN_OR_RETURN(Rows rows,
                              db.Query("SELECT " + column + " FROM jobs WHERE id = ?", job_id));
      ABLATE_ASSIGN_OR_RETURN(bool row, rows.Next());
      if (!row) return Status::NotFound("no job");
      return rows.Text(0);
    });
  }

  std::vector<v1::CurvePoint> Curve(int64_t job_id) {
    return Read<std::vector<v1::CurvePoint>>(
        [&](Database& db) { return StoreReader(&db).JobCurve(job_id); });
  }

  v1::JobCounts Counts(int64_t sweep_id) {
    return Read<v1::JobCounts>([&](Database& db) -> StatusOr<v1::JobCounts> {
      v1::GetStatusRequest request;
      request.mutable_sweep()->set_id(sweep_id);
      v1::GetStatusResponse reply;
      ABLATE_RETURN_IF_ERROR(StoreReader(&db).GetStatus(request, &reply));
      return reply.sweeps(0).sweep().counts();
    });
  }

  TempDir dir_;
  std::unique_ptr<Managers> m_;
};

INSTANTIATE_TEST_SUITE_P(Backends, SchedulerTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Memory" : "File"; });

// What needs the database to outlive the coordinator: a file.
using SchedulerFileTest = SchedulerTest;
INSTANTIATE_TEST_SUITE_P(Backends, SchedulerFileTest, ::testing::Values(false),
                         [](const auto&) { return "File"; });

TEST_P(SchedulerTest, LeasesJobsInTheSpecsOrderThenNone) {
  int64_t sweep = Launch("a");
  int64_t worker = Register("w1");
  std::vector<int64_t> expected =
      Read<std::vector<int64_t>>([&](Database& db) -> StatusOr<std::vector<int64_t>> {
        std::vector<int64_t> ids;
        ABLATE_ASSIGN_OR_RETURN(
            Rows rows, db.Query("SELECT id FROM jobs WHERE sweep_id = ? ORDER BY ord", sweep));
        while (*rows.Next()) ids.push_back(rows.Int(0));
        return ids;
      });
  ASSERT_EQ(expected.size(), size_t{kTestSpecJobs});
  for (int i = 0; i < kTestSpecJobs; ++i) {
    v1::LeaseJobResponse reply = Lease(worker);
    ASSERT_TRUE(reply.has_job());
    EXPECT_EQ(reply.job().job_id(), expected[i]) << "lease " << i;
    EXPECT_EQ(reply.job().attempt(), 1);
    EXPECT_EQ(reply.job().sweep_name(), "a");
    EXPECT_DOUBLE_EQ(reply.job().lease_seconds(), 10);
    EXPECT_NE(reply.job().config_json().find("\"model\""), std::string::npos);
    EXPECT_EQ(reply.pending_jobs(), kTestSpecJobs - i - 1);
    EXPECT_EQ(reply.running_jobs(), i + 1);
  }
  v1::LeaseJobResponse none = Lease(worker);
  EXPECT_FALSE(none.has_job());
  EXPECT_EQ(none.pending_jobs(), 0);
  EXPECT_EQ(none.running_jobs(), kTestSpecJobs);
}

TEST_P(SchedulerTest, SweepsInterleaveByOrderOlderFirst) {
  int64_t a = Launch("a");
  int64_t b = Launch("b");
  int64_t worker = Register("w1");
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(Lease(worker).job().sweep_id(), a);
    EXPECT_EQ(Lease(worker).job().sweep_id(), b);
  }
}

TEST_P(SchedulerTest, UnknownWorkerMustRegisterAgain) {
  Launch("a");
  v1::LeaseJobRequest request;
  request.set_worker_id(12345);
  v1::LeaseJobResponse reply;
  EXPECT_EQ(Await([&](auto done) { m_->jobs->LeaseJob(request, &reply, done); }).code(),
            Status::kNotFound);
}

TEST_P(SchedulerTest, RegisteringTheSameNameIsTheSameWorker) {
  int64_t first = Register("gpu-box/0");
  EXPECT_EQ(Register("gpu-box/0"), first);
  EXPECT_NE(Register("gpu-box/1"), first);
}

TEST_P(SchedulerTest, ARestartedWorkersOldLeasesLapseWhenItRegistersAgain) {
  Launch("a");
  int64_t worker = Register("gpu-box/0");
  v1::JobLease orphan = Lease(worker).job();
  // The process died and came back under its name, well within the lease.
  m_->clock.AdvanceMs(1 * kSecond);
  EXPECT_EQ(Register("gpu-box/0"), worker);
  v1::JobLease again = Lease(worker).job();
  EXPECT_EQ(again.job_id(), orphan.job_id());
  EXPECT_EQ(again.attempt(), 2);
  EXPECT_GT(again.lease_token(), orphan.lease_token());
  EXPECT_EQ(Heartbeat(orphan), v1::LEASE_STATE_LOST);
  // Another worker's leases are not touched.
  v1::JobLease other = Lease(Register("gpu-box/1")).job();
  EXPECT_EQ(Register("gpu-box/0"), worker);
  EXPECT_EQ(Heartbeat(other), v1::LEASE_STATE_ACTIVE);
}

// What `ablate status` shows of a running job: step/steps_total, the
// training bpc and the byte rate.
TEST_P(SchedulerTest, ProgressIsFreshFromTheLeaseAndEveryTrainingPoint) {
  Launch("fresh", std::string(kSchedule) + "train: {steps: 250}\n");
  const v1::JobLease lease = Lease(Register("w")).job();
  const std::string progress =
      "step || '/' || steps_total || ' ' || "
      "CASE WHEN train_bpc IS NULL THEN '-' ELSE printf('%.2f', train_bpc) END || ' ' || "
      "CAST(bytes_per_s AS INTEGER)";
  // The step budget is known at the lease, before any heartbeat.
  EXPECT_EQ(JobText(progress, lease.job_id()), "0/250 - 0");

  // A training point moves the step, the bpc and the rate (1000 bytes in
  // 0.5 s a step); a validation point is not training progress.
  ASSERT_TRUE(Report(lease, {TestPoint(v1::SPLIT_TRAIN, 20, 3.25)}).ok());
  EXPECT_EQ(JobText(progress, lease.job_id()), "20/250 3.25 2000");
  ASSERT_TRUE(Report(lease, {TestPoint(v1::SPLIT_VALID, 25, 2.5)}).ok());
  EXPECT_EQ(JobText(progress, lease.job_id()), "20/250 3.25 2000");

  // A heartbeat that knows less (sent before the point) takes nothing back;
  // one that knows more moves the step on.
  v1::HeartbeatRequest early;
  early.set_job_id(lease.job_id());
  early.set_lease_token(lease.lease_token());
  early.mutable_progress()->set_step(3);
  v1::HeartbeatResponse reply;
  ASSERT_TRUE(Await([&](auto done) { m_->jobs->Heartbeat(early, &reply, done); }).ok());
  EXPECT_EQ(JobText(progress, lease.job_id()), "20/250 3.25 2000");
  EXPECT_EQ(Heartbeat(lease, 30), v1::LEASE_STATE_ACTIVE);
  EXPECT_EQ(JobText("step", lease.job_id()), "30");

  // An older point, retried, does not move the step back.
  ASSERT_TRUE(Report(lease, {TestPoint(v1::SPLIT_TRAIN, 10, 3.5)}).ok());
  EXPECT_EQ(JobText("step", lease.job_id()), "30");
}

// schedule.keep_checkpoints: final keeps a done job's checkpoint (its
// trained model) and tells the worker to upload it; none forgets it when the
// job is done and names the file for the caller to remove.
TEST_P(SchedulerTest, ADoneJobKeepsItsCheckpointUnlessTheSweepKeepsNone) {
  Launch("kept");
  const v1::JobLease kept = Lease(Register("w")).job();
  EXPECT_TRUE(kept.upload_final_checkpoint());
  auto with_checkpoint = [&](const v1::JobLease& lease, const std::string& file) {
    ASSERT_TRUE(Await([&](auto done) {
                  m_->writer->Submit(
                      [&](Database& db) {
                        return db.Run(
                            "UPDATE jobs SET checkpoint_step = 30, checkpoint_file = ?, "
                            "checkpoint_bytes = 100, checkpoint_sha256 = 'ab' WHERE id = ?",
                            file, lease.job_id());
                      },
                      done);
                }).ok());
  };
  auto complete = [&](const v1::JobLease& lease, std::string* dropped) {
    v1::CompleteJobRequest request;
    request.set_job_id(lease.job_id());
    request.set_lease_token(lease.lease_token());
    return Await([&](auto done) { m_->jobs->CompleteJob(request, dropped, done); });
  };
  with_checkpoint(kept, "kept.ckpt");
  std::string dropped;
  ASSERT_TRUE(complete(kept, &dropped).ok());
  EXPECT_EQ(dropped, "");
  EXPECT_EQ(JobText("checkpoint_file || ' ' || checkpoint_step", kept.job_id()), "kept.ckpt 30");

  // Its first job comes before the first sweep's second.
  Launch("dropped", "schedule: {max_attempts: 2, lease_seconds: 10, keep_checkpoints: none}\n");
  const v1::JobLease gone = Lease(Register("w2")).job();
  EXPECT_FALSE(gone.upload_final_checkpoint());
  with_checkpoint(gone, "gone.ckpt");
  ASSERT_TRUE(complete(gone, &dropped).ok());
  EXPECT_EQ(dropped, "gone.ckpt");
  EXPECT_EQ(JobText("IFNULL(checkpoint_file, '-') || ' ' || checkpoint_step", gone.job_id()),
            "- 0");
}

TEST_P(SchedulerTest, HeartbeatExtendsTheLease) {
  Launch("a");
  v1::JobLease lease = Lease(Register("w1")).job();
  for (int i = 0; i < 5; ++i) {
    m_->clock.AdvanceMs(8 * kSecond);
    EXPECT_EQ(Heartbeat(lease, i), v1::LEASE_STATE_ACTIVE);
    ExpireLeases();
  }
  EXPECT_EQ(Heartbeat(lease), v1::LEASE_STATE_ACTIVE);
  EXPECT_EQ(QueryInt("SELECT attempts FROM jobs WHERE id = ?", lease.job_id()), 1);
}

TEST_P(SchedulerTest, ExpiredLeaseIsOfferedAgainWithTheNextAttempt) {
  Launch("a");
  int64_t w1 = Register("w1");
  int64_t w2 = Register("w2");
  v1::JobLease first = Lease(w1).job();
  m_->clock.AdvanceMs(11 * kSecond);
  ExpireLeases();
  EXPECT_EQ(JobText("state", first.job_id()), "pending");
  EXPECT_NE(JobText("last_error", first.job_id()).find("lease expired on worker w1"),
            std::string::npos);
  v1::JobLease second = Lease(w2).job();
  EXPECT_EQ(second.job_id(), first.job_id());
  EXPECT_EQ(second.attempt(), 2);
  EXPECT_GT(second.lease_token(), first.lease_token());
}

TEST_P(SchedulerTest, LeaseReclaimsExpiredLeasesWithoutWaitingForTheSweep) {
  Launch("a");
  int64_t worker = Register("w1");
  v1::JobLease first = Lease(worker).job();
  m_->clock.AdvanceMs(11 * kSecond);
  EXPECT_EQ(Lease(worker).job().job_id(), first.job_id());
}

TEST_P(SchedulerTest, ExhaustedRetryBudgetFailsTheJobWithItsLastError) {
  int64_t sweep = Launch("a");
  int64_t worker = Register("w1");
  v1::JobLease lease;
  for (int attempt = 1; attempt <= 2; ++attempt) {
    lease = Lease(worker).job();
    EXPECT_EQ(lease.attempt(), attempt);
    m_->clock.AdvanceMs(11 * kSecond);
    ExpireLeases();
  }
  EXPECT_EQ(JobText("state", lease.job_id()), "failed");
  EXPECT_EQ(JobText("last_error", lease.job_id()), "lease expired on worker w1 (attempt 2 of 2)");
  EXPECT_EQ(Counts(sweep).failed(), 1);
  EXPECT_NE(Lease(worker).job().job_id(), lease.job_id());
}

TEST_P(SchedulerTest, StaleTokenIsFencedOffAfterReLease) {
  Launch("a");
  v1::JobLease old_lease = Lease(Register("w1")).job();
  m_->clock.AdvanceMs(11 * kSecond);
  v1::JobLease new_lease = Lease(Register("w2")).job();
  ASSERT_EQ(new_lease.job_id(), old_lease.job_id());

  EXPECT_EQ(Heartbeat(old_lease), v1::LEASE_STATE_LOST);
  Status report = Report(old_lease, {TestPoint(v1::SPLIT_TRAIN, 5, 2.0)});
  EXPECT_EQ(report.code(), Status::kFailedPrecondition);
  EXPECT_NE(report.message().find("stale lease"), std::string::npos);
  EXPECT_EQ(Complete(old_lease).code(), Status::kFailedPrecondition);
  EXPECT_EQ(Fail(old_lease, false).status().code(), Status::kFailedPrecondition);
  EXPECT_EQ(Release(old_lease).code(), Status::kFailedPrecondition);
  EXPECT_TRUE(Curve(old_lease.job_id()).empty());
  EXPECT_EQ(Heartbeat(new_lease), v1::LEASE_STATE_ACTIVE);
  EXPECT_TRUE(Complete(new_lease).ok());
}

TEST_P(SchedulerTest, RepeatedReportStoresEachPointOnce) {
  Launch("a");
  v1::JobLease lease = Lease(Register("w1")).job();
  std::vector<v1::CurvePoint> points = {TestPoint(v1::SPLIT_TRAIN, 10, 3.0),
                                        TestPoint(v1::SPLIT_VALID, 10, 3.2),
                                        TestPoint(v1::SPLIT_TRAIN, 20, 2.5)};
  ASSERT_TRUE(Report(lease, points).ok());
  ASSERT_TRUE(Report(lease, points).ok());
  std::vector<v1::CurvePoint> curve = Curve(lease.job_id());
  ASSERT_EQ(curve.size(), 3u);
  EXPECT_EQ(curve[0].split(), v1::SPLIT_TRAIN);
  EXPECT_EQ(curve[0].step(), 10);
  EXPECT_DOUBLE_EQ(curve[0].bpc(), 3.0);
  EXPECT_EQ(curve[1].step(), 20);
  EXPECT_EQ(curve[2].split(), v1::SPLIT_VALID);
}

TEST_P(SchedulerTest, InvalidReportStoresNothing) {
  Launch("a");
  v1::JobLease lease = Lease(Register("w1")).job();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<std::vector<v1::CurvePoint>> bad = {
      {TestPoint(v1::SPLIT_TRAIN, 10, 3.0), TestPoint(v1::SPLIT_TRAIN, -1, 3.0)},
      {TestPoint(v1::SPLIT_TRAIN, 10, 3.0), TestPoint(v1::SPLIT_TRAIN, 20, nan)},
      {TestPoint(v1::SPLIT_TRAIN, 10, 3.0), TestPoint(v1::SPLIT_VALID, 20, inf)},
      {TestPoint(v1::SPLIT_TRAIN, 20, 3.0), TestPoint(v1::SPLIT_TRAIN, 10, 3.0)},
      {TestPoint(v1::SPLIT_TRAIN, 10, 3.0), TestPoint(v1::SPLIT_TRAIN, 10, 3.0)},
      {TestPoint(v1::SPLIT_UNSPECIFIED, 10, 3.0)},
  };
  for (const auto& points : bad) {
    EXPECT_EQ(Report(lease, points).code(), Status::kInvalidArgument);
  }
  EXPECT_TRUE(Curve(lease.job_id()).empty());
}

TEST_P(SchedulerTest, RepeatedCompletionIsOk) {
  int64_t sweep = Launch("a");
  v1::JobLease lease = Lease(Register("w1")).job();
  ASSERT_TRUE(Complete(lease).ok());
  EXPECT_TRUE(Complete(lease).ok());
  EXPECT_EQ(JobText("state", lease.job_id()), "done");
  EXPECT_EQ(JobText("final_valid_bpc", lease.job_id()), "1.5");
  EXPECT_EQ(Counts(sweep).done(), 1);
  EXPECT_EQ(Heartbeat(lease), v1::LEASE_STATE_LOST);
  EXPECT_EQ(Report(lease, {TestPoint(v1::SPLIT_TRAIN, 1, 1)}).code(), Status::kFailedPrecondition);
  EXPECT_EQ(Fail(lease, true).status().code(), Status::kFailedPrecondition);
}

TEST_P(SchedulerTest, ReLeaseFromCheckpointDropsThePointsAfterIt) {
  Launch("a");
  int64_t worker = Register("w1");
  v1::JobLease first = Lease(worker).job();
  ASSERT_TRUE(
      Report(first, {TestPoint(v1::SPLIT_TRAIN, 10, 3.0), TestPoint(v1::SPLIT_TRAIN, 20, 2.8),
                     TestPoint(v1::SPLIT_VALID, 20, 2.9), TestPoint(v1::SPLIT_TRAIN, 30, 2.6),
                     TestPoint(v1::SPLIT_VALID, 40, 2.5)})
          .ok());
  // As a committed checkpoint upload leaves it (tested with the service).
  ASSERT_TRUE(Await([&](auto done) {
                m_->writer->Submit(
                    [&](Database& db) {
                      return db.Run("UPDATE jobs SET checkpoint_step = 20 WHERE id = ?",
                                    first.job_id());
                    },
                    done);
              }).ok());
  m_->clock.AdvanceMs(11 * kSecond);
  v1::JobLease second = Lease(worker).job();
  ASSERT_EQ(second.job_id(), first.job_id());
  EXPECT_EQ(second.checkpoint_step(), 20);
  std::vector<v1::CurvePoint> curve = Curve(first.job_id());
  ASSERT_EQ(curve.size(), 3u);
  for (const auto& p : curve) EXPECT_LE(p.step(), 20);
}

TEST_P(SchedulerTest, ReLeaseWithoutCheckpointStartsTheCurveOver) {
  Launch("a");
  int64_t worker = Register("w1");
  v1::JobLease first = Lease(worker).job();
  ASSERT_TRUE(Report(first, {TestPoint(v1::SPLIT_TRAIN, 10, 3.0)}).ok());
  ASSERT_TRUE(Release(first).ok());
  EXPECT_EQ(Lease(worker).job().checkpoint_step(), 0);
  EXPECT_TRUE(Curve(first.job_id()).empty());
}

TEST_P(SchedulerTest, ReleaseMakesTheJobLeasableWithoutUsingAnAttempt) {
  Launch("a", "schedule: {max_attempts: 1, lease_seconds: 10}\n");
  int64_t w1 = Register("w1");
  int64_t w2 = Register("w2");
  v1::JobLease first = Lease(w1).job();
  ASSERT_TRUE(Release(first).ok());
  EXPECT_TRUE(Release(first).ok()) << "a retried release";
  v1::JobLease second = Lease(w2).job();
  EXPECT_EQ(second.job_id(), first.job_id());
  EXPECT_EQ(second.attempt(), 1);
  ASSERT_TRUE(Release(second).ok());
  EXPECT_EQ(Lease(w1).job().attempt(), 1);
}

TEST_P(SchedulerTest, CancelStopsPendingAndRunningJobs) {
  int64_t sweep = Launch("a");
  int64_t worker = Register("w1");
  v1::JobLease running = Lease(worker).job();
  v1::CancelRequest request;
  request.mutable_sweep()->set_name("a");
  v1::CancelResponse reply;
  ASSERT_TRUE(Await([&](auto done) { m_->jobs->Cancel(request, &reply, done); }).ok());
  EXPECT_EQ(reply.jobs_cancelled(), kTestSpecJobs);
  EXPECT_EQ(Heartbeat(running), v1::LEASE_STATE_CANCELLED);
  EXPECT_EQ(Complete(running).code(), Status::kFailedPrecondition);
  EXPECT_FALSE(Lease(worker).has_job());
  v1::JobCounts counts = Counts(sweep);
  EXPECT_EQ(counts.cancelled(), kTestSpecJobs);
  EXPECT_EQ(counts.running() + counts.pending(), 0);
}

TEST_P(SchedulerTest, CancelOfOneJobLeavesTheOthers) {
  int64_t sweep = Launch("a");
  v1::JobLease running = Lease(Register("w1")).job();
  v1::CancelRequest request;
  request.set_job_id(running.job_id());
  v1::CancelResponse reply;
  ASSERT_TRUE(Await([&](auto done) { m_->jobs->Cancel(request, &reply, done); }).ok());
  EXPECT_EQ(reply.jobs_cancelled(), 1);
  EXPECT_EQ(Heartbeat(running), v1::LEASE_STATE_CANCELLED);
  EXPECT_EQ(Counts(sweep).pending(), kTestSpecJobs - 1);
}

TEST_P(SchedulerTest, RetryMakesFailedAndCancelledJobsPendingWithNoAttempts) {
  int64_t sweep = Launch("a");
  int64_t worker = Register("w1");
  v1::JobLease failed = Lease(worker).job();
  ASSERT_EQ(*Fail(failed, /*retryable=*/false), false);
  v1::JobLease cancelled = Lease(worker).job();
  v1::CancelRequest cancel;
  cancel.set_job_id(cancelled.job_id());
  v1::CancelResponse cancel_reply;
  ASSERT_TRUE(Await([&](auto done) { m_->jobs->Cancel(cancel, &cancel_reply, done); }).ok());
  v1::JobLease done_job = Lease(worker).job();
  ASSERT_TRUE(Complete(done_job).ok());

  v1::RetryRequest retry;
  retry.mutable_sweep()->set_id(sweep);
  v1::RetryResponse reply;
  ASSERT_TRUE(Await([&](auto done) { m_->jobs->Retry(retry, &reply, done); }).ok());
  EXPECT_EQ(reply.jobs_retried(), 2);
  EXPECT_EQ(JobText("state", failed.job_id()), "pending");
  EXPECT_EQ(QueryInt("SELECT attempts FROM jobs WHERE id = ?", failed.job_id()), 0);
  EXPECT_EQ(JobText("state", done_job.job_id()), "done");
  v1::JobLease again = Lease(worker).job();
  EXPECT_EQ(again.job_id(), failed.job_id());
  EXPECT_EQ(again.attempt(), 1);
  EXPECT_GT(again.lease_token(), failed.lease_token());
}

TEST_P(SchedulerTest, RetryableFailureIsRetriedWhileAttemptsRemain) {
  Launch("a");
  int64_t worker = Register("w1");
  v1::JobLease first = Lease(worker).job();
  EXPECT_EQ(*Fail(first, /*retryable=*/true), true);
  EXPECT_EQ(*Fail(first, /*retryable=*/true), true) << "a retried FailJob";
  v1::JobLease second = Lease(worker).job();
  ASSERT_EQ(second.job_id(), first.job_id());
  EXPECT_EQ(*Fail(second, /*retryable=*/true), false);
  EXPECT_EQ(JobText("state", first.job_id()), "failed");
  EXPECT_EQ(JobText("last_error", first.job_id()), "CUDA out of memory");
}

TEST_P(SchedulerTest, NonFiniteLossFailsAtOnceUnlessTheSweepRetriesOnNan) {
  Launch("strict");
  int64_t worker = Register("w1");
  v1::JobLease strict = Lease(worker).job();
  EXPECT_EQ(*Fail(strict, /*retryable=*/true, /*non_finite=*/true), false);
  EXPECT_EQ(JobText("state", strict.job_id()), "failed");

  Launch("lenient", "schedule: {max_attempts: 2, lease_seconds: 10, retry_on_nan: true}\n");
  v1::JobLease lenient;
  do {
    lenient = Lease(worker).job();
  } while (lenient.sweep_name() != "lenient");
  EXPECT_EQ(*Fail(lenient, /*retryable=*/false, /*non_finite=*/true), true);
  EXPECT_EQ(JobText("state", lenient.job_id()), "pending");
}

TEST_P(SchedulerFileTest, RestartRenewsTheLeasesOfRunningJobs) {
  Launch("a");
  int64_t worker = Register("w1");
  v1::JobLease lease = Lease(worker).job();
  Close();
  m_->clock.AdvanceMs(60 * kSecond);  // the coordinator was down for a minute
  Open();
  ASSERT_TRUE(Await([&](auto done) { m_->jobs->RenewLeasesAfterRestart(done); }).ok());
  ExpireLeases();
  EXPECT_EQ(Heartbeat(lease), v1::LEASE_STATE_ACTIVE);
  m_->clock.AdvanceMs(11 * kSecond);
  ExpireLeases();
  EXPECT_EQ(Heartbeat(lease), v1::LEASE_STATE_LOST) << "renewed once, not forever";
}

}  // namespace
}  // namespace ablate
