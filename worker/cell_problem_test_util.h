// Test support: one small training problem of the seed's model, run through
// any kernel on any device, and what to compare between runs.
#ifndef ABLATE_WORKER_CELL_PROBLEM_TEST_UTIL_H_
#define ABLATE_WORKER_CELL_PROBLEM_TEST_UTIL_H_

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <string>
#include <vector>

#include "worker/init.h"
#include "worker/model.h"
#include "worker/trainer.h"

namespace ablate {

struct CellCase {
  Cell cell;
  bool layer_norm;
};

inline std::string CaseName(const testing::TestParamInfo<CellCase>& info) {
  return std::string(CellName(info.param.cell)) + (info.param.layer_norm ? "_ln" : "_plain");
}

inline const CellCase kAllCells[] = {{Cell::kLstm, false}, {Cell::kLstm, true},
                                     {Cell::kGru, false},  {Cell::kGru, true},
                                     {Cell::kMgu, false},  {Cell::kMgu, true}};

// What one forward and backward pass gave, on the CPU.
struct Outcome {
  double loss = 0;
  torch::Tensor logits, h, c, grads, dh0, dc0;
};

// A model at a small training size with generic parameters (gains, shifts
// and biases off their initial values) and a random initial state, the same
// numbers on every device.
struct Problem {
  CharRnn model{nullptr};
  torch::Tensor tokens, targets, h0, c0;

  explicit Problem(CellCase c, torch::Device device = torch::kCPU, int64_t hidden = 40,
                   int64_t vocab = 27, int64_t steps = 13, int64_t batch = 6) {
    at::Generator gen = at::detail::createCPUGenerator(9);
    CharRnn cpu(c.cell, c.layer_norm, hidden, vocab);
    cpu->Initialize(Init::kXavier, gen);
    torch::NoGradGuard no_grad;
    cpu->flat_params().add_(torch::empty_like(cpu->flat_params()).uniform_(-0.2, 0.2, gen));
    model = CharRnn(c.cell, c.layer_norm, hidden, vocab, torch::TensorOptions().device(device));
    model->flat_params().copy_(cpu->flat_params());
    tokens = torch::randint(0, vocab, {steps, batch}, gen, torch::kLong).to(device);
    targets = torch::randint(0, vocab, {steps * batch}, gen, torch::kLong).to(device);
    h0 = torch::empty({batch, hidden}).uniform_(-0.5, 0.5, gen).to(device);
    c0 = torch::empty({batch, hidden}).uniform_(-0.5, 0.5, gen).to(device);
  }

  Outcome Train(Kernel kernel, Precision precision = Precision::kFp32) {
    model->flat_grads().zero_();
    torch::Tensor h = h0.clone().requires_grad_(true), c = c0.clone().requires_grad_(true);
    RecurrentState state{h, model->cell() == Cell::kLstm ? c : torch::Tensor()};
    ModelOutput out = model->Forward(tokens, state, kernel, precision);
    // The final state enters the loss too, so its gradients are checked.
    torch::Tensor loss = torch::cross_entropy_loss(out.logits, targets) + out.state.h.sum() * 0.1;
    if (out.state.c.defined()) loss = loss + out.state.c.sum() * 0.1;
    loss.backward();
    Outcome r;
    r.loss = loss.item<double>();
    r.logits = out.logits.detach().cpu();
    r.h = out.state.h.detach().cpu();
    if (out.state.c.defined()) r.c = out.state.c.detach().cpu();
    r.grads = model->flat_grads().cpu().clone();
    r.dh0 = h.grad().cpu();
    if (model->cell() == Cell::kLstm) r.dc0 = c.grad().cpu();
    return r;
  }
};

inline double RelativeError(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item<double>();
}

// Every output and gradient of `got` within `tolerance` of `want`, relative
// to the largest magnitude of each.
inline void ExpectClose(const Outcome& got, const Outcome& want, double tolerance) {
  EXPECT_NEAR(got.loss, want.loss, tolerance * std::abs(want.loss));
  EXPECT_LT(RelativeError(got.logits, want.logits), tolerance);
  EXPECT_LT(RelativeError(got.h, want.h), tolerance);
  EXPECT_LT(RelativeError(got.grads, want.grads), tolerance);
  EXPECT_LT(RelativeError(got.dh0, want.dh0), tolerance);
  if (want.c.defined()) {
    EXPECT_LT(RelativeError(got.c, want.c), tolerance);
    EXPECT_LT(RelativeError(got.dc0, want.dc0), tolerance);
  }
}

inline void ExpectSameBits(const Outcome& a, const Outcome& b) {
  EXPECT_TRUE(torch::equal(a.logits, b.logits));
  EXPECT_TRUE(torch::equal(a.grads, b.grads));
  EXPECT_TRUE(torch::equal(a.dh0, b.dh0));
}

// A run stopped and resumed from its checkpoint repeats the uninterrupted
// run point for point: the points before the stop and after the resume
// together have the same splits, steps and bpc, bit for bit.
inline void ExpectResumedRunRepeats(const std::vector<CurvePoint>& before,
                                    const std::vector<CurvePoint>& after,
                                    const std::vector<CurvePoint>& uninterrupted,
                                    const std::string& label) {
  std::vector<CurvePoint> joined = before;
  joined.insert(joined.end(), after.begin(), after.end());
  ASSERT_EQ(joined.size(), uninterrupted.size()) << label;
  for (size_t i = 0; i < joined.size(); ++i) {
    EXPECT_EQ(joined[i].split, uninterrupted[i].split) << "point " << i << " of " << label;
    EXPECT_EQ(joined[i].step, uninterrupted[i].step) << "point " << i << " of " << label;
    EXPECT_EQ(joined[i].bpc, uninterrupted[i].bpc) << "point " << i << " of " << label;
  }
}

}  // namespace ablate

#endif  // ABLATE_WORKER_CELL_PROBLEM_TEST_UTIL_H_
