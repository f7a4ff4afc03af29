#include "common/spec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "common/config_hash.h"

namespace ablate {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// Fixed settings shared by most specs below (lines 1-4).
constexpr char kHeader[] = R"(name: demo
data:  {path: runs/gcide.text8}
model: {hidden: 128, vocab: 27}
train: {batch: 32, seq: 100, steps: 300, lr: 0.002, log_every: 10, eval_every: 50}
)";

// The 3 x 2 x 3 grid (lines 5-8).
constexpr char kGrid[] = R"(grid:
  cell: [lstm, gru, mgu]
  layer_norm: [true, false]
  init: [xavier, variance_scaling, orthogonal]
)";

std::string Spec(const std::string& rest) { return std::string(kHeader) + rest; }
std::string GridSpec(const std::string& rest = "") { return Spec(std::string(kGrid) + rest); }

SweepSpec MustParse(const std::string& text) {
  StatusOr<SweepSpec> spec = ParseSpec(text, "demo.yaml");
  EXPECT_TRUE(spec.ok()) << spec.status().ToString() << "\n" << text.substr(0, 2000);
  return spec.ok() ? *spec : SweepSpec{};
}

std::vector<Job> MustExpand(const std::string& text, size_t max_jobs = kDefaultMaxJobs) {
  StatusOr<std::vector<Job>> jobs = ExpandGrid(MustParse(text), max_jobs);
  EXPECT_TRUE(jobs.ok()) << jobs.status().ToString();
  return jobs.ok() ? *jobs : std::vector<Job>{};
}

// The message of a spec that must fail to parse.
std::string ParseError(const std::string& text) {
  StatusOr<SweepSpec> spec = ParseSpec(text, "demo.yaml");
  EXPECT_FALSE(spec.ok()) << text.substr(0, 2000);
  if (spec.ok()) return "";
  EXPECT_EQ(spec.status().code(), Status::kInvalidArgument) << spec.status().ToString();
  return spec.status().message();
}

// "demo.yaml:LINE:COLUMN: ..." -> {LINE, COLUMN}; {0, 0} without a position.
std::pair<int, int> PositionIn(const std::string& message) {
  int line = 0, column = 0;
  std::sscanf(message.c_str(), "demo.yaml:%d:%d:", &line, &column);
  return {line, column};
}
int LineOf(const std::string& message) { return PositionIn(message).first; }

// How often each level of `key` occurs in the first `prefix` jobs (by order).
std::map<std::string, int> LevelCounts(const std::vector<Job>& jobs, const std::string& key,
                                       size_t prefix) {
  std::map<std::string, int> counts;
  for (const Job& job : jobs) {
    if (static_cast<size_t>(job.order) < prefix) ++counts[job.factors.at(key).dump()];
  }
  return counts;
}

int Spread(const std::map<std::string, int>& counts, const std::set<std::string>& levels) {
  int low = 1 << 30, high = 0;
  for (const auto& level : levels) {
    auto it = counts.find(level);
    const int count = it == counts.end() ? 0 : it->second;
    low = std::min(low, count);
    high = std::max(high, count);
  }
  return high - low;
}

std::set<std::string> Levels(const SweepSpec& spec, const std::string& key) {
  std::set<std::string> levels;
  for (const auto& axis : spec.axes) {
    if (axis.key == key) {
      for (const auto& value : axis.values) levels.insert(value.dump());
    }
  }
  return levels;
}

std::multiset<std::string> Hashes(const std::vector<Job>& jobs) {
  std::multiset<std::string> hashes;
  for (const Job& job : jobs) hashes.insert(job.config_hash);
  return hashes;
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// ------------------------------------------------------------------ grids

TEST(Spec, TheDocumentedExampleParsesAndExpands) {
  const std::string text = R"(name: demo                       # required
description: "the seed's grid"   # optional
data:  {path: runs/gcide.text8}
model: {hidden: 128, vocab: 27}
train: {batch: 32, seq: 100, steps: 300, lr: 0.002, log_every: 10, eval_every: 50}
grid:
  cell: [lstm, gru, mgu]
  layer_norm: [true, false]
  init: [xavier, variance_scaling, orthogonal]
  train.lr: [0.001, 0.003]
seeds: [0, 1, 2]
exclude:
  - {cell: mgu, layer_norm: false}
schedule:
  max_attempts: 3
  lease_seconds: 60
  retry_on_nan: false
)";
  SweepSpec spec = MustParse(text);
  EXPECT_EQ(spec.name, "demo");
  EXPECT_EQ(spec.description, "the seed's grid");
  EXPECT_EQ(spec.source_text, text);
  std::vector<std::string> keys;
  for (const auto& axis : spec.axes) keys.push_back(axis.key);
  EXPECT_EQ(keys, (std::vector<std::string>{"model.cell", "model.layer_norm", "model.init",
                                            "train.lr", "train.seed"}));
  ASSERT_EQ(spec.excludes.size(), 1u);
  EXPECT_EQ(spec.excludes[0], (json{{"model.cell", "mgu"}, {"model.layer_norm", false}}));
  // train.lr is an axis, so the section's 0.002 is only a default nothing uses.
  EXPECT_FALSE(spec.base["train"].contains("lr"));
  EXPECT_EQ(spec.base["model"]["hidden"], 128);

  std::vector<Job> jobs = MustExpand(text);
  EXPECT_EQ(jobs.size(), 3u * 2 * 3 * 2 * 3 - 1 * 1 * 3 * 2 * 3);
  for (const Job& job : jobs) {
    EXPECT_TRUE(job.config.train.lr == 0.001 || job.config.train.lr == 0.003);
    EXPECT_EQ(job.config.model.hidden, 128);
    EXPECT_EQ(job.config.data.path, "runs/gcide.text8");
  }
}

TEST(Spec, GridExpandsToEveryCombination) {
  std::vector<Job> jobs = MustExpand(GridSpec());
  ASSERT_EQ(jobs.size(), 18u);
  std::set<std::string> factors, hashes;
  for (const Job& job : jobs) {
    factors.insert(job.factors.dump());
    hashes.insert(job.config_hash);
    EXPECT_EQ(job.factors.size(), 3u) << job.factors;
    EXPECT_EQ(job.config.model.hidden, 128);
    EXPECT_EQ(job.config.train.steps, 300);
    EXPECT_EQ(job.factors["model.cell"], CellName(job.config.model.cell));
    EXPECT_EQ(job.factors["model.layer_norm"], job.config.model.layer_norm);
    EXPECT_EQ(job.factors["model.init"], InitName(job.config.model.init));
    EXPECT_EQ(job.config_hash, ConfigHash(job.config));
  }
  EXPECT_EQ(factors.size(), 18u);
  EXPECT_EQ(hashes.size(), 18u);
}

TEST(Spec, SeedsRepeatEveryGridPointAsTheLastAxis) {
  SweepSpec spec = MustParse(GridSpec("seeds: [0, 1, 2]\n"));
  ASSERT_EQ(spec.axes.size(), 4u);
  EXPECT_EQ(spec.axes.back().key, "train.seed");
  std::vector<Job> jobs = MustExpand(GridSpec("seeds: [0, 1, 2]\n"));
  ASSERT_EQ(jobs.size(), 54u);
  std::map<std::string, std::set<uint64_t>> seeds_per_point;
  for (const Job& job : jobs) {
    EXPECT_EQ(job.factors["train.seed"], job.config.train.seed);
    json point = job.factors;
    point.erase("train.seed");
    seeds_per_point[point.dump()].insert(job.config.train.seed);
  }
  ASSERT_EQ(seeds_per_point.size(), 18u);
  for (const auto& [point, seeds] : seeds_per_point) {
    EXPECT_EQ(seeds, (std::set<uint64_t>{0, 1, 2})) << point;
  }
}

TEST(Spec, ExcludeDropsPartialMatches) {
  std::vector<Job> jobs = MustExpand(GridSpec("exclude:\n  - {cell: mgu, layer_norm: false}\n"));
  ASSERT_EQ(jobs.size(), 15u);
  int mgu = 0;
  for (const Job& job : jobs) {
    EXPECT_FALSE(job.config.model.cell == Cell::kMgu && !job.config.model.layer_norm);
    mgu += job.config.model.cell == Cell::kMgu;
  }
  EXPECT_EQ(mgu, 3);

  std::vector<Job> with_seeds = MustExpand(
      GridSpec("seeds: [0, 1, 2]\nexclude:\n  - {cell: mgu, layer_norm: false}\n  - {seed: 2, "
               "init: xavier}\n"));
  EXPECT_EQ(with_seeds.size(), 54u - 9 - (6 - 1));
}

TEST(Spec, ExcludeMatchesNumbersByValue) {
  std::vector<Job> jobs =
      MustExpand(GridSpec("  train.lr: [0.001, 0.003]\nexclude:\n  - {lr: 1e-3}\n"));
  ASSERT_EQ(jobs.size(), 18u);
  for (const Job& job : jobs) EXPECT_EQ(job.config.train.lr, 0.003);
}

TEST(Spec, AnyRunConfigSettingCanBeAnAxis) {
  std::vector<Job> jobs = MustExpand(Spec(R"(grid:
  data.path: [a.txt, b.txt]
  hidden: [64, 128]
  vocab: [256, 27]
  batch: [8]
  seq: [50]
  clip_norm: [0, 1.5]
  steps: [1e3]
  log_every: [5]
  eval_every: [0]
  eval_bytes: [4096]
  checkpoint_every: [100]
  seed: [7]
  url: ["http://example.com/x.zip"]
)"));
  ASSERT_EQ(jobs.size(), 16u);
  EXPECT_EQ(jobs[0].config.train.steps, 1000);
  EXPECT_TRUE(jobs[0].factors["train.steps"].is_number_integer()) << jobs[0].factors;
  EXPECT_EQ(jobs[0].config.data.url, "http://example.com/x.zip");
  EXPECT_EQ(jobs[0].config.train.seed, 7u);
}

TEST(Spec, ScalarsAreTypedAsRunConfigExpects) {
  std::vector<Job> jobs = MustExpand(
      Spec("grid:\n  lr: [1e-3, .5, 2, +0.25]\n  seed: [0x10, 0o7, 18446744073709551615]\n"));
  ASSERT_EQ(jobs.size(), 12u);
  std::set<double> lrs;
  std::set<uint64_t> seeds;
  for (const Job& job : jobs) {
    lrs.insert(job.config.train.lr);
    seeds.insert(job.config.train.seed);
    EXPECT_TRUE(job.factors["train.lr"].is_number_float());
  }
  EXPECT_EQ(lrs, (std::set<double>{0.001, 0.5, 2.0, 0.25}));
  EXPECT_EQ(seeds, (std::set<uint64_t>{16, 7, 18446744073709551615u}));
}

TEST(Spec, QuotedValuesStayStrings) {
  const std::string message = ParseError(Spec("grid:\n  layer_norm: [true, \"false\"]\n"));
  EXPECT_EQ(PositionIn(message), std::make_pair(6, 22)) << message;
  EXPECT_THAT(message, HasSubstr("model.layer_norm"));
  EXPECT_THAT(message, HasSubstr("\"false\""));
}

TEST(Spec, ScheduleHasDefaultsAndOverrides) {
  SweepSpec defaults = MustParse(GridSpec());
  EXPECT_EQ(defaults.schedule.max_attempts, 3);
  EXPECT_EQ(defaults.schedule.lease_seconds, 60);
  EXPECT_FALSE(defaults.schedule.retry_on_nan);
  EXPECT_TRUE(defaults.schedule.keep_final_checkpoint);
  SweepSpec custom =
      MustParse(GridSpec("schedule: {max_attempts: 5, lease_seconds: 2.5, retry_on_nan: true, "
                         "keep_checkpoints: none}\n"));
  EXPECT_EQ(custom.schedule.max_attempts, 5);
  EXPECT_EQ(custom.schedule.lease_seconds, 2.5);
  EXPECT_TRUE(custom.schedule.retry_on_nan);
  EXPECT_FALSE(custom.schedule.keep_final_checkpoint);
  EXPECT_TRUE(
      MustParse(GridSpec("schedule: {keep_checkpoints: final}\n")).schedule.keep_final_checkpoint);
  const std::string bad_keep = ParseError(GridSpec("schedule:\n  keep_checkpoints: all\n"));
  EXPECT_EQ(LineOf(bad_keep), 10);
  EXPECT_THAT(bad_keep, HasSubstr("schedule.keep_checkpoints: expected final or none"));

  EXPECT_EQ(LineOf(ParseError(GridSpec("schedule:\n  max_attempts: 0\n"))), 10);
  EXPECT_EQ(LineOf(ParseError(GridSpec("schedule:\n  lease_seconds: -1\n"))), 10);
  EXPECT_EQ(LineOf(ParseError(GridSpec("schedule:\n  retries: 2\n"))), 10);
}

TEST(Spec, ASingleJobNeedsNoGrid) {
  std::vector<Job> jobs = MustExpand(Spec(""));
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].factors, json::object());
  EXPECT_EQ(jobs[0].config.train.lr, 0.002);
}

TEST(Spec, AliasesAreResolved) {
  std::vector<Job> jobs =
      MustExpand(Spec("grid:\n  cell: [&first lstm, gru]\n  init: [xavier, orthogonal]\n"
                      "exclude:\n  - {cell: *first, init: xavier}\n"));
  EXPECT_EQ(jobs.size(), 3u);
}

// ------------------------------------------------------------------ W&B syntax

constexpr char kWandbFlat[] = R"(method: grid
name: demo
metric: {name: valid_bpc, goal: minimize}
project: demo
data:  {path: runs/gcide.text8}
parameters:
  model.cell: {values: [lstm, gru, mgu]}
  layer_norm: {values: [true, false]}
  model.init: {values: [xavier, variance_scaling, orthogonal]}
  model.hidden: {value: 128}
  vocab: {value: 27}
  train.steps: {value: 300}
train: {batch: 32, seq: 100, lr: 2e-3, log_every: 10, eval_every: 50}
)";

constexpr char kWandbNested[] = R"(method: grid
name: wandb_nested
parameters:
  model:
    parameters:
      cell: {values: [lstm, gru, mgu]}
      layer_norm: {values: [true, false]}
      init: {values: [xavier, variance_scaling, orthogonal]}
      hidden: {value: 128}
      vocab: {value: 27}
  train:
    parameters:
      batch: {value: 32}
      seq: {value: 100}
      steps: {value: 300}
      lr: {value: 0.002}
      log_every: {value: 10}
      eval_every: {value: 50}
  data:
    parameters:
      path: {value: runs/gcide.text8}
)";

TEST(Spec, WandbFlatSyntaxMakesTheSameJobsAsNative) {
  std::vector<Job> native = MustExpand(GridSpec());
  std::vector<Job> wandb = MustExpand(kWandbFlat);
  ASSERT_EQ(wandb.size(), native.size());
  for (size_t i = 0; i < native.size(); ++i) {
    EXPECT_EQ(wandb[i].factors, native[i].factors);
    EXPECT_EQ(wandb[i].config_hash, native[i].config_hash);
  }
  EXPECT_EQ(SpecHash(MustParse(kWandbFlat)), SpecHash(MustParse(GridSpec())));
}

TEST(Spec, WandbNestedSyntaxMakesTheSameJobsAsNative) {
  std::vector<Job> native = MustExpand(GridSpec());
  std::vector<Job> wandb = MustExpand(kWandbNested);
  ASSERT_EQ(wandb.size(), native.size());
  for (size_t i = 0; i < native.size(); ++i) {
    EXPECT_EQ(wandb[i].factors, native[i].factors);
    EXPECT_EQ(wandb[i].config_hash, native[i].config_hash);
  }
  EXPECT_EQ(SpecHash(MustParse(kWandbNested)), SpecHash(MustParse(GridSpec())));
}

TEST(Spec, WandbTakesSeedsExcludeAndSchedule) {
  std::vector<Job> jobs = MustExpand(std::string(kWandbFlat) +
                                     "seeds: [1, 2]\nexclude: [{cell: mgu}]\n"
                                     "schedule: {max_attempts: 1}\n");
  EXPECT_EQ(jobs.size(), 2u * 2 * 3 * 2);
}

TEST(Spec, WandbMetricNamesTheSweepsMetricAndGoal) {
  EXPECT_EQ(MustParse(GridSpec()).metric.name, "");
  EXPECT_EQ(MustParse(GridSpec()).metric.goal, MetricGoal::kMinimize);
  const SweepSpec flat = MustParse(kWandbFlat);
  EXPECT_EQ(flat.metric.name, "valid_bpc");
  EXPECT_EQ(flat.metric.goal, MetricGoal::kMinimize);
  std::string text = kWandbFlat;
  text.replace(text.find("name: valid_bpc, goal: minimize"), 31, "name: eval/acc, goal: maximize");
  const SweepSpec accuracy = MustParse(text);
  EXPECT_EQ(accuracy.metric.name, "eval/acc");
  EXPECT_EQ(accuracy.metric.goal, MetricGoal::kMaximize);
}

TEST(Spec, WandbMetricWithABadNameIsRefusedAtItsPlace) {
  std::string text = kWandbFlat;
  text.replace(text.find("name: valid_bpc"), 15, "name: \"valid loss\"");
  const std::string message = ParseError(text);
  EXPECT_EQ(LineOf(message), 3) << message;
  EXPECT_THAT(message, HasSubstr("metric.name"));
  EXPECT_THAT(message, HasSubstr("\"valid loss\""));
  text = kWandbFlat;
  text.replace(text.find("goal: minimize"), 14, "goal: lowest");
  EXPECT_THAT(ParseError(text), HasSubstr("minimize or maximize"));
}

TEST(Spec, WandbRejectsSearchesOtherThanGrid) {
  std::string text = kWandbFlat;
  text.replace(text.find("method: grid"), 12, "method: bayes");
  const std::string message = ParseError(text);
  EXPECT_EQ(PositionIn(message), std::make_pair(1, 9)) << message;
  EXPECT_THAT(message, HasSubstr("only grid"));
  EXPECT_THAT(message, HasSubstr("bayes"));
}

TEST(Spec, WandbRejectsDistributions) {
  const std::string message = ParseError(
      "method: grid\nname: x\ndata: {path: a}\nparameters:\n  lr: {distribution: "
      "uniform, min: 0.001, max: 0.1}\n");
  EXPECT_EQ(LineOf(message), 5) << message;
  EXPECT_THAT(message, HasSubstr("parameters.lr"));
}

TEST(Spec, GridAndParametersDoNotMix) {
  const std::string message = ParseError(GridSpec("parameters:\n  seq: {values: [1, 2]}\n"));
  EXPECT_EQ(LineOf(message), 5) << message;
  EXPECT_THAT(message, HasSubstr("grid"));
}

// ------------------------------------------------------------------ program sweeps

// A W&B program sweep as W&B's documentation writes one (lines 1-8).
constexpr char kProgram[] = R"(program: train.py
method: grid
metric: {name: valid/loss, goal: minimize}
parameters:
  lr: {values: [0.001, 1e-5]}
  optimizer: {values: [adam, sgd]}
  batch_size: {value: 64}
  use_bias: {value: true}
)";

const Job& JobWith(const std::vector<Job>& jobs, const json& factors) {
  for (const Job& job : jobs) {
    if (job.factors == factors) return job;
  }
  ADD_FAILURE() << "no job with factors " << factors.dump();
  return jobs.front();
}

TEST(ProgramSweep, ParametersOfAnyNameMakeTheJobsConfig) {
  SweepSpec spec = MustParse(kProgram);
  ASSERT_TRUE(spec.program.has_value());
  EXPECT_EQ(spec.program->program, "train.py");
  std::vector<Job> jobs = MustExpand(kProgram);
  ASSERT_EQ(jobs.size(), 4u);
  const Job& job = JobWith(jobs, {{"lr", 0.001}, {"optimizer", "sgd"}});
  EXPECT_EQ(job.ConfigJson(), R"({"batch_size":64,"lr":0.001,"optimizer":"sgd","use_bias":true})");
  EXPECT_EQ(job.config_hash, Sha256Hex(job.ConfigJson()));
  const std::multiset<std::string> hashes = Hashes(jobs);
  EXPECT_EQ(std::set<std::string>(hashes.begin(), hashes.end()).size(), 4u);
}

TEST(ProgramSweep, WithoutCommandRunsWandbsDefault) {
  std::vector<Job> jobs = MustExpand(kProgram);
  const Job& job = JobWith(jobs, {{"lr", 0.001}, {"optimizer", "adam"}});
  EXPECT_EQ(job.command,
            (std::vector<std::string>{"/usr/bin/env", "python3", "train.py", "--batch_size=64",
                                      "--lr=0.001", "--optimizer=adam", "--use_bias=True"}));
  EXPECT_EQ(MustParse(kProgram).program->command, DefaultProgramCommand());
}

TEST(ProgramSweep, EveryMacroExpands) {
  const std::string text = std::string(kProgram) + R"(command:
  - ${env}
  - ${interpreter}
  - ${program}
  - --fixed
  - ${args_no_hyphens}
  - ${args_no_equals}
  - ${args_no_boolean_flags}
  - ${args_json}
  - ${args_json_file}
)";
  std::vector<Job> jobs = MustExpand(text);
  const Job& job = JobWith(jobs, {{"lr", 1e-5}, {"optimizer", "adam"}});
  EXPECT_EQ(job.command,
            (std::vector<std::string>{
                "/usr/bin/env", "python3", "train.py", "--fixed",
                // ${args_no_hyphens}
                "batch_size=64", "lr=1e-05", "optimizer=adam", "use_bias=True",
                // ${args_no_equals}
                "--batch_size", "64", "--lr", "1e-05", "--optimizer", "adam", "--use_bias", "True",
                // ${args_no_boolean_flags}
                "--batch_size=64", "--lr=1e-05", "--optimizer=adam", "--use_bias",
                // ${args_json}
                R"({"batch_size":64,"lr":1e-05,"optimizer":"adam","use_bias":true})",
                // kept for the worker
                "${args_json_file}"}));
}

TEST(ProgramSweep, ValuesPrintAsWandbsPythonAgentPrintsThem) {
  const std::string text = R"(program: p.py
parameters:
  a: {value: 3.0}
  b: {value: 1e16}
  c: {value: 0.0001}
  d: {value: 123456.5}
  e: {value: false}
  f: {value: [1, two, 2.5, true]}
  g: {value: {k: v, "it's": 1}}
  h: {value: "quoted 'text'"}
  i: {value: -2.5e-7}
  j: {value: 100}
)";
  std::vector<Job> jobs = MustExpand(text);
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].command,
            (std::vector<std::string>{"/usr/bin/env", "python3", "p.py", "--a=3.0", "--b=1e+16",
                                      "--c=0.0001", "--d=123456.5", "--e=False",
                                      "--f=[1, 'two', 2.5, True]", R"(--g={"it's": 1, 'k': 'v'})",
                                      "--h=quoted 'text'", "--i=-2.5e-07", "--j=100"}));
  EXPECT_EQ(jobs[0].parameters["f"], json::parse(R"([1, "two", 2.5, true])"));
}

TEST(ProgramSweep, CommandAndProgramMayComeInAnyOrder) {
  std::vector<Job> jobs = MustExpand(
      "command: [\"${program}\", \"${args_no_hyphens}\"]\nmethod: grid\nprogram: ./run\n"
      "parameters: {n: {value: -0.0}}\n");
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].command, (std::vector<std::string>{"./run", "n=-0.0"}));
}

TEST(ProgramSweep, AHandMadeSpecWithAnAxisInsideAScalarIsRefused) {
  SweepSpec spec = MustParse("program: p.py\nparameters: {a: {value: 1}}\n");
  spec.axes.push_back({"a.b", {json(1), json(2)}, {{}, {}}, {"a", "b"}});
  StatusOr<std::vector<Job>> jobs = ExpandGrid(spec);
  ASSERT_FALSE(jobs.ok());
  EXPECT_THAT(jobs.status().message(), HasSubstr("a.b: inside a parameter that is not a mapping"));
}

TEST(ProgramSweep, UnknownMacrosAndTextAroundMacrosPassThrough) {
  const std::string text = std::string(kProgram) +
                           "command: [\"${env}\", \"${interpreter}\", \"${program}\", "
                           "\"${nothing}\", \"--x=${args}\", 7]\n";
  std::vector<Job> jobs = MustExpand(text);
  EXPECT_EQ(jobs[0].command, (std::vector<std::string>{"/usr/bin/env", "python3", "train.py",
                                                       "${nothing}", "--x=${args}", "7"}));
}

TEST(ProgramSweep, EnvvarMacroIsRefusedAtItsPlace) {
  const std::string message =
      ParseError(std::string(kProgram) + "command: [\"${env}\", \"${envvar:HOME}/x\"]\n");
  EXPECT_EQ(PositionIn(message), std::make_pair(9, 21)) << message;
  EXPECT_THAT(message, HasSubstr("${envvar:NAME} is not supported"));
}

TEST(ProgramSweep, BadCommandsAreRefused) {
  EXPECT_THAT(ParseError(std::string(kProgram) + "command: python3 train.py\n"),
              HasSubstr("command: expected a list of arguments"));
  EXPECT_THAT(ParseError(std::string(kProgram) + "command: []\n"),
              HasSubstr("command: the list is empty"));
  EXPECT_THAT(ParseError(std::string(kProgram) + "command: [[a]]\n"),
              HasSubstr("expected each argument to be a single value"));
  const std::string no_program =
      "method: grid\nparameters: {a: {value: 1}}\n"
      "command: [\"${env}\", \"${program}\"]\n";
  EXPECT_THAT(ParseError(no_program), HasSubstr("program: is required, as the command uses"));
  EXPECT_THAT(ParseError("program: ''\nparameters: {a: {value: 1}}\n"),
              HasSubstr("program: is empty"));
}

TEST(ProgramSweep, ACommandWithoutProgramIsAProgramSweep) {
  std::vector<Job> jobs = MustExpand(
      "method: grid\nparameters: {n: {values: [1, 2]}}\ncommand: [bash, run.sh, "
      "\"${args_no_hyphens}\"]\n");
  ASSERT_EQ(jobs.size(), 2u);
  EXPECT_EQ(JobWith(jobs, {{"n", 2}}).command, (std::vector<std::string>{"bash", "run.sh", "n=2"}));
}

TEST(ProgramSweep, ACommandThatExpandsToNothingIsRefused) {
  StatusOr<SweepSpec> spec = ParseSpec("method: grid\ncommand: [\"${args}\"]\n", "demo.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  StatusOr<std::vector<Job>> jobs = ExpandGrid(*spec);
  ASSERT_FALSE(jobs.ok());
  EXPECT_THAT(jobs.status().message(), HasSubstr("expands to no arguments"));
}

TEST(ProgramSweep, NestedParametersNestAsInWandb) {
  const std::string text = R"(program: train.py
parameters:
  optimizer:
    parameters:
      name: {value: adam}
      lr: {values: [0.1, 0.01]}
  model.depth: {value: 2}
exclude: [{optimizer.lr: 0.01}]
seeds: [0, 1]
)";
  SweepSpec spec = MustParse(text);
  ASSERT_EQ(spec.axes.size(), 2u);
  EXPECT_EQ(spec.axes[0].key, "optimizer.lr");
  EXPECT_EQ(spec.axes[0].path, (std::vector<std::string>{"optimizer", "lr"}));
  EXPECT_EQ(spec.axes[1].key, "seed");
  std::vector<Job> jobs = MustExpand(text);
  ASSERT_EQ(jobs.size(), 2u);
  const Job& job = JobWith(jobs, {{"optimizer.lr", 0.1}, {"seed", 1}});
  EXPECT_EQ(job.ConfigJson(), R"({"model.depth":2,"optimizer":{"lr":0.1,"name":"adam"},"seed":1})");
  EXPECT_EQ(job.command,
            (std::vector<std::string>{"/usr/bin/env", "python3", "train.py", "--model.depth=2",
                                      "--optimizer={'lr': 0.1, 'name': 'adam'}", "--seed=1"}));
}

TEST(ProgramSweep, ANestedAndAFlatParameterOfOneNameAreRefused) {
  const std::string message = ParseError(R"(program: train.py
parameters:
  optimizer:
    parameters:
      lr: {value: 0.1}
  optimizer.lr: {value: 0.2}
)");
  EXPECT_EQ(LineOf(message), 6) << message;
  EXPECT_THAT(message, HasSubstr("optimizer.lr is given twice"));
}

TEST(ProgramSweep, TrainerSectionsAreRefused) {
  const std::string message = ParseError(std::string(kProgram) + "train: {steps: 10}\n");
  EXPECT_EQ(PositionIn(message), std::make_pair(9, 1)) << message;
  EXPECT_THAT(message, HasSubstr("a program sweep has no built-in trainer settings"));
}

TEST(ProgramSweep, BadParametersAreRefusedAtTheirPlace) {
  EXPECT_EQ(LineOf(ParseError(std::string(kProgram) + "  x: {min: 0, max: 1}\n")), 9);
  EXPECT_THAT(ParseError(std::string(kProgram) + "  x: {values: []}\n"),
              HasSubstr("the list of values is empty"));
  const std::string duplicate = ParseError(std::string(kProgram) + "  x: {values: [1, 1.0, 1]}\n");
  EXPECT_EQ(PositionIn(duplicate), std::make_pair(9, 24)) << duplicate;
  EXPECT_THAT(duplicate, HasSubstr("appears twice in the axis"));
  EXPECT_THAT(ParseError(std::string(kProgram) + "  x: {value: null}\n"),
              HasSubstr("has no value"));
  EXPECT_THAT(ParseError(std::string(kProgram) + "exclude: [{nope: 1}]\n"),
              HasSubstr("exclude: nope is not a grid axis"));
}

TEST(ProgramSweep, ProgramIsOnlyPartOfTheWandbForm) {
  EXPECT_THAT(ParseError(GridSpec("program: train.py\n")), HasSubstr("belongs to the W&B form"));
  EXPECT_THAT(ParseError(GridSpec("command: [a]\n")), HasSubstr("belongs to the W&B form"));
}

TEST(ProgramSweep, SilenceSecondsIsReadAndChecked) {
  EXPECT_EQ(MustParse(kProgram).schedule.silence_seconds, 0);
  EXPECT_EQ(MustParse(std::string(kProgram) + "schedule: {silence_seconds: 90}\n")
                .schedule.silence_seconds,
            90);
  for (const char* bad : {"-1", "x", "1e9"}) {
    const std::string message =
        ParseError(std::string(kProgram) + "schedule: {silence_seconds: " + bad + "}\n");
    EXPECT_EQ(PositionIn(message), std::make_pair(9, 29)) << message;
    EXPECT_THAT(message, HasSubstr("schedule.silence_seconds: expected a number of seconds"));
  }
}

TEST(ProgramSweep, SpecHashNamesTheProgramAndTheCommand) {
  const std::string hash = SpecHash(MustParse(kProgram));
  EXPECT_EQ(hash, SpecHash(MustParse(std::string(kProgram) + "name: other\n")));
  std::string other_program = kProgram;
  other_program.replace(other_program.find("train.py"), 8, "train2.py");
  EXPECT_NE(hash, SpecHash(MustParse(other_program)));
  EXPECT_NE(
      hash,
      SpecHash(MustParse(std::string(kProgram) +
                         "command: [\"${env}\", python3, \"${program}\", \"${args}\", -v]\n")));
}

TEST(ProgramSweep, AWandbFileWithoutNameTakesItsFilesName) {
  StatusOr<SweepSpec> spec = ParseSpec(kProgram, "/some/dir/My Sweep (v2).yaml");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->name, "my-sweep--v2-");
  spec = ParseSpec(kWandbNested, "runs/Nested.YML");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->name, "wandb_nested");  // its own name: wins
  std::string unnamed = kWandbNested;
  unnamed.erase(unnamed.find("name: wandb_nested\n"), 19);
  spec = ParseSpec(unnamed, "runs/Nested.yml");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->name, "nested");
  spec = ParseSpec(kProgram, "dir/...yaml");
  ASSERT_FALSE(spec.ok());
  EXPECT_THAT(spec.status().message(), HasSubstr("name: is required, as the file's name"));
  // The native form still needs its name.
  EXPECT_THAT(ParseError("data: {path: a}\n"), HasSubstr("name: is required"));
}

TEST(ProgramSweep, NameFromFilenameKeepsWhatANameMayHold) {
  EXPECT_EQ(NameFromFilename("sweep.yaml"), "sweep");
  EXPECT_EQ(NameFromFilename("a/b/Char_LM.v2.yml"), "char_lm.v2");
  EXPECT_EQ(NameFromFilename("x.json"), "x.json");
  EXPECT_EQ(NameFromFilename(".."), "");
  EXPECT_EQ(NameFromFilename("d/..yml"), "");
  EXPECT_EQ(NameFromFilename(""), "");
  EXPECT_EQ(NameFromFilename(std::string(150, 'a') + ".yaml"), std::string(100, 'a'));
}

// ------------------------------------------------------------------ errors

TEST(SpecErrors, UnknownTopLevelKeyIsNamed) {
  const std::string message = ParseError(GridSpec("seed: [1, 2]\n"));
  EXPECT_EQ(PositionIn(message), std::make_pair(9, 1)) << message;
  EXPECT_THAT(message, StartsWith("demo.yaml:9:1: "));
  EXPECT_THAT(message, HasSubstr("\"seed\""));
  EXPECT_THAT(message, HasSubstr("seeds"));
}

TEST(SpecErrors, UnknownSettingInASectionIsNamed) {
  const std::string message =
      ParseError("name: demo\ndata: {path: a}\nmodel:\n  hidden: 8\n  cells: gru\n");
  EXPECT_EQ(PositionIn(message), std::make_pair(5, 3)) << message;
  EXPECT_THAT(message, HasSubstr("model.cells"));
  EXPECT_THAT(message, HasSubstr("cell"));
}

// ------------------------------------------------------------------ train.precision

// Computed with the code before train.precision existed, for GridSpec(): the
// SHA-256 of its 18 job hashes in hand-out order, and its spec hash. Stored
// sweeps are keyed by these, so a spec that leaves precision at its default
// must keep them.
constexpr char kGridJobHashesBeforePrecision[] =
    "f041c170eafaf43d8675320fe3f2cfd23d283a5a0b13163ae6cacafe3db01444";
constexpr char kGridSpecHashBeforePrecision[] =
    "7e9db53838cadc44d852a80b8c160828650ad2e07f33e1ff96770d0065cb0b54";

std::string JobHashesDigest(const std::vector<Job>& jobs) {
  std::string all;
  for (const Job& job : jobs) all += job.config_hash;
  return Sha256Hex(all);
}

// kHeader with `precision` added to its train: section.
std::string HeaderWithPrecision(const std::string& precision) {
  std::string header = kHeader;
  header.insert(header.find("eval_every: 50") + 14, ", precision: " + precision);
  return header;
}

TEST(SpecPrecision, ConfigHashesOfDefaultPrecisionAreThoseFromBeforeTheSetting) {
  // Values computed with the code before train.precision existed.
  RunConfig config;
  config.data.corpus = "text8";
  EXPECT_EQ(ConfigHash(config), "ded2f0a411e1024a060abbab090a768411b8aec890ea5a0b4fe120e77ec6a1a4");
  RunConfig lstm;
  lstm.data.path = "corpus.txt";
  lstm.model.cell = Cell::kLstm;
  lstm.model.hidden = 64;
  lstm.train.steps = 300;
  const std::string lstm_hash = "ae89a3d44ca339033b3d6e873f6e8e1e06c7f102d74344e2a99c2732ee2bb580";
  EXPECT_EQ(ConfigHash(lstm), lstm_hash);
  lstm.train.precision = Precision::kTf32;
  EXPECT_EQ(ConfigHash(lstm), lstm_hash);
  lstm.train.precision = Precision::kFp32;
  const std::string fp32_hash = ConfigHash(lstm);
  lstm.train.precision = Precision::kBf16;
  const std::string bf16_hash = ConfigHash(lstm);
  EXPECT_NE(fp32_hash, lstm_hash);
  EXPECT_NE(bf16_hash, lstm_hash);
  EXPECT_NE(fp32_hash, bf16_hash);
}

TEST(SpecPrecision, DefaultOrExplicitTf32KeepsTheJobHashesFromBeforeTheSetting) {
  EXPECT_EQ(JobHashesDigest(MustExpand(GridSpec())), kGridJobHashesBeforePrecision);
  EXPECT_EQ(SpecHash(MustParse(GridSpec())), kGridSpecHashBeforePrecision);
  std::vector<Job> tf32 = MustExpand(HeaderWithPrecision("tf32") + kGrid);
  EXPECT_EQ(JobHashesDigest(tf32), kGridJobHashesBeforePrecision);
  for (const Job& job : tf32) EXPECT_EQ(job.config.train.precision, Precision::kTf32);
}

TEST(SpecPrecision, Fp32AndBf16MakeOtherJobs) {
  std::set<std::string> digests = {kGridJobHashesBeforePrecision};
  for (const char* precision : {"fp32", "bf16"}) {
    std::vector<Job> jobs = MustExpand(HeaderWithPrecision(precision) + kGrid);
    ASSERT_EQ(jobs.size(), 18u);
    for (const Job& job : jobs) {
      EXPECT_STREQ(PrecisionName(job.config.train.precision), precision);
      EXPECT_EQ(job.config.ToJson()["train"]["precision"], precision);
    }
    digests.insert(JobHashesDigest(jobs));
  }
  EXPECT_EQ(digests.size(), 3u);
}

TEST(SpecPrecision, IsAGridAxisInBothSyntaxes) {
  std::vector<Job> native =
      MustExpand(Spec("grid:\n  cell: [lstm, gru]\n  precision: [tf32, bf16]\n"));
  ASSERT_EQ(native.size(), 4u);
  std::set<std::string> hashes;
  for (const Job& job : native) {
    EXPECT_EQ(job.factors["train.precision"], PrecisionName(job.config.train.precision));
    hashes.insert(job.config_hash);
  }
  EXPECT_EQ(hashes.size(), 4u);
  // The tf32 jobs are the jobs a spec without the axis makes.
  for (const Job& plain : MustExpand(Spec("grid:\n  cell: [lstm, gru]\n"))) {
    EXPECT_EQ(hashes.count(plain.config_hash), 1u) << plain.factors;
  }

  std::vector<Job> wandb = MustExpand(
      "method: grid\nname: demo\ndata: {path: runs/gcide.text8}\n"
      "model: {hidden: 128, vocab: 27}\n"
      "train: {batch: 32, seq: 100, steps: 300, lr: 0.002, log_every: 10, eval_every: 50}\n"
      "parameters:\n  cell: {values: [lstm, gru]}\n  train.precision: {values: [tf32, bf16]}\n");
  ASSERT_EQ(wandb.size(), native.size());
  for (size_t i = 0; i < native.size(); ++i) {
    EXPECT_EQ(wandb[i].factors, native[i].factors);
    EXPECT_EQ(wandb[i].config_hash, native[i].config_hash);
  }
}

TEST(SpecPrecision, UnknownValueIsRefusedAtItsPlaceWithTheChoices) {
  std::string message = ParseError(HeaderWithPrecision("fp16") + kGrid);
  EXPECT_EQ(message,
            "demo.yaml:4:95: train.precision: unknown precision \"fp16\" (known: fp32, tf32, "
            "bf16)");
  message = ParseError(HeaderWithPrecision("16") + kGrid);
  EXPECT_EQ(message, "demo.yaml:4:95: train.precision: expected one of fp32, tf32, bf16, got 16");
  message = ParseError(Spec("grid:\n  precision: [tf32, fp16]\n"));
  EXPECT_EQ(PositionIn(message), std::make_pair(6, 21)) << message;
  EXPECT_THAT(message, HasSubstr("train.precision: unknown precision \"fp16\" (known: fp32, "
                                 "tf32, bf16)"));
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
}

TEST(SpecPrecision, RunConfigFileTakesIt) {
  auto config = ParseRunConfig("data: {path: x}\ntrain: {precision: bf16}\n", "run.yaml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->train.precision, Precision::kBf16);
  config = ParseRunConfig("data: {path: x}\ntrain:\n  precision: [bf16]\n", "run.yaml");
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.status().message(), StartsWith("run.yaml:3:"));
  EXPECT_THAT(config.status().message(), HasSubstr("train.precision"));
}

TEST(SpecErrors, UnknownGridSettingListsTheKnownOnes) {
  const std::string message = ParseError(GridSpec("  dropout: [0.1, 0.2]\n"));
  EXPECT_EQ(PositionIn(message), std::make_pair(9, 3)) << message;
  EXPECT_THAT(message, HasSubstr("\"dropout\""));
  EXPECT_THAT(message, HasSubstr("model.cell"));
}

TEST(SpecErrors, UnknownExcludeKeyIsRejected) {
  const std::string message = ParseError(GridSpec("exclude:\n  - {cell: mgu, dropout: 0.1}\n"));
  EXPECT_EQ(PositionIn(message), std::make_pair(10, 17)) << message;
  EXPECT_THAT(message, HasSubstr("dropout"));
}

TEST(SpecErrors, ExcludeMayOnlyNameAxes) {
  const std::string message = ParseError(GridSpec("exclude:\n  - {hidden: 128}\n"));
  EXPECT_EQ(LineOf(message), 10) << message;
  EXPECT_THAT(message, HasSubstr("model.hidden is not a grid axis"));
}

TEST(SpecErrors, ExcludeValueMustBeOneOfTheAxisValues) {
  const std::string message = ParseError(GridSpec("exclude:\n  - {cell: mug}\n"));
  EXPECT_EQ(PositionIn(message), std::make_pair(10, 12)) << message;
  EXPECT_THAT(message, HasSubstr("\"mug\""));
  EXPECT_THAT(message, HasSubstr("\"mgu\""));
}

TEST(SpecErrors, StringWhereANumberGoesIsRejected) {
  const std::string message =
      ParseError("name: demo\ndata: {path: a}\ntrain:\n  steps: 10\n  batch: ten\n");
  EXPECT_EQ(PositionIn(message), std::make_pair(5, 10)) << message;
  EXPECT_THAT(message, HasSubstr("train.batch"));
  EXPECT_THAT(message, HasSubstr("ten"));
}

TEST(SpecErrors, MappingWhereAListGoesIsRejected) {
  const std::string message = ParseError(Spec("grid:\n  cell: {lstm: 1}\n"));
  EXPECT_EQ(PositionIn(message), std::make_pair(6, 9)) << message;
  EXPECT_THAT(message, HasSubstr("grid.cell: expected a list of values, got a mapping"));
}

TEST(SpecErrors, GridValueThatIsNotAListIsRejected) {
  const std::string message = ParseError(Spec("grid:\n  cell: lstm\n"));
  EXPECT_EQ(PositionIn(message), std::make_pair(6, 9)) << message;
  EXPECT_THAT(message, HasSubstr("\"lstm\""));
}

TEST(SpecErrors, ListInsideAListIsRejected) {
  const std::string message = ParseError(Spec("grid:\n  hidden: [8, [16, 32]]\n"));
  EXPECT_EQ(PositionIn(message), std::make_pair(6, 15)) << message;
  EXPECT_THAT(message, HasSubstr("expected a single value, got a list"));
}

TEST(SpecErrors, EmptyListIsRejected) {
  EXPECT_EQ(LineOf(ParseError(Spec("grid:\n  cell: []\n"))), 6);
  EXPECT_EQ(LineOf(ParseError(GridSpec("seeds: []\n"))), 9);
  EXPECT_EQ(LineOf(ParseError(GridSpec("exclude: []\n"))), 9);
}

TEST(SpecErrors, DuplicateValueInAnAxisIsRejected) {
  const std::string message = ParseError(Spec("grid:\n  cell: [lstm, gru, lstm]\n"));
  EXPECT_EQ(PositionIn(message), std::make_pair(6, 21)) << message;
  EXPECT_THAT(message, HasSubstr("\"lstm\" appears twice"));
  // Different spellings of one number are the same value.
  EXPECT_EQ(LineOf(ParseError(Spec("grid:\n  lr: [0.001,\n       1e-3]\n"))), 7);
}

TEST(SpecErrors, SameSettingTwiceIsRejected) {
  const std::string message = ParseError(Spec("grid:\n  cell: [lstm]\n  model.cell: [gru]\n"));
  EXPECT_EQ(PositionIn(message), std::make_pair(7, 3)) << message;
  EXPECT_THAT(message, HasSubstr("model.cell is given twice"));
  EXPECT_EQ(LineOf(ParseError(GridSpec("  seed: [1, 2]\nseeds: [3]\n"))), 10);
  // A W&B fixed value and a section entry are both fixed: one must go.
  EXPECT_EQ(LineOf(ParseError(std::string(kWandbFlat) + "model: {hidden: 64}\n")), 14);
}

TEST(SpecErrors, DuplicateYamlKeyIsRejected) {
  const std::string message = ParseError(GridSpec("name: again\n"));
  EXPECT_EQ(PositionIn(message), std::make_pair(9, 1)) << message;
  EXPECT_THAT(message, HasSubstr("\"name\" appears twice"));
  EXPECT_EQ(LineOf(ParseError(Spec("grid:\n  cell: [lstm]\n  cell: [gru]\n"))), 7);
}

TEST(SpecErrors, RunConfigErrorPointsAtTheGridValue) {
  const std::string message = ParseError(Spec("grid:\n  cell: [lstm,\n         rnn]\n"));
  EXPECT_EQ(PositionIn(message), std::make_pair(7, 10)) << message;
  EXPECT_THAT(message, HasSubstr("model.cell"));
  EXPECT_THAT(message, HasSubstr("rnn"));
}

TEST(SpecErrors, RunConfigErrorPointsAtTheSectionEntry) {
  const std::string message = ParseError("name: demo\ndata: {path: a}\ntrain:\n  lr: 20\n");
  EXPECT_EQ(PositionIn(message), std::make_pair(4, 7)) << message;
  EXPECT_THAT(message, HasSubstr("train.lr"));
  EXPECT_THAT(message, HasSubstr("20"));
}

TEST(SpecErrors, RunConfigErrorInACombinationPointsAtTheValue) {
  // ParseSpec checks each value beside the first level of the others; a
  // spec assembled by hand can still hold a combination that fails.
  SweepSpec spec = MustParse(GridSpec());
  spec.axes[2].values[2] = "identity";
  StatusOr<std::vector<Job>> jobs = ExpandGrid(spec);
  ASSERT_FALSE(jobs.ok());
  EXPECT_EQ(PositionIn(jobs.status().message()), std::make_pair(8, 36)) << jobs.status().message();
  EXPECT_THAT(jobs.status().message(), HasSubstr("identity"));
}

TEST(SpecErrors, MalformedYamlReportsLineAndColumn) {
  const std::string message = ParseError(Spec("grid:\n  cell: [lstm, gru\n"));
  EXPECT_GE(LineOf(message), 6) << message;
  EXPECT_EQ(LineOf(ParseError("name: demo\n  bad: indent\n")), 2);
}

TEST(SpecErrors, NameIsRequiredAndChecked) {
  EXPECT_THAT(ParseError("data: {path: a}\n"), HasSubstr("name: is required"));
  const std::string message = ParseError("name: My Sweep\ndata: {path: a}\n");
  EXPECT_EQ(PositionIn(message), std::make_pair(1, 7)) << message;
  EXPECT_THAT(message, HasSubstr("\"My Sweep\""));
}

TEST(SpecErrors, OnlyOneDocumentIsAccepted) {
  EXPECT_EQ(LineOf(ParseError(GridSpec("---\nname: second\n"))), 9);
  EXPECT_THAT(ParseError("# nothing here\n"), HasSubstr("empty"));
}

// ------------------------------------------------------------------ hostile input

TEST(SpecHostile, DeepNestingFailsFast) {
  const auto start = std::chrono::steady_clock::now();
  const std::string flow =
      "name: x\ngrid: {cell: " + std::string(500'000, '[') + std::string(500'000, ']') + "}\n";
  EXPECT_THAT(ParseError(flow), HasSubstr("nesting deeper than 64"));
  std::string block = "name: x\ngrid:\n  cell:\n";
  for (int i = 0; i < 2000; ++i) block += "    - ";
  EXPECT_THAT(ParseError(block + "x\n"), HasSubstr("nesting deeper than 64"));
  EXPECT_LT(SecondsSince(start), 2.0);
}

TEST(SpecHostile, HugeGridFailsBeforeExpanding) {
  // Ten axes of a thousand values each: 10^30 grid points.
  std::string text = "name: huge\ndata: {path: a}\ngrid:\n";
  for (const char* key : {"batch", "seq", "steps", "log_every", "eval_every", "eval_bytes",
                          "checkpoint_every", "hidden", "seed", "lr"}) {
    text += std::string("  ") + key + ": [";
    for (int v = 1; v <= 1000; ++v) {
      text += (v > 1 ? ", " : "") + std::to_string(v) + (std::string(key) == "lr" ? "e-3" : "");
    }
    text += "]\n";
  }
  const auto start = std::chrono::steady_clock::now();
  SweepSpec spec = MustParse(text);
  StatusOr<std::vector<Job>> jobs = ExpandGrid(spec);
  ASSERT_FALSE(jobs.ok());
  EXPECT_THAT(jobs.status().message(), HasSubstr("1e+30"));
  EXPECT_THAT(jobs.status().message(), HasSubstr("limit of 10000"));
  EXPECT_LT(SecondsSince(start), 2.0);
}

TEST(SpecHostile, TooManyValuesOrExcludesAreRejected) {
  std::string seeds = "seeds: [0";
  for (int v = 1; v <= 10'000; ++v) seeds += ", " + std::to_string(v);
  const auto start = std::chrono::steady_clock::now();
  const std::string message = ParseError(GridSpec(seeds + "]\n"));
  EXPECT_EQ(PositionIn(message), std::make_pair(9, 8)) << message;
  EXPECT_THAT(message, HasSubstr("more than 10000 values"));
  EXPECT_LT(SecondsSince(start), 1.0);
  std::string excludes = "exclude:\n";
  for (int i = 0; i < 1001; ++i) excludes += "  - {cell: gru}\n";
  EXPECT_THAT(ParseError(GridSpec(excludes)), HasSubstr("limit of 1000"));
}

TEST(SpecHostile, GridOverTheJobLimitIsRejected) {
  StatusOr<std::vector<Job>> jobs = ExpandGrid(MustParse(GridSpec()), 17);
  ASSERT_FALSE(jobs.ok());
  EXPECT_THAT(jobs.status().message(), HasSubstr("18 points (3 x 2 x 3)"));
  EXPECT_THAT(jobs.status().message(), HasSubstr("limit of 17"));
}

TEST(SpecHostile, InvalidUtf8IsRejectedWithItsPosition) {
  const std::string message = ParseError("name: demo\ndescription: \"caf\xC3\x28\"\n");
  EXPECT_EQ(PositionIn(message), std::make_pair(2, 18)) << message;
  EXPECT_THAT(message, HasSubstr("invalid UTF-8"));
  EXPECT_EQ(PositionIn(ParseError("name: d\xC3\xA9mo\xFF\n")), std::make_pair(1, 11));
  EXPECT_EQ(LineOf(ParseError("name: demo\ndata: {path: \"\\ud800\"}\n")), 2);
}

TEST(SpecHostile, ControlCharactersAreRejected) {
  EXPECT_THAT(ParseError(std::string("name: demo\0\n", 12)), HasSubstr("U+0000"));
}

TEST(SpecHostile, OversizedDocumentIsRejectedUnread) {
  const std::string text = GridSpec("description: \"" + std::string(2 << 20, 'x') + "\"\n");
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THAT(ParseError(text), HasSubstr("limit of 1048576"));
  EXPECT_LT(SecondsSince(start), 0.5);
}

TEST(SpecHostile, AliasInsideItsOwnAnchorIsRejected) {
  EXPECT_THAT(ParseError(Spec("grid:\n  cell: &loop [lstm, *loop]\n")),
              HasSubstr("alias refers to a node that contains it"));
}

TEST(SpecHostile, AliasFanOutIsNotExpanded) {
  // "Billion laughs": each list names the one before nine times, 9^9 leaves
  // if anything walked it.
  std::string text =
      "name: x\ndata: {path: a}\ndescription:\n  - &a0 [x, x, x, x, x, x, x, x, x]\n";
  for (int level = 1; level <= 8; ++level) {
    const std::string alias = "*a" + std::to_string(level - 1);
    text += "  - &a" + std::to_string(level) + " [" + alias;
    for (int i = 1; i < 9; ++i) text += ", " + alias;
    text += "]\n";
  }
  const auto start = std::chrono::steady_clock::now();
  const std::string message = ParseError(text);
  EXPECT_EQ(PositionIn(message), std::make_pair(4, 3)) << message;
  EXPECT_THAT(message, HasSubstr("description: expected a single value, got a list"));
  EXPECT_LT(SecondsSince(start), 1.0);
}

TEST(SpecHostile, AliasFanOutInAProgramsValueIsRefusedQuickly) {
  std::string text = "program: p.py\nparameters:\n  a: {value: &a0 [x, x, x, x, x, x, x, x, x]}\n";
  for (int level = 1; level <= 8; ++level) {
    const std::string alias = "*a" + std::to_string(level - 1);
    text += "  a" + std::to_string(level) + ": {value: &a" + std::to_string(level) + " [" + alias;
    for (int i = 1; i < 9; ++i) text += ", " + alias;
    text += "]}\n";
  }
  const auto start = std::chrono::steady_clock::now();
  const std::string message = ParseError(text);
  EXPECT_THAT(message, HasSubstr("the values hold more than 100000 items in all"));
  EXPECT_LT(SecondsSince(start), 1.0);
}

TEST(SpecHostile, ProgramJobsTooLargeInAllAreRefusedBeforeExpanding) {
  // 1,000 jobs, each with the same 40 kB fixed list: 40 MB of parameters.
  std::string list = "[";
  for (int i = 0; i < 8000; ++i) list += (i ? ", " : "") + std::string("1234");
  list += "]";
  std::string text = "program: p.py\nparameters:\n  big: {value: " + list + "}\n";
  text += "  a: {values: [";
  for (int i = 0; i < 1000; ++i) text += (i ? ", " : "") + std::to_string(i);
  text += "]}\n";
  const auto start = std::chrono::steady_clock::now();
  StatusOr<std::vector<Job>> jobs = ExpandGrid(MustParse(text));
  ASSERT_FALSE(jobs.ok());
  EXPECT_THAT(jobs.status().message(), HasSubstr("jobs' parameters take up to"));
  EXPECT_LT(SecondsSince(start), 1.0);

  jobs = ExpandGrid(MustParse("program: p.py\nparameters:\n  big: {values: [" + list + ", [" +
                              list + ", " + list + "]]}\n"));
  ASSERT_FALSE(jobs.ok());
  EXPECT_THAT(jobs.status().message(), HasSubstr("a job's parameters take up to"));
}

// ------------------------------------------------------------------ hashes

TEST(ConfigHash, IsTheSha256OfTheCanonicalJson) {
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  RunConfig config;
  config.data.path = "x";
  EXPECT_EQ(ConfigHash(config), Sha256Hex(config.ToJson().dump()));
  EXPECT_EQ(ConfigHash(config).size(), 64u);
}

TEST(ConfigHash, SameSettingsGiveTheSameHashWhateverTheSpelling) {
  const std::string reordered = R"(name: other   # a different sweep name does not matter
train: {eval_every: 50, log_every: 10, lr: 2e-3, steps: 3e2, seq: 100, batch: 32}
model: {vocab: 27, hidden: 128.0}
data:  {path: "runs/gcide.text8"}
grid:
  model.init: [orthogonal, variance_scaling, xavier]
  model.layer_norm: [false, true]
  model.cell: [mgu, gru, lstm]
)";
  EXPECT_EQ(Hashes(MustExpand(reordered)), Hashes(MustExpand(GridSpec())));
}

TEST(ConfigHash, EverySettingChangesTheHash) {
  RunConfig base;
  base.data.path = "a";
  const std::vector<std::function<void(RunConfig&)>> changes = {
      [](RunConfig& c) { c.data.path = "b"; },
      [](RunConfig& c) { c.data.path = "", c.data.corpus = "text8"; },
      [](RunConfig& c) { c.data.url = "http://example.com/t.zip"; },
      [](RunConfig& c) { c.model.cell = Cell::kLstm; },
      [](RunConfig& c) { c.model.layer_norm = false; },
      [](RunConfig& c) { c.model.init = Init::kOrthogonal; },
      [](RunConfig& c) { c.model.hidden = 7; },
      [](RunConfig& c) { c.model.vocab = 27; },
      [](RunConfig& c) { c.train.batch = 7; },
      [](RunConfig& c) { c.train.seq = 7; },
      [](RunConfig& c) { c.train.lr = 0.0011; },
      [](RunConfig& c) { c.train.clip_norm = 0; },
      [](RunConfig& c) { c.train.steps = 7; },
      [](RunConfig& c) { c.train.log_every = 7; },
      [](RunConfig& c) { c.train.eval_every = 7; },
      [](RunConfig& c) { c.train.eval_bytes = 7; },
      [](RunConfig& c) { c.train.checkpoint_every = 7; },
      [](RunConfig& c) { c.train.seed = 7; },
  };
  std::set<std::string> hashes = {ConfigHash(base)};
  for (const auto& change : changes) {
    RunConfig changed = base;
    change(changed);
    hashes.insert(ConfigHash(changed));
  }
  EXPECT_EQ(hashes.size(), changes.size() + 1);
}

TEST(SpecHash, IgnoresCommentsLayoutNameAndSchedule) {
  const std::string relaid = R"(# the same sweep, written differently
name: renamed
data:
  path: runs/gcide.text8
model:
  hidden: 128
  vocab: 27
train: {batch: 32, seq: 100, steps: 300, lr: 2e-3, log_every: 10, eval_every: 50}
grid: {model.cell: [lstm, gru, mgu], layer_norm: [true, false],
       init: [xavier, variance_scaling, orthogonal]}
schedule: {max_attempts: 9}
)";
  EXPECT_EQ(SpecHash(MustParse(relaid)), SpecHash(MustParse(GridSpec())));
}

TEST(SpecHash, ChangesWithWhatTheSweepRuns) {
  const std::string base = SpecHash(MustParse(GridSpec()));
  EXPECT_NE(SpecHash(MustParse(GridSpec("seeds: [0]\n"))), base);
  EXPECT_NE(SpecHash(MustParse(GridSpec("exclude: [{cell: gru}]\n"))), base);
  std::string hidden = GridSpec();
  hidden.replace(hidden.find("hidden: 128"), 11, "hidden: 129");
  EXPECT_NE(SpecHash(MustParse(hidden)), base);
}

// ------------------------------------------------------------------ hand-out order

TEST(Order, IsAPermutationOfTheJobs) {
  std::vector<Job> jobs = MustExpand(GridSpec("seeds: [0, 1, 2]\n"));
  for (size_t i = 0; i < jobs.size(); ++i) EXPECT_EQ(jobs[i].order, static_cast<int64_t>(i));
}

TEST(Order, EveryPrefixIsBalancedOnEveryAxis) {
  const std::string text = GridSpec();
  SweepSpec spec = MustParse(text);
  std::vector<Job> jobs = MustExpand(text);
  for (size_t prefix = 1; prefix <= jobs.size(); ++prefix) {
    for (const auto& axis : spec.axes) {
      EXPECT_LE(Spread(LevelCounts(jobs, axis.key, prefix), Levels(spec, axis.key)), 1)
          << axis.key << " after " << prefix << " jobs";
    }
  }
  EXPECT_EQ(LevelCounts(jobs, "model.cell", 6),
            (std::map<std::string, int>{{"\"gru\"", 2}, {"\"lstm\"", 2}, {"\"mgu\"", 2}}));
  EXPECT_EQ(LevelCounts(jobs, "model.layer_norm", 6),
            (std::map<std::string, int>{{"false", 3}, {"true", 3}}));
  EXPECT_EQ(LevelCounts(jobs, "model.init", 9),
            (std::map<std::string, int>{
                {"\"orthogonal\"", 3}, {"\"variance_scaling\"", 3}, {"\"xavier\"", 3}}));
}

TEST(Order, FullGridsOfAnyShapeStayWithinOneOnEveryAxis) {
  const std::vector<std::vector<int>> shapes = {{2, 4},    {4, 2}, {4, 6}, {6, 4, 2}, {2, 2, 2, 2},
                                                {5, 3, 4}, {3, 9}, {7},    {1, 3}};
  const std::vector<std::string> keys = {"batch", "seq", "steps", "hidden"};
  for (const auto& shape : shapes) {
    std::string text = "name: shape\ndata: {path: a}\ngrid:\n";
    for (size_t a = 0; a < shape.size(); ++a) {
      text += "  " + keys[a] + ": [";
      for (int v = 1; v <= shape[a]; ++v) text += (v > 1 ? ", " : "") + std::to_string(v);
      text += "]\n";
    }
    SweepSpec spec = MustParse(text);
    std::vector<Job> jobs = MustExpand(text);
    for (size_t prefix = 1; prefix <= jobs.size(); ++prefix) {
      for (const auto& axis : spec.axes) {
        EXPECT_LE(Spread(LevelCounts(jobs, axis.key, prefix), Levels(spec, axis.key)), 1)
            << axis.key << " after " << prefix << " jobs of " << text;
      }
    }
  }
}

TEST(Order, ExcludesKeepTheOtherAxesNearlyBalanced) {
  const std::string text =
      GridSpec("seeds: [0, 1, 2]\nexclude: [{cell: mgu, layer_norm: false}]\n");
  SweepSpec spec = MustParse(text);
  std::vector<Job> jobs = MustExpand(text);
  ASSERT_EQ(jobs.size(), 45u);
  // mgu has half the jobs of lstm and gru, so cell and layer_norm cannot stay
  // even; the greedy order keeps the axes the exclude leaves whole within two.
  for (size_t prefix = 1; prefix <= jobs.size(); ++prefix) {
    for (const char* key : {"train.seed", "model.init"}) {
      EXPECT_LE(Spread(LevelCounts(jobs, key, prefix), Levels(spec, key)), 2)
          << key << " after " << prefix << " jobs";
    }
  }
  for (const auto& axis : spec.axes) {
    EXPECT_EQ(LevelCounts(jobs, axis.key, 3).size(), std::min<size_t>(3, axis.values.size()))
        << axis.key;
  }
}

TEST(Order, TenThousandJobsAreOrderedQuickly) {
  std::string values = "[";
  for (int v = 1; v <= 10; ++v) values += (v > 1 ? ", " : "") + std::to_string(v);
  values += "]";
  const std::string text = "name: big\ndata: {path: a}\ngrid:\n  batch: " + values +
                           "\n  seq: " + values + "\n  steps: " + values + "\nseeds: " + values +
                           "\n";
  SweepSpec spec = MustParse(text);
  const auto start = std::chrono::steady_clock::now();
  StatusOr<std::vector<Job>> jobs = ExpandGrid(spec);
  const double seconds = SecondsSince(start);
  ASSERT_TRUE(jobs.ok()) << jobs.status().ToString();
  EXPECT_EQ(jobs->size(), 10'000u);
  EXPECT_LT(seconds, 1.0);
  for (size_t prefix : {10u, 100u, 1000u, 5000u}) {
    for (const auto& axis : spec.axes) {
      EXPECT_EQ(Spread(LevelCounts(*jobs, axis.key, prefix), Levels(spec, axis.key)), 0)
          << axis.key << " after " << prefix;
    }
  }
}

TEST(Order, ManyAxesWithExcludesAreOrderedQuickly) {
  // Thirteen two-level axes (8192 points) with an exclude: the case where the
  // greedy scan cannot stop early.
  std::string text =
      "name: wide\ndata: {path: a}\ngrid:\n  layer_norm: [true, false]\n"
      "  vocab: [256, 27]\n";
  for (const char* key : {"batch", "seq", "steps", "log_every", "eval_every", "eval_bytes",
                          "checkpoint_every", "hidden", "seed", "lr", "clip_norm"}) {
    text += std::string("  ") + key + ": [1, 2]\n";
  }
  text += "exclude: [{batch: 1, seq: 1}]\n";
  SweepSpec spec = MustParse(text);
  const auto start = std::chrono::steady_clock::now();
  StatusOr<std::vector<Job>> jobs = ExpandGrid(spec);
  EXPECT_LT(SecondsSince(start), 1.0);
  ASSERT_TRUE(jobs.ok()) << jobs.status().ToString();
  ASSERT_EQ(jobs->size(), 6144u);
  for (size_t prefix : {10u, 100u, 1000u, 3000u}) {
    for (const auto& axis : spec.axes) {
      if (axis.key == "train.batch" || axis.key == "train.seq") continue;
      EXPECT_LE(Spread(LevelCounts(*jobs, axis.key, prefix), Levels(spec, axis.key)), 2)
          << axis.key << " after " << prefix;
    }
  }
}

// ------------------------------------------------------------------ names and files

TEST(ResolveSettingKey, BareDottedAndSeedNames) {
  EXPECT_EQ(*ResolveSettingKey("seed"), "train.seed");
  EXPECT_EQ(*ResolveSettingKey("cell"), "model.cell");
  EXPECT_EQ(*ResolveSettingKey("model.cell"), "model.cell");
  EXPECT_EQ(*ResolveSettingKey("path"), "data.path");
}

TEST(ResolveSettingKey, UnknownNameListsTheKnownOnes) {
  for (const char* name : {"dropout", "model.seed", "cell.model", ""}) {
    StatusOr<std::string> key = ResolveSettingKey(name);
    ASSERT_FALSE(key.ok()) << name;
    EXPECT_THAT(key.status().message(), HasSubstr("unknown setting"));
    EXPECT_THAT(key.status().message(), HasSubstr("model.cell"));
    EXPECT_THAT(key.status().message(), HasSubstr("train.seed"));
  }
}

TEST(ResolveSettingKey, BareNameInTwoSectionsIsAmbiguous) {
  const std::vector<std::string> keys = {"model.seed", "train.seed", "train.lr"};
  StatusOr<std::string> key = ResolveSettingKey("seed", keys);
  ASSERT_FALSE(key.ok());
  EXPECT_THAT(key.status().message(), HasSubstr("ambiguous"));
  EXPECT_THAT(key.status().message(), HasSubstr("model.seed, train.seed"));
  EXPECT_EQ(*ResolveSettingKey("lr", keys), "train.lr");
}

TEST(ResolveSettingKey, EverySettingOfRunConfigIsKnown) {
  EXPECT_EQ(SettingKeys().size(), 19u);
  EXPECT_TRUE(std::binary_search(SettingKeys().begin(), SettingKeys().end(), "train.precision"));
  EXPECT_TRUE(std::is_sorted(SettingKeys().begin(), SettingKeys().end()));
  for (const auto& key : SettingKeys()) EXPECT_EQ(*ResolveSettingKey(key), key);
}

TEST(LoadSpecFile, ReadsTheFileAndNamesItInErrors) {
  const std::string path = ::testing::TempDir() + "/spec_test_demo.yaml";
  {
    std::ofstream out(path);
    out << GridSpec() << "  hidden: [8, 8]\n";
  }
  StatusOr<SweepSpec> spec = LoadSpecFile(path);
  ASSERT_FALSE(spec.ok());
  EXPECT_THAT(spec.status().message(), StartsWith(path + ":9:"));
  {
    std::ofstream out(path);
    out << GridSpec();
  }
  spec = LoadSpecFile(path);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->filename, path);
  EXPECT_EQ(spec->source_text, GridSpec());
  std::remove(path.c_str());
}

TEST(LoadSpecFile, MissingFileIsNotFound) {
  StatusOr<SweepSpec> spec = LoadSpecFile(::testing::TempDir() + "/no_such_spec.yaml");
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().code(), Status::kNotFound);
}

}  // namespace
}  // namespace ablate

namespace ablate {
namespace {

TEST(RunConfigFile, ReadsTheSectionsOfOneRun) {
  auto config = ParseRunConfig(
      "data: {path: corpus.txt}\n"
      "model: {cell: lstm, layer_norm: false, init: orthogonal, hidden: 64, vocab: 27}\n"
      "train: {batch: 8, seq: 50, lr: 1e-3, steps: 100, seed: 4}\n",
      "run.yaml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->data.path, "corpus.txt");
  EXPECT_EQ(config->model.cell, Cell::kLstm);
  EXPECT_FALSE(config->model.layer_norm);
  EXPECT_EQ(config->model.init, Init::kOrthogonal);
  EXPECT_EQ(config->train.seq, 50);
  EXPECT_DOUBLE_EQ(config->train.lr, 1e-3);
  EXPECT_EQ(config->train.seed, 4u);
}

TEST(RunConfigFile, AGridIsRefusedWithItsPosition) {
  auto config = ParseRunConfig("data: {path: x}\ngrid:\n  cell: [gru, lstm]\n", "run.yaml");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("run.yaml:2:1:"), std::string::npos)
      << config.status().message();
  EXPECT_NE(config.status().message().find("grid"), std::string::npos);
}

TEST(RunConfigFile, BadValuesNameFileLineAndSetting) {
  auto config = ParseRunConfig("data: {path: x}\nmodel:\n  cell: rnn\n", "run.yaml");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("run.yaml:3:"), std::string::npos)
      << config.status().message();
  EXPECT_NE(config.status().message().find("rnn"), std::string::npos);
  auto missing = LoadRunConfigFile("/nonexistent/run.yaml");
  EXPECT_EQ(missing.status().code(), Status::kNotFound);
}

}  // namespace
}  // namespace ablate
