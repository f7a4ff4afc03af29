// Sweep specs: the YAML file that describes an ablation grid, its expansion
// into jobs, and the names (canonical setting keys, hashes) that results are
// filed under.
//
// A spec is written in one of two forms, which parse to the same SweepSpec:
//  - native: `name`, `description`, the RunConfig sections `data`, `model`,
//    `train` (fixed settings), `grid` (setting -> list of values), `seeds`,
//    `exclude`, `schedule`;
//  - Weights & Biases: a spec with `method` (only `grid`) or `parameters`,
//    where each parameter is `{values: [...]}` (an axis) or `{value: x}` (a
//    fixed setting), also nested as `model: {parameters: {...}}`. `metric:
//    {name, goal}` names the metric results are judged by; `program`,
//    `project` and `entity` are checked and ignored; the
//    sections, `seeds`, `exclude` and `schedule` work as in the native form.
// Every RunConfig setting can be fixed or be an axis. Settings are named by
// canonical dotted keys ("model.cell"); a bare name ("cell") stands for the
// one section that has it. A setting is given once, except that a section
// entry is a default that an axis of the same setting overrides.
// Plain scalars are typed by the YAML 1.2 core schema (true/false, integers,
// decimals such as 1e-3; anything else, and anything quoted, is a string).
//
// All functions here are thread-compatible and never throw. Every error about
// a spec is an InvalidArgument whose message starts "file:line:column: " (or
// "file: " where no single place is at fault) and names the setting and the
// value at fault.
#ifndef ABLATE_COMMON_SPEC_H_
#define ABLATE_COMMON_SPEC_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "common/metric.h"
#include "common/run_config.h"
#include "common/status.h"

namespace ablate {

// Limits that keep hostile or mistaken specs cheap to reject.
inline constexpr size_t kMaxSpecBytes = size_t{1} << 20;  // larger text is rejected unread
inline constexpr int kMaxSpecNesting = 64;                // deeper YAML collections are rejected
inline constexpr size_t kDefaultMaxJobs = 10'000;         // ExpandGrid's default job cap
// Values over all axes. A grid of n values has at least n - (axes - 1)
// points, so more could not expand within kDefaultMaxJobs anyway.
inline constexpr size_t kMaxGridValues = 10'000;
inline constexpr size_t kMaxExcludes = 1'000;  // entries under exclude:

// A place in a spec's text, 1-based as editors count; line 0 means unknown.
struct SourcePosition {
  int line = 0;
  int column = 0;
};

// One factor of the grid: a setting and the levels it takes.
struct GridAxis {
  std::string key;                      // canonical dotted key, e.g. "model.cell"
  std::vector<nlohmann::json> values;   // distinct, non-empty, canonical (as RunConfig::ToJson
                                        // writes them: 1e3 is 1000 for an integer setting)
  std::vector<SourcePosition> written;  // where each value is written; parallel to `values`
};

// How the coordinator treats the jobs of one sweep.
struct ScheduleOptions {
  int max_attempts = 3;       // runs of one job before it is marked failed; 1 to 1000
  double lease_seconds = 60;  // a job whose worker is silent this long is offered again;
                              // 0.001 to one week
  bool retry_on_nan = false;  // whether a job whose loss went NaN/inf counts as retryable
  // keep_checkpoints: final (true): a finished job uploads its trained
  // model as its last checkpoint, which the coordinator keeps for
  // `ablate checkpoint`; none (false): a job's checkpoint goes when it is done.
  bool keep_final_checkpoint = true;
};

// The metric a sweep is judged by.
struct SweepMetric {
  std::string name;  // empty, or a name CheckMetricName accepts
  MetricGoal goal = MetricGoal::kMinimize;
};

struct SweepSpec {
  std::string filename;     // as given to ParseSpec; prefixes error messages
  std::string name;         // [a-z0-9_.-]+
  std::string description;  // free text, may be empty
  // The fixed settings, as RunConfig JSON sections ({"model": {"hidden": 128}})
  // with canonical values; RunConfig defaults fill in the rest. A section
  // entry that an axis overrides is left out.
  nlohmann::json base = nlohmann::json::object();
  std::map<std::string, SourcePosition> base_written;  // canonical key -> where it is set
  // In file order; `seeds:` becomes the last axis, "train.seed".
  std::vector<GridAxis> axes;
  // Each is {canonical key: one of that axis's values}; a job matching every
  // entry of any one of them is dropped. Excludes name axes only; one that
  // drops nothing because others already dropped its jobs is fine.
  std::vector<nlohmann::json> excludes;
  ScheduleOptions schedule;
  // W&B's `metric: {name, goal}`: what results, best values and the report
  // default to. An empty name: the built-in valid_bpc, minimized.
  SweepMetric metric;
  std::string source_text;  // the YAML exactly as given, for the coordinator to keep
};

struct Job {
  RunConfig config;
  nlohmann::json factors;   // {"model.cell": "gru", ..., "train.seed": 0}: the axes' values
  std::string config_hash;  // ConfigHash(config)
  int64_t order = 0;        // hand-out rank, 0 first
};

// Parses and validates a spec: structure, setting names, value types, each
// grid value and the fixed settings against RunConfig::FromJson (a value is
// tried beside the first value of every other axis), repeated values and
// settings, excludes. `filename` is only used in messages. Also rejects text
// over kMaxSpecBytes, invalid UTF-8 and control characters, nesting past
// kMaxSpecNesting, aliases inside their own anchor, more than one YAML
// document, and more than kMaxGridValues or kMaxExcludes. Never expands the
// grid, so a spec that passes can still fail ExpandGrid on size or on a
// combination of values RunConfig rejects.
StatusOr<SweepSpec> ParseSpec(std::string_view yaml_text, const std::string& filename);

// Reads `path` (NotFound or IOError when it cannot) and parses it.
StatusOr<SweepSpec> LoadSpecFile(const std::string& path);

// A run config: the data:, model: and train: sections of a spec (and an
// optional description) without a grid, for training one configuration.
// Errors as ParseSpec's, with file, line and column.
StatusOr<RunConfig> ParseRunConfig(std::string_view yaml_text, const std::string& filename);
StatusOr<RunConfig> LoadRunConfigFile(const std::string& path);

// The jobs of the grid minus the excluded ones, in hand-out order
// (jobs[i].order == i). The order keeps every prefix as balanced as it can
// across each axis's levels: greedily, the next job is the remaining one whose
// levels have been handed out least often, summed over axes; ties go to the
// job that comes first in a fixed reference order of the full grid in which
// every prefix is balanced on every axis (no level of an axis is handed out
// twice more than another). Without excludes the result is that reference
// order. A grid of more than `max_jobs` points (before excludes) is rejected
// before anything is built, whatever its size. Also rejects a spec whose
// excludes drop every job, and any job whose RunConfig does not validate,
// pointing at the value that makes it invalid. `spec` need not come from
// ParseSpec; a malformed one is an InvalidArgument too. Time: O(jobs x axes)
// without excludes, at worst O(jobs^2 x axes) with them.
StatusOr<std::vector<Job>> ExpandGrid(const SweepSpec& spec, size_t max_jobs = kDefaultMaxJobs);

// Hex SHA-256 naming what the sweep runs: its fixed settings, axes (in order,
// with their values) and excludes, all canonical. Name, description, schedule,
// comments, layout and the choice of native or W&B syntax do not change it.
std::string SpecHash(const SweepSpec& spec);

// Every setting a spec can name, as sorted canonical keys ("data.corpus", ...,
// "train.steps").
const std::vector<std::string>& SettingKeys();

// The canonical key for a setting typed by a user: "cell" -> "model.cell",
// "seed" -> "train.seed", "model.cell" stays. InvalidArgument for an unknown
// name (listing the known ones) or a bare name more than one section has.
StatusOr<std::string> ResolveSettingKey(const std::string& name);
// The same among `known_keys` (canonical "section.name" keys).
StatusOr<std::string> ResolveSettingKey(const std::string& name,
                                        const std::vector<std::string>& known_keys);

}  // namespace ablate

#endif  // ABLATE_COMMON_SPEC_H_
