#include "worker/recurrence.h"

#include "worker/cuda_support.h"
#include "worker/recurrence_device.h"
#include "worker/recurrence_fused.h"

namespace ablate {

const char* KernelName(Kernel kernel) {
  switch (kernel) {
    case Kernel::kReference:
      return "reference";
    case Kernel::kFused:
      return "fused";
    case Kernel::kCuda:
      return "cuda";
    case Kernel::kCudaOnCpu:
      return "cuda-on-cpu";
  }
  return "?";
}

int64_t RecurrentWeights::input_width() const {
  return cell == Cell::kLstm ? w_h.size(1) : w_h.size(1) + w_hc.size(1);
}

namespace {

torch::Tensor MaybeLayerNorm(const torch::Tensor& z, bool on, const torch::Tensor& gain,
                             const torch::Tensor& shift) {
  if (!on) return z;
  return torch::layer_norm(z, {z.size(-1)}, gain, shift, kLayerNormEps);
}

// h w, with bf16 operands when asked for on a GPU. (TF32 follows LibTorch's
// global setting, which the trainer sets from the precision.)
torch::Tensor RecurrentProduct(const torch::Tensor& h, const torch::Tensor& w,
                               Precision precision) {
  if (precision == Precision::kBf16 && h.is_cuda()) {
    return h.to(torch::kBFloat16).mm(w.to(torch::kBFloat16)).to(h.scalar_type());
  }
  return h.mm(w);
}

RecurrentOutput ReferenceRecurrence(const torch::Tensor& xg, const RecurrentState& init,
                                    const RecurrentWeights& w, Precision precision) {
  const int64_t steps = xg.size(0), hidden = w.hidden();
  const bool ln = w.layer_norm;
  torch::Tensor h = init.h, c = init.c;
  std::vector<torch::Tensor> hs;
  hs.reserve(steps);
  for (int64_t t = 0; t < steps; ++t) {
    const torch::Tensor x = xg[t];
    if (w.cell == Cell::kLstm) {
      torch::Tensor a =
          x + MaybeLayerNorm(RecurrentProduct(h, w.w_h, precision), ln, w.ln_h_gain, w.ln_h_shift);
      auto parts = a.chunk(4, 1);  // f, i, o, g
      c = torch::sigmoid(parts[0]) * c + torch::sigmoid(parts[1]) * torch::tanh(parts[3]);
      h = torch::sigmoid(parts[2]) * torch::tanh(MaybeLayerNorm(c, ln, w.ln_2_gain, w.ln_2_shift));
    } else {
      const int64_t gate_width = w.w_h.size(1);
      torch::Tensor gates = torch::sigmoid(
          x.narrow(1, 0, gate_width) +
          MaybeLayerNorm(RecurrentProduct(h, w.w_h, precision), ln, w.ln_h_gain, w.ln_h_shift));
      torch::Tensor u = gates.narrow(1, 0, hidden);
      torch::Tensor r = w.cell == Cell::kGru ? gates.narrow(1, hidden, hidden) : u;
      torch::Tensor candidate =
          torch::tanh(x.narrow(1, gate_width, hidden) +
                      MaybeLayerNorm(RecurrentProduct(r * h, w.w_hc, precision), ln, w.ln_2_gain,
                                     w.ln_2_shift));
      h = h + u * (candidate - h);
    }
    hs.push_back(h);
  }
  return {torch::stack(hs), {h, c}};
}

// The weights as the autograd functions below receive them (an empty tensor
// for each one the configuration does not use).
RecurrentWeights WeightsFrom(int64_t cell, bool layer_norm, const torch::Tensor& w_h,
                             const torch::Tensor& w_hc, const torch::Tensor& ln_h_gain,
                             const torch::Tensor& ln_h_shift, const torch::Tensor& ln_2_gain,
                             const torch::Tensor& ln_2_shift) {
  return {static_cast<Cell>(cell), layer_norm, w_h,       w_hc,
          ln_h_gain,               ln_h_shift, ln_2_gain, ln_2_shift};
}

RecurrentWeights SavedWeights(torch::autograd::AutogradContext* ctx) {
  auto vars = ctx->get_saved_variables();
  return WeightsFrom(ctx->saved_data["cell"].toInt(), ctx->saved_data["layer_norm"].toBool(),
                     vars[0], vars[1], vars[2], vars[3], vars[4], vars[5]);
}

// What the autograd functions below keep for their backward passes (the
// activations, the weights and the configuration); returns their outputs,
// with an empty c for the GRU and MGU: autograd needs a tensor in every slot.
torch::autograd::variable_list SaveForBackward(torch::autograd::AutogradContext* ctx,
                                               std::vector<torch::Tensor> activations,
                                               const RecurrentWeights& w,
                                               const RecurrentOutput& out) {
  ctx->saved_data["activations"] = std::move(activations);
  ctx->saved_data["cell"] = static_cast<int64_t>(w.cell);
  ctx->saved_data["layer_norm"] = w.layer_norm;
  ctx->save_for_backward({w.w_h, w.w_hc, w.ln_h_gain, w.ln_h_shift, w.ln_2_gain, w.ln_2_shift});
  torch::Tensor c_final =
      out.final.c.defined() ? out.final.c : torch::empty({0}, out.final.h.options());
  return {out.hs, out.final.h, c_final};
}

// Wraps the fused forward and backward kernels as one autograd node.
class FusedRecurrenceFunction : public torch::autograd::Function<FusedRecurrenceFunction> {
 public:
  static torch::autograd::variable_list forward(
      torch::autograd::AutogradContext* ctx, torch::Tensor xg, torch::Tensor h0, torch::Tensor c0,
      torch::Tensor w_h, torch::Tensor w_hc, torch::Tensor ln_h_gain, torch::Tensor ln_h_shift,
      torch::Tensor ln_2_gain, torch::Tensor ln_2_shift, int64_t cell, bool layer_norm) {
    const RecurrentWeights w =
        WeightsFrom(cell, layer_norm, w_h, w_hc, ln_h_gain, ln_h_shift, ln_2_gain, ln_2_shift);
    FusedActivations acts;
    RecurrentOutput out = FusedForward(xg, {h0, c0}, w, &acts);
    return SaveForBackward(ctx, std::move(acts.tensors), w, out);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const RecurrentWeights w = SavedWeights(ctx);
    FusedActivations acts;
    acts.tensors = ctx->saved_data["activations"].toTensorVector();
    FusedGrads g = FusedBackward(grads[0], grads[1], w.cell == Cell::kLstm ? grads[2] : torch::Tensor(),
                                 w, acts);
    return {g.xg, g.h0, g.c0, g.w_h, g.w_hc, g.ln_h_gain, g.ln_h_shift, g.ln_2_gain,
            g.ln_2_shift, torch::Tensor(), torch::Tensor()};
  }
};

std::unique_ptr<RecurrenceDevice> MakeRecurrenceDevice(bool on_cpu) {
  return on_cpu ? MakeHostRecurrenceDevice() : MakeCudaRecurrenceDevice();
}

// Wraps DeviceForward and DeviceBackward as one autograd node.
class DeviceRecurrenceFunction : public torch::autograd::Function<DeviceRecurrenceFunction> {
 public:
  static torch::autograd::variable_list forward(
      torch::autograd::AutogradContext* ctx, torch::Tensor table, torch::Tensor tokens,
      torch::Tensor h0, torch::Tensor c0, torch::Tensor w_h, torch::Tensor w_hc,
      torch::Tensor ln_h_gain, torch::Tensor ln_h_shift, torch::Tensor ln_2_gain,
      torch::Tensor ln_2_shift, int64_t cell, bool layer_norm, int64_t precision, bool on_cpu) {
    const RecurrentWeights w =
        WeightsFrom(cell, layer_norm, w_h, w_hc, ln_h_gain, ln_h_shift, ln_2_gain, ln_2_shift);
    DeviceActivations acts;
    RecurrentOutput out = DeviceForward(*MakeRecurrenceDevice(on_cpu), table, tokens, {h0, c0}, w,
                                        static_cast<Precision>(precision), &acts);
    ctx->saved_data["precision"] = precision;
    ctx->saved_data["on_cpu"] = on_cpu;
    return SaveForBackward(ctx, std::move(acts.tensors), w, out);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const RecurrentWeights w = SavedWeights(ctx);
    DeviceActivations acts;
    acts.tensors = ctx->saved_data["activations"].toTensorVector();
    acts.precision = static_cast<Precision>(ctx->saved_data["precision"].toInt());
    DeviceGrads g =
        DeviceBackward(*MakeRecurrenceDevice(ctx->saved_data["on_cpu"].toBool()), grads[0],
                       grads[1], w.cell == Cell::kLstm ? grads[2] : torch::Tensor(), w, acts);
    const torch::Tensor none;
    return {g.table,      none,        g.h0,         g.c0, g.w_h, g.w_hc, g.ln_h_gain,
            g.ln_h_shift, g.ln_2_gain, g.ln_2_shift, none, none,  none,   none};
  }
};

// Autograd functions take no undefined tensors: unused slots get empty ones.
torch::Tensor Slot(const torch::Tensor& t, const torch::Tensor& like) {
  return t.defined() ? t : torch::empty({0}, like.options());
}

RecurrentOutput FromOutputs(const torch::autograd::variable_list& outs, Cell cell) {
  RecurrentOutput out;
  out.hs = outs[0];
  out.final.h = outs[1];
  if (cell == Cell::kLstm) out.final.c = outs[2];
  return out;
}

}  // namespace

RecurrentOutput RunRecurrence(Kernel kernel, const torch::Tensor& xg, const RecurrentState& init,
                              const RecurrentWeights& weights) {
  if (kernel == Kernel::kReference) {
    return ReferenceRecurrence(xg, init, weights, Precision::kFp32);
  }
  TORCH_CHECK(kernel == Kernel::kFused, "the ", KernelName(kernel),
              " kernel takes a table and symbols, not xg");
  TORCH_CHECK(xg.device().is_cpu(), "the fused recurrence kernel runs on the CPU only");
  auto outs = FusedRecurrenceFunction::apply(
      xg, init.h, Slot(init.c, xg), weights.w_h, Slot(weights.w_hc, xg),
      Slot(weights.ln_h_gain, xg), Slot(weights.ln_h_shift, xg), Slot(weights.ln_2_gain, xg),
      Slot(weights.ln_2_shift, xg), static_cast<int64_t>(weights.cell), weights.layer_norm);
  return FromOutputs(outs, weights.cell);
}

RecurrentOutput RunRecurrence(Kernel kernel, const torch::Tensor& table,
                              const torch::Tensor& tokens, const RecurrentState& init,
                              const RecurrentWeights& weights, Precision precision) {
  const int64_t steps = tokens.size(0), batch = tokens.size(1);
  if (kernel == Kernel::kReference || kernel == Kernel::kFused) {
    torch::Tensor xg = table.index_select(0, tokens.reshape({-1})).view({steps, batch, -1});
    if (kernel == Kernel::kReference) return ReferenceRecurrence(xg, init, weights, precision);
    return RunRecurrence(kernel, xg, init, weights);
  }
  const bool on_cpu = kernel == Kernel::kCudaOnCpu;
  TORCH_CHECK(on_cpu ? table.is_cpu() : table.is_cuda(), "the ", KernelName(kernel),
              " kernel runs on ", on_cpu ? "the CPU" : "a GPU", ", the table is on ",
              table.device().str());
  if (!torch::GradMode::is_enabled()) {
    return DeviceForward(*MakeRecurrenceDevice(on_cpu), table, tokens, init, weights, precision,
                         nullptr);
  }
  auto outs = DeviceRecurrenceFunction::apply(
      table, tokens, init.h, Slot(init.c, table), weights.w_h, Slot(weights.w_hc, table),
      Slot(weights.ln_h_gain, table), Slot(weights.ln_h_shift, table),
      Slot(weights.ln_2_gain, table), Slot(weights.ln_2_shift, table),
      static_cast<int64_t>(weights.cell), weights.layer_norm, static_cast<int64_t>(precision),
      on_cpu);
  return FromOutputs(outs, weights.cell);
}

}  // namespace ablate
