// `ablate results`, `ablate curves` and `ablate report` end to end: the real
// coordinator and two real workers train the tiny 18-cell grid, then every
// command is asked through the coordinator and again from the database file
// with no coordinator running. Both must print the same bytes, and reading
// the file must leave it byte-identical.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <cmath>
#include <csignal>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>

#include "data/text8.h"
#include "proto/ablate.grpc.pb.h"
#include "tests/results_fixture.h"
#include "tests/support/process.h"
#include "tests/support/sqlite_query.h"

namespace ablate {
namespace {

using nlohmann::json;
using testing::Binary;
using testing::Process;
using testing::RunCommand;
using testing::RunResult;
using testing::TempDir;

std::string Corpus() {
  const std::string paragraph =
      "Layer normalization centers and scales the activations at every time step, so that they "
      "stay in a similar range. The results shown here are averaged along the different memory "
      "cell designs and weight initializations. ";
  std::string text;
  for (int i = 0; i < 40; ++i) text += text8::Clean(paragraph);
  return text;
}

std::string TinySpec(const std::string& corpus) {
  return "name: tiny\n"
         "data: {path: " +
         corpus +
         "}\n"
         "model: {hidden: 32, vocab: 27}\n"
         "train: {batch: 4, seq: 32, steps: 60, log_every: 20, eval_every: 20, eval_bytes: 500,\n"
         "        precision: bf16}\n"
         "grid:\n"
         "  cell: [lstm, gru, mgu]\n"
         "  layer_norm: [true, false]\n"
         "  init: [xavier, variance_scaling, orthogonal]\n";
}

// Each command's arguments before the source flags; `report` writes to OUT.
const std::vector<std::vector<std::string>> kCommands = {
    {"results", "tiny", "--group-by", "layer_norm"},
    {"results", "tiny", "--group-by", "cell,layer_norm", "--format", "csv"},
    {"results", "tiny", "--group-by", "layer_norm", "--format", "json"},
    {"results", "tiny", "--group-by", "none", "--metric", "test_bpc", "--format", "json"},
    {"results", "tiny", "--group-by", "init", "--at", "best"},
    {"results", "tiny", "--group-by", "cell", "--at", "step:30", "--format", "csv"},
    {"curves", "tiny", "--group-by", "cell"},
    {"curves", "tiny", "--group-by", "layer_norm", "--metric", "train_bpc", "--format", "json"},
    {"curves", "tiny", "--group-by", "init", "--points", "4"},
    {"report", "tiny", "-o", "OUT"},
};

struct Answer {
  RunResult run;
  std::string report;  // the file `report` wrote
};

class ResultsCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    db_ = new std::string(dir_->File("sweep.db"));
    testing::WriteFile(dir_->File("corpus.txt"), Corpus());
    Process coordinator("coordinator",
                        {Binary("ablate-coordinator"), "--db", *db_, "--listen", "127.0.0.1:0"},
                        dir_->path());
    std::smatch m;
    const std::string line = coordinator.WaitForLine("listening on");
    ASSERT_TRUE(std::regex_search(line, m, std::regex("listening on (\\S+)")))
        << coordinator.Stderr();
    const std::string address = m[1];
    auto sweeps =
        v1::Sweeps::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
    v1::LaunchRequest launch;
    launch.set_spec_text(TinySpec(dir_->File("corpus.txt")));
    launch.set_filename("tiny.yaml");
    v1::LaunchResponse launched;
    grpc::ClientContext context;
    ASSERT_TRUE(sweeps->Launch(&context, launch, &launched).ok());
    std::vector<std::unique_ptr<Process>> workers;
    for (int i = 0; i < 2; ++i) {
      workers.push_back(std::make_unique<Process>(
          "worker" + std::to_string(i),
          std::vector<std::string>{Binary("ablate-worker"), "--coordinator", address, "--threads",
                                   "1", "--exit-when-idle", "--poll", "0.2", "--name",
                                   "w" + std::to_string(i)},
          dir_->path()));
    }
    for (auto& w : workers) ASSERT_EQ(w->Wait(std::chrono::seconds(240)), 0) << w->Stderr();

    by_coordinator_ = new std::vector<Answer>(Ask({"--coordinator", address}, "coordinator"));
    coordinator.Signal(SIGTERM);
    ASSERT_NE(coordinator.Wait(), -1) << "the coordinator did not stop";

    bytes_before_ = new std::string(testing::ReadFile(*db_));
    by_file_ = new std::vector<Answer>(Ask({"--db", *db_}, "file"));
    bytes_after_ = new std::string(testing::ReadFile(*db_));
  }

  static void TearDownTestSuite() {
    delete by_coordinator_;
    delete by_file_;
    delete bytes_before_;
    delete bytes_after_;
    delete db_;
    delete dir_;
  }

  static RunResult Ablate(std::vector<std::string> args) {
    args.insert(args.begin(), Binary("ablate"));
    // The source is only ever what the command line says.
    return RunCommand(args, dir_->path(), std::chrono::seconds(60), {{"ABLATE_COORDINATOR", ""}});
  }

  static std::vector<Answer> Ask(const std::vector<std::string>& source, const std::string& tag) {
    std::vector<Answer> answers;
    for (std::vector<std::string> args : kCommands) {
      const std::string report = dir_->File("report-" + tag + ".html");
      for (std::string& arg : args) {
        if (arg == "OUT") arg = report;
      }
      args.insert(args.end(), source.begin(), source.end());
      Answer answer;
      answer.run = Ablate(args);
      if (args[0] == "report") answer.report = testing::ReadFile(report);
      answers.push_back(std::move(answer));
    }
    return answers;
  }

  static TempDir* dir_;
  static std::string* db_;
  static std::vector<Answer>* by_coordinator_;
  static std::vector<Answer>* by_file_;
  static std::string* bytes_before_;
  static std::string* bytes_after_;
};

TempDir* ResultsCliTest::dir_ = nullptr;
std::string* ResultsCliTest::db_ = nullptr;
std::vector<Answer>* ResultsCliTest::by_coordinator_ = nullptr;
std::vector<Answer>* ResultsCliTest::by_file_ = nullptr;
std::string* ResultsCliTest::bytes_before_ = nullptr;
std::string* ResultsCliTest::bytes_after_ = nullptr;

// One test, because each test is its own process under CTest and the sweep
// takes half a minute to train.
TEST_F(ResultsCliTest, CoordinatorAndFileAnswerAlikeAndTheFileStaysUntouched) {
  // The same bytes from the coordinator and from the file.
  ASSERT_EQ(by_coordinator_->size(), kCommands.size());
  ASSERT_EQ(by_file_->size(), kCommands.size());
  for (size_t i = 0; i < kCommands.size(); ++i) {
    const Answer& rpc = (*by_coordinator_)[i];
    const Answer& file = (*by_file_)[i];
    const std::string command = kCommands[i][0] + " " + kCommands[i][3];
    EXPECT_EQ(rpc.run.exit_code, 0) << command << ": " << rpc.run.err;
    EXPECT_EQ(file.run.exit_code, 0) << command << ": " << file.run.err;
    if (kCommands[i][0] == "report") {
      EXPECT_GT(file.report.size(), 10'000u);
      EXPECT_EQ(rpc.report, file.report);
    } else {
      EXPECT_FALSE(file.run.out.empty()) << command;
      EXPECT_EQ(rpc.run.out, file.run.out) << command;
      EXPECT_EQ(rpc.run.err, file.run.err) << command;
    }
  }

  // Reading the file left it byte-identical.
  ASSERT_FALSE(bytes_before_->empty());
  EXPECT_TRUE(*bytes_before_ == *bytes_after_);

  // The layer-norm groups match the jobs table, read independently: every
  // done job's final validation bpc.
  std::map<bool, std::vector<double>> values;
  for (const auto& row : testing::Query(
           *db_, "SELECT factors_json, final_valid_bpc FROM jobs WHERE state = 'done'")) {
    values[json::parse(row[0])["model.layer_norm"].get<bool>()].push_back(std::stod(row[1]));
  }
  ASSERT_EQ(values[true].size(), 9u);
  ASSERT_EQ(values[false].size(), 9u);
  const json list = json::parse((*by_file_)[2].run.out);
  ASSERT_EQ(list.size(), 2u);
  for (const json& group : list) {
    const std::vector<double>& v = values[group["group"]["layer_norm"].get<bool>()];
    double sum = 0, lo = v[0], hi = v[0];
    for (double x : v) {
      sum += x;
      lo = std::min(lo, x);
      hi = std::max(hi, x);
    }
    const double mean = sum / v.size();
    double squares = 0;
    for (double x : v) squares += (x - mean) * (x - mean);
    EXPECT_EQ(group["n"], 9);
    // The database stores what the workers sent; %.17g round trips through text.
    EXPECT_NEAR(group["mean"].get<double>(), mean, 1e-12);
    EXPECT_NEAR(group["std"].get<double>(), std::sqrt(squares / 8), 1e-12);
    EXPECT_NEAR(group["min"].get<double>(), lo, 1e-12);
    EXPECT_NEAR(group["max"].get<double>(), hi, 1e-12);
    // Both workers have the same device; bf16 applies only if it is a GPU.
    ASSERT_EQ(group["ran_on"].size(), 1u) << group;
    const json& ran_on = group["ran_on"][0];
    const bool gpu = ran_on["device"].get<std::string>().rfind("cuda", 0) == 0;
    EXPECT_EQ(ran_on["precision"], gpu ? "bf16" : "fp32") << ran_on;
    EXPECT_EQ(ran_on["jobs"], 9);
    EXPECT_GT(ran_on["hours"].get<double>(), 0);
  }
  // The table: its title, two groups, and the footer's one device (every
  // job is done).
  const std::vector<std::string> table = testing::Lines((*by_file_)[0].run.out);
  ASSERT_EQ(table.size(), 6u) << (*by_file_)[0].run.out;
  EXPECT_EQ(table[0],
            "sweep tiny (id 1): valid_bpc (final), averaged over every other factor and seed");
  EXPECT_EQ(table[2].rfind("true ", 0), 0u);
  EXPECT_EQ(table[3].rfind("false ", 0), 0u);
  EXPECT_EQ(table[4], "");
  EXPECT_TRUE(std::regex_match(
      table[5], std::regex("ran on: (cpu, fp32|cuda[^,]*, bf16): 18 jobs, \\d+\\.\\d\\d h")))
      << table[5];
}

TEST(ResultsCliErrors, ErrorsAreOneLineAndExitNonZero) {
  // A launched sweep is enough: nothing here needs a trained job.
  TempDir dir;
  const std::string db = dir.File("sweep.db");
  {
    testing::SweepWriter writer(db);
    writer.Launch(testing::GridSpec("tiny"));
  }
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"results", "tiny", "--group-by", "seed"},
       "ablate results: 'seed' is not a factor of sweep 'tiny'; its factors are: cell, "
       "layer_norm, init\n"},
      {{"results", "tiny", "--group-by", "cell", "--metric", "bpc"},
       "ablate results: sweep 'tiny' has no metric 'bpc'; its metrics are: none yet\n"},
      {{"curves", "tiny", "--group-by", "cell", "--metric", "valid\"loss"},
       "ablate curves: --metric: metric name \"valid\"loss\" has '\"'; names are letters, "
       "digits and _ - . / :\n"},
      {{"results", "nope", "--group-by", "cell"}, "ablate results: no sweep named 'nope'\n"},
      {{"curves", "tiny", "--group-by", "hidden"},
       "ablate curves: 'hidden' is not a factor of sweep 'tiny'; its factors are: cell, "
       "layer_norm, init\n"},
  };
  for (const auto& [args, message] : cases) {
    std::vector<std::string> with_db = args;
    with_db.push_back("--db");
    with_db.push_back(db);
    with_db.insert(with_db.begin(), Binary("ablate"));
    const RunResult run =
        RunCommand(with_db, dir.path(), std::chrono::seconds(60), {{"ABLATE_COORDINATOR", ""}});
    EXPECT_EQ(run.exit_code, 1) << args[0];
    EXPECT_EQ(run.err, message);
    EXPECT_EQ(run.out, "");
  }
}

}  // namespace
}  // namespace ablate
