#include "coordinator/job_manager.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <nlohmann/json.hpp>
#include <vector>

#include "common/metric.h"
#include "store/events.h"
#include "store/reader.h"

namespace ablate {

namespace {

// Long errors (a whole stack trace) are cut: the table shows them in one line.
constexpr size_t kMaxErrorBytes = 4096;
// A lease survives two lost heartbeats.
constexpr int kHeartbeatsPerLease = 3;
// Bounds a single report; the 8 MiB message limit comes first in practice.
constexpr int kMaxPointsPerReport = 100'000;

Status StalePrecondition(const JobRow& job, const std::string& why) {
  return Status::FailedPrecondition(fmt::format("stale lease on job {}: {}", job.id, why));
}

// Checks every point before any is stored: a built-in point names a split
// and a finite bpc, a program's point a valid metric name and a finite value.
Status ValidatePoints(const v1::ReportPointsRequest& request) {
  if (request.points_size() > kMaxPointsPerReport) {
    return Status::InvalidArgument(fmt::format("{} points in one report; at most {}",
                                               request.points_size(), kMaxPointsPerReport));
  }
  std::map<std::string, int64_t> last_step;
  for (int i = 0; i < request.points_size(); ++i) {
    const v1::CurvePoint& p = request.points(i);
    const bool named = !p.metric().empty();
    auto invalid = [&](const std::string& why) {
      return Status::InvalidArgument(fmt::format("point {} ({} step {}): {}", i,
                                                 named ? "a named metric" : SplitName(p.split()),
                                                 p.step(), why));
    };
    if (named) {
      Status name = CheckMetricName(p.metric());
      if (!name.ok()) return invalid(name.message());
      if (p.split() != v1::SPLIT_UNSPECIFIED) return invalid("sets both a split and a metric");
      if (!std::isfinite(p.value())) return invalid(p.metric() + " is not finite");
    } else {
      if (p.split() != v1::SPLIT_TRAIN && p.split() != v1::SPLIT_VALID &&
          p.split() != v1::SPLIT_TEST) {
        return invalid("unknown split");
      }
      if (!std::isfinite(p.bpc())) return invalid("bpc is not finite");
    }
    if (p.step() < 0) return invalid("negative step");
    if (p.bytes_seen() < 0) return invalid("negative bytes_seen");
    if (!std::isfinite(p.wall_time()) || p.wall_time() < 0) return invalid("bad wall_time");
    auto [last, fresh] = last_step.emplace(MetricOf(p), p.step());
    if (!fresh) {
      if (p.step() <= last->second) return invalid("steps do not increase within the metric");
      last->second = p.step();
    }
  }
  return Status::OK();
}

// A job's stored command line (a JSON array of strings, as launch writes
// it) into the lease.
Status ParseCommand(const std::string& command_json, v1::JobLease* lease) {
  const nlohmann::json command = nlohmann::json::parse(command_json, nullptr, false);
  if (!command.is_array()) {
    return Status::DataLoss(
        fmt::format("job {}: command_json is not a JSON array: {}", lease->job_id(), command_json));
  }
  for (const auto& argument : command) {
    if (!argument.is_string()) {
      return Status::DataLoss(fmt::format("job {}: command_json holds a non-string argument {}",
                                          lease->job_id(), argument.dump()));
    }
    lease->add_command(argument.get<std::string>());
  }
  return Status::OK();
}

Status ValidateMetrics(const v1::FinalMetrics& m) {
  for (double value : {m.train_bpc(), m.valid_bpc(), m.test_bpc(), m.wall_time()}) {
    if (!std::isfinite(value)) return Status::InvalidArgument("final metrics must be finite");
  }
  if (m.steps() < 0) return Status::InvalidArgument("final steps must not be negative");
  return Status::OK();
}

std::optional<double> Finite(double value) {
  if (!std::isfinite(value)) return std::nullopt;
  return value;
}

std::string Truncate(const std::string& text) {
  return text.size() <= kMaxErrorBytes ? text : text.substr(0, kMaxErrorBytes);
}

// Gives every running job a full lease from `now`; records it as an event
// of `kind`.
Status RenewRunningLeases(Database& db, int64_t now, const char* kind) {
  ABLATE_RETURN_IF_ERROR(db.Run(R"sql(
      UPDATE jobs
      SET lease_expiry_ms = ? + (SELECT lease_ms FROM sweeps WHERE sweeps.id = jobs.sweep_id)
      WHERE state = 'running')sql",
                                now));
  const int64_t renewed = db.Changes();
  return RecordEvent(db, {now, std::nullopt, std::nullopt, std::nullopt, kind,
                          fmt::format("renewed {} leases", renewed)});
}

}  // namespace

void JobManager::Submit(Writer::Op op, Writer::Done done) {
  writer_->Submit(std::move(op), [this, done = std::move(done)](Status status) {
    if (status.code() == Status::kUnavailable) renew_leases_ = true;
    done(std::move(status));
  });
}

StatusOr<JobRow> JobManager::ReadJob(Database& db, int64_t job_id) {
  ABLATE_ASSIGN_OR_RETURN(Rows rows, db.Query(R"sql(
      SELECT j.id, j.sweep_id, j.state, j.attempts, COALESCE(j.lease_owner, 0), j.lease_token,
             j.checkpoint_step, s.max_attempts, s.lease_ms, s.retry_on_nan
      FROM jobs j JOIN sweeps s ON s.id = j.sweep_id WHERE j.id = ?)sql",
                                              job_id));
  ABLATE_ASSIGN_OR_RETURN(bool found, rows.Next());
  if (!found) return Status::NotFound(fmt::format("no job with id {}", job_id));
  JobRow job;
  job.id = rows.Int(0);
  job.sweep_id = rows.Int(1);
  const std::optional<JobState> state = ParseJobState(rows.Text(2));
  if (!state) return Status::DataLoss(fmt::format("job {} has state '{}'", job_id, rows.Text(2)));
  job.state = *state;
  job.attempts = rows.Int(3);
  job.lease_owner = rows.Int(4);
  job.lease_token = rows.Int(5);
  job.checkpoint_step = rows.Int(6);
  job.max_attempts = rows.Int(7);
  job.lease_ms = rows.Int(8);
  job.retry_on_nan = rows.Int(9) != 0;
  return job;
}

StatusOr<JobRow> JobManager::CheckLease(Database& db, int64_t job_id, int64_t lease_token,
                                        std::initializer_list<JobState> repeated) {
  ABLATE_ASSIGN_OR_RETURN(JobRow job, ReadJob(db, job_id));
  if (job.lease_token != lease_token) {
    return StalePrecondition(
        job, fmt::format("the current lease token is {}, not {}", job.lease_token, lease_token));
  }
  if (job.state == JobState::kRunning) return job;
  for (JobState s : repeated) {
    if (job.state == s) return job;
  }
  return StalePrecondition(job, std::string("the job is ") + JobStateName(job.state));
}

void JobManager::LeaseJob(const v1::LeaseJobRequest& request, v1::LeaseJobResponse* reply,
                          Writer::Done done) {
  Submit([this, &request, reply](Database& db) { return Lease(db, request.worker_id(), reply); },
         std::move(done));
}

Status JobManager::Lease(Database& db, int64_t worker_id, v1::LeaseJobResponse* reply) {
  int64_t now = clock_->NowMs();
  ABLATE_RETURN_IF_ERROR(
      db.Run("UPDATE workers SET last_seen_ms = ? WHERE id = ?", now, worker_id));
  if (db.Changes() == 0) {
    return Status::NotFound(fmt::format("no worker with id {}; register again", worker_id));
  }
  ABLATE_RETURN_IF_ERROR(ExpireOverdue(db, now));

  ABLATE_ASSIGN_OR_RETURN(Rows next, db.Query(R"sql(
      SELECT j.id, j.checkpoint_step, s.id, s.name, s.lease_ms, s.keep_checkpoints = 'final',
             s.silence_ms
      FROM jobs j JOIN sweeps s ON s.id = j.sweep_id
      WHERE j.state = 'pending' ORDER BY j.ord, j.sweep_id LIMIT 1)sql"));
  ABLATE_ASSIGN_OR_RETURN(bool found, next.Next());
  if (found) {
    v1::JobLease* lease = reply->mutable_job();
    lease->set_job_id(next.Int(0));
    lease->set_checkpoint_step(next.Int(1));
    lease->set_sweep_id(next.Int(2));
    lease->set_sweep_name(next.Text(3));
    int64_t lease_ms = next.Int(4);
    lease->set_lease_seconds(lease_ms / 1000.0);
    lease->set_heartbeat_seconds(lease_ms / 1000.0 / kHeartbeatsPerLease);
    lease->set_upload_final_checkpoint(next.Int(5) != 0);
    lease->set_silence_seconds(next.Int(6) / 1000.0);

    ABLATE_ASSIGN_OR_RETURN(Rows leased, db.Query(R"sql(
        UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_owner = ?,
                        lease_token = lease_token + 1, lease_expiry_ms = ?, started_ms = ?,
                        step = checkpoint_step,
                        steps_total = CASE command_json WHEN '[]'
                          THEN COALESCE(json_extract(config_json, '$.train.steps'), 0) ELSE 0 END,
                        bytes_per_s = 0, train_bpc = NULL
        WHERE id = ? RETURNING attempts, lease_token, config_json, factors_json, command_json)sql",
                                                  worker_id, now + lease_ms, now, lease->job_id()));
    ABLATE_ASSIGN_OR_RETURN(bool updated, leased.Next());
    if (!updated) return Status::Internal("leasing a pending job changed nothing");
    lease->set_attempt(static_cast<int32_t>(leased.Int(0)));
    lease->set_lease_token(leased.Int(1));
    lease->set_config_json(leased.Text(2));
    lease->set_factors_json(leased.Text(3));
    ABLATE_RETURN_IF_ERROR(ParseCommand(leased.Text(4), lease));

    // Points the previous attempt reported after its checkpoint are
    // superseded by the ones this attempt will report from there on.
    ABLATE_RETURN_IF_ERROR(db.Run("DELETE FROM curve_points WHERE job_id = ? AND step > ?",
                                  lease->job_id(), lease->checkpoint_step()));
    ABLATE_RETURN_IF_ERROR(
        RecordEvent(db, {now, lease->sweep_id(), lease->job_id(), worker_id, "lease",
                         fmt::format("attempt {}, token {}, from step {}", lease->attempt(),
                                     lease->lease_token(), lease->checkpoint_step())}));
  }

  ABLATE_ASSIGN_OR_RETURN(Rows counts, db.Query(R"sql(
      SELECT TOTAL(CASE state WHEN 'pending' THEN n END),
             TOTAL(CASE state WHEN 'running' THEN n END)
      FROM job_counts)sql"));
  ABLATE_ASSIGN_OR_RETURN(bool row, counts.Next());
  if (!row) return Status::Internal("job counts returned no row");
  reply->set_pending_jobs(counts.Int(0));
  reply->set_running_jobs(counts.Int(1));
  return Status::OK();
}

Status JobManager::ExpireOverdue(Database& db, int64_t now) {
  if (renew_leases_.exchange(false)) {
    ABLATE_RETURN_IF_ERROR(RenewRunningLeases(db, now, "renew_after_refused_writes"));
  }
  struct Expired {
    int64_t id, sweep_id, attempts, max_attempts, owner;
    std::string owner_name;
  };
  std::vector<Expired> expired;
  {
    ABLATE_ASSIGN_OR_RETURN(Rows rows, db.Query(R"sql(
        SELECT j.id, j.sweep_id, j.attempts, s.max_attempts, COALESCE(j.lease_owner, 0),
               COALESCE(w.name, '?')
        FROM jobs j JOIN sweeps s ON s.id = j.sweep_id
             LEFT JOIN workers w ON w.id = j.lease_owner
        WHERE j.state = 'running' AND j.lease_expiry_ms < ?)sql",
                                                now));
    while (true) {
      ABLATE_ASSIGN_OR_RETURN(bool row, rows.Next());
      if (!row) break;
      expired.push_back(
          Expired{rows.Int(0), rows.Int(1), rows.Int(2), rows.Int(3), rows.Int(4), rows.Text(5)});
    }
  }
  for (const Expired& job : expired) {
    bool exhausted = job.attempts >= job.max_attempts;
    std::string error = fmt::format("lease expired on worker {} (attempt {} of {})", job.owner_name,
                                    job.attempts, job.max_attempts);
    ABLATE_RETURN_IF_ERROR(db.Run(R"sql(
        UPDATE jobs SET state = ?1, last_error = ?2, lease_expiry_ms = NULL,
                        finished_ms = CASE ?1 WHEN 'failed' THEN ?3 END
        WHERE id = ?4)sql",
                                  JobStateName(exhausted ? JobState::kFailed : JobState::kPending),
                                  error, now, job.id));
    ABLATE_RETURN_IF_ERROR(RecordEvent(
        db, {now, job.sweep_id, job.id, job.owner, exhausted ? "expire_failed" : "expire", error}));
  }
  return Status::OK();
}

void JobManager::Heartbeat(const v1::HeartbeatRequest& request, v1::HeartbeatResponse* reply,
                           Writer::Done done) {
  const v1::Progress& progress = request.progress();
  if (progress.step() < 0 || progress.steps_total() < 0) {
    return done(Status::InvalidArgument("progress steps must not be negative"));
  }
  Submit(
      [this, &request, reply](Database& db) -> Status {
        StatusOr<JobRow> held =
            CheckLease(db, request.job_id(), request.lease_token(), {JobState::kCancelled});
        // A stale heartbeat is not an error: its answer tells the worker to stop.
        if (!held.ok()) {
          if (held.status().code() != Status::kFailedPrecondition) return held.status();
          reply->set_state(v1::LEASE_STATE_LOST);
          return Status::OK();
        }
        if (held->state == JobState::kCancelled) {
          reply->set_state(v1::LEASE_STATE_CANCELLED);
          return Status::OK();
        }
        const JobRow& job = *held;
        int64_t now = clock_->NowMs();
        const v1::Progress& p = request.progress();
        // The loss may blow up between heartbeats; that is FailJob's news, and
        // must not cost the lease here. Progress the points already showed
        // stays: a heartbeat that knows less (the first, sent before a step)
        // does not take it back.
        ABLATE_RETURN_IF_ERROR(db.Run(R"sql(
            UPDATE jobs SET lease_expiry_ms = ?1,
                            train_bpc = CASE WHEN ?2 >= step THEN COALESCE(?5, train_bpc)
                                             ELSE train_bpc END,
                            bytes_per_s = CASE WHEN ?4 > 0 THEN ?4 ELSE bytes_per_s END,
                            steps_total = CASE WHEN ?3 > 0 THEN ?3 ELSE steps_total END,
                            step = MAX(step, ?2)
            WHERE id = ?6)sql",
                                      now + job.lease_ms, p.step(), p.steps_total(),
                                      Finite(p.bytes_per_s()).value_or(0.0), Finite(p.train_bpc()),
                                      job.id));
        ABLATE_RETURN_IF_ERROR(
            db.Run("UPDATE workers SET last_seen_ms = ? WHERE id = ?", now, job.lease_owner));
        reply->set_state(v1::LEASE_STATE_ACTIVE);
        return Status::OK();
      },
      std::move(done));
}

namespace {

// A program's point is progress as fresh as the work: its step.
Status RecordNamedPointProgress(Database& db, int64_t job_id, const v1::CurvePoint& p) {
  return db.Run("UPDATE jobs SET step = MAX(step, ?) WHERE id = ?", p.step(), job_id);
}

// A training point is progress as fresh as the work: its step, its loss,
// and the rate of the bytes it has seen, without waiting for a heartbeat
// (one every third of the lease). Never takes progress back.
Status RecordPointProgress(Database& db, int64_t job_id, const v1::CurvePoint& p) {
  const double rate = p.wall_time() > 0 ? static_cast<double>(p.bytes_seen()) / p.wall_time() : 0;
  return db.Run(R"sql(
      UPDATE jobs SET train_bpc = CASE WHEN ?1 >= step THEN ?2 ELSE train_bpc END,
                      bytes_per_s = CASE WHEN ?1 >= step AND ?3 > 0 THEN ?3 ELSE bytes_per_s END,
                      step = MAX(step, ?1)
      WHERE id = ?4)sql",
                p.step(), Finite(p.bpc()), Finite(rate).value_or(0.0), job_id);
}

}  // namespace

void JobManager::ReportPoints(const v1::ReportPointsRequest& request, Writer::Done done) {
  Status invalid = ValidatePoints(request);
  if (!invalid.ok()) return done(invalid);
  Submit(
      [&request](Database& db) -> Status {
        ABLATE_ASSIGN_OR_RETURN(JobRow job,
                                CheckLease(db, request.job_id(), request.lease_token()));
        const v1::CurvePoint* last_train = nullptr;
        const v1::CurvePoint* last_named = nullptr;
        for (const v1::CurvePoint& p : request.points()) {
          const bool named = !p.metric().empty();
          // Same key, same values: a retried report rewrites what is there.
          ABLATE_RETURN_IF_ERROR(db.Run(R"sql(
              INSERT OR REPLACE INTO curve_points
                (job_id, metric, step, value, bytes_seen, wall_time, attempt)
              VALUES (?, ?, ?, ?, ?, ?, ?))sql",
                                        job.id, MetricOf(p), p.step(), named ? p.value() : p.bpc(),
                                        p.bytes_seen(), p.wall_time(), job.attempts));
          if (named) last_named = &p;
          if (p.split() == v1::SPLIT_TRAIN) last_train = &p;
        }
        if (last_named) ABLATE_RETURN_IF_ERROR(RecordNamedPointProgress(db, job.id, *last_named));
        return last_train ? RecordPointProgress(db, job.id, *last_train) : Status::OK();
      },
      std::move(done));
}

void JobManager::CompleteJob(const v1::CompleteJobRequest& request, std::string* dropped_checkpoint,
                             Writer::Done done) {
  Status invalid = ValidateMetrics(request.metrics());
  if (!invalid.ok()) return done(invalid);
  Submit(
      [this, &request, dropped_checkpoint](Database& db) -> Status {
        ABLATE_ASSIGN_OR_RETURN(
            JobRow job, CheckLease(db, request.job_id(), request.lease_token(), {JobState::kDone}));
        if (job.state == JobState::kDone) return Status::OK();  // a retried completion
        int64_t now = clock_->NowMs();
        const v1::FinalMetrics& m = request.metrics();
        auto metric = [](bool has, double value) {
          return has ? std::optional<double>(value) : std::nullopt;
        };
        ABLATE_RETURN_IF_ERROR(db.Run(
            R"sql(
            UPDATE jobs SET state = 'done', finished_ms = ?, lease_expiry_ms = NULL,
                            final_train_bpc = ?, final_valid_bpc = ?, final_test_bpc = ?,
                            final_steps = ?, final_wall_time = ?
            WHERE id = ?)sql",
            now, metric(m.has_train_bpc(), m.train_bpc()), metric(m.has_valid_bpc(), m.valid_bpc()),
            metric(m.has_test_bpc(), m.test_bpc()),
            request.has_metrics() ? std::optional<int64_t>(m.steps()) : std::nullopt,
            request.has_metrics() ? std::optional<double>(m.wall_time()) : std::nullopt, job.id));
        ABLATE_RETURN_IF_ERROR(DropCheckpointUnlessKept(db, job.id, dropped_checkpoint));
        return RecordEvent(db, {now, job.sweep_id, job.id, job.lease_owner, "complete", ""});
      },
      std::move(done));
}

Status JobManager::DropCheckpointUnlessKept(Database& db, int64_t job_id, std::string* dropped) {
  ABLATE_ASSIGN_OR_RETURN(Rows rows, db.Query(R"sql(
      SELECT j.checkpoint_file FROM jobs j JOIN sweeps s ON s.id = j.sweep_id
      WHERE j.id = ? AND s.keep_checkpoints = 'none' AND j.checkpoint_file IS NOT NULL)sql",
                                              job_id));
  ABLATE_ASSIGN_OR_RETURN(bool found, rows.Next());
  if (!found) return Status::OK();
  if (dropped != nullptr) *dropped = rows.Text(0);
  return db.Run(R"sql(
      UPDATE jobs SET checkpoint_step = 0, checkpoint_file = NULL, checkpoint_bytes = NULL,
                      checkpoint_sha256 = NULL
      WHERE id = ?)sql",
                job_id);
}

void JobManager::FailJob(const v1::FailJobRequest& request, v1::FailJobResponse* reply,
                         Writer::Done done) {
  Submit(
      [this, &request, reply](Database& db) -> Status {
        ABLATE_ASSIGN_OR_RETURN(JobRow job, CheckLease(db, request.job_id(), request.lease_token(),
                                                       {JobState::kPending, JobState::kFailed}));
        // Not re-leased since: a retried FailJob, answered as the first was.
        if (job.state != JobState::kRunning) {
          reply->set_will_retry(job.state == JobState::kPending);
          return Status::OK();
        }
        bool attempts_left = job.attempts < job.max_attempts;
        bool retry =
            attempts_left && (request.non_finite_loss() ? job.retry_on_nan : request.retryable());
        int64_t now = clock_->NowMs();
        std::string error = Truncate(request.error());
        ABLATE_RETURN_IF_ERROR(db.Run(R"sql(
            UPDATE jobs SET state = ?1, last_error = ?2, lease_expiry_ms = NULL,
                            finished_ms = CASE ?1 WHEN 'failed' THEN ?3 END
            WHERE id = ?4)sql",
                                      JobStateName(retry ? JobState::kPending : JobState::kFailed),
                                      error, now, job.id));
        reply->set_will_retry(retry);
        return RecordEvent(
            db, {now, job.sweep_id, job.id, job.lease_owner, retry ? "fail_retry" : "fail", error});
      },
      std::move(done));
}

void JobManager::ReleaseJob(const v1::ReleaseJobRequest& request, Writer::Done done) {
  Submit(
      [this, &request](Database& db) -> Status {
        ABLATE_ASSIGN_OR_RETURN(JobRow job, CheckLease(db, request.job_id(), request.lease_token(),
                                                       {JobState::kPending}));
        if (job.state == JobState::kPending) return Status::OK();  // a retried release
        int64_t now = clock_->NowMs();
        ABLATE_RETURN_IF_ERROR(db.Run(
            "UPDATE jobs SET state = 'pending', attempts = attempts - 1, lease_expiry_ms = NULL "
            "WHERE id = ?",
            job.id));
        return RecordEvent(db, {now, job.sweep_id, job.id, job.lease_owner, "release",
                                Truncate(request.reason())});
      },
      std::move(done));
}

void JobManager::Cancel(const v1::CancelRequest& request, v1::CancelResponse* reply,
                        Writer::Done done) {
  Submit(
      [this, &request, reply](Database& db) -> Status {
        int64_t now = clock_->NowMs();
        if (request.has_sweep()) {
          ABLATE_ASSIGN_OR_RETURN(int64_t sweep_id, StoreReader(&db).ResolveSweep(request.sweep()));
          ABLATE_RETURN_IF_ERROR(db.Run(R"sql(
              INSERT INTO events (time_ms, sweep_id, job_id, worker_id, kind, detail)
              SELECT ?, sweep_id, id, lease_owner, 'cancel', 'was ' || state FROM jobs
              WHERE sweep_id = ? AND state IN ('pending', 'running'))sql",
                                        now, sweep_id));
          ABLATE_RETURN_IF_ERROR(db.Run(R"sql(
              UPDATE jobs SET state = 'cancelled', finished_ms = ?, lease_expiry_ms = NULL
              WHERE sweep_id = ? AND state IN ('pending', 'running'))sql",
                                        now, sweep_id));
          reply->set_jobs_cancelled(db.Changes());
          return db.Run("UPDATE sweeps SET state = 'cancelled' WHERE id = ?", sweep_id);
        }
        if (request.target_case() != v1::CancelRequest::kJobId) {
          return Status::InvalidArgument("cancel needs a sweep or a job id");
        }
        ABLATE_ASSIGN_OR_RETURN(JobRow job, ReadJob(db, request.job_id()));
        if (job.state != JobState::kPending && job.state != JobState::kRunning) {
          return Status::OK();
        }
        ABLATE_RETURN_IF_ERROR(
            db.Run("UPDATE jobs SET state = 'cancelled', finished_ms = ?, lease_expiry_ms = NULL "
                   "WHERE id = ?",
                   now, job.id));
        reply->set_jobs_cancelled(1);
        return RecordEvent(db, {now, job.sweep_id, job.id, job.lease_owner, "cancel",
                                std::string("was ") + JobStateName(job.state)});
      },
      std::move(done));
}

void JobManager::Retry(const v1::RetryRequest& request, v1::RetryResponse* reply,
                       Writer::Done done) {
  Submit(
      [this, &request, reply](Database& db) -> Status {
        int64_t now = clock_->NowMs();
        int64_t sweep_id = 0;
        if (request.has_sweep()) {
          ABLATE_ASSIGN_OR_RETURN(sweep_id, StoreReader(&db).ResolveSweep(request.sweep()));
          ABLATE_RETURN_IF_ERROR(db.Run(R"sql(
              INSERT INTO events (time_ms, sweep_id, job_id, worker_id, kind, detail)
              SELECT ?, sweep_id, id, NULL, 'retry', 'was ' || state FROM jobs
              WHERE sweep_id = ? AND state IN ('failed', 'cancelled'))sql",
                                        now, sweep_id));
          ABLATE_RETURN_IF_ERROR(db.Run(R"sql(
              UPDATE jobs SET state = 'pending', attempts = 0, finished_ms = NULL
              WHERE sweep_id = ? AND state IN ('failed', 'cancelled'))sql",
                                        sweep_id));
          reply->set_jobs_retried(db.Changes());
        } else if (request.target_case() == v1::RetryRequest::kJobId) {
          ABLATE_ASSIGN_OR_RETURN(JobRow job, ReadJob(db, request.job_id()));
          if (job.state != JobState::kFailed && job.state != JobState::kCancelled) {
            return Status::OK();
          }
          sweep_id = job.sweep_id;
          ABLATE_RETURN_IF_ERROR(db.Run(
              "UPDATE jobs SET state = 'pending', attempts = 0, finished_ms = NULL WHERE id = ?",
              job.id));
          reply->set_jobs_retried(1);
          ABLATE_RETURN_IF_ERROR(RecordEvent(db, {now, job.sweep_id, job.id, std::nullopt, "retry",
                                                  std::string("was ") + JobStateName(job.state)}));
        } else {
          return Status::InvalidArgument("retry needs a sweep or a job id");
        }
        // A sweep with pending jobs is running again, whatever cancelled it.
        return db.Run("UPDATE sweeps SET state = 'active' WHERE id = ?", sweep_id);
      },
      std::move(done));
}

void JobManager::ExpireLeases(Writer::Done done) {
  Submit([this](Database& db) { return ExpireOverdue(db, clock_->NowMs()); }, std::move(done));
}

void JobManager::RenewLeasesAfterRestart(Writer::Done done) {
  Submit([this](Database& db) { return RenewRunningLeases(db, clock_->NowMs(), "start"); },
         std::move(done));
}

}  // namespace ablate
