#include "cli/status_view.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "cli/table.h"

namespace ablate {

namespace {

// How far back rates look: long enough to smooth, short enough to follow a
// change in the number of workers.
constexpr auto kWindow = std::chrono::seconds(120);
constexpr int kBarWidth = 30;

double Seconds(StatusView::Clock::duration d) { return std::chrono::duration<double>(d).count(); }

int64_t FinishedJobs(const v1::JobCounts& c) { return c.done() + c.failed() + c.cancelled(); }

}  // namespace

void StatusView::Update(const v1::GetStatusResponse& status, Clock::time_point now,
                        int64_t now_ms) {
  latest_ = status;
  updated_ = true;
  now_ = now;
  now_ms_ = now_ms;
  // Values change in jumps (a job's step arrives with its heartbeats), so a
  // sample marks when a value was first seen.
  auto record = [&](std::deque<Sample>& samples, int64_t value) {
    // A value going back (a job started over on another worker) voids the past.
    if (!samples.empty() && samples.back().value > value) samples.clear();
    if (samples.empty() || samples.back().value != value) samples.push_back({now, value});
    while (samples.size() > 2 && now - samples[1].time > kWindow) samples.pop_front();
  };
  std::set<int64_t> running;
  for (const v1::SweepStatus& sweep : status.sweeps()) {
    record(sweep_finished_[sweep.sweep().id()], FinishedJobs(sweep.sweep().counts()));
    for (const v1::RunningJob& job : sweep.running()) {
      record(job_steps_[job.job_id()], job.step());
      running.insert(job.job_id());
    }
  }
  for (auto it = job_steps_.begin(); it != job_steps_.end();) {
    it = running.count(it->first) ? std::next(it) : job_steps_.erase(it);
  }
}

double StatusView::StepRate(const v1::RunningJob& job) const {
  // The worker's own measure, once a heartbeat brought it.
  if (job.bytes_per_s() > 0 && job.bytes_per_step() > 0) {
    return job.bytes_per_s() / double(job.bytes_per_step());
  }
  // The rate between the first and the latest change seen, once there are two.
  auto it = job_steps_.find(job.job_id());
  if (it != job_steps_.end() && it->second.size() > 1) {
    const Sample& first = it->second.front();
    const Sample& last = it->second.back();
    const double elapsed = Seconds(last.time - first.time);
    if (elapsed > 0) return double(last.value - first.value) / elapsed;
  }
  // One answer only: the rate since the lease began (too low for a job that
  // resumed from a checkpoint, which is the safe side for an ETA).
  const double leased = double(now_ms_ - job.started_ms()) / 1000;
  if (job.step() > 0 && leased > 0) return double(job.step()) / leased;
  return -1;
}

double StatusView::JobEta(const v1::RunningJob& job) const {
  const double rate = StepRate(job);
  // A program job's budget is unknown until its program says.
  if (rate <= 0 || job.steps_total() <= 0) return -1;
  // The job went on training since its step was last seen to change.
  double since = 0;
  auto it = job_steps_.find(job.job_id());
  if (it != job_steps_.end() && !it->second.empty()) since = Seconds(now_ - it->second.back().time);
  return std::max(0.0, double(std::max<int64_t>(0, job.steps_total() - job.step())) / rate - since);
}

double StatusView::SweepEta(const v1::SweepStatus& sweep) const {
  const v1::JobCounts& counts = sweep.sweep().counts();
  if (counts.pending() + counts.running() == 0) return 0;
  // From the running jobs: each one's remaining time, and the mean duration
  // of a whole job for those not started, shared among as many slots.
  double remaining = 0, durations = 0;
  int known = 0;
  for (const v1::RunningJob& job : sweep.running()) {
    const double rate = StepRate(job);
    if (rate <= 0 || job.steps_total() <= 0) continue;
    remaining += JobEta(job);
    durations += double(job.steps_total()) / rate;
    ++known;
  }
  if (known > 0) {
    const double mean = durations / known;
    const int unknown = sweep.running_size() - known;
    const double work = remaining + unknown * mean + double(counts.pending()) * mean;
    return work / double(std::max(1, sweep.running_size()));
  }
  // Nothing running that says its speed: the rate jobs have been finishing.
  auto it = sweep_finished_.find(sweep.sweep().id());
  if (it != sweep_finished_.end() && it->second.size() > 1) {
    const Sample& first = it->second.front();
    const double elapsed = Seconds(now_ - first.time);
    const int64_t finished = it->second.back().value - first.value;
    if (elapsed > 0 && finished > 0) {
      return double(counts.pending() + counts.running()) * elapsed / double(finished);
    }
  }
  return -1;
}

std::string StatusView::SweepLine(const v1::SweepStatus& sweep) const {
  const v1::SweepSummary& s = sweep.sweep();
  const v1::JobCounts& c = s.counts();
  std::string line =
      fmt::format("{} (sweep {}{})  [{}]  {}/{} done  {} running  {} pending  {} failed", s.name(),
                  s.id(), s.state() == "active" ? "" : ", " + s.state(), ProgressBar(c, kBarWidth),
                  c.done(), c.total(), c.running(), c.pending(), c.failed());
  if (c.cancelled() > 0) line += fmt::format("  {} cancelled", c.cancelled());
  if (c.pending() + c.running() > 0) line += "  ETA " + FormatDuration(SweepEta(sweep));
  if (sweep.checkpoint_bytes() > 0) {
    line += "  checkpoints " + FormatSi(static_cast<double>(sweep.checkpoint_bytes())) + "B";
  }
  return line + "\n";
}

std::string StatusView::Render() const {
  std::string out;
  if (latest_.sweeps_size() == 0) return "no sweeps\n";
  for (const v1::SweepStatus& sweep : latest_.sweeps()) {
    out += SweepLine(sweep);
    if (sweep.running_size() == 0) continue;
    std::vector<std::string> keys;
    for (const v1::RunningJob& job : sweep.running()) {
      const auto factors = nlohmann::json::parse(job.factors_json(), nullptr, false);
      if (!factors.is_object()) continue;
      for (const auto& [key, value] : factors.items()) {
        if (std::find(keys.begin(), keys.end(), key) == keys.end()) keys.push_back(key);
      }
    }
    std::vector<std::string> header = {"job"};
    for (std::string& name : FactorHeader(keys)) header.push_back(std::move(name));
    for (const char* name : {"worker", "step", "bytes/s", "bpc", "ETA"}) header.push_back(name);
    Table table(header);
    for (const v1::RunningJob& job : sweep.running()) {
      std::vector<std::string> row = {std::to_string(job.job_id())};
      const auto factors = nlohmann::json::parse(job.factors_json(), nullptr, false);
      for (const std::string& key : keys) {
        row.push_back(factors.is_object() && factors.contains(key) ? FactorCell(factors[key])
                                                                   : "-");
      }
      row.push_back(job.worker_name().empty() ? "-" : job.worker_name());
      row.push_back(job.steps_total() > 0 ? fmt::format("{}/{}", job.step(), job.steps_total())
                                          : std::to_string(job.step()));
      row.push_back(FormatRate(job.bytes_per_s()));
      row.push_back(job.train_bpc() > 0 ? fmt::format("{:.3f}", job.train_bpc()) : "-");
      row.push_back(FormatDuration(JobEta(job)));
      table.AddRow(std::move(row));
    }
    const std::string text = table.ToText();
    size_t begin = 0;
    while (begin < text.size()) {
      const size_t end = text.find('\n', begin);
      out += "  " + text.substr(begin, end - begin + 1);
      begin = end + 1;
    }
  }
  return out;
}

std::string StatusView::RenderBrief() const {
  std::string out;
  for (const v1::SweepStatus& sweep : latest_.sweeps()) out += SweepLine(sweep);
  return out;
}

bool StatusView::Finished() const {
  if (!updated_) return false;
  for (const v1::SweepStatus& sweep : latest_.sweeps()) {
    const v1::JobCounts& c = sweep.sweep().counts();
    if (c.pending() + c.running() > 0) return false;
  }
  return true;
}

nlohmann::ordered_json SweepCountsJson(const v1::SweepSummary& sweep) {
  const v1::JobCounts& c = sweep.counts();
  nlohmann::ordered_json jobs;
  jobs["pending"] = c.pending();
  jobs["running"] = c.running();
  jobs["done"] = c.done();
  jobs["failed"] = c.failed();
  jobs["cancelled"] = c.cancelled();
  nlohmann::ordered_json out;
  out["sweep"] = sweep.name();
  out["total"] = c.total();
  out["jobs"] = std::move(jobs);
  return out;
}

nlohmann::ordered_json SweepListJson(const v1::ListSweepsResponse& sweeps) {
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (const v1::SweepSummary& s : sweeps.sweeps()) {
    nlohmann::ordered_json sweep;
    sweep["id"] = s.id();
    sweep["name"] = s.name();
    sweep["description"] = s.description();
    sweep["state"] = s.state();
    sweep["created_ms"] = s.created_ms();
    sweep["spec_hash"] = s.spec_hash();
    const nlohmann::ordered_json counts = SweepCountsJson(s);
    sweep["total"] = counts["total"];
    sweep["jobs"] = counts["jobs"];
    out.push_back(std::move(sweep));
  }
  return out;
}

nlohmann::ordered_json WorkersJson(const v1::ListWorkersResponse& workers) {
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (const v1::WorkerInfo& w : workers.workers()) {
    nlohmann::ordered_json worker;
    worker["id"] = w.id();
    worker["name"] = w.name();
    worker["host"] = w.host();
    worker["device"] = w.device();
    worker["threads"] = w.threads();
    worker["version"] = w.version();
    worker["registered_ms"] = w.registered_ms();
    worker["last_seen_ms"] = w.last_seen_ms();
    worker["running_job_ids"] =
        std::vector<int64_t>(w.running_job_ids().begin(), w.running_job_ids().end());
    out.push_back(std::move(worker));
  }
  return out;
}

std::string ProgressBar(const v1::JobCounts& counts, int width) {
  const int64_t total = std::max<int64_t>(1, counts.total());
  const std::pair<int64_t, char> parts[] = {{counts.done(), '#'},
                                            {counts.failed(), 'x'},
                                            {counts.cancelled(), '-'},
                                            {counts.running(), '>'}};
  std::string bar;
  int64_t cumulative = 0;
  for (const auto& [count, mark] : parts) {
    cumulative += count;
    const size_t end = static_cast<size_t>(std::llround(double(cumulative) * width / total));
    if (bar.size() < end) bar.append(end - bar.size(), mark);
  }
  bar.resize(static_cast<size_t>(width), '.');
  return bar;
}

}  // namespace ablate
