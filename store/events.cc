#include "store/events.h"

namespace ablate {

Status RecordEvent(Database& db, const Event& event) {
  return db.Run(
      "INSERT INTO events (time_ms, sweep_id, job_id, worker_id, kind, detail) "
      "VALUES (?, ?, ?, ?, ?, ?)",
      event.time_ms, event.sweep_id, event.job_id, event.worker_id, event.kind, event.detail);
}

}  // namespace ablate
