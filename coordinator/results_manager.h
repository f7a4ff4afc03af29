// ResultsManager: answers the Sweeps service's read-only Results, Curves and
// GetJob calls (store/results.h) without holding up the writer. On a database
// file it reads through its own read-only connection on its own thread: in
// WAL mode that connection reads a consistent snapshot while the writer
// commits, so averaging a large sweep (seconds) delays no lease, heartbeat or
// report. A coordinator on ":memory:" has no file a second connection could
// open; there the queries run on the writer, between its batches.
//
// Thread safety: every method may be called from any thread; `done` runs on
// the manager's thread (on the writer's for ":memory:"). Requests and replies
// must stay alive until `done` runs.
#ifndef ABLATE_COORDINATOR_RESULTS_MANAGER_H_
#define ABLATE_COORDINATOR_RESULTS_MANAGER_H_

#include <memory>
#include <string>

#include "coordinator/task_runner.h"
#include "proto/ablate.pb.h"
#include "store/sqlite.h"
#include "store/writer.h"

namespace ablate {

class ResultsManager {
 public:
  // `db_path` is the coordinator's database; `writer` must outlive the
  // manager. The reading connection opens on the first query (and again
  // after a failed open).
  ResultsManager(std::string db_path, Writer* writer)
      : db_path_(std::move(db_path)), writer_(writer) {}

  void Results(const v1::ResultsRequest& request, v1::ResultsResponse* reply, Writer::Done done);
  void Curves(const v1::CurvesRequest& request, v1::CurvesResponse* reply, Writer::Done done);
  void GetJob(const v1::GetJobRequest& request, v1::GetJobResponse* reply, Writer::Done done);

 private:
  void Run(Writer::Op query, Writer::Done done);

  const std::string db_path_;
  Writer* const writer_;
  std::unique_ptr<Database> reader_;  // used only on runner_'s thread
  // Last: destroyed first, running the queries already posted while reader_
  // is still open.
  TaskRunner runner_;
};

}  // namespace ablate

#endif  // ABLATE_COORDINATOR_RESULTS_MANAGER_H_
