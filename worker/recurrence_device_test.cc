// The CUDA path's code, run on the CPU (Kernel::kCudaOnCpu): the kernel
// bodies of device_kernels.h, the per-element arithmetic of cell_math.h and
// the bookkeeping of recurrence_device.cc, checked against the reference
// autograd path and the CPU's fused kernels on the same weights and data.
// What this cannot check is CUDA itself (launches, block reductions, cuBLAS,
// graphs): worker/cuda_test.cc does that on a GPU.
#include "worker/recurrence_device.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>

#include "worker/cell_math.h"
#include "worker/cell_problem_test_util.h"

namespace ablate {
namespace {

TEST(CellMath, Bf16RoundingIsLibTorchsForEveryKindOfFloat) {
  std::mt19937 rng(1);
  std::uniform_int_distribution<uint32_t> bits;
  std::vector<float> values = {0.f,
                               -0.f,
                               1.f,
                               -1.5f,
                               1e-40f,
                               -3e-39f,
                               65504.f,
                               3e38f,
                               -3.4e38f,
                               1.0039062f /* a tie */,
                               std::numeric_limits<float>::infinity(),
                               -std::numeric_limits<float>::infinity()};
  for (int i = 0; i < 100000; ++i) {
    uint32_t u = bits(rng);
    float f;
    std::memcpy(&f, &u, sizeof(f));
    values.push_back(f);
  }
  for (float f : values) {
    const uint16_t ours = cell::FloatToBf16Bits(f);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(cell::Bf16BitsToFloat(ours)));
      continue;
    }
    ASSERT_EQ(ours, c10::BFloat16(f).x) << "for " << f;
    ASSERT_EQ(cell::Bf16BitsToFloat(ours), static_cast<float>(c10::BFloat16(f))) << "for " << f;
  }
}

TEST(CellMath, NonlinearitiesAndLayerNormMatchDoublePrecision) {
  for (double x = -30; x <= 30; x += 0.01) {
    EXPECT_NEAR(cell::Sigmoid(float(x)), 1 / (1 + std::exp(-x)), 2e-7);
    EXPECT_NEAR(cell::Tanh(float(x)), std::tanh(x), 2e-7);
  }
  const float values[] = {0.5f, -1.25f, 3.f, 0.f, 2.f};
  double mean = 0, sq = 0;
  for (float v : values) mean += v / 5.0;
  for (float v : values) sq += (v - mean) * (v - mean);
  EXPECT_NEAR(cell::LayerNormRstd(float(sq), 5), 1 / std::sqrt(sq / 5 + 1e-5), 1e-6);
}

// A product as the devices run it (views over raw memory with leading
// dimensions, transposed where asked) equals LibTorch's on the matrices
// themselves, for every transposition, with and without accumulation, in
// fp32 and bf16 operands, and leaves the padding between rows alone.
TEST(HostRecurrenceDevice, ProductsMatchLibTorchForEveryTransposition) {
  at::Generator gen = at::detail::createCPUGenerator(4);
  auto device = MakeHostRecurrenceDevice();
  const int64_t m = 7, n = 5, k = 9, pad = 3;
  for (bool trans_a : {false, true}) {
    for (bool trans_b : {false, true}) {
      for (float beta : {0.f, 1.f}) {
        for (auto inputs : {device::GemmInputs::kFp32, device::GemmInputs::kBf16}) {
          const bool bf16 = inputs == device::GemmInputs::kBf16;
          // Stored with `pad` unused columns after every row.
          auto stored = [&](int64_t rows, int64_t cols) {
            torch::Tensor x = torch::randn({rows, cols + pad}, gen);
            return bf16 ? x.to(torch::kBFloat16) : x;
          };
          const torch::Tensor a = trans_a ? stored(k, m) : stored(m, k);
          const torch::Tensor b = trans_b ? stored(n, k) : stored(k, n);
          torch::Tensor c = torch::randn({m, n + pad}, gen);
          const torch::Tensor a_used = a.narrow(1, 0, a.size(1) - pad).to(torch::kFloat);
          const torch::Tensor b_used = b.narrow(1, 0, b.size(1) - pad).to(torch::kFloat);
          const torch::Tensor expected =
              (trans_a ? a_used.t() : a_used).mm(trans_b ? b_used.t() : b_used) +
              beta * c.narrow(1, 0, n);
          const torch::Tensor padding = c.narrow(1, n, pad).clone();
          device::RowMajorGemm g;
          g.trans_a = trans_a;
          g.trans_b = trans_b;
          g.m = m;
          g.n = n;
          g.k = k;
          g.a = a.data_ptr();
          g.lda = a.size(1);
          g.b = b.data_ptr();
          g.ldb = b.size(1);
          g.c = c.data_ptr<float>();
          g.ldc = n + pad;
          g.beta = beta;
          g.inputs = inputs;
          device->Gemm(g);
          EXPECT_TRUE(torch::allclose(c.narrow(1, 0, n), expected, 1e-5, 1e-5))
              << "trans_a " << trans_a << " trans_b " << trans_b << " beta " << beta;
          EXPECT_TRUE(torch::equal(c.narrow(1, n, pad), padding));
        }
      }
    }
  }
}

class CudaOnCpu : public testing::TestWithParam<CellCase> {};

TEST_P(CudaOnCpu, LossStateAndEveryGradientMatchTheReferenceAndTheFusedCpuKernels) {
  Problem p(GetParam());
  const Outcome reference = p.Train(Kernel::kReference);
  const Outcome fused = p.Train(Kernel::kFused);
  const Outcome device = p.Train(Kernel::kCudaOnCpu);
  {
    SCOPED_TRACE("against the reference");
    ExpectClose(device, reference, 2e-5);
  }
  {
    SCOPED_TRACE("against the fused CPU kernels");
    ExpectClose(device, fused, 2e-5);
  }
  // Every parameter has a gradient: none was silently left at zero.
  for (const auto& param : p.model->named_parameters()) {
    EXPECT_GT(param.value().grad().abs().max().item<double>(), 0.0) << param.key();
  }
}

TEST_P(CudaOnCpu, RepeatsBitForBit) {
  Problem p(GetParam());
  ExpectSameBits(p.Train(Kernel::kCudaOnCpu), p.Train(Kernel::kCudaOnCpu));
}

TEST_P(CudaOnCpu, ForwardWithoutGradientsGivesTheSameOutputs) {
  Problem p(GetParam());
  RecurrentState state{p.h0, p.model->cell() == Cell::kLstm ? p.c0 : torch::Tensor()};
  const ModelOutput with = p.model->Forward(p.tokens, state, Kernel::kCudaOnCpu);
  torch::NoGradGuard no_grad;
  const ModelOutput without = p.model->Forward(p.tokens, state, Kernel::kCudaOnCpu);
  EXPECT_TRUE(torch::equal(with.logits.detach(), without.logits));
  EXPECT_TRUE(torch::equal(with.state.h.detach(), without.state.h));
  if (with.state.c.defined()) {
    EXPECT_TRUE(torch::equal(with.state.c.detach(), without.state.c));
  }
}

// bf16 products round each operand to 8 bits of mantissa; the loss stays
// within a percent of fp32's (0.53% for the LSTM with layer norm, the
// farthest), and tf32, which the CPU runs as fp32, is fp32 here.
TEST_P(CudaOnCpu, Bf16ProductsStayCloseToFp32) {
  Problem p(GetParam());
  const Outcome fp32 = p.Train(Kernel::kCudaOnCpu, Precision::kFp32);
  const Outcome tf32 = p.Train(Kernel::kCudaOnCpu, Precision::kTf32);
  const Outcome bf16 = p.Train(Kernel::kCudaOnCpu, Precision::kBf16);
  EXPECT_TRUE(torch::equal(tf32.grads, fp32.grads));
  EXPECT_NEAR(bf16.loss, fp32.loss, 1e-2 * std::abs(fp32.loss));
  EXPECT_LT(RelativeError(bf16.logits, fp32.logits), 2e-2);
  EXPECT_LT(RelativeError(bf16.grads, fp32.grads), 5e-2);
  EXPECT_FALSE(torch::equal(bf16.grads, fp32.grads));
}

INSTANTIATE_TEST_SUITE_P(AllCells, CudaOnCpu, testing::ValuesIn(kAllCells), CaseName);

// More rows than one chunk of the column reductions, and a vocabulary with
// symbols that never occur: their table rows get exactly zero.
TEST(CudaOnCpuSizes, ReductionsOverSeveralChunksAndUnusedSymbols) {
  Problem p({Cell::kGru, true}, torch::kCPU, /*hidden=*/24, /*vocab=*/256, /*steps=*/70,
            /*batch=*/5);
  p.tokens = p.tokens % 20;
  const Outcome reference = p.Train(Kernel::kReference);
  const Outcome device = p.Train(Kernel::kCudaOnCpu);
  // Float rounding grows with the 70 steps the gradient travels back.
  ExpectClose(device, reference, 5e-5);
  const torch::Tensor w_x_grad = p.model->named_parameters()["w_x"].grad();
  EXPECT_TRUE(torch::equal(w_x_grad.narrow(0, 20, 236), torch::zeros({236, w_x_grad.size(1)})));
}

TEST(CudaOnCpuSizes, AKernelOnTheWrongDeviceIsAnError) {
  Problem p({Cell::kGru, false});
  RecurrentState state{p.h0, torch::Tensor()};
  EXPECT_THROW(p.model->Forward(p.tokens, state, Kernel::kCuda), c10::Error);
}

}  // namespace
}  // namespace ablate
