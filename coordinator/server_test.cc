// The coordinator over real gRPC on loopback, and the real binary.
#include "coordinator/server.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "common/config_hash.h"
#include "common/subprocess.h"
#include "coordinator/test_util.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "proto/ablate.grpc.pb.h"
#include "store/store.h"

namespace ablate {
namespace {

using testing::kTestSpecJobs;
using testing::TempDir;
using testing::TestSpec;

std::string RandomBytes(size_t size) {
  std::mt19937 random(42);
  std::string bytes(size, '\0');
  for (char& c : bytes) c = static_cast<char>(random());
  return bytes;
}

grpc::Status HealthCheck(const std::shared_ptr<grpc::Channel>& channel,
                         grpc::health::v1::HealthCheckResponse* reply) {
  auto health = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::health::v1::HealthCheckRequest request;
  return health->Check(&context, request, reply);
}

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer(); }

  // Starts a coordinator on the test's database and connects to it.
  void StartServer() {
    CoordinatorOptions options;
    options.db_path = dir_.File("ablate.db");
    options.listen = "127.0.0.1:0";
    options.clock = &clock_;
    auto server = CoordinatorServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
    channel_ = grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
    coordinator_ = v1::Coordinator::NewStub(channel_);
    sweeps_ = v1::Sweeps::NewStub(channel_);
  }

  v1::LaunchResponse Launch() {
    v1::LaunchRequest request;
    request.set_spec_text(TestSpec("svc"));
    request.set_filename("svc.yaml");
    v1::LaunchResponse reply;
    grpc::ClientContext context;
    grpc::Status status = sweeps_->Launch(&context, request, &reply);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return reply;
  }

  v1::JobLease RegisterAndLease(const std::string& worker = "worker-1") {
    v1::JobLease lease = testing::RegisterAndLease(coordinator_.get(), worker);
    EXPECT_NE(lease.job_id(), 0) << "no job to lease";
    return lease;
  }

  // Streams `bytes` in `chunk`-sized pieces, announcing `info`.
  grpc::Status Upload(const v1::JobLease& lease, const v1::CheckpointInfo& info,
                      const std::string& bytes, size_t chunk, v1::UploadCheckpointResponse* reply) {
    grpc::ClientContext context;
    auto stream = coordinator_->UploadCheckpoint(&context, reply);
    v1::UploadCheckpointRequest message;
    message.set_job_id(lease.job_id());
    message.set_lease_token(lease.lease_token());
    *message.mutable_info() = info;
    size_t offset = 0;
    do {
      message.set_chunk(bytes.substr(offset, chunk));
      offset += chunk;
      if (!stream->Write(message)) break;
      message.Clear();
    } while (offset < bytes.size());
    stream->WritesDone();
    return stream->Finish();
  }

  grpc::Status Download(const v1::JobLease& lease, v1::CheckpointInfo* info, std::string* bytes) {
    grpc::ClientContext context;
    v1::DownloadCheckpointRequest request;
    request.set_job_id(lease.job_id());
    request.set_lease_token(lease.lease_token());
    auto stream = coordinator_->DownloadCheckpoint(&context, request);
    v1::DownloadCheckpointResponse message;
    bool first = true;
    while (stream->Read(&message)) {
      if (first) *info = message.info();
      EXPECT_EQ(message.has_info(), first);
      first = false;
      *bytes += message.chunk();
    }
    return stream->Finish();
  }

  v1::LeaseState Heartbeat(const v1::JobLease& lease) {
    v1::HeartbeatRequest request;
    request.set_job_id(lease.job_id());
    request.set_lease_token(lease.lease_token());
    v1::HeartbeatResponse reply;
    grpc::ClientContext context;
    grpc::Status status = coordinator_->Heartbeat(&context, request, &reply);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return reply.state();
  }

  // Uploads `bytes` as the job's checkpoint at `step`.
  void UploadCheckpoint(const v1::JobLease& lease, int64_t step, const std::string& bytes) {
    v1::CheckpointInfo info;
    info.set_step(step);
    info.set_total_bytes(static_cast<int64_t>(bytes.size()));
    info.set_sha256_hex(Sha256Hex(bytes));
    v1::UploadCheckpointResponse reply;
    grpc::Status status = Upload(lease, info, bytes, kCheckpointChunkBytes, &reply);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }

  std::vector<std::string> CheckpointFiles() {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(dir_.File("ablate.db.ckpt"))) {
      names.push_back(entry.path().filename().string());
    }
    return names;
  }

  TempDir dir_;
  FakeClock clock_;
  std::unique_ptr<CoordinatorServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Coordinator::Stub> coordinator_;
  std::unique_ptr<v1::Sweeps::Stub> sweeps_;
};

TEST_F(ServerTest, HealthServiceAnswersServing) {
  grpc::health::v1::HealthCheckResponse reply;
  grpc::Status status = HealthCheck(channel_, &reply);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(reply.status(), grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST_F(ServerTest, LaunchingTwiceCreatesNoNewJobs) {
  v1::LaunchResponse first = Launch();
  EXPECT_EQ(first.jobs_created(), kTestSpecJobs);
  v1::LaunchResponse second = Launch();
  EXPECT_EQ(second.sweep_id(), first.sweep_id());
  EXPECT_EQ(second.jobs_created(), 0);
  EXPECT_EQ(second.jobs_existing(), kTestSpecJobs);
}

TEST_F(ServerTest, SpecErrorTravelsAsInvalidArgument) {
  v1::LaunchRequest request;
  request.set_spec_text("name: x\ngrid: [");
  request.set_filename("broken.yaml");
  v1::LaunchResponse reply;
  grpc::ClientContext context;
  grpc::Status status = sweeps_->Launch(&context, request, &reply);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message().rfind("broken.yaml:", 0), 0u) << status.error_message();
}

// A W&B program sweep as its user writes it: no name (the file gives it),
// no command (W&B's default).
constexpr char kProgramSpec[] = R"(program: train.py
method: grid
parameters:
  lr: {values: [0.1, 0.01]}
  optimizer: {value: adam}
schedule: {silence_seconds: 30, lease_seconds: 20}
)";

grpc::Status LaunchText(v1::Sweeps::Stub* sweeps, const std::string& text,
                        const std::string& filename, v1::LaunchResponse* reply) {
  v1::LaunchRequest request;
  request.set_spec_text(text);
  request.set_filename(filename);
  grpc::ClientContext context;
  return sweeps->Launch(&context, request, reply);
}

TEST_F(ServerTest, AProgramSweepsLeaseCarriesItsExpandedCommandAndSilence) {
  v1::LaunchResponse launched;
  grpc::Status status = LaunchText(sweeps_.get(), kProgramSpec, "sweeps/Char LM.yaml", &launched);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(launched.name(), "char-lm");
  EXPECT_EQ(launched.jobs_created(), 2);

  v1::JobLease lease = RegisterAndLease();
  ASSERT_NE(lease.job_id(), 0);
  EXPECT_EQ(lease.sweep_name(), "char-lm");
  EXPECT_DOUBLE_EQ(lease.silence_seconds(), 30);
  EXPECT_DOUBLE_EQ(lease.lease_seconds(), 20);
  const nlohmann::json config = nlohmann::json::parse(lease.config_json());
  const nlohmann::json factors = nlohmann::json::parse(lease.factors_json());
  EXPECT_EQ(config["optimizer"], "adam");
  EXPECT_EQ(config["lr"], factors["lr"]);
  EXPECT_EQ(lease.config_json(), config.dump());  // canonical: keys sorted, compact
  const std::string lr = config["lr"] == 0.1 ? "0.1" : "0.01";
  EXPECT_EQ(std::vector<std::string>(lease.command().begin(), lease.command().end()),
            (std::vector<std::string>{"/usr/bin/env", "python3", "train.py", "--lr=" + lr,
                                      "--optimizer=adam"}));

  // What the store keeps, read from the file as `ablate --db` reads it.
  auto db = OpenStoreReadOnly(dir_.File("ablate.db"));
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  EXPECT_EQ(*(*db)->QueryInt("SELECT silence_ms FROM sweeps WHERE id = ?", launched.sweep_id()),
            30000);
  auto rows = (*db)->Query(
      "SELECT config_hash, config_json, command_json, steps_total FROM jobs WHERE id = ?",
      lease.job_id());
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  ASSERT_TRUE(*rows->Next());
  EXPECT_EQ(rows->Text(0), Sha256Hex(lease.config_json()));
  EXPECT_EQ(rows->Text(1), lease.config_json());
  EXPECT_EQ(
      nlohmann::json::parse(rows->Text(2)),
      nlohmann::json(std::vector<std::string>(lease.command().begin(), lease.command().end())));
  EXPECT_EQ(rows->Int(3), 0);  // a program's steps are unknown until it reports them
}

TEST_F(ServerTest, ABuiltInSweepsLeaseCarriesNoCommand) {
  Launch();
  v1::JobLease lease = RegisterAndLease();
  EXPECT_EQ(lease.command_size(), 0);
  EXPECT_EQ(lease.silence_seconds(), 0);
  auto db = OpenStoreReadOnly(dir_.File("ablate.db"));
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  EXPECT_EQ(*(*db)->QueryInt("SELECT COUNT(*) FROM jobs WHERE command_json <> '[]'"), 0);
}

TEST_F(ServerTest, ABadProgramSpecStoresNothing) {
  v1::LaunchResponse reply;
  const std::string text = std::string(kProgramSpec) + "command: [\"${envvar:HOME}\"]\n";
  grpc::Status status = LaunchText(sweeps_.get(), text, "bad.yaml", &reply);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message().rfind("bad.yaml:7:11: command:", 0), 0u)
      << status.error_message();
  auto db = OpenStoreReadOnly(dir_.File("ablate.db"));
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  EXPECT_EQ(*(*db)->QueryInt("SELECT COUNT(*) FROM sweeps"), 0);
  EXPECT_EQ(*(*db)->QueryInt("SELECT COUNT(*) FROM jobs"), 0);
}

TEST_F(ServerTest, WorkerRunsAJobWithACheckpointEndToEnd) {
  Launch();
  v1::JobLease lease = RegisterAndLease();
  EXPECT_EQ(lease.attempt(), 1);

  v1::HeartbeatRequest heartbeat;
  heartbeat.set_job_id(lease.job_id());
  heartbeat.set_lease_token(lease.lease_token());
  heartbeat.mutable_progress()->set_step(20);
  heartbeat.mutable_progress()->set_steps_total(100);
  v1::HeartbeatResponse beat;
  grpc::ClientContext heartbeat_context;
  ASSERT_TRUE(coordinator_->Heartbeat(&heartbeat_context, heartbeat, &beat).ok());
  EXPECT_EQ(beat.state(), v1::LEASE_STATE_ACTIVE);

  v1::ReportPointsRequest report;
  report.set_job_id(lease.job_id());
  report.set_lease_token(lease.lease_token());
  for (int step : {10, 20}) {
    v1::CurvePoint* p = report.add_points();
    p->set_split(v1::SPLIT_TRAIN);
    p->set_step(step);
    p->set_bpc(3.0 - step / 100.0);
  }
  for (int attempt = 0; attempt < 2; ++attempt) {  // the second is a retried duplicate
    v1::ReportPointsResponse reported;
    grpc::ClientContext context;
    grpc::Status status = coordinator_->ReportPoints(&context, report, &reported);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }

  const std::string checkpoint = RandomBytes(2 * kCheckpointChunkBytes + 12345);
  v1::CheckpointInfo info;
  info.set_step(20);
  info.set_total_bytes(static_cast<int64_t>(checkpoint.size()));
  info.set_sha256_hex(Sha256Hex(checkpoint));
  v1::UploadCheckpointResponse uploaded;
  grpc::Status upload = Upload(lease, info, checkpoint, kCheckpointChunkBytes, &uploaded);
  ASSERT_TRUE(upload.ok()) << upload.error_message();
  EXPECT_EQ(uploaded.checkpoint_step(), 20);

  // A later checkpoint whose bytes do not match its checksum changes nothing.
  v1::CheckpointInfo wrong = info;
  wrong.set_step(30);
  wrong.set_sha256_hex(Sha256Hex("something else"));
  grpc::Status corrupt = Upload(lease, wrong, checkpoint, kCheckpointChunkBytes / 2, &uploaded);
  EXPECT_EQ(corrupt.error_code(), grpc::StatusCode::DATA_LOSS) << corrupt.error_message();

  v1::CheckpointInfo downloaded_info;
  std::string downloaded;
  grpc::Status download = Download(lease, &downloaded_info, &downloaded);
  ASSERT_TRUE(download.ok()) << download.error_message();
  EXPECT_EQ(downloaded_info.step(), 20);
  EXPECT_EQ(downloaded_info.sha256_hex(), info.sha256_hex());
  EXPECT_TRUE(downloaded == checkpoint) << "downloaded " << downloaded.size() << " bytes";
  EXPECT_EQ(CheckpointFiles().size(), 1u);

  for (int attempt = 0; attempt < 2; ++attempt) {  // the second is a retried completion
    v1::CompleteJobRequest complete;
    complete.set_job_id(lease.job_id());
    complete.set_lease_token(lease.lease_token());
    v1::CompleteJobResponse completed;
    grpc::ClientContext context;
    grpc::Status status = coordinator_->CompleteJob(&context, complete, &completed);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }

  v1::GetStatusRequest status_request;
  status_request.mutable_sweep()->set_name("svc");
  v1::GetStatusResponse status_reply;
  grpc::ClientContext status_context;
  ASSERT_TRUE(sweeps_->GetStatus(&status_context, status_request, &status_reply).ok());
  ASSERT_EQ(status_reply.sweeps_size(), 1);
  EXPECT_EQ(status_reply.sweeps(0).sweep().counts().done(), 1);
  EXPECT_EQ(status_reply.sweeps(0).running_size(), 0);
}

TEST_F(ServerTest, ReleasedJobResumesFromItsCheckpointOnAnotherWorker) {
  Launch();
  v1::JobLease first = RegisterAndLease("worker-1");
  const std::string checkpoint = RandomBytes(kCheckpointChunkBytes + 7);
  UploadCheckpoint(first, 20, checkpoint);
  v1::ReleaseJobRequest release;
  release.set_job_id(first.job_id());
  release.set_lease_token(first.lease_token());
  release.set_reason("SIGTERM");
  v1::ReleaseJobResponse released;
  grpc::ClientContext context;
  ASSERT_TRUE(coordinator_->ReleaseJob(&context, release, &released).ok());

  v1::JobLease second = RegisterAndLease("worker-2");
  ASSERT_EQ(second.job_id(), first.job_id());
  EXPECT_EQ(second.checkpoint_step(), 20);
  EXPECT_EQ(second.attempt(), 1) << "a release does not use up an attempt";
  v1::CheckpointInfo info;
  std::string downloaded;
  ASSERT_TRUE(Download(second, &info, &downloaded).ok());
  EXPECT_TRUE(downloaded == checkpoint);
  std::string ignored;
  EXPECT_EQ(Download(first, &info, &ignored).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(ServerTest, RestartKeepsLeasesAndCheckpoints) {
  Launch();
  v1::JobLease lease = RegisterAndLease();
  const std::string checkpoint = RandomBytes(4096);
  UploadCheckpoint(lease, 10, checkpoint);
  coordinator_.reset();
  sweeps_.reset();
  channel_.reset();
  server_->Shutdown();
  server_.reset();
  clock_.AdvanceMs(3600 * 1000);  // down for an hour, far past the lease

  StartServer();
  // The lease was renewed: another worker gets another job.
  EXPECT_NE(RegisterAndLease("worker-2").job_id(), lease.job_id());
  EXPECT_EQ(Heartbeat(lease), v1::LEASE_STATE_ACTIVE);
  v1::CheckpointInfo info;
  std::string downloaded;
  ASSERT_TRUE(Download(lease, &info, &downloaded).ok());
  EXPECT_EQ(info.step(), 10);
  EXPECT_TRUE(downloaded == checkpoint);
  EXPECT_EQ(CheckpointFiles().size(), 1u);
}

TEST_F(ServerTest, TruncatedUploadStoresNothing) {
  Launch();
  v1::JobLease lease = RegisterAndLease();
  const std::string bytes = RandomBytes(1000);
  v1::CheckpointInfo info;
  info.set_step(5);
  info.set_total_bytes(2000);
  info.set_sha256_hex(Sha256Hex(bytes));
  v1::UploadCheckpointResponse reply;
  grpc::Status status = Upload(lease, info, bytes, 300, &reply);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DATA_LOSS) << status.error_message();
  EXPECT_TRUE(CheckpointFiles().empty());
  v1::CheckpointInfo none;
  std::string downloaded;
  EXPECT_EQ(Download(lease, &none, &downloaded).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ServerTest, StaleTokenIsFailedPreconditionOnTheWire) {
  Launch();
  v1::JobLease lease = RegisterAndLease();
  v1::ReportPointsRequest report;
  report.set_job_id(lease.job_id());
  report.set_lease_token(lease.lease_token() + 1);
  v1::ReportPointsResponse reply;
  grpc::ClientContext context;
  EXPECT_EQ(coordinator_->ReportPoints(&context, report, &reply).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);

  v1::CheckpointInfo info;
  std::string bytes;
  v1::JobLease stale = lease;
  stale.set_lease_token(lease.lease_token() - 1);
  EXPECT_EQ(Download(stale, &info, &bytes).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(ServerTest, OversizedRequestIsRefused) {
  v1::LaunchRequest request;
  request.set_spec_text(std::string(9 << 20, '#'));
  v1::LaunchResponse reply;
  grpc::ClientContext context;
  EXPECT_EQ(sweeps_->Launch(&context, request, &reply).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
}

// The binary as a container would run it: a free port printed on stdout,
// health answered, SIGTERM honoured.
TEST(CoordinatorBinary, PrintsItsPortServesAndStopsOnSigterm) {
  TempDir dir;
  const char* bin_dir = std::getenv("ABLATE_BIN_DIR");
  std::string binary = std::string(bin_dir ? bin_dir : "bin") + "/ablate-coordinator";
  ASSERT_TRUE(std::filesystem::exists(binary)) << binary;
  std::string db = dir.File("ablate.db");
  // Default logging: the log lines must not get in the way of the port line.
  std::vector<std::string> args = {binary, "--db", db, "--listen", "127.0.0.1:0"};
  int out[2];
  ASSERT_EQ(pipe2(out, O_CLOEXEC), 0);
  SpawnOptions options;
  options.argv = args;
  options.stdout_fd = out[1];
  StatusOr<pid_t> spawned = Spawn(options);
  close(out[1]);
  ASSERT_TRUE(spawned.ok()) << spawned.status().ToString();
  const pid_t pid = *spawned;

  FILE* stdout_of_child = fdopen(out[0], "r");
  char line[256] = {};
  ASSERT_NE(fgets(line, sizeof line, stdout_of_child), nullptr);
  int port = 0;
  ASSERT_EQ(std::sscanf(line, "listening on 127.0.0.1:%d", &port), 1) << line;
  EXPECT_GT(port, 0);

  auto channel =
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials());
  grpc::health::v1::HealthCheckResponse health;

  grpc::Status status = HealthCheck(channel, &health);
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(health.status(), grpc::health::v1::HealthCheckResponse::SERVING);

  // With the client still connected, as workers are.
  auto started = std::chrono::steady_clock::now();
  ASSERT_EQ(kill(pid, SIGTERM), 0);
  StatusOr<int> exit_code = WaitForExit(pid);
  ASSERT_TRUE(exit_code.ok()) << exit_code.status().ToString();
  EXPECT_EQ(*exit_code, 0);
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(2))
      << "an idle connection held up the shutdown";
  fclose(stdout_of_child);
  EXPECT_TRUE(std::filesystem::exists(db));
}

}  // namespace
}  // namespace ablate
