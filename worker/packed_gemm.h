// A matrix product with a constant right-hand side, for the recurrent
// matmuls: every timestep multiplies a [B, H] state by the same weight, and
// with B ~100 rows OpenBLAS runs at about half its large-matrix rate, largely
// because it repacks the weight at every call. PackedGemm packs the weight
// once and runs an AVX-512 or an AVX2 kernel over it (vector_isa.h decides).
#ifndef ABLATE_WORKER_PACKED_GEMM_H_
#define ABLATE_WORKER_PACKED_GEMM_H_

#include <torch/torch.h>

#include <cstdint>

#include "worker/packed_gemm_kernel.h"
#include "worker/vector_isa.h"

namespace ablate {

// Whether PackedGemm may use its own kernel (default: yes, unless the
// environment sets ABLATE_GEMM=blas). Benchmarks flip it to compare with
// LibTorch's BLAS in one process. Read when a PackedGemm is constructed.
void SetPackedGemmEnabled(bool enabled);
bool PackedGemmEnabled();

// How Run's kernels walk w (depth block, prefetch; packed_gemm_kernel.h):
// the defaults unless a benchmark sets another to compare in one process.
// Read at every Run; it never changes a result.
void SetPackedGemmSchedule(const packed_gemm::Schedule& schedule);
packed_gemm::Schedule PackedGemmSchedule();

// c = beta * c + a * w for a fixed w ([K, N], any strides and dtype).
//
// The kernel runs when the CPU has AVX-512F or AVX2 with FMA (VectorIsaInUse),
// w is float32 on the CPU and it will be used often enough; otherwise Run
// calls LibTorch (the gradient checks run in double). Both kernels give the
// same bits. The kernel computes every element of c on one thread,
// summing over k in a fixed order, so its results do not depend on the thread
// count. w must stay unchanged while the PackedGemm is in use; the
// packed copy is taken at construction. Threads may call Run at once on
// disjoint outputs if each passes its own scratch buffer.
class PackedGemm {
 public:
  // `calls`: how many products Run will compute. Packing costs about as much
  // as a few products, so for fewer than kMinCallsToPack Run calls LibTorch.
  PackedGemm(const torch::Tensor& w, int64_t calls);

  static constexpr int64_t kMinCallsToPack = 4;

  // a: [M, K], c: [M, N], both contiguous with w's dtype; c is written in
  // place. beta 0 ignores c's old contents (NaN included). `scratch` holds
  // a's packed copy between calls (grown as needed); without one Run uses a
  // buffer of its own. Called inside an at::parallel_for, Run stays on the
  // calling thread.
  void Run(const torch::Tensor& a, double beta, torch::Tensor* c, torch::Tensor* scratch = nullptr);

  // Whether Run uses a kernel of its own (AVX-512 or AVX2) rather than LibTorch.
  bool packed() const { return isa_ != VectorIsa::kBaseline; }

  // The kernel Run uses: kAvx512, kAvx2, or kBaseline for LibTorch.
  VectorIsa isa() const { return isa_; }

 private:
  torch::Tensor w_;       // the original, for the LibTorch path
  torch::Tensor packed_;  // [panels, K, kPanelWidth] flat, or undefined
  VectorIsa isa_ = VectorIsa::kBaseline;
  torch::Tensor a_buffer_;
  int64_t k_ = 0, n_ = 0;
};

}  // namespace ablate

#endif  // ABLATE_WORKER_PACKED_GEMM_H_
