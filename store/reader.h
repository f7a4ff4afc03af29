// StoreReader: the read queries over a coordinator database, shared by the
// coordinator (through its writer thread) and the CLI (on a read-only
// connection from OpenStoreReadOnly, with no coordinator running).
//
// Thread safety: as for the Database it reads.
#ifndef ABLATE_STORE_READER_H_
#define ABLATE_STORE_READER_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "proto/ablate.pb.h"
#include "store/sqlite.h"

namespace ablate {

// The `split` column's text for a split ("train", "valid", "test").
const char* SplitName(v1::Split split);
// SPLIT_UNSPECIFIED for an unknown name.
v1::Split SplitFromName(const std::string& name);
// The metric a curve point is stored under: its name, or for the built-in
// trainer's points "<split>_bpc" ("valid_bpc").
std::string MetricOf(const v1::CurvePoint& point);
// The built-in metric of a split ("valid_bpc"); "" for SPLIT_UNSPECIFIED.
std::string SplitMetric(v1::Split split);

class StoreReader {
 public:
  // `db` must outlive the reader.
  explicit StoreReader(Database* db) : db_(db) {}

  // The sweep's id: by id (NotFound if unknown) or by name (the newest sweep
  // with that name; NotFound if none). InvalidArgument when `ref` is empty.
  StatusOr<int64_t> ResolveSweep(const v1::SweepRef& ref);

  // Every sweep with its job counts, oldest first.
  Status ListSweeps(v1::ListSweepsResponse* out);

  // The sweep `request.sweep` names, or every sweep when it is unset, with
  // its counts and its running jobs in order.
  Status GetStatus(const v1::GetStatusRequest& request, v1::GetStatusResponse* out);

  // Every registered worker with the jobs it runs.
  Status ListWorkers(v1::ListWorkersResponse* out);

  // A job's stored learning curves, by metric and then step: the built-in
  // metrics as split and bpc, others as metric and value. NotFound for an
  // unknown job.
  StatusOr<std::vector<v1::CurvePoint>> JobCurve(int64_t job_id);

  // One job with its sweep, every curve point and its events (the Sweeps
  // service's GetJob). NotFound for an unknown job.
  Status GetJob(const v1::GetJobRequest& request, v1::GetJobResponse* out);
  // A job's current checkpoint: its file's name in the coordinator's
  // checkpoint directory, and its step, size and SHA-256. NotFound for an
  // unknown job or one without a checkpoint.
  StatusOr<std::pair<std::string, v1::CheckpointInfo>> JobCheckpoint(int64_t job_id);

  // A sweep's results and averaged curves, as store/results.h's
  // QueryResults and QueryCurves.
  Status Results(const v1::ResultsRequest& request, v1::ResultsResponse* out);
  Status Curves(const v1::CurvesRequest& request, v1::CurvesResponse* out);

 private:
  Status AppendSweeps(int64_t only_id, bool with_running, v1::GetStatusResponse* out);

  Database* const db_;
};

}  // namespace ablate

#endif  // ABLATE_STORE_READER_H_
