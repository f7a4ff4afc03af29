#include "worker/recurrence.h"

#include "worker/recurrence_fused.h"

namespace ablate {

int64_t RecurrentWeights::input_width() const {
  return cell == Cell::kLstm ? w_h.size(1) : w_h.size(1) + w_hc.size(1);
}

namespace {

torch::Tensor MaybeLayerNorm(const torch::Tensor& z, bool on, const torch::Tensor& gain,
                             const torch::Tensor& shift) {
  if (!on) return z;
  return torch::layer_norm(z, {z.size(-1)}, gain, shift, kLayerNormEps);
}

RecurrentOutput ReferenceRecurrence(const torch::Tensor& xg, const RecurrentState& init,
                                    const RecurrentWeights& w) {
  const int64_t steps = xg.size(0), hidden = w.hidden();
  const bool ln = w.layer_norm;
  torch::Tensor h = init.h, c = init.c;
  std::vector<torch::Tensor> hs;
  hs.reserve(steps);
  for (int64_t t = 0; t < steps; ++t) {
    const torch::Tensor x = xg[t];
    if (w.cell == Cell::kLstm) {
      torch::Tensor a = x + MaybeLayerNorm(h.mm(w.w_h), ln, w.ln_h_gain, w.ln_h_shift);
      auto parts = a.chunk(4, 1);  // f, i, o, g
      c = torch::sigmoid(parts[0]) * c + torch::sigmoid(parts[1]) * torch::tanh(parts[3]);
      h = torch::sigmoid(parts[2]) * torch::tanh(MaybeLayerNorm(c, ln, w.ln_2_gain, w.ln_2_shift));
    } else {
      const int64_t gate_width = w.w_h.size(1);
      torch::Tensor gates = torch::sigmoid(
          x.narrow(1, 0, gate_width) + MaybeLayerNorm(h.mm(w.w_h), ln, w.ln_h_gain, w.ln_h_shift));
      torch::Tensor u = gates.narrow(1, 0, hidden);
      torch::Tensor r = w.cell == Cell::kGru ? gates.narrow(1, hidden, hidden) : u;
      torch::Tensor candidate =
          torch::tanh(x.narrow(1, gate_width, hidden) +
                      MaybeLayerNorm((r * h).mm(w.w_hc), ln, w.ln_2_gain, w.ln_2_shift));
      h = h + u * (candidate - h);
    }
    hs.push_back(h);
  }
  return {torch::stack(hs), {h, c}};
}

// Wraps the fused forward and backward kernels as one autograd node.
class FusedRecurrenceFunction : public torch::autograd::Function<FusedRecurrenceFunction> {
 public:
  static torch::autograd::variable_list forward(
      torch::autograd::AutogradContext* ctx, torch::Tensor xg, torch::Tensor h0, torch::Tensor c0,
      torch::Tensor w_h, torch::Tensor w_hc, torch::Tensor ln_h_gain, torch::Tensor ln_h_shift,
      torch::Tensor ln_2_gain, torch::Tensor ln_2_shift, int64_t cell, bool layer_norm) {
    RecurrentWeights w;
    w.cell = static_cast<Cell>(cell);
    w.layer_norm = layer_norm;
    w.w_h = w_h;
    w.w_hc = w_hc;
    w.ln_h_gain = ln_h_gain;
    w.ln_h_shift = ln_h_shift;
    w.ln_2_gain = ln_2_gain;
    w.ln_2_shift = ln_2_shift;
    FusedActivations acts;
    RecurrentOutput out = FusedForward(xg, {h0, c0}, w, &acts);
    ctx->saved_data["activations"] = std::move(acts.tensors);
    ctx->saved_data["cell"] = cell;
    ctx->saved_data["layer_norm"] = layer_norm;
    ctx->save_for_backward({w_h, w_hc, ln_h_gain, ln_h_shift, ln_2_gain, ln_2_shift});
    // Autograd needs a tensor in every output slot; the GRU and MGU have no c.
    torch::Tensor c_final = out.final.c.defined() ? out.final.c : torch::empty({0}, h0.options());
    return {out.hs, out.final.h, c_final};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto vars = ctx->get_saved_variables();
    RecurrentWeights w;
    w.cell = static_cast<Cell>(ctx->saved_data["cell"].toInt());
    w.layer_norm = ctx->saved_data["layer_norm"].toBool();
    w.w_h = vars[0];
    w.w_hc = vars[1];
    w.ln_h_gain = vars[2];
    w.ln_h_shift = vars[3];
    w.ln_2_gain = vars[4];
    w.ln_2_shift = vars[5];
    FusedActivations acts;
    acts.tensors = ctx->saved_data["activations"].toTensorVector();
    FusedGrads g = FusedBackward(grads[0], grads[1], w.cell == Cell::kLstm ? grads[2] : torch::Tensor(),
                                 w, acts);
    return {g.xg, g.h0, g.c0, g.w_h, g.w_hc, g.ln_h_gain, g.ln_h_shift, g.ln_2_gain,
            g.ln_2_shift, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

RecurrentOutput RunRecurrence(Kernel kernel, const torch::Tensor& xg, const RecurrentState& init,
                              const RecurrentWeights& weights) {
  if (kernel == Kernel::kReference) return ReferenceRecurrence(xg, init, weights);
  TORCH_CHECK(xg.device().is_cpu(), "the fused recurrence kernel runs on the CPU only");
  // Autograd functions take no undefined tensors: unused slots get empty ones.
  auto slot = [&](const torch::Tensor& t) {
    return t.defined() ? t : torch::empty({0}, xg.options());
  };
  auto outs = FusedRecurrenceFunction::apply(
      xg, init.h, slot(init.c), weights.w_h, slot(weights.w_hc), slot(weights.ln_h_gain),
      slot(weights.ln_h_shift), slot(weights.ln_2_gain), slot(weights.ln_2_shift),
      static_cast<int64_t>(weights.cell), weights.layer_norm);
  RecurrentOutput out;
  out.hs = outs[0];
  out.final.h = outs[1];
  if (weights.cell == Cell::kLstm) out.final.c = outs[2];
  return out;
}

}  // namespace ablate
