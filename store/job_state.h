// The states of a job, and the one place that maps them to and from the
// words the store keeps. The jobs table's CHECK constraint lists the same
// words, and SQL text spells them literally (state = 'pending'): SQLite uses
// a partial index (jobs_pending, jobs_running_by_*) only for a WHERE term
// that matches the index's own, never for a bound parameter.
#ifndef ABLATE_STORE_JOB_STATE_H_
#define ABLATE_STORE_JOB_STATE_H_

#include <optional>
#include <string_view>

namespace ablate {

enum class JobState { kPending, kRunning, kDone, kFailed, kCancelled };

// "pending", "running", "done", "failed", "cancelled".
const char* JobStateName(JobState state);
// nullopt for any other text.
std::optional<JobState> ParseJobState(std::string_view name);

}  // namespace ablate

#endif  // ABLATE_STORE_JOB_STATE_H_
