// CoordinatorServer: the whole coordinator assembled — database, writer,
// managers, checkpoint directory, the lease sweep, and the gRPC server with
// the Coordinator, Sweeps and standard health services. Building the gRPC
// server happens in one place (Start), which also decides its security:
//  - a shared token: every call must carry "authorization: Bearer <token>"
//    (Unauthenticated otherwise), except those to the standard health
//    service, which container and Kubernetes probes make without metadata
//    and which reveals nothing but SERVING or NOT_SERVING;
//  - TLS with a server certificate, and optionally mutual TLS: only clients
//    with a certificate signed by the client CA get through the handshake;
//  - the bind rule: without a token the server listens on loopback only.
#ifndef ABLATE_COORDINATOR_SERVER_H_
#define ABLATE_COORDINATOR_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "common/mutex.h"
#include "common/status.h"
#include "coordinator/checkpoint_manager.h"
#include "coordinator/clock.h"
#include "coordinator/grpc_services.h"
#include "coordinator/job_manager.h"
#include "coordinator/results_manager.h"
#include "coordinator/sweep_manager.h"
#include "coordinator/worker_manager.h"
#include "store/sqlite.h"
#include "store/store.h"
#include "store/wal_checkpointer.h"
#include "store/writer.h"

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
  // The shared token every call must carry; empty: none, and then `listen`
  // must be a loopback address.
  std::string token;
  // TLS, as PEM contents: a certificate (chain) with its key turns TLS on;
  // a client CA as well requires every client to present a certificate it
  // signed. All empty: plaintext.
  std::string tls_cert_pem, tls_key_pem, tls_client_ca_pem;
};

// True when `listen` (HOST:PORT) can only be reached from this machine:
// 127.0.0.0/8, ::1, localhost, or a unix: socket.
bool IsLoopbackAddress(const std::string& listen);

class CoordinatorServer {
 public:
  // Opens the database (renewing the leases of jobs that were running), cleans
  // the checkpoint directory and starts serving. InvalidArgument, before
  // anything is opened, for a non-loopback `listen` without a token or an
  // unusable TLS setting (naming the flag at fault).
  static StatusOr<std::unique_ptr<CoordinatorServer>> Start(const CoordinatorOptions& options);
  // Shuts down if still serving.
  ~CoordinatorServer();

  // The address actually bound, with the port chosen for port 0.
  const std::string& address() const { return address_; }
  int port() const { return port_; }

  // Graceful: reports NOT_SERVING and refuses new calls (Unavailable), lets
  // the calls in flight finish (cancelling them after `grace_ms`), then
  // commits everything queued. Idempotent.
  void Shutdown(int grace_ms = 5000) EXCLUDES(mu_);

 private:
  explicit CoordinatorServer(const CoordinatorOptions& options) : options_(options) {}
  void SweepLeases() EXCLUDES(mu_);
  // Waits `period`, less when shutdown begins meanwhile; true when it has.
  bool StoppingWithin(std::chrono::milliseconds period) REQUIRES(mu_);

  const CoordinatorOptions options_;
  std::string address_;
  int port_ = 0;

  // In dependency order: each is built from those above it and destroyed
  // before them.
  std::unique_ptr<Database> db_;
  std::unique_ptr<WalCheckpointer> wal_checkpointer_;  // null for ":memory:"
  std::unique_ptr<Writer> writer_;
  std::unique_ptr<WorkerManager> workers_;
  std::unique_ptr<JobManager> jobs_;
  std::unique_ptr<SweepManager> sweeps_;
  std::unique_ptr<CheckpointManager> checkpoints_;
  std::unique_ptr<ResultsManager> results_;
  CallGate gate_;
  std::unique_ptr<CoordinatorService> coordinator_service_;
  std::unique_ptr<SweepsService> sweeps_service_;
  std::unique_ptr<grpc::Server> server_;

  Mutex mu_;
  CondVar wake_{&mu_};
  bool stopping_ GUARDED_BY(mu_) = false;
  std::thread lease_sweeper_;
};

}  // namespace ablate

#endif  // ABLATE_COORDINATOR_SERVER_H_
