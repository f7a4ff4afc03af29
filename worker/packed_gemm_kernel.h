// The AVX-512 half of PackedGemm (packed_gemm.h), compiled with -mavx512f in
// a file of its own so that nothing else in the build needs AVX-512. Callers
// must check the CPU first. Plain pointers only: this header and its source
// include no header with inline functions that the rest of the build shares,
// so the linker can never pick an AVX-512 copy of them for other code.
#ifndef ABLATE_WORKER_PACKED_GEMM_KERNEL_H_
#define ABLATE_WORKER_PACKED_GEMM_KERNEL_H_

#include <cstdint>

namespace ablate {
namespace packed_gemm {

// Columns per packed panel of w: two 16-float registers.
constexpr int64_t kPanelWidth = 32;

// Number of row blocks the kernel splits M rows into (each at most 12 rows,
// sizes differing by at most one).
int64_t RowBlockCount(int64_t m);

// Packs row block `block` of a ([m, depth], leading dimension lda) into
// `packed`, the buffer of m * depth floats that holds all of a's blocks.
void PackRowBlock(const float* a, int64_t lda, int64_t m, int64_t depth, int64_t block,
                  float* packed);

// For panels [panel_begin, panel_end) of the packed w ([panels, depth, 32]):
// c[:, cols] = beta * c[:, cols] + a * w[:, cols], with a packed by
// PackRowBlock, c [m, n] with leading dimension ldc.
void MultiplyPanels(const float* a_packed, int64_t m, int64_t depth, const float* w_packed,
                    int64_t n, int64_t panel_begin, int64_t panel_end, float beta, float* c,
                    int64_t ldc);

}  // namespace packed_gemm
}  // namespace ablate

#endif  // ABLATE_WORKER_PACKED_GEMM_KERNEL_H_
