// JobUplink against a real coordinator in this process, on loopback, through
// a client that fails calls on demand and keeps what got through.
#include "worker/job_uplink.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <thread>
#include <vector>

#include "common/mutex.h"
#include "common/temp_dir.h"
#include "coordinator/clock.h"
#include "coordinator/server.h"
#include "coordinator/test_util.h"
#include "store/sqlite.h"
#include "worker/coordinator_client.h"
#include "worker/stop_state.h"

namespace ablate {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// The real client, with reports and heartbeats that fail on demand.
class FlakyClient : public CoordinatorClient {
 public:
  explicit FlakyClient(CoordinatorClient* real) : real_(real) {}

  // The next `n` reports fail (Unavailable) before they leave.
  void FailReports(int n) EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    reports_to_fail_ = n;
  }
  // The next `n` reports reach the coordinator, and their answers are lost
  // (Unavailable): the coordinator stored what the worker thinks it did not.
  void LoseReportAnswers(int n) EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    answers_to_lose_ = n;
  }
  // While away, every report and heartbeat fails (Unavailable) before it leaves.
  void SetAway(bool away) EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    away_ = away;
  }

  // The reports the coordinator accepted, in order.
  std::vector<v1::ReportPointsRequest> accepted() EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    return accepted_;
  }
  // The heartbeats the coordinator answered, in order.
  std::vector<v1::HeartbeatRequest> heartbeats() EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    return heartbeats_;
  }
  // Reports that failed as the uplink saw them.
  int failed_reports() EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    return failed_reports_;
  }

  Status ReportPoints(const v1::ReportPointsRequest& request) override EXCLUDES(mu_) {
    bool lose_answer = false;
    {
      MutexLock lock(&mu_);
      if (away_ || reports_to_fail_ > 0) {
        if (!away_) --reports_to_fail_;
        ++failed_reports_;
        return Status::Unavailable("injected: the coordinator is away");
      }
      if (answers_to_lose_ > 0) {
        --answers_to_lose_;
        lose_answer = true;
      }
    }
    const Status s = real_->ReportPoints(request);
    MutexLock lock(&mu_);
    if (s.ok()) accepted_.push_back(request);
    if (!lose_answer) return s;
    ++failed_reports_;
    return Status::Unavailable("injected: the answer was lost");
  }

  Status Heartbeat(const v1::HeartbeatRequest& request, v1::HeartbeatResponse* response) override
      EXCLUDES(mu_) {
    {
      MutexLock lock(&mu_);
      if (away_) return Status::Unavailable("injected: the coordinator is away");
    }
    const Status s = real_->Heartbeat(request, response);
    MutexLock lock(&mu_);
    if (s.ok()) heartbeats_.push_back(request);
    return s;
  }

  Status Register(const v1::RegisterWorkerRequest& request,
                  v1::RegisterWorkerResponse* response) override {
    return real_->Register(request, response);
  }
  Status Lease(int64_t worker_id, v1::LeaseJobResponse* response) override {
    return real_->Lease(worker_id, response);
  }
  Status Complete(const v1::CompleteJobRequest& request) override {
    return real_->Complete(request);
  }
  Status Fail(const v1::FailJobRequest& request, v1::FailJobResponse* response) override {
    return real_->Fail(request, response);
  }
  Status Release(const v1::ReleaseJobRequest& request) override { return real_->Release(request); }
  Status UploadCheckpoint(int64_t job_id, int64_t lease_token, int64_t step,
                          const std::string& path) override {
    return real_->UploadCheckpoint(job_id, lease_token, step, path);
  }
  StatusOr<int64_t> DownloadCheckpoint(int64_t job_id, int64_t lease_token,
                                       const std::string& path) override {
    return real_->DownloadCheckpoint(job_id, lease_token, path);
  }

 private:
  CoordinatorClient* const real_;
  Mutex mu_;
  int reports_to_fail_ GUARDED_BY(mu_) = 0;
  int answers_to_lose_ GUARDED_BY(mu_) = 0;
  bool away_ GUARDED_BY(mu_) = false;
  int failed_reports_ GUARDED_BY(mu_) = 0;
  std::vector<v1::ReportPointsRequest> accepted_ GUARDED_BY(mu_);
  std::vector<v1::HeartbeatRequest> heartbeats_ GUARDED_BY(mu_);
};

CurvePoint TrainPoint(int64_t step) {
  CurvePoint point;
  point.split = Split::kTrain;
  point.step = step;
  point.bpc = 2.0 + 1.0 / static_cast<double>(step);
  point.bytes_seen = step * 100;
  point.wall_time = step * 0.01;
  return point;
}

// The steps of the points in `reports`, in the order sent.
std::vector<int64_t> Steps(const std::vector<v1::ReportPointsRequest>& reports) {
  std::vector<int64_t> steps;
  for (const auto& report : reports) {
    for (const auto& point : report.points()) steps.push_back(point.step());
  }
  return steps;
}

std::vector<int64_t> OneTo(int64_t n) {
  std::vector<int64_t> steps;
  for (int64_t step = 1; step <= n; ++step) steps.push_back(step);
  return steps;
}

// Polls `condition` until it holds or `timeout` passes; whether it held.
bool Eventually(const std::function<bool()>& condition, milliseconds timeout = seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(10));
  }
  return true;
}

class JobUplinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CoordinatorOptions options;
    options.db_path = dir_.File("ablate.db");
    options.listen = "127.0.0.1:0";
    options.clock = &clock_;
    options.lease_sweep_ms = 20;
    auto server = CoordinatorServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
    auto channel = grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
    sweeps_ = v1::Sweeps::NewStub(channel);
    real_ = std::make_unique<GrpcCoordinatorClient>(channel, &stop_);
    client_ = std::make_unique<FlakyClient>(real_.get());

    v1::LaunchRequest launch;
    launch.set_spec_text(testing::TestSpec("uplink"));
    launch.set_filename("uplink.yaml");
    v1::LaunchResponse launched;
    grpc::ClientContext context;
    ASSERT_TRUE(sweeps_->Launch(&context, launch, &launched).ok());

    v1::RegisterWorkerRequest registration;
    registration.set_name("uplink-test");
    registration.set_device("cpu");
    v1::RegisterWorkerResponse registered;
    ASSERT_TRUE(real_->Register(registration, &registered).ok());
    v1::LeaseJobResponse leased;
    ASSERT_TRUE(real_->Lease(registered.worker_id(), &leased).ok());
    ASSERT_TRUE(leased.has_job());
    lease_ = leased.job();
    lease_.set_heartbeat_seconds(0.05);
  }

  std::unique_ptr<JobUplink> StartUplink(int max_points = 1000) {
    return std::make_unique<JobUplink>(client_.get(), &stop_, lease_, max_points);
  }

  // What the coordinator's database holds about the job: `sql` with the
  // job's id as its one parameter.
  int64_t StoredInt(const char* sql) {
    auto db = Database::Open(dir_.File("ablate.db"), Database::Mode::kReadOnly);
    EXPECT_TRUE(db.ok()) << db.status().ToString();
    if (!db.ok()) return -1;
    StatusOr<int64_t> value = (*db)->QueryInt(sql, lease_.job_id());
    EXPECT_TRUE(value.ok()) << value.status().ToString();
    return value.ok() ? *value : -1;
  }

  int64_t StoredPoints() { return StoredInt("SELECT count(*) FROM curve_points WHERE job_id = ?"); }

  TempDir dir_;
  FakeClock clock_;
  StopState stop_{/*grace_seconds=*/0.5};
  std::unique_ptr<CoordinatorServer> server_;
  std::unique_ptr<v1::Sweeps::Stub> sweeps_;
  std::unique_ptr<GrpcCoordinatorClient> real_;
  std::unique_ptr<FlakyClient> client_;
  v1::JobLease lease_;
};

TEST_F(JobUplinkTest, PointsArriveInOrderInBatches) {
  auto uplink = StartUplink(/*max_points=*/10);
  for (int64_t step = 1; step <= 95; ++step) uplink->OnPoint(TrainPoint(step));
  ASSERT_TRUE(uplink->Flush().ok());

  const auto accepted = client_->accepted();
  EXPECT_GE(accepted.size(), 10u);
  for (const auto& report : accepted) {
    EXPECT_LE(report.points_size(), 10);
    EXPECT_EQ(report.job_id(), lease_.job_id());
    EXPECT_EQ(report.lease_token(), lease_.lease_token());
  }
  EXPECT_EQ(Steps(accepted), OneTo(95));
  EXPECT_EQ(StoredPoints(), 95);
  EXPECT_EQ(accepted.front().points(0).split(), v1::SPLIT_TRAIN);
  EXPECT_DOUBLE_EQ(accepted.front().points(0).bpc(), 3.0);
}

TEST_F(JobUplinkTest, FailedReportsAreRetriedWithNoPointLostOrRepeated) {
  client_->FailReports(3);
  auto uplink = StartUplink(/*max_points=*/10);
  for (int64_t step = 1; step <= 30; ++step) uplink->OnPoint(TrainPoint(step));
  ASSERT_TRUE(uplink->Flush().ok());

  EXPECT_EQ(client_->failed_reports(), 3);
  EXPECT_EQ(Steps(client_->accepted()), OneTo(30));
  EXPECT_EQ(StoredPoints(), 30);
}

TEST_F(JobUplinkTest, AReportWhoseAnswerWasLostIsSentAgainAndStoredOnce) {
  client_->LoseReportAnswers(1);
  auto uplink = StartUplink(/*max_points=*/10);
  for (int64_t step = 1; step <= 20; ++step) uplink->OnPoint(TrainPoint(step));
  ASSERT_TRUE(uplink->Flush().ok());

  const auto accepted = client_->accepted();
  ASSERT_GE(accepted.size(), 2u);
  EXPECT_EQ(accepted[0].points(0).step(), 1);
  // The report whose answer was lost went again, from its first point on.
  EXPECT_EQ(Steps({accepted.begin() + 1, accepted.end()}), OneTo(20));
  EXPECT_EQ(StoredPoints(), 20);
}

TEST_F(JobUplinkTest, FlushWaitsUntilThePointsAreDelivered) {
  client_->SetAway(true);
  auto uplink = StartUplink();
  for (int64_t step = 1; step <= 5; ++step) uplink->OnPoint(TrainPoint(step));
  std::future<Status> flushed = std::async(std::launch::async, [&] { return uplink->Flush(); });
  EXPECT_EQ(flushed.wait_for(milliseconds(500)), std::future_status::timeout);
  EXPECT_TRUE(client_->accepted().empty());

  client_->SetAway(false);
  ASSERT_EQ(flushed.wait_for(seconds(10)), std::future_status::ready);
  EXPECT_TRUE(flushed.get().ok());
  EXPECT_EQ(Steps(client_->accepted()), OneTo(5)) << "delivered before Flush returned";
  EXPECT_EQ(StoredPoints(), 5);
}

TEST_F(JobUplinkTest, FlushGivesUpWhenTheStopsGraceIsOver) {
  client_->SetAway(true);
  auto uplink = StartUplink();
  uplink->OnPoint(TrainPoint(1));
  EXPECT_FALSE(uplink->ShouldStop());
  stop_.Request();
  EXPECT_TRUE(uplink->ShouldStop());
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(uplink->Flush().code(), Status::kUnavailable);
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(3));
}

TEST_F(JobUplinkTest, AClosingUplinkDeliversWhatIsQueued) {
  {
    auto uplink = StartUplink(/*max_points=*/7);
    for (int64_t step = 1; step <= 50; ++step) uplink->OnPoint(TrainPoint(step));
  }
  EXPECT_EQ(Steps(client_->accepted()), OneTo(50));
  EXPECT_EQ(StoredPoints(), 50);
}

TEST_F(JobUplinkTest, HeartbeatsCarryTheProgress) {
  auto uplink = StartUplink();
  Progress progress;
  progress.step = 42;
  progress.steps_total = 100;
  progress.bytes_per_s = 5000;
  progress.train_bpc = 2.5;
  uplink->OnProgress(progress);
  ASSERT_TRUE(Eventually([&] {
    const auto beats = client_->heartbeats();
    return !beats.empty() && beats.back().progress().step() == 42;
  }));
  const v1::HeartbeatRequest beat = client_->heartbeats().back();
  EXPECT_EQ(beat.job_id(), lease_.job_id());
  EXPECT_EQ(beat.lease_token(), lease_.lease_token());
  EXPECT_EQ(beat.progress().steps_total(), 100);
  EXPECT_DOUBLE_EQ(beat.progress().bytes_per_s(), 5000);
  EXPECT_DOUBLE_EQ(beat.progress().train_bpc(), 2.5);
  EXPECT_EQ(StoredInt("SELECT step FROM jobs WHERE id = ?"), 42);
  EXPECT_EQ(StoredInt("SELECT steps_total FROM jobs WHERE id = ?"), 100);
  EXPECT_EQ(uplink->stop_reason(), StopReason::kNone);
  EXPECT_FALSE(uplink->ShouldStop());
}

TEST_F(JobUplinkTest, ACancelledJobIsToldToStop) {
  auto uplink = StartUplink();
  v1::CancelRequest cancel;
  cancel.set_job_id(lease_.job_id());
  v1::CancelResponse cancelled;
  grpc::ClientContext context;
  ASSERT_TRUE(sweeps_->Cancel(&context, cancel, &cancelled).ok());
  ASSERT_TRUE(Eventually([&] { return uplink->ShouldStop(); }));
  EXPECT_EQ(uplink->stop_reason(), StopReason::kCancelled);
}

TEST_F(JobUplinkTest, ALeaseThatLapsedIsLostAndItsPointsAreNotSent) {
  auto uplink = StartUplink();
  ASSERT_TRUE(Eventually([&] { return !client_->heartbeats().empty(); }));
  // The coordinator hears nothing for a lease period, and offers the job again.
  client_->SetAway(true);
  // Again and again: a heartbeat still in flight may renew the lease once.
  ASSERT_TRUE(Eventually([&] {
    clock_.AdvanceMs(static_cast<int64_t>(lease_.lease_seconds() * 1000) + 1000);
    return StoredInt("SELECT count(*) FROM jobs WHERE id = ? AND state = 'running'") == 0;
  }));
  client_->SetAway(false);
  ASSERT_TRUE(Eventually([&] { return uplink->ShouldStop(); }));
  EXPECT_EQ(uplink->stop_reason(), StopReason::kLeaseLost);

  uplink->OnPoint(TrainPoint(1));
  EXPECT_EQ(uplink->Flush().code(), Status::kFailedPrecondition);
  EXPECT_TRUE(client_->accepted().empty());
}

}  // namespace
}  // namespace ablate
