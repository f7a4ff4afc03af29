// What `ablate results` and `ablate curves` print: the table with its
// footer, CSV and JSON, for replies queried from a sweep database written
// through the coordinator's managers; and how their flags are read.
#include "cli/results_format.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "cli/results_commands.h"
#include "store/results.h"
#include "store/store.h"
#include "tests/results_fixture.h"
#include "tests/support/process.h"

namespace ablate {
namespace {

using json = nlohmann::ordered_json;
using testing::FinishStandardJob;
using testing::FixturePoint;
using testing::GridSpec;
using testing::LeasedJob;
using testing::Lines;
using testing::SweepWriter;
using testing::TempDir;

class ResultsFormatTest : public ::testing::Test {
 protected:
  // 15 done jobs, one failed, one running with a valid point, one pending.
  void SetUp() override {
    SweepWriter writer(path());
    writer.Launch(GridSpec("grid"));
    for (int i = 0; i < 15; ++i) FinishStandardJob(writer, writer.Lease());
    failed_ = writer.Lease();
    writer.Fail(failed_, "CUDA out of memory\nat step 31");
    LeasedJob running = writer.Lease();
    writer.Report(running, {FixturePoint(v1::SPLIT_VALID, 30, 2.5)});
  }

  std::string path() const { return dir_.File("sweep.db"); }

  v1::ResultsResponse Query(const v1::ResultsRequest& request) {
    auto db = OpenStoreReadOnly(path());
    EXPECT_TRUE(db.ok());
    auto response = QueryResults(**db, request);
    EXPECT_TRUE(response.ok()) << response.status().ToString();
    return response.ok() ? *response : v1::ResultsResponse();
  }

  static v1::ResultsRequest Request(const std::vector<std::string>& group_by) {
    v1::ResultsRequest request;
    request.mutable_sweep()->set_name("grid");
    for (const auto& g : group_by) request.add_group_by(g);
    request.set_split(v1::SPLIT_VALID);
    return request;
  }

  TempDir dir_;
  LeasedJob failed_;
};

TEST_F(ResultsFormatTest, JsonIsAListOfGroupsKeyedAsTyped) {
  const v1::ResultsRequest request = Request({"layer_norm"});
  const v1::ResultsResponse response = Query(request);
  const json list = json::parse(ResultsJson(request, response));
  ASSERT_TRUE(list.is_array());
  ASSERT_EQ(list.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const json& item = list[i];
    const v1::ResultRow& row = response.rows(static_cast<int>(i));
    std::vector<std::string> keys;
    for (const auto& entry : item.items()) keys.push_back(entry.key());
    EXPECT_EQ(keys, (std::vector<std::string>{"group", "n", "mean", "std", "min", "max", "ci95",
                                              "unfinished", "jobs", "ran_on"}));
    EXPECT_EQ(item["group"], (json{{"layer_norm", i == 0}}));
    EXPECT_EQ(item["n"], row.n());
    EXPECT_EQ(item["mean"].get<double>(), row.mean());
    EXPECT_EQ(item["std"].get<double>(), row.stddev());
    EXPECT_EQ(item["min"].get<double>(), row.min());
    EXPECT_EQ(item["max"].get<double>(), row.max());
    EXPECT_EQ(item["ci95"].get<double>(), row.ci95());
    EXPECT_EQ(item["jobs"].size(), static_cast<size_t>(row.n()));
    // Every job ran on the fixture's one CPU worker, 90 s each.
    ASSERT_EQ(item["ran_on"].size(), 1u) << item;
    EXPECT_EQ(item["ran_on"][0], (json{{"device", "cpu"},
                                       {"precision", "fp32"},
                                       {"jobs", row.n()},
                                       {"hours", row.n() * 90 / 3600.0}}));
  }
  EXPECT_EQ(list[0]["n"].get<int64_t>() + list[1]["n"].get<int64_t>(), 15);
}

TEST_F(ResultsFormatTest, JsonPerJobCarriesJobIdAndEveryFactor) {
  const v1::ResultsRequest request = Request({});
  const json list = json::parse(ResultsJson(request, Query(request)));
  ASSERT_EQ(list.size(), 15u);
  for (const json& item : list) {
    EXPECT_TRUE(item["job_id"].is_number_integer());
    EXPECT_EQ(item["n"], 1);
    EXPECT_TRUE(item["std"].is_null());
    EXPECT_TRUE(item["ci95"].is_null());
    std::vector<std::string> keys;
    for (const auto& entry : item["group"].items()) keys.push_back(entry.key());
    EXPECT_EQ(keys, (std::vector<std::string>{"cell", "layer_norm", "init"}));
  }
}

TEST_F(ResultsFormatTest, CsvHasFullPrecisionAndOneLinePerGroup) {
  const v1::ResultsRequest request = Request({"cell", "layer_norm"});
  const v1::ResultsResponse response = Query(request);
  const std::vector<std::string> lines = Lines(ResultsCsv(request, response));
  ASSERT_EQ(lines.size(), 7u);
  EXPECT_EQ(lines[0], "cell,layer_norm,n,mean,std,min,max,ci95");
  EXPECT_EQ(lines[1].rfind("lstm,true,", 0), 0u) << lines[1];
  std::vector<std::string> cells;
  std::stringstream line(lines[1]);
  for (std::string cell; std::getline(line, cell, ',');) cells.push_back(cell);
  ASSERT_EQ(cells.size(), 8u);
  EXPECT_EQ(std::stod(cells[3]), response.rows(0).mean());
  EXPECT_EQ(std::stod(cells[4]), response.rows(0).stddev());

  v1::ResultsRequest unfinished = request;
  unfinished.set_include_unfinished(true);
  EXPECT_EQ(Lines(ResultsCsv(unfinished, Query(unfinished)))[0],
            "cell,layer_norm,n,mean,std,min,max,ci95,unfinished");
}

TEST_F(ResultsFormatTest, TableAccountsForEveryJobNotCounted) {
  const v1::ResultsRequest request = Request({"layer_norm"});
  const std::string table = ResultsTable(request, Query(request));
  const std::vector<std::string> lines = Lines(table);
  ASSERT_EQ(lines.size(), 9u) << table;
  EXPECT_EQ(lines[0],
            "sweep grid (id 1): valid_bpc (final), averaged over every other factor and seed");
  EXPECT_EQ(lines[1].substr(0, 16), "layer_norm  n   ");
  EXPECT_EQ(lines[2].rfind("true        ", 0), 0u) << lines[2];
  EXPECT_EQ(lines[4], "");
  EXPECT_EQ(lines[5],
            "1 running and 1 pending jobs not included; --include-unfinished uses their latest "
            "point");
  EXPECT_EQ(lines[6], "1 failed job not included:");
  EXPECT_EQ(lines[7], "  job " + std::to_string(failed_.id()) +
                          " (cell=" + failed_.factors["model.cell"].get<std::string>() +
                          ", init=" + failed_.factors["model.init"].get<std::string>() +
                          ", layer_norm=" + failed_.factors["model.layer_norm"].dump() +
                          "): CUDA out of memory");
  // Every job that ran: 15 done at 90 s, the failed one without a point, the
  // running one at its point's 45 s; 1395 s in all.
  EXPECT_EQ(lines[8], "ran on: cpu, fp32: 17 jobs, 0.39 h");
}

TEST(ResultsFormat, RanOnFooterHasALinePerDeviceAndPrecisionAsRegistered) {
  v1::SweepFacts facts;
  EXPECT_EQ(RanOnFooter(facts), "");
  v1::DeviceUse* gpu = facts.add_ran_on();
  gpu->set_device("cuda:0 (NVIDIA H100 80GB HBM3)");
  gpu->set_precision("tf32");
  gpu->set_jobs(6);
  gpu->set_hours(0.4213);
  v1::DeviceUse* cpu = facts.add_ran_on();
  cpu->set_device("cpu");
  cpu->set_precision("fp32");
  cpu->set_jobs(1);
  cpu->set_hours(12.5);
  EXPECT_EQ(RanOnFooter(facts),
            "ran on: cuda:0 (NVIDIA H100 80GB HBM3), tf32: 6 jobs, 0.42 h\n"
            "ran on: cpu, fp32: 1 job, 12.50 h\n");
}

TEST_F(ResultsFormatTest, TableMarksUnfinishedValuesWhenIncluded) {
  v1::ResultsRequest request = Request({"layer_norm"});
  request.set_include_unfinished(true);
  const std::string table = ResultsTable(request, Query(request));
  EXPECT_TRUE(std::regex_search(table, std::regex("\\n(true|false) +\\d+\\* "))) << table;
  EXPECT_NE(table.find("* includes the latest values of 1 unfinished job (not final)\n"),
            std::string::npos)
      << table;
  EXPECT_NE(table.find("1 pending job has no valid_bpc (final) yet\n"), std::string::npos) << table;
}

TEST_F(ResultsFormatTest, CurvesCsvAndJsonShareTheGrid) {
  auto db = OpenStoreReadOnly(path());
  ASSERT_TRUE(db.ok());
  v1::CurvesRequest request;
  request.mutable_sweep()->set_name("grid");
  request.add_group_by("init");
  request.set_split(v1::SPLIT_VALID);
  auto response = QueryCurves(**db, request);
  ASSERT_TRUE(response.ok());
  const std::vector<std::string> lines = Lines(CurvesCsv(*response));
  EXPECT_EQ(lines[0], "init,step,n,mean,std,min,max");
  EXPECT_EQ(lines.size(), 1u + 3 * 2);  // 3 inits x steps 30 and 60
  EXPECT_EQ(lines[1].rfind("xavier,30,", 0), 0u) << lines[1];
  const json list = json::parse(CurvesJson(*response));
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[0]["group"], (json{{"init", "xavier"}}));
  EXPECT_EQ(list[0]["steps"], (json{30, 60}));
  for (const char* series : {"n", "mean", "std", "min", "max"}) {
    EXPECT_EQ(list[0][series].size(), 2u) << series;
  }
}

TEST_F(ResultsFormatTest, PrintResultsTableIsTheResultsCommandsTable) {
  SourceOptions from_file;
  from_file.db_path = path();
  auto source = Source::Open(from_file);
  ASSERT_TRUE(source.ok());
  std::ostringstream out;
  ASSERT_TRUE(PrintResultsTable(**source, "grid", {"layer_norm"}, out).ok());
  const v1::ResultsRequest request = Request({"layer_norm"});
  v1::ResultsRequest resolved = request;
  resolved.set_at(v1::VALUE_AT_FINAL);
  EXPECT_EQ(out.str(), ResultsTable(resolved, Query(resolved)));
  EXPECT_EQ(PrintResultsTable(**source, "grid", {"nope"}, out).code(), Status::kInvalidArgument);
}

// A program's sweep judged by its own metric, an accuracy: best is high.
TEST(ResultsFormat, ASweepsOwnMetricIsTheDefaultAndNamesTheTable) {
  TempDir dir;
  const std::string path = dir.File("named.db");
  {
    SweepWriter writer(path);
    writer.Launch(R"(method: grid
name: named
metric: {name: eval/acc, goal: maximize}
data: {path: corpus.txt}
parameters:
  cell: {values: [lstm, gru]}
)");
    for (int i = 0; i < 2; ++i) {
      LeasedJob job = writer.Lease();
      std::vector<v1::CurvePoint> points;
      for (const auto& [step, value] : {std::pair{10, 0.5}, {20, 0.9}, {30, 0.8}}) {
        v1::CurvePoint& point = points.emplace_back();
        point.set_metric("eval/acc");
        point.set_step(step);
        point.set_value(value + 0.01 * i);
      }
      writer.Report(job, points);
      writer.Complete(job, v1::FinalMetrics());
    }
  }
  SourceOptions from_file;
  from_file.db_path = path;
  auto source = Source::Open(from_file);
  ASSERT_TRUE(source.ok());
  std::ostringstream out;
  ASSERT_TRUE(PrintResultsTable(**source, "named", {"cell"}, out).ok());
  EXPECT_EQ(Lines(out.str())[0],
            "sweep named (id 1): eval/acc (final), averaged over every other factor and seed");
  EXPECT_NE(out.str().find("lstm  1  0.8000"), std::string::npos) << out.str();

  v1::ResultsRequest best;
  best.mutable_sweep()->set_name("named");
  best.set_at(v1::VALUE_AT_BEST);
  v1::ResultsResponse reply;
  ASSERT_TRUE((*source)->Results(best, &reply).ok());
  EXPECT_TRUE(reply.maximize());
  best.set_metric(reply.metric());
  const std::string table = ResultsTable(best, reply);
  EXPECT_EQ(Lines(table)[0], "sweep named (id 1): eval/acc (best) per job");
  EXPECT_EQ(Lines(table)[3], "  2  gru     0.9100") << table;
}

TEST(ResultsFlags, MetricAtAndGroupByAreParsedOrRefused) {
  v1::ResultsRequest request;
  ASSERT_TRUE(ParseMetric("valid/loss", request.mutable_metric()).ok());
  EXPECT_EQ(request.metric(), "valid/loss");
  EXPECT_EQ(MetricName(request), "valid/loss");
  // Empty: the sweep's own metric, which the reply names.
  ASSERT_TRUE(ParseMetric("", request.mutable_metric()).ok());
  EXPECT_EQ(request.metric(), "");
  EXPECT_EQ(ParseMetric("valid loss", request.mutable_metric()).message(),
            "--metric: metric name \"valid loss\" has a space; names are letters, digits and _ "
            "- . / :");
  request.set_split(v1::SPLIT_TEST);
  EXPECT_EQ(MetricName(request), "test_bpc");
  ASSERT_TRUE(ParseAt("step:1500", &request).ok());
  EXPECT_EQ(request.at(), v1::VALUE_AT_STEP);
  EXPECT_EQ(request.step(), 1500);
  ASSERT_TRUE(ParseAt("best", &request).ok());
  EXPECT_EQ(request.at(), v1::VALUE_AT_BEST);
  for (const char* bad : {"step:", "step:-1", "step:1e3", "last"}) {
    EXPECT_EQ(ParseAt(bad, &request).code(), Status::kInvalidArgument) << bad;
  }
  EXPECT_EQ(*ParseGroupBy("cell,layer_norm"), (std::vector<std::string>{"cell", "layer_norm"}));
  EXPECT_TRUE(ParseGroupBy("none")->empty());
  EXPECT_EQ(ParseGroupBy("cell,,init").status().code(), Status::kInvalidArgument);
}

}  // namespace
}  // namespace ablate
