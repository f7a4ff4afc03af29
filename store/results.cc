#include "store/results.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "common/metric.h"
#include "common/run_config.h"
#include "common/spec.h"
#include "store/job_state.h"
#include "store/reader.h"
#include "store/statistics.h"

namespace ablate {

namespace {

using nlohmann::json;

// Holds one read snapshot for a whole query, so that a coordinator's commits
// between its statements cannot mix two states of the sweep. A savepoint
// opens a read transaction on its own, and nests inside the writer's batch
// when the query runs there.
class ReadSnapshot {
 public:
  explicit ReadSnapshot(Database& db) : db_(db) {}
  Status Begin() {
    Status status = db_.Exec("SAVEPOINT results_read");
    open_ = status.ok();
    return status;
  }
  ~ReadSnapshot() {
    if (open_) db_.Exec("RELEASE results_read");
  }

 private:
  Database& db_;
  bool open_ = false;
};

// JSON text of a factor value, as stored canonically.
std::string Dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

struct SweepJob {
  int64_t id = 0;
  JobState state = JobState::kPending;
  std::string factors_json;
  json factors;
  std::optional<double> final_bpc;  // the worker's final value of a built-in metric, done jobs only
  std::string last_error;
};

struct Axis {
  std::string key;                  // "model.cell"
  std::string short_name;           // "cell", or the key when another axis has the same field name
  std::vector<std::string> values;  // canonical JSON text, in the spec's order
};

// A sweep's jobs and axes as the queries need them.
struct SweepData {
  v1::SweepSummary summary;
  std::string metric;     // the metric the request is about, resolved
  bool maximize = false;  // whether its best value is the highest
  std::vector<Axis> axes;
  std::vector<SweepJob> jobs;  // in hand-out order
};

// The factors a reply groups by.
struct Grouping {
  bool per_job = false;
  std::vector<std::string> columns;  // as requested, or short names per job
  std::vector<std::string> keys;     // canonical
  std::vector<const Axis*> axes;     // parallel to keys
};

// A job the request counts, with whether it is unfinished.
struct Counted {
  const SweepJob* job;
  bool unfinished;
};

std::string FieldOf(const std::string& key) {
  const size_t dot = key.find('.');
  return dot == std::string::npos ? key : key.substr(dot + 1);
}

// The sweep's axes: those of its stored spec in file order (with their
// values' order), then any other factor its jobs carry (an extended sweep's
// older grid), sorted. Only factors some job carries count, unless it has none.
std::vector<Axis> AxesOf(const std::string& spec_text, const std::string& name,
                         const std::vector<SweepJob>& jobs) {
  std::vector<std::string> carried;
  for (const SweepJob& job : jobs) {
    for (const auto& item : job.factors.items()) carried.push_back(item.key());
  }
  std::sort(carried.begin(), carried.end());
  carried.erase(std::unique(carried.begin(), carried.end()), carried.end());
  auto is_carried = [&](const std::string& key) {
    return jobs.empty() || std::binary_search(carried.begin(), carried.end(), key);
  };

  std::vector<Axis> axes;
  // A stored spec that no longer parses (written by another version) only
  // loses the order of values.
  StatusOr<SweepSpec> spec = ParseSpec(spec_text, name);
  if (spec.ok()) {
    for (const GridAxis& grid_axis : spec->axes) {
      if (!is_carried(grid_axis.key)) continue;
      Axis& axis = axes.emplace_back();
      axis.key = grid_axis.key;
      for (const json& value : grid_axis.values) axis.values.push_back(Dump(value));
    }
  }
  for (const std::string& key : carried) {
    const bool known =
        std::any_of(axes.begin(), axes.end(), [&](const Axis& axis) { return axis.key == key; });
    if (!known) axes.emplace_back().key = key;
  }
  for (Axis& axis : axes) {
    const std::string field = FieldOf(axis.key);
    const bool shared = std::count_if(axes.begin(), axes.end(), [&](const Axis& other) {
                          return FieldOf(other.key) == field;
                        }) > 1;
    axis.short_name = shared ? axis.key : field;
  }
  return axes;
}

// Every metric the sweep's jobs have points of, sorted.
StatusOr<std::vector<std::string>> SweepMetrics(Database& db, int64_t sweep_id) {
  ABLATE_ASSIGN_OR_RETURN(Rows rows, db.Query(R"sql(
      SELECT DISTINCT p.metric FROM jobs j JOIN curve_points p ON p.job_id = j.id
      WHERE j.sweep_id = ? ORDER BY p.metric)sql",
                                              sweep_id));
  std::vector<std::string> metrics;
  while (true) {
    ABLATE_ASSIGN_OR_RETURN(bool row, rows.Next());
    if (!row) break;
    metrics.push_back(rows.Text(0));
  }
  return metrics;
}

// Which metric a request is about: its metric, else its split's built-in
// metric, else the sweep's own (spec metric.name), else valid_bpc. A name
// must be one the sweep can have: a built-in metric, the sweep's own, or
// one some job has points of; InvalidArgument lists the sweep's metrics.
Status ResolveMetric(Database& db, int64_t sweep_id, const std::string& requested, v1::Split split,
                     SweepData* sweep) {
  std::string own_name, own_goal;
  {
    ABLATE_ASSIGN_OR_RETURN(
        Rows rows, db.Query("SELECT metric_name, metric_goal FROM sweeps WHERE id = ?", sweep_id));
    ABLATE_ASSIGN_OR_RETURN(bool found, rows.Next());
    if (found) {
      own_name = rows.Text(0);
      own_goal = rows.Text(1);
    }
  }
  if (!requested.empty()) {
    ABLATE_RETURN_IF_ERROR(CheckMetricName(requested));
    sweep->metric = requested;
  } else if (split != v1::SPLIT_UNSPECIFIED) {
    if (split != v1::SPLIT_TRAIN && split != v1::SPLIT_VALID && split != v1::SPLIT_TEST) {
      return Status::InvalidArgument(fmt::format("unknown split {}", static_cast<int>(split)));
    }
    sweep->metric = SplitMetric(split);
  } else {
    sweep->metric = own_name.empty() ? std::string(kDefaultMetric) : own_name;
  }
  sweep->maximize = sweep->metric == own_name && own_goal == MetricGoalName(MetricGoal::kMaximize);
  if (IsBuiltinMetric(sweep->metric) || sweep->metric == own_name) return Status::OK();
  ABLATE_ASSIGN_OR_RETURN(Rows rows, db.Query(R"sql(
      SELECT 1 FROM jobs j JOIN curve_points p ON p.job_id = j.id AND p.metric = ?2
      WHERE j.sweep_id = ?1 LIMIT 1)sql",
                                              sweep_id, sweep->metric));
  ABLATE_ASSIGN_OR_RETURN(bool found, rows.Next());
  if (found) return Status::OK();
  ABLATE_ASSIGN_OR_RETURN(std::vector<std::string> known, SweepMetrics(db, sweep_id));
  return Status::InvalidArgument(fmt::format(
      "sweep '{}' has no metric '{}'; its metrics are: {}", sweep->summary.name(), sweep->metric,
      known.empty() ? std::string("none yet") : fmt::format("{}", fmt::join(known, ", "))));
}

StatusOr<SweepData> LoadSweep(Database& db, const v1::SweepRef& ref, const std::string& metric,
                              v1::Split split) {
  StoreReader reader(&db);
  ABLATE_ASSIGN_OR_RETURN(int64_t sweep_id, reader.ResolveSweep(ref));
  SweepData sweep;
  {
    v1::GetStatusRequest request;
    request.mutable_sweep()->set_id(sweep_id);
    v1::GetStatusResponse status;
    ABLATE_RETURN_IF_ERROR(reader.GetStatus(request, &status));
    if (status.sweeps_size() != 1) return Status::NotFound(fmt::format("no sweep {}", sweep_id));
    sweep.summary = status.sweeps(0).sweep();
  }
  ABLATE_RETURN_IF_ERROR(ResolveMetric(db, sweep_id, metric, split, &sweep));
  std::string spec_text;
  {
    ABLATE_ASSIGN_OR_RETURN(Rows rows,
                            db.Query("SELECT spec_text FROM sweeps WHERE id = ?", sweep_id));
    ABLATE_ASSIGN_OR_RETURN(bool found, rows.Next());
    if (found) spec_text = rows.Text(0);
  }
  ABLATE_ASSIGN_OR_RETURN(Rows rows, db.Query(R"sql(
      SELECT id, state, factors_json, last_error, final_bpc IS NULL, final_bpc
      FROM (SELECT *, CASE ?2 WHEN 'train_bpc' THEN final_train_bpc
                              WHEN 'valid_bpc' THEN final_valid_bpc
                              WHEN 'test_bpc' THEN final_test_bpc END AS final_bpc
            FROM jobs WHERE sweep_id = ?1)
      ORDER BY ord)sql",
                                              sweep_id, sweep.metric));
  while (true) {
    ABLATE_ASSIGN_OR_RETURN(bool row, rows.Next());
    if (!row) break;
    SweepJob& job = sweep.jobs.emplace_back();
    job.id = rows.Int(0);
    const std::optional<JobState> state = ParseJobState(rows.Text(1));
    if (!state) {
      return Status::DataLoss(fmt::format("job {} has state '{}'", job.id, rows.Text(1)));
    }
    job.state = *state;
    job.factors_json = rows.Text(2);
    job.last_error = rows.Text(3);
    if (job.state == JobState::kDone && rows.Int(4) == 0) job.final_bpc = rows.Double(5);
    job.factors = json::parse(job.factors_json, nullptr, /*allow_exceptions=*/false);
    if (!job.factors.is_object()) {
      return Status::DataLoss(
          fmt::format("job {}: factors_json is not a JSON object: {}", job.id, job.factors_json));
    }
  }
  sweep.axes = AxesOf(spec_text, sweep.summary.name(), sweep.jobs);
  return sweep;
}

StatusOr<Grouping> ResolveGrouping(const SweepData& sweep,
                                   const google::protobuf::RepeatedPtrField<std::string>& names) {
  Grouping grouping;
  if (names.empty()) {
    grouping.per_job = true;
    for (const Axis& axis : sweep.axes) {
      grouping.columns.push_back(axis.short_name);
      grouping.keys.push_back(axis.key);
      grouping.axes.push_back(&axis);
    }
    return grouping;
  }
  std::vector<std::string> keys;
  for (const Axis& axis : sweep.axes) keys.push_back(axis.key);
  for (const std::string& name : names) {
    StatusOr<std::string> key = ResolveSettingKey(name, keys);
    if (!key.ok()) {
      std::vector<std::string> known;
      for (const Axis& axis : sweep.axes) known.push_back(axis.short_name);
      return Status::InvalidArgument(fmt::format(
          "'{}' is not a factor of sweep '{}'; its factors are: {}", name, sweep.summary.name(),
          known.empty() ? std::string("none") : fmt::format("{}", fmt::join(known, ", "))));
    }
    if (std::find(grouping.keys.begin(), grouping.keys.end(), *key) != grouping.keys.end()) {
      return Status::InvalidArgument(fmt::format("'{}' is named twice in the grouping", name));
    }
    grouping.columns.push_back(name);
    grouping.keys.push_back(*key);
    for (const Axis& axis : sweep.axes) {
      if (axis.key == *key) grouping.axes.push_back(&axis);
    }
  }
  return grouping;
}

bool Unfinished(const SweepJob& job) {
  return job.state == JobState::kPending || job.state == JobState::kRunning;
}

// Counts an unfinished job that has no value in the reply's left-out.
void LeaveOutUnfinished(const SweepJob& job, v1::LeftOut* left_out) {
  if (job.state == JobState::kPending) {
    left_out->set_pending(left_out->pending() + 1);
  } else {
    left_out->set_running(left_out->running() + 1);
  }
}

v1::JobNote* AddNote(const SweepJob& job, std::string detail,
                     google::protobuf::RepeatedPtrField<v1::JobNote>* notes) {
  v1::JobNote* note = notes->Add();
  note->set_job_id(job.id);
  note->set_state(JobStateName(job.state));
  note->set_factors_json(job.factors_json);
  note->set_detail(std::move(detail));
  return note;
}

// A counted job without a value: an unfinished one just has none yet.
void NoValue(const Counted& job, std::string why, v1::LeftOut* left_out) {
  if (job.unfinished) {
    LeaveOutUnfinished(*job.job, left_out);
  } else {
    AddNote(*job.job, std::move(why), left_out->mutable_missing());
  }
}

// The jobs the request counts, in hand-out order; the others are accounted
// for in `left_out`.
std::vector<Counted> SelectJobs(const SweepData& sweep, bool include_unfinished,
                                v1::LeftOut* left_out) {
  std::vector<Counted> counted;
  for (const SweepJob& job : sweep.jobs) {
    if (job.state == JobState::kDone) {
      counted.push_back({&job, false});
    } else if (Unfinished(job)) {
      if (include_unfinished) {
        counted.push_back({&job, true});
      } else {
        LeaveOutUnfinished(job, left_out);
      }
    } else if (job.state == JobState::kFailed) {
      AddNote(job, job.last_error, left_out->mutable_failed());
    } else {
      left_out->set_cancelled(left_out->cancelled() + 1);
    }
  }
  return counted;
}

// Where each value of a factor sorts: its place among the spec's values,
// then unknown values by their text.
std::pair<size_t, std::string> SortKey(const Axis* axis, const std::string& value) {
  auto it = std::find(axis->values.begin(), axis->values.end(), value);
  return {static_cast<size_t>(it - axis->values.begin()), value};
}

// A group's factor values, and its place in the reply's order.
struct GroupKey {
  std::vector<std::string> values;
  std::vector<std::pair<size_t, std::string>> order;
  int64_t job_id = 0;  // per-job rows: the job, so that equal factors stay apart

  bool operator<(const GroupKey& other) const {
    return std::tie(order, job_id) < std::tie(other.order, other.job_id);
  }
};

GroupKey KeyOf(const Grouping& grouping, const SweepJob& job) {
  GroupKey key;
  for (size_t i = 0; i < grouping.keys.size(); ++i) {
    auto it = job.factors.find(grouping.keys[i]);
    std::string value = it == job.factors.end() ? "null" : Dump(*it);
    key.order.push_back(SortKey(grouping.axes[i], value));
    key.values.push_back(std::move(value));
  }
  if (grouping.per_job) key.job_id = job.id;
  return key;
}

void SetColumns(const Grouping& grouping, google::protobuf::RepeatedPtrField<std::string>* columns,
                google::protobuf::RepeatedPtrField<std::string>* keys) {
  for (const std::string& column : grouping.columns) columns->Add(std::string(column));
  for (const std::string& key : grouping.keys) keys->Add(std::string(key));
}

// --- Results ------------------------------------------------------------------

// The job's value of the sweep's resolved metric at request.at, or nullopt
// with `why` set. A named metric's final value is its last point.
StatusOr<std::optional<double>> ValueOf(Database& db, const SweepData& sweep,
                                        const v1::ResultsRequest& request, const SweepJob& job,
                                        std::string* why) {
  const std::string& metric = sweep.metric;
  switch (request.at()) {
    case v1::VALUE_AT_BEST: {
      ABLATE_ASSIGN_OR_RETURN(
          Rows rows, db.Query(sweep.maximize ? "SELECT count(*), max(value) FROM curve_points "
                                               "WHERE job_id = ? AND metric = ?"
                                             : "SELECT count(*), min(value) FROM curve_points "
                                               "WHERE job_id = ? AND metric = ?",
                              job.id, metric));
      ABLATE_ASSIGN_OR_RETURN(bool row, rows.Next());
      if (row && rows.Int(0) > 0) return std::optional<double>(rows.Double(1));
      *why = fmt::format("no {} point", metric);
      return std::optional<double>();
    }
    case v1::VALUE_AT_STEP: {
      const int64_t step = request.step();
      std::optional<std::pair<int64_t, double>> below, above;
      {
        ABLATE_ASSIGN_OR_RETURN(Rows rows, db.Query(R"sql(
            SELECT step, value FROM curve_points WHERE job_id = ? AND metric = ? AND step <= ?
            ORDER BY step DESC LIMIT 1)sql",
                                                    job.id, metric, step));
        ABLATE_ASSIGN_OR_RETURN(bool row, rows.Next());
        if (row) below.emplace(rows.Int(0), rows.Double(1));
      }
      if (below && below->first == step) return std::optional<double>(below->second);
      {
        ABLATE_ASSIGN_OR_RETURN(Rows rows, db.Query(R"sql(
            SELECT step, value FROM curve_points WHERE job_id = ? AND metric = ? AND step >= ?
            ORDER BY step LIMIT 1)sql",
                                                    job.id, metric, step));
        ABLATE_ASSIGN_OR_RETURN(bool row, rows.Next());
        if (row) above.emplace(rows.Int(0), rows.Double(1));
      }
      if (below && above) {
        const double t = static_cast<double>(step - below->first) /
                         static_cast<double>(above->first - below->first);
        return std::optional<double>(below->second + t * (above->second - below->second));
      }
      if (below) {
        *why =
            fmt::format("the {} curve ends at step {}, before step {}", metric, below->first, step);
      } else if (above) {
        *why = fmt::format("the {} curve starts at step {}, after step {}", metric, above->first,
                           step);
      } else {
        *why = fmt::format("no {} point", metric);
      }
      return std::optional<double>();
    }
    default: {
      if (job.final_bpc) return job.final_bpc;
      ABLATE_ASSIGN_OR_RETURN(Rows rows, db.Query(R"sql(
          SELECT value FROM curve_points WHERE job_id = ? AND metric = ?
          ORDER BY step DESC LIMIT 1)sql",
                                                  job.id, metric));
      ABLATE_ASSIGN_OR_RETURN(bool row, rows.Next());
      if (row) return std::optional<double>(rows.Double(0));
      *why = fmt::format("no {} point", metric);
      return std::optional<double>();
    }
  }
}

struct GroupValues {
  std::vector<double> values;
  std::vector<int64_t> job_ids;
  int64_t unfinished = 0;
};

void Summarise(const GroupValues& group, v1::ResultRow* row) {
  const Summary s = Summarize(group.values);
  row->set_n(s.n);
  row->set_mean(s.mean);
  row->set_stddev(s.stddev);
  row->set_min(s.min);
  row->set_max(s.max);
  row->set_ci95(s.ci95);
  row->set_unfinished(group.unfinished);
  for (int64_t id : group.job_ids) row->add_job_ids(id);
}

// Where a job last ran, at what precision, and its wall time so far.
struct JobRun {
  std::string device;     // as the worker registered it
  std::string precision;  // what the recurrent products ran at (RunPrecision)
  double seconds = 0;
};

// The precision a job ran at: the stored config's train.precision (absent:
// the default) on a CUDA device, fp32 elsewhere. A name this build does not
// know (a newer coordinator wrote it) is shown as stored.
std::string RunPrecision(const std::string& device, const std::string& stored) {
  if (!IsCudaDevice(device)) return PrecisionName(Precision::kFp32);
  if (stored.empty()) return PrecisionName(TrainConfig().precision);
  StatusOr<Precision> parsed = ParsePrecision(stored);
  return parsed.ok() ? PrecisionName(*parsed) : stored;
}

// Every job of the sweep that a worker has run (leased), by id. The wall
// time is a done job's final one, else its latest point's (0 without one).
StatusOr<std::map<int64_t, JobRun>> LoadRuns(Database& db, int64_t sweep_id) {
  ABLATE_ASSIGN_OR_RETURN(Rows rows, db.Query(R"sql(
      SELECT j.id, w.device, json_extract(j.config_json, '$.train.precision'),
             CASE WHEN j.state = 'done' AND j.final_wall_time IS NOT NULL
                  THEN j.final_wall_time
                  ELSE (SELECT max(p.wall_time) FROM curve_points p WHERE p.job_id = j.id)
             END
      FROM jobs j JOIN workers w ON w.id = j.lease_owner
      WHERE j.sweep_id = ?)sql",
                                              sweep_id));
  std::map<int64_t, JobRun> runs;
  while (true) {
    ABLATE_ASSIGN_OR_RETURN(bool row, rows.Next());
    if (!row) break;
    JobRun& run = runs[rows.Int(0)];
    run.device = rows.Text(1);
    run.precision = RunPrecision(run.device, rows.Text(2));
    run.seconds = rows.Double(3);
  }
  return runs;
}

// Sums runs by device and precision, in DeviceUse's order: by device, then
// fp32, tf32, bf16 (and names this build lacks after them).
class DeviceUseTally {
 public:
  void Add(const JobRun& run) {
    Use& use = uses_[{run.device, Rank(run.precision), run.precision}];
    ++use.jobs;
    use.seconds += run.seconds;
  }

  void Fill(google::protobuf::RepeatedPtrField<v1::DeviceUse>* out) const {
    for (const auto& [key, use] : uses_) {
      v1::DeviceUse* entry = out->Add();
      entry->set_device(std::get<0>(key));
      entry->set_precision(std::get<2>(key));
      entry->set_jobs(use.jobs);
      entry->set_hours(use.seconds / 3600);
    }
  }

 private:
  struct Use {
    int64_t jobs = 0;
    double seconds = 0;
  };

  static int Rank(const std::string& precision) {
    StatusOr<Precision> parsed = ParsePrecision(precision);
    return parsed.ok() ? static_cast<int>(*parsed) : std::numeric_limits<int>::max();
  }

  std::map<std::tuple<std::string, int, std::string>, Use> uses_;
};

Status FillFacts(Database& db, int64_t sweep_id, const std::map<int64_t, JobRun>& runs,
                 v1::SweepFacts* facts) {
  ABLATE_ASSIGN_OR_RETURN(Rows rows, db.Query(R"sql(
      SELECT IFNULL(min(started_ms), 0), IFNULL(max(finished_ms), 0)
      FROM jobs WHERE sweep_id = ?)sql",
                                              sweep_id));
  ABLATE_ASSIGN_OR_RETURN(bool row, rows.Next());
  if (!row) return Status::Internal("no facts row");
  facts->set_first_started_ms(rows.Int(0));
  facts->set_last_finished_ms(rows.Int(1));
  double cpu_seconds = 0, gpu_seconds = 0;
  DeviceUseTally tally;
  for (const auto& [id, run] : runs) {
    (IsCudaDevice(run.device) ? gpu_seconds : cpu_seconds) += run.seconds;
    tally.Add(run);
  }
  facts->set_cpu_hours(cpu_seconds / 3600);
  facts->set_gpu_hours(gpu_seconds / 3600);
  tally.Fill(facts->mutable_ran_on());
  return Status::OK();
}

// --- Curves -------------------------------------------------------------------

// A counted job's curve: its steps are one of the distinct step schedules
// (jobs of a sweep mostly share one), its values its own.
struct JobCurve {
  size_t schedule = 0;
  std::vector<double> values;
};

// Adds `curve` at every grid step within its first and last step, linearly
// interpolated between its neighbouring points.
void Accumulate(const std::vector<int64_t>& steps, const std::vector<double>& values,
                const std::vector<int64_t>& grid, std::vector<RunningSummary>* cells) {
  size_t g = std::lower_bound(grid.begin(), grid.end(), steps.front()) - grid.begin();
  size_t i = 0;
  for (; g < grid.size() && grid[g] <= steps.back(); ++g) {
    const int64_t step = grid[g];
    while (steps[i] < step) ++i;  // steps[i] >= step now; steps[i - 1] < step
    double value = values[i];
    if (steps[i] != step) {
      const double t =
          static_cast<double>(step - steps[i - 1]) / static_cast<double>(steps[i] - steps[i - 1]);
      value = values[i - 1] + t * (values[i] - values[i - 1]);
    }
    (*cells)[g].Add(value);
  }
}

std::vector<int64_t> Grid(const std::vector<std::vector<int64_t>>& schedules, int32_t points) {
  std::vector<int64_t> grid;
  if (schedules.empty()) return grid;
  if (points > 0) {
    int64_t first = std::numeric_limits<int64_t>::max();
    int64_t last = std::numeric_limits<int64_t>::min();
    for (const auto& steps : schedules) {
      first = std::min(first, steps.front());
      last = std::max(last, steps.back());
    }
    if (points == 1) return {last};
    for (int32_t i = 0; i < points; ++i) {
      grid.push_back(first + std::llround(static_cast<double>(last - first) * i / (points - 1)));
    }
  } else {
    for (const auto& steps : schedules) grid.insert(grid.end(), steps.begin(), steps.end());
    std::sort(grid.begin(), grid.end());
  }
  grid.erase(std::unique(grid.begin(), grid.end()), grid.end());
  return grid;
}

}  // namespace

StatusOr<v1::ResultsResponse> QueryResults(Database& db, const v1::ResultsRequest& request) {
  if (request.at() == v1::VALUE_AT_STEP && request.step() < 0) {
    return Status::InvalidArgument(fmt::format("step {} is negative", request.step()));
  }
  ReadSnapshot snapshot(db);
  ABLATE_RETURN_IF_ERROR(snapshot.Begin());
  ABLATE_ASSIGN_OR_RETURN(SweepData sweep,
                          LoadSweep(db, request.sweep(), request.metric(), request.split()));
  ABLATE_ASSIGN_OR_RETURN(Grouping grouping, ResolveGrouping(sweep, request.group_by()));
  v1::ResultsResponse response;
  *response.mutable_sweep() = sweep.summary;
  response.set_metric(sweep.metric);
  response.set_maximize(sweep.maximize);
  SetColumns(grouping, response.mutable_columns(), response.mutable_column_keys());
  v1::LeftOut* left_out = response.mutable_left_out();

  std::map<GroupKey, GroupValues> groups;
  for (const Counted& job : SelectJobs(sweep, request.include_unfinished(), left_out)) {
    std::string why;
    ABLATE_ASSIGN_OR_RETURN(std::optional<double> value,
                            ValueOf(db, sweep, request, *job.job, &why));
    if (!value) {
      NoValue(job, std::move(why), left_out);
      continue;
    }
    GroupValues& group = groups[KeyOf(grouping, *job.job)];
    group.values.push_back(*value);
    group.job_ids.push_back(job.job->id);
    group.unfinished += job.unfinished ? 1 : 0;
  }

  ABLATE_ASSIGN_OR_RETURN(const auto runs, LoadRuns(db, sweep.summary.id()));
  for (const auto& [key, group] : groups) {
    v1::ResultRow* row = response.add_rows();
    for (const std::string& value : key.values) row->add_values_json(value);
    Summarise(group, row);
    DeviceUseTally tally;
    for (int64_t id : group.job_ids) {
      if (auto run = runs.find(id); run != runs.end()) tally.Add(run->second);
    }
    tally.Fill(row->mutable_ran_on());
    if (request.with_config()) {
      ABLATE_ASSIGN_OR_RETURN(
          Rows rows, db.Query("SELECT config_json FROM jobs WHERE id = ?", group.job_ids.front()));
      ABLATE_ASSIGN_OR_RETURN(bool found, rows.Next());
      if (found) row->set_config_json(rows.Text(0));
    }
  }
  ABLATE_RETURN_IF_ERROR(FillFacts(db, sweep.summary.id(), runs, response.mutable_facts()));
  return response;
}

namespace {

// The counted jobs' curves of one metric, grouped, with the step schedules
// they share (jobs mostly share one).
struct CurveSet {
  struct Member {
    JobCurve curve;
    bool unfinished;
  };
  std::vector<std::vector<int64_t>> schedules;
  std::map<GroupKey, std::vector<Member>> groups;
};

// Reads every counted curve in one pass; a job without a point of the metric
// goes to the left-out list.
StatusOr<CurveSet> ReadCurves(Database& db, const SweepData& sweep, const Grouping& grouping,
                              const v1::CurvesRequest& request, v1::LeftOut* left_out) {
  CurveSet set;
  std::map<std::vector<int64_t>, size_t> schedule_index;
  const std::string& metric = sweep.metric;
  std::vector<int64_t> steps;
  for (const Counted& job : SelectJobs(sweep, request.include_unfinished(), left_out)) {
    // The previous job's length is a good guess.
    const size_t expected = steps.size();
    steps.clear();
    JobCurve curve;
    curve.values.reserve(expected);
    ABLATE_ASSIGN_OR_RETURN(
        Rows rows,
        db.Query(
            "SELECT step, value FROM curve_points WHERE job_id = ? AND metric = ? ORDER BY step",
            job.job->id, metric));
    while (true) {
      ABLATE_ASSIGN_OR_RETURN(bool row, rows.Next());
      if (!row) break;
      steps.push_back(rows.Int(0));
      curve.values.push_back(rows.Double(1));
    }
    if (steps.empty()) {
      NoValue(job, fmt::format("no {} point", metric), left_out);
      continue;
    }
    if (set.schedules.empty() || set.schedules.back() != steps) {
      auto [it, added] = schedule_index.emplace(steps, set.schedules.size());
      if (added) set.schedules.push_back(steps);
      curve.schedule = it->second;
    } else {
      curve.schedule = set.schedules.size() - 1;
    }
    set.groups[KeyOf(grouping, *job.job)].push_back({std::move(curve), job.unfinished});
  }
  return set;
}

// One group's curves averaged on `grid`, into `group`.
void Average(const std::vector<CurveSet::Member>& members,
             const std::vector<std::vector<int64_t>>& schedules, const std::vector<int64_t>& grid,
             v1::CurveGroup* group) {
  std::vector<RunningSummary> stats(grid.size());
  group->set_jobs(static_cast<int64_t>(members.size()));
  int64_t unfinished = 0;
  for (const CurveSet::Member& member : members) {
    Accumulate(schedules[member.curve.schedule], member.curve.values, grid, &stats);
    unfinished += member.unfinished ? 1 : 0;
  }
  group->set_unfinished(unfinished);
  for (const RunningSummary& cell : stats) {
    group->add_n(cell.n());
    group->add_mean(cell.mean());
    group->add_stddev(cell.stddev());
    group->add_min(cell.min());
    group->add_max(cell.max());
  }
}

}  // namespace

StatusOr<v1::CurvesResponse> QueryCurves(Database& db, const v1::CurvesRequest& request) {
  if (request.points() < 0) {
    return Status::InvalidArgument(fmt::format("{} points is negative", request.points()));
  }
  ReadSnapshot snapshot(db);
  ABLATE_RETURN_IF_ERROR(snapshot.Begin());
  ABLATE_ASSIGN_OR_RETURN(SweepData sweep,
                          LoadSweep(db, request.sweep(), request.metric(), request.split()));
  ABLATE_ASSIGN_OR_RETURN(Grouping grouping, ResolveGrouping(sweep, request.group_by()));
  v1::CurvesResponse response;
  *response.mutable_sweep() = sweep.summary;
  response.set_metric(sweep.metric);
  SetColumns(grouping, response.mutable_columns(), response.mutable_column_keys());
  ABLATE_ASSIGN_OR_RETURN(const CurveSet curves,
                          ReadCurves(db, sweep, grouping, request, response.mutable_left_out()));

  const std::vector<int64_t> grid = Grid(curves.schedules, request.points());
  const auto cells = static_cast<int64_t>(curves.groups.size() * grid.size());
  if (cells > kMaxCurveCells) {
    return Status::InvalidArgument(fmt::format(
        "{} groups x {} steps is {} points, more than {}; ask for fewer steps (points) or "
        "group by fewer factors",
        curves.groups.size(), grid.size(), cells, kMaxCurveCells));
  }
  response.mutable_steps()->Add(grid.begin(), grid.end());
  for (const auto& [key, members] : curves.groups) {
    v1::CurveGroup* group = response.add_groups();
    for (const std::string& value : key.values) group->add_values_json(value);
    Average(members, curves.schedules, grid, group);
  }
  return response;
}

}  // namespace ablate
