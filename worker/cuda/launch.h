// The CUDA side of the device recurrence: each kernel body of
// worker/device_kernels.h launched as a grid on a stream. Compiled by nvcc
// (device_kernels.cu); called from cuda_support.cc, which turns the error
// codes into messages and runs the products through LibTorch.
#ifndef ABLATE_WORKER_CUDA_LAUNCH_H_
#define ABLATE_WORKER_CUDA_LAUNCH_H_

#include <cuda_runtime_api.h>

#include "worker/device_kernels.h"

namespace ablate {
namespace cuda {

// Each queues the kernel on `stream` and returns what cudaGetLastError says
// of the launch.
cudaError_t Launch(const device::GatedGatesForward& args, cudaStream_t stream);
cudaError_t Launch(const device::GatedCandidateForward& args, cudaStream_t stream);
cudaError_t Launch(const device::GatedCandidateBackward& args, cudaStream_t stream);
cudaError_t Launch(const device::GatedGatesBackward& args, cudaStream_t stream);
cudaError_t Launch(const device::LstmForward& args, cudaStream_t stream);
cudaError_t Launch(const device::LstmBackward& args, cudaStream_t stream);
cudaError_t Launch(const device::ColumnPartialSums& args, cudaStream_t stream);
cudaError_t Launch(const device::ColumnFinalSums& args, cudaStream_t stream);
cudaError_t Launch(const device::TableGradient& args, cudaStream_t stream);

}  // namespace cuda
}  // namespace ablate

#endif  // ABLATE_WORKER_CUDA_LAUNCH_H_
