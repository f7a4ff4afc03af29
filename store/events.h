// The events table: one row per state transition (a lease, a completion, an
// expiry, a launch...), kept for audit and debugging.
#ifndef ABLATE_STORE_EVENTS_H_
#define ABLATE_STORE_EVENTS_H_

#include <cstdint>
#include <optional>
#include <string>

#include "common/status.h"
#include "store/sqlite.h"

namespace ablate {

struct Event {
  int64_t time_ms = 0;
  std::optional<int64_t> sweep_id;
  std::optional<int64_t> job_id;
  std::optional<int64_t> worker_id;
  std::string kind;  // e.g. "lease", "complete", "expire"
  std::string detail;
};

// Appends `event`; call inside the transaction that makes the transition.
Status RecordEvent(Database& db, const Event& event);

}  // namespace ablate

#endif  // ABLATE_STORE_EVENTS_H_
