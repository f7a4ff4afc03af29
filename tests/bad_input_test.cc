// Hostile or broken input end to end: through gRPC to a real coordinator, and
// databases handed to the real binary. Each gets a clear error status or a
// non-zero exit, and nothing is stored.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "common/config_hash.h"
#include "coordinator/server.h"
#include "coordinator/test_util.h"
#include "proto/ablate.grpc.pb.h"
#include "tests/support/process.h"
#include "tests/support/sweep_harness.h"

namespace ablate {
namespace {

using testing::Binary;
using testing::RunCommand;
using testing::TempDir;

const std::string kGoodSpec =
    "name: ok\n"
    "data: {path: corpus.txt}\n"
    "model: {hidden: 16, vocab: 27}\n"
    "train: {steps: 100, log_every: 10}\n"
    "grid:\n  cell: [gru, lstm]\n";

class BadInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CoordinatorOptions options;
    options.db_path = dir_.File("bad.db");
    options.listen = "127.0.0.1:0";
    auto server = CoordinatorServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
    auto channel = grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
    coordinator_ = v1::Coordinator::NewStub(channel);
    sweeps_ = v1::Sweeps::NewStub(channel);
  }

  int64_t Count(const std::string& table) {
    return testing::QueryInt64(dir_.File("bad.db"), "SELECT count(*) FROM " + table).value();
  }

  grpc::Status Launch(const std::string& spec, v1::LaunchResponse* reply = nullptr) {
    v1::LaunchRequest request;
    request.set_spec_text(spec);
    request.set_filename("hostile.yaml");
    v1::LaunchResponse ignored;
    grpc::ClientContext context;
    return sweeps_->Launch(&context, request, reply ? reply : &ignored);
  }

  v1::JobLease LeaseOne() {
    v1::LaunchResponse launched;
    EXPECT_TRUE(Launch(kGoodSpec, &launched).ok());
    return testing::RegisterAndLease(coordinator_.get(), "w");
  }

  grpc::StatusCode Report(const v1::JobLease& lease, const std::vector<v1::CurvePoint>& points) {
    v1::ReportPointsRequest request;
    request.set_job_id(lease.job_id());
    request.set_lease_token(lease.lease_token());
    for (const auto& p : points) *request.add_points() = p;
    v1::ReportPointsResponse reply;
    grpc::ClientContext context;
    return coordinator_->ReportPoints(&context, request, &reply).error_code();
  }

  static v1::CurvePoint Point(int64_t step, double bpc, v1::Split split = v1::SPLIT_TRAIN) {
    v1::CurvePoint p;
    p.set_split(split);
    p.set_step(step);
    p.set_bpc(bpc);
    return p;
  }

  grpc::Status Upload(const v1::JobLease& lease, const v1::CheckpointInfo& info,
                      const std::vector<std::string>& chunks) {
    grpc::ClientContext context;
    v1::UploadCheckpointResponse reply;
    auto stream = coordinator_->UploadCheckpoint(&context, &reply);
    v1::UploadCheckpointRequest first;
    first.set_job_id(lease.job_id());
    first.set_lease_token(lease.lease_token());
    *first.mutable_info() = info;
    bool ok = stream->Write(first);
    for (const std::string& chunk : chunks) {
      v1::UploadCheckpointRequest message;
      message.set_chunk(chunk);
      ok = ok && stream->Write(message);
    }
    stream->WritesDone();
    return stream->Finish();
  }

  TempDir dir_;
  std::unique_ptr<CoordinatorServer> server_;
  std::unique_ptr<v1::Coordinator::Stub> coordinator_;
  std::unique_ptr<v1::Sweeps::Stub> sweeps_;
};

TEST_F(BadInputTest, HostileSpecsAreInvalidArgumentAndStoreNothing) {
  std::string deep = "name: deep\ndata: {path: x}\ngrid:\n  cell: ";
  for (int i = 0; i < 200; ++i) deep += "[";
  for (int i = 0; i < 200; ++i) deep += "]";
  std::string laughs = "name: laughs\ndata: {path: x}\nl0: &l0 [lol, lol, lol, lol, lol]\n";
  for (int i = 1; i < 12; ++i) {
    laughs += "l" + std::to_string(i) + ": &l" + std::to_string(i) + " [";
    for (int j = 0; j < 5; ++j) laughs += std::string(j ? ", " : "") + "*l" + std::to_string(i - 1);
    laughs += "]\n";
  }
  std::string values;
  for (int v = 1; v <= 30; ++v) values += (v > 1 ? ", " : "") + std::to_string(v);
  const std::string huge_grid = "name: huge\ndata: {path: x}\ngrid:\n  hidden: [" + values +
                                "]\n  batch: [" + values + "]\n  seq: [" + values + "]\n";
  // A program's values may be lists, so aliases there are walked: the walk stops.
  std::string program_laughs = "program: p.py\nparameters:\n  l0: {value: &l0 [lol, lol, lol]}\n";
  for (int i = 1; i < 20; ++i) {
    program_laughs += "  l" + std::to_string(i) + ": {value: &l" + std::to_string(i) + " [*l" +
                      std::to_string(i - 1) + ", *l" + std::to_string(i - 1) + ", *l" +
                      std::to_string(i - 1) + "]}\n";
  }
  std::string big_list = "[";
  for (int v = 0; v < 5000; ++v) big_list += (v > 0 ? ", " : "") + std::to_string(100000 + v);
  big_list += "]";
  std::string many_jobs;
  for (int v = 0; v < 2000; ++v) many_jobs += (v > 0 ? ", " : "") + std::to_string(v);
  const std::string program_bytes = "program: p.py\nparameters:\n  big: {value: " + big_list +
                                    "}\n  n: {values: [" + many_jobs + "]}\n";
  const struct {
    std::string name, spec, says;
  } cases[] = {
      {"program laughs", program_laughs, "items in all"},
      {"program jobs too large", program_bytes, "jobs' parameters take up to"},
      {"program with trainer settings", "program: p.py\nparameters: {a: {value: 1}}\ntrain: {}\n",
       "no built-in trainer settings"},
      {"envvar macro", "program: p.py\nparameters: {a: {value: 1}}\ncommand: [\"${envvar:X}\"]\n",
       "${envvar:NAME} is not supported"},
      {"command not a list", "program: p.py\nparameters: {a: {value: 1}}\ncommand: python3\n",
       "command: expected a list"},
      {"unknown key", "name: a\ndata: {path: x}\ncolour: red\ngrid: {cell: [gru]}\n", "colour"},
      {"unknown setting", "name: a\ndata: {path: x}\ngrid: {cel: [gru]}\n", "cel"},
      {"wrong type", "name: a\ndata: {path: x}\ntrain: {steps: many}\ngrid: {cell: [gru]}\n",
       "train.steps"},
      {"bad value", "name: a\ndata: {path: x}\ngrid: {cell: [gru, rnn]}\n", "rnn"},
      {"unknown precision", "name: a\ndata: {path: x}\ntrain: {precision: fp16}\n",
       "train.precision: unknown precision \"fp16\" (known: fp32, tf32, bf16)"},
      {"precision not a name", "name: a\ndata: {path: x}\ngrid: {precision: [tf32, 16]}\n",
       "train.precision: expected one of fp32, tf32, bf16, got 16"},
      {"huge grid", huge_grid, "27000"},
      {"deep nesting", deep, "nesting"},
      {"billion laughs", laughs, "hostile.yaml"},
      {"control character", "name: a\x01\ndata: {path: x}\ngrid: {cell: [gru]}\n", "control"},
      {"two documents", "name: a\n---\nname: b\n", "document"},
      {"not a mapping", "- just\n- a list\n", "hostile.yaml"},
      {"empty", "", "hostile.yaml"},
      {"over 1 MiB", "# " + std::string(2 << 20, 'x') + "\n" + kGoodSpec, "limit"},
  };
  for (const auto& c : cases) {
    grpc::Status status = Launch(c.spec);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.name;
    EXPECT_EQ(status.error_message().rfind("hostile.yaml", 0), 0u)
        << c.name << ": " << status.error_message();
    EXPECT_NE(status.error_message().find(c.says), std::string::npos)
        << c.name << ": " << status.error_message();
  }
  // spec_text is a proto3 string: gRPC itself refuses a request whose text
  // is not UTF-8 before the spec parser sees it.
  grpc::Status latin1 = Launch("name: caf\xe9\ndata: {path: x}\ngrid: {cell: [gru]}\n");
  EXPECT_FALSE(latin1.ok());
  EXPECT_NE(latin1.error_code(), grpc::StatusCode::UNAVAILABLE) << "not worth a retry";

  EXPECT_EQ(Count("sweeps"), 0);
  EXPECT_EQ(Count("jobs"), 0);
  EXPECT_EQ(Count("events"), 1) << "only the start";
}

TEST_F(BadInputTest, UnknownJobsSweepsAndWorkersAreNotFound) {
  auto code = [](const grpc::Status& s) { return s.error_code(); };
  {
    v1::GetStatusRequest request;
    request.mutable_sweep()->set_name("nope");
    v1::GetStatusResponse reply;
    grpc::ClientContext context;
    EXPECT_EQ(code(sweeps_->GetStatus(&context, request, &reply)), grpc::StatusCode::NOT_FOUND);
  }
  {
    v1::CancelRequest request;
    request.mutable_sweep()->set_id(42);
    v1::CancelResponse reply;
    grpc::ClientContext context;
    EXPECT_EQ(code(sweeps_->Cancel(&context, request, &reply)), grpc::StatusCode::NOT_FOUND);
  }
  {
    v1::RetryRequest request;
    request.set_job_id(42);
    v1::RetryResponse reply;
    grpc::ClientContext context;
    EXPECT_EQ(code(sweeps_->Retry(&context, request, &reply)), grpc::StatusCode::NOT_FOUND);
  }
  {
    v1::LeaseJobRequest request;
    request.set_worker_id(42);
    v1::LeaseJobResponse reply;
    grpc::ClientContext context;
    EXPECT_EQ(code(coordinator_->LeaseJob(&context, request, &reply)), grpc::StatusCode::NOT_FOUND);
  }
  {
    v1::HeartbeatRequest request;
    request.set_job_id(42);
    v1::HeartbeatResponse reply;
    grpc::ClientContext context;
    EXPECT_EQ(code(coordinator_->Heartbeat(&context, request, &reply)),
              grpc::StatusCode::NOT_FOUND);
  }
  {
    v1::CompleteJobRequest request;
    request.set_job_id(42);
    v1::CompleteJobResponse reply;
    grpc::ClientContext context;
    EXPECT_EQ(code(coordinator_->CompleteJob(&context, request, &reply)),
              grpc::StatusCode::NOT_FOUND);
  }
  v1::JobLease unknown;
  unknown.set_job_id(42);
  EXPECT_EQ(Report(unknown, {Point(1, 1.0)}), grpc::StatusCode::NOT_FOUND);
  {
    v1::DownloadCheckpointRequest request;
    request.set_job_id(42);
    grpc::ClientContext context;
    auto stream = coordinator_->DownloadCheckpoint(&context, request);
    v1::DownloadCheckpointResponse message;
    while (stream->Read(&message)) {
    }
    EXPECT_EQ(code(stream->Finish()), grpc::StatusCode::NOT_FOUND);
  }
  EXPECT_EQ(Count("curve_points"), 0);
  EXPECT_EQ(Count("workers"), 0);
}

TEST_F(BadInputTest, BadReportsAndMetricsAreInvalidArgumentAndStoreNothing) {
  const v1::JobLease lease = LeaseOne();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_EQ(Report(lease, {Point(-10, 2.0)}), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Report(lease, {Point(20, 2.0), Point(10, 2.5)}), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Report(lease, {Point(10, 2.0), Point(20, nan)}), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Report(lease, {Point(10, INFINITY, v1::SPLIT_VALID)}),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Report(lease, {Point(10, 2.0, static_cast<v1::Split>(7))}),
            grpc::StatusCode::INVALID_ARGUMENT);
  // More points than one report may carry, then more bytes than one message.
  std::vector<v1::CurvePoint> flood;
  for (int step = 1; step <= 200'000; ++step) flood.push_back(Point(step, 1.0));
  EXPECT_EQ(Report(lease, flood), grpc::StatusCode::INVALID_ARGUMENT);
  for (int step = 200'001; step <= 800'000; ++step) flood.push_back(Point(step, 1.0));
  EXPECT_EQ(Report(lease, flood), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(Count("curve_points"), 0);

  v1::HeartbeatRequest heartbeat;
  heartbeat.set_job_id(lease.job_id());
  heartbeat.set_lease_token(lease.lease_token());
  heartbeat.mutable_progress()->set_step(-1);
  v1::HeartbeatResponse beat;
  grpc::ClientContext heartbeat_context;
  EXPECT_EQ(coordinator_->Heartbeat(&heartbeat_context, heartbeat, &beat).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  v1::CompleteJobRequest complete;
  complete.set_job_id(lease.job_id());
  complete.set_lease_token(lease.lease_token());
  complete.mutable_metrics()->set_test_bpc(nan);
  v1::CompleteJobResponse completed;
  grpc::ClientContext complete_context;
  EXPECT_EQ(coordinator_->CompleteJob(&complete_context, complete, &completed).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(
      testing::QueryInt64(dir_.File("bad.db"), "SELECT count(*) FROM jobs WHERE state = 'running'")
          .value(),
      1);
}

TEST_F(BadInputTest, BadCheckpointUploadsStoreNothing) {
  const v1::JobLease lease = LeaseOne();
  const std::string bytes(5000, 'c');
  v1::CheckpointInfo info;
  info.set_step(10);
  info.set_total_bytes(static_cast<int64_t>(bytes.size()));
  info.set_sha256_hex(Sha256Hex("other bytes"));
  EXPECT_EQ(Upload(lease, info, {bytes}).error_code(), grpc::StatusCode::DATA_LOSS);

  info.set_sha256_hex(Sha256Hex(bytes));
  info.set_total_bytes(100);
  EXPECT_EQ(Upload(lease, info, {bytes}).error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << "more bytes than announced";
  const std::string big((1 << 20) + 1, 'b');
  info.set_total_bytes(static_cast<int64_t>(big.size()));
  info.set_sha256_hex(Sha256Hex(big));
  EXPECT_EQ(Upload(lease, info, {big}).error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << "a chunk over 1 MiB";
  info.set_step(-5);
  EXPECT_EQ(Upload(lease, info, {}).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  EXPECT_EQ(testing::QueryInt64(dir_.File("bad.db"),
                                "SELECT count(*) FROM jobs WHERE checkpoint_file IS NOT NULL")
                .value(),
            0);
  // A refused upload's temporary file goes when its call is torn down, just
  // after the reply.
  EXPECT_TRUE(
      testing::WaitUntil([&] { return std::filesystem::is_empty(dir_.File("bad.db.ckpt")); },
                         std::chrono::seconds(5)));
}

// Writes `sql` into a fresh SQLite file at `path`.
void MakeDatabase(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
}

TEST(ForeignDatabase, CoordinatorRefusesToStartAndLeavesTheFileUntouched) {
  TempDir dir;
  MakeDatabase(dir.File("theirs.db"),
               "CREATE TABLE accounts (id INTEGER); INSERT INTO accounts "
               "VALUES (1);");
  MakeDatabase(dir.File("newer.db"),
               "PRAGMA application_id = 1094863956; PRAGMA user_version = 99; CREATE TABLE future "
               "(x);");
  testing::WriteFile(dir.File("text.db"), "this is not a database, it is a note to myself\n");
  const struct {
    std::string file, says;
  } cases[] = {{"theirs.db", "is not an ablate database"},
               {"newer.db", "schema version 99, newer than this binary's"},
               {"text.db", "not a database"}};
  for (const auto& c : cases) {
    const std::string path = dir.File(c.file);
    const std::string before = testing::ReadFile(path);
    const auto modified = std::filesystem::last_write_time(path);
    auto run = RunCommand({Binary("ablate-coordinator"), "--db", path, "--listen", "127.0.0.1:0"},
                          dir.path());
    EXPECT_EQ(run.exit_code, 1) << c.file;
    EXPECT_NE(run.err.find(c.says), std::string::npos) << c.file << ": " << run.err;
    EXPECT_TRUE(run.out.empty()) << c.file << ": " << run.out;
    EXPECT_EQ(testing::ReadFile(path), before) << c.file;
    EXPECT_EQ(std::filesystem::last_write_time(path), modified) << c.file;
    for (const char* suffix : {"-wal", "-shm", "-journal", ".ckpt"}) {
      EXPECT_FALSE(std::filesystem::exists(path + suffix)) << path + suffix;
    }
  }
}

}  // namespace
}  // namespace ablate
