// SweepManager: launching sweeps from YAML specs and reading their state.
//
// A sweep's jobs are keyed by the sweep and their config hash. Launching the
// spec of the newest sweep of a name again (same spec hash) creates nothing.
// A changed spec under a known name is a new sweep (a name then refers to the
// newest), unless `extend` is set: then only the grid points the newest sweep
// of that name lacks are added to it, and it takes the new spec.
//
// Thread safety: every method may be called from any thread; `done` runs on
// the writer thread once the effect is committed. Requests and replies must
// stay alive until `done` runs.
#ifndef ABLATE_COORDINATOR_SWEEP_MANAGER_H_
#define ABLATE_COORDINATOR_SWEEP_MANAGER_H_

#include "coordinator/clock.h"
#include "proto/ablate.pb.h"
#include "store/writer.h"

namespace ablate {

class SweepManager {
 public:
  // `writer` and `clock` must outlive the manager.
  SweepManager(Writer* writer, Clock* clock) : writer_(writer), clock_(clock) {}

  // Parses and expands the spec on the calling thread. A spec error is an
  // InvalidArgument carrying the parser's "file:line:col: message"; then
  // nothing is written.
  void Launch(const v1::LaunchRequest& request, v1::LaunchResponse* reply, Writer::Done done);

  void ListSweeps(v1::ListSweepsResponse* reply, Writer::Done done);
  void GetStatus(const v1::GetStatusRequest& request, v1::GetStatusResponse* reply,
                 Writer::Done done);

 private:
  Writer* const writer_;
  Clock* const clock_;
};

}  // namespace ablate

#endif  // ABLATE_COORDINATOR_SWEEP_MANAGER_H_
