// The vector kernels of PackedGemm (packed_gemm.h): one for AVX-512 and one
// for AVX2 with FMA, each compiled with its own flags in a file of its own so
// that nothing else in the build needs those instructions. Callers must check
// the CPU first (vector_isa.h). Plain pointers only: this header and the
// kernels' sources include no header with inline functions that the rest of
// the build shares, so the linker can never pick a wide copy of them for other
// code; the packing and row-block helpers are compiled for baseline x86-64 in
// packed_gemm.cc.
//
// Both kernels give bit-identical results: each element of c starts from
// beta * c (or zero) and adds a[k] * w[k] with one fused multiply-add per k,
// in order of k, whatever the vector width, thread or row block.
#ifndef ABLATE_WORKER_PACKED_GEMM_KERNEL_H_
#define ABLATE_WORKER_PACKED_GEMM_KERNEL_H_

#include <cstdint>

namespace ablate {
namespace packed_gemm {

// Columns per packed panel of w: two AVX-512 or four AVX2 registers.
constexpr int64_t kPanelWidth = 32;

// Floats per 64-byte cache line: the unit of every prefetch.
constexpr int64_t kFloatsPerLine = 16;

// Most rows per row block of a.
constexpr int64_t kMaxBlockRows = 12;

// Depth per pass over a panel (Schedule::depth_block): a 1024 x 32 slice of
// w (128 KiB) stays in L2 while every row block of a runs over it. Deeper
// slices mean fewer passes, each of which loads and stores its tile of c,
// and L2 feeds the kernel fast enough: on the seed's shapes 1024 ran 4-20%
// faster than 256, which kept the slice in L1 (pages_bench --compare depth,
// three runs; AVX2 3-11%). In a one-off alternation of 256 to 4096, 1024 and 2048 were
// the fastest and 4096 was slower at depth 4000.
constexpr int64_t kDepthBlock = 1024;

// Number of row blocks the kernels split M rows into (each at most
// kMaxBlockRows rows, sizes differing by at most one).
int64_t RowBlockCount(int64_t m);

// First row and row count of row block `block` of m rows.
void RowBlock(int64_t m, int64_t block, int64_t* row0, int64_t* rows);

// Packs row block `block` of a ([m, depth], leading dimension lda) into
// `packed`, the buffer of m * depth floats that holds all of a's blocks:
// block b's rows are stored depth-major ([depth][rows]) from row0 * depth.
void PackRowBlock(const float* a, int64_t lda, int64_t m, int64_t depth, int64_t block,
                  float* packed);

// A slice of the packed w: its first float and its depth (none where `first`
// is null).
struct Slice {
  const float* first = nullptr;
  int64_t depth = 0;
};

// Depth of the slice that starts at depth k0 (k0 < depth), slices being
// `depth_block` deep.
int64_t SliceDepth(int64_t depth, int64_t k0, int64_t depth_block);

// The slice of the packed w ([panels, depth, 32]) that a thread multiplies
// after the one of panel p starting at depth k0: the next of panel p; else
// the first of p + 1 while p + 1 < panel_end; else the first of then_panel,
// the panel the caller runs next (none when it is outside [0, panels)).
Slice NextSlice(const float* w_packed, int64_t depth, int64_t panels, int64_t p, int64_t panel_end,
                int64_t then_panel, int64_t k0, int64_t depth_block);

// How the tiles that run over one slice of w pull in the slice after it.
// The weights outgrow L2 and the hardware prefetcher alone leaves the kernel
// waiting on L3 (~15% slower), so each slice's tiles prefetch the slice the
// thread runs next into L2.
enum class Prefetch {
  // The first row block's tile prefetches the whole next slice, a group of
  // lines every four steps of depth (the old walk, kept for comparison).
  kFirstTile,
  // Every tile prefetches an equal share of it, so that no tile queues them
  // all at once (faster on the seed's shapes: pages_bench --compare
  // prefetch, BENCHMARKS.md). Where a slice is much shallower than the next
  // (a depth just past a multiple of the depth block), its tiles still
  // issue their shares in few groups.
  kSpread,
};

// What one tile prefetches into L2 while it runs: `lines` cache lines from
// `first` (none where it is null).
struct TilePrefetch {
  const float* first = nullptr;
  int64_t lines = 0;
};

// The share of the next slice (`next.depth` steps of 32 floats: two lines
// each) that tile `tile` of the `tiles` running over a slice prefetches under
// `prefetch`: all of it for tile 0 under kFirstTile, an equal contiguous share
// each under kSpread.
TilePrefetch ShareOfNextSlice(const Slice& next, int64_t tile, int64_t tiles, Prefetch prefetch);

// How the kernels walk w. Run uses the defaults; benchmarks time others.
struct Schedule {
  int64_t depth_block = kDepthBlock;  // steps of depth per slice, at least 1 (else a trap)
  Prefetch prefetch = Prefetch::kSpread;
};

// For panels [panel_begin, panel_end) of the packed w ([panels, depth, 32]):
// c[:, cols] = beta * c[:, cols] + a * w[:, cols], with a packed by
// PackRowBlock, c [m, n] with leading dimension ldc. `then_panel` is the panel
// the calling thread multiplies next, if any (-1 if none): the last slice
// prefetches its first. The schedule changes only the speed, never a bit of
// c: each element still sums over k in order. The AVX-512 kernel.
void MultiplyPanels(const float* a_packed, int64_t m, int64_t depth, const float* w_packed,
                    int64_t n, int64_t panel_begin, int64_t panel_end, int64_t then_panel,
                    const Schedule& schedule, float beta, float* c, int64_t ldc);

// The same with AVX2 and FMA, with the same results bit for bit.
void MultiplyPanelsAvx2(const float* a_packed, int64_t m, int64_t depth, const float* w_packed,
                        int64_t n, int64_t panel_begin, int64_t panel_end, int64_t then_panel,
                        const Schedule& schedule, float beta, float* c, int64_t ldc);

}  // namespace packed_gemm
}  // namespace ablate

#endif  // ABLATE_WORKER_PACKED_GEMM_KERNEL_H_
