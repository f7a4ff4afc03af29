// WorkerManager: the registry of workers (RegisterWorker, ListWorkers).
//
// Thread safety: every method may be called from any thread; `done` runs on
// the writer thread once the effect is committed. Requests and replies must
// stay alive until `done` runs.
#ifndef ABLATE_COORDINATOR_WORKER_MANAGER_H_
#define ABLATE_COORDINATOR_WORKER_MANAGER_H_

#include "coordinator/clock.h"
#include "proto/ablate.pb.h"
#include "store/writer.h"

namespace ablate {

class WorkerManager {
 public:
  // `writer` and `clock` must outlive the manager.
  WorkerManager(Writer* writer, Clock* clock) : writer_(writer), clock_(clock) {}

  // A known name is the same worker reconnecting: same id, details updated.
  // Workers register once per process, so the leases a known name still
  // holds belonged to its previous process: they lapse at once.
  void RegisterWorker(const v1::RegisterWorkerRequest& request, v1::RegisterWorkerResponse* reply,
                      Writer::Done done);

  void ListWorkers(v1::ListWorkersResponse* reply, Writer::Done done);

 private:
  Writer* const writer_;
  Clock* const clock_;
};

}  // namespace ablate

#endif  // ABLATE_COORDINATOR_WORKER_MANAGER_H_
