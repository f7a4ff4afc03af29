#include "store/store.h"

#include <fmt/format.h>

#include <iterator>

namespace ablate {

namespace {

// kMigrations[i] takes the schema from version i to version i + 1. Append
// new versions; never edit a shipped one.
constexpr const char* kMigrations[] = {
    R"sql(
CREATE TABLE sweeps (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  description TEXT NOT NULL,
  spec_text TEXT NOT NULL,
  spec_hash TEXT NOT NULL,
  max_attempts INTEGER NOT NULL,
  lease_ms INTEGER NOT NULL,
  retry_on_nan INTEGER NOT NULL,
  created_ms INTEGER NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('active', 'cancelled'))
) STRICT;
CREATE INDEX sweeps_by_name ON sweeps (name, id);

CREATE TABLE workers (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  host TEXT NOT NULL,
  device TEXT NOT NULL,
  threads INTEGER NOT NULL,
  version TEXT NOT NULL,
  registered_ms INTEGER NOT NULL,
  last_seen_ms INTEGER NOT NULL
) STRICT;

CREATE TABLE jobs (
  id INTEGER PRIMARY KEY,
  sweep_id INTEGER NOT NULL REFERENCES sweeps (id),
  ord INTEGER NOT NULL,
  config_json TEXT NOT NULL,
  config_hash TEXT NOT NULL,
  factors_json TEXT NOT NULL,
  state TEXT NOT NULL
    CHECK (state IN ('pending', 'running', 'done', 'failed', 'cancelled')),
  attempts INTEGER NOT NULL DEFAULT 0,
  -- The worker holding the lease while running; the last one afterwards.
  lease_owner INTEGER REFERENCES workers (id),
  lease_token INTEGER NOT NULL DEFAULT 0,
  lease_expiry_ms INTEGER,
  checkpoint_step INTEGER NOT NULL DEFAULT 0,
  checkpoint_file TEXT,
  checkpoint_bytes INTEGER,
  checkpoint_sha256 TEXT,
  -- Progress from the latest heartbeat of the current attempt.
  step INTEGER NOT NULL DEFAULT 0,
  steps_total INTEGER NOT NULL DEFAULT 0,
  bytes_per_s REAL NOT NULL DEFAULT 0,
  train_bpc REAL,
  final_train_bpc REAL,
  final_valid_bpc REAL,
  final_test_bpc REAL,
  final_steps INTEGER,
  final_wall_time REAL,
  created_ms INTEGER NOT NULL,
  started_ms INTEGER,
  finished_ms INTEGER,
  last_error TEXT NOT NULL DEFAULT '',
  UNIQUE (sweep_id, config_hash)
) STRICT;
-- LeaseJob: the pending job with the lowest order.
CREATE INDEX jobs_pending ON jobs (ord, sweep_id) WHERE state = 'pending';
-- The lease sweep: running jobs by expiry.
CREATE INDEX jobs_running_by_expiry ON jobs (lease_expiry_ms) WHERE state = 'running';
-- ListWorkers: the jobs each worker runs.
CREATE INDEX jobs_running_by_owner ON jobs (lease_owner) WHERE state = 'running';

-- Jobs per sweep and state, kept by triggers so that counting is a lookup
-- rather than a scan on every lease.
CREATE TABLE job_counts (
  sweep_id INTEGER NOT NULL,
  state TEXT NOT NULL,
  n INTEGER NOT NULL,
  PRIMARY KEY (sweep_id, state)
) STRICT, WITHOUT ROWID;
CREATE TRIGGER jobs_count_insert AFTER INSERT ON jobs BEGIN
  INSERT INTO job_counts (sweep_id, state, n) VALUES (NEW.sweep_id, NEW.state, 1)
    ON CONFLICT (sweep_id, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER jobs_count_update AFTER UPDATE OF state ON jobs
  WHEN OLD.state <> NEW.state BEGIN
  UPDATE job_counts SET n = n - 1 WHERE sweep_id = OLD.sweep_id AND state = OLD.state;
  INSERT INTO job_counts (sweep_id, state, n) VALUES (NEW.sweep_id, NEW.state, 1)
    ON CONFLICT (sweep_id, state) DO UPDATE SET n = n + 1;
END;

CREATE TABLE curve_points (
  job_id INTEGER NOT NULL REFERENCES jobs (id),
  split TEXT NOT NULL CHECK (split IN ('train', 'valid', 'test')),
  step INTEGER NOT NULL,
  bpc REAL NOT NULL,
  bytes_seen INTEGER NOT NULL,
  wall_time REAL NOT NULL,
  attempt INTEGER NOT NULL,
  PRIMARY KEY (job_id, split, step)
) STRICT, WITHOUT ROWID;

-- Every state transition, for audit and debugging. Unindexed: written on
-- every transition, read only when someone investigates.
CREATE TABLE events (
  id INTEGER PRIMARY KEY,
  time_ms INTEGER NOT NULL,
  sweep_id INTEGER,
  job_id INTEGER,
  worker_id INTEGER,
  kind TEXT NOT NULL,
  detail TEXT NOT NULL
) STRICT;
)sql",
    // 2: views for reading results with the sqlite3 shell (documented in the
    // README). The seed's factors are read from each job's full config, so
    // they are set whether a sweep varies them or fixes them.
    R"sql(
CREATE VIEW job_results AS
SELECT s.name AS sweep, j.sweep_id, j.id AS job_id, j.ord, j.state,
       json_extract(j.config_json, '$.model.cell') AS cell,
       json_extract(j.config_json, '$.model.layer_norm') AS layer_norm,
       json_extract(j.config_json, '$.model.init') AS init,
       json_extract(j.config_json, '$.train.seed') AS seed,
       j.factors_json, j.config_json,
       j.final_train_bpc, j.final_valid_bpc, j.final_test_bpc,
       COALESCE(j.final_steps, j.step) AS steps, j.final_wall_time AS wall_time,
       j.attempts, w.name AS worker, w.device, j.last_error,
       j.created_ms, j.started_ms, j.finished_ms
FROM jobs j
JOIN sweeps s ON s.id = j.sweep_id
LEFT JOIN workers w ON w.id = j.lease_owner;

CREATE VIEW curve AS
SELECT s.name AS sweep, j.sweep_id, p.job_id, j.state,
       json_extract(j.config_json, '$.model.cell') AS cell,
       json_extract(j.config_json, '$.model.layer_norm') AS layer_norm,
       json_extract(j.config_json, '$.model.init') AS init,
       json_extract(j.config_json, '$.train.seed') AS seed,
       p.split, p.step, p.bpc, p.bytes_seen, p.wall_time, p.attempt
FROM curve_points p
JOIN jobs j ON j.id = p.job_id
JOIN sweeps s ON s.id = j.sweep_id;
)sql",
    // 3: schedule.keep_checkpoints: whether a done job's last checkpoint (its
    // trained model, uploaded at the end) stays for `ablate checkpoint`.
    // Sweeps from before kept theirs.
    R"sql(
ALTER TABLE sweeps ADD COLUMN keep_checkpoints TEXT NOT NULL DEFAULT 'final'
  CHECK (keep_checkpoints IN ('final', 'none'));
)sql",
    // 4: named metrics. Curve points are keyed by metric name, so that a
    // program's "valid/loss" is stored as the built-in trainer's bpc is; the
    // built-in points move to train_bpc, valid_bpc and test_bpc. The curve
    // view keeps split and bpc for the built-in metrics (NULL for others)
    // and gains metric and value. A sweep's metric (spec metric: {name,
    // goal}) decides its default metric and which way is best.
    R"sql(
DROP VIEW curve;
CREATE TABLE curve_points_by_metric (
  job_id INTEGER NOT NULL REFERENCES jobs (id),
  metric TEXT NOT NULL,
  step INTEGER NOT NULL,
  value REAL NOT NULL,
  bytes_seen INTEGER NOT NULL,
  wall_time REAL NOT NULL,
  attempt INTEGER NOT NULL,
  PRIMARY KEY (job_id, metric, step)
) STRICT, WITHOUT ROWID;
INSERT INTO curve_points_by_metric (job_id, metric, step, value, bytes_seen, wall_time, attempt)
  SELECT job_id, split || '_bpc', step, bpc, bytes_seen, wall_time, attempt FROM curve_points;
DROP TABLE curve_points;
ALTER TABLE curve_points_by_metric RENAME TO curve_points;

CREATE VIEW curve AS
SELECT s.name AS sweep, j.sweep_id, p.job_id, j.state,
       json_extract(j.config_json, '$.model.cell') AS cell,
       json_extract(j.config_json, '$.model.layer_norm') AS layer_norm,
       json_extract(j.config_json, '$.model.init') AS init,
       json_extract(j.config_json, '$.train.seed') AS seed,
       CASE p.metric WHEN 'train_bpc' THEN 'train' WHEN 'valid_bpc' THEN 'valid'
                     WHEN 'test_bpc' THEN 'test' END AS split,
       p.step,
       CASE WHEN p.metric IN ('train_bpc', 'valid_bpc', 'test_bpc') THEN p.value END AS bpc,
       p.bytes_seen, p.wall_time, p.attempt, p.metric, p.value
FROM curve_points p
JOIN jobs j ON j.id = p.job_id
JOIN sweeps s ON s.id = j.sweep_id;

ALTER TABLE sweeps ADD COLUMN metric_name TEXT NOT NULL DEFAULT '';
ALTER TABLE sweeps ADD COLUMN metric_goal TEXT NOT NULL DEFAULT 'minimize'
  CHECK (metric_goal IN ('minimize', 'maximize'));

-- Program sweeps: a job's command line with its macros expanded ('[]': the
-- built-in trainer) and schedule.silence_seconds in milliseconds (0: never).
ALTER TABLE jobs ADD COLUMN command_json TEXT NOT NULL DEFAULT '[]';
ALTER TABLE sweeps ADD COLUMN silence_ms INTEGER NOT NULL DEFAULT 0;
)sql",
};

// How much of a file a read-only connection maps into memory.
constexpr int64_t kReadOnlyMmapBytes = int64_t{1} << 30;

struct Identity {
  int64_t application_id;
  int64_t user_version;
  int64_t objects;  // entries in sqlite_schema
};

// Reads the header fields without writing anything.
StatusOr<Identity> ReadIdentity(Database& db) {
  Identity id{};
  ABLATE_ASSIGN_OR_RETURN(id.application_id, db.QueryInt("PRAGMA application_id"));
  ABLATE_ASSIGN_OR_RETURN(id.user_version, db.QueryInt("PRAGMA user_version"));
  ABLATE_ASSIGN_OR_RETURN(id.objects, db.QueryInt("SELECT COUNT(*) FROM sqlite_schema"));
  return id;
}

Status CheckIdentity(const std::string& path, const Identity& id) {
  bool empty = id.application_id == 0 && id.user_version == 0 && id.objects == 0;
  if (empty) return Status::OK();
  if (id.application_id != kStoreApplicationId) {
    return Status::FailedPrecondition(
        fmt::format("{} is not an ablate database (application_id {:#x}); refusing to touch it",
                    path, static_cast<uint32_t>(id.application_id)));
  }
  if (id.user_version > kStoreSchemaVersion) {
    return Status::FailedPrecondition(
        fmt::format("{} has schema version {}, newer than this binary's {}; use a newer ablate",
                    path, id.user_version, kStoreSchemaVersion));
  }
  return Status::OK();
}

Status Migrate(Database& db, int64_t from) {
  ABLATE_RETURN_IF_ERROR(db.Exec("BEGIN IMMEDIATE"));
  Status status;
  for (int64_t version = from; version < kStoreSchemaVersion && status.ok(); ++version) {
    status = db.Exec(kMigrations[version]);
  }
  if (status.ok()) {
    status = db.Exec(fmt::format("PRAGMA application_id = {}; PRAGMA user_version = {}",
                                 kStoreApplicationId, kStoreSchemaVersion));
  }
  if (status.ok()) status = db.Exec("COMMIT");
  if (!status.ok()) {
    if (db.InTransaction()) db.Exec("ROLLBACK");
    return status.WithContext("migrating the schema");
  }
  return Status::OK();
}

static_assert(std::size(kMigrations) == kStoreSchemaVersion, "one migration per schema version");

}  // namespace

StatusOr<std::unique_ptr<Database>> OpenStore(const std::string& path,
                                              const StoreOptions& options) {
  ABLATE_ASSIGN_OR_RETURN(
      auto db, Database::Open(path, Database::Mode::kReadWrite, options.busy_timeout_ms));
  ABLATE_ASSIGN_OR_RETURN(Identity id, ReadIdentity(*db));
  ABLATE_RETURN_IF_ERROR(CheckIdentity(path, id));
  // Only now that the file is known to be ours may it be changed.
  const char* sync = options.sync == StoreOptions::Sync::kFull ? "FULL" : "NORMAL";
  ABLATE_RETURN_IF_ERROR(db->Exec(fmt::format(
      "PRAGMA journal_mode = WAL; PRAGMA synchronous = {}; PRAGMA foreign_keys = ON", sync)));
  if (id.user_version < kStoreSchemaVersion) ABLATE_RETURN_IF_ERROR(Migrate(*db, id.user_version));
  return db;
}

StatusOr<std::unique_ptr<Database>> OpenStoreReadOnly(const std::string& path) {
  ABLATE_ASSIGN_OR_RETURN(auto db, Database::Open(path, Database::Mode::kReadOnly));
  ABLATE_ASSIGN_OR_RETURN(Identity id, ReadIdentity(*db));
  if (id.application_id == 0 && id.objects == 0) {
    return Status::FailedPrecondition(path + " is empty, not an ablate database");
  }
  ABLATE_RETURN_IF_ERROR(CheckIdentity(path, id));
  if (id.user_version < kStoreSchemaVersion) {
    return Status::FailedPrecondition(fmt::format(
        "{} has the older schema version {}; start the coordinator on it once to upgrade it", path,
        id.user_version));
  }
  // Readers scan whole sweeps' curves: mapping the file spares copying every
  // page out of the OS cache.
  ABLATE_RETURN_IF_ERROR(db->Exec(fmt::format("PRAGMA mmap_size = {}", kReadOnlyMmapBytes)));
  return db;
}

}  // namespace ablate
