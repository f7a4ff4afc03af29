// Helpers shared by the coordinator's tests.
#ifndef ABLATE_COORDINATOR_TEST_UTIL_H_
#define ABLATE_COORDINATOR_TEST_UTIL_H_

#include <memory>
#include <string>
#include <utility>

#include "coordinator/clock.h"
#include "coordinator/job_manager.h"
#include "coordinator/sweep_manager.h"
#include "coordinator/worker_manager.h"
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
