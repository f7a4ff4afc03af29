#include "worker/time_steps_command.h"

#include <sys/prctl.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <iterator>
#include <string>

#include "common/step_timing.h"
#include "worker/blas.h"
#include "worker/step_timer.h"
#include "worker/trainer.h"

namespace ablate {

namespace {

StatusOr<StepTimingReply> TimeSteps(const std::string& input) {
  const nlohmann::json json = nlohmann::json::parse(input, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return Status::InvalidArgument("the request on stdin is not JSON");
  ABLATE_ASSIGN_OR_RETURN(StepTimingRequest request, StepTimingRequest::FromJson(json));
  StepTimingReply reply;
  reply.threads = ConfigureThreads(request.threads);
  ABLATE_ASSIGN_OR_RETURN(torch::Device device, ParseDevice(request.device));
  reply.device = device.str();
  if (device.is_cpu()) reply.blas = BlasCoreName();
  for (const StepTimingRequest::Shape& shape : request.shapes) {
    ABLATE_ASSIGN_OR_RETURN(double seconds, MeasureStepSeconds(shape.config, reply.device,
                                                               shape.seq, request.budget_seconds));
    reply.seconds.push_back(seconds);
  }
  return reply;
}

}  // namespace

int RunTimeStepsCommand() {
  // `ablate launch --dry-run` waits for this reply as its parent, and names
  // itself in ABLATE_PARENT_PID. If it dies (a SIGTERM sent to it alone, say),
  // stop rather than time steps for minutes for nobody; if it died already
  // (before this line, while LibTorch loaded), stop now.
  if (const char* parent = std::getenv("ABLATE_PARENT_PID")) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (std::to_string(getppid()) != parent) {
      std::fprintf(stderr, "ablate-worker time-steps: parent %s is gone\n", parent);
      return 1;
    }
  }
  const std::string input{std::istreambuf_iterator<char>(std::cin),
                          std::istreambuf_iterator<char>()};
  StatusOr<StepTimingReply> reply = Status::Internal("not run");
  // LibTorch reports running out of memory and the like by throwing.
  try {
    reply = TimeSteps(input);
  } catch (const std::exception& e) {
    reply = Status::Internal(std::string("timing steps: ") + e.what());
  }
  if (!reply.ok()) {
    std::printf("%s\n", StepTimingErrorJson(reply.status()).dump().c_str());
    std::fprintf(stderr, "ablate-worker time-steps: %s\n", reply.status().message().c_str());
    return 1;
  }
  std::printf("%s\n", reply->ToJson().dump().c_str());
  return 0;
}

}  // namespace ablate
