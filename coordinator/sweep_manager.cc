#include "coordinator/sweep_manager.h"

#include <fmt/format.h>

#include <cmath>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "common/spec.h"
#include "store/events.h"
#include "store/reader.h"

namespace ablate {

namespace {

// What a launch writes, computed before it reaches the writer thread.
struct ExpandedSweep {
  SweepSpec spec;
  std::string spec_hash;
  std::vector<Job> jobs;
  bool extend = false;
};

// What sweep `sweep_id` runs: its program and command, or nothing for the
// built-in trainer. Its jobs say which: a W&B file stored by an older
// release with a program: it ignored ran the trainer, however the spec
// parses now.
StatusOr<std::optional<ProgramSpec>> StoredProgram(Database& db, int64_t sweep_id,
                                                   const std::string& spec_text,
                                                   const std::string& filename) {
  ABLATE_ASSIGN_OR_RETURN(
      int64_t trainer_jobs,
      db.QueryInt("SELECT count(*) FROM jobs WHERE sweep_id = ? AND command_json = '[]'",
                  sweep_id));
  if (trainer_jobs > 0) return std::optional<ProgramSpec>();
  StatusOr<SweepSpec> stored = ParseSpec(spec_text, filename);
  if (!stored.ok()) return std::optional<ProgramSpec>();
  return stored->program;
}

bool SameProgram(const std::optional<ProgramSpec>& a, const std::optional<ProgramSpec>& b) {
  if (a.has_value() != b.has_value()) return false;
  return !a || (a->program == b->program && a->command == b->command);
}

Status WriteLaunch(Database& db, const ExpandedSweep& sweep, int64_t now,
                   v1::LaunchResponse* reply) {
  const SweepSpec& spec = sweep.spec;
  int64_t lease_ms = std::llround(spec.schedule.lease_seconds * 1000);
  int64_t silence_ms = std::llround(spec.schedule.silence_seconds * 1000);
  std::optional<int64_t> newest;
  std::string newest_hash, newest_text;
  {
    ABLATE_ASSIGN_OR_RETURN(
        Rows rows,
        db.Query(
            "SELECT id, spec_hash, spec_text FROM sweeps WHERE name = ? ORDER BY id DESC LIMIT 1",
            spec.name));
    ABLATE_ASSIGN_OR_RETURN(bool found, rows.Next());
    if (found) {
      newest = rows.Int(0);
      newest_hash = rows.Text(1);
      newest_text = rows.Text(2);
    }
  }
  reply->set_name(spec.name);
  if (newest && newest_hash == sweep.spec_hash) {
    ABLATE_ASSIGN_OR_RETURN(
        int64_t jobs, db.QueryInt("SELECT TOTAL(n) FROM job_counts WHERE sweep_id = ?", *newest));
    reply->set_sweep_id(*newest);
    reply->set_jobs_existing(jobs);
    return Status::OK();
  }

  int64_t sweep_id = 0;
  bool extending = newest && sweep.extend;
  // Extending adds grid points to one experiment; jobs that run another
  // program or command would not be more of it.
  std::optional<ProgramSpec> stored_program;
  if (extending) {
    ABLATE_ASSIGN_OR_RETURN(stored_program, StoredProgram(db, *newest, newest_text, spec.filename));
  }
  if (extending && !SameProgram(stored_program, spec.program)) {
    return Status::FailedPrecondition(fmt::format(
        "--extend cannot change what sweep {} '{}' runs (its program or command); launch without "
        "--extend to start a new sweep",
        *newest, spec.name));
  }
  const char* keep = spec.schedule.keep_final_checkpoint ? "final" : "none";
  if (extending) {
    sweep_id = *newest;
    ABLATE_RETURN_IF_ERROR(db.Run(R"sql(
        UPDATE sweeps SET description = ?, spec_text = ?, spec_hash = ?, max_attempts = ?,
                          lease_ms = ?, retry_on_nan = ?, keep_checkpoints = ?, silence_ms = ?,
                          state = 'active'
        WHERE id = ?)sql",
                                  spec.description, spec.source_text, sweep.spec_hash,
                                  spec.schedule.max_attempts, lease_ms, spec.schedule.retry_on_nan,
                                  keep, silence_ms, sweep_id));
  } else {
    ABLATE_RETURN_IF_ERROR(db.Run(R"sql(
        INSERT INTO sweeps (name, description, spec_text, spec_hash, max_attempts, lease_ms,
                            retry_on_nan, keep_checkpoints, silence_ms, created_ms, state)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'active'))sql",
                                  spec.name, spec.description, spec.source_text, sweep.spec_hash,
                                  spec.schedule.max_attempts, lease_ms, spec.schedule.retry_on_nan,
                                  keep, silence_ms, now));
    sweep_id = db.LastInsertRowId();
  }
  // The metric results and the report judge the sweep by, new or extended.
  ABLATE_RETURN_IF_ERROR(db.Run("UPDATE sweeps SET metric_name = ?, metric_goal = ? WHERE id = ?",
                                spec.metric.name, MetricGoalName(spec.metric.goal), sweep_id));

  int64_t created = 0;
  for (const Job& job : sweep.jobs) {
    ABLATE_RETURN_IF_ERROR(db.Run(R"sql(
        INSERT INTO jobs (sweep_id, ord, config_json, config_hash, factors_json, command_json,
                          state, created_ms)
        VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)
        ON CONFLICT (sweep_id, config_hash) DO NOTHING)sql",
                                  sweep_id, job.order, job.ConfigJson(), job.config_hash,
                                  job.factors.dump(), nlohmann::json(job.command).dump(), now));
    created += db.Changes();
  }
  reply->set_sweep_id(sweep_id);
  reply->set_jobs_created(created);
  reply->set_jobs_existing(static_cast<int64_t>(sweep.jobs.size()) - created);
  return RecordEvent(db,
                     {now, sweep_id, std::nullopt, std::nullopt, extending ? "extend" : "launch",
                      fmt::format("{} jobs created, spec {}", created, sweep.spec_hash)});
}

}  // namespace

void SweepManager::Launch(const v1::LaunchRequest& request, v1::LaunchResponse* reply,
                          Writer::Done done) {
  StatusOr<SweepSpec> spec = ParseSpec(request.spec_text(), request.filename());
  if (!spec.ok()) return done(spec.status());
  StatusOr<std::vector<Job>> jobs = ExpandGrid(*spec);
  if (!jobs.ok()) return done(jobs.status());
  auto sweep = std::make_shared<ExpandedSweep>();
  sweep->spec_hash = SpecHash(*spec);
  sweep->spec = std::move(spec).value();
  sweep->jobs = std::move(jobs).value();
  sweep->extend = request.extend();
  writer_->Submit([this, sweep,
                   reply](Database& db) { return WriteLaunch(db, *sweep, clock_->NowMs(), reply); },
                  std::move(done));
}

void SweepManager::ListSweeps(v1::ListSweepsResponse* reply, Writer::Done done) {
  writer_->Submit([reply](Database& db) { return StoreReader(&db).ListSweeps(reply); },
                  std::move(done));
}

void SweepManager::GetStatus(const v1::GetStatusRequest& request, v1::GetStatusResponse* reply,
                             Writer::Done done) {
  writer_->Submit(
      [&request, reply](Database& db) { return StoreReader(&db).GetStatus(request, reply); },
      std::move(done));
}

}  // namespace ablate
