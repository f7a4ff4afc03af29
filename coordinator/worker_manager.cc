#include "coordinator/worker_manager.h"

#include "store/events.h"
#include "store/reader.h"

namespace ablate {

namespace {

// Generous bounds: names and versions are shown in tables, not stored at length.
constexpr size_t kMaxFieldBytes = 256;

Status ValidateRegistration(const v1::RegisterWorkerRequest& r) {
  if (r.name().empty()) return Status::InvalidArgument("a worker name is required");
  for (const std::string* field : {&r.name(), &r.host(), &r.device(), &r.version()}) {
    if (field->size() > kMaxFieldBytes) {
      return Status::InvalidArgument("worker field longer than 256 bytes: " + field->substr(0, 32) +
                                     "...");
    }
  }
  if (r.threads() < 0) return Status::InvalidArgument("threads must not be negative");
  return Status::OK();
}

}  // namespace

void WorkerManager::RegisterWorker(const v1::RegisterWorkerRequest& request,
                                   v1::RegisterWorkerResponse* reply, Writer::Done done) {
  Status invalid = ValidateRegistration(request);
  if (!invalid.ok()) return done(invalid);
  writer_->Submit(
      [this, &request, reply](Database& db) -> Status {
        int64_t now = clock_->NowMs();
        ABLATE_ASSIGN_OR_RETURN(Rows known,
                                db.Query("SELECT id FROM workers WHERE name = ?", request.name()));
        ABLATE_ASSIGN_OR_RETURN(bool reconnect, known.Next());
        int64_t id = reconnect ? known.Int(0) : 0;
        if (reconnect) {
          ABLATE_RETURN_IF_ERROR(db.Run(
              "UPDATE workers SET host = ?, device = ?, threads = ?, version = ?, "
              "last_seen_ms = ? WHERE id = ?",
              request.host(), request.device(), request.threads(), request.version(), now, id));
          // A worker registers once per process: one registering again under
          // its name was restarted, and the jobs its old process leased are
          // orphaned. Their leases lapse now rather than a lease period later
          // (the usual expiry then re-offers them, counting the attempt).
          // (Expiry is strictly before now, hence now - 1.)
          ABLATE_RETURN_IF_ERROR(db.Run(
              "UPDATE jobs SET lease_expiry_ms = ? WHERE state = 'running' AND lease_owner = ? "
              "AND lease_expiry_ms >= ?",
              now - 1, id, now));
        } else {
          ABLATE_RETURN_IF_ERROR(
              db.Run("INSERT INTO workers (name, host, device, threads, version, registered_ms, "
                     "last_seen_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                     request.name(), request.host(), request.device(), request.threads(),
                     request.version(), now, now));
          id = db.LastInsertRowId();
        }
        reply->set_worker_id(id);
        return RecordEvent(
            db, {now, std::nullopt, std::nullopt, id, reconnect ? "reconnect" : "register",
                 request.host() + " " + request.device()});
      },
      std::move(done));
}

void WorkerManager::ListWorkers(v1::ListWorkersResponse* reply, Writer::Done done) {
  writer_->Submit([reply](Database& db) { return StoreReader(&db).ListWorkers(reply); },
                  std::move(done));
}

}  // namespace ablate
