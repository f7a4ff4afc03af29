#include "tests/support/sweep_harness.h"

#include <fmt/format.h>
#include <signal.h>
#include <sqlite3.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>


namespace ablate::testing {

namespace {

using nlohmann::json;

// Opens `path` read-only for the lifetime of the object.
class ReadOnlyDb {
 public:
  explicit ReadOnlyDb(const std::string& path) {
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
      error_ = Status::Unavailable("open " + path + ": " + sqlite3_errmsg(db_));
    } else {
      sqlite3_busy_timeout(db_, 5000);
    }
  }
  ~ReadOnlyDb() { sqlite3_close(db_); }
  const Status& error() const { return error_; }

  // Calls `row` for each result row of `sql`.
  Status ForEach(const std::string& sql, const std::function<void(sqlite3_stmt*)>& row) {
    if (!error_.ok()) return error_;
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
      return Status::Internal(sql + ": " + sqlite3_errmsg(db_));
    }
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) row(stmt);
    Status status =
        rc == SQLITE_DONE ? Status::OK() : Status::Unavailable(sql + ": " + sqlite3_errmsg(db_));
    sqlite3_finalize(stmt);
    return status;
  }

 private:
  sqlite3* db_ = nullptr;
  Status error_;
};

std::string Text(sqlite3_stmt* stmt, int column) {
  const unsigned char* text = sqlite3_column_text(stmt, column);
  return text ? reinterpret_cast<const char*>(text) : "";
}

}  // namespace

CoordinatorProcess::CoordinatorProcess(std::string log_dir, std::string db_path, int port,
                                       std::vector<std::string> extra_args,
                                       std::map<std::string, std::string> env)
    : log_dir_(std::move(log_dir)),
      db_path_(std::move(db_path)),
      address_("127.0.0.1:" + std::to_string(port)),
      extra_args_(std::move(extra_args)),
      env_(std::move(env)) {
  Start();
}

bool CoordinatorProcess::Start() {
  std::vector<std::string> argv = {Binary("ablate-coordinator"), "--db", db_path_, "--listen",
                                   address_};
  argv.insert(argv.end(), extra_args_.begin(), extra_args_.end());
  process_ = std::make_unique<Process>("coordinator-" + std::to_string(++incarnation_), argv,
                                       log_dir_, env_);
  // A restart may find the port still held for a moment by the killed one.
  serving_ = !process_->WaitForLine("listening on", std::chrono::seconds(30)).empty();
  return serving_;
}

void CoordinatorProcess::Stop(int signal) {
  process_->Signal(signal);
  process_->Wait(std::chrono::seconds(30));
  serving_ = false;
}

bool CoordinatorProcess::Restart() {
  if (process_->running()) Stop(SIGKILL);
  for (int tries = 0; tries < 5; ++tries) {
    if (Start()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  return false;
}

std::string CoordinatorProcess::Logs() const {
  std::string all;
  for (int i = 1; i <= incarnation_; ++i) {
    all += ReadFile(log_dir_ + "/coordinator-" + std::to_string(i) + ".err");
  }
  return all;
}

std::shared_ptr<grpc::Channel> CoordinatorProcess::Channel() const {
  return grpc::CreateChannel(address_, grpc::InsecureChannelCredentials());
}

std::unique_ptr<Process> StartWorker(const std::string& log_dir, const std::string& log_name,
                                     const std::string& address, const WorkerFlags& flags) {
  std::vector<std::string> argv = {Binary("ablate-worker"),
                                   "--coordinator",
                                   address,
                                   "--threads",
                                   std::to_string(flags.threads),
                                   "--poll",
                                   fmt::format("{}", flags.poll_seconds),
                                   "--name",
                                   flags.name.empty() ? log_name : flags.name};
  if (flags.exit_when_idle) argv.push_back("--exit-when-idle");
  argv.insert(argv.end(), flags.extra_args.begin(), flags.extra_args.end());
  return std::make_unique<Process>(log_name, argv, log_dir);
}

bool FreezeWhen(Process& worker, const std::function<bool()>& caught_mid_job,
                std::chrono::milliseconds timeout) {
  return WaitUntil(
      [&] {
        if (!caught_mid_job()) return false;
        worker.Signal(SIGSTOP);
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        if (caught_mid_job()) return true;
        worker.Signal(SIGCONT);
        return false;
      },
      timeout);
}

std::string ProcessLogs(const std::string& log_dir) {
  std::string logs;
  for (const auto& entry : std::filesystem::directory_iterator(log_dir)) {
    if (entry.path().extension() != ".err") continue;
    std::string log = ReadFile(entry.path().string());
    if (log.size() > 20000) log = "..." + log.substr(log.size() - 20000);
    logs += "---- " + entry.path().filename().string() + "\n" + log;
  }
  return logs;
}

StatusOr<v1::LaunchResponse> Launch(const std::shared_ptr<grpc::Channel>& channel,
                                    const std::string& spec_text, const std::string& filename) {
  auto sweeps = v1::Sweeps::NewStub(channel);
  v1::LaunchRequest request;
  request.set_spec_text(spec_text);
  request.set_filename(filename);
  v1::LaunchResponse reply;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  grpc::Status status = sweeps->Launch(&context, request, &reply);
  if (!status.ok()) {
    return Status(static_cast<Status::Code>(status.error_code()), status.error_message());
  }
  return reply;
}

StatusOr<std::vector<JobRecord>> ReadJobs(const std::string& db_path) {
  ReadOnlyDb db(db_path);
  std::vector<JobRecord> jobs;
  ABLATE_RETURN_IF_ERROR(db.ForEach(
      "SELECT id, state, config_json, last_error, attempts, lease_token, checkpoint_step, "
      "COALESCE(lease_owner, 0), final_test_bpc FROM jobs ORDER BY id",
      [&](sqlite3_stmt* s) {
        JobRecord job;
        job.id = sqlite3_column_int64(s, 0);
        job.state = Text(s, 1);
        job.config_json = Text(s, 2);
        job.last_error = Text(s, 3);
        job.attempts = sqlite3_column_int64(s, 4);
        job.lease_token = sqlite3_column_int64(s, 5);
        job.checkpoint_step = sqlite3_column_int64(s, 6);
        job.lease_owner = sqlite3_column_int64(s, 7);
        job.has_final_test = sqlite3_column_type(s, 8) != SQLITE_NULL;
        job.final_test_bpc = sqlite3_column_double(s, 8);
        jobs.push_back(job);
      }));
  return jobs;
}

StatusOr<std::map<int64_t, Curve>> ReadCurves(const std::string& db_path) {
  ReadOnlyDb db(db_path);
  std::map<int64_t, Curve> curves;
  // The built-in trainer's metrics ("valid_bpc") by their split ("valid").
  ABLATE_RETURN_IF_ERROR(
      db.ForEach("SELECT job_id, substr(metric, 1, length(metric) - 4), step, value, bytes_seen, "
                 "attempt FROM curve_points "
                 "WHERE metric IN ('train_bpc', 'valid_bpc', 'test_bpc') "
                 "ORDER BY job_id, metric, step",
                 [&](sqlite3_stmt* s) {
                   Point p;
                   p.split = Text(s, 1);
                   p.step = sqlite3_column_int64(s, 2);
                   p.bpc = sqlite3_column_double(s, 3);
                   p.bytes_seen = sqlite3_column_int64(s, 4);
                   p.attempt = sqlite3_column_int64(s, 5);
                   curves[sqlite3_column_int64(s, 0)].push_back(p);
                 }));
  return curves;
}

StatusOr<std::map<int64_t, int64_t>> CountEvents(const std::string& db_path,
                                                 const std::string& kind) {
  ReadOnlyDb db(db_path);
  std::map<int64_t, int64_t> counts;
  ABLATE_RETURN_IF_ERROR(db.ForEach(
      "SELECT job_id, count(*) FROM events WHERE job_id IS NOT NULL AND kind = '" + kind +
          "' GROUP BY job_id",
      [&](sqlite3_stmt* s) { counts[sqlite3_column_int64(s, 0)] = sqlite3_column_int64(s, 1); }));
  return counts;
}

StatusOr<int64_t> QueryInt64(const std::string& db_path, const std::string& sql) {
  ReadOnlyDb db(db_path);
  int64_t value = 0;
  int rows = 0;
  ABLATE_RETURN_IF_ERROR(db.ForEach(sql, [&](sqlite3_stmt* s) {
    value = sqlite3_column_int64(s, 0);
    ++rows;
  }));
  if (rows != 1) return Status::Internal(fmt::format("{}: {} rows, not 1", sql, rows));
  return value;
}

bool WaitUntil(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
               std::chrono::milliseconds poll) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(poll);
  }
  return true;
}

StatusOr<Curve> References::Get(const std::string& config_json) {
  if (auto it = cache_.find(config_json); it != cache_.end()) return it->second;
  const std::string tag = std::to_string(cache_.size());
  const std::string config = work_dir_ + "/reference-" + tag + ".json";
  // JSON is YAML: the canonical config is a valid run config file.
  WriteFile(config, config_json);
  RunResult run = RunCommand({Binary("ablate-worker"), "train", config, "--format", "json",
                              "--threads", std::to_string(threads_), "--device", "cpu",
                              "--checkpoint", work_dir_ + "/reference-" + tag + ".ckpt"},
                             work_dir_, std::chrono::minutes(10));
  if (run.exit_code != 0) {
    return Status::Internal(fmt::format("reference run exited {}: {}", run.exit_code, run.err));
  }
  Curve curve;
  for (const std::string& line : Lines(run.out)) {
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded()) return Status::Internal("reference run printed " + line);
    if (j.value("final", false)) continue;
    for (const char* split : {"train", "valid", "test"}) {
      const std::string key = std::string(split) + "_bpc";
      if (!j.contains(key)) continue;
      Point p;
      p.split = split;
      p.step = j["step"].get<int64_t>();
      p.bpc = j[key].get<double>();
      p.bytes_seen = j["bytes_seen"].get<int64_t>();
      curve.push_back(p);
    }
  }
  std::sort(curve.begin(), curve.end());
  cache_[config_json] = curve;
  return curve;
}

StatusOr<std::set<std::pair<std::string, int64_t>>> ScheduledPoints(
    const std::string& config_json) {
  json config = json::parse(config_json, nullptr, false);
  if (config.is_discarded()) return Status::InvalidArgument("config is not JSON");
  const json& train = config["train"];
  const int64_t steps = train["steps"], log_every = train["log_every"],
                eval_every = train["eval_every"];
  std::set<std::pair<std::string, int64_t>> points;
  for (int64_t step = 1; step <= steps; ++step) {
    if (step % log_every == 0 || step == steps) points.insert({"train", step});
    if ((eval_every > 0 && step % eval_every == 0) || step == steps) points.insert({"valid", step});
  }
  points.insert({"test", steps});
  return points;
}

std::string SweepCheck::Summary() const {
  return fmt::format(
      "jobs {} (done {}), points {}, lost {}, unexpected {}, duplicates {}, completed twice {}, "
      "compared with an undisturbed run: {} jobs, {} points and {} final results differ",
      jobs, done, points, lost_points, unexpected_points, duplicate_points, jobs_completed_twice,
      compared_jobs, mismatched_points, mismatched_finals);
}

SweepCheck CheckSweep(const std::string& db_path, References* references) {
  SweepCheck check;
  auto problem = [&check](std::string line) { check.problems.push_back(std::move(line)); };
  auto jobs = ReadJobs(db_path);
  auto curves = ReadCurves(db_path);
  auto completions = CountEvents(db_path, "complete");
  auto duplicates = QueryInt64(db_path,
                               "SELECT count(*) FROM (SELECT 1 FROM curve_points "
                               "GROUP BY job_id, metric, step HAVING count(*) > 1)");
  for (const Status& s :
       {jobs.status(), curves.status(), completions.status(), duplicates.status()}) {
    if (!s.ok()) {
      problem("reading the database: " + s.ToString());
      return check;
    }
  }
  check.duplicate_points = *duplicates;
  if (*duplicates > 0) problem(fmt::format("{} points stored twice", *duplicates));
  for (const JobRecord& job : *jobs) {
    ++check.jobs;
    if (job.state == "done") {
      ++check.done;
    } else {
      problem(fmt::format("job {} is {} ({})", job.id, job.state, job.last_error));
    }
    const int64_t completed = completions->count(job.id) ? completions->at(job.id) : 0;
    if (completed > 1) {
      ++check.jobs_completed_twice;
      problem(fmt::format("job {} completed {} times", job.id, completed));
    }
    const Curve& curve = (*curves)[job.id];
    check.points += static_cast<int64_t>(curve.size());
    auto scheduled = ScheduledPoints(job.config_json);
    if (!scheduled.ok()) {
      problem(fmt::format("job {}: {}", job.id, scheduled.status().ToString()));
      continue;
    }
    std::set<std::pair<std::string, int64_t>> stored;
    for (const Point& p : curve) {
      stored.insert({p.split, p.step});
      if (!scheduled->count({p.split, p.step})) {
        ++check.unexpected_points;
        problem(fmt::format("job {}: unexpected {} point at step {}", job.id, p.split, p.step));
      }
    }
    for (const auto& [split, step] : *scheduled) {
      if (!stored.count({split, step})) {
        ++check.lost_points;
        problem(fmt::format("job {}: {} point at step {} is missing", job.id, split, step));
      }
    }
    if (references == nullptr || job.state != "done") continue;
    auto reference = references->Get(job.config_json);
    if (!reference.ok()) {
      problem(fmt::format("job {}: {}", job.id, reference.status().ToString()));
      continue;
    }
    ++check.compared_jobs;
    std::map<std::pair<std::string, int64_t>, const Point*> expected;
    for (const Point& p : *reference) expected[{p.split, p.step}] = &p;
    for (const Point& p : curve) {
      auto it = expected.find({p.split, p.step});
      if (it == expected.end()) continue;  // counted as unexpected above
      if (p.bpc != it->second->bpc || p.bytes_seen != it->second->bytes_seen) {
        ++check.mismatched_points;
        problem(fmt::format("job {}: {} step {}: bpc {:.17g} (attempt {}), undisturbed {:.17g}",
                            job.id, p.split, p.step, p.bpc, p.attempt, it->second->bpc));
      }
    }
    const Point* test = nullptr;
    for (const Point& p : *reference) {
      if (p.split == "test") test = &p;
    }
    if (test != nullptr && (!job.has_final_test || job.final_test_bpc != test->bpc)) {
      ++check.mismatched_finals;
      problem(fmt::format("job {}: final test bpc {:.17g}, undisturbed {:.17g}", job.id,
                          job.final_test_bpc, test->bpc));
    }
  }
  return check;
}

}  // namespace ablate::testing
