// A whole sweep on loopback: the real coordinator, two real worker processes,
// the 18-cell grid with a tiny model, every curve point in SQLite.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <regex>

#include "data/text8.h"
#include "proto/ablate.grpc.pb.h"
#include "tests/support/corpus.h"
#include "tests/support/process.h"
#include "tests/support/sqlite_query.h"

namespace ablate {
namespace {

using testing::Binary;
using testing::Process;
using testing::Query;
using testing::QueryInt;
using testing::TempDir;

std::string TinySpec(const std::string& corpus) {
  return "name: tiny\n"
         "data: {path: " + corpus + "}\n"
         "model: {hidden: 32, vocab: 27}\n"
         "train: {batch: 4, seq: 32, steps: 60, log_every: 20, eval_every: 30, eval_bytes: 500}\n"
         "grid:\n"
         "  cell: [lstm, gru, mgu]\n"
         "  layer_norm: [true, false]\n"
         "  init: [xavier, variance_scaling, orthogonal]\n";
}

// The coordinator on a free loopback port, and a client for it.
struct Coordinator {
  Coordinator(const TempDir& dir, const std::string& db)
      : process("coordinator",
                {Binary("ablate-coordinator"), "--db", db, "--listen", "127.0.0.1:0"},
                dir.path()) {
    const std::string line = process.WaitForLine("listening on");
    std::smatch m;
    if (std::regex_search(line, m, std::regex("listening on (\\S+)"))) address = m[1];
    channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  }
  Process process;
  std::string address;
  std::shared_ptr<grpc::Channel> channel;
};

TEST(Sweep, TwoWorkersTrainTheWholeGridAndEveryPointLandsOnce) {
  TempDir dir;
  testing::WriteFile(dir.File("corpus.txt"), testing::EnglishText8(18));
  const std::string db = dir.File("sweep.db");
  Coordinator coordinator(dir, db);
  ASSERT_FALSE(coordinator.address.empty()) << coordinator.process.Stderr();

  auto sweeps = v1::Sweeps::NewStub(coordinator.channel);
  v1::LaunchRequest launch;
  launch.set_spec_text(TinySpec(dir.File("corpus.txt")));
  launch.set_filename("tiny.yaml");
  v1::LaunchResponse launched;
  grpc::ClientContext context;
  ASSERT_TRUE(sweeps->Launch(&context, launch, &launched).ok());
  EXPECT_EQ(launched.jobs_created(), 18);

  std::vector<std::unique_ptr<Process>> workers;
  for (int i = 0; i < 2; ++i) {
    workers.push_back(std::make_unique<Process>(
        "worker" + std::to_string(i),
        std::vector<std::string>{Binary("ablate-worker"), "--coordinator", coordinator.address,
                                 "--threads", "1", "--exit-when-idle", "--poll", "0.2",
                                 // Half the grid each: however late one starts, the
                                 // other cannot take every job.
                                 "--max-jobs", "9",
                                 "--name", "w" + std::to_string(i)},
        dir.path()));
  }
  for (auto& w : workers) {
    EXPECT_EQ(w->Wait(std::chrono::seconds(240)), 0) << w->name() << ": " << w->Stderr();
  }

  EXPECT_EQ(QueryInt(db, "SELECT count(*) FROM jobs WHERE state = 'done'"), 18);
  // Both workers took part, each stopping at its --max-jobs.
  EXPECT_EQ(Query(db, "SELECT count(*) FROM jobs GROUP BY lease_owner"),
            (std::vector<std::vector<std::string>>{{"9"}, {"9"}}));
  // Every job has its whole curve: train at 20, 40, 60; valid at 30, 60; test at 60.
  auto per_job = Query(db,
                       "SELECT job_id, group_concat(split || step, ',') FROM "
                       "(SELECT * FROM curve ORDER BY job_id, split, step) GROUP BY job_id");
  ASSERT_EQ(per_job.size(), 18u);
  for (const auto& row : per_job) {
    EXPECT_EQ(row[1], "test60,train20,train40,train60,valid30,valid60") << "job " << row[0];
  }
  // Each job's stored final test bpc is the curve's test point.
  EXPECT_EQ(QueryInt(db,
                     "SELECT count(*) FROM jobs j JOIN curve_points p ON p.job_id = j.id AND "
                     "p.metric = 'test_bpc' WHERE p.value = j.final_test_bpc"),
            18);
  // The two layer-norm groups hold 9 finished jobs each.
  auto groups = Query(db,
                      "SELECT json_extract(factors_json, '$.\"model.layer_norm\"'), count(*) "
                      "FROM jobs WHERE state = 'done' GROUP BY 1 ORDER BY 1");
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[0][1], "9");
  EXPECT_EQ(groups[1][1], "9");
}

}  // namespace
}  // namespace ablate
