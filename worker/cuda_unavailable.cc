// cuda_support.h in a build without the CUDA kernels (no nvcc, or a LibTorch
// without CUDA).
#include "worker/cuda_support.h"
#include "worker/recurrence_device.h"

namespace ablate {

namespace {

constexpr const char* kNotBuilt =
    "this ablate-worker was built without CUDA kernels: build it against a CUDA LibTorch with "
    "nvcc (scripts/setup.sh cuda; README, \"Building for GPUs\")";

}  // namespace

bool CudaKernelsBuilt() { return false; }

std::unique_ptr<RecurrenceDevice> MakeCudaRecurrenceDevice() { TORCH_CHECK(false, kNotBuilt); }

std::string DescribeDevice(const torch::Device& device) { return device.str(); }

std::unique_ptr<CudaRunner> CudaRunner::Create(const torch::Device& device) {
  TORCH_CHECK(false, kNotBuilt, " (device ", device.str(), ")");
}

}  // namespace ablate
