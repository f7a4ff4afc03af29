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
//    {name, goal}` names the metric results are judged by; `project` and
//    `entity` are checked and ignored; the sections,
//    `seeds`, `exclude` and `schedule` work as in the native form. Without
//    `name:` the sweep takes its file's name (NameFromFilename).
// A W&B spec with `program:` or `command:` is a program sweep: each job runs
// the user's program (ProgramSpec) instead of the built-in trainer. Its
// parameters may have any names and any YAML values (lists and mappings
// too); a parameter with `parameters:` of its own nests, as in W&B, so that
// `optimizer: {parameters: {lr: ...}}` gives the job {"optimizer": {"lr": ..}}
// and the axis "optimizer.lr". The trainer's sections (data, model, train)
// are refused there; `seeds:` becomes the parameter "seed". Program sweeps
// exist only in the W&B form, which is what W&B users already have.
// In a built-in sweep every RunConfig setting can be fixed or be an axis. Settings are named by
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
#include <optional>
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
// Program sweeps' values may be lists and mappings: the scalars, lists and
// mappings of all values together, aliases counted each time they are used.
inline constexpr size_t kMaxValueItems = 100'000;
// A program job's parameter object as JSON, and all jobs' together
// (ExpandGrid refuses a sweep whose jobs could exceed either).
inline constexpr size_t kMaxProgramConfigBytes = size_t{64} << 10;
inline constexpr size_t kMaxProgramSweepBytes = size_t{32} << 20;

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
  // Program sweeps: where the value sits in the job's parameter object,
  // {"optimizer", "lr"} for a nested parameter; `key` is these joined by dots.
  std::vector<std::string> path = {};
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
  // Program sweeps: a program that reports nothing and writes no output for
  // this long is ended as hung; 0: never. 0 to one week.
  double silence_seconds = 0;
};

// The metric a sweep is judged by.
struct SweepMetric {
  std::string name;  // empty, or a name CheckMetricName accepts
  MetricGoal goal = MetricGoal::kMinimize;
};

// What a program sweep runs, as W&B's `program:` and `command:` write it.
// `command` is a list of arguments; an argument that is exactly one of these
// macros is replaced (ExpandCommand), any other text is kept as written,
// unknown `${...}` included, as W&B's agent does:
//   ${env}             /usr/bin/env
//   ${interpreter}     python3 (W&B says python; Debian has only python3)
//   ${program}         the program
//   ${args}            --name=value per parameter
//   ${args_no_hyphens} name=value per parameter
//   ${args_no_equals}  --name and value as two arguments per parameter
//   ${args_no_boolean_flags}  --name=value, except --name for true and
//                      nothing for false
//   ${args_json}       one argument: the parameters as a JSON object
//   ${args_json_file}  kept as written; the worker puts the path of the job's
//                      config file (ABLATE_CONFIG) in its place
// Values print as W&B's Python agent prints them: strings bare, True/False,
// floats in Python's shortest form (0.001, 1e-05, 3.0), lists and mappings
// as Python writes them ([1, 'a']). Parameters come in sorted order. Where
// W&B differs, on purpose: ${args} of a sweep without parameters is no
// argument at all (W&B's agent passes the text "${args}"), ${args_json} is
// compact JSON, and ${envvar:NAME} is refused, since the command is
// expanded at launch rather than on the worker.
struct ProgramSpec {
  std::string program;  // a path relative to the worker's working directory; may be empty
                        // when `command` does not use ${program}
  std::vector<std::string> command;  // as written; W&B's default without `command:`
};

// W&B's command when `command:` is absent.
const std::vector<std::string>& DefaultProgramCommand();

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
  // Set for a program sweep, whose `base` is then the parameter object of
  // the fixed parameters ({"optimizer": {"name": "adam"}}).
  std::optional<ProgramSpec> program;
  std::string source_text;  // the YAML exactly as given, for the coordinator to keep
};

struct Job {
  RunConfig config;         // built-in sweeps
  nlohmann::json factors;   // {"model.cell": "gru", ..., "train.seed": 0}: the axes' values
  std::string config_hash;  // ConfigHash(config); program sweeps: Sha256Hex(ConfigJson())
  int64_t order = 0;        // hand-out rank, 0 first
  // Program sweeps: the job's parameter object (keys sorted) and its command
  // line, macros expanded but for ${args_json_file}. Empty otherwise.
  nlohmann::json parameters;
  std::vector<std::string> command;

  // What the coordinator stores and leases as the job's config: the
  // RunConfig's canonical JSON, or a program job's parameter object.
  std::string ConfigJson() const;
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
// with their values) and excludes, all canonical, and a program sweep's
// program and command. Name, description, schedule, comments, layout and the
// choice of native or W&B syntax do not change it.
std::string SpecHash(const SweepSpec& spec);

// `program.command` with its macros replaced for one job's parameter object
// (see ProgramSpec).
std::vector<std::string> ExpandCommand(const ProgramSpec& program,
                                       const nlohmann::json& parameters);

// The sweep name a W&B file without `name:` takes: the file's base name
// without .yaml/.yml, lower-cased, every character outside a-z 0-9 _ . -
// replaced by '-', cut to 100 characters. Empty when nothing usable is left.
std::string NameFromFilename(const std::string& filename);

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
