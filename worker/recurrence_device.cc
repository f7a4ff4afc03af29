#include "worker/recurrence_device.h"

#include <ATen/Parallel.h>

#include <utility>

namespace ablate {

namespace {

using device::GemmInputs;

// Slots of DeviceActivations::tensors. Unused slots hold undefined tensors.
enum Slot {
  kH,       // [T+1, B, H]: h0 then h after every step
  kC,       // LSTM [T+1, B, H]: c0 then c' after every step
  kGates,   // [T, B, G]: sigmoid gates (LSTM: sf, si, so, tanh(g))
  kRh,      // GRU/MGU [T, B, H]: r * h
  kCand,    // GRU/MGU [T, B, H]: the candidate; LSTM: tanh(LN(c'))
  kXhatH,   // LN: [T, B, G]: the normalised h-projection
  kRstdH,   // LN: [T, B]
  kXhat2,   // LN: [T, B, H]: the normalised candidate projection (GRU/MGU) or c' (LSTM)
  kRstd2,   // LN: [T, B]
  kTokens,  // [T, B] int64
  kTable,   // [V, width]: only its shape and options are used
  kWhBf16,  // bf16: the recurrent weights as the products took them
  kWhcBf16,
  kSlotCount,
};

// Float pointer to slice `t` of a [slots, ...] tensor; with fewer slots than
// steps (no backward pass to keep them for) the slices take turns.
float* At(const torch::Tensor& x, int64_t t) {
  return x.data_ptr<float>() + (t % x.size(0)) * x.stride(0);
}
float* Ptr(const torch::Tensor& x) { return x.defined() ? x.data_ptr<float>() : nullptr; }
uint16_t* Bf16At(const torch::Tensor& x, int64_t t) {
  if (!x.defined()) return nullptr;
  return reinterpret_cast<uint16_t*>(x.data_ptr<at::BFloat16>()) + (t % x.size(0)) * x.stride(0);
}

device::RowShape ShapeOf(const RecurrentWeights& w, int64_t batch, int64_t width) {
  device::RowShape shape;
  shape.batch = batch;
  shape.hidden = w.hidden();
  shape.gate_width = w.w_h.size(1);
  shape.width = width;
  shape.layer_norm = w.layer_norm;
  shape.tied = w.cell == Cell::kMgu;
  return shape;
}

GemmInputs RecurrentInputs(Precision p) {
  switch (p) {
    case Precision::kFp32:
      return GemmInputs::kFp32;
    case Precision::kTf32:
      return GemmInputs::kTf32;
    case Precision::kBf16:
      return GemmInputs::kBf16;
  }
  return GemmInputs::kFp32;
}

// The weight gradients are one large product each, where bf16 operands would
// only cost accuracy: they run in fp32, or tf32 unless fp32 was asked for.
GemmInputs WeightGradInputs(Precision p) {
  return p == Precision::kFp32 ? GemmInputs::kFp32 : GemmInputs::kTf32;
}

// out[m, n] (+)= a[m, k] w[k, n], or w^T when `transposed` (w is [n, k]).
// `a` is float, or bf16 when inputs is kBf16 (and w too).
void Product(RecurrenceDevice& dev, GemmInputs inputs, const void* a, int64_t m, int64_t k,
             const void* w, int64_t n, bool transposed, float* out, float beta) {
  device::RowMajorGemm g;
  g.trans_b = transposed;
  g.m = m;
  g.n = n;
  g.k = k;
  g.a = a;
  g.lda = k;
  g.b = w;
  g.ldb = transposed ? k : n;
  g.c = out;
  g.ldc = n;
  g.beta = beta;
  g.inputs = inputs;
  dev.Gemm(g);
}

const void* WeightFor(GemmInputs inputs, const torch::Tensor& w, const torch::Tensor& w_bf16) {
  return inputs == GemmInputs::kBf16 ? w_bf16.data_ptr() : w.data_ptr();
}

// dot[j] = sum over rows of a[r, j] * b[r, j], sum[j] = sum over rows of
// a[r, j]: a layer norm's gain and shift gradients.
void ColumnSums(RecurrenceDevice& dev, const float* a, int64_t lda, const float* b, int64_t ldb,
                int64_t rows, int64_t cols, const torch::TensorOptions& opts, torch::Tensor* dot,
                torch::Tensor* sum) {
  device::ColumnPartialSums p;
  p.rows = rows;
  p.cols = cols;
  p.a = a;
  p.lda = lda;
  p.b = b;
  p.ldb = ldb;
  torch::Tensor partial = torch::empty({2, p.chunks(), cols}, opts.dtype(torch::kDouble));
  p.partial_dot = partial[0].data_ptr<double>();
  p.partial_sum = partial[1].data_ptr<double>();
  dev.Run(p);
  *dot = torch::empty({cols}, opts);
  *sum = torch::empty({cols}, opts);
  device::ColumnFinalSums f;
  f.cols = cols;
  f.chunks = p.chunks();
  f.partial_dot = p.partial_dot;
  f.partial_sum = p.partial_sum;
  f.dot = dot->data_ptr<float>();
  f.sum = sum->data_ptr<float>();
  dev.Run(f);
}

// d_table[v] = the sum of the rows of dxg ([rows, width]) whose symbol is v,
// in position order.
torch::Tensor TableGrad(RecurrenceDevice& dev, const torch::Tensor& tokens,
                        const torch::Tensor& dxg, int64_t vocab) {
  const torch::Tensor flat = tokens.reshape({-1});
  auto sorted = torch::sort(flat, /*stable=*/true, /*dim=*/0, /*descending=*/false);
  const torch::Tensor order = std::get<1>(sorted).contiguous();
  const torch::Tensor starts =
      torch::searchsorted(std::get<0>(sorted), torch::arange(vocab + 1, flat.options()))
          .contiguous();
  torch::Tensor d_table = torch::empty({vocab, dxg.size(-1)}, dxg.options());
  device::TableGradient p;
  p.vocab = vocab;
  p.width = dxg.size(-1);
  p.order = order.data_ptr<int64_t>();
  p.starts = starts.data_ptr<int64_t>();
  p.dxg = dxg.data_ptr<float>();
  p.d_table = d_table.data_ptr<float>();
  dev.Run(p);
  return d_table;
}

}  // namespace

RecurrentOutput DeviceForward(RecurrenceDevice& dev, const torch::Tensor& table_in,
                              const torch::Tensor& tokens_in, const RecurrentState& init,
                              const RecurrentWeights& w, Precision precision,
                              DeviceActivations* acts) {
  TORCH_CHECK(table_in.scalar_type() == torch::kFloat, "the device recurrence runs in float");
  TORCH_CHECK(tokens_in.device() == table_in.device(), "the symbols are on ",
              tokens_in.device().str(), ", the table on ", table_in.device().str());
  // The kernels read the weights through raw pointers.
  for (const torch::Tensor* t :
       {&w.w_h, &w.w_hc, &w.ln_h_gain, &w.ln_h_shift, &w.ln_2_gain, &w.ln_2_shift}) {
    TORCH_CHECK(!t->defined() || t->numel() == 0 ||
                    (t->scalar_type() == torch::kFloat && t->is_contiguous() &&
                     t->device() == table_in.device()),
                "the device recurrence takes contiguous float weights on the table's device");
  }
  const torch::Tensor table = table_in.contiguous();
  const torch::Tensor tokens = tokens_in.to(torch::kLong).contiguous();
  const int64_t steps = tokens.size(0), batch = tokens.size(1), hidden = w.hidden();
  const int64_t width = table.size(1), gate_width = w.w_h.size(1);
  const bool lstm = w.cell == Cell::kLstm, ln = w.layer_norm;
  const device::RowShape shape = ShapeOf(w, batch, width);
  const bool keep = acts != nullptr;
  const GemmInputs inputs = RecurrentInputs(precision);
  const bool bf16 = inputs == GemmInputs::kBf16;
  const auto opts = table.options();
  const int64_t slots = keep ? steps : 1;

  std::vector<torch::Tensor> local(kSlotCount);
  std::vector<torch::Tensor>& s = keep ? acts->tensors : local;
  s.assign(kSlotCount, torch::Tensor());
  s[kTokens] = tokens;
  s[kTable] = table;
  s[kH] = torch::empty({steps + 1, batch, hidden}, opts);
  s[kH][0].copy_(init.h);
  s[kGates] = torch::empty({slots, batch, gate_width}, opts);
  s[kCand] = torch::empty({slots, batch, hidden}, opts);
  if (ln) {
    s[kXhatH] = torch::empty({slots, batch, gate_width}, opts);
    s[kRstdH] = torch::empty({slots, batch}, opts);
    s[kXhat2] = torch::empty({slots, batch, hidden}, opts);
    s[kRstd2] = torch::empty({slots, batch}, opts);
  }
  if (lstm) {
    s[kC] = torch::empty({keep ? steps + 1 : 2, batch, hidden}, opts);
    s[kC][0].copy_(init.c);
  } else {
    s[kRh] = torch::empty({slots, batch, hidden}, opts);
  }
  // bf16 copies of the products' inputs: h (two, in turn) and r * h.
  torch::Tensor h_bf16, rh_bf16;
  if (bf16) {
    s[kWhBf16] = w.w_h.to(torch::kBFloat16).contiguous();
    if (!lstm) s[kWhcBf16] = w.w_hc.to(torch::kBFloat16).contiguous();
    h_bf16 = torch::empty({2, batch, hidden}, opts.dtype(torch::kBFloat16));
    h_bf16[0].copy_(init.h);
    if (!lstm) rh_bf16 = torch::empty({1, batch, hidden}, opts.dtype(torch::kBFloat16));
  }
  torch::Tensor z = torch::empty({batch, gate_width}, opts);
  torch::Tensor zc = lstm ? torch::Tensor() : torch::empty({batch, hidden}, opts);
  const void* w_h = WeightFor(inputs, w.w_h, s[kWhBf16]);
  const void* w_hc = lstm ? nullptr : WeightFor(inputs, w.w_hc, s[kWhcBf16]);

  for (int64_t t = 0; t < steps; ++t) {
    const void* h_in = bf16 ? static_cast<const void*>(Bf16At(h_bf16, t)) : At(s[kH], t);
    Product(dev, inputs, h_in, batch, hidden, w_h, gate_width, false, Ptr(z), 0.f);
    const int64_t* step_tokens = tokens.data_ptr<int64_t>() + t * batch;
    if (lstm) {
      device::LstmForward k;
      k.shape = shape;
      k.tokens = step_tokens;
      k.table = table.data_ptr<float>();
      k.z = Ptr(z);
      k.gain_h = Ptr(w.ln_h_gain);
      k.shift_h = Ptr(w.ln_h_shift);
      k.gain_c = Ptr(w.ln_2_gain);
      k.shift_c = Ptr(w.ln_2_shift);
      k.c = At(s[kC], t);
      k.gates = At(s[kGates], t);
      k.xhat_h = ln ? At(s[kXhatH], t) : nullptr;
      k.rstd_h = ln ? At(s[kRstdH], t) : nullptr;
      k.c_next = At(s[kC], t + 1);
      k.xhat_c = ln ? At(s[kXhat2], t) : nullptr;
      k.rstd_c = ln ? At(s[kRstd2], t) : nullptr;
      k.tc = At(s[kCand], t);
      k.h_next = At(s[kH], t + 1);
      k.h_next_bf16 = Bf16At(h_bf16, t + 1);
      dev.Run(k);
      continue;
    }
    device::GatedGatesForward g;
    g.shape = shape;
    g.tokens = step_tokens;
    g.table = table.data_ptr<float>();
    g.z = Ptr(z);
    g.gain = Ptr(w.ln_h_gain);
    g.shift = Ptr(w.ln_h_shift);
    g.h = At(s[kH], t);
    g.gates = At(s[kGates], t);
    g.xhat = ln ? At(s[kXhatH], t) : nullptr;
    g.rstd = ln ? At(s[kRstdH], t) : nullptr;
    g.rh = At(s[kRh], t);
    g.rh_bf16 = Bf16At(rh_bf16, 0);
    dev.Run(g);
    const void* rh_in = bf16 ? static_cast<const void*>(g.rh_bf16) : g.rh;
    Product(dev, inputs, rh_in, batch, hidden, w_hc, hidden, false, Ptr(zc), 0.f);
    device::GatedCandidateForward c;
    c.shape = shape;
    c.tokens = step_tokens;
    c.table = g.table;
    c.z = Ptr(zc);
    c.gain = Ptr(w.ln_2_gain);
    c.shift = Ptr(w.ln_2_shift);
    c.h = g.h;
    c.gates = g.gates;
    c.candidate = At(s[kCand], t);
    c.xhat = ln ? At(s[kXhat2], t) : nullptr;
    c.rstd = ln ? At(s[kRstd2], t) : nullptr;
    c.h_next = At(s[kH], t + 1);
    c.h_next_bf16 = Bf16At(h_bf16, t + 1);
    dev.Run(c);
  }
  if (keep) acts->precision = precision;
  RecurrentOutput out;
  out.hs = s[kH].narrow(0, 1, steps);
  out.final.h = s[kH][steps].clone();
  if (lstm) out.final.c = s[kC][steps % s[kC].size(0)].clone();
  return out;
}

DeviceGrads DeviceBackward(RecurrenceDevice& dev, const torch::Tensor& d_hs,
                           const torch::Tensor& d_h_final, const torch::Tensor& d_c_final,
                           const RecurrentWeights& w, const DeviceActivations& acts) {
  const std::vector<torch::Tensor>& s = acts.tensors;
  const int64_t steps = s[kTokens].size(0), batch = s[kTokens].size(1), hidden = w.hidden();
  const int64_t vocab = s[kTable].size(0), width = s[kTable].size(1);
  const int64_t gate_width = w.w_h.size(1), rows = steps * batch;
  const bool lstm = w.cell == Cell::kLstm, ln = w.layer_norm;
  const device::RowShape shape = ShapeOf(w, batch, width);
  const GemmInputs inputs = RecurrentInputs(acts.precision);
  const bool bf16 = inputs == GemmInputs::kBf16;
  const auto opts = s[kH].options();
  const auto bf16_opts = opts.dtype(torch::kBFloat16);

  torch::Tensor dh[2] = {
      d_h_final.defined() ? d_h_final.contiguous().clone() : torch::zeros({batch, hidden}, opts),
      torch::empty({batch, hidden}, opts)};
  torch::Tensor dc[2];
  if (lstm) {
    dc[0] =
        d_c_final.defined() ? d_c_final.contiguous().clone() : torch::zeros({batch, hidden}, opts);
    dc[1] = torch::empty({batch, hidden}, opts);
  }
  const torch::Tensor dhs = d_hs.defined() ? d_hs.contiguous() : torch::Tensor();
  torch::Tensor d_xg = torch::empty({steps, batch, width}, opts);
  torch::Tensor dz_g = torch::empty({steps, batch, gate_width}, opts);
  torch::Tensor dz_c, du, d_rh, dn_c, dzg_bf16, dzc_bf16;
  if (lstm) {
    if (ln) dn_c = torch::empty({steps, batch, hidden}, opts);
  } else {
    dz_c = torch::empty({steps, batch, hidden}, opts);
    du = torch::empty({batch, hidden}, opts);
    d_rh = torch::empty({batch, hidden}, opts);
    if (bf16) dzc_bf16 = torch::empty({1, batch, hidden}, bf16_opts);
  }
  if (bf16) dzg_bf16 = torch::empty({1, batch, gate_width}, bf16_opts);
  const void* w_h = WeightFor(inputs, w.w_h, s[kWhBf16]);
  const void* w_hc = lstm ? nullptr : WeightFor(inputs, w.w_hc, s[kWhcBf16]);

  for (int64_t i = 0; i < steps; ++i) {
    const int64_t t = steps - 1 - i;
    const torch::Tensor& dh_now = dh[i % 2];
    const torch::Tensor& dh_prev = dh[(i + 1) % 2];
    const float* dhs_t = dhs.defined() ? At(dhs, t) : nullptr;
    if (lstm) {
      device::LstmBackward k;
      k.shape = shape;
      k.dh = Ptr(dh_now);
      k.dhs = dhs_t;
      k.dc = Ptr(dc[i % 2]);
      k.gates = At(s[kGates], t);
      k.tc = At(s[kCand], t);
      k.c = At(s[kC], t);
      k.xhat_h = ln ? At(s[kXhatH], t) : nullptr;
      k.rstd_h = ln ? At(s[kRstdH], t) : nullptr;
      k.gain_h = Ptr(w.ln_h_gain);
      k.xhat_c = ln ? At(s[kXhat2], t) : nullptr;
      k.rstd_c = ln ? At(s[kRstd2], t) : nullptr;
      k.gain_c = Ptr(w.ln_2_gain);
      k.dn_c = ln ? At(dn_c, t) : nullptr;
      k.dc_prev = Ptr(dc[(i + 1) % 2]);
      k.dxg = At(d_xg, t);
      k.dz = At(dz_g, t);
      k.dz_bf16 = Bf16At(dzg_bf16, 0);
      dev.Run(k);
      const void* dz_in = bf16 ? static_cast<const void*>(k.dz_bf16) : k.dz;
      Product(dev, inputs, dz_in, batch, gate_width, w_h, hidden, true, Ptr(dh_prev), 0.f);
      continue;
    }
    device::GatedCandidateBackward c;
    c.shape = shape;
    c.dh = Ptr(dh_now);
    c.dhs = dhs_t;
    c.gates = At(s[kGates], t);
    c.candidate = At(s[kCand], t);
    c.h = At(s[kH], t);
    c.xhat = ln ? At(s[kXhat2], t) : nullptr;
    c.rstd = ln ? At(s[kRstd2], t) : nullptr;
    c.gain = Ptr(w.ln_2_gain);
    c.du = Ptr(du);
    c.dh_prev = Ptr(dh_prev);
    c.dxg = At(d_xg, t);
    c.dz = At(dz_c, t);
    c.dz_bf16 = Bf16At(dzc_bf16, 0);
    dev.Run(c);
    const void* dzc_in = bf16 ? static_cast<const void*>(c.dz_bf16) : c.dz;
    Product(dev, inputs, dzc_in, batch, hidden, w_hc, hidden, true, Ptr(d_rh), 0.f);
    device::GatedGatesBackward g;
    g.shape = shape;
    g.d_rh = Ptr(d_rh);
    g.du = Ptr(du);
    g.gates = c.gates;
    g.h = c.h;
    g.xhat = ln ? At(s[kXhatH], t) : nullptr;
    g.rstd = ln ? At(s[kRstdH], t) : nullptr;
    g.gain = Ptr(w.ln_h_gain);
    g.dh_prev = Ptr(dh_prev);
    g.dxg = c.dxg;
    g.dz = At(dz_g, t);
    g.dz_bf16 = Bf16At(dzg_bf16, 0);
    dev.Run(g);
    const void* dzg_in = bf16 ? static_cast<const void*>(g.dz_bf16) : g.dz;
    Product(dev, inputs, dzg_in, batch, gate_width, w_h, hidden, true, Ptr(dh_prev), 1.f);
  }

  DeviceGrads g;
  g.h0 = dh[steps % 2];
  if (lstm) g.c0 = dc[steps % 2];
  // Weight gradients: inputs^T [H, T*B] times the products' gradients.
  const GemmInputs weight_inputs = WeightGradInputs(acts.precision);
  auto weight_grad = [&](const torch::Tensor& in, const torch::Tensor& dz, int64_t n) {
    torch::Tensor out = torch::empty({hidden, n}, opts);
    device::RowMajorGemm p;
    p.trans_a = true;
    p.m = hidden;
    p.n = n;
    p.k = rows;
    p.a = in.data_ptr<float>();
    p.lda = hidden;
    p.b = dz.data_ptr<float>();
    p.ldb = n;
    p.c = out.data_ptr<float>();
    p.ldc = n;
    p.inputs = weight_inputs;
    dev.Gemm(p);
    return out;
  };
  g.w_h = weight_grad(s[kH], dz_g, gate_width);
  if (!lstm) g.w_hc = weight_grad(s[kRh], dz_c, hidden);
  if (ln) {
    ColumnSums(dev, Ptr(d_xg), width, Ptr(s[kXhatH]), gate_width, rows, gate_width, opts,
               &g.ln_h_gain, &g.ln_h_shift);
    if (lstm) {
      ColumnSums(dev, Ptr(dn_c), hidden, Ptr(s[kXhat2]), hidden, rows, hidden, opts, &g.ln_2_gain,
                 &g.ln_2_shift);
    } else {
      ColumnSums(dev, Ptr(d_xg) + gate_width, width, Ptr(s[kXhat2]), hidden, rows, hidden, opts,
                 &g.ln_2_gain, &g.ln_2_shift);
    }
  }
  g.table = TableGrad(dev, s[kTokens], d_xg.view({rows, width}), vocab);
  return g;
}

// ------------------------------------------------------------ on the CPU --

namespace {

class HostRecurrenceDevice : public RecurrenceDevice {
 public:
  void Gemm(const device::RowMajorGemm& gemm) override {
    const GemmViews v = ViewsOf(gemm, torch::kCPU);
    // bf16 values are floats exactly: widened, the product accumulates in
    // float as on the GPU (TF32 is a GPU's; here it is fp32).
    const torch::Tensor product = at::mm(v.a.to(torch::kFloat), v.b.to(torch::kFloat));
    if (gemm.beta == 0.f) {
      v.out.copy_(product);
    } else {
      v.out.mul_(gemm.beta).add_(product);
    }
  }
  void Run(const device::GatedGatesForward& a) override { Blocks(a); }
  void Run(const device::GatedCandidateForward& a) override { Blocks(a); }
  void Run(const device::GatedCandidateBackward& a) override { Blocks(a); }
  void Run(const device::GatedGatesBackward& a) override { Blocks(a); }
  void Run(const device::LstmForward& a) override { Blocks(a); }
  void Run(const device::LstmBackward& a) override { Blocks(a); }
  void Run(const device::ColumnPartialSums& a) override { Blocks(a); }
  void Run(const device::ColumnFinalSums& a) override { Blocks(a); }
  void Run(const device::TableGradient& a) override { Blocks(a); }

 private:
  // Blocks never share what they write, so they may run in any order.
  template <typename Args>
  static void Blocks(const Args& args) {
    const device::GridSize grid = args.Grid();
    at::parallel_for(0, grid.x * grid.y, 1, [&](int64_t begin, int64_t end) {
      device::SerialTeam team;
      for (int64_t i = begin; i < end; ++i) {
        Args::Run(args, device::Block{i % grid.x, i / grid.x}, team);
      }
    });
  }
};

}  // namespace

GemmViews ViewsOf(const device::RowMajorGemm& g, const torch::Device& device) {
  const auto operands = torch::TensorOptions()
                            .dtype(g.inputs == GemmInputs::kBf16 ? torch::kBFloat16 : torch::kFloat)
                            .device(device);
  // A transposed operand is stored as its transpose: [k, m] with rows of lda.
  auto view = [&](const void* p, int64_t rows, int64_t cols, int64_t ld, bool transposed) {
    void* data = const_cast<void*>(p);
    return transposed ? torch::from_blob(data, {rows, cols}, {1, ld}, operands)
                      : torch::from_blob(data, {rows, cols}, {ld, 1}, operands);
  };
  GemmViews v;
  v.a = view(g.a, g.m, g.k, g.lda, g.trans_a);
  v.b = view(g.b, g.k, g.n, g.ldb, g.trans_b);
  v.out = torch::from_blob(g.c, {g.m, g.n}, {g.ldc, 1},
                           torch::TensorOptions().dtype(torch::kFloat).device(device));
  return v;
}

std::unique_ptr<RecurrenceDevice> MakeHostRecurrenceDevice() {
  return std::make_unique<HostRecurrenceDevice>();
}

}  // namespace ablate
