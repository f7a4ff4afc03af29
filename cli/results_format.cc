#include "cli/results_format.h"

#include <fmt/format.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "cli/table.h"
#include "common/metric.h"

namespace ablate {

namespace {

using nlohmann::ordered_json;

// Failed or value-less jobs listed one by one in a footer, at most.
constexpr int kListedJobs = 10;
// A failure's error is cut to its first line and this many characters.
constexpr size_t kErrorChars = 200;

// "cell=gru, layer_norm=true, init=xavier" from a job's factors_json.
std::string FactorsText(const std::string& factors_json) {
  ordered_json factors = ordered_json::parse(factors_json, nullptr, /*allow_exceptions=*/false);
  if (!factors.is_object()) return factors_json;
  std::string out;
  for (const auto& item : factors.items()) {
    const std::string& key = item.key();
    const size_t dot = key.find('.');
    out += fmt::format(
        "{}{}={}", out.empty() ? "" : ", ", dot == std::string::npos ? key : key.substr(dot + 1),
        item.value().is_string() ? item.value().get<std::string>() : item.value().dump());
  }
  return out;
}

std::string FirstLine(const std::string& text) {
  std::string line = text.substr(0, text.find('\n'));
  if (line.size() > kErrorChars) line = line.substr(0, kErrorChars) + "...";
  return line;
}

void ListJobs(const google::protobuf::RepeatedPtrField<v1::JobNote>& notes, std::string* out) {
  int listed = 0;
  for (const v1::JobNote& note : notes) {
    if (listed++ == kListedJobs) {
      *out += fmt::format("  ... and {} more\n", notes.size() - kListedJobs);
      break;
    }
    *out += fmt::format("  job {} ({}): {}\n", note.job_id(), FactorsText(note.factors_json()),
                        FirstLine(note.detail()));
  }
}

bool PerJob(const v1::ResultsRequest& request) { return request.group_by().empty(); }

// A JSON list with one item per line: compact, yet a person can read it and
// a line-oriented tool can split it.
std::string OnePerLine(const ordered_json& list) {
  if (list.empty()) return "[]\n";
  std::string out = "[\n";
  for (size_t i = 0; i < list.size(); ++i) {
    out += list[i].dump(-1, ' ', false, ordered_json::error_handler_t::replace);
    out += i + 1 < list.size() ? ",\n" : "\n";
  }
  return out + "]\n";
}

int64_t UnfinishedValues(const v1::ResultsResponse& response) {
  int64_t total = 0;
  for (const v1::ResultRow& row : response.rows()) total += row.unfinished();
  return total;
}

}  // namespace

std::string Fixed(double value) {
  return std::isfinite(value) ? fmt::format("{:.4f}", value) : "-";
}

std::string Exact(double value) { return std::isfinite(value) ? fmt::format("{}", value) : ""; }

nlohmann::ordered_json Number(double value) {
  return std::isfinite(value) ? nlohmann::ordered_json(value) : nlohmann::ordered_json(nullptr);
}

nlohmann::ordered_json FactorJson(const std::string& value_json) {
  nlohmann::ordered_json value =
      nlohmann::ordered_json::parse(value_json, nullptr, /*allow_exceptions=*/false);
  return value.is_discarded() ? nlohmann::ordered_json(value_json) : value;
}

std::string Plural(int64_t n, const char* noun) {
  return fmt::format("{} {}{}", n, noun, n == 1 ? "" : "s");
}

Status ParseValueFlags(const std::string& metric, const std::string& at,
                       v1::ResultsRequest* request) {
  ABLATE_RETURN_IF_ERROR(ParseMetric(metric, request->mutable_metric()));
  return ParseAt(at, request);
}

Status ParseMetric(const std::string& metric, std::string* name) {
  if (!metric.empty()) {
    Status valid = CheckMetricName(metric);
    if (!valid.ok()) return Status::InvalidArgument("--metric: " + valid.message());
  }
  *name = metric;
  return Status::OK();
}

std::string MetricName(const v1::ResultsRequest& request) {
  if (!request.metric().empty()) return request.metric();
  switch (request.split()) {
    case v1::SPLIT_TRAIN:
      return "train_bpc";
    case v1::SPLIT_TEST:
      return "test_bpc";
    default:
      return kDefaultMetric;
  }
}

Status ParseAt(const std::string& at, v1::ResultsRequest* request) {
  if (at == "final") {
    request->set_at(v1::VALUE_AT_FINAL);
    return Status::OK();
  }
  if (at == "best") {
    request->set_at(v1::VALUE_AT_BEST);
    return Status::OK();
  }
  const std::string prefix = "step:";
  const std::string digits = at.substr(std::min(at.size(), prefix.size()));
  if (at.compare(0, prefix.size(), prefix) == 0 && !digits.empty() && digits.size() <= 18 &&
      digits.find_first_not_of("0123456789") == std::string::npos) {
    request->set_at(v1::VALUE_AT_STEP);
    request->set_step(std::stoll(digits));
    return Status::OK();
  }
  return Status::InvalidArgument("--at: \"" + at + "\" is not final, best or step:N");
}

StatusOr<std::vector<std::string>> ParseGroupBy(const std::string& group_by) {
  std::vector<std::string> names;
  if (group_by == "none") return names;
  size_t start = 0;
  while (true) {
    const size_t comma = group_by.find(',', start);
    std::string name = group_by.substr(start, comma - start);
    if (name.empty()) {
      return Status::InvalidArgument("--group-by: \"" + group_by +
                                     "\" has an empty factor name; write FACTOR[,FACTOR...] or "
                                     "none");
    }
    names.push_back(std::move(name));
    if (comma == std::string::npos) return names;
    start = comma + 1;
  }
}

std::string ValueName(const v1::ResultsRequest& request) {
  const std::string metric = MetricName(request);
  switch (request.at()) {
    case v1::VALUE_AT_BEST:
      return metric + " (best)";
    case v1::VALUE_AT_STEP:
      return fmt::format("{} at step {}", metric, request.step());
    default:
      return metric + " (final)";
  }
}

std::string FactorText(const std::string& value_json) {
  nlohmann::json value = nlohmann::json::parse(value_json, nullptr, /*allow_exceptions=*/false);
  return value.is_discarded() ? value_json : FactorCell(value);
}

std::string ResultsTable(const v1::ResultsRequest& request, const v1::ResultsResponse& response) {
  const v1::SweepSummary& sweep = response.sweep();
  std::string out;
  std::vector<std::string> header;
  if (PerJob(request)) {
    out =
        fmt::format("sweep {} (id {}): {} per job\n", sweep.name(), sweep.id(), ValueName(request));
    header.push_back("job");
    header.insert(header.end(), response.columns().begin(), response.columns().end());
    header.push_back(MetricName(request));
  } else {
    out = fmt::format("sweep {} (id {}): {}, averaged over every other factor and seed\n",
                      sweep.name(), sweep.id(), ValueName(request));
    header.assign(response.columns().begin(), response.columns().end());
    for (const char* column : {"n", "mean", "std", "min", "max", "ci95"}) {
      header.push_back(column);
    }
  }
  Table table(header);
  for (const v1::ResultRow& row : response.rows()) {
    std::vector<std::string> cells;
    const std::string mark = row.unfinished() > 0 ? "*" : "";
    if (PerJob(request)) cells.push_back(std::to_string(row.job_ids(0)));
    for (const std::string& value : row.values_json()) cells.push_back(FactorText(value));
    if (PerJob(request)) {
      cells.push_back(Fixed(row.mean()) + mark);
    } else {
      cells.push_back(std::to_string(row.n()) + mark);
      for (double v : {row.mean(), row.stddev(), row.min(), row.max(), row.ci95()}) {
        cells.push_back(Fixed(v));
      }
    }
    table.AddRow(std::move(cells));
  }
  out += table.empty() ? "no job has a value yet\n" : table.ToText();
  std::string footer;
  if (const int64_t marked = UnfinishedValues(response); marked > 0) {
    footer += fmt::format("* includes the latest values of {} (not final)\n",
                          Plural(marked, "unfinished job"));
  }
  footer += LeftOutFooter(response.left_out(), request.include_unfinished(), ValueName(request));
  footer += RanOnFooter(response.facts());
  if (!footer.empty()) out += "\n" + footer;
  return out;
}

std::string ResultsCsv(const v1::ResultsRequest& request, const v1::ResultsResponse& response) {
  std::vector<std::string> header;
  if (PerJob(request)) header.push_back("job_id");
  header.insert(header.end(), response.columns().begin(), response.columns().end());
  if (PerJob(request)) {
    header.push_back(MetricName(request));
  } else {
    for (const char* column : {"n", "mean", "std", "min", "max", "ci95"}) header.push_back(column);
  }
  if (request.include_unfinished()) header.push_back("unfinished");
  Table table(header);
  for (const v1::ResultRow& row : response.rows()) {
    std::vector<std::string> cells;
    if (PerJob(request)) cells.push_back(std::to_string(row.job_ids(0)));
    for (const std::string& value : row.values_json()) cells.push_back(FactorText(value));
    if (PerJob(request)) {
      cells.push_back(Exact(row.mean()));
    } else {
      cells.push_back(std::to_string(row.n()));
      for (double v : {row.mean(), row.stddev(), row.min(), row.max(), row.ci95()}) {
        cells.push_back(Exact(v));
      }
    }
    if (request.include_unfinished()) cells.push_back(std::to_string(row.unfinished()));
    table.AddRow(std::move(cells));
  }
  return table.ToCsv();
}

std::string ResultsJson(const v1::ResultsRequest& request, const v1::ResultsResponse& response) {
  ordered_json list = ordered_json::array();
  for (const v1::ResultRow& row : response.rows()) {
    ordered_json group = ordered_json::object();
    for (int i = 0; i < row.values_json_size() && i < response.columns_size(); ++i) {
      group[response.columns(i)] = FactorJson(row.values_json(i));
    }
    ordered_json item;
    item["group"] = std::move(group);
    if (PerJob(request)) item["job_id"] = row.job_ids(0);
    item["n"] = row.n();
    item["mean"] = Number(row.mean());
    item["std"] = Number(row.stddev());
    item["min"] = Number(row.min());
    item["max"] = Number(row.max());
    item["ci95"] = Number(row.ci95());
    item["unfinished"] = row.unfinished();
    item["jobs"] = std::vector<int64_t>(row.job_ids().begin(), row.job_ids().end());
    item["ran_on"] = ordered_json::array();
    for (const v1::DeviceUse& use : row.ran_on()) {
      item["ran_on"].push_back({{"device", use.device()},
                                {"precision", use.precision()},
                                {"jobs", use.jobs()},
                                {"hours", use.hours()}});
    }
    list.push_back(std::move(item));
  }
  return OnePerLine(list);
}

std::string CurvesCsv(const v1::CurvesResponse& response) {
  std::vector<std::string> header(response.columns().begin(), response.columns().end());
  for (const char* column : {"step", "n", "mean", "std", "min", "max"}) header.push_back(column);
  Table table(header);
  for (const v1::CurveGroup& group : response.groups()) {
    for (int i = 0; i < response.steps_size(); ++i) {
      std::vector<std::string> cells;
      for (const std::string& value : group.values_json()) cells.push_back(FactorText(value));
      cells.push_back(std::to_string(response.steps(i)));
      cells.push_back(std::to_string(group.n(i)));
      for (double v : {group.mean(i), group.stddev(i), group.min(i), group.max(i)}) {
        cells.push_back(Exact(v));
      }
      table.AddRow(std::move(cells));
    }
  }
  return table.ToCsv();
}

std::string CurvesJson(const v1::CurvesResponse& response) {
  ordered_json list = ordered_json::array();
  for (const v1::CurveGroup& group : response.groups()) {
    ordered_json values = ordered_json::object();
    for (int i = 0; i < group.values_json_size() && i < response.columns_size(); ++i) {
      values[response.columns(i)] = FactorJson(group.values_json(i));
    }
    ordered_json item;
    item["group"] = std::move(values);
    item["jobs"] = group.jobs();
    item["unfinished"] = group.unfinished();
    item["steps"] = std::vector<int64_t>(response.steps().begin(), response.steps().end());
    item["n"] = std::vector<int64_t>(group.n().begin(), group.n().end());
    auto series = [](const google::protobuf::RepeatedField<double>& values) {
      ordered_json out = ordered_json::array();
      for (double v : values) out.push_back(Number(v));
      return out;
    };
    item["mean"] = series(group.mean());
    item["std"] = series(group.stddev());
    item["min"] = series(group.min());
    item["max"] = series(group.max());
    list.push_back(std::move(item));
  }
  return OnePerLine(list);
}

std::string RanOnFooter(const v1::SweepFacts& facts) {
  std::string out;
  for (const v1::DeviceUse& use : facts.ran_on()) out += "ran on: " + DeviceUseText(use) + "\n";
  return out;
}

std::string DeviceUseText(const v1::DeviceUse& use) {
  return fmt::format("{}, {}: {}, {:.2f} h", use.device(), use.precision(),
                     Plural(use.jobs(), "job"), use.hours());
}

std::string LeftOutFooter(const v1::LeftOut& left_out, bool include_unfinished,
                          const std::string& what) {
  std::string out;
  const int64_t unfinished = left_out.running() + left_out.pending();
  if (unfinished > 0) {
    std::string counts;
    if (left_out.running() > 0) counts = fmt::format("{} running", left_out.running());
    if (left_out.pending() > 0) {
      counts += fmt::format("{}{} pending", counts.empty() ? "" : " and ", left_out.pending());
    }
    const char* jobs = unfinished == 1 ? "job" : "jobs";
    if (include_unfinished) {
      out +=
          fmt::format("{} {} {} no {} yet\n", counts, jobs, unfinished == 1 ? "has" : "have", what);
    } else {
      out += fmt::format("{} {} not included; --include-unfinished uses their latest point\n",
                         counts, jobs);
    }
  }
  if (left_out.cancelled() > 0) {
    out += fmt::format("{} not included\n", Plural(left_out.cancelled(), "cancelled job"));
  }
  if (left_out.failed_size() > 0) {
    out += fmt::format("{} not included:\n", Plural(left_out.failed_size(), "failed job"));
    ListJobs(left_out.failed(), &out);
  }
  if (left_out.missing_size() > 0) {
    out += fmt::format("{} no {}:\n",
                       Plural(left_out.missing_size(), "done job") +
                           (left_out.missing_size() == 1 ? " has" : " have"),
                       what);
    ListJobs(left_out.missing(), &out);
  }
  return out;
}

}  // namespace ablate
