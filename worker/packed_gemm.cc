#include "worker/packed_gemm.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "worker/packed_gemm_kernel.h"
#include "worker/vector_isa.h"

namespace ablate {

namespace {

using packed_gemm::kPanelWidth;

// Multiply-adds per parallel task: enough to amortise handing it to a thread.
constexpr int64_t kMacsPerTask = 1 << 17;

// A schedule in one integer, so that it is read and written whole: the depth
// block times two, plus one for Prefetch::kSpread.
int64_t Encode(const packed_gemm::Schedule& schedule) {
  return schedule.depth_block * 2 + (schedule.prefetch == packed_gemm::Prefetch::kSpread ? 1 : 0);
}

std::atomic<int64_t> g_schedule{Encode(packed_gemm::Schedule{})};

std::atomic<bool>& EnabledFlag() {
  static std::atomic<bool> enabled{[] {
    const char* env = std::getenv("ABLATE_GEMM");
    return env == nullptr || std::strcmp(env, "blas") != 0;
  }()};
  return enabled;
}

// w ([k, n], strides sk and sn) as [panels, k, 32], zero past column n.
void PackPanels(const float* w, int64_t k, int64_t n, int64_t sk, int64_t sn, float* out) {
  const int64_t panels = (n + kPanelWidth - 1) / kPanelWidth;
  at::parallel_for(0, panels, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      float* dst = out + p * k * kPanelWidth;
      const int64_t col0 = p * kPanelWidth, cols = std::min(kPanelWidth, n - col0);
      if (cols < kPanelWidth) std::fill(dst, dst + k * kPanelWidth, 0.0f);
      // Walk the source along its smaller stride: a transposed view reads
      // down its columns rather than gathering across rows.
      if (sn <= sk) {
        for (int64_t i = 0; i < k; ++i) {
          for (int64_t j = 0; j < cols; ++j) dst[i * kPanelWidth + j] = w[i * sk + (col0 + j) * sn];
        }
      } else {
        for (int64_t j = 0; j < cols; ++j) {
          for (int64_t i = 0; i < k; ++i) dst[i * kPanelWidth + j] = w[i * sk + (col0 + j) * sn];
        }
      }
    }
  });
}

}  // namespace

namespace packed_gemm {

int64_t RowBlockCount(int64_t m) { return (m + kMaxBlockRows - 1) / kMaxBlockRows; }

void RowBlock(int64_t m, int64_t block, int64_t* row0, int64_t* rows) {
  const int64_t blocks = RowBlockCount(m);
  const int64_t base = m / blocks, extra = m % blocks;
  *row0 = block * base + std::min(block, extra);
  *rows = base + (block < extra ? 1 : 0);
}

int64_t SliceDepth(int64_t depth, int64_t k0, int64_t depth_block) {
  return std::min(depth_block, depth - k0);
}

Slice NextSlice(const float* w_packed, int64_t depth, int64_t panels, int64_t p, int64_t panel_end,
                int64_t then_panel, int64_t k0, int64_t depth_block) {
  const int64_t end = k0 + SliceDepth(depth, k0, depth_block);
  if (end < depth) {
    return {w_packed + (p * depth + end) * kPanelWidth, SliceDepth(depth, end, depth_block)};
  }
  const int64_t q = p + 1 < panel_end ? p + 1 : then_panel;
  if (q < 0 || q >= panels) return {};
  return {w_packed + q * depth * kPanelWidth, SliceDepth(depth, 0, depth_block)};
}

TilePrefetch ShareOfNextSlice(const Slice& next, int64_t tile, int64_t tiles, Prefetch prefetch) {
  TilePrefetch share;
  if (next.first == nullptr || next.depth <= 0 || tiles <= 0) return share;
  const int64_t lines = next.depth * kPanelWidth / kFloatsPerLine;
  if (prefetch == Prefetch::kFirstTile) {
    if (tile == 0) share = {next.first, lines};
    return share;
  }
  const int64_t each = (lines + tiles - 1) / tiles;
  const int64_t first = tile * each;
  if (first < lines) share = {next.first + first * kFloatsPerLine, std::min(each, lines - first)};
  return share;
}

void PackRowBlock(const float* a, int64_t lda, int64_t m, int64_t depth, int64_t block,
                  float* packed) {
  int64_t row0, rows;
  RowBlock(m, block, &row0, &rows);
  float* out = packed + row0 * depth;
  const float* src = a + row0 * lda;
  // Writes in order and reads `rows` sequential streams: scattering each
  // row's values `rows` floats apart took 1.6-1.9x as long (m 100, depth
  // 2000 and 4000, alternating in one process).
  for (int64_t k = 0; k < depth; ++k) {
    for (int64_t r = 0; r < rows; ++r) out[k * rows + r] = src[r * lda + k];
  }
}

}  // namespace packed_gemm

void SetPackedGemmSchedule(const packed_gemm::Schedule& schedule) {
  TORCH_CHECK(schedule.depth_block >= 1, "PackedGemm: the depth block must be at least 1, not ",
              schedule.depth_block);
  g_schedule.store(Encode(schedule));
}

packed_gemm::Schedule PackedGemmSchedule() {
  const int64_t code = g_schedule.load();
  packed_gemm::Schedule schedule;
  schedule.depth_block = code / 2;
  schedule.prefetch =
      code % 2 == 1 ? packed_gemm::Prefetch::kSpread : packed_gemm::Prefetch::kFirstTile;
  return schedule;
}

void SetPackedGemmEnabled(bool enabled) { EnabledFlag().store(enabled); }
bool PackedGemmEnabled() { return EnabledFlag().load(); }

PackedGemm::PackedGemm(const torch::Tensor& w, int64_t calls) : w_(w) {
  TORCH_CHECK(w.dim() == 2, "PackedGemm: w must be a matrix");
  k_ = w.size(0);
  n_ = w.size(1);
#if defined(ABLATE_PACKED_GEMM_X86)
  const VectorIsa isa = VectorIsaInUse();
#else
  const VectorIsa isa = VectorIsa::kBaseline;
#endif
  if (calls < kMinCallsToPack || !PackedGemmEnabled() || isa == VectorIsa::kBaseline ||
      w.scalar_type() != torch::kFloat || !w.device().is_cpu() || k_ == 0 || n_ == 0) {
    return;
  }
  isa_ = isa;
  const int64_t panels = (n_ + kPanelWidth - 1) / kPanelWidth;
  // LibTorch's CPU allocator aligns to 64 bytes, as the kernel's loads need.
  packed_ = torch::empty({panels * k_ * kPanelWidth}, w.options());
  PackPanels(w.data_ptr<float>(), k_, n_, w.stride(0), w.stride(1), packed_.data_ptr<float>());
}

void PackedGemm::Run(const torch::Tensor& a, double beta, torch::Tensor* c_out,
                     torch::Tensor* scratch) {
  torch::Tensor& c = *c_out;
  TORCH_CHECK(
      a.dim() == 2 && a.size(1) == k_ && c.dim() == 2 && c.size(0) == a.size(0) && c.size(1) == n_,
      "PackedGemm: shapes do not match");
  if (!packed()) {
    if (beta == 0) {
      at::mm_out(c, a, w_);
    } else {
      c.addmm_(a, w_, beta);
    }
    return;
  }
  TORCH_CHECK(a.is_contiguous() && c.is_contiguous() && a.scalar_type() == torch::kFloat &&
                  c.scalar_type() == torch::kFloat,
              "PackedGemm: a and c must be contiguous float32");
#if defined(ABLATE_PACKED_GEMM_X86)
  const int64_t m = a.size(0);
  if (m == 0) return;
  torch::Tensor& buffer = scratch != nullptr ? *scratch : a_buffer_;
  if (!buffer.defined() || buffer.numel() < m * k_) buffer = torch::empty({m * k_}, a.options());
  const float* a_p = a.data_ptr<float>();
  float* a_packed = buffer.data_ptr<float>();
  const int64_t blocks = packed_gemm::RowBlockCount(m);
  at::parallel_for(0, blocks,
                   std::max<int64_t>(1, kMacsPerTask / (packed_gemm::kMaxBlockRows * k_ * 8)),
                   [&](int64_t begin, int64_t end) {
                     for (int64_t b = begin; b < end; ++b) {
                       packed_gemm::PackRowBlock(a_p, k_, m, k_, b, a_packed);
                     }
                   });
  const float* w_packed = packed_.data_ptr<float>();
  float* c_p = c.data_ptr<float>();
  const int64_t panels = (n_ + kPanelWidth - 1) / kPanelWidth;
  const int64_t chunk = std::max<int64_t>(1, kMacsPerTask / (m * k_ * kPanelWidth));
  const int64_t chunks = (panels + chunk - 1) / chunk;
  // Threads claim chunks of panels as they go rather than a fixed share each:
  // on a shared machine a thread that loses its core for a while leaves all
  // but its next chunk to the others instead of making them wait. Which
  // thread computes a panel does not change its result.
  const auto multiply =
      isa_ == VectorIsa::kAvx512 ? packed_gemm::MultiplyPanels : packed_gemm::MultiplyPanelsAvx2;
  // Each thread claims its next chunk before running the one it holds, so
  // that the chunk's last slice prefetches the panel the thread runs next
  // rather than the one after it in memory, which the other thread usually
  // takes (pages_bench --compare claim). That next chunk is the one a
  // stalled thread still holds up.
  const packed_gemm::Schedule schedule = PackedGemmSchedule();
  std::atomic<int64_t> next{0};
  at::parallel_for(0, at::get_num_threads(), 1, [&](int64_t, int64_t) {
    for (int64_t i = next++; i < chunks;) {
      const int64_t then = next++;
      multiply(a_packed, m, k_, w_packed, n_, i * chunk, std::min(panels, (i + 1) * chunk),
               then < chunks ? then * chunk : -1, schedule, static_cast<float>(beta), c_p, n_);
      i = then;
    }
  });
#endif
}

}  // namespace ablate
