// Drives the GPU supervisor on a machine without GPUs, for supervisor_test:
// resolves --gpus against a device count the test gives, exactly as
// `ablate-worker --gpus` does against CUDA's, then runs every child on the
// device the test names (cpu) instead of cuda:0. Everything else, the
// children's names, flags, CUDA_VISIBLE_DEVICES, workers per GPU, signals and
// restarts, is the product's code path.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>

#include "worker/gpu_supervisor.h"

int main(int argc, char** argv) {
  CLI::App app{"supervisor_harness: the GPU supervisor with CPU children"};
  ablate::SupervisorOptions options;
  std::string gpus = "all", device = "cpu";
  int device_count = 1, backoff_ms = 1000, jobs_per_gpu = 1;
  app.add_option("--worker", options.program, "ablate-worker binary")->required();
  app.add_option("--name", options.name, "Children are named NAME/gpuI (NAME/gpuI.J)")->required();
  app.add_option("--gpus", gpus, "As ablate-worker --gpus");
  app.add_option("--device-count", device_count, "GPUs that CUDA would see");
  app.add_option("--jobs-per-gpu", jobs_per_gpu, "As ablate-worker --jobs-per-gpu")
      ->check(CLI::Range(1, ablate::kMaxJobsPerGpu));
  app.add_option("--device", device, "What every child trains on");
  app.add_option("--max-restarts", options.max_restarts, "Crashes in a row before giving up");
  app.add_option("--backoff-ms", backoff_ms, "First restart backoff");
  app.add_option("args", options.args, "Flags for every child, after --");
  CLI11_PARSE(app, argc, argv);

  spdlog::set_default_logger(spdlog::stderr_color_mt("harness"));
  auto slots = ablate::ResolveGpuSlots(gpus, device_count, std::getenv("CUDA_VISIBLE_DEVICES"));
  if (!slots.ok()) {
    std::fprintf(stderr, "%s\n", slots.status().ToString().c_str());
    return 2;
  }
  for (ablate::WorkerSlot& slot : *slots) slot.device = device;
  options.slots = ablate::SharedGpuSlots(*slots, jobs_per_gpu);
  options.first_backoff = std::chrono::milliseconds(backoff_ms);
  return ablate::RunSupervisor(options);
}
