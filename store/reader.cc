#include "store/reader.h"

#include "common/metric.h"
#include "store/results.h"

namespace ablate {

const char* SplitName(v1::Split split) {
  switch (split) {
    case v1::SPLIT_TRAIN:
      return "train";
    case v1::SPLIT_VALID:
      return "valid";
    case v1::SPLIT_TEST:
      return "test";
    default:
      return "unspecified";
  }
}

v1::Split SplitFromName(const std::string& name) {
  if (name == "train") return v1::SPLIT_TRAIN;
  if (name == "valid") return v1::SPLIT_VALID;
  if (name == "test") return v1::SPLIT_TEST;
  return v1::SPLIT_UNSPECIFIED;
}

std::string SplitMetric(v1::Split split) {
  if (split == v1::SPLIT_UNSPECIFIED) return "";
  return std::string(SplitName(split)) + "_bpc";
}

std::string MetricOf(const v1::CurvePoint& point) {
  return point.metric().empty() ? SplitMetric(point.split()) : point.metric();
}

StatusOr<int64_t> StoreReader::ResolveSweep(const v1::SweepRef& ref) {
  switch (ref.ref_case()) {
    case v1::SweepRef::kId: {
      ABLATE_ASSIGN_OR_RETURN(Rows rows,
                              db_->Query("SELECT id FROM sweeps WHERE id = ?", ref.id()));
      ABLATE_ASSIGN_OR_RETURN(bool found, rows.Next());
      if (!found) return Status::NotFound("no sweep with id " + std::to_string(ref.id()));
      return ref.id();
    }
    case v1::SweepRef::kName: {
      ABLATE_ASSIGN_OR_RETURN(
          Rows rows,
          db_->Query("SELECT id FROM sweeps WHERE name = ? ORDER BY id DESC LIMIT 1", ref.name()));
      ABLATE_ASSIGN_OR_RETURN(bool found, rows.Next());
      if (!found) return Status::NotFound("no sweep named '" + ref.name() + "'");
      return rows.Int(0);
    }
    default:
      return Status::InvalidArgument("a sweep id or name is required");
  }
}

Status StoreReader::ListSweeps(v1::ListSweepsResponse* out) {
  v1::GetStatusResponse status;
  ABLATE_RETURN_IF_ERROR(AppendSweeps(0, false, &status));
  for (auto& sweep : *status.mutable_sweeps()) out->add_sweeps()->Swap(sweep.mutable_sweep());
  return Status::OK();
}

Status StoreReader::GetStatus(const v1::GetStatusRequest& request, v1::GetStatusResponse* out) {
  int64_t only_id = 0;
  if (request.has_sweep()) {
    ABLATE_ASSIGN_OR_RETURN(only_id, ResolveSweep(request.sweep()));
  }
  return AppendSweeps(only_id, true, out);
}

// `only_id` 0 means every sweep.
Status StoreReader::AppendSweeps(int64_t only_id, bool with_running, v1::GetStatusResponse* out) {
  ABLATE_ASSIGN_OR_RETURN(Rows sweeps, db_->Query(R"sql(
      SELECT s.id, s.name, s.description, s.spec_hash, s.created_ms, s.state,
             TOTAL(CASE c.state WHEN 'pending' THEN c.n END),
             TOTAL(CASE c.state WHEN 'running' THEN c.n END),
             TOTAL(CASE c.state WHEN 'done' THEN c.n END),
             TOTAL(CASE c.state WHEN 'failed' THEN c.n END),
             TOTAL(CASE c.state WHEN 'cancelled' THEN c.n END),
             TOTAL(c.n)
      FROM sweeps s LEFT JOIN job_counts c ON c.sweep_id = s.id
      WHERE ?1 = 0 OR s.id = ?1
      GROUP BY s.id ORDER BY s.id)sql",
                                                  only_id));
  while (true) {
    ABLATE_ASSIGN_OR_RETURN(bool row, sweeps.Next());
    if (!row) break;
    v1::SweepSummary* s = out->add_sweeps()->mutable_sweep();
    s->set_id(sweeps.Int(0));
    s->set_name(sweeps.Text(1));
    s->set_description(sweeps.Text(2));
    s->set_spec_hash(sweeps.Text(3));
    s->set_created_ms(sweeps.Int(4));
    s->set_state(sweeps.Text(5));
    v1::JobCounts* counts = s->mutable_counts();
    counts->set_pending(sweeps.Int(6));
    counts->set_running(sweeps.Int(7));
    counts->set_done(sweeps.Int(8));
    counts->set_failed(sweeps.Int(9));
    counts->set_cancelled(sweeps.Int(10));
    counts->set_total(sweeps.Int(11));
  }
  if (!with_running) return Status::OK();
  for (v1::SweepStatus& status : *out->mutable_sweeps()) {
    ABLATE_ASSIGN_OR_RETURN(
        int64_t checkpoint_bytes,
        db_->QueryInt(
            "SELECT CAST(TOTAL(checkpoint_bytes) AS INTEGER) FROM jobs WHERE sweep_id = ?",
            status.sweep().id()));
    status.set_checkpoint_bytes(checkpoint_bytes);
    ABLATE_ASSIGN_OR_RETURN(Rows jobs, db_->Query(R"sql(
        SELECT j.id, j.ord, j.factors_json, j.attempts, j.lease_owner, w.name, j.step,
               j.steps_total, j.bytes_per_s, j.train_bpc, j.started_ms,
               CASE j.command_json WHEN '[]'
                 THEN json_extract(j.config_json, '$.train.batch') *
                      json_extract(j.config_json, '$.train.seq')
                 ELSE 0 END
        FROM jobs j LEFT JOIN workers w ON w.id = j.lease_owner
        WHERE j.state = 'running' AND j.sweep_id = ?
        ORDER BY j.ord)sql",
                                                  status.sweep().id()));
    while (true) {
      ABLATE_ASSIGN_OR_RETURN(bool row, jobs.Next());
      if (!row) break;
      v1::RunningJob* job = status.add_running();
      job->set_job_id(jobs.Int(0));
      job->set_order(jobs.Int(1));
      job->set_factors_json(jobs.Text(2));
      job->set_attempt(static_cast<int32_t>(jobs.Int(3)));
      job->set_worker_id(jobs.Int(4));
      job->set_worker_name(jobs.Text(5));
      job->set_step(jobs.Int(6));
      job->set_steps_total(jobs.Int(7));
      job->set_bytes_per_s(jobs.Double(8));
      job->set_train_bpc(jobs.Double(9));
      job->set_started_ms(jobs.Int(10));
      job->set_bytes_per_step(jobs.Int(11));
    }
  }
  return Status::OK();
}

Status StoreReader::ListWorkers(v1::ListWorkersResponse* out) {
  ABLATE_ASSIGN_OR_RETURN(Rows workers, db_->Query(R"sql(
      SELECT id, name, host, device, threads, version, registered_ms, last_seen_ms
      FROM workers ORDER BY id)sql"));
  while (true) {
    ABLATE_ASSIGN_OR_RETURN(bool row, workers.Next());
    if (!row) break;
    v1::WorkerInfo* w = out->add_workers();
    w->set_id(workers.Int(0));
    w->set_name(workers.Text(1));
    w->set_host(workers.Text(2));
    w->set_device(workers.Text(3));
    w->set_threads(static_cast<int32_t>(workers.Int(4)));
    w->set_version(workers.Text(5));
    w->set_registered_ms(workers.Int(6));
    w->set_last_seen_ms(workers.Int(7));
  }
  for (v1::WorkerInfo& w : *out->mutable_workers()) {
    ABLATE_ASSIGN_OR_RETURN(
        Rows jobs,
        db_->Query("SELECT id FROM jobs WHERE state = 'running' AND lease_owner = ? ORDER BY id",
                   w.id()));
    while (true) {
      ABLATE_ASSIGN_OR_RETURN(bool row, jobs.Next());
      if (!row) break;
      w.add_running_job_ids(jobs.Int(0));
    }
  }
  return Status::OK();
}

StatusOr<std::pair<std::string, v1::CheckpointInfo>> StoreReader::JobCheckpoint(int64_t job_id) {
  ABLATE_ASSIGN_OR_RETURN(Rows rows, db_->Query(R"sql(
      SELECT COALESCE(checkpoint_file, ''), checkpoint_step, COALESCE(checkpoint_bytes, 0),
             COALESCE(checkpoint_sha256, '')
      FROM jobs WHERE id = ?)sql",
                                                job_id));
  ABLATE_ASSIGN_OR_RETURN(bool found, rows.Next());
  if (!found) return Status::NotFound("no job with id " + std::to_string(job_id));
  if (rows.Text(0).empty()) {
    return Status::NotFound("job " + std::to_string(job_id) + " has no checkpoint");
  }
  std::pair<std::string, v1::CheckpointInfo> checkpoint;
  checkpoint.first = rows.Text(0);
  checkpoint.second.set_step(rows.Int(1));
  checkpoint.second.set_total_bytes(rows.Int(2));
  checkpoint.second.set_sha256_hex(rows.Text(3));
  return checkpoint;
}

StatusOr<std::vector<v1::CurvePoint>> StoreReader::JobCurve(int64_t job_id) {
  {
    ABLATE_ASSIGN_OR_RETURN(Rows job, db_->Query("SELECT 1 FROM jobs WHERE id = ?", job_id));
    ABLATE_ASSIGN_OR_RETURN(bool found, job.Next());
    if (!found) return Status::NotFound("no job with id " + std::to_string(job_id));
  }
  ABLATE_ASSIGN_OR_RETURN(Rows rows, db_->Query(R"sql(
      SELECT metric, step, value, bytes_seen, wall_time FROM curve_points
      WHERE job_id = ? ORDER BY metric, step)sql",
                                                job_id));
  std::vector<v1::CurvePoint> points;
  while (true) {
    ABLATE_ASSIGN_OR_RETURN(bool row, rows.Next());
    if (!row) break;
    v1::CurvePoint& p = points.emplace_back();
    const std::string metric = rows.Text(0);
    if (IsBuiltinMetric(metric)) {
      p.set_split(SplitFromName(metric.substr(0, metric.size() - 4)));
      p.set_bpc(rows.Double(2));
    } else {
      p.set_metric(metric);
      p.set_value(rows.Double(2));
    }
    p.set_step(rows.Int(1));
    p.set_bytes_seen(rows.Int(3));
    p.set_wall_time(rows.Double(4));
  }
  return points;
}

Status StoreReader::GetJob(const v1::GetJobRequest& request, v1::GetJobResponse* out) {
  const int64_t job_id = request.job_id();
  ABLATE_ASSIGN_OR_RETURN(Rows job, db_->Query(R"sql(
      SELECT j.sweep_id, j.ord, j.state, j.factors_json, j.config_json, j.attempts, w.name,
             w.device, j.last_error, j.created_ms, j.started_ms, j.finished_ms,
             COALESCE(j.final_steps, j.step), j.final_wall_time,
             j.final_train_bpc IS NOT NULL, j.final_train_bpc,
             j.final_valid_bpc IS NOT NULL, j.final_valid_bpc,
             j.final_test_bpc IS NOT NULL, j.final_test_bpc
      FROM jobs j LEFT JOIN workers w ON w.id = j.lease_owner
      WHERE j.id = ?)sql",
                                               job_id));
  ABLATE_ASSIGN_OR_RETURN(bool found, job.Next());
  if (!found) return Status::NotFound("no job with id " + std::to_string(job_id));
  const int64_t sweep_id = job.Int(0);
  out->set_job_id(job_id);
  out->set_order(job.Int(1));
  out->set_state(job.Text(2));
  out->set_factors_json(job.Text(3));
  out->set_config_json(job.Text(4));
  out->set_attempts(static_cast<int32_t>(job.Int(5)));
  out->set_worker_name(job.Text(6));
  out->set_device(job.Text(7));
  out->set_last_error(job.Text(8));
  out->set_created_ms(job.Int(9));
  out->set_started_ms(job.Int(10));
  out->set_finished_ms(job.Int(11));
  out->set_step(job.Int(12));
  if (out->state() == "done") {
    v1::FinalMetrics* final = out->mutable_final();
    final->set_steps(job.Int(12));
    final->set_wall_time(job.Double(13));
    if (job.Int(14)) final->set_train_bpc(job.Double(15));
    if (job.Int(16)) final->set_valid_bpc(job.Double(17));
    if (job.Int(18)) final->set_test_bpc(job.Double(19));
  }

  v1::GetStatusResponse sweep;
  ABLATE_RETURN_IF_ERROR(AppendSweeps(sweep_id, false, &sweep));
  if (sweep.sweeps_size() == 1)
    out->mutable_sweep()->Swap(sweep.mutable_sweeps(0)->mutable_sweep());

  ABLATE_ASSIGN_OR_RETURN(std::vector<v1::CurvePoint> points, JobCurve(job_id));
  for (v1::CurvePoint& point : points) out->add_points()->Swap(&point);

  ABLATE_ASSIGN_OR_RETURN(Rows events, db_->Query(R"sql(
      SELECT time_ms, kind, detail, worker_id FROM events WHERE job_id = ? ORDER BY id)sql",
                                                  job_id));
  while (true) {
    ABLATE_ASSIGN_OR_RETURN(bool row, events.Next());
    if (!row) break;
    v1::JobEvent* event = out->add_events();
    event->set_time_ms(events.Int(0));
    event->set_kind(events.Text(1));
    event->set_detail(events.Text(2));
    event->set_worker_id(events.Int(3));
  }
  return Status::OK();
}

Status StoreReader::Results(const v1::ResultsRequest& request, v1::ResultsResponse* out) {
  ABLATE_ASSIGN_OR_RETURN(*out, QueryResults(*db_, request));
  return Status::OK();
}

Status StoreReader::Curves(const v1::CurvesRequest& request, v1::CurvesResponse* out) {
  ABLATE_ASSIGN_OR_RETURN(*out, QueryCurves(*db_, request));
  return Status::OK();
}

}  // namespace ablate
