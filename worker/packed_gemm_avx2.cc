#include <immintrin.h>

#include <cstdint>

#include "worker/packed_gemm_kernel.h"
#include "worker/packed_gemm_steps.h"

namespace ablate {
namespace packed_gemm {

namespace {

// A register tile is up to 6 rows by 16 columns (half a panel): 12 of the 16
// ymm registers accumulate, two hold w and one a broadcast of a. A row block
// of up to 12 rows takes two tiles down and two across.
constexpr int kTileRows = 6;
static_assert(2 * kTileRows >= kMaxBlockRows, "two tiles cover a row block");

inline int64_t Min(int64_t a, int64_t b) { return a < b ? a : b; }

// Lanes [0, count) of 8 set.
inline __m256i LaneMask(int64_t count) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)), lanes);
}

// One step of depth k: acc += a[k] * w[k] for the R rows.
template <int R>
__attribute__((always_inline)) inline void Step(int64_t k, const float* a, int64_t lda,
                                                const float* w, __m256* acc0, __m256* acc1) {
  const __m256 w0 = _mm256_loadu_ps(w + k * kPanelWidth);
  const __m256 w1 = _mm256_loadu_ps(w + k * kPanelWidth + 8);
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    const __m256 av = _mm256_broadcast_ss(a + k * lda + r);
    acc0[r] = _mm256_fmadd_ps(av, w0, acc0[r]);
    acc1[r] = _mm256_fmadd_ps(av, w1, acc1[r]);
  }
}

// c tile [R, 16] (its first `cols` columns) = (first ? beta * c : c) + a * w
// over `depth` steps; a holds row r's value for step k at a[k * lda + r], w is
// [depth][32] (this half's 16 columns at its start). The sum over k runs in
// order, one fused multiply-add per k, as in the AVX-512 kernel. Prefetches
// what `pf` names while it runs.
template <int R>
void Tile(int64_t depth, const float* a, int64_t lda, const float* w, float* c, int64_t ldc,
          int64_t cols, bool first, float beta, const TilePrefetch& pf) {
  __m256 acc0[R], acc1[R];
  // Masked loads and stores only at the right edge: they are slow on some CPUs.
  const bool full = cols == 16;
  const __m256i m0 = LaneMask(cols), m1 = LaneMask(cols - 8);
  if (first && beta == 0.0f) {
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) acc0[r] = acc1[r] = _mm256_setzero_ps();
  } else {
    const __m256 scale = _mm256_set1_ps(first ? beta : 1.0f);
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      const float* row = c + r * ldc;
      acc0[r] = _mm256_mul_ps(scale, full ? _mm256_loadu_ps(row) : _mm256_maskload_ps(row, m0));
      acc1[r] =
          _mm256_mul_ps(scale, full ? _mm256_loadu_ps(row + 8) : _mm256_maskload_ps(row + 8, m1));
    }
  }
  // The steps run unrolled in groups that spread pf's prefetches out.
  RunSteps(
      depth,
      pf, [&](int64_t k) __attribute__((always_inline)) { Step<R>(k, a, lda, w, acc0, acc1); });
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    float* row = c + r * ldc;
    if (full) {
      _mm256_storeu_ps(row, acc0[r]);
      _mm256_storeu_ps(row + 8, acc1[r]);
    } else {
      _mm256_maskstore_ps(row, m0, acc0[r]);
      _mm256_maskstore_ps(row + 8, m1, acc1[r]);
    }
  }
}

using TileFn = void (*)(int64_t, const float*, int64_t, const float*, float*, int64_t, int64_t,
                        bool, float, const TilePrefetch&);
constexpr TileFn kTiles[kTileRows + 1] = {nullptr, Tile<1>, Tile<2>, Tile<3>,
                                          Tile<4>, Tile<5>, Tile<6>};

}  // namespace

void MultiplyPanelsAvx2(const float* a_packed, int64_t m, int64_t depth, const float* w_packed,
                        int64_t n, int64_t panel_begin, int64_t panel_end, int64_t then_panel,
                        const Schedule& schedule, float beta, float* c, int64_t ldc) {
  // A depth block under 1 would never advance: a broken caller, stop here.
  if (schedule.depth_block < 1) __builtin_trap();
  const int64_t blocks = RowBlockCount(m);
  const int64_t panels = (n + kPanelWidth - 1) / kPanelWidth;
  // Tiles per half of a slice: one or two per row block.
  int64_t tiles_per_half = 0;
  for (int64_t block = 0; block < blocks; ++block) {
    int64_t row0, rows;
    RowBlock(m, block, &row0, &rows);
    tiles_per_half += rows > kTileRows ? 2 : 1;
  }
  for (int64_t p = panel_begin; p < panel_end; ++p) {
    const int64_t col0 = p * kPanelWidth;
    const int64_t cols = Min(kPanelWidth, n - col0);
    const int64_t halves = cols > 16 ? 2 : 1;
    const float* panel = w_packed + p * depth * kPanelWidth;
    for (int64_t k0 = 0; k0 < depth; k0 += schedule.depth_block) {
      const int64_t kc = SliceDepth(depth, k0, schedule.depth_block);
      const float* slice = panel + k0 * kPanelWidth;
      const Slice next =
          NextSlice(w_packed, depth, panels, p, panel_end, then_panel, k0, schedule.depth_block);
      // Each half of the slice runs under every row block in turn; all the
      // slice's tiles share out the prefetch of the next slice, as in the
      // AVX-512 kernel.
      int64_t tile = 0;
      for (int64_t half = 0; half < halves; ++half) {
        const int64_t half_cols = Min(16, cols - 16 * half);
        for (int64_t block = 0; block < blocks; ++block) {
          int64_t row0, rows;
          RowBlock(m, block, &row0, &rows);
          const float* a_block = a_packed + row0 * depth + k0 * rows;
          // Split the block's rows into one or two tiles, sizes differing by
          // at most one.
          const int64_t top = rows > kTileRows ? (rows + 1) / 2 : rows;
          for (int64_t r0 = 0; r0 < rows; r0 += top, ++tile) {
            const int64_t tile_rows = Min(top, rows - r0);
            const TilePrefetch pf =
                ShareOfNextSlice(next, tile, halves * tiles_per_half, schedule.prefetch);
            kTiles[tile_rows](kc, a_block + r0, rows, slice + 16 * half,
                              c + (row0 + r0) * ldc + col0 + 16 * half, ldc, half_cols, k0 == 0,
                              beta, pf);
          }
        }
      }
    }
  }
}

}  // namespace packed_gemm
}  // namespace ablate
