// The wire format of `ablate-worker time-steps`: the CLI's cost estimate
// (`ablate launch --dry-run`) asks the worker binary to time trainer steps,
// so that the CLI itself does not load LibTorch. Both sides are plain JSON
// on a pipe: a request on the worker's stdin, a reply on its stdout.
#ifndef ABLATE_COMMON_STEP_TIMING_H_
#define ABLATE_COMMON_STEP_TIMING_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/run_config.h"
#include "common/status.h"

namespace ablate {

struct StepTimingRequest {
  struct Shape {
    RunConfig config;  // model, batch and precision; data and the initializer are ignored
    int64_t seq = 0;   // timed at this train.seq instead of the config's
  };
  std::vector<Shape> shapes;
  std::string device = "auto";  // as TrainerOptions::device
  int threads = 0;              // LibTorch intra-op threads; 0: the machine's cores
  double budget_seconds = 0.5;  // per shape (MeasureStepSeconds)

  nlohmann::json ToJson() const;
  // Errors: InvalidArgument naming the field.
  static StatusOr<StepTimingRequest> FromJson(const nlohmann::json& json);
};

struct StepTimingReply {
  std::vector<double> seconds;  // of one step, parallel to the request's shapes
  std::string device;           // what "auto" became: "cpu" or "cuda:0"
  int threads = 0;
  std::string blas;  // OpenBLAS's kernels, "" when not OpenBLAS or not on the CPU

  nlohmann::json ToJson() const;
  static StatusOr<StepTimingReply> FromJson(const nlohmann::json& json);
};

// A failed request's reply: {"error": {"code": N, "message": "..."}}, so that
// the caller gets the worker's Status back unchanged.
nlohmann::json StepTimingErrorJson(const Status& status);
// The Status a reply carries: OK unless it is an error reply.
Status StepTimingErrorFromJson(const nlohmann::json& json);

}  // namespace ablate

#endif  // ABLATE_COMMON_STEP_TIMING_H_
