// CoordinatorServer: the whole coordinator assembled — database, writer,
// managers, checkpoint directory, the lease sweep, and the gRPC server with
// the Coordinator, Sweeps and standard health services. Building the gRPC
// server happens in one place (Start) so that transport security and token
// authentication can be added there.
#ifndef ABLATE_COORDINATOR_SERVER_H_
#define ABLATE_COORDINATOR_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/status.h"
#include "coordinator/checkpoint_manager.h"
#include "coordinator/clock.h"
#include "coordinator/grpc_services.h"
#include "coordinator/job_manager.h"
#include "coordinator/sqlite.h"
#include "coordinator/store.h"
#include "coordinator/sweep_manager.h"
#include "coordinator/worker_manager.h"
#include "coordinator/writer.h"

namespace ablate {

struct CoordinatorOptions {
  std::string db_path;                     // ":memory:" for a throwaway coordinator
  std::string listen = "127.0.0.1:50051";  // port 0 picks a free port
  std::string checkpoint_dir;              // empty: db_path + ".ckpt"
  StoreOptions store;
  Writer::Options writer;
  Clock* clock = Clock::Real();
  // How often expired leases are looked for.
  int lease_sweep_ms = 1000;
  // Larger requests are refused; a checkpoint chunk is 1 MiB.
  int max_receive_message_bytes = 8 << 20;
};

class CoordinatorServer {
 public:
  // Opens the database (renewing the leases of jobs that were running), cleans
  // the checkpoint directory and starts serving.
  static StatusOr<std::unique_ptr<CoordinatorServer>> Start(const CoordinatorOptions& options);
  // Shuts down if still serving.
  ~CoordinatorServer();

  // The address actually bound, with the port chosen for port 0.
  const std::string& address() const { return address_; }
  int port() const { return port_; }

  // Graceful: reports NOT_SERVING and refuses new calls (Unavailable), lets
  // the calls in flight finish (cancelling them after `grace_ms`), then
  // commits everything queued. Idempotent.
  void Shutdown(int grace_ms = 5000);

 private:
  explicit CoordinatorServer(const CoordinatorOptions& options) : options_(options) {}
  void SweepLeases();

  const CoordinatorOptions options_;
  std::string address_;
  int port_ = 0;

  // In dependency order: each is built from those above it and destroyed
  // before them.
  std::unique_ptr<Database> db_;
  std::unique_ptr<Writer> writer_;
  std::unique_ptr<WorkerManager> workers_;
  std::unique_ptr<JobManager> jobs_;
  std::unique_ptr<SweepManager> sweeps_;
  std::unique_ptr<CheckpointManager> checkpoints_;
  CallGate gate_;
  std::unique_ptr<CoordinatorService> coordinator_service_;
  std::unique_ptr<SweepsService> sweeps_service_;
  std::unique_ptr<grpc::Server> server_;

  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;  // GUARDED_BY(mu_)
  std::thread lease_sweeper_;
};

}  // namespace ablate

#endif  // ABLATE_COORDINATOR_SERVER_H_
