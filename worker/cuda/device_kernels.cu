#include <cuda_runtime.h>

#include "worker/cuda/launch.h"

namespace ablate {
namespace cuda {

namespace {

// Threads per block, for row and column kernels alike: a multiple of the
// warp size (BlockTeam needs that), and kColumnTile for column kernels.
constexpr int kThreads = 256;
static_assert(kThreads == device::kColumnTile, "a column kernel's thread takes one column");
constexpr int kWarp = 32;
constexpr int kWarps = kThreads / kWarp;

// A block as a device_kernels.h team. Sum and Sum2 reduce in a fixed order:
// within a warp by a butterfly of shuffles (every lane ends with the same
// bits: each level adds the same two values in either order), then the
// warps' totals one after the other, by every thread alike.
struct BlockTeam {
  __device__ int index() const { return threadIdx.x; }
  __device__ int count() const { return blockDim.x; }

  __device__ float Sum(float v) {
    __shared__ float totals[kWarps];
    v = WarpSum(v);
    if (threadIdx.x % kWarp == 0) totals[threadIdx.x / kWarp] = v;
    __syncthreads();
    float sum = 0;
    for (int w = 0; w < kWarps; ++w) sum += totals[w];
    __syncthreads();  // before the next call writes totals again
    return sum;
  }

  __device__ void Sum2(float* a, float* b) {
    __shared__ float totals[2][kWarps];
    const float wa = WarpSum(*a), wb = WarpSum(*b);
    if (threadIdx.x % kWarp == 0) {
      totals[0][threadIdx.x / kWarp] = wa;
      totals[1][threadIdx.x / kWarp] = wb;
    }
    __syncthreads();
    float sa = 0, sb = 0;
    for (int w = 0; w < kWarps; ++w) {
      sa += totals[0][w];
      sb += totals[1][w];
    }
    __syncthreads();
    *a = sa;
    *b = sb;
  }

  static __device__ float WarpSum(float v) {
    for (int offset = kWarp / 2; offset > 0; offset /= 2) {
      v += __shfl_xor_sync(0xffffffffu, v, offset);
    }
    return v;
  }
};

template <typename Args>
__global__ void __launch_bounds__(kThreads) BodyKernel(const Args args) {
  BlockTeam team;
  Args::Run(args, device::Block{blockIdx.x, blockIdx.y}, team);
}

template <typename Args>
cudaError_t LaunchBody(const Args& args, cudaStream_t stream) {
  const device::GridSize grid = args.Grid();
  if (grid.x == 0 || grid.y == 0) return cudaSuccess;
  if (grid.x > 0x7fffffff || grid.y > 65535) return cudaErrorInvalidConfiguration;
  BodyKernel<Args><<<dim3(unsigned(grid.x), unsigned(grid.y)), kThreads, 0, stream>>>(args);
  return cudaGetLastError();
}

}  // namespace

cudaError_t Launch(const device::GatedGatesForward& a, cudaStream_t s) { return LaunchBody(a, s); }
cudaError_t Launch(const device::GatedCandidateForward& a, cudaStream_t s) {
  return LaunchBody(a, s);
}
cudaError_t Launch(const device::GatedCandidateBackward& a, cudaStream_t s) {
  return LaunchBody(a, s);
}
cudaError_t Launch(const device::GatedGatesBackward& a, cudaStream_t s) { return LaunchBody(a, s); }
cudaError_t Launch(const device::LstmForward& a, cudaStream_t s) { return LaunchBody(a, s); }
cudaError_t Launch(const device::LstmBackward& a, cudaStream_t s) { return LaunchBody(a, s); }
cudaError_t Launch(const device::ColumnPartialSums& a, cudaStream_t s) { return LaunchBody(a, s); }
cudaError_t Launch(const device::ColumnFinalSums& a, cudaStream_t s) { return LaunchBody(a, s); }
cudaError_t Launch(const device::TableGradient& a, cudaStream_t s) { return LaunchBody(a, s); }

}  // namespace cuda
}  // namespace ablate
