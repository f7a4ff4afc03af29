#include "worker/init.h"

#include <cmath>

namespace ablate {

namespace {

// Standard deviation of a unit normal truncated to [-2, 2]; dividing by it
// restores the intended variance after truncation (TensorFlow's constant).
constexpr double kTruncatedNormalStd = 0.87962566103423978;

}  // namespace

void XavierUniform(torch::Tensor w, at::Generator& gen) {
  torch::NoGradGuard no_grad;
  const double fan_in = w.size(0), fan_out = w.size(1);
  const double bound = std::sqrt(6.0 / (fan_in + fan_out));
  w.uniform_(-bound, bound, gen);
}

void VarianceScaling(torch::Tensor w, at::Generator& gen) {
  torch::NoGradGuard no_grad;
  const double stddev = std::sqrt(2.0 / w.size(0)) / kTruncatedNormalStd;
  // Rejection sampling: redraw the (rare) values beyond two deviations.
  torch::Tensor z = torch::empty(w.sizes(), w.options().dtype(torch::kDouble).device(torch::kCPU));
  z.normal_(0.0, 1.0, gen);
  for (torch::Tensor bad = z.abs() > 2.0; bad.any().item<bool>(); bad = z.abs() > 2.0) {
    torch::Tensor redraw = torch::empty(z.sizes(), z.options()).normal_(0.0, 1.0, gen);
    z = torch::where(bad, redraw, z);
  }
  w.copy_(z * stddev);
}

void Orthogonal(torch::Tensor w, at::Generator& gen) {
  torch::NoGradGuard no_grad;
  const int64_t rows = w.size(0), cols = w.size(1);
  const bool wide = rows < cols;
  // QR of a tall Gaussian matrix gives orthonormal columns; transpose for wide.
  torch::Tensor a = torch::empty({std::max(rows, cols), std::min(rows, cols)},
                                 torch::TensorOptions().dtype(torch::kDouble));
  a.normal_(0.0, 1.0, gen);
  auto [q, r] = torch::linalg_qr(a);
  q = q * torch::sign(torch::diagonal(r)).unsqueeze(0);
  w.copy_(wide ? q.t() : q);
}

void InitWeight(Init init, torch::Tensor w, int64_t group_cols, int64_t gate_cols,
                at::Generator& gen) {
  const int64_t cols = w.size(1);
  TORCH_CHECK(group_cols > 0 && cols % group_cols == 0 && gate_cols > 0 &&
                  group_cols % gate_cols == 0,
              "bad block sizes ", group_cols, "/", gate_cols, " for ", cols, " columns");
  if (init == Init::kOrthogonal) {
    for (int64_t start = 0; start < cols; start += gate_cols) {
      Orthogonal(w.narrow(1, start, gate_cols), gen);
    }
    return;
  }
  for (int64_t start = 0; start < cols; start += group_cols) {
    torch::Tensor group = w.narrow(1, start, group_cols);
    if (init == Init::kXavier) {
      XavierUniform(group, gen);
    } else {
      VarianceScaling(group, gen);
    }
  }
}

}  // namespace ablate
