// Helpers shared by the coordinator's tests.
#ifndef ABLATE_COORDINATOR_TEST_UTIL_H_
#define ABLATE_COORDINATOR_TEST_UTIL_H_

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <utility>

#include "coordinator/clock.h"
#include "coordinator/job_manager.h"
#include "coordinator/sweep_manager.h"
#include "coordinator/worker_manager.h"
#include "proto/ablate.grpc.pb.h"
#include "store/store.h"
#include "store/test_util.h"
#include "store/writer.h"

namespace ablate {
namespace testing {

// The test grid: 3 cells x 2 layer_norm x 3 inits = 18 jobs. `extra` is
// appended to the YAML (e.g. a schedule section).
inline std::string TestSpec(const std::string& name = "ablation", const std::string& extra = "") {
  return "name: " + name + R"(
data: {path: x}
grid:
  cell: [lstm, gru, mgu]
  layer_norm: [true, false]
  init: [xavier, variance_scaling, orthogonal]
)" + extra;
}

inline constexpr int kTestSpecJobs = 18;

// A curve point at `step` of a run that reads `bytes_per_step` bytes and
// takes `seconds_per_step` seconds a step.
inline v1::CurvePoint TestPoint(v1::Split split, int64_t step, double bpc,
                                int64_t bytes_per_step = 1000, double seconds_per_step = 0.5) {
  v1::CurvePoint p;
  p.set_split(split);
  p.set_step(step);
  p.set_bpc(bpc);
  p.set_bytes_seen(step * bytes_per_step);
  p.set_wall_time(static_cast<double>(step) * seconds_per_step);
  return p;
}

// Registers a worker named `name` with a coordinator over gRPC, then leases
// it a job: the lease, empty when there was no job. A failed call fails the
// test.
inline v1::JobLease RegisterAndLease(v1::Coordinator::StubInterface* coordinator,
                                     const std::string& name) {
  v1::RegisterWorkerRequest registration;
  registration.set_name(name);
  registration.set_device("cpu");
  v1::RegisterWorkerResponse registered;
  grpc::ClientContext register_context;
  grpc::Status status = coordinator->RegisterWorker(&register_context, registration, &registered);
  EXPECT_TRUE(status.ok()) << status.error_message();
  v1::LeaseJobRequest request;
  request.set_worker_id(registered.worker_id());
  v1::LeaseJobResponse reply;
  grpc::ClientContext lease_context;
  status = coordinator->LeaseJob(&lease_context, request, &reply);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return reply.job();
}

// The coordinator's managers over one database, assembled as the server
// assembles them, for the tests that drive them directly: the database
// (a file, or ":memory:"), its writer, a fake clock, and the worker, job and
// sweep managers. Close() takes them down in order, everything committed;
// Open() brings them up again on the same database, as a restart does.
class Managers {
 public:
  explicit Managers(std::string path) : path_(std::move(path)) {}
  ~Managers() { Close(); }

  Status Open() {
    auto opened = OpenStore(path_);
    if (!opened.ok()) return opened.status();
    db = std::move(opened).value();
    writer = std::make_unique<Writer>(db.get());
    workers = std::make_unique<WorkerManager>(writer.get(), &clock);
    jobs = std::make_unique<JobManager>(writer.get(), &clock);
    sweeps = std::make_unique<SweepManager>(writer.get(), &clock);
    return Status::OK();
  }

  void Close() {
    sweeps.reset();
    jobs.reset();
    workers.reset();
    writer.reset();
    db.reset();
  }

  FakeClock clock;
  std::unique_ptr<Database> db;
  std::unique_ptr<Writer> writer;
  std::unique_ptr<WorkerManager> workers;
  std::unique_ptr<JobManager> jobs;
  std::unique_ptr<SweepManager> sweeps;

 private:
  std::string path_;
};

}  // namespace testing
}  // namespace ablate

#endif  // ABLATE_COORDINATOR_TEST_UTIL_H_
