#include "worker/model.h"

#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <utility>

#include "worker/init.h"
#include "worker/packed_gemm.h"
#include "worker/recurrence_fused.h"
#include "worker/vector_isa.h"

namespace ablate {
namespace {

struct CellCase {
  Cell cell;
  bool layer_norm;
};

std::string CaseName(const testing::TestParamInfo<CellCase>& info) {
  return std::string(CellName(info.param.cell)) + (info.param.layer_norm ? "_ln" : "_plain");
}

const CellCase kAllCells[] = {{Cell::kLstm, false}, {Cell::kLstm, true}, {Cell::kGru, false},
                              {Cell::kGru, true},   {Cell::kMgu, false}, {Cell::kMgu, true}};

TEST(Model, ParameterCountsMatchTheSeedAtH2000V256) {
  // shared/MODEL.md's figures for GRU, GRU + LN and LSTM.
  EXPECT_EQ(CountParameters(Cell::kGru, false, 2000, 256), 14054256);
  EXPECT_EQ(CountParameters(Cell::kGru, true, 2000, 256), 14078256);
  EXPECT_EQ(CountParameters(Cell::kLstm, false, 2000, 256), 18568256);
  // The MGU is the GRU with one gate fewer: (V + H + 1) * 2H + (H + 1) * V.
  // MODEL.md gives 9,528,256, which its own equations do not produce (it is
  // 12,000 short of GRU minus one gate group); see the issue note.
  EXPECT_EQ(CountParameters(Cell::kMgu, false, 2000, 256),
            (256 + 2000 + 1) * 2 * 2000 + (2000 + 1) * 256);
  EXPECT_EQ(
      CountParameters(Cell::kGru, false, 2000, 256) - CountParameters(Cell::kMgu, false, 2000, 256),
      (256 + 2000 + 1) * 2000);
}

TEST(Model, BuiltModelHasTheCountedParameters) {
  CharRnn model(Cell::kGru, true, 2000, 256);
  EXPECT_EQ(model->parameter_count(), 14078256);
  int64_t registered = 0;
  for (const auto& p : model->parameters()) registered += p.numel();
  EXPECT_EQ(registered, 14078256);
}

TEST(Model, ClosedFormCountsMatchTheBuiltModelForEveryCell) {
  // The CLI counts with the closed form and never builds a model.
  for (const CellCase& c : kAllCells) {
    for (const auto& [hidden, vocab] : {std::pair<int64_t, int64_t>{7, 27}, {300, 256}}) {
      CharRnn model(c.cell, c.layer_norm, hidden, vocab);
      int64_t registered = 0;
      for (const auto& p : model->parameters()) registered += p.numel();
      const std::string name = std::string(CellName(c.cell)) + (c.layer_norm ? " + LN" : "") +
                               " H " + std::to_string(hidden) + " V " + std::to_string(vocab);
      EXPECT_EQ(CountParameters(c.cell, c.layer_norm, hidden, vocab), registered) << name;
      EXPECT_EQ(model->parameter_count(), registered) << name;
    }
  }
}

TEST(Model, BiasesStartAtTheSeedsValues) {
  at::Generator gen = at::detail::createCPUGenerator(1);
  CharRnn gru(Cell::kGru, true, 8, 27);
  gru->Initialize(Init::kXavier, gen);
  torch::Tensor b = gru->named_parameters()["b_x"];
  EXPECT_TRUE(b.narrow(0, 0, 16).eq(-1).all().item<bool>());
  EXPECT_TRUE(b.narrow(0, 16, 8).eq(0).all().item<bool>());
  EXPECT_TRUE(gru->named_parameters()["ln_h_gain"].eq(1).all().item<bool>());
  CharRnn lstm(Cell::kLstm, false, 8, 27);
  lstm->Initialize(Init::kXavier, gen);
  torch::Tensor lb = lstm->named_parameters()["b_x"];
  EXPECT_TRUE(lb.narrow(0, 0, 8).eq(1).all().item<bool>());
  EXPECT_TRUE(lb.narrow(0, 8, 24).eq(0).all().item<bool>());
}

TEST(Init, XavierStaysWithinItsBoundAndFillsIt) {
  at::Generator gen = at::detail::createCPUGenerator(3);
  torch::Tensor w = torch::empty({300, 500}, torch::kDouble);
  XavierUniform(w, gen);
  const double bound = std::sqrt(6.0 / 800.0);
  EXPECT_LE(w.abs().max().item<double>(), bound);
  EXPECT_GT(w.abs().max().item<double>(), 0.99 * bound);
  EXPECT_NEAR(w.std().item<double>(), bound / std::sqrt(3.0), 0.01 * bound);
  EXPECT_NEAR(w.mean().item<double>(), 0.0, 0.01 * bound);
}

TEST(Init, VarianceScalingHasVarianceTwoOverFanInAndIsTruncated) {
  at::Generator gen = at::detail::createCPUGenerator(4);
  torch::Tensor w = torch::empty({400, 600}, torch::kDouble);
  VarianceScaling(w, gen);
  const double target_std = std::sqrt(2.0 / 400.0);
  EXPECT_NEAR(w.std().item<double>(), target_std, 0.02 * target_std);
  // Truncated at two standard deviations of the underlying normal.
  EXPECT_LE(w.abs().max().item<double>(), 2.0 * target_std / 0.87962566103423978 + 1e-12);
}

TEST(Init, OrthogonalMakesEveryGateBlockOrthogonal) {
  at::Generator gen = at::detail::createCPUGenerator(5);
  const int64_t hidden = 40, vocab = 27;
  CharRnn model(Cell::kGru, false, hidden, vocab, torch::TensorOptions().dtype(torch::kDouble));
  model->Initialize(Init::kOrthogonal, gen);
  auto params = model->named_parameters();
  torch::Tensor eye = torch::eye(hidden, torch::kDouble);
  torch::Tensor w_h = params["w_h"];
  for (int64_t block = 0; block < 2; ++block) {
    torch::Tensor q = w_h.narrow(1, block * hidden, hidden);
    EXPECT_TRUE(torch::allclose(q.t().mm(q), eye, 1e-10, 1e-10)) << "w_h block " << block;
  }
  torch::Tensor w_hc = params["w_hc"];
  EXPECT_TRUE(torch::allclose(w_hc.t().mm(w_hc), eye, 1e-10, 1e-10));
  // The input side is wide (V < H): each gate's block has orthonormal rows.
  torch::Tensor w_x = params["w_x"];
  for (int64_t block = 0; block < 3; ++block) {
    torch::Tensor q = w_x.narrow(1, block * hidden, hidden);
    EXPECT_TRUE(torch::allclose(q.mm(q.t()), torch::eye(vocab, torch::kDouble), 1e-10, 1e-10));
  }
  // Two different blocks are not the same matrix.
  EXPECT_FALSE(torch::allclose(w_h.narrow(1, 0, hidden), w_h.narrow(1, hidden, hidden)));
}

// Loss of a small model that exercises every path: a non-zero initial state,
// the outputs at every step and the final state.
struct GradProblem {
  CharRnn model{nullptr};
  torch::Tensor tokens, targets, h0, c0, w_final_h, w_final_c;
};

GradProblem MakeProblem(CellCase c, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  const int64_t hidden = 5, vocab = 7, steps = 5, batch = 3;  // odd steps: see GatedBackward
  auto dbl = torch::TensorOptions().dtype(torch::kDouble);
  GradProblem p;
  p.model = CharRnn(c.cell, c.layer_norm, hidden, vocab, dbl);
  p.model->Initialize(Init::kXavier, gen);
  {
    // Move gains, shifts and biases off their initial values so every
    // parameter's gradient is generic.
    torch::NoGradGuard no_grad;
    p.model->flat_params().add_(torch::empty_like(p.model->flat_params()).uniform_(-0.3, 0.3, gen));
  }
  p.tokens = torch::randint(0, vocab, {steps, batch}, gen, torch::kLong);
  p.targets = torch::randint(0, vocab, {steps * batch}, gen, torch::kLong);
  p.h0 = torch::empty({batch, hidden}, dbl).uniform_(-0.5, 0.5, gen);
  p.c0 = torch::empty({batch, hidden}, dbl).uniform_(-0.5, 0.5, gen);
  p.w_final_h = torch::empty({batch, hidden}, dbl).uniform_(-1, 1, gen);
  p.w_final_c = torch::empty({batch, hidden}, dbl).uniform_(-1, 1, gen);
  return p;
}

torch::Tensor ProblemLoss(GradProblem& p, Kernel kernel, const torch::Tensor& h0,
                          const torch::Tensor& c0) {
  RecurrentState state{h0, p.model->cell() == Cell::kLstm ? c0 : torch::Tensor()};
  ModelOutput out = p.model->Forward(p.tokens, state, kernel);
  torch::Tensor loss = torch::cross_entropy_loss(out.logits, p.targets);
  loss = loss + (out.state.h * p.w_final_h).sum();
  if (out.state.c.defined()) loss = loss + (out.state.c * p.w_final_c).sum();
  return loss;
}

class CellGradient : public testing::TestWithParam<CellCase> {};

// The fused kernels' variants: the widest copy of the pointwise passes (and
// PackedGemm kernel) the CPU has, the same capped at AVX2, or the baseline
// copy; and the time loops shared among two threads or split into one group
// of rows per thread.
struct Variant {
  bool wide;
  RowGroups groups;
  VectorIsa cap = VectorIsa::kAvx512;
  std::string Name() const {
    return std::string(!wide                       ? "baseline copy"
                       : cap == VectorIsa::kAvx512 ? "widest copy the CPU has"
                                                   : "copy capped at AVX2") +
           (groups == RowGroups::kAlways ? ", a group of rows per thread" : ", shared loops");
  }
};
const std::vector<Variant> kVariants = {{true, RowGroups::kNever},
                                        {false, RowGroups::kNever},
                                        {true, RowGroups::kAlways},
                                        {false, RowGroups::kAlways},
                                        {true, RowGroups::kNever, VectorIsa::kAvx2},
                                        {true, RowGroups::kAlways, VectorIsa::kAvx2}};
// In double the products run on LibTorch, and the loops are always shared.
const std::vector<Variant> kDoubleVariants = {{true, RowGroups::kNever},
                                              {false, RowGroups::kNever},
                                              {true, RowGroups::kNever, VectorIsa::kAvx2}};

// Runs the fused kernels as `v` on two threads (LibTorch's default here is
// one, which would never split the rows) until it goes out of scope.
class ScopedVariant {
 public:
  explicit ScopedVariant(const Variant& v) : threads_(at::get_num_threads()) {
    SetWideFusedKernels(v.wide);
    SetRowGroups(v.groups);
    SetVectorIsaCap(v.cap);
    at::set_num_threads(2);
  }
  ~ScopedVariant() {
    SetWideFusedKernels(true);
    SetRowGroups(RowGroups::kAuto);
    SetVectorIsaCap(VectorIsa::kAvx512);
    at::set_num_threads(threads_);
  }

 private:
  int threads_;
};

struct Analytic {
  torch::Tensor params, h0, c0;
};

Analytic AnalyticGrads(GradProblem& p, Kernel kernel) {
  p.model->flat_grads().zero_();
  torch::Tensor h0 = p.h0.clone().requires_grad_(true);
  torch::Tensor c0 = p.c0.clone().requires_grad_(true);
  ProblemLoss(p, kernel, h0, c0).backward();
  Analytic a{p.model->flat_grads().clone(), h0.grad().clone(), torch::Tensor()};
  if (p.model->cell() == Cell::kLstm) a.c0 = c0.grad().clone();
  return a;
}

TEST_P(CellGradient, FusedAndReferenceMatchFiniteDifferencesInDouble) {
  GradProblem p = MakeProblem(GetParam(), 11);
  torch::Tensor& flat = p.model->flat_params();
  const int64_t n = flat.numel();

  const Analytic reference = AnalyticGrads(p, Kernel::kReference);
  torch::Tensor numeric = torch::empty({n}, torch::kDouble);
  {
    torch::NoGradGuard no_grad;
    const double eps = 1e-6;
    for (int64_t i = 0; i < n; ++i) {
      const double saved = flat[i].item<double>();
      flat[i] = saved + eps;
      const double plus = ProblemLoss(p, Kernel::kReference, p.h0, p.c0).item<double>();
      flat[i] = saved - eps;
      const double minus = ProblemLoss(p, Kernel::kReference, p.h0, p.c0).item<double>();
      flat[i] = saved;
      numeric[i] = (plus - minus) / (2 * eps);
    }
  }
  const double reference_err = (reference.params - numeric).abs().max().item<double>();
  EXPECT_LT(reference_err, 1e-7) << "reference parameter gradient is off by " << reference_err;
  for (const Variant& v : kDoubleVariants) {
    SCOPED_TRACE("fused, " + v.Name());
    ScopedVariant scoped(v);
    const Analytic fused = AnalyticGrads(p, Kernel::kFused);
    const double err = (fused.params - numeric).abs().max().item<double>();
    EXPECT_LT(err, 1e-7) << "fused parameter gradient is off by " << err;
    EXPECT_TRUE(torch::allclose(fused.h0, reference.h0, 1e-10, 1e-12));
    if (GetParam().cell == Cell::kLstm) {
      EXPECT_TRUE(torch::allclose(fused.c0, reference.c0, 1e-10, 1e-12));
    }
  }
}

TEST_P(CellGradient, FusedMatchesReferenceInFloatAtATrainingSize) {
  at::Generator gen = at::detail::createCPUGenerator(7);
  CharRnn model(GetParam().cell, GetParam().layer_norm, 48, 27);
  model->Initialize(Init::kXavier, gen);
  torch::Tensor tokens = torch::randint(0, 27, {20, 6}, gen, torch::kLong);
  torch::Tensor targets = torch::randint(0, 27, {120}, gen, torch::kLong);
  auto run = [&](Kernel kernel, torch::Tensor* grads) {
    model->flat_grads().zero_();
    ModelOutput out = model->Forward(tokens, model->InitialState(6), kernel);
    torch::Tensor loss = torch::cross_entropy_loss(out.logits, targets);
    loss.backward();
    *grads = model->flat_grads().clone();
    return loss.item<double>();
  };
  torch::Tensor reference_grads, fused_grads;
  const double reference_loss = run(Kernel::kReference, &reference_grads);
  const double scale = reference_grads.abs().max().item<double>();
  for (const Variant& v : kVariants) {
    SCOPED_TRACE("fused, " + v.Name());
    ScopedVariant scoped(v);
    EXPECT_NEAR(run(Kernel::kFused, &fused_grads), reference_loss, 1e-5);
    const double err = (fused_grads - reference_grads).abs().max().item<double>();
    EXPECT_LT(err, 1e-4 * scale);
  }
}

// Splitting the batch into a group of rows per thread changes which thread
// computes a row, not how: with the packed kernel every number is the same
// bit for bit. (Compared at one thread count: LibTorch's own ops, such as
// the output layer's product, may round differently on another.)
TEST_P(CellGradient, RowGroupsDoNotChangeTheResultInFloat) {
  // Odd: the gradient buffers end swapped. Three segments: rows re-split twice.
  const int64_t batch = 40, steps = 21;
  at::Generator gen = at::detail::createCPUGenerator(5);
  CharRnn model(GetParam().cell, GetParam().layer_norm, 64, 27);
  model->Initialize(Init::kXavier, gen);
  torch::Tensor tokens = torch::randint(0, 27, {steps, batch}, gen, torch::kLong);
  torch::Tensor targets = torch::randint(0, 27, {steps * batch}, gen, torch::kLong);
  RecurrentState init = model->InitialState(batch);
  init.h.uniform_(-0.5, 0.5, gen);
  if (init.c.defined()) init.c.uniform_(-0.5, 0.5, gen);
  struct Result {
    torch::Tensor logits, h, grads;
  };
  auto run = [&](RowGroups groups, int threads) {
    SetRowGroups(groups);
    const int saved = at::get_num_threads();
    at::set_num_threads(threads);
    model->flat_grads().zero_();
    ModelOutput out = model->Forward(tokens, init, Kernel::kFused);
    torch::cross_entropy_loss(out.logits, targets).backward();
    Result r{out.logits.detach().clone(), out.state.h.detach().clone(),
             model->flat_grads().clone()};
    at::set_num_threads(saved);
    SetRowGroups(RowGroups::kAuto);
    return r;
  };
  for (VectorIsa cap : {VectorIsa::kAvx512, VectorIsa::kAvx2}) {
    for (int threads : {2, 3}) {
      SCOPED_TRACE(std::to_string(threads) + " threads, ISA capped at " + VectorIsaName(cap));
      SetVectorIsaCap(cap);
      const bool packed = PackedGemm(torch::zeros({64, 64}), steps).packed();
      const Result shared = run(RowGroups::kNever, threads);
      const Result grouped = run(RowGroups::kAlways, threads);
      SetVectorIsaCap(VectorIsa::kAvx512);
      if (packed) {
        EXPECT_TRUE(torch::equal(grouped.logits, shared.logits));
        EXPECT_TRUE(torch::equal(grouped.h, shared.h));
        EXPECT_TRUE(torch::equal(grouped.grads, shared.grads));
      } else {  // LibTorch's BLAS may round a product of fewer rows differently
        EXPECT_TRUE(torch::allclose(grouped.logits, shared.logits, 1e-5, 1e-6));
        EXPECT_TRUE(torch::allclose(grouped.h, shared.h, 1e-5, 1e-6));
        EXPECT_TRUE(torch::allclose(grouped.grads, shared.grads, 1e-4, 1e-6));
      }
      EXPECT_FALSE(grouped.h.isnan().any().item<bool>());
    }
  }
}

int64_t Sum(const std::vector<int64_t>& v) {
  int64_t total = 0;
  for (int64_t x : v) total += x;
  return total;
}

TEST(BalanceRows, MovesRowsTowardsTheFasterThreadHalfwayAndWithinBounds) {
  // Thread 0 took twice as long for the same rows: the speeds ask for 33/67,
  // halfway from 50/50 is 42/58.
  EXPECT_EQ(BalanceRows({50, 50}, {0.2, 0.1}), (std::vector<int64_t>{42, 58}));
  // Equally fast threads with an uneven split move halfway to an even one;
  // an even split stays.
  EXPECT_EQ(BalanceRows({30, 70}, {0.3, 0.7}), (std::vector<int64_t>{40, 60}));
  EXPECT_EQ(BalanceRows({50, 50}, {0.3, 0.3}), (std::vector<int64_t>{50, 50}));
  // A thread that all but stopped keeps half an equal share.
  EXPECT_EQ(BalanceRows({50, 50}, {100.0, 0.1}), (std::vector<int64_t>{25, 75}));
  const std::vector<int64_t> three = BalanceRows({34, 33, 33}, {0.1, 0.2, 0.15});
  EXPECT_EQ(Sum(three), 100);
  EXPECT_GT(three[0], three[2]);
  EXPECT_GT(three[2], three[1]);
  // Too short to time: unchanged.
  EXPECT_EQ(BalanceRows({50, 50}, {1e-5, 0.1}), (std::vector<int64_t>{50, 50}));
}

INSTANTIATE_TEST_SUITE_P(AllCells, CellGradient, testing::ValuesIn(kAllCells), CaseName);

}  // namespace
}  // namespace ablate
