// Where a reading command reads from: a database file opened read-only
// (--db PATH: no coordinator needed, and the file is never modified) or a
// running coordinator (--coordinator HOST:PORT or $ABLATE_COORDINATOR, the
// flags of AddClientFlags). Both answer every read query with the same
// messages, so a command is written once for either.
//
// --db wins over $ABLATE_COORDINATOR; --db and an explicit --coordinator
// together are an error.
#ifndef ABLATE_CLI_SOURCE_H_
#define ABLATE_CLI_SOURCE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "cli/sweeps_client.h"
#include "common/status.h"
#include "proto/ablate.pb.h"
#include "proto/rpc.h"
#include "store/reader.h"

namespace CLI {
class App;
}

namespace ablate {

struct SourceOptions {
  std::string db_path;   // --db
  ClientOptions client;  // --coordinator and whatever AddClientFlags adds
  // With --db, where the coordinator keeps checkpoints (its --checkpoint-dir);
  // empty: its default, the database path + ".ckpt".
  std::string checkpoint_dir;
};

// Registers --db and the client flags on `app`.
void AddSourceFlags(CLI::App* app, SourceOptions* options);

// A SWEEP argument as the user typed it: digits are an id, anything else a
// name (the newest sweep of that name).
v1::SweepRef ParseSweepRef(const std::string& arg);

class Source {
 public:
  // Opens the database read-only (NotFound for a missing file,
  // FailedPrecondition or DataLoss for a file that is not an ablate database)
  // or connects to the coordinator (nothing is sent yet). InvalidArgument
  // when neither is given, or both.
  static StatusOr<std::unique_ptr<Source>> Open(const SourceOptions& options);
  // The coordinator `client` talks to, which the caller may also use for
  // what is not a read (cancel, retry).
  static std::unique_ptr<Source> Over(std::shared_ptr<SweepsClient> client);
  virtual ~Source() = default;

  // "database PATH" or "coordinator HOST:PORT", for messages.
  virtual std::string Describe() const = 0;

  // The Sweeps service's read queries (StoreReader's contracts).
  virtual Status ListSweeps(v1::ListSweepsResponse* out) = 0;
  virtual Status GetStatus(const v1::GetStatusRequest& request, v1::GetStatusResponse* out) = 0;
  virtual Status ListWorkers(v1::ListWorkersResponse* out) = 0;
  virtual Status Results(const v1::ResultsRequest& request, v1::ResultsResponse* out) = 0;
  virtual Status Curves(const v1::CurvesRequest& request, v1::CurvesResponse* out) = 0;
  virtual Status GetJob(const v1::GetJobRequest& request, v1::GetJobResponse* out) = 0;
  // Job `job_id`'s current checkpoint (a done job's trained model, where its
  // sweep keeps them) written to `path` whole or not at all, once its size
  // and SHA-256 match what the database recorded; its info. NotFound for an
  // unknown job or one without a checkpoint; DataLoss for a file that does
  // not match.
  virtual StatusOr<v1::CheckpointInfo> FetchCheckpoint(int64_t job_id, const std::string& path) = 0;

  // The id of the sweep a SWEEP argument names. Digits are tried as an id
  // first and then as a name, since names may be all digits. NotFound names
  // the argument.
  StatusOr<int64_t> ResolveSweep(const std::string& arg);
};

}  // namespace ablate

#endif  // ABLATE_CLI_SOURCE_H_
