// QueryResults and QueryCurves over sweep databases written through the
// coordinator's managers; every expected number is computed here from what
// the test reported, independently of the code under test.
#include "store/results.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>

#include "coordinator/server.h"
#include "coordinator/test_util.h"
#include "proto/ablate.grpc.pb.h"
#include "store/store.h"
#include "tests/results_fixture.h"
#include "tests/support/sqlite_query.h"

namespace ablate {
namespace {

using testing::FinishStandardJob;
using testing::FixturePoint;
using testing::GridSpec;
using testing::LeasedJob;
using testing::SweepWriter;
using testing::TempDir;

struct Expected {
  int64_t n = 0;
  double mean = 0, stddev = 0, min = 0, max = 0;
};

Expected Stats(const std::vector<double>& values) {
  Expected e;
  e.n = static_cast<int64_t>(values.size());
  e.min = values[0];
  e.max = values[0];
  double sum = 0;
  for (double v : values) {
    sum += v;
    e.min = std::min(e.min, v);
    e.max = std::max(e.max, v);
  }
  e.mean = sum / e.n;
  double squares = 0;
  for (double v : values) squares += (v - e.mean) * (v - e.mean);
  e.stddev = e.n > 1 ? std::sqrt(squares / (e.n - 1)) : NAN;
  return e;
}

void ExpectRow(const v1::ResultRow& row, const std::vector<double>& values) {
  const Expected e = Stats(values);
  EXPECT_EQ(row.n(), e.n);
  EXPECT_NEAR(row.mean(), e.mean, 1e-12);
  EXPECT_NEAR(row.stddev(), e.stddev, 1e-12);
  EXPECT_DOUBLE_EQ(row.min(), e.min);
  EXPECT_DOUBLE_EQ(row.max(), e.max);
}

// A factor value as the reply's JSON text.
std::string Text(const nlohmann::json& value) { return value.dump(); }

class ResultsTest : public ::testing::Test {
 protected:
  std::string path() const { return dir_.File("sweep.db"); }

  // Launches `spec` and finishes every job with the standard curves; keeps
  // each job's factors and final valid bpc.
  void FinishAll(const std::string& spec, int jobs) {
    SweepWriter writer(path());
    writer.Launch(spec);
    for (int i = 0; i < jobs; ++i) {
      LeasedJob job = writer.Lease();
      valid_[job.id()] = FinishStandardJob(writer, job);
      factors_[job.id()] = job.factors;
    }
  }

  std::unique_ptr<Database> Open() {
    auto db = OpenStoreReadOnly(path());
    EXPECT_TRUE(db.ok()) << db.status().ToString();
    return std::move(db).value();
  }

  v1::ResultsResponse Results(const std::vector<std::string>& group_by,
                              v1::Split split = v1::SPLIT_VALID,
                              v1::ValueAt at = v1::VALUE_AT_FINAL, int64_t step = 0,
                              bool include_unfinished = false) {
    v1::ResultsRequest request;
    request.mutable_sweep()->set_name("grid");
    for (const auto& g : group_by) request.add_group_by(g);
    request.set_split(split);
    request.set_at(at);
    request.set_step(step);
    request.set_include_unfinished(include_unfinished);
    auto db = Open();
    auto response = QueryResults(*db, request);
    EXPECT_TRUE(response.ok()) << response.status().ToString();
    return response.ok() ? *response : v1::ResultsResponse();
  }

  // The final valid bpc of every finished job whose factor `key` is `value`.
  std::vector<double> ValidWhere(const std::map<std::string, nlohmann::json>& where) {
    std::vector<double> values;
    for (const auto& [id, factors] : factors_) {
      bool match = true;
      for (const auto& [key, value] : where) match = match && factors[key] == value;
      if (match) values.push_back(valid_.at(id));
    }
    return values;
  }

  TempDir dir_;
  std::map<int64_t, double> valid_;
  std::map<int64_t, nlohmann::json> factors_;
};

TEST_F(ResultsTest, GroupingByLayerNormGivesTwoGroupsOfNineWithTheirStatistics) {
  FinishAll(GridSpec("grid"), 18);
  v1::ResultsResponse r = Results({"layer_norm"});
  ASSERT_EQ(r.columns_size(), 1);
  EXPECT_EQ(r.columns(0), "layer_norm");
  EXPECT_EQ(r.column_keys(0), "model.layer_norm");
  ASSERT_EQ(r.rows_size(), 2);
  // The spec's order: true first.
  EXPECT_EQ(r.rows(0).values_json(0), "true");
  EXPECT_EQ(r.rows(1).values_json(0), "false");
  ExpectRow(r.rows(0), ValidWhere({{"model.layer_norm", true}}));
  ExpectRow(r.rows(1), ValidWhere({{"model.layer_norm", false}}));
  EXPECT_EQ(r.rows(0).n(), 9);
  // 95% interval half-width: t(0.975, 8) * std / sqrt(9).
  EXPECT_NEAR(r.rows(0).ci95(), 2.306004135 * r.rows(0).stddev() / 3, 1e-9);
  EXPECT_EQ(r.left_out().pending() + r.left_out().running() + r.left_out().cancelled(), 0);
  EXPECT_EQ(r.left_out().failed_size() + r.left_out().missing_size(), 0);
}

TEST_F(ResultsTest, GroupingByCellAndLayerNormGivesSixGroupsOfThree) {
  FinishAll(GridSpec("grid"), 18);
  v1::ResultsResponse r = Results({"cell", "model.layer_norm"});
  ASSERT_EQ(r.columns_size(), 2);
  EXPECT_EQ(r.columns(1), "model.layer_norm");
  ASSERT_EQ(r.rows_size(), 6);
  const std::vector<std::pair<std::string, bool>> order = {{"lstm", true}, {"lstm", false},
                                                           {"gru", true},  {"gru", false},
                                                           {"mgu", true},  {"mgu", false}};
  for (int i = 0; i < 6; ++i) {
    const auto& [cell, ln] = order[i];
    EXPECT_EQ(r.rows(i).values_json(0), Text(cell));
    EXPECT_EQ(r.rows(i).values_json(1), Text(ln));
    ExpectRow(r.rows(i), ValidWhere({{"model.cell", cell}, {"model.layer_norm", ln}}));
    EXPECT_EQ(r.rows(i).n(), 3);
  }
}

TEST_F(ResultsTest, NoGroupingGivesOneRowPerJobWithEveryFactor) {
  FinishAll(GridSpec("grid"), 18);
  v1::ResultsResponse r = Results({});
  ASSERT_EQ(r.columns_size(), 3);
  EXPECT_EQ(r.columns(0), "cell");
  EXPECT_EQ(r.columns(1), "layer_norm");
  EXPECT_EQ(r.columns(2), "init");
  ASSERT_EQ(r.rows_size(), 18);
  std::set<int64_t> jobs;
  for (const v1::ResultRow& row : r.rows()) {
    ASSERT_EQ(row.job_ids_size(), 1);
    const int64_t id = row.job_ids(0);
    jobs.insert(id);
    EXPECT_EQ(row.n(), 1);
    EXPECT_DOUBLE_EQ(row.mean(), valid_.at(id));
    EXPECT_TRUE(std::isnan(row.stddev()));
    EXPECT_EQ(row.values_json(0), Text(factors_.at(id)["model.cell"]));
    EXPECT_EQ(row.values_json(2), Text(factors_.at(id)["model.init"]));
  }
  EXPECT_EQ(jobs.size(), 18u);
}

TEST_F(ResultsTest, SeedsAreAveragedOverWithinEachConfiguration) {
  FinishAll(GridSpec("grid", 3), 54);
  v1::ResultsResponse r = Results({"cell", "layer_norm", "init"});
  ASSERT_EQ(r.rows_size(), 18);
  for (const v1::ResultRow& row : r.rows()) {
    EXPECT_EQ(row.n(), 3);
    const auto cell = nlohmann::json::parse(row.values_json(0));
    const auto ln = nlohmann::json::parse(row.values_json(1));
    const auto init = nlohmann::json::parse(row.values_json(2));
    ExpectRow(row,
              ValidWhere({{"model.cell", cell}, {"model.layer_norm", ln}, {"model.init", init}}));
  }
  v1::ResultsResponse by_seed = Results({"seed"});
  ASSERT_EQ(by_seed.rows_size(), 3);
  EXPECT_EQ(by_seed.column_keys(0), "train.seed");
  for (int seed = 0; seed < 3; ++seed) {
    EXPECT_EQ(by_seed.rows(seed).values_json(0), std::to_string(seed));
    ExpectRow(by_seed.rows(seed), ValidWhere({{"train.seed", seed}}));
  }
}

TEST_F(ResultsTest, OtherSplitsUseTheirOwnFinalValues) {
  FinishAll(GridSpec("grid"), 18);
  v1::ResultsResponse test = Results({"layer_norm"}, v1::SPLIT_TEST);
  v1::ResultsResponse train = Results({"layer_norm"}, v1::SPLIT_TRAIN);
  std::vector<double> tests, trains;
  for (double v : ValidWhere({{"model.layer_norm", true}})) {
    tests.push_back(v + 0.02);
    trains.push_back(v + 0.1);
  }
  ExpectRow(test.rows(0), tests);
  ExpectRow(train.rows(0), trains);
}

TEST_F(ResultsTest, UnfinishedJobsAreLeftOutAndCountedUnlessIncluded) {
  SweepWriter writer(path());
  writer.Launch(GridSpec("grid"));
  std::map<int64_t, double> included;  // job -> value with --include-unfinished
  for (int i = 0; i < 15; ++i) {
    LeasedJob job = writer.Lease();
    valid_[job.id()] = FinishStandardJob(writer, job);
    factors_[job.id()] = job.factors;
  }
  // Two running: one with a valid point at step 30, one with none yet.
  LeasedJob with_point = writer.Lease();
  writer.Report(with_point, {FixturePoint(v1::SPLIT_VALID, 30, 2.5)});
  LeasedJob without_point = writer.Lease();
  writer.Report(without_point, {FixturePoint(v1::SPLIT_TRAIN, 20, 3.0)});
  // The 18th stays pending.
  writer.Close();

  v1::ResultsResponse r = Results({"layer_norm"});
  EXPECT_EQ(r.left_out().running(), 2);
  EXPECT_EQ(r.left_out().pending(), 1);
  int64_t counted = 0;
  for (const auto& row : r.rows()) {
    counted += row.n();
    EXPECT_EQ(row.unfinished(), 0);
  }
  EXPECT_EQ(counted, 15);
  ExpectRow(r.rows(0), ValidWhere({{"model.layer_norm", true}}));

  v1::ResultsResponse all =
      Results({"layer_norm"}, v1::SPLIT_VALID, v1::VALUE_AT_FINAL, 0, /*include_unfinished=*/true);
  // The running job without a valid point and the pending one have no value.
  EXPECT_EQ(all.left_out().running(), 1);
  EXPECT_EQ(all.left_out().pending(), 1);
  const bool ln = with_point.factors["model.layer_norm"];
  const v1::ResultRow& marked = all.rows(ln ? 0 : 1);
  EXPECT_EQ(marked.unfinished(), 1);
  std::vector<double> values = ValidWhere({{"model.layer_norm", ln}});
  values.push_back(2.5);
  ExpectRow(marked, values);
  EXPECT_EQ(all.rows(ln ? 1 : 0).unfinished(), 0);
}

TEST_F(ResultsTest, FailedAndCancelledJobsAreAccountedForNeverCounted) {
  SweepWriter writer(path());
  writer.Launch(GridSpec("grid"));
  for (int i = 0; i < 16; ++i) FinishStandardJob(writer, writer.Lease());
  LeasedJob failed = writer.Lease();
  writer.Report(failed, {FixturePoint(v1::SPLIT_VALID, 30, 1.0)});
  writer.Fail(failed, "loss is nan at step 31");
  LeasedJob cancelled = writer.Lease();
  writer.CancelJob(cancelled.id());
  writer.Close();

  for (bool include : {false, true}) {
    v1::ResultsResponse r = Results({"cell"}, v1::SPLIT_VALID, v1::VALUE_AT_FINAL, 0, include);
    int64_t counted = 0;
    for (const auto& row : r.rows()) counted += row.n();
    EXPECT_EQ(counted, 16);
    EXPECT_EQ(r.left_out().cancelled(), 1);
    ASSERT_EQ(r.left_out().failed_size(), 1);
    EXPECT_EQ(r.left_out().failed(0).job_id(), failed.id());
    EXPECT_EQ(r.left_out().failed(0).detail(), "loss is nan at step 31");
    EXPECT_EQ(nlohmann::json::parse(r.left_out().failed(0).factors_json()), failed.factors);
  }
}

TEST_F(ResultsTest, BestIsTheLowestPointOfTheCurve) {
  SweepWriter writer(path());
  writer.Launch(GridSpec("grid"));
  std::vector<double> bests;
  for (int i = 0; i < 18; ++i) {
    LeasedJob job = writer.Lease();
    // The curve dips at step 40 and ends higher: best != final.
    const double dip = 1.0 + 0.01 * i;
    writer.Report(
        job, {FixturePoint(v1::SPLIT_VALID, 20, dip + 0.4), FixturePoint(v1::SPLIT_VALID, 40, dip),
              FixturePoint(v1::SPLIT_VALID, 60, dip + 0.1)});
    v1::FinalMetrics metrics;
    metrics.set_valid_bpc(dip + 0.1);
    writer.Complete(job, metrics);
    bests.push_back(dip);
  }
  writer.Close();
  v1::ResultsResponse best =
      Results({"layer_norm", "cell", "init"}, v1::SPLIT_VALID, v1::VALUE_AT_BEST);
  v1::ResultsResponse final = Results({}, v1::SPLIT_VALID, v1::VALUE_AT_FINAL);
  std::vector<double> got_best, got_final;
  for (const auto& row : best.rows()) got_best.push_back(row.mean());
  for (const auto& row : final.rows()) got_final.push_back(row.mean());
  std::sort(got_best.begin(), got_best.end());
  std::sort(got_final.begin(), got_final.end());
  ASSERT_EQ(got_best.size(), 18u);
  for (size_t i = 0; i < 18; ++i) {
    EXPECT_DOUBLE_EQ(got_best[i], bests[i]);
    EXPECT_DOUBLE_EQ(got_final[i], bests[i] + 0.1);
  }
}

TEST_F(ResultsTest, AtStepInterpolatesAndReportsCurvesThatEndBefore) {
  SweepWriter writer(path());
  writer.Launch(GridSpec("grid"));
  LeasedJob early_end;
  for (int i = 0; i < 18; ++i) {
    LeasedJob job = writer.Lease();
    if (i == 0) {
      // Ends at step 30: cannot answer step 45.
      writer.Report(job, {FixturePoint(v1::SPLIT_VALID, 30, 2.0)});
      writer.Complete(job, v1::FinalMetrics());
      early_end = job;
      continue;
    }
    // Points at 30 and 60 (or 40 and 50 for odd jobs): step 45 is between.
    if (i % 2) {
      writer.Report(
          job, {FixturePoint(v1::SPLIT_VALID, 40, 3.0), FixturePoint(v1::SPLIT_VALID, 50, 2.0)});
      valid_[job.id()] = 2.5;
    } else {
      writer.Report(
          job, {FixturePoint(v1::SPLIT_VALID, 30, 3.0), FixturePoint(v1::SPLIT_VALID, 60, 1.5)});
      valid_[job.id()] = 3.0 + (45.0 - 30.0) / 30.0 * (1.5 - 3.0);  // 2.25
    }
    factors_[job.id()] = job.factors;
    writer.Complete(job, v1::FinalMetrics());
  }
  writer.Close();

  v1::ResultsResponse r = Results({"cell"}, v1::SPLIT_VALID, v1::VALUE_AT_STEP, 45);
  ASSERT_EQ(r.rows_size(), 3);
  for (const auto& row : r.rows()) {
    ExpectRow(row, ValidWhere({{"model.cell", nlohmann::json::parse(row.values_json(0))}}));
  }
  ASSERT_EQ(r.left_out().missing_size(), 1);
  EXPECT_EQ(r.left_out().missing(0).job_id(), early_end.id());
  EXPECT_EQ(r.left_out().missing(0).detail(),
            "the valid_bpc curve ends at step 30, before step 45");

  // A step that is a point is that point's value exactly.
  v1::ResultsResponse at_30 = Results({}, v1::SPLIT_VALID, v1::VALUE_AT_STEP, 30);
  for (const auto& row : at_30.rows()) {
    if (row.job_ids(0) == early_end.id()) {
      EXPECT_DOUBLE_EQ(row.mean(), 2.0);
    }
  }
}

TEST_F(ResultsTest, UnknownFactorSweepAndMetricAreErrors) {
  FinishAll(GridSpec("grid"), 18);
  auto db = Open();
  v1::ResultsRequest request;
  request.mutable_sweep()->set_name("grid");
  request.set_split(v1::SPLIT_VALID);
  request.add_group_by("seed");
  auto unknown = QueryResults(*db, request);
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), Status::kInvalidArgument);
  EXPECT_EQ(unknown.status().message(),
            "'seed' is not a factor of sweep 'grid'; its factors are: cell, layer_norm, init");

  request.clear_group_by();
  request.add_group_by("cell");
  request.add_group_by("model.cell");
  EXPECT_EQ(QueryResults(*db, request).status().code(), Status::kInvalidArgument);

  // No split and no metric: the sweep's metric, here the default valid_bpc.
  request.clear_group_by();
  request.set_split(v1::SPLIT_UNSPECIFIED);
  auto by_default = QueryResults(*db, request);
  ASSERT_TRUE(by_default.ok()) << by_default.status().ToString();
  EXPECT_EQ(by_default->metric(), "valid_bpc");

  request.set_metric("valid loss");
  EXPECT_EQ(QueryResults(*db, request).status().code(), Status::kInvalidArgument);
  request.set_metric("valid/loss");
  auto no_such = QueryResults(*db, request);
  EXPECT_EQ(no_such.status().code(), Status::kInvalidArgument);
  EXPECT_EQ(no_such.status().message(),
            "sweep 'grid' has no metric 'valid/loss'; its metrics are: test_bpc, train_bpc, "
            "valid_bpc");
  request.clear_metric();

  request.set_split(v1::SPLIT_VALID);
  request.mutable_sweep()->set_name("nope");
  auto missing = QueryResults(*db, request);
  EXPECT_EQ(missing.status().code(), Status::kNotFound);
  EXPECT_EQ(missing.status().message(), "no sweep named 'nope'");
}

TEST_F(ResultsTest, FactsSumWallTimesByDevice) {
  SweepWriter writer(path());
  writer.Launch(GridSpec("grid"));
  for (int i = 0; i < 18; ++i) {
    LeasedJob job = writer.Lease(i < 6 ? "gpu0" : "cpu0", i < 6 ? "cuda:0" : "cpu");
    FinishStandardJob(writer, job, /*wall_seconds=*/600);
  }
  writer.Close();
  v1::ResultsResponse r = Results({"cell"});
  EXPECT_DOUBLE_EQ(r.facts().gpu_hours(), 6 * 600 / 3600.0);
  EXPECT_DOUBLE_EQ(r.facts().cpu_hours(), 12 * 600 / 3600.0);
  EXPECT_GT(r.facts().first_started_ms(), 0);
  EXPECT_GT(r.facts().last_finished_ms(), r.facts().first_started_ms());
}

// A sweep over train.precision: 3 cells x tf32/bf16 x 2 inits.
std::string PrecisionSpec() {
  return R"(name: grid
data: {path: corpus.txt}
model: {hidden: 2000, vocab: 256}
train: {steps: 60, log_every: 20, eval_every: 30}
grid:
  cell: [lstm, gru, mgu]
  precision: [tf32, bf16]
  init: [xavier, orthogonal]
)";
}

// (device, precision) -> {jobs, seconds}, in DeviceUse's order.
using Tally = std::map<std::pair<std::string, int>, std::pair<int64_t, double>>;

int PrecisionRank(const std::string& name) {
  return name == "fp32" ? 0 : name == "tf32" ? 1 : name == "bf16" ? 2 : 3;
}

void ExpectRanOn(const google::protobuf::RepeatedPtrField<v1::DeviceUse>& ran_on,
                 const Tally& expected) {
  ASSERT_EQ(static_cast<size_t>(ran_on.size()), expected.size());
  auto it = expected.begin();
  for (const v1::DeviceUse& use : ran_on) {
    const auto& [key, value] = *it++;
    EXPECT_EQ(use.device(), key.first);
    EXPECT_EQ(PrecisionRank(use.precision()), key.second) << use.precision();
    EXPECT_EQ(use.jobs(), value.first) << use.device() << " " << use.precision();
    EXPECT_NEAR(use.hours(), value.second / 3600, 1e-12) << use.device() << " " << use.precision();
  }
}

TEST_F(ResultsTest, RanOnSplitsJobsByDeviceAndTheirEffectivePrecision) {
  const std::string h100 = "cuda:0 (NVIDIA H100 80GB HBM3)";
  Tally sweep_wide;                       // every job that ran
  std::map<std::string, Tally> by_group;  // done jobs, by their precision factor
  {
    SweepWriter writer(path());
    writer.Launch(PrecisionSpec());
    for (int i = 0; i < 11; ++i) {
      const bool gpu = i < 7;
      const std::string device = gpu ? h100 : "cpu";
      LeasedJob job = writer.Lease(gpu ? "gpu0" : "cpu0", device);
      // The precision as the job's stored config says it: tf32 is left out.
      const nlohmann::json config = nlohmann::json::parse(job.lease.config_json());
      const std::string configured = config["train"].value("precision", "tf32");
      EXPECT_EQ(configured, job.factors["train.precision"].get<std::string>());
      const std::pair<std::string, int> key = {device, PrecisionRank(gpu ? configured : "fp32")};
      double seconds = 0;
      if (i == 10) {
        writer.Report(job, {FixturePoint(v1::SPLIT_VALID, 30, 2.5)});  // still running
        seconds = 30 * 1.5;
      } else {
        seconds = 100.0 * (i + 1);
        FinishStandardJob(writer, job, static_cast<int64_t>(seconds));
        ++by_group[configured][key].first;
        by_group[configured][key].second += seconds;
      }
      ++sweep_wide[key].first;
      sweep_wide[key].second += seconds;
    }
    // The 12th job stays pending: it never ran anywhere.
  }
  ASSERT_EQ(by_group.size(), 2u);

  v1::ResultsResponse r = Results({"precision"});
  ExpectRanOn(r.facts().ran_on(), sweep_wide);
  double gpu_seconds = 0, cpu_seconds = 0;
  for (const auto& [key, value] : sweep_wide) {
    (key.first == "cpu" ? cpu_seconds : gpu_seconds) += value.second;
  }
  EXPECT_NEAR(r.facts().gpu_hours(), gpu_seconds / 3600, 1e-12);
  EXPECT_NEAR(r.facts().cpu_hours(), cpu_seconds / 3600, 1e-12);

  ASSERT_EQ(r.rows_size(), 2);
  EXPECT_EQ(r.rows(0).values_json(0), "\"tf32\"");
  ExpectRanOn(r.rows(0).ran_on(), by_group["tf32"]);
  EXPECT_EQ(r.rows(1).values_json(0), "\"bf16\"");
  ExpectRanOn(r.rows(1).ran_on(), by_group["bf16"]);
}

// --- Curves -------------------------------------------------------------------

class CurvesTest : public ResultsTest {
 protected:
  v1::CurvesResponse Curves(const std::vector<std::string>& group_by, int points = 0,
                            bool include_unfinished = false) {
    v1::CurvesRequest request;
    request.mutable_sweep()->set_name("grid");
    for (const auto& g : group_by) request.add_group_by(g);
    request.set_split(v1::SPLIT_VALID);
    request.set_points(points);
    request.set_include_unfinished(include_unfinished);
    auto db = Open();
    auto response = QueryCurves(*db, request);
    EXPECT_TRUE(response.ok()) << response.status().ToString();
    return response.ok() ? *response : v1::CurvesResponse();
  }
};

// Two curves on different eval steps, checked by hand:
//   A: (10, 4.0) (30, 2.0)    B: (20, 3.5) (40, 1.5)
//   step 10: A 4.0            -> n 1, mean 4.0
//   step 20: A 3.0, B 3.5     -> n 2, mean 3.25, std 0.5 / sqrt(2)
//   step 30: A 2.0, B 2.5     -> n 2, mean 2.25
//   step 40: B 1.5            -> n 1 (A ended at 30: never extrapolated)
TEST_F(CurvesTest, CurvesOnDifferentEvalStepsAreInterpolatedNeverExtrapolated) {
  SweepWriter writer(path());
  // Two seeds of one configuration: one group.
  writer.Launch("name: grid\ndata: {path: x}\ngrid: {cell: [gru]}\nseeds: [0, 1]\n");
  LeasedJob a = writer.Lease();
  writer.Report(a,
                {FixturePoint(v1::SPLIT_VALID, 10, 4.0), FixturePoint(v1::SPLIT_VALID, 30, 2.0)});
  writer.Complete(a, v1::FinalMetrics());
  LeasedJob b = writer.Lease();
  writer.Report(b,
                {FixturePoint(v1::SPLIT_VALID, 20, 3.5), FixturePoint(v1::SPLIT_VALID, 40, 1.5)});
  writer.Complete(b, v1::FinalMetrics());
  writer.Close();

  v1::CurvesResponse r = Curves({"cell"});
  EXPECT_EQ(std::vector<int64_t>(r.steps().begin(), r.steps().end()),
            (std::vector<int64_t>{10, 20, 30, 40}));
  ASSERT_EQ(r.groups_size(), 1);
  const v1::CurveGroup& g = r.groups(0);
  EXPECT_EQ(g.jobs(), 2);
  EXPECT_EQ(std::vector<int64_t>(g.n().begin(), g.n().end()), (std::vector<int64_t>{1, 2, 2, 1}));
  EXPECT_DOUBLE_EQ(g.mean(0), 4.0);
  EXPECT_DOUBLE_EQ(g.mean(1), 3.25);
  EXPECT_DOUBLE_EQ(g.mean(2), 2.25);
  EXPECT_DOUBLE_EQ(g.mean(3), 1.5);
  EXPECT_TRUE(std::isnan(g.stddev(0)));
  EXPECT_NEAR(g.stddev(1), 0.5 / std::sqrt(2.0), 1e-12);
  EXPECT_NEAR(g.stddev(2), 0.5 / std::sqrt(2.0), 1e-12);
  EXPECT_DOUBLE_EQ(g.min(1), 3.0);
  EXPECT_DOUBLE_EQ(g.max(1), 3.5);

  // Five evenly spaced steps over 10..40: 10, 17.5 -> 18, 25, 32.5 -> 33, 40.
  v1::CurvesResponse even = Curves({"cell"}, 5);
  EXPECT_EQ(std::vector<int64_t>(even.steps().begin(), even.steps().end()),
            (std::vector<int64_t>{10, 18, 25, 33, 40}));
  const v1::CurveGroup& e = even.groups(0);
  EXPECT_EQ(std::vector<int64_t>(e.n().begin(), e.n().end()),
            (std::vector<int64_t>{1, 1, 2, 1, 1}));
  EXPECT_DOUBLE_EQ(e.mean(1), 4.0 - 8.0 / 20.0 * 2.0);                         // A at 18
  EXPECT_DOUBLE_EQ(e.mean(2), ((4.0 - 0.75 * 2.0) + (3.5 - 0.25 * 2.0)) / 2);  // A, B at 25
  EXPECT_DOUBLE_EQ(e.mean(3), 3.5 - 13.0 / 20.0 * 2.0);                        // B at 33
}

TEST_F(CurvesTest, GroupsAverageTheStandardCurvesPerStep) {
  FinishAll(GridSpec("grid"), 18);
  v1::CurvesResponse r = Curves({"layer_norm"});
  EXPECT_EQ(std::vector<int64_t>(r.steps().begin(), r.steps().end()),
            (std::vector<int64_t>{30, 60}));
  ASSERT_EQ(r.groups_size(), 2);
  EXPECT_EQ(r.groups(0).values_json(0), "true");
  std::vector<double> at_60 = ValidWhere({{"model.layer_norm", true}});
  std::vector<double> at_30;
  for (double v : at_60) at_30.push_back(v + 0.5);
  const Expected e30 = Stats(at_30), e60 = Stats(at_60);
  const v1::CurveGroup& g = r.groups(0);
  EXPECT_EQ(g.jobs(), 9);
  EXPECT_EQ(g.n(0), 9);
  EXPECT_NEAR(g.mean(0), e30.mean, 1e-12);
  EXPECT_NEAR(g.mean(1), e60.mean, 1e-12);
  EXPECT_NEAR(g.stddev(1), e60.stddev, 1e-12);
  EXPECT_DOUBLE_EQ(g.min(1), e60.min);
  EXPECT_DOUBLE_EQ(g.max(1), e60.max);
}

TEST_F(CurvesTest, UnfinishedCurvesJoinOnlyWhenAskedAndEndWhereTheyEnd) {
  SweepWriter writer(path());
  writer.Launch(GridSpec("grid"));
  for (int i = 0; i < 17; ++i) FinishStandardJob(writer, writer.Lease());
  LeasedJob running = writer.Lease();
  writer.Report(running, {FixturePoint(v1::SPLIT_VALID, 30, 9.0)});
  writer.Close();

  v1::CurvesResponse without = Curves({});
  EXPECT_EQ(without.groups_size(), 17);
  EXPECT_EQ(without.left_out().running(), 1);
  v1::CurvesResponse with = Curves({}, 0, true);
  EXPECT_EQ(with.groups_size(), 18);
  EXPECT_EQ(with.left_out().running(), 0);
  for (const v1::CurveGroup& g : with.groups()) {
    if (g.unfinished() == 0) continue;
    EXPECT_EQ(std::vector<int64_t>(g.n().begin(), g.n().end()), (std::vector<int64_t>{1, 0}));
    EXPECT_DOUBLE_EQ(g.mean(0), 9.0);
    EXPECT_TRUE(std::isnan(g.mean(1)));
  }
}

TEST_F(CurvesTest, TooManyCellsAskForFewerPoints) {
  SweepWriter writer(path());
  writer.Launch(GridSpec("grid"));
  for (int i = 0; i < 2; ++i) {
    LeasedJob job = writer.Lease();
    std::vector<v1::CurvePoint> points;
    // 30,000 distinct steps per job, offset so the union doubles: 2 x 60,000 cells.
    for (int s = 0; s < 30'000; ++s)
      points.push_back(FixturePoint(v1::SPLIT_VALID, 2 * s + i, 2.0));
    writer.Report(job, points);
    writer.Complete(job, v1::FinalMetrics());
  }
  writer.Close();
  v1::CurvesRequest request;
  request.mutable_sweep()->set_name("grid");
  request.set_split(v1::SPLIT_VALID);
  auto db = Open();
  auto refused = QueryCurves(*db, request);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Status::kInvalidArgument);
  request.set_points(500);
  auto thinned = QueryCurves(*db, request);
  ASSERT_TRUE(thinned.ok()) << thinned.status().ToString();
  EXPECT_EQ(thinned->steps_size(), 500);
}

// --- Through the coordinator ---------------------------------------------------

// The Sweeps service's Results and Curves of a running coordinator answer
// exactly what the queries answer on its database file.
TEST_F(ResultsTest, CoordinatorRpcsAnswerAsTheDatabaseFile) {
  SweepWriter writer(path());
  writer.Launch(GridSpec("grid", 2));
  for (int i = 0; i < 30; ++i) FinishStandardJob(writer, writer.Lease());
  LeasedJob running = writer.Lease();
  writer.Report(running, {FixturePoint(v1::SPLIT_VALID, 30, 2.5)});
  writer.Close();

  v1::ResultsRequest results;
  results.mutable_sweep()->set_name("grid");
  results.add_group_by("layer_norm");
  results.set_split(v1::SPLIT_VALID);
  results.set_include_unfinished(true);
  v1::CurvesRequest curves;
  curves.mutable_sweep()->set_name("grid");
  curves.add_group_by("cell");
  curves.set_split(v1::SPLIT_VALID);
  std::string from_file_results, from_file_curves;
  {
    auto db = Open();
    from_file_results = QueryResults(*db, results)->SerializeAsString();
    from_file_curves = QueryCurves(*db, curves)->SerializeAsString();
  }

  CoordinatorOptions options;
  options.db_path = path();
  options.listen = "127.0.0.1:0";
  auto server = CoordinatorServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  auto stub = v1::Sweeps::NewStub(
      grpc::CreateChannel((*server)->address(), grpc::InsecureChannelCredentials()));
  v1::ResultsResponse results_reply;
  v1::CurvesResponse curves_reply;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub->Results(&context, results, &results_reply).ok());
  }
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub->Curves(&context, curves, &curves_reply).ok());
  }
  EXPECT_EQ(results_reply.SerializeAsString(), from_file_results);
  EXPECT_EQ(curves_reply.SerializeAsString(), from_file_curves);
  EXPECT_EQ(results_reply.rows(0).n() + results_reply.rows(1).n(), 31);

  // Errors keep their codes across the wire.
  results.clear_group_by();
  results.add_group_by("hidden");
  grpc::ClientContext context;
  const grpc::Status refused = stub->Results(&context, results, &results_reply);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(refused.error_message(),
            "'hidden' is not a factor of sweep 'grid'; its factors are: cell, layer_norm, init, "
            "seed");
}

// A coordinator on ":memory:" has no file for a second connection: its
// queries run on the writer and see what it committed.
TEST(ResultsRpc, InMemoryCoordinatorAnswersFromItsWriter) {
  CoordinatorOptions options;
  options.db_path = ":memory:";
  options.listen = "127.0.0.1:0";
  TempDir checkpoints;
  options.checkpoint_dir = checkpoints.File("ckpt");
  auto server = CoordinatorServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  auto stub = v1::Sweeps::NewStub(
      grpc::CreateChannel((*server)->address(), grpc::InsecureChannelCredentials()));
  v1::LaunchRequest launch;
  launch.set_spec_text(GridSpec("grid"));
  launch.set_filename("grid.yaml");
  v1::LaunchResponse launched;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub->Launch(&context, launch, &launched).ok());
  }
  v1::ResultsRequest request;
  request.mutable_sweep()->set_name("grid");
  request.add_group_by("cell");
  request.set_split(v1::SPLIT_VALID);
  v1::ResultsResponse reply;
  grpc::ClientContext context;
  ASSERT_TRUE(stub->Results(&context, request, &reply).ok());
  EXPECT_EQ(reply.rows_size(), 0);
  EXPECT_EQ(reply.left_out().pending(), 18);
  EXPECT_EQ(reply.sweep().counts().total(), 18);
}

// --- Statistics, views and the schema ------------------------------------------

TEST_F(ResultsTest, ViewsAnswerTheReadmeQueries) {
  FinishAll(GridSpec("grid"), 18);
  auto by_cell = testing::Query(path(),
                                "SELECT cell, avg(final_valid_bpc), count(*) FROM job_results "
                                "WHERE sweep = 'grid' GROUP BY cell ORDER BY cell");
  ASSERT_EQ(by_cell.size(), 3u);
  for (const auto& row : by_cell) {
    EXPECT_EQ(row[2], "6");
    EXPECT_NEAR(std::stod(row[1]), Stats(ValidWhere({{"model.cell", row[0]}})).mean, 1e-9);
  }
  auto job =
      testing::Query(path(),
                     "SELECT job_id, state, layer_norm, init, seed, steps, wall_time, attempts, "
                     "worker, device, final_test_bpc FROM job_results ORDER BY job_id LIMIT 1");
  ASSERT_EQ(job.size(), 1u);
  const int64_t id = std::stoll(job[0][0]);
  EXPECT_EQ(job[0][1], "done");
  EXPECT_EQ(job[0][2], factors_.at(id)["model.layer_norm"].get<bool>() ? "1" : "0");
  EXPECT_EQ(job[0][3], factors_.at(id)["model.init"].get<std::string>());
  EXPECT_EQ(job[0][4], "0");  // fixed, not an axis: still a column
  EXPECT_EQ(job[0][5], "60");
  EXPECT_EQ(job[0][6], "90.0");
  EXPECT_EQ(job[0][7], "1");
  EXPECT_EQ(job[0][8], "w0");
  EXPECT_EQ(job[0][9], "cpu");
  EXPECT_NEAR(std::stod(job[0][10]), valid_.at(id) + 0.02, 1e-12);

  auto curve = testing::Query(path(),
                              "SELECT step, count(*), avg(bpc) FROM curve WHERE sweep = 'grid' AND "
                              "split = 'valid' AND layer_norm GROUP BY step ORDER BY step");
  ASSERT_EQ(curve.size(), 2u);
  EXPECT_EQ(curve[0][0], "30");
  EXPECT_EQ(curve[0][1], "9");
  EXPECT_NEAR(std::stod(curve[1][2]), Stats(ValidWhere({{"model.layer_norm", true}})).mean, 1e-9);
}

TEST(Schema, VersionOneDatabaseGainsTheViewsWhenOpened) {
  TempDir dir;
  const std::string path = dir.File("old.db");
  {
    auto db = OpenStore(path);
    ASSERT_TRUE(db.ok());
    // The version 1 schema is this one without its views, without version
    // 3's keep_checkpoints, and without version 4's metric and program
    // columns, its curve points by split.
    ASSERT_TRUE(
        (*db)
            ->Exec("DROP VIEW job_results; DROP VIEW curve; "
                   "ALTER TABLE sweeps DROP COLUMN keep_checkpoints; "
                   "ALTER TABLE sweeps DROP COLUMN metric_name; "
                   "ALTER TABLE sweeps DROP COLUMN metric_goal; "
                   "ALTER TABLE sweeps DROP COLUMN silence_ms; "
                   "ALTER TABLE jobs DROP COLUMN command_json; "
                   "DROP TABLE curve_points; "
                   "CREATE TABLE curve_points (job_id INTEGER NOT NULL REFERENCES jobs (id), "
                   "split TEXT NOT NULL, step INTEGER NOT NULL, bpc REAL NOT NULL, "
                   "bytes_seen INTEGER NOT NULL, wall_time REAL NOT NULL, "
                   "attempt INTEGER NOT NULL, PRIMARY KEY (job_id, split, step)) "
                   "STRICT, WITHOUT ROWID; "
                   "PRAGMA user_version = 1")
            .ok());
  }
  EXPECT_EQ(OpenStoreReadOnly(path).status().code(), Status::kFailedPrecondition);
  {
    auto db = OpenStore(path);
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    EXPECT_EQ(*(*db)->QueryInt("PRAGMA user_version"), kStoreSchemaVersion);
  }
  EXPECT_EQ(testing::Query(path, "SELECT count(*) FROM job_results")[0][0], "0");
  EXPECT_EQ(testing::Query(path, "SELECT count(*) FROM curve")[0][0], "0");
}

// --- Named metrics over the wire -------------------------------------------------

// A program's sweep judged by an accuracy: best is the highest point.
constexpr char kNamedSpec[] = R"(method: grid
name: named
metric: {name: eval/acc, goal: maximize}
data: {path: corpus.txt}
model: {hidden: 16, vocab: 27}
train: {steps: 30, log_every: 10, eval_every: 10}
parameters:
  cell: {values: [lstm, gru]}
)";

v1::CurvePoint NamedPoint(const std::string& metric, int64_t step, double value) {
  v1::CurvePoint point;
  point.set_metric(metric);
  point.set_step(step);
  point.set_value(value);
  point.set_wall_time(static_cast<double>(step));
  return point;
}

// A real coordinator on a database file, a sweep launched on it, and a
// worker registered over gRPC.
class NamedMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CoordinatorOptions options;
    options.db_path = dir_.File("named.db");
    options.listen = "127.0.0.1:0";
    options.checkpoint_dir = dir_.File("ckpt");
    auto server = CoordinatorServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
    auto channel = grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
    sweeps_ = v1::Sweeps::NewStub(channel);
    coordinator_ = v1::Coordinator::NewStub(channel);
    v1::LaunchRequest launch;
    launch.set_spec_text(kNamedSpec);
    launch.set_filename("named.yaml");
    v1::LaunchResponse launched;
    grpc::ClientContext launch_context;
    ASSERT_TRUE(sweeps_->Launch(&launch_context, launch, &launched).ok());
    v1::RegisterWorkerRequest registration;
    registration.set_name("w0");
    registration.set_host("host");
    registration.set_device("cpu");
    registration.set_threads(1);
    v1::RegisterWorkerResponse registered;
    grpc::ClientContext register_context;
    ASSERT_TRUE(coordinator_->RegisterWorker(&register_context, registration, &registered).ok());
    worker_id_ = registered.worker_id();
  }

  v1::JobLease Lease() {
    v1::LeaseJobRequest request;
    request.set_worker_id(worker_id_);
    v1::LeaseJobResponse reply;
    grpc::ClientContext context;
    EXPECT_TRUE(coordinator_->LeaseJob(&context, request, &reply).ok());
    EXPECT_TRUE(reply.has_job());
    return reply.job();
  }

  grpc::Status Report(const v1::JobLease& lease, const std::vector<v1::CurvePoint>& points) {
    v1::ReportPointsRequest request;
    request.set_job_id(lease.job_id());
    request.set_lease_token(lease.lease_token());
    for (const v1::CurvePoint& point : points) *request.add_points() = point;
    v1::ReportPointsResponse reply;
    grpc::ClientContext context;
    return coordinator_->ReportPoints(&context, request, &reply);
  }

  void Complete(const v1::JobLease& lease) {
    v1::CompleteJobRequest request;
    request.set_job_id(lease.job_id());
    request.set_lease_token(lease.lease_token());
    v1::CompleteJobResponse reply;
    grpc::ClientContext context;
    const grpc::Status status = coordinator_->CompleteJob(&context, request, &reply);
    EXPECT_TRUE(status.ok()) << status.error_message();
  }

  grpc::Status Results(const std::string& metric, v1::ValueAt at, v1::ResultsResponse* reply) {
    v1::ResultsRequest request;
    request.mutable_sweep()->set_name("named");
    request.set_metric(metric);
    request.set_at(at);
    grpc::ClientContext context;
    return sweeps_->Results(&context, request, reply);
  }

  std::string db_path() const { return dir_.File("named.db"); }

  TempDir dir_;
  std::unique_ptr<CoordinatorServer> server_;
  std::unique_ptr<v1::Sweeps::Stub> sweeps_;
  std::unique_ptr<v1::Coordinator::Stub> coordinator_;
  int64_t worker_id_ = 0;
};

TEST_F(NamedMetricsTest, PointsReportedOverGrpcComeBackByNameThroughResultsAndCurves) {
  // Each job's accuracy peaks at step 20 and ends lower; a built-in train
  // point rides along in the same report.
  std::map<int64_t, std::vector<double>> curves;
  for (int i = 0; i < 2; ++i) {
    const v1::JobLease lease = Lease();
    const double base = 0.5 + 0.1 * i;
    curves[lease.job_id()] = {base, base + 0.3, base + 0.2};
    const grpc::Status reported = Report(
        lease, {NamedPoint("eval/acc", 10, base), NamedPoint("eval/acc", 20, base + 0.3),
                NamedPoint("eval/acc", 30, base + 0.2), FixturePoint(v1::SPLIT_TRAIN, 30, 2.0)});
    ASSERT_TRUE(reported.ok()) << reported.error_message();
    Complete(lease);
  }

  // No metric asked: the sweep's own, final is each job's last point.
  v1::ResultsResponse final;
  ASSERT_TRUE(Results("", v1::VALUE_AT_FINAL, &final).ok());
  EXPECT_EQ(final.metric(), "eval/acc");
  ASSERT_EQ(final.rows_size(), 2);
  EXPECT_DOUBLE_EQ(final.rows(0).mean(), curves[final.rows(0).job_ids(0)][2]);
  EXPECT_DOUBLE_EQ(final.rows(1).mean(), curves[final.rows(1).job_ids(0)][2]);
  EXPECT_EQ(final.left_out().missing_size(), 0);

  // Its goal is maximize: best is the highest point.
  v1::ResultsResponse best;
  ASSERT_TRUE(Results("eval/acc", v1::VALUE_AT_BEST, &best).ok());
  ASSERT_EQ(best.rows_size(), 2);
  for (const v1::ResultRow& row : best.rows()) {
    EXPECT_DOUBLE_EQ(row.mean(), curves[row.job_ids(0)][1]);
  }

  // Another metric of the same sweep keeps its name and the lowest best.
  v1::ResultsResponse train;
  ASSERT_TRUE(Results("train_bpc", v1::VALUE_AT_BEST, &train).ok());
  EXPECT_EQ(train.metric(), "train_bpc");
  ASSERT_EQ(train.rows_size(), 2);
  EXPECT_DOUBLE_EQ(train.rows(0).mean(), 2.0);

  v1::CurvesRequest request;
  request.mutable_sweep()->set_name("named");
  request.set_metric("eval/acc");
  v1::CurvesResponse reply;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(sweeps_->Curves(&context, request, &reply).ok());
  }
  EXPECT_EQ(reply.metric(), "eval/acc");
  ASSERT_EQ(reply.steps_size(), 3);
  EXPECT_EQ(reply.steps(0), 10);
  EXPECT_EQ(reply.steps(2), 30);
  ASSERT_EQ(reply.groups_size(), 2);
  for (const v1::CurveGroup& group : reply.groups()) {
    ASSERT_EQ(group.mean_size(), 3);
    EXPECT_EQ(group.n(1), 1);
  }
  EXPECT_NEAR(reply.groups(0).mean(1) + reply.groups(1).mean(1), 0.8 + 0.9, 1e-12);

  // GetJob gives the named points back by name.
  v1::GetJobRequest get;
  get.set_job_id(final.rows(0).job_ids(0));
  v1::GetJobResponse job;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(sweeps_->GetJob(&context, get, &job).ok());
  }
  int named = 0;
  for (const v1::CurvePoint& point : job.points()) {
    if (point.metric() == "eval/acc") {
      ++named;
      EXPECT_EQ(point.split(), v1::SPLIT_UNSPECIFIED);
    }
  }
  EXPECT_EQ(named, 3);

  // A name the sweep does not have is refused with the names it has.
  v1::ResultsResponse unknown;
  const grpc::Status refused = Results("valid/loss", v1::VALUE_AT_FINAL, &unknown);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(refused.error_message(),
            "sweep 'named' has no metric 'valid/loss'; its metrics are: eval/acc, train_bpc");
}

TEST_F(NamedMetricsTest, AMalformedPointIsRefusedAndNothingOfItsReportStored) {
  const v1::JobLease lease = Lease();
  v1::CurvePoint both = NamedPoint("eval/acc", 20, 0.5);
  both.set_split(v1::SPLIT_VALID);
  const std::vector<std::pair<v1::CurvePoint, std::string>> bad = {
      {NamedPoint("eval acc", 20, 0.5), "point 1 (a named metric step 20): metric name"},
      {NamedPoint("eval/acc", 20, NAN), "point 1 (a named metric step 20): eval/acc is not finite"},
      {NamedPoint("eval/acc", 20, INFINITY), "is not finite"},
      {NamedPoint(std::string(200, 'a'), 20, 0.5), "more than 128"},
      {both, "sets both a split and a metric"},
      {NamedPoint("eval/acc", 10, 0.5), "steps do not increase within the metric"},
      {NamedPoint("eval/acc", -1, 0.5), "negative step"},
  };
  for (const auto& [point, why] : bad) {
    const grpc::Status refused = Report(lease, {NamedPoint("eval/acc", 10, 0.4), point});
    EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << why;
    EXPECT_NE(refused.error_message().find(why), std::string::npos) << refused.error_message();
  }
  EXPECT_EQ(testing::Query(db_path(), "SELECT count(*) FROM curve_points")[0][0], "0");
  // The same report without the bad point is stored.
  ASSERT_TRUE(Report(lease, {NamedPoint("eval/acc", 10, 0.4)}).ok());
  EXPECT_EQ(testing::Query(db_path(), "SELECT metric, step, value FROM curve_points"),
            (std::vector<std::vector<std::string>>{{"eval/acc", "10", "0.4"}}));
}

}  // namespace
}  // namespace ablate
