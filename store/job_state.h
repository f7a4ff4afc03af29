// The states of a job, and the one place that spells them as the store
// keeps them (the jobs table's CHECK constraint lists the same words).
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
