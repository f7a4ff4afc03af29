// How `ablate results` and `ablate curves` spell their requests and print
// their replies: the flag values they accept, the table, CSV and JSON they
// write, and the footer that accounts for every job a reply did not count.
//
// All functions are pure: the same reply prints the same text, whether it
// came from a database file or from a coordinator.
#ifndef ABLATE_CLI_RESULTS_FORMAT_H_
#define ABLATE_CLI_RESULTS_FORMAT_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/status.h"
#include "proto/ablate.pb.h"

namespace ablate {

// --metric's help text.
inline constexpr const char* kMetricHelp =
    "Any metric the sweep has (train_bpc, valid_bpc, test_bpc, a program's valid/loss); "
    "default: the sweep's metric (spec metric.name), else valid_bpc";

// --metric: any metric name ("valid_bpc", "valid/loss"), or empty for the
// sweep's own metric (spec metric.name, else valid_bpc), which the reply
// names. InvalidArgument for a name CheckMetricName refuses.
Status ParseMetric(const std::string& metric, std::string* name);
// The metric a request names: its metric, else its split's ("valid_bpc").
std::string MetricName(const v1::ResultsRequest& request);

// --at: "final", "best" or "step:N" (N >= 0); sets request->at and step.
Status ParseAt(const std::string& at, v1::ResultsRequest* request);

// --metric and --at into the request. Once a reply names its metric,
// callers set it in the request (request->set_metric) for the printers.
Status ParseValueFlags(const std::string& metric, const std::string& at,
                       v1::ResultsRequest* request);

// --group-by: comma-separated factors, or "none" for one row per job (an
// empty list). InvalidArgument for an empty name.
StatusOr<std::vector<std::string>> ParseGroupBy(const std::string& group_by);

// `results` as an aligned table: one line naming the sweep and the metric,
// then one row per group (factors, n, mean, std, min, max, ci95; a group with
// unfinished jobs' latest values has its n marked "*"), or per job (job id,
// factors, value). Then LeftOutFooter's lines and RanOnFooter's, after an
// empty line.
std::string ResultsTable(const v1::ResultsRequest& request, const v1::ResultsResponse& response);
// The same rows as CSV (numbers in full precision, empty for NaN); with
// request.include_unfinished an "unfinished" column counts marked values.
std::string ResultsCsv(const v1::ResultsRequest& request, const v1::ResultsResponse& response);
// A JSON list, one object per row (and per line):
//   {"group": {"layer_norm": true}, "n": 9, "mean": m, "std": s, "min": a,
//    "max": b, "ci95": h, "unfinished": 0, "jobs": [ids],
//    "ran_on": [{"device": "cuda:0", "precision": "tf32", "jobs": 9, "hours": x}]}
// with the group keys as the request named them (per job: every factor by
// its short name, and "job_id"). "ran_on" is the row's jobs by the device
// that last ran them and the precision they ran at. NaN is null.
std::string ResultsJson(const v1::ResultsRequest& request, const v1::ResultsResponse& response);

// `curves` as CSV: group columns, step, n, mean, std, min, max; one line per
// group and grid step (empty cells where no curve of the group reaches it).
std::string CurvesCsv(const v1::CurvesResponse& response);
// A JSON list, one object per group (and per line), steps and statistics as
// parallel lists:
//   {"group": {"cell": "gru"}, "jobs": 6, "unfinished": 0, "steps": [...],
//    "n": [...], "mean": [...], "std": [...], "min": [...], "max": [...]}
std::string CurvesJson(const v1::CurvesResponse& response);

// Lines, each ending in "\n", that account for the jobs a reply left out:
// unfinished jobs not included (and how to include them) or without a value
// yet, cancelled ones, every failed job with its last error, and counted
// jobs without a value with the reason. Empty when every job counted.
// `what` names the value ("valid_bpc at step 500").
std::string LeftOutFooter(const v1::LeftOut& left_out, bool include_unfinished,
                          const std::string& what);

// One line, ending in "\n", per device and precision the sweep's jobs ran
// on: "ran on: cuda:0 (NVIDIA H100 80GB HBM3), tf32: 6 jobs, 0.42 h". Empty
// when no job has run.
std::string RanOnFooter(const v1::SweepFacts& facts);
// "cuda:0 (NVIDIA H100 80GB HBM3), tf32: 6 jobs, 0.42 h": the device as the
// worker registered it, the precision, the jobs and their wall-time hours.
std::string DeviceUseText(const v1::DeviceUse& use);

// "valid_bpc (final)", "valid_bpc (best)", "valid_bpc at step 500".
std::string ValueName(const v1::ResultsRequest& request);

// The display form of a factor value given as JSON text: strings bare,
// anything else as JSON ("gru", "true", "3").
std::string FactorText(const std::string& value_json);

// Pieces of every results-like output. A value with 4 decimals, "-" for
// NaN.
std::string Fixed(double value);
// The shortest text that reads back as the same double; empty for NaN.
std::string Exact(double value);
// A JSON number, null for NaN or infinity.
nlohmann::ordered_json Number(double value);
// A factor's value as JSON (its text when it is not JSON).
nlohmann::ordered_json FactorJson(const std::string& value_json);
// "1 job", "3 jobs".
std::string Plural(int64_t n, const char* noun);

}  // namespace ablate

#endif  // ABLATE_CLI_RESULTS_FORMAT_H_
