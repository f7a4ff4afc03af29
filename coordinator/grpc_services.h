// The gRPC glue: callback-API services that hand each request to a manager
// and finish the call from the manager's completion, so no gRPC thread ever
// waits on the disk. No scheduling logic lives here.
#ifndef ABLATE_COORDINATOR_GRPC_SERVICES_H_
#define ABLATE_COORDINATOR_GRPC_SERVICES_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <string>

#include "common/mutex.h"
#include "common/status.h"
#include "coordinator/checkpoint_manager.h"
#include "coordinator/job_manager.h"
#include "coordinator/results_manager.h"
#include "coordinator/sweep_manager.h"
#include "coordinator/worker_manager.h"
#include "proto/ablate.grpc.pb.h"

namespace ablate {

// Admits calls: checks the shared token when one is configured, counts the
// calls in flight so that a shutdown can let them finish, and turns new calls
// away (Unavailable, so clients retry elsewhere or later) once it began.
// gRPC's own Shutdown cannot do the latter alone: it also waits out its whole
// deadline for idle client connections to go away.
class CallGate {
 public:
  // Every call must then carry "authorization: Bearer <token>". Call before
  // serving. An empty token admits every caller.
  void RequireToken(const std::string& token);
  // OK when the call may go on; the caller must Leave() once it is done.
  // Otherwise the status to finish it with: Unauthenticated for a missing or
  // wrong token (logged with the peer, never with a token), Unavailable once
  // closed. Thread-safe.
  grpc::Status Enter(const grpc::ServerContextBase& context) EXCLUDES(mu_);
  // Ends a call that entered. Thread-safe.
  void Leave() EXCLUDES(mu_);
  // Turns new calls away, then waits until none is in flight or `deadline`
  // passes. True when none is left.
  bool CloseAndWait(std::chrono::system_clock::time_point deadline) EXCLUDES(mu_);

 private:
  grpc::Status Authenticate(const grpc::ServerContextBase& context) EXCLUDES(mu_);

  // SHA-256 of "Bearer <token>"; empty: no token required. Digests of equal
  // length make the comparison's time independent of the presented token.
  std::string expected_digest_;  // set before serving, then read-only
  Mutex mu_;
  CondVar idle_{&mu_};
  int in_flight_ GUARDED_BY(mu_) = 0;
  bool closed_ GUARDED_BY(mu_) = false;
  // Refusals are logged at most once a second, with a count, so a flood of
  // bad calls cannot flood the log.
  std::chrono::steady_clock::time_point last_refusal_log_ GUARDED_BY(mu_);
  int64_t refusals_unlogged_ GUARDED_BY(mu_) = 0;
};

class CoordinatorService final : public v1::Coordinator::CallbackService {
 public:
  // The managers and the gate must outlive the service.
  CoordinatorService(WorkerManager* workers, JobManager* jobs, CheckpointManager* checkpoints,
                     CallGate* gate)
      : workers_(workers), jobs_(jobs), checkpoints_(checkpoints), gate_(gate) {}

  grpc::ServerUnaryReactor* RegisterWorker(grpc::CallbackServerContext* context,
                                           const v1::RegisterWorkerRequest* request,
                                           v1::RegisterWorkerResponse* reply) override;
  grpc::ServerUnaryReactor* LeaseJob(grpc::CallbackServerContext* context,
                                     const v1::LeaseJobRequest* request,
                                     v1::LeaseJobResponse* reply) override;
  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* context,
                                      const v1::HeartbeatRequest* request,
                                      v1::HeartbeatResponse* reply) override;
  grpc::ServerUnaryReactor* ReportPoints(grpc::CallbackServerContext* context,
                                         const v1::ReportPointsRequest* request,
                                         v1::ReportPointsResponse* reply) override;
  grpc::ServerReadReactor<v1::UploadCheckpointRequest>* UploadCheckpoint(
      grpc::CallbackServerContext* context, v1::UploadCheckpointResponse* reply) override;
  grpc::ServerWriteReactor<v1::DownloadCheckpointResponse>* DownloadCheckpoint(
      grpc::CallbackServerContext* context, const v1::DownloadCheckpointRequest* request) override;
  grpc::ServerUnaryReactor* CompleteJob(grpc::CallbackServerContext* context,
                                        const v1::CompleteJobRequest* request,
                                        v1::CompleteJobResponse* reply) override;
  grpc::ServerUnaryReactor* FailJob(grpc::CallbackServerContext* context,
                                    const v1::FailJobRequest* request,
                                    v1::FailJobResponse* reply) override;
  grpc::ServerUnaryReactor* ReleaseJob(grpc::CallbackServerContext* context,
                                       const v1::ReleaseJobRequest* request,
                                       v1::ReleaseJobResponse* reply) override;

 private:
  WorkerManager* const workers_;
  JobManager* const jobs_;
  CheckpointManager* const checkpoints_;
  CallGate* const gate_;
};

class SweepsService final : public v1::Sweeps::CallbackService {
 public:
  // The managers and the gate must outlive the service.
  SweepsService(SweepManager* sweeps, JobManager* jobs, WorkerManager* workers,
                ResultsManager* results, CheckpointManager* checkpoints, CallGate* gate)
      : sweeps_(sweeps),
        jobs_(jobs),
        workers_(workers),
        results_(results),
        checkpoints_(checkpoints),
        gate_(gate) {}

  grpc::ServerUnaryReactor* Launch(grpc::CallbackServerContext* context,
                                   const v1::LaunchRequest* request,
                                   v1::LaunchResponse* reply) override;
  grpc::ServerUnaryReactor* ListSweeps(grpc::CallbackServerContext* context,
                                       const v1::ListSweepsRequest* request,
                                       v1::ListSweepsResponse* reply) override;
  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* context,
                                      const v1::GetStatusRequest* request,
                                      v1::GetStatusResponse* reply) override;
  grpc::ServerUnaryReactor* Cancel(grpc::CallbackServerContext* context,
                                   const v1::CancelRequest* request,
                                   v1::CancelResponse* reply) override;
  grpc::ServerUnaryReactor* Retry(grpc::CallbackServerContext* context,
                                  const v1::RetryRequest* request,
                                  v1::RetryResponse* reply) override;
  grpc::ServerUnaryReactor* ListWorkers(grpc::CallbackServerContext* context,
                                        const v1::ListWorkersRequest* request,
                                        v1::ListWorkersResponse* reply) override;
  grpc::ServerUnaryReactor* Results(grpc::CallbackServerContext* context,
                                    const v1::ResultsRequest* request,
                                    v1::ResultsResponse* reply) override;
  grpc::ServerUnaryReactor* Curves(grpc::CallbackServerContext* context,
                                   const v1::CurvesRequest* request,
                                   v1::CurvesResponse* reply) override;
  grpc::ServerUnaryReactor* GetJob(grpc::CallbackServerContext* context,
                                   const v1::GetJobRequest* request,
                                   v1::GetJobResponse* reply) override;
  grpc::ServerWriteReactor<v1::DownloadCheckpointResponse>* GetCheckpoint(
      grpc::CallbackServerContext* context, const v1::GetCheckpointRequest* request) override;

 private:
  SweepManager* const sweeps_;
  JobManager* const jobs_;
  WorkerManager* const workers_;
  ResultsManager* const results_;
  CheckpointManager* const checkpoints_;
  CallGate* const gate_;
};

}  // namespace ablate

#endif  // ABLATE_COORDINATOR_GRPC_SERVICES_H_
