#include <immintrin.h>

#include <cstdint>

#include "worker/packed_gemm_kernel.h"
#include "worker/packed_gemm_steps.h"

namespace ablate {
namespace packed_gemm {

namespace {

// Rows per register tile: 12 x 32 accumulators take 24 of the 32 zmm
// registers, leaving room for two w vectors and a broadcast of a.
static_assert(kMaxBlockRows == 12, "Tile<1> to Tile<12> below cover a row block");

inline int64_t Min(int64_t a, int64_t b) { return a < b ? a : b; }

// One step of depth k: acc += a[k] * w[k] for the R rows.
template <int R>
__attribute__((always_inline)) inline void Step(int64_t k, const float* a, const float* w,
                                                __m512* acc0, __m512* acc1) {
  const __m512 w0 = _mm512_loadu_ps(w + k * kPanelWidth);
  const __m512 w1 = _mm512_loadu_ps(w + k * kPanelWidth + 16);
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r) {
    const __m512 av = _mm512_set1_ps(a[k * R + r]);
    acc0[r] = _mm512_fmadd_ps(av, w0, acc0[r]);
    acc1[r] = _mm512_fmadd_ps(av, w1, acc1[r]);
  }
}

// c tile [R, 32] (columns masked by m0, m1) = (first ? beta * c : c) + a * w
// over `depth` steps; a is [depth][R], w is [depth][32] (loaded unaligned:
// free on aligned data, and correct whatever the allocator returns).
// The sum over k runs in order, one fused multiply-add per k. Prefetches
// what `pf` names while it runs.
template <int R>
void Tile(int64_t depth, const float* a, const float* w, float* c, int64_t ldc, __mmask16 m0,
          __mmask16 m1, bool first, float beta, const TilePrefetch& pf) {
  __m512 acc0[R], acc1[R];
  if (first && beta == 0.0f) {
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r) acc0[r] = acc1[r] = _mm512_setzero_ps();
  } else {
    const __m512 scale = _mm512_set1_ps(first ? beta : 1.0f);
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r) {
      acc0[r] = _mm512_mul_ps(scale, _mm512_maskz_loadu_ps(m0, c + r * ldc));
      acc1[r] = _mm512_mul_ps(scale, _mm512_maskz_loadu_ps(m1, c + r * ldc + 16));
    }
  }
  // The steps run unrolled in groups that spread pf's prefetches out.
  RunSteps(
      depth, pf, [&](int64_t k) __attribute__((always_inline)) { Step<R>(k, a, w, acc0, acc1); });
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r) {
    _mm512_mask_storeu_ps(c + r * ldc, m0, acc0[r]);
    _mm512_mask_storeu_ps(c + r * ldc + 16, m1, acc1[r]);
  }
}

using TileFn = void (*)(int64_t, const float*, const float*, float*, int64_t, __mmask16, __mmask16,
                        bool, float, const TilePrefetch&);
constexpr TileFn kTiles[kMaxBlockRows + 1] = {nullptr,  Tile<1>,  Tile<2>, Tile<3>, Tile<4>,
                                              Tile<5>,  Tile<6>,  Tile<7>, Tile<8>, Tile<9>,
                                              Tile<10>, Tile<11>, Tile<12>};

}  // namespace

void MultiplyPanels(const float* a_packed, int64_t m, int64_t depth, const float* w_packed,
                    int64_t n, int64_t panel_begin, int64_t panel_end, int64_t then_panel,
                    const Schedule& schedule, float beta, float* c, int64_t ldc) {
  // A depth block under 1 would never advance: a broken caller, stop here.
  if (schedule.depth_block < 1) __builtin_trap();
  const int64_t blocks = RowBlockCount(m);
  const int64_t panels = (n + kPanelWidth - 1) / kPanelWidth;
  for (int64_t p = panel_begin; p < panel_end; ++p) {
    const int64_t col0 = p * kPanelWidth;
    const int64_t cols = Min(kPanelWidth, n - col0);
    const __mmask16 m0 = cols >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << cols) - 1);
    const __mmask16 m1 =
        cols >= 32 ? 0xFFFF : (cols <= 16 ? 0 : static_cast<__mmask16>((1u << (cols - 16)) - 1));
    const float* panel = w_packed + p * depth * kPanelWidth;
    for (int64_t k0 = 0; k0 < depth; k0 += schedule.depth_block) {
      const int64_t kc = SliceDepth(depth, k0, schedule.depth_block);
      const float* slice = panel + k0 * kPanelWidth;
      // The row blocks share out the prefetch of the slice this thread runs
      // next into L2 (see Prefetch) while they reuse this one.
      const Slice next =
          NextSlice(w_packed, depth, panels, p, panel_end, then_panel, k0, schedule.depth_block);
      for (int64_t block = 0; block < blocks; ++block) {
        int64_t row0, rows;
        RowBlock(m, block, &row0, &rows);
        const TilePrefetch pf = ShareOfNextSlice(next, block, blocks, schedule.prefetch);
        kTiles[rows](kc, a_packed + row0 * depth + k0 * rows, slice, c + row0 * ldc + col0, ldc, m0,
                     m1, k0 == 0, beta, pf);
      }
    }
  }
}

}  // namespace packed_gemm
}  // namespace ablate
