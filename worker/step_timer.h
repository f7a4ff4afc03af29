// How long a trainer step takes for a configuration on this machine,
// measured without its corpus: the basis of `ablate launch --dry-run`'s cost
// estimate.
#ifndef ABLATE_WORKER_STEP_TIMER_H_
#define ABLATE_WORKER_STEP_TIMER_H_

#include <cstdint>
#include <string>

#include "common/run_config.h"
#include "common/status.h"

namespace ablate {

// Seconds of one real Trainer step of `config`'s model and batch with
// train.seq set to `seq`, on `device` (as TrainerOptions::device) with
// LibTorch's current thread count, on a stand-in English corpus: one warm-up
// step, then timed steps until `budget_seconds` are spent (at least one, at
// most five); the fastest counts. config.data and the initializer are not
// used (every initializer costs the same). Errors as Trainer::Create's.
StatusOr<double> MeasureStepSeconds(const RunConfig& config, const std::string& device, int64_t seq,
                                    double budget_seconds);

}  // namespace ablate

#endif  // ABLATE_WORKER_STEP_TIMER_H_
