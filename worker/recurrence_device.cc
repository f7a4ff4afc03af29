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

namespace {

// The kernels read the weights through raw pointers.
void CheckInputs(const torch::Tensor& table, const torch::Tensor& tokens,
                 const RecurrentWeights& w) {
  TORCH_CHECK(table.scalar_type() == torch::kFloat, "the device recurrence runs in float");
  TORCH_CHECK(tokens.device() == table.device(), "the symbols are on ", tokens.device().str(),
              ", the table on ", table.device().str());
  for (const torch::Tensor* t :
       {&w.w_h, &w.w_hc, &w.ln_h_gain, &w.ln_h_shift, &w.ln_2_gain, &w.ln_2_shift}) {
    TORCH_CHECK(!t->defined() || t->numel() == 0 ||
                    (t->scalar_type() == torch::kFloat && t->is_contiguous() &&
                     t->device() == table.device()),
                "the device recurrence takes contiguous float weights on the table's device");
  }
}

// What every step of one pass shares: the device, the weights as the
// products take them, the shapes and the activations (`s`, DeviceActivations'
// slots).
struct PassContext {
  RecurrenceDevice& dev;
  const RecurrentWeights& w;
  device::RowShape shape;
  GemmInputs inputs;
  const std::vector<torch::Tensor>* s = nullptr;
  const void* w_h = nullptr;
  const void* w_hc = nullptr;  // GRU, MGU

  bool bf16() const { return inputs == GemmInputs::kBf16; }
  bool ln() const { return shape.layer_norm; }
  bool lstm() const { return w.cell == Cell::kLstm; }
  // Slice t of a layer-norm activation, or null without layer norm.
  const torch::Tensor& S(Slot slot) const { return (*s)[slot]; }
  float* Ln(Slot slot, int64_t t) const { return ln() ? At(S(slot), t) : nullptr; }
  void SetWeights() {
    w_h = WeightFor(inputs, w.w_h, S(kWhBf16));
    if (!lstm()) w_hc = WeightFor(inputs, w.w_hc, S(kWhcBf16));
  }
};

// The forward pass over the steps of `tokens`: allocates the activations
// (all T steps' when there is a backward pass to keep them for, else one
// step's in turn), then runs the steps.
class ForwardPass {
 public:
  ForwardPass(PassContext context, const torch::Tensor& table, const torch::Tensor& tokens,
              bool keep)
      : c_(context), table_(table), tokens_(tokens), keep_(keep) {}

  RecurrentOutput Run(const RecurrentState& init) {
    Allocate(init);
    for (int64_t t = 0; t < tokens_.size(0); ++t) {
      const void* h_in = c_.bf16() ? static_cast<const void*>(Bf16At(h_bf16_, t)) : At(c_.S(kH), t);
      Product(c_.dev, c_.inputs, h_in, batch(), hidden(), c_.w_h, c_.shape.gate_width, false,
              Ptr(z_), 0.f);
      if (c_.lstm()) {
        LstmStep(t);
      } else {
        GatedStep(t);
      }
    }
    const int64_t steps = tokens_.size(0);
    RecurrentOutput out;
    out.hs = c_.S(kH).narrow(0, 1, steps);
    out.final.h = c_.S(kH)[steps].clone();
    if (c_.lstm()) out.final.c = c_.S(kC)[steps % c_.S(kC).size(0)].clone();
    return out;
  }

  // What the backward pass needs, once Run has returned.
  std::vector<torch::Tensor> TakeActivations() { return std::move(acts_); }

 private:
  int64_t batch() const { return c_.shape.batch; }
  int64_t hidden() const { return c_.shape.hidden; }

  void Allocate(const RecurrentState& init) {
    std::vector<torch::Tensor>& s = acts_;
    const int64_t steps = tokens_.size(0), slots = keep_ ? steps : 1;
    const int64_t B = batch(), H = hidden(), G = c_.shape.gate_width;
    const auto opts = table_.options();
    s.assign(kSlotCount, torch::Tensor());
    s[kTokens] = tokens_;
    s[kTable] = table_;
    s[kH] = torch::empty({steps + 1, B, H}, opts);
    s[kH][0].copy_(init.h);
    s[kGates] = torch::empty({slots, B, G}, opts);
    s[kCand] = torch::empty({slots, B, H}, opts);
    if (c_.ln()) {
      s[kXhatH] = torch::empty({slots, B, G}, opts);
      s[kRstdH] = torch::empty({slots, B}, opts);
      s[kXhat2] = torch::empty({slots, B, H}, opts);
      s[kRstd2] = torch::empty({slots, B}, opts);
    }
    if (c_.lstm()) {
      s[kC] = torch::empty({keep_ ? steps + 1 : 2, B, H}, opts);
      s[kC][0].copy_(init.c);
    } else {
      s[kRh] = torch::empty({slots, B, H}, opts);
      zc_ = torch::empty({B, H}, opts);
    }
    // bf16 copies of the products' inputs: h (two, in turn) and r * h.
    if (c_.bf16()) {
      s[kWhBf16] = c_.w.w_h.to(torch::kBFloat16).contiguous();
      if (!c_.lstm()) s[kWhcBf16] = c_.w.w_hc.to(torch::kBFloat16).contiguous();
      h_bf16_ = torch::empty({2, B, H}, opts.dtype(torch::kBFloat16));
      h_bf16_[0].copy_(init.h);
      if (!c_.lstm()) rh_bf16_ = torch::empty({1, B, H}, opts.dtype(torch::kBFloat16));
    }
    z_ = torch::empty({B, G}, opts);
    c_.s = &acts_;
    c_.SetWeights();
  }

  const int64_t* StepTokens(int64_t t) const { return tokens_.data_ptr<int64_t>() + t * batch(); }

  void LstmStep(int64_t t) {
    device::LstmForward k;
    k.shape = c_.shape;
    k.tokens = StepTokens(t);
    k.table = table_.data_ptr<float>();
    k.z = Ptr(z_);
    k.gain_h = Ptr(c_.w.ln_h_gain);
    k.shift_h = Ptr(c_.w.ln_h_shift);
    k.gain_c = Ptr(c_.w.ln_2_gain);
    k.shift_c = Ptr(c_.w.ln_2_shift);
    k.c = At(c_.S(kC), t);
    k.gates = At(c_.S(kGates), t);
    k.xhat_h = c_.Ln(kXhatH, t);
    k.rstd_h = c_.Ln(kRstdH, t);
    k.c_next = At(c_.S(kC), t + 1);
    k.xhat_c = c_.Ln(kXhat2, t);
    k.rstd_c = c_.Ln(kRstd2, t);
    k.tc = At(c_.S(kCand), t);
    k.h_next = At(c_.S(kH), t + 1);
    k.h_next_bf16 = Bf16At(h_bf16_, t + 1);
    c_.dev.Run(k);
  }

  // The gates, the candidate's product, then the candidate and the update.
  void GatedStep(int64_t t) {
    device::GatedGatesForward g;
    g.shape = c_.shape;
    g.tokens = StepTokens(t);
    g.table = table_.data_ptr<float>();
    g.z = Ptr(z_);
    g.gain = Ptr(c_.w.ln_h_gain);
    g.shift = Ptr(c_.w.ln_h_shift);
    g.h = At(c_.S(kH), t);
    g.gates = At(c_.S(kGates), t);
    g.xhat = c_.Ln(kXhatH, t);
    g.rstd = c_.Ln(kRstdH, t);
    g.rh = At(c_.S(kRh), t);
    g.rh_bf16 = Bf16At(rh_bf16_, 0);
    c_.dev.Run(g);
    const void* rh_in = c_.bf16() ? static_cast<const void*>(g.rh_bf16) : g.rh;
    Product(c_.dev, c_.inputs, rh_in, batch(), hidden(), c_.w_hc, hidden(), false, Ptr(zc_), 0.f);
    device::GatedCandidateForward k;
    k.shape = c_.shape;
    k.tokens = g.tokens;
    k.table = g.table;
    k.z = Ptr(zc_);
    k.gain = Ptr(c_.w.ln_2_gain);
    k.shift = Ptr(c_.w.ln_2_shift);
    k.h = g.h;
    k.gates = g.gates;
    k.candidate = At(c_.S(kCand), t);
    k.xhat = c_.Ln(kXhat2, t);
    k.rstd = c_.Ln(kRstd2, t);
    k.h_next = At(c_.S(kH), t + 1);
    k.h_next_bf16 = Bf16At(h_bf16_, t + 1);
    c_.dev.Run(k);
  }

  PassContext c_;
  const torch::Tensor table_, tokens_;
  const bool keep_;
  std::vector<torch::Tensor> acts_;  // DeviceActivations' slots
  torch::Tensor z_, zc_;             // this step's products: h W_h, and (r * h) W_hc
  torch::Tensor h_bf16_, rh_bf16_;   // bf16: the products' inputs
};

// The backward pass: the time loop from the last step to the first, then the
// weight gradients, the layer-norm parameters' and the table's.
class BackwardPass {
 public:
  BackwardPass(PassContext context, Precision precision)
      : c_(context), precision_(precision), steps_(c_.S(kTokens).size(0)) {}

  DeviceGrads Run(const torch::Tensor& d_hs, const torch::Tensor& d_h_final,
                  const torch::Tensor& d_c_final) {
    Allocate(d_hs, d_h_final, d_c_final);
    for (int64_t i = 0; i < steps_; ++i) {
      if (c_.lstm()) {
        LstmStep(i);
      } else {
        GatedStep(i);
      }
    }
    DeviceGrads g;
    g.h0 = dh_[steps_ % 2];
    if (c_.lstm()) g.c0 = dc_[steps_ % 2];
    WeightGrads(&g);
    if (c_.ln()) LayerNormGrads(&g);
    const int64_t rows = steps_ * batch();
    g.table =
        TableGrad(c_.dev, c_.S(kTokens), d_xg_.view({rows, c_.shape.width}), c_.S(kTable).size(0));
    return g;
  }

 private:
  int64_t batch() const { return c_.shape.batch; }
  int64_t hidden() const { return c_.shape.hidden; }

  void Allocate(const torch::Tensor& d_hs, const torch::Tensor& d_h_final,
                const torch::Tensor& d_c_final) {
    const int64_t B = batch(), H = hidden(), G = c_.shape.gate_width;
    opts_ = c_.S(kH).options();
    const auto bf16_opts = opts_.dtype(torch::kBFloat16);
    auto final_grad = [&](const torch::Tensor& d) {
      return d.defined() ? d.contiguous().clone() : torch::zeros({B, H}, opts_);
    };
    dh_[0] = final_grad(d_h_final);
    dh_[1] = torch::empty({B, H}, opts_);
    if (c_.lstm()) {
      dc_[0] = final_grad(d_c_final);
      dc_[1] = torch::empty({B, H}, opts_);
      if (c_.ln()) dn_c_ = torch::empty({steps_, B, H}, opts_);
    } else {
      dz_c_ = torch::empty({steps_, B, H}, opts_);
      du_ = torch::empty({B, H}, opts_);
      d_rh_ = torch::empty({B, H}, opts_);
      if (c_.bf16()) dzc_bf16_ = torch::empty({1, B, H}, bf16_opts);
    }
    if (c_.bf16()) dzg_bf16_ = torch::empty({1, B, G}, bf16_opts);
    dhs_ = d_hs.defined() ? d_hs.contiguous() : torch::Tensor();
    d_xg_ = torch::empty({steps_, B, c_.shape.width}, opts_);
    dz_g_ = torch::empty({steps_, B, G}, opts_);
    c_.SetWeights();
  }

  // Iteration i runs timestep steps - 1 - i: it reads dh_[i % 2] (the
  // gradient of h after the step) and writes dh_[(i + 1) % 2] (before it).
  void LstmStep(int64_t i) {
    const int64_t t = steps_ - 1 - i;
    device::LstmBackward k;
    k.shape = c_.shape;
    k.dh = Ptr(dh_[i % 2]);
    k.dhs = dhs_.defined() ? At(dhs_, t) : nullptr;
    k.dc = Ptr(dc_[i % 2]);
    k.gates = At(c_.S(kGates), t);
    k.tc = At(c_.S(kCand), t);
    k.c = At(c_.S(kC), t);
    k.xhat_h = c_.Ln(kXhatH, t);
    k.rstd_h = c_.Ln(kRstdH, t);
    k.gain_h = Ptr(c_.w.ln_h_gain);
    k.xhat_c = c_.Ln(kXhat2, t);
    k.rstd_c = c_.Ln(kRstd2, t);
    k.gain_c = Ptr(c_.w.ln_2_gain);
    k.dn_c = c_.ln() ? At(dn_c_, t) : nullptr;
    k.dc_prev = Ptr(dc_[(i + 1) % 2]);
    k.dxg = At(d_xg_, t);
    k.dz = At(dz_g_, t);
    k.dz_bf16 = Bf16At(dzg_bf16_, 0);
    c_.dev.Run(k);
    const void* dz_in = c_.bf16() ? static_cast<const void*>(k.dz_bf16) : k.dz;
    Product(c_.dev, c_.inputs, dz_in, batch(), c_.shape.gate_width, c_.w_h, hidden(), true,
            Ptr(dh_[(i + 1) % 2]), 0.f);
  }

  // The update and the candidate, the candidate's product, then the gates
  // and the product that adds the gates' share to dh_prev.
  void GatedStep(int64_t i) {
    const int64_t t = steps_ - 1 - i;
    const torch::Tensor& dh_prev = dh_[(i + 1) % 2];
    device::GatedCandidateBackward k;
    k.shape = c_.shape;
    k.dh = Ptr(dh_[i % 2]);
    k.dhs = dhs_.defined() ? At(dhs_, t) : nullptr;
    k.gates = At(c_.S(kGates), t);
    k.candidate = At(c_.S(kCand), t);
    k.h = At(c_.S(kH), t);
    k.xhat = c_.Ln(kXhat2, t);
    k.rstd = c_.Ln(kRstd2, t);
    k.gain = Ptr(c_.w.ln_2_gain);
    k.du = Ptr(du_);
    k.dh_prev = Ptr(dh_prev);
    k.dxg = At(d_xg_, t);
    k.dz = At(dz_c_, t);
    k.dz_bf16 = Bf16At(dzc_bf16_, 0);
    c_.dev.Run(k);
    const void* dzc_in = c_.bf16() ? static_cast<const void*>(k.dz_bf16) : k.dz;
    Product(c_.dev, c_.inputs, dzc_in, batch(), hidden(), c_.w_hc, hidden(), true, Ptr(d_rh_), 0.f);
    device::GatedGatesBackward g;
    g.shape = c_.shape;
    g.d_rh = Ptr(d_rh_);
    g.du = Ptr(du_);
    g.gates = k.gates;
    g.h = k.h;
    g.xhat = c_.Ln(kXhatH, t);
    g.rstd = c_.Ln(kRstdH, t);
    g.gain = Ptr(c_.w.ln_h_gain);
    g.dh_prev = Ptr(dh_prev);
    g.dxg = k.dxg;
    g.dz = At(dz_g_, t);
    g.dz_bf16 = Bf16At(dzg_bf16_, 0);
    c_.dev.Run(g);
    const void* dzg_in = c_.bf16() ? static_cast<const void*>(g.dz_bf16) : g.dz;
    Product(c_.dev, c_.inputs, dzg_in, batch(), c_.shape.gate_width, c_.w_h, hidden(), true,
            Ptr(dh_prev), 1.f);
  }

  // Each product's inputs over all T steps, transposed, times the gradients
  // of its outputs: [H, T*B] x [T*B, n].
  void WeightGrads(DeviceGrads* g) {
    auto weight_grad = [&](const torch::Tensor& in, const torch::Tensor& dz, int64_t n) {
      torch::Tensor out = torch::empty({hidden(), n}, opts_);
      device::RowMajorGemm p;
      p.trans_a = true;
      p.m = hidden();
      p.n = n;
      p.k = steps_ * batch();
      p.a = in.data_ptr<float>();
      p.lda = hidden();
      p.b = dz.data_ptr<float>();
      p.ldb = n;
      p.c = out.data_ptr<float>();
      p.ldc = n;
      p.inputs = WeightGradInputs(precision_);
      c_.dev.Gemm(p);
      return out;
    };
    g->w_h = weight_grad(c_.S(kH), dz_g_, c_.shape.gate_width);
    if (!c_.lstm()) g->w_hc = weight_grad(c_.S(kRh), dz_c_, hidden());
  }

  // The gain and shift gradients: sums over all rows of the normalised
  // inputs times the gradients of their outputs, and of those gradients.
  void LayerNormGrads(DeviceGrads* g) {
    const int64_t rows = steps_ * batch(), H = hidden(), G = c_.shape.gate_width;
    const int64_t width = c_.shape.width;
    ColumnSums(c_.dev, Ptr(d_xg_), width, Ptr(c_.S(kXhatH)), G, rows, G, opts_, &g->ln_h_gain,
               &g->ln_h_shift);
    if (c_.lstm()) {
      ColumnSums(c_.dev, Ptr(dn_c_), H, Ptr(c_.S(kXhat2)), H, rows, H, opts_, &g->ln_2_gain,
                 &g->ln_2_shift);
    } else {
      ColumnSums(c_.dev, Ptr(d_xg_) + G, width, Ptr(c_.S(kXhat2)), H, rows, H, opts_, &g->ln_2_gain,
                 &g->ln_2_shift);
    }
  }

  PassContext c_;
  const Precision precision_;
  const int64_t steps_;
  torch::TensorOptions opts_;
  torch::Tensor dh_[2], dc_[2];  // the state's gradients, in turn
  torch::Tensor dhs_;            // from the outputs, or undefined
  torch::Tensor d_xg_;           // [T, B, width]: pre-activation gradients
  torch::Tensor dz_g_, dz_c_;    // [T, B, ...]: the products' output gradients
  torch::Tensor dn_c_;           // LSTM with layer norm: LN(c')'s output gradient
  torch::Tensor du_, d_rh_;      // GRU, MGU: this step's u and r * h gradients
  torch::Tensor dzg_bf16_, dzc_bf16_;
};

}  // namespace

RecurrentOutput DeviceForward(RecurrenceDevice& dev, const torch::Tensor& table,
                              const torch::Tensor& tokens, const RecurrentState& init,
                              const RecurrentWeights& w, Precision precision,
                              DeviceActivations* acts) {
  CheckInputs(table, tokens, w);
  const torch::Tensor contiguous = table.contiguous();
  const torch::Tensor symbols = tokens.to(torch::kLong).contiguous();
  PassContext context{dev, w, ShapeOf(w, symbols.size(1), contiguous.size(1)),
                      RecurrentInputs(precision)};
  ForwardPass pass(context, contiguous, symbols, /*keep=*/acts != nullptr);
  RecurrentOutput out = pass.Run(init);
  if (acts != nullptr) {
    acts->tensors = pass.TakeActivations();
    acts->precision = precision;
  }
  return out;
}

DeviceGrads DeviceBackward(RecurrenceDevice& dev, const torch::Tensor& d_hs,
                           const torch::Tensor& d_h_final, const torch::Tensor& d_c_final,
                           const RecurrentWeights& w, const DeviceActivations& acts) {
  const std::vector<torch::Tensor>& s = acts.tensors;
  PassContext context{dev, w, ShapeOf(w, s[kTokens].size(1), s[kTable].size(1)),
                      RecurrentInputs(acts.precision), &s};
  return BackwardPass(context, acts.precision).Run(d_hs, d_h_final, d_c_final);
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
