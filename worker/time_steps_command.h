// `ablate-worker time-steps`: times real trainer steps for the CLI's cost
// estimate (`ablate launch --dry-run`), which runs it so that the `ablate`
// binary does not load LibTorch. Reads a StepTimingRequest as JSON on stdin
// (common/step_timing.h) and prints a StepTimingReply as one JSON line.
#ifndef ABLATE_WORKER_TIME_STEPS_COMMAND_H_
#define ABLATE_WORKER_TIME_STEPS_COMMAND_H_

namespace ablate {

// Returns the process exit code: 0 with a reply, 1 with an error reply
// (StepTimingErrorJson) on stdout and the message on stderr.
int RunTimeStepsCommand();

}  // namespace ablate

#endif  // ABLATE_WORKER_TIME_STEPS_COMMAND_H_
