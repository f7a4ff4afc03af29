#include "worker/packed_gemm.h"

#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "worker/packed_gemm_kernel.h"

namespace ablate {
namespace {

// The kernels this CPU can run, widest first.
std::vector<VectorIsa> Kernels() {
  std::vector<VectorIsa> kernels;
  for (VectorIsa isa : {VectorIsa::kAvx512, VectorIsa::kAvx2}) {
    if (CpuVectorIsa() >= isa) kernels.push_back(isa);
  }
  return kernels;
}

// Caps the ISA for as long as it lives.
class ScopedIsaCap {
 public:
  explicit ScopedIsaCap(VectorIsa cap) { SetVectorIsaCap(cap); }
  ~ScopedIsaCap() { SetVectorIsaCap(VectorIsa::kAvx512); }
};

// Largest |c - reference| relative to the rounding bound of a float sum of
// k products and beta * c0, (k + 1) * eps * (|a| |w| + |beta c0|): within 1
// the result is a correct product.
double BoundRatio(const torch::Tensor& c, const torch::Tensor& reference, const torch::Tensor& a,
                  const torch::Tensor& w, const torch::Tensor& beta_c0) {
  const int64_t k = a.size(1);
  const torch::Tensor magnitude =
      at::mm(a.abs().to(torch::kDouble), w.abs().to(torch::kDouble)) + beta_c0.abs();
  const torch::Tensor bound = magnitude * ((k + 1) * 1.2e-7) + 1e-30;
  return ((c.to(torch::kDouble) - reference) / bound).abs().max().item<double>();
}

// Runs c = beta * c0 + a * w through PackedGemm and checks it against the
// product in double.
void CheckProduct(int64_t m, int64_t k, int64_t n, double beta, bool transposed) {
  SCOPED_TRACE(testing::Message() << "m=" << m << " k=" << k << " n=" << n << " beta=" << beta
                                  << (transposed ? " w transposed" : ""));
  torch::manual_seed(m * 1000003 + k * 1009 + n);
  const torch::Tensor a = torch::randn({m, k});
  // A transposed view has strides (1, k): the backward pass's w.t().
  const torch::Tensor w = transposed ? torch::randn({n, k}).t() : torch::randn({k, n});
  const torch::Tensor c0 = torch::randn({m, n});
  torch::Tensor c = beta == 0 ? torch::full({m, n}, NAN) : c0.clone();

  PackedGemm gemm(w, PackedGemm::kMinCallsToPack);
  EXPECT_EQ(gemm.isa(), VectorIsaInUse());
  gemm.Run(a, beta, &c);

  const torch::Tensor beta_c0 = beta * c0.to(torch::kDouble);
  const torch::Tensor reference = at::mm(a.to(torch::kDouble), w.to(torch::kDouble)) + beta_c0;
  EXPECT_LT(BoundRatio(c, reference, a, w, beta_c0), 1.0);
}

class PackedGemmShapes : public testing::TestWithParam<std::tuple<int64_t, int64_t, int64_t>> {};

TEST_P(PackedGemmShapes, MatchesTheProductInDouble) {
  if (Kernels().empty()) GTEST_SKIP() << "neither AVX-512 nor AVX2 on this CPU";
  const auto [m, k, n] = GetParam();
  for (VectorIsa isa : Kernels()) {
    SCOPED_TRACE(VectorIsaName(isa));
    ScopedIsaCap cap(isa);
    for (double beta : {0.0, 1.0, 0.5}) {
      for (bool transposed : {false, true}) CheckProduct(m, k, n, beta, transposed);
    }
  }
}

// The trainer's results must not depend on which kernel the CPU runs: every
// element sums the same products in the same order with the same roundings.
TEST_P(PackedGemmShapes, BothKernelsGiveTheSameBits) {
  if (CpuVectorIsa() < VectorIsa::kAvx512) GTEST_SKIP() << "needs AVX-512 to compare with AVX2";
  const auto [m, k, n] = GetParam();
  torch::manual_seed(m + k + n);
  const torch::Tensor a = torch::randn({m, k});
  const torch::Tensor w = torch::randn({k, n});
  const torch::Tensor c0 = torch::randn({m, n});
  for (double beta : {0.0, 0.5}) {
    SCOPED_TRACE(testing::Message() << "beta=" << beta);
    std::vector<torch::Tensor> results;
    for (VectorIsa isa : {VectorIsa::kAvx512, VectorIsa::kAvx2}) {
      ScopedIsaCap cap(isa);
      PackedGemm gemm(w, PackedGemm::kMinCallsToPack);
      ASSERT_EQ(gemm.isa(), isa);
      torch::Tensor c = c0.clone();
      gemm.Run(a, beta, &c);
      results.push_back(c);
    }
    EXPECT_TRUE(torch::equal(results[0], results[1]));
  }
}

// Rows around the 12-row block and the AVX2 kernel's 6-row tiles (1, 7, 12,
// 13, 100, 101), depths short of a prefetch group of 4 steps (1, 3), within
// one slice and around the 1024-deep slice (1023, 1025, 2100), and widths
// around the 32-column panel and its 16- and 8-column halves.
INSTANTIATE_TEST_SUITE_P(
    EdgeSizes, PackedGemmShapes,
    testing::Values(std::make_tuple(1, 1, 1), std::make_tuple(1, 64, 33), std::make_tuple(7, 1, 32),
                    std::make_tuple(7, 3, 17), std::make_tuple(7, 255, 17),
                    std::make_tuple(12, 256, 64), std::make_tuple(13, 257, 65),
                    std::make_tuple(100, 600, 200), std::make_tuple(101, 300, 95),
                    std::make_tuple(100, 128, 384), std::make_tuple(32, 513, 31),
                    std::make_tuple(12, 1023, 40), std::make_tuple(13, 1025, 33),
                    std::make_tuple(25, 2100, 70)));

// One product on 1, 2 and 3 threads: the same bits each time.
void CheckThreadCounts() {
  torch::manual_seed(7);
  const torch::Tensor a = torch::randn({100, 700});
  const torch::Tensor w = torch::randn({900, 700}).t();
  const int threads = at::get_num_threads();
  auto product = [&](int n_threads) {
    at::set_num_threads(n_threads);
    torch::Tensor c = torch::ones({100, 900});
    PackedGemm(w, PackedGemm::kMinCallsToPack).Run(a, 1.0, &c);
    return c;
  };
  const torch::Tensor one = product(1), two = product(2), three = product(3);
  at::set_num_threads(threads);
  EXPECT_TRUE(torch::equal(one, two));
  EXPECT_TRUE(torch::equal(one, three));
}

TEST(PackedGemm, ResultsDoNotDependOnTheThreadCount) {
  if (Kernels().empty()) GTEST_SKIP() << "neither AVX-512 nor AVX2 on this CPU";
  for (VectorIsa isa : Kernels()) {
    SCOPED_TRACE(VectorIsaName(isa));
    ScopedIsaCap cap(isa);
    CheckThreadCounts();
  }
}

// The last slice of a thread's chunk prefetches the first of the panel the
// thread runs next, not the next panel in memory, which another thread may
// take; only the end of the weights prefetches nothing. Each slice comes with
// its own depth, a short last one included.
TEST(PackedGemm, EachSlicePrefetchesTheSliceItsThreadRunsNext) {
  using packed_gemm::kPanelWidth;
  using packed_gemm::NextSlice;
  const int64_t depth = 600, panels = 5, block = 256;  // slices at depth 0, 256 and 512
  const std::vector<float> storage(panels * depth * kPanelWidth);
  const float* w = storage.data();
  const auto panel = [&](int64_t p) { return w + p * depth * kPanelWidth; };
  const auto next = [&](int64_t p, int64_t panel_end, int64_t then, int64_t k0) {
    return NextSlice(w, depth, panels, p, panel_end, then, k0, block);
  };
  // Within a panel: its own next slice, the last one 88 deep.
  EXPECT_EQ(next(2, 3, -1, 0).first, panel(2) + 256 * kPanelWidth);
  EXPECT_EQ(next(2, 3, -1, 0).depth, 256);
  EXPECT_EQ(next(2, 3, 4, 256).first, panel(2) + 512 * kPanelWidth);
  EXPECT_EQ(next(2, 3, 4, 256).depth, 88);
  // The end of a panel inside the chunk: the next panel of the chunk.
  EXPECT_EQ(next(1, 3, 4, 512).first, panel(2));
  EXPECT_EQ(next(1, 3, 4, 512).depth, 256);
  // The end of the chunk: the panel the thread claimed next, wherever it is.
  EXPECT_EQ(next(2, 3, 4, 512).first, panel(4));
  EXPECT_EQ(next(3, 4, 0, 512).first, panel(0));
  // Nothing claimed next, or past the weights: no prefetch.
  EXPECT_EQ(next(2, 3, -1, 512).first, nullptr);
  EXPECT_EQ(next(4, 5, 5, 512).first, nullptr);
  // One slice per panel when the block is deeper than the weights.
  EXPECT_EQ(NextSlice(w, depth, panels, 0, 1, 3, 0, 1024).first, panel(3));
  EXPECT_EQ(NextSlice(w, depth, panels, 0, 1, 3, 0, 1024).depth, depth);
}

// Every line of the next slice is prefetched exactly once, by one tile under
// kFirstTile and in equal shares in order under kSpread.
TEST(PackedGemm, TilesShareOutTheNextSlicesPrefetch) {
  using packed_gemm::kFloatsPerLine;
  using packed_gemm::Prefetch;
  using packed_gemm::ShareOfNextSlice;
  const std::vector<float> storage(1000 * packed_gemm::kPanelWidth);
  const float* first = storage.data();
  for (const int64_t next_depth : {int64_t{1}, int64_t{976}, int64_t{1000}}) {
    const packed_gemm::Slice next{first, next_depth};
    const int64_t lines = next_depth * packed_gemm::kPanelWidth / kFloatsPerLine;
    for (const int64_t tiles : {int64_t{1}, int64_t{9}, int64_t{2000}, int64_t{5000}}) {
      for (const Prefetch prefetch : {Prefetch::kFirstTile, Prefetch::kSpread}) {
        SCOPED_TRACE(testing::Message() << "next_depth=" << next_depth << " tiles=" << tiles
                                        << " spread=" << (prefetch == Prefetch::kSpread));
        const float* expected = first;
        int64_t biggest = 0;
        for (int64_t tile = 0; tile < tiles; ++tile) {
          const auto share = ShareOfNextSlice(next, tile, tiles, prefetch);
          if (share.lines == 0) continue;
          EXPECT_EQ(share.first, expected);
          expected += share.lines * kFloatsPerLine;
          biggest = std::max(biggest, share.lines);
        }
        EXPECT_EQ(expected, first + lines * kFloatsPerLine);
        EXPECT_EQ(biggest, prefetch == Prefetch::kFirstTile ? lines : (lines + tiles - 1) / tiles);
      }
    }
  }
  EXPECT_EQ(ShareOfNextSlice(packed_gemm::Slice{}, 0, 9, Prefetch::kSpread).lines, 0);
  EXPECT_EQ(ShareOfNextSlice({first, 1000}, 0, 9, Prefetch::kFirstTile).lines, 2000);
}

// The schedule (depth block, prefetch) changes the speed only: the same bits
// from both kernels whatever it is.
TEST(PackedGemm, TheScheduleDoesNotChangeABit) {
  if (Kernels().empty()) GTEST_SKIP() << "neither AVX-512 nor AVX2 on this CPU";
  namespace pg = packed_gemm;
  const int64_t m = 30, depth = 1500, n = 70;
  const int64_t panels = (n + pg::kPanelWidth - 1) / pg::kPanelWidth;
  torch::manual_seed(11);
  const torch::Tensor a = torch::randn({m, depth});
  const torch::Tensor w = torch::randn({depth, n});
  // Packed as PackedGemm packs: [panels, depth, 32], zero past column n.
  const torch::Tensor w_packed =
      torch::nn::functional::pad(
          w, torch::nn::functional::PadFuncOptions({0, panels * pg::kPanelWidth - n}))
          .view({depth, panels, pg::kPanelWidth})
          .permute({1, 0, 2})
          .contiguous();
  std::vector<float> a_packed(m * depth);
  for (int64_t b = 0; b < pg::RowBlockCount(m); ++b) {
    pg::PackRowBlock(a.data_ptr<float>(), depth, m, depth, b, a_packed.data());
  }
  torch::Tensor reference;
  for (VectorIsa isa : Kernels()) {
    const auto multiply = isa == VectorIsa::kAvx512 ? pg::MultiplyPanels : pg::MultiplyPanelsAvx2;
    for (const int64_t depth_block :
         {int64_t{1}, int64_t{3}, int64_t{256}, pg::kDepthBlock, int64_t{4096}}) {
      for (const pg::Prefetch prefetch : {pg::Prefetch::kFirstTile, pg::Prefetch::kSpread}) {
        SCOPED_TRACE(testing::Message() << VectorIsaName(isa) << " depth_block=" << depth_block
                                        << " spread=" << (prefetch == pg::Prefetch::kSpread));
        pg::Schedule schedule;
        schedule.depth_block = depth_block;
        schedule.prefetch = prefetch;
        torch::Tensor c = torch::full({m, n}, 2.0f);
        // Panels out of order, as two threads claiming them might run them.
        multiply(a_packed.data(), m, depth, w_packed.data_ptr<float>(), n, 1, panels, 0, schedule,
                 0.5f, c.data_ptr<float>(), n);
        multiply(a_packed.data(), m, depth, w_packed.data_ptr<float>(), n, 0, 1, -1, schedule, 0.5f,
                 c.data_ptr<float>(), n);
        if (!reference.defined()) {
          reference = c;
          EXPECT_TRUE(torch::allclose(c, 1.0f + at::mm(a, w), 1e-4, 1e-3));
        }
        EXPECT_TRUE(torch::equal(c, reference));
      }
    }
  }
}

// Run under a benchmark's schedule: the same bits as under the default one.
// A depth block under 1, which would never advance, is refused.
TEST(PackedGemm, RunGivesTheSameBitsUnderTheScheduleABenchmarkSets) {
  if (Kernels().empty()) GTEST_SKIP() << "neither AVX-512 nor AVX2 on this CPU";
  torch::manual_seed(5);
  const torch::Tensor a = torch::randn({40, 1300});
  const torch::Tensor w = torch::randn({1300, 100});
  PackedGemm gemm(w, PackedGemm::kMinCallsToPack);
  auto product = [&] {
    torch::Tensor c = torch::zeros({40, 100});
    gemm.Run(a, 0.0, &c);
    return c;
  };
  const torch::Tensor expected = product();
  packed_gemm::Schedule old;
  old.depth_block = 256;
  old.prefetch = packed_gemm::Prefetch::kFirstTile;
  SetPackedGemmSchedule(old);
  EXPECT_EQ(PackedGemmSchedule().depth_block, 256);
  EXPECT_EQ(PackedGemmSchedule().prefetch, packed_gemm::Prefetch::kFirstTile);
  const torch::Tensor c = product();
  EXPECT_TRUE(torch::equal(c, expected));
  packed_gemm::Schedule broken;
  broken.depth_block = 0;
  EXPECT_THROW(SetPackedGemmSchedule(broken), c10::Error);
  EXPECT_EQ(PackedGemmSchedule().depth_block, 256);  // unchanged
  SetPackedGemmSchedule(packed_gemm::Schedule{});
  EXPECT_EQ(PackedGemmSchedule().depth_block, packed_gemm::kDepthBlock);
  EXPECT_EQ(PackedGemmSchedule().prefetch, packed_gemm::Prefetch::kSpread);
}

TEST(PackedGemm, FallsBackToLibTorchForDouble) {
  torch::manual_seed(3);
  const torch::Tensor a = torch::randn({5, 9}, torch::kDouble);
  const torch::Tensor w = torch::randn({9, 4}, torch::kDouble);
  torch::Tensor c = torch::ones({5, 4}, torch::kDouble);
  PackedGemm gemm(w, PackedGemm::kMinCallsToPack);
  EXPECT_FALSE(gemm.packed());
  gemm.Run(a, 1.0, &c);
  EXPECT_TRUE(torch::allclose(c, 1 + at::mm(a, w)));
}

TEST(PackedGemm, FewCallsUseLibTorchRatherThanPack) {
  const torch::Tensor w = torch::randn({64, 64});
  EXPECT_FALSE(PackedGemm(w, PackedGemm::kMinCallsToPack - 1).packed());
}

TEST(PackedGemm, BaselineCapUsesLibTorch) {
  ScopedIsaCap cap(VectorIsa::kBaseline);
  EXPECT_FALSE(PackedGemm(torch::zeros({64, 64}), PackedGemm::kMinCallsToPack).packed());
}

TEST(VectorIsa, NamesRoundTripAndUnknownNamesAreRejected) {
  for (VectorIsa isa : {VectorIsa::kAvx512, VectorIsa::kAvx2, VectorIsa::kBaseline}) {
    VectorIsa parsed = VectorIsa::kBaseline;
    EXPECT_TRUE(ParseVectorIsa(VectorIsaName(isa), &parsed));
    EXPECT_EQ(parsed, isa);
  }
  VectorIsa untouched = VectorIsa::kAvx2;
  EXPECT_FALSE(ParseVectorIsa("sse9", &untouched));
  EXPECT_EQ(untouched, VectorIsa::kAvx2);
  ScopedIsaCap cap(VectorIsa::kAvx2);
  EXPECT_LE(VectorIsaInUse(), VectorIsa::kAvx2);
  EXPECT_LE(VectorIsaInUse(), CpuVectorIsa());
}

TEST(PackedGemm, CanBeTurnedOff) {
  SetPackedGemmEnabled(false);
  const bool packed = PackedGemm(torch::zeros({64, 64}), PackedGemm::kMinCallsToPack).packed();
  SetPackedGemmEnabled(true);
  EXPECT_FALSE(packed);
}

}  // namespace
}  // namespace ablate
