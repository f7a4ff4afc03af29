// The depth loop both PackedGemm kernels share: steps in order, unrolled in
// groups, each group first issuing its share of a tile's prefetches. Only
// packed_gemm_avx512.cc and packed_gemm_avx2.cc include it, each compiled
// with its own vector flags, so everything here has internal linkage
// (static): each kernel gets its own copy, and the linker can never hand one
// kernel the other's (packed_gemm_kernel.h says why that matters).
#ifndef ABLATE_WORKER_PACKED_GEMM_STEPS_H_
#define ABLATE_WORKER_PACKED_GEMM_STEPS_H_

#include <immintrin.h>

#include <cstdint>

#include "worker/packed_gemm_kernel.h"

namespace ablate {
namespace packed_gemm {

// Depth steps per group: each group issues its share of the tile's prefetches.
constexpr int64_t kGroup = 4;

// Prefetches lines [*done, *done + count) of pf's (none past its last) into
// L2 and advances *done.
__attribute__((always_inline)) static inline void PrefetchLines(const TilePrefetch& pf,
                                                                int64_t count, int64_t* done) {
  const int64_t end = *done + count < pf.lines ? *done + count : pf.lines;
  for (int64_t i = *done; i < end; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(pf.first + i * kFloatsPerLine), _MM_HINT_T1);
  }
  *done = end;
}

// Calls step(k) for k = 0 .. depth - 1 in order, in groups of kGroup steps
// unrolled, each group first issuing an equal share of pf's prefetches:
// spread out, they do not hold up the loads the tile itself waits for.
template <typename Step>
__attribute__((always_inline)) static inline void RunSteps(int64_t depth, const TilePrefetch& pf,
                                                           const Step& step) {
  const int64_t groups = depth / kGroup;
  // With no whole group, everything goes out before the first step.
  const int64_t per_group = groups > 0 ? (pf.lines + groups - 1) / groups : pf.lines;
  int64_t done = 0;
  if (groups == 0) PrefetchLines(pf, per_group, &done);
  int64_t k = 0;
  for (; k + kGroup <= depth; k += kGroup) {
    PrefetchLines(pf, per_group, &done);
#pragma GCC unroll 4
    for (int64_t j = 0; j < kGroup; ++j) step(k + j);
  }
  for (; k < depth; ++k) step(k);
}

}  // namespace packed_gemm
}  // namespace ablate

#endif  // ABLATE_WORKER_PACKED_GEMM_STEPS_H_
