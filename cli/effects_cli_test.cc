// `ablate effects` end to end: sweeps written through the coordinator's own
// managers into a real database (tests/results_fixture.h), asked through a
// real coordinator on loopback and again from the file. Both must print the
// same bytes; the effects must match the jobs table read independently.
#include <gtest/gtest.h>

#include <csignal>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>

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

constexpr double kTolerance = 1e-9;

RunResult Ablate(const TempDir& dir, std::vector<std::string> args) {
  args.insert(args.begin(), Binary("ablate"));
  // The source is only ever what the command line says.
  return RunCommand(args, dir.path(), std::chrono::seconds(60), {{"ABLATE_COORDINATOR", ""}});
}

// Level means of `factor` minus the grand mean over the done jobs of `sweep`,
// straight from the jobs table.
std::map<std::string, double> EffectsFromTable(const std::string& db, const std::string& sweep,
                                               const std::string& key, double offset = 0) {
  std::map<std::string, std::pair<double, int>> sums;
  double total = 0;
  int n = 0;
  for (const auto& row :
       testing::Query(db,
                      "SELECT j.factors_json, j.final_valid_bpc FROM jobs j JOIN sweeps s ON "
                      "s.id = j.sweep_id WHERE j.state = 'done' AND s.name = '" +
                          sweep + "'")) {
    const double value = std::stod(row[1]) + offset;
    const std::string level = json::parse(row[0])[key].dump();
    sums[level].first += value;
    sums[level].second += 1;
    total += value;
    ++n;
  }
  std::map<std::string, double> effects;
  for (const auto& [level, sum] : sums) effects[level] = sum.first / sum.second - total / n;
  return effects;
}

// Mean of the done jobs of `sweep` in each cell of the `first` × `second`
// table, keyed by the two levels as JSON, straight from the jobs table.
std::map<std::pair<std::string, std::string>, double> CellMeansFromTable(
    const std::string& db, const std::string& sweep, const std::string& first,
    const std::string& second) {
  std::map<std::pair<std::string, std::string>, std::pair<double, int>> sums;
  for (const auto& row :
       testing::Query(db,
                      "SELECT j.factors_json, j.final_valid_bpc FROM jobs j JOIN sweeps s ON "
                      "s.id = j.sweep_id WHERE j.state = 'done' AND s.name = '" +
                          sweep + "'")) {
    const json factors = json::parse(row[0]);
    auto& sum = sums[{factors[first].dump(), factors[second].dump()}];
    sum.first += std::stod(row[1]);
    sum.second += 1;
  }
  std::map<std::pair<std::string, std::string>, double> means;
  for (const auto& [cell, sum] : sums) means[cell] = sum.first / sum.second;
  return means;
}

const json* FindTerm(const json& answer, const std::string& name) {
  for (const json& term : answer["terms"]) {
    if (term["term"] == name) return &term;
  }
  return nullptr;
}

class EffectsCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    db_ = new std::string(dir_->File("sweep.db"));
    testing::SweepWriter writer(*db_);
    // Two seeds, every job done: balanced, with replicates.
    writer.Launch(testing::GridSpec("seeded", 2));
    for (int i = 0; i < 36; ++i) testing::FinishStandardJob(writer, writer.Lease());
    // One seed and one failed job: incomplete, the three-way interaction as
    // error.
    writer.Launch(testing::GridSpec("single"));
    testing::LeasedJob failed = writer.Lease();
    writer.Fail(failed, "loss is nan at step 31");
    for (int i = 0; i < 17; ++i) testing::FinishStandardJob(writer, writer.Lease());
    writer.Close();
    // Kept for a person to ask: ABLATE_EFFECTS_COPY=/some/dir.
    if (const char* copy = std::getenv("ABLATE_EFFECTS_COPY")) {
      testing::WriteFile(std::string(copy) + "/effects.db", testing::ReadFile(*db_));
    }
  }
  static void TearDownTestSuite() {
    delete db_;
    delete dir_;
  }

  static RunResult FromFile(std::vector<std::string> args) {
    args.push_back("--db");
    args.push_back(*db_);
    return Ablate(*dir_, args);
  }

  static TempDir* dir_;
  static std::string* db_;
};

TempDir* EffectsCliTest::dir_ = nullptr;
std::string* EffectsCliTest::db_ = nullptr;

TEST_F(EffectsCliTest, CoordinatorAndFileAnswerAlike) {
  const std::vector<std::vector<std::string>> commands = {
      {"effects", "seeded"},
      {"effects", "seeded", "--format", "json"},
      {"effects", "seeded", "--format", "csv", "--interactions", "1"},
      {"effects", "single", "--at", "step:30"},
      {"effects", "single", "--metric", "test_bpc", "--format", "json"},
  };
  std::vector<RunResult> by_file;
  for (const auto& args : commands) by_file.push_back(FromFile(args));

  Process coordinator("coordinator",
                      {Binary("ablate-coordinator"), "--db", *db_, "--listen", "127.0.0.1:0"},
                      dir_->path());
  std::smatch m;
  const std::string line = coordinator.WaitForLine("listening on");
  ASSERT_TRUE(std::regex_search(line, m, std::regex("listening on (\\S+)")))
      << coordinator.Stderr();
  const std::string address = m[1];
  for (size_t i = 0; i < commands.size(); ++i) {
    std::vector<std::string> args = commands[i];
    args.push_back("--coordinator");
    args.push_back(address);
    const RunResult rpc = Ablate(*dir_, args);
    EXPECT_EQ(rpc.exit_code, 0) << rpc.err;
    EXPECT_EQ(by_file[i].exit_code, 0) << by_file[i].err;
    EXPECT_FALSE(rpc.out.empty());
    EXPECT_EQ(rpc.out, by_file[i].out) << args[1];
    EXPECT_EQ(rpc.err, by_file[i].err) << args[1];
  }
  coordinator.Signal(SIGTERM);
  EXPECT_NE(coordinator.Wait(), -1) << "the coordinator did not stop";
}

TEST_F(EffectsCliTest, SeedsAreReplicatesAndEffectsMatchTheJobsTable) {
  const RunResult run = FromFile({"effects", "seeded", "--format", "json"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.err, "");
  const json answer = json::parse(run.out);
  EXPECT_EQ(answer["jobs"], 36);
  EXPECT_EQ(answer["seeds"], 2);
  EXPECT_EQ(answer["order"], 2);
  EXPECT_EQ(answer["sums_of_squares"], "classical");
  // 36 jobs less 1 + 2 + 1 + 2 main-effect and 2 + 4 + 2 interaction parameters.
  EXPECT_EQ(answer["error"]["df"], 22);
  EXPECT_EQ(answer["error"]["source"],
            "the replicates (2 seeds) and the interactions of more than 2 factors");
  // The seed is no factor; cell (levels 0.1 apart) explains the most, then
  // layer norm.
  ASSERT_EQ(answer["terms"].size(), 6u);
  EXPECT_EQ(answer["terms"][0]["term"], "cell");
  EXPECT_EQ(answer["terms"][1]["term"], "layer_norm");
  EXPECT_EQ(answer["terms"][2]["term"], "init");
  for (size_t i = 1; i < answer["terms"].size(); ++i) {
    EXPECT_GE(answer["terms"][i - 1]["share"].get<double>(),
              answer["terms"][i]["share"].get<double>());
  }
  for (const auto& [name, key, df] :
       {std::tuple{"cell", "model.cell", 2}, std::tuple{"layer_norm", "model.layer_norm", 1},
        std::tuple{"init", "model.init", 2}}) {
    const json* term = FindTerm(answer, name);
    ASSERT_NE(term, nullptr) << name;
    EXPECT_EQ((*term)["df"], df) << name;
    EXPECT_LT((*term)["p"].get<double>(), 0.05) << name;
    const std::map<std::string, double> expected = EffectsFromTable(*db_, "seeded", key);
    ASSERT_EQ((*term)["levels"].size(), expected.size()) << name;
    for (const json& level : (*term)["levels"]) {
      EXPECT_NEAR(level["effect"].get<double>(), expected.at(level["level"].dump()), kTolerance)
          << name << " " << level["level"];
      EXPECT_GT(level["ci95"].get<double>(), 0) << name;
    }
  }
  const json* interaction = FindTerm(answer, "cell:layer_norm");
  ASSERT_NE(interaction, nullptr);
  EXPECT_EQ((*interaction)["df"], 2);
  EXPECT_FALSE(interaction->contains("levels"));

  // Its cells: each one's mean less its row and column means plus the grand
  // mean, over the jobs table's cell means, all with the balanced interval.
  const auto means = CellMeansFromTable(*db_, "seeded", "model.cell", "model.layer_norm");
  std::map<std::string, double> rows, columns;
  double grand = 0;
  for (const auto& [cell, mean] : means) {
    rows[cell.first] += mean / 2;
    columns[cell.second] += mean / 3;
    grand += mean / 6;
  }
  EXPECT_EQ((*interaction)["empty_cells"], 0);
  ASSERT_EQ((*interaction)["cells"].size(), 6u);
  const double ci95 = (*interaction)["cells"][0]["ci95"].get<double>();
  EXPECT_GT(ci95, 0);
  for (const json& cell : (*interaction)["cells"]) {
    const std::string row = cell["levels"][0].dump(), column = cell["levels"][1].dump();
    EXPECT_EQ(cell["n"], 6) << row << " " << column;
    EXPECT_NEAR(cell["mean"].get<double>(), means.at({row, column}), kTolerance);
    EXPECT_NEAR(cell["effect"].get<double>(),
                means.at({row, column}) - rows.at(row) - columns.at(column) + grand, kTolerance)
        << row << " " << column;
    EXPECT_NEAR(cell["ci95"].get<double>(), ci95, kTolerance);
  }
}

TEST_F(EffectsCliTest, OneSeedUsesTheHighestInteractionAndAFailedJobMeansTypeTwo) {
  const RunResult run = FromFile({"effects", "single"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const std::vector<std::string> lines = testing::Lines(run.out);
  ASSERT_GE(lines.size(), 4u) << run.out;
  EXPECT_EQ(lines[0].rfind("sweep single (id 2): effects on valid_bpc (final), 17 jobs, grand "
                           "mean ",
                           0),
            0u)
      << lines[0];
  EXPECT_EQ(lines[1],
            "analysis of variance, main effects and interactions of up to 2 factors; unbalanced "
            "or incomplete grid: Type II sums of squares (each term adjusted for every term that "
            "does not contain it)");
  // One job short of the 18 cells: the three-way interaction keeps 3 of its 4 df.
  EXPECT_TRUE(
      std::regex_match(lines[2], std::regex("error term: one seed: the highest-order interaction, "
                                            "cell:layer_norm:init \\(df 3, mean square .*\\)")))
      << lines[2];
  EXPECT_NE(run.out.find("1 failed job not included:\n  job 37 ("), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("loss is nan at step 31"), std::string::npos) << run.out;

  // At step 30 every job's validation bpc is its final one plus 0.5: the
  // same effects, the grand mean 0.5 higher.
  const json final_answer = json::parse(FromFile({"effects", "single", "--format", "json"}).out);
  const json early =
      json::parse(FromFile({"effects", "single", "--format", "json", "--at", "step:30"}).out);
  EXPECT_EQ(early["value"], "valid_bpc at step 30");
  EXPECT_NEAR(early["grand_mean"].get<double>(), final_answer["grand_mean"].get<double>() + 0.5,
              kTolerance);
  // Levels in the spec's order, though the first job (lstm, layer norm,
  // xavier) failed.
  const json* init = FindTerm(final_answer, "init");
  ASSERT_NE(init, nullptr);
  std::vector<std::string> inits;
  for (const json& level : (*init)["levels"]) inits.push_back(level["level"]);
  EXPECT_EQ(inits, (std::vector<std::string>{"xavier", "variance_scaling", "orthogonal"}));

  const json* cell = FindTerm(early, "cell");
  ASSERT_NE(cell, nullptr);
  const std::map<std::string, double> expected = EffectsFromTable(*db_, "single", "model.cell");
  for (const json& level : (*cell)["levels"]) {
    EXPECT_NEAR(level["effect"].get<double>(), expected.at(level["level"].dump()), kTolerance);
  }
}

TEST_F(EffectsCliTest, CsvHasOneLinePerLevelAndPerInteraction) {
  const RunResult run = FromFile({"effects", "seeded", "--format", "csv"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const std::vector<std::string> lines = testing::Lines(run.out);
  // A header, 3 + 2 + 3 levels and the 3 interactions' 6 + 9 + 6 cells.
  ASSERT_EQ(lines.size(), 30u) << run.out;
  EXPECT_EQ(lines[0], "term,level,n,mean,effect,ci95,df,sum_sq,share,f,p");
  EXPECT_EQ(lines[1].rfind("cell,lstm,12,", 0), 0u) << lines[1];
  EXPECT_NE(run.out.find("\ncell:layer_norm,lstm × true,6,"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("\ncell:init,mgu × orthogonal,4,"), std::string::npos) << run.out;

  // Main effects only: one line per level.
  const RunResult main_only =
      FromFile({"effects", "seeded", "--format", "csv", "--interactions", "1"});
  ASSERT_EQ(main_only.exit_code, 0) << main_only.err;
  EXPECT_EQ(testing::Lines(main_only.out).size(), 9u) << main_only.out;
}

TEST_F(EffectsCliTest, TheTableShowsEachTwoFactorCellsEffect) {
  const RunResult seeded = FromFile({"effects", "seeded"});
  ASSERT_EQ(seeded.exit_code, 0) << seeded.err;
  EXPECT_NE(seeded.out.find("\ninteractions: each cell's mean minus its two level means plus the "
                            "grand mean, with its 95% interval\nterm "),
            std::string::npos)
      << seeded.out;
  EXPECT_TRUE(std::regex_search(seeded.out, std::regex("\ncell:layer_norm +lstm × true +6 ")))
      << seeded.out;
  EXPECT_TRUE(std::regex_search(seeded.out, std::regex("\n +gru × false +6 "))) << seeded.out;

  // One failed job: every two-factor table still has every cell, and its
  // row, column and grand means are unweighted means of the cell means.
  const RunResult single = FromFile({"effects", "single"});
  ASSERT_EQ(single.exit_code, 0) << single.err;
  EXPECT_NE(single.out.find("interactions: each cell's mean minus its two level means plus the "
                            "grand mean (level and grand means from the unweighted cell means), "
                            "with its 95% interval\n"),
            std::string::npos)
      << single.out;
  EXPECT_TRUE(std::regex_search(single.out, std::regex("\ncell:layer_norm +lstm × true +2 ")))
      << single.out;

  const RunResult main_only = FromFile({"effects", "seeded", "--interactions", "1"});
  ASSERT_EQ(main_only.exit_code, 0) << main_only.err;
  EXPECT_EQ(main_only.out.find("interactions:"), std::string::npos) << main_only.out;
}

TEST_F(EffectsCliTest, BadRequestsAreOneLineErrors) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"effects", "seeded", "--metric", "bpc"},
       "ablate effects: sweep 'seeded' has no metric 'bpc'; its metrics are: test_bpc, "
       "train_bpc, valid_bpc\n"},
      {{"effects", "seeded", "--at", "last"},
       "ablate effects: --at: \"last\" is not final, best or step:N\n"},
      {{"effects", "seeded", "--interactions", "0"},
       "ablate effects: --interactions: 0 is not 1 or more (1: main effects only)\n"},
      {{"effects", "nope"}, "ablate effects: no sweep named 'nope'\n"},
      {{"effects", "single", "--at", "step:90"},
       "ablate effects: no done job of sweep 'single' has a valid_bpc at step 90\n"},
      {{"effects", "single", "--interactions", "3"},
       "ablate effects: cannot analyse the valid_bpc (final) of sweep 'single': 17 observations "
       "leave no degrees of freedom for the error term of a model with 17 parameters "
       "(interactions of up to 3 factors); use fewer interactions or more seeds\n"},
  };
  for (const auto& [args, message] : cases) {
    const RunResult run = FromFile(args);
    EXPECT_EQ(run.exit_code, 1) << args[2];
    EXPECT_EQ(run.err, message);
    EXPECT_EQ(run.out, "");
  }
}

}  // namespace
}  // namespace ablate
