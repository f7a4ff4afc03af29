#include "worker/recurrence_fused.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>

#include "worker/packed_gemm.h"
#include "worker/vector_isa.h"

namespace ablate {

namespace {

// Slots of FusedActivations::tensors. Unused slots hold empty tensors.
enum Slot {
  kH,      // [T+1, B, H]: h0 then h after every step
  kC,      // LSTM [T+1, B, H]: c0 then c' after every step
  kGates,  // GRU/MGU [T, B, Gg]: sigmoid gates; LSTM [T, B, 4H]: sf, si, so, tanh(g)
  kRh,     // GRU/MGU [T, B, H]: r * h, the candidate's matmul input
  kCand,   // GRU/MGU [T, B, H]: candidate tanh(...); LSTM: tanh(LN(c'))
  kXhatH,  // LN on: [T, B, width of w_h]: normalised h-projection
  kRstdH,  // LN on: [T, B]: its 1 / std
  kXhat2,  // LN on: [T, B, H]: normalised candidate projection (GRU/MGU) or c' (LSTM)
  kRstd2,  // LN on: [T, B]
  kSlotCount,
};

// Rows per parallel task: enough work per task to amortise the fork.
int64_t RowGrain(int64_t width) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, width));
}

// The build targets baseline x86-64, where the `omp simd` loops below run
// 4 floats wide (SSE2). On a CPU with AVX-512 (or AVX2), ParallelRows runs
// each body inlined (flatten) into a copy compiled for it, 16 (or 8) floats
// wide (a third less time in the pointwise passes with AVX-512:
// BENCHMARKS.md). Only those copies have the wider code:
// everything they call inline is inlined, nothing is emitted out of line for
// other code to pick up. The file is built with -ffp-contract=off, so every
// copy rounds every element the same way; only the order of the sums inside
// a layer norm follows the vector width, so a curve on such a CPU differs in
// its last bits from one on a CPU without it (as OpenBLAS's kernels already
// make it). vector_isa.h's cap chooses among the copies as it does for
// PackedGemm's kernels.
std::atomic<bool> g_wide_enabled{true};

#if defined(__x86_64__) && defined(__GNUC__)
template <typename Body>
__attribute__((target("avx512f"), flatten)) void RunAvx512(const Body& body, int64_t begin,
                                                           int64_t end) {
  body(begin, end);
}

template <typename Body>
__attribute__((target("avx2"), flatten)) void RunAvx2(const Body& body, int64_t begin,
                                                      int64_t end) {
  body(begin, end);
}
#endif

// at::parallel_for over rows [begin, end), on the widest vectors allowed.
// Inside a row group (RunTimeLoop) it runs on the calling thread.
template <typename Body>
void ParallelRows(int64_t begin, int64_t end, int64_t grain, const Body& body) {
#if defined(__x86_64__) && defined(__GNUC__)
  const VectorIsa isa =
      g_wide_enabled.load(std::memory_order_relaxed) ? VectorIsaInUse() : VectorIsa::kBaseline;
  if (isa == VectorIsa::kAvx512) {
    at::parallel_for(begin, end, grain, [&](int64_t b, int64_t e) { RunAvx512(body, b, e); });
    return;
  }
  if (isa == VectorIsa::kAvx2) {
    at::parallel_for(begin, end, grain, [&](int64_t b, int64_t e) { RunAvx2(body, b, e); });
    return;
  }
#endif
  at::parallel_for(begin, end, grain, body);
}

// Rows per thread below which the time loops share every product among all
// threads instead (see RunTimeLoop): each group streams all the weights at
// every step, so fewer rows means less work per byte read.
constexpr int64_t kMinRowsPerThread = 16;

// Largest weights (bytes, all the loop's products together) for which kAuto
// takes row groups. Each group reads all of them at every step, twice the
// traffic of sharing the columns out: groups win while the weights fit in
// L2 and lose or tie beyond (trainer_bench --row-groups always,never
// --alternate; the measurements are in BENCHMARKS.md).
constexpr int64_t kMaxGroupWeightBytes = int64_t{1} << 20;

// Timesteps per segment of the time loop: the rows are shared out afresh
// between segments. Each segment costs one fork and join.
constexpr int64_t kSegmentSteps = 8;

std::atomic<RowGroups> g_row_groups{RowGroups::kAuto};

// Runs a time loop of `steps` iterations over the batch rows, calling
// body(row_begin, row_end, i_begin, i_end, scratch) to run iterations
// [i_begin, i_end) in order over those rows; `scratch` belongs to the thread
// running it (PackedGemm's buffer for a).
//
// Every batch row's recurrence is independent of the others' (the products,
// the layer norms and the nonlinearities all work row by row), so with enough
// rows each thread takes a contiguous group and runs a segment of
// kSegmentSteps timesteps over it alone: no barrier between the six products
// and pointwise passes of a timestep, and each thread reads back from its own
// cache the rows it wrote. On a shared machine one core can run at two
// thirds of the other's speed for seconds, so after each segment the rows
// are shared out again in proportion to the speed each thread just showed
// (BalanceRows). This needs the products to give each row the same bits
// whoever computes it and with whichever other rows: PackedGemm's kernel
// does (`exact_rows`). With LibTorch's BLAS, too few rows per thread or
// weights over kMaxGroupWeightBytes, one group of all rows runs, its
// products and passes shared among the threads.
template <typename Body>
void RunTimeLoop(int64_t batch, int64_t steps, bool exact_rows, int64_t weight_bytes,
                 const Body& body) {
  const int64_t threads = at::get_num_threads();
  const RowGroups policy = g_row_groups.load(std::memory_order_relaxed);
  const bool worth_it = policy == RowGroups::kAlways || (batch / threads >= kMinRowsPerThread &&
                                                         weight_bytes <= kMaxGroupWeightBytes);
  if (policy == RowGroups::kNever || !exact_rows || threads <= 1 || at::in_parallel_region() ||
      batch < threads || !worth_it) {
    torch::Tensor scratch;
    body(int64_t{0}, batch, int64_t{0}, steps, scratch);
    return;
  }
  std::vector<torch::Tensor> scratch(threads);
  std::vector<int64_t> rows(threads);
  for (int64_t g = 0; g < threads; ++g) rows[g] = (g + 1) * batch / threads - g * batch / threads;
  std::vector<double> seconds(threads);
  for (int64_t i0 = 0; i0 < steps; i0 += kSegmentSteps) {
    const int64_t i1 = std::min(steps, i0 + kSegmentSteps);
    at::parallel_for(0, threads, 1, [&](int64_t begin, int64_t end) {
      // Grad mode is per thread, and the caller's (off, inside the autograd
      // function) does not reach the pool's threads.
      torch::NoGradGuard no_grad;
      for (int64_t g = begin; g < end; ++g) {
        int64_t r0 = 0;
        for (int64_t j = 0; j < g; ++j) r0 += rows[j];
        const auto start = std::chrono::steady_clock::now();
        body(r0, r0 + rows[g], i0, i1, scratch[g]);
        seconds[g] =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      }
    });
    rows = BalanceRows(rows, seconds);
  }
}

// exp for float in plain arithmetic (Cephes' expf: range reduction by ln 2
// and a degree-6 polynomial, ~2 ulp), so that `omp simd` loops calling it
// vectorise; glibc's expf and tanhf are scalar calls. Double keeps std::exp:
// the gradient checks run in double.
inline float VectorExp(float x) {
  x = x < -87.3f ? -87.3f : (x > 88.3f ? 88.3f : x);
  // Round to nearest by adding and removing 1.5 * 2^23 (no branchy floor).
  constexpr float kRound = 12582912.0f;
  const float n = (x * 1.44269504088896341f + kRound) - kRound;
  x = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * x + 1.3981999507e-3f;
  p = p * x + 8.3334519073e-3f;
  p = p * x + 4.1665795894e-2f;
  p = p * x + 1.6666665459e-1f;
  p = p * x + 5.0000001201e-1f;
  const float y = p * x * x + x + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return y * scale;
}
inline double VectorExp(double x) { return std::exp(x); }

template <typename T>
inline T Sigmoid(T x) {
  return T(1) / (T(1) + VectorExp(-x));
}

// tanh(x) = 1 - 2 / (1 + e^2x): absolute error ~1e-7 in float.
inline float Tanh(float x) { return 1.0f - 2.0f / (1.0f + VectorExp(2.0f * x)); }
inline double Tanh(double x) { return std::tanh(x); }

// Normalises one row z[0..n) into xhat and returns 1 / std.
template <typename T>
inline T NormalizeRow(const T* z, int64_t n, T* xhat) {
  T sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < n; ++j) sum += z[j];
  const T mean = sum / T(n);
  T sq = 0;
#pragma omp simd reduction(+ : sq)
  for (int64_t j = 0; j < n; ++j) sq += (z[j] - mean) * (z[j] - mean);
  const T rstd = T(1) / std::sqrt(sq / T(n) + T(kLayerNormEps));
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) xhat[j] = (z[j] - mean) * rstd;
  return rstd;
}

// Layer norm backward for one row: given dn (gradient of gain * xhat + shift),
// writes dz. dz may alias dn.
template <typename T>
inline void LayerNormRowBackward(const T* dn, const T* xhat, T rstd, const T* gain, int64_t n,
                                 T* dz) {
  T mean_dx = 0, mean_dx_xhat = 0;
#pragma omp simd reduction(+ : mean_dx, mean_dx_xhat)
  for (int64_t j = 0; j < n; ++j) {
    const T dx = dn[j] * gain[j];
    mean_dx += dx;
    mean_dx_xhat += dx * xhat[j];
  }
  mean_dx /= T(n);
  mean_dx_xhat /= T(n);
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    dz[j] = rstd * (dn[j] * gain[j] - mean_dx - xhat[j] * mean_dx_xhat);
  }
}

// dots[j] = sum over rows i of a[i, j] * b[i, j] and sums[j] = sum over rows
// of a[i, j], in one pass over a (the pass is memory-bound: reading a twice
// cost a third more), for row-major matrices with leading dimensions lda and
// ldb. Each column sums its rows in order, in double.
template <typename T>
void ColumnDotAndSums(const T* a, int64_t lda, const T* b, int64_t ldb, int64_t rows, int64_t cols,
                      T* dots, T* sums) {
  constexpr int64_t kBlock = 256;
  ParallelRows(0, (cols + kBlock - 1) / kBlock, 1, [&](int64_t begin, int64_t end) {
    for (int64_t blk = begin; blk < end; ++blk) {
      const int64_t c0 = blk * kBlock, width = std::min(cols, c0 + kBlock) - c0;
      double dot[kBlock] = {}, sum[kBlock] = {};
      for (int64_t i = 0; i < rows; ++i) {
        const T* ar = a + i * lda + c0;
        const T* br = b + i * ldb + c0;
#pragma omp simd
        for (int64_t j = 0; j < width; ++j) {
          dot[j] += double(ar[j]) * double(br[j]);
          sum[j] += double(ar[j]);
        }
      }
      for (int64_t j = 0; j < width; ++j) {
        dots[c0 + j] = T(dot[j]);
        sums[c0 + j] = T(sum[j]);
      }
    }
  });
}

// Gain and shift gradients of a layer norm whose output gradients are the
// rows of dn ([rows, n], leading dimension ld) and normalised inputs xhat.
template <typename T>
void LayerNormParamGrads(const torch::Tensor& dn, int64_t ld, const torch::Tensor& xhat,
                         int64_t rows, int64_t n, torch::Tensor* d_gain, torch::Tensor* d_shift) {
  *d_gain = torch::empty({n}, xhat.options());
  *d_shift = torch::empty({n}, xhat.options());
  ColumnDotAndSums<T>(dn.data_ptr<T>(), ld, xhat.data_ptr<T>(), n, rows, n, d_gain->data_ptr<T>(),
                      d_shift->data_ptr<T>());
}

torch::Tensor Empty(const torch::Tensor& like) { return torch::empty({0}, like.options()); }

// The layer norms' kept activations and parameters, as the rows of a pass
// read them: the normalised product with W_h (xhat_h) and its reciprocal
// deviations (rstd_h), the second norm's (of the candidate's product, or of
// the LSTM's c) likewise, and the gains and shifts. All null without layer
// norm.
template <typename T>
struct LayerNormRows {
  T *xhat_h = nullptr, *rstd_h = nullptr, *xhat_2 = nullptr, *rstd_2 = nullptr;
  const T *gain_h = nullptr, *shift_h = nullptr, *gain_2 = nullptr, *shift_2 = nullptr;
};

// Over a forward pass's activations `s`.
template <typename T>
LayerNormRows<T> LayerNormRowsOf(const std::vector<torch::Tensor>& s, const RecurrentWeights& w) {
  LayerNormRows<T> n;
  if (!w.layer_norm) return n;
  n.xhat_h = s[kXhatH].data_ptr<T>();
  n.rstd_h = s[kRstdH].data_ptr<T>();
  n.xhat_2 = s[kXhat2].data_ptr<T>();
  n.rstd_2 = s[kRstd2].data_ptr<T>();
  n.gain_h = w.ln_h_gain.data_ptr<T>();
  n.shift_h = w.ln_h_shift.data_ptr<T>();
  n.gain_2 = w.ln_2_gain.data_ptr<T>();
  n.shift_2 = w.ln_2_shift.data_ptr<T>();
  return n;
}

// ---------------------------------------------------------------- GRU, MGU --

// What one forward step of the GRU or MGU reads and writes: the input
// projection, the activations of all steps, and this step's products.
template <typename T>
struct GatedForwardRows {
  int64_t batch = 0, hidden = 0, gate_width = 0, width = 0;
  bool ln = false, tied = false;
  const T* xg = nullptr;                 // [S, B, width]
  const T *zg = nullptr, *zc = nullptr;  // [B, gate_width], [B, H]
  T *h = nullptr, *gates = nullptr, *rh = nullptr, *cand = nullptr;
  LayerNormRows<T> norm;  // null without layer norm
};

// Row b of step t through the gates, given zg = h W_h: the gates and r * h.
template <typename T>
inline void GatedGatesRow(const GatedForwardRows<T>& p, int64_t t, int64_t b) {
  const int64_t H = p.hidden, G = p.gate_width, row = t * p.batch + b;
  const T* x = p.xg + row * p.width;
  const T* zr = p.zg + b * G;
  const T* h = p.h + row * H;
  T* gate = p.gates + row * G;
  if (p.ln) {
    T* xhat = p.norm.xhat_h + row * G;
    p.norm.rstd_h[row] = NormalizeRow(zr, G, xhat);
#pragma omp simd
    for (int64_t j = 0; j < G; ++j)
      gate[j] = Sigmoid(x[j] + xhat[j] * p.norm.gain_h[j] + p.norm.shift_h[j]);
  } else {
#pragma omp simd
    for (int64_t j = 0; j < G; ++j) gate[j] = Sigmoid(x[j] + zr[j]);
  }
  const T* r = p.tied ? gate : gate + H;
  T* rh = p.rh + row * H;
#pragma omp simd
  for (int64_t j = 0; j < H; ++j) rh[j] = r[j] * h[j];
}

// Row b of step t through the candidate, given zc = (r * h) W_hc: the
// candidate and the next h.
template <typename T>
inline void GatedCandidateRow(const GatedForwardRows<T>& p, int64_t t, int64_t b) {
  const int64_t H = p.hidden, row = t * p.batch + b;
  const T* x = p.xg + row * p.width + p.gate_width;
  const T* zr = p.zc + b * H;
  const T* h = p.h + row * H;
  const T* u = p.gates + row * p.gate_width;
  T* cand = p.cand + row * H;
  T* h_next = p.h + (row + p.batch) * H;
  if (p.ln) {
    T* xhat = p.norm.xhat_2 + row * H;
    p.norm.rstd_2[row] = NormalizeRow(zr, H, xhat);
#pragma omp simd
    for (int64_t j = 0; j < H; ++j)
      cand[j] = Tanh(x[j] + xhat[j] * p.norm.gain_2[j] + p.norm.shift_2[j]);
  } else {
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) cand[j] = Tanh(x[j] + zr[j]);
  }
#pragma omp simd
  for (int64_t j = 0; j < H; ++j) h_next[j] = h[j] + u[j] * (cand[j] - h[j]);
}

// The activations a forward pass keeps for the backward, allocated: h (and
// c) with the initial state in place, the gates, the candidates, and with
// layer norm the normalised products and their reciprocal deviations.
// `gate_width` is the width of the product with W_h.
void AllocateActivations(const torch::Tensor& xg, const RecurrentState& init, int64_t hidden,
                         int64_t gate_width, bool ln, bool lstm, FusedActivations* acts) {
  const int64_t steps = xg.size(0), batch = xg.size(1);
  const auto opts = xg.options();
  std::vector<torch::Tensor>& s = acts->tensors;
  s.assign(kSlotCount, Empty(xg));
  s[kH] = torch::empty({steps + 1, batch, hidden}, opts);
  s[kH][0].copy_(init.h);
  if (lstm) {
    s[kC] = torch::empty({steps + 1, batch, hidden}, opts);
    s[kC][0].copy_(init.c);
  } else {
    s[kRh] = torch::empty({steps, batch, hidden}, opts);
  }
  s[kGates] = torch::empty({steps, batch, gate_width}, opts);
  s[kCand] = torch::empty({steps, batch, hidden}, opts);
  if (ln) {
    s[kXhatH] = torch::empty({steps, batch, gate_width}, opts);
    s[kRstdH] = torch::empty({steps, batch}, opts);
    s[kXhat2] = torch::empty({steps, batch, hidden}, opts);
    s[kRstd2] = torch::empty({steps, batch}, opts);
  }
}

template <typename T>
RecurrentOutput GatedForward(const torch::Tensor& xg, const RecurrentState& init,
                             const RecurrentWeights& w, FusedActivations* acts) {
  const int64_t steps = xg.size(0), batch = xg.size(1);
  const int64_t hidden = w.hidden(), gate_width = w.w_h.size(1);
  const bool ln = w.layer_norm;
  AllocateActivations(xg, init, hidden, gate_width, ln, /*lstm=*/false, acts);
  const std::vector<torch::Tensor>& s = acts->tensors;
  torch::Tensor zg = torch::empty({batch, gate_width}, xg.options());
  torch::Tensor zc = torch::empty({batch, hidden}, xg.options());
  // The weights are the same at every step: pack them once.
  PackedGemm gemm_h(w.w_h, steps), gemm_hc(w.w_hc, steps);

  GatedForwardRows<T> p;
  p.batch = batch;
  p.hidden = hidden;
  p.gate_width = gate_width;
  p.width = xg.size(2);
  p.ln = ln;
  p.tied = w.cell == Cell::kMgu;
  p.xg = xg.data_ptr<T>();
  p.zg = zg.data_ptr<T>();
  p.zc = zc.data_ptr<T>();
  p.h = s[kH].data_ptr<T>();
  p.gates = s[kGates].data_ptr<T>();
  p.rh = s[kRh].data_ptr<T>();
  p.cand = s[kCand].data_ptr<T>();
  p.norm = LayerNormRowsOf<T>(s, w);

  const bool exact_rows = gemm_h.packed() && gemm_hc.packed();
  const int64_t weight_bytes = (w.w_h.numel() + w.w_hc.numel()) * int64_t{sizeof(T)};
  auto time_loop = [&](int64_t r0, int64_t r1, int64_t i0, int64_t i1, torch::Tensor& scratch) {
    torch::Tensor zg_rows = zg.narrow(0, r0, r1 - r0), zc_rows = zc.narrow(0, r0, r1 - r0);
    for (int64_t t = i0; t < i1; ++t) {
      gemm_h.Run(s[kH][t].narrow(0, r0, r1 - r0), 0, &zg_rows, &scratch);
      ParallelRows(r0, r1, RowGrain(gate_width), [&](int64_t begin, int64_t end) {
        for (int64_t b = begin; b < end; ++b) GatedGatesRow(p, t, b);
      });
      gemm_hc.Run(s[kRh][t].narrow(0, r0, r1 - r0), 0, &zc_rows, &scratch);
      ParallelRows(r0, r1, RowGrain(hidden), [&](int64_t begin, int64_t end) {
        for (int64_t b = begin; b < end; ++b) GatedCandidateRow(p, t, b);
      });
    }
  };
  RunTimeLoop(batch, steps, exact_rows, weight_bytes, time_loop);
  RecurrentOutput out;
  out.hs = s[kH].narrow(0, 1, steps);
  out.final.h = s[kH][steps].clone();
  return out;
}

// What one backward step of the GRU or MGU reads and writes: the
// activations of all steps, their gradients, and this step's du and d_rh.
template <typename T>
struct GatedBackwardRows {
  int64_t batch = 0, hidden = 0, gate_width = 0, width = 0;
  bool ln = false, tied = false;
  const T *h = nullptr, *gates = nullptr, *cand = nullptr, *dhs = nullptr;  // dhs may be null
  LayerNormRows<T> norm;  // null without layer norm
  T *dxg = nullptr, *dz_g = nullptr, *dz_c = nullptr;
  T* du = nullptr;            // [B, H]
  const T* d_rh = nullptr;    // [B, H]
};

// Row b of step t through the update and the candidate: du, the direct share
// of dh_prev, the candidate's pre-activation gradient (into dxg) and its
// product's (dz_c). dh is the gradient of h after the step.
template <typename T>
inline void GatedCandidateRowBackward(const GatedBackwardRows<T>& p, int64_t t, int64_t b,
                                      const T* dh, T* dh_prev) {
  const int64_t H = p.hidden, row = t * p.batch + b;
  const T* u = p.gates + row * p.gate_width;
  const T* cand = p.cand + row * H;
  const T* h = p.h + row * H;
  const T* dhs = p.dhs ? p.dhs + row * H : nullptr;
  const T* dh_row = dh + b * H;
  T* dxc = p.dxg + row * p.width + p.gate_width;
  T* du_row = p.du + b * H;
  T* dhp = dh_prev + b * H;
#pragma omp simd
  for (int64_t j = 0; j < H; ++j) {
    const T d = dh_row[j] + (dhs ? dhs[j] : T(0));
    du_row[j] = d * (cand[j] - h[j]);
    dhp[j] = d * (T(1) - u[j]);
    dxc[j] = d * u[j] * (T(1) - cand[j] * cand[j]);
  }
  T* dzc = p.dz_c + row * H;
  if (p.ln) {
    LayerNormRowBackward(dxc, p.norm.xhat_2 + row * H, p.norm.rstd_2[row], p.norm.gain_2, H, dzc);
  } else {
    std::copy(dxc, dxc + H, dzc);
  }
}

// Row b of step t through the gates, given d_rh (= dz_c W_hc^T): adds r *
// d_rh to dh_prev and writes the gates' pre-activation gradients (into dxg)
// and their product's (dz_g).
template <typename T>
inline void GatedGatesRowBackward(const GatedBackwardRows<T>& p, int64_t t, int64_t b,
                                  T* dh_prev) {
  const int64_t H = p.hidden, G = p.gate_width, row = t * p.batch + b;
  const T* gate = p.gates + row * G;
  const T* h = p.h + row * H;
  const T* drh = p.d_rh + b * H;
  const T* du_row = p.du + b * H;
  T* dhp = dh_prev + b * H;
  T* dxg = p.dxg + row * p.width;
  if (p.tied) {
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      const T f = gate[j];
      dhp[j] += drh[j] * f;
      dxg[j] = (du_row[j] + drh[j] * h[j]) * f * (T(1) - f);
    }
  } else {
    const T* r = gate + H;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      dhp[j] += drh[j] * r[j];
      dxg[j] = du_row[j] * gate[j] * (T(1) - gate[j]);
      dxg[H + j] = drh[j] * h[j] * r[j] * (T(1) - r[j]);
    }
  }
  T* dzg = p.dz_g + row * G;
  if (p.ln) {
    LayerNormRowBackward(dxg, p.norm.xhat_h + row * G, p.norm.rstd_h[row], p.norm.gain_h, G, dzg);
  } else {
    std::copy(dxg, dxg + G, dzg);
  }
}

// The rows of a GRU or MGU backward pass over the forward's activations `s`
// and the gradient tensors it fills.
template <typename T>
GatedBackwardRows<T> MakeGatedBackwardRows(const RecurrentWeights& w,
                                           const std::vector<torch::Tensor>& s,
                                           const torch::Tensor& d_hs, const torch::Tensor& d_xg,
                                           const torch::Tensor& dz_g, const torch::Tensor& dz_c,
                                           const torch::Tensor& du, const torch::Tensor& d_rh) {
  GatedBackwardRows<T> p;
  p.batch = s[kGates].size(1);
  p.hidden = w.hidden();
  p.gate_width = w.w_h.size(1);
  p.width = p.gate_width + p.hidden;
  p.ln = w.layer_norm;
  p.tied = w.cell == Cell::kMgu;
  p.h = s[kH].data_ptr<T>();
  p.gates = s[kGates].data_ptr<T>();
  p.cand = s[kCand].data_ptr<T>();
  p.dhs = d_hs.defined() ? d_hs.data_ptr<T>() : nullptr;
  p.norm = LayerNormRowsOf<T>(s, w);
  p.dxg = d_xg.data_ptr<T>();
  p.dz_g = dz_g.data_ptr<T>();
  p.dz_c = dz_c.data_ptr<T>();
  p.du = du.data_ptr<T>();
  p.d_rh = d_rh.data_ptr<T>();
  return p;
}

template <typename T>
FusedGrads GatedBackward(const torch::Tensor& d_hs, const torch::Tensor& d_h_final,
                         const RecurrentWeights& w, const FusedActivations& acts) {
  const std::vector<torch::Tensor>& s = acts.tensors;
  const int64_t steps = s[kGates].size(0), batch = s[kGates].size(1);
  const int64_t hidden = w.hidden(), gate_width = w.w_h.size(1), width = gate_width + hidden;
  const bool ln = w.layer_norm;
  const auto opts = s[kH].options();

  torch::Tensor d_xg = torch::empty({steps, batch, width}, opts);
  torch::Tensor dz_g = torch::empty({steps, batch, gate_width}, opts);
  torch::Tensor dz_c = torch::empty({steps, batch, hidden}, opts);
  torch::Tensor dh =
      d_h_final.defined() ? d_h_final.contiguous().clone() : torch::zeros({batch, hidden}, opts);
  torch::Tensor dh_prev = torch::empty({batch, hidden}, opts);
  torch::Tensor du = torch::empty({batch, hidden}, opts);
  torch::Tensor d_rh = torch::empty({batch, hidden}, opts);
  torch::Tensor d_hs_c = d_hs.defined() ? d_hs.contiguous() : torch::Tensor();

  const GatedBackwardRows<T> p = MakeGatedBackwardRows<T>(w, s, d_hs_c, d_xg, dz_g, dz_c, du, d_rh);
  // Packed once as transposed views (no transposed copy is made first).
  PackedGemm gemm_h_t(w.w_h.t(), steps), gemm_hc_t(w.w_hc.t(), steps);

  // dh and dh_prev trade places at every step: iteration i (timestep
  // steps - 1 - i) reads dh_in[i % 2] and writes dh_in[(i + 1) % 2], so after
  // an odd number of steps dh_prev holds the result.
  const torch::Tensor dh_in[2] = {dh, dh_prev};
  const bool exact_rows = gemm_h_t.packed() && gemm_hc_t.packed();
  const int64_t weight_bytes = (w.w_h.numel() + w.w_hc.numel()) * int64_t{sizeof(T)};
  auto time_loop = [&](int64_t r0, int64_t r1, int64_t i0, int64_t i1, torch::Tensor& scratch) {
    torch::Tensor d_rh_rows = d_rh.narrow(0, r0, r1 - r0);
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t t = steps - 1 - i;
      const T* dh_p = dh_in[i % 2].data_ptr<T>();
      torch::Tensor dh_prev_rows = dh_in[(i + 1) % 2].narrow(0, r0, r1 - r0);
      T* dh_prev_p = dh_in[(i + 1) % 2].data_ptr<T>();
      ParallelRows(r0, r1, RowGrain(hidden), [&](int64_t begin, int64_t end) {
        for (int64_t b = begin; b < end; ++b) GatedCandidateRowBackward(p, t, b, dh_p, dh_prev_p);
      });
      gemm_hc_t.Run(dz_c[t].narrow(0, r0, r1 - r0), 0, &d_rh_rows, &scratch);
      ParallelRows(r0, r1, RowGrain(gate_width), [&](int64_t begin, int64_t end) {
        for (int64_t b = begin; b < end; ++b) GatedGatesRowBackward(p, t, b, dh_prev_p);
      });
      gemm_h_t.Run(dz_g[t].narrow(0, r0, r1 - r0), 1, &dh_prev_rows, &scratch);
    }
  };
  RunTimeLoop(batch, steps, exact_rows, weight_bytes, time_loop);
  if (steps % 2 == 1) std::swap(dh, dh_prev);

  const int64_t rows = steps * batch;
  FusedGrads g;
  g.xg = d_xg;
  g.h0 = dh;
  g.w_h =
      at::mm(s[kH].narrow(0, 0, steps).reshape({rows, hidden}).t(), dz_g.view({rows, gate_width}));
  g.w_hc = at::mm(s[kRh].view({rows, hidden}).t(), dz_c.view({rows, hidden}));
  if (ln) {
    LayerNormParamGrads<T>(d_xg, width, s[kXhatH], rows, gate_width, &g.ln_h_gain, &g.ln_h_shift);
    LayerNormParamGrads<T>(d_xg.narrow(2, gate_width, hidden), width, s[kXhat2], rows, hidden,
                           &g.ln_2_gain, &g.ln_2_shift);
  }
  return g;
}

// -------------------------------------------------------------------- LSTM --

// What one forward step of the LSTM reads and writes: the input projection,
// the activations of all steps, and this step's product.
template <typename T>
struct LstmForwardRows {
  int64_t batch = 0, hidden = 0, width = 0;
  bool ln = false;
  const T* xg = nullptr;  // [S, B, width]
  const T* z = nullptr;   // [B, width]
  T *h = nullptr, *c = nullptr, *act = nullptr, *tc = nullptr;
  LayerNormRows<T> norm;  // null without layer norm
};

// Row b of step t, given z = h W_h: the gates (act holds the
// pre-activations first, then their nonlinearities), the next c, tanh of
// it (normalised with layer norm) and the next h.
template <typename T>
inline void LstmRow(const LstmForwardRows<T>& p, int64_t t, int64_t b) {
  const int64_t H = p.hidden, W = p.width, row = t * p.batch + b;
  const T* x = p.xg + row * W;
  const T* zr = p.z + b * W;
  T* act = p.act + row * W;
  if (p.ln) {
    T* xhat = p.norm.xhat_h + row * W;
    p.norm.rstd_h[row] = NormalizeRow(zr, W, xhat);
#pragma omp simd
    for (int64_t j = 0; j < W; ++j) act[j] = x[j] + xhat[j] * p.norm.gain_h[j] + p.norm.shift_h[j];
  } else {
#pragma omp simd
    for (int64_t j = 0; j < W; ++j) act[j] = x[j] + zr[j];
  }
#pragma omp simd
  for (int64_t j = 0; j < 3 * H; ++j) act[j] = Sigmoid(act[j]);
#pragma omp simd
  for (int64_t j = 3 * H; j < W; ++j) act[j] = Tanh(act[j]);
  const T* sf = act;
  const T* si = act + H;
  const T* so = act + 2 * H;
  const T* tg = act + 3 * H;
  const T* c = p.c + row * H;
  T* c_next = p.c + (row + p.batch) * H;
  T* tc = p.tc + row * H;
  T* h_next = p.h + (row + p.batch) * H;
#pragma omp simd
  for (int64_t j = 0; j < H; ++j) c_next[j] = sf[j] * c[j] + si[j] * tg[j];
  if (p.ln) {
    T* xhat = p.norm.xhat_2 + row * H;
    p.norm.rstd_2[row] = NormalizeRow(c_next, H, xhat);
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) tc[j] = Tanh(xhat[j] * p.norm.gain_2[j] + p.norm.shift_2[j]);
  } else {
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) tc[j] = Tanh(c_next[j]);
  }
#pragma omp simd
  for (int64_t j = 0; j < H; ++j) h_next[j] = so[j] * tc[j];
}

template <typename T>
RecurrentOutput LstmForward(const torch::Tensor& xg, const RecurrentState& init,
                            const RecurrentWeights& w, FusedActivations* acts) {
  const int64_t steps = xg.size(0), batch = xg.size(1), width = xg.size(2);
  const int64_t hidden = w.hidden();
  const bool ln = w.layer_norm;
  AllocateActivations(xg, init, hidden, width, ln, /*lstm=*/true, acts);
  const std::vector<torch::Tensor>& s = acts->tensors;
  torch::Tensor z = torch::empty({batch, width}, xg.options());
  PackedGemm gemm_h(w.w_h, steps);

  LstmForwardRows<T> p;
  p.batch = batch;
  p.hidden = hidden;
  p.width = width;
  p.ln = ln;
  p.xg = xg.data_ptr<T>();
  p.z = z.data_ptr<T>();
  p.h = s[kH].data_ptr<T>();
  p.c = s[kC].data_ptr<T>();
  p.act = s[kGates].data_ptr<T>();
  p.tc = s[kCand].data_ptr<T>();
  p.norm = LayerNormRowsOf<T>(s, w);

  const int64_t weight_bytes = w.w_h.numel() * int64_t{sizeof(T)};
  auto time_loop = [&](int64_t r0, int64_t r1, int64_t i0, int64_t i1, torch::Tensor& scratch) {
    torch::Tensor z_rows = z.narrow(0, r0, r1 - r0);
    for (int64_t t = i0; t < i1; ++t) {
      gemm_h.Run(s[kH][t].narrow(0, r0, r1 - r0), 0, &z_rows, &scratch);
      ParallelRows(r0, r1, RowGrain(width), [&](int64_t begin, int64_t end) {
        for (int64_t b = begin; b < end; ++b) LstmRow(p, t, b);
      });
    }
  };
  RunTimeLoop(batch, steps, gemm_h.packed(), weight_bytes, time_loop);
  RecurrentOutput out;
  out.hs = s[kH].narrow(0, 1, steps);
  out.final.h = s[kH][steps].clone();
  out.final.c = s[kC][steps].clone();
  return out;
}

// What one backward step of the LSTM reads and writes: the activations of
// all steps and their gradients.
template <typename T>
struct LstmBackwardRows {
  int64_t batch = 0, hidden = 0, width = 0;
  bool ln = false;
  const T *c = nullptr, *act = nullptr, *tc = nullptr, *dhs = nullptr;  // dhs may be null
  LayerNormRows<T> norm;                                                // null without layer norm
  T *dxg = nullptr, *dz = nullptr, *dn_c = nullptr;  // dn_c: layer norm only
};

// Row b of step t, given dh and dc (the gradients of h and c after the
// step): dc_prev, the pre-activation gradients (into dxg), their product's
// (dz) and, with layer norm, LN(c')'s output gradient (dn_c). `dct` is
// scratch of H values.
template <typename T>
inline void LstmRowBackward(const LstmBackwardRows<T>& p, int64_t t, int64_t b, const T* dh,
                            const T* dc, T* dc_prev, T* dct) {
  const int64_t H = p.hidden, W = p.width, row = t * p.batch + b;
  const T* act = p.act + row * W;
  const T* sf = act;
  const T* si = act + H;
  const T* so = act + 2 * H;
  const T* tg = act + 3 * H;
  const T* tc = p.tc + row * H;
  const T* c = p.c + row * H;
  const T* dhs = p.dhs ? p.dhs + row * H : nullptr;
  const T* dh_row = dh + b * H;
  const T* dc_row = dc + b * H;
  T* dx = p.dxg + row * W;
  // dx[2H..3H) takes d(so) first; dct takes dn first, then d(c').
#pragma omp simd
  for (int64_t j = 0; j < H; ++j) {
    const T d = dh_row[j] + (dhs ? dhs[j] : T(0));
    dx[2 * H + j] = d * tc[j] * so[j] * (T(1) - so[j]);
    dct[j] = d * so[j] * (T(1) - tc[j] * tc[j]);
  }
  if (p.ln) {
    T* dn = p.dn_c + row * H;
    std::copy(dct, dct + H, dn);
    LayerNormRowBackward(dn, p.norm.xhat_2 + row * H, p.norm.rstd_2[row], p.norm.gain_2, H, dct);
  }
  T* dcp = dc_prev + b * H;
#pragma omp simd
  for (int64_t j = 0; j < H; ++j) {
    const T d = dct[j] + dc_row[j];
    dx[j] = d * c[j] * sf[j] * (T(1) - sf[j]);
    dx[H + j] = d * tg[j] * si[j] * (T(1) - si[j]);
    dx[3 * H + j] = d * si[j] * (T(1) - tg[j] * tg[j]);
    dcp[j] = d * sf[j];
  }
  T* dzr = p.dz + row * W;
  if (p.ln) {
    LayerNormRowBackward(dx, p.norm.xhat_h + row * W, p.norm.rstd_h[row], p.norm.gain_h, W, dzr);
  } else {
    std::copy(dx, dx + W, dzr);
  }
}

template <typename T>
FusedGrads LstmBackward(const torch::Tensor& d_hs, const torch::Tensor& d_h_final,
                        const torch::Tensor& d_c_final, const RecurrentWeights& w,
                        const FusedActivations& acts) {
  const std::vector<torch::Tensor>& s = acts.tensors;
  const int64_t steps = s[kGates].size(0), batch = s[kGates].size(1), width = s[kGates].size(2);
  const int64_t hidden = w.hidden();
  const bool ln = w.layer_norm;
  const auto opts = s[kH].options();

  torch::Tensor d_xg = torch::empty({steps, batch, width}, opts);
  torch::Tensor dz = torch::empty({steps, batch, width}, opts);
  torch::Tensor dn_c = ln ? torch::empty({steps, batch, hidden}, opts) : torch::Tensor();
  torch::Tensor dh =
      d_h_final.defined() ? d_h_final.contiguous().clone() : torch::zeros({batch, hidden}, opts);
  torch::Tensor dc =
      d_c_final.defined() ? d_c_final.contiguous().clone() : torch::zeros({batch, hidden}, opts);
  torch::Tensor dh_prev = torch::empty({batch, hidden}, opts);
  torch::Tensor dc_prev = torch::empty({batch, hidden}, opts);
  torch::Tensor d_hs_c = d_hs.defined() ? d_hs.contiguous() : torch::Tensor();

  LstmBackwardRows<T> p;
  p.batch = batch;
  p.hidden = hidden;
  p.width = width;
  p.ln = ln;
  p.c = s[kC].data_ptr<T>();
  p.act = s[kGates].data_ptr<T>();
  p.tc = s[kCand].data_ptr<T>();
  p.dhs = d_hs_c.defined() ? d_hs_c.data_ptr<T>() : nullptr;
  p.norm = LayerNormRowsOf<T>(s, w);
  if (ln) p.dn_c = dn_c.data_ptr<T>();
  p.dxg = d_xg.data_ptr<T>();
  p.dz = dz.data_ptr<T>();
  PackedGemm gemm_h_t(w.w_h.t(), steps);

  // As in GatedBackward, dh and dc trade places with dh_prev and dc_prev at
  // every step; after an odd number of steps the _prev tensors hold the result.
  const torch::Tensor dh_in[2] = {dh, dh_prev}, dc_in[2] = {dc, dc_prev};
  const int64_t weight_bytes = w.w_h.numel() * int64_t{sizeof(T)};
  auto time_loop = [&](int64_t r0, int64_t r1, int64_t i0, int64_t i1, torch::Tensor& scratch) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t t = steps - 1 - i;
      const T* dh_p = dh_in[i % 2].data_ptr<T>();
      torch::Tensor dh_prev_rows = dh_in[(i + 1) % 2].narrow(0, r0, r1 - r0);
      const T* dc_p = dc_in[i % 2].data_ptr<T>();
      T* dc_prev_p = dc_in[(i + 1) % 2].data_ptr<T>();
      ParallelRows(r0, r1, RowGrain(width), [&](int64_t begin, int64_t end) {
        std::vector<T> dct(hidden);
        for (int64_t b = begin; b < end; ++b) {
          LstmRowBackward(p, t, b, dh_p, dc_p, dc_prev_p, dct.data());
        }
      });
      gemm_h_t.Run(dz[t].narrow(0, r0, r1 - r0), 0, &dh_prev_rows, &scratch);
    }
  };
  RunTimeLoop(batch, steps, gemm_h_t.packed(), weight_bytes, time_loop);
  if (steps % 2 == 1) {
    std::swap(dh, dh_prev);
    std::swap(dc, dc_prev);
  }

  const int64_t rows = steps * batch;
  FusedGrads g;
  g.xg = d_xg;
  g.h0 = dh;
  g.c0 = dc;
  g.w_h = at::mm(s[kH].narrow(0, 0, steps).reshape({rows, hidden}).t(), dz.view({rows, width}));
  if (ln) {
    LayerNormParamGrads<T>(d_xg, width, s[kXhatH], rows, width, &g.ln_h_gain, &g.ln_h_shift);
    LayerNormParamGrads<T>(dn_c, hidden, s[kXhat2], rows, hidden, &g.ln_2_gain, &g.ln_2_shift);
  }
  return g;
}

}  // namespace

void SetWideFusedKernels(bool enabled) { g_wide_enabled.store(enabled); }
void SetRowGroups(RowGroups policy) { g_row_groups.store(policy); }

std::vector<int64_t> BalanceRows(const std::vector<int64_t>& rows,
                                 const std::vector<double>& seconds) {
  const size_t n = rows.size();
  int64_t total = 0;
  for (int64_t r : rows) total += r;
  double speed_sum = 0;
  std::vector<double> speed(n);
  for (size_t g = 0; g < n; ++g) {
    // A segment too short to time (or a thread with no rows) says nothing.
    if (seconds[g] < 1e-4 || rows[g] <= 0) return rows;
    speed[g] = rows[g] / seconds[g];
    speed_sum += speed[g];
  }
  // Halfway from the current split to the one the speeds ask for, each
  // share between half and one and a half times an equal one: a thread's
  // time is not proportional to its rows (each streams all the weights), so
  // a thread left with few rows would look slow and never win them back.
  const double equal = double(total) / n;
  std::vector<double> want(n);
  double want_sum = 0;
  for (size_t g = 0; g < n; ++g) {
    const double target = total * speed[g] / speed_sum;
    want[g] = std::clamp(0.5 * (rows[g] + target), 0.5 * equal, 1.5 * equal);
    want_sum += want[g];
  }
  // Whole rows summing to the total: round the running sum.
  std::vector<int64_t> next(n);
  double cumulative = 0;
  int64_t assigned = 0;
  for (size_t g = 0; g < n; ++g) {
    cumulative += want[g] * total / want_sum;
    const int64_t upto = g + 1 == n ? total : std::llround(cumulative);
    next[g] = std::max<int64_t>(0, upto - assigned);
    assigned += next[g];
  }
  return next;
}

RecurrentOutput FusedForward(const torch::Tensor& xg_in, const RecurrentState& init,
                             const RecurrentWeights& w, FusedActivations* acts) {
  const torch::Tensor xg = xg_in.contiguous();
  RecurrentOutput out;
  AT_DISPATCH_FLOATING_TYPES(xg.scalar_type(), "FusedForward", [&] {
    out = w.cell == Cell::kLstm ? LstmForward<scalar_t>(xg, init, w, acts)
                                : GatedForward<scalar_t>(xg, init, w, acts);
  });
  return out;
}

FusedGrads FusedBackward(const torch::Tensor& d_hs, const torch::Tensor& d_h_final,
                         const torch::Tensor& d_c_final, const RecurrentWeights& w,
                         const FusedActivations& acts) {
  FusedGrads g;
  AT_DISPATCH_FLOATING_TYPES(acts.tensors[kH].scalar_type(), "FusedBackward", [&] {
    g = w.cell == Cell::kLstm ? LstmBackward<scalar_t>(d_hs, d_h_final, d_c_final, w, acts)
                              : GatedBackward<scalar_t>(d_hs, d_h_final, w, acts);
  });
  return g;
}

}  // namespace ablate
