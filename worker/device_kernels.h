// The pointwise kernels of the device recurrence (recurrence_device.h), as
// bodies that run either as CUDA blocks (worker/cuda/device_kernels.cu) or on
// the CPU one block at a time (HostRecurrenceDevice), from the same source.
//
// A kernel is a grid of blocks; each block is a team of threads that works
// through its part with team-strided loops (`for (j = team.index(); j < n;
// j += team.count())`) and meets only in Team::Sum, a reduction every member
// calls and whose total every member gets. A thread reads back only what it
// wrote itself, so a body needs no other barrier. On the CPU the team is one
// thread (SerialTeam). Reductions have a fixed order and no atomics: a
// kernel gives the same bits at every run.
//
// Row kernels take one batch row of one timestep per block. Pointers in
// their arguments already point at that timestep's slice ([B, ...]).
//
// Only cell_math.h and the standard library: nvcc compiles this without
// LibTorch.
#ifndef ABLATE_WORKER_DEVICE_KERNELS_H_
#define ABLATE_WORKER_DEVICE_KERNELS_H_

#include <cstdint>

#include "worker/cell_math.h"

namespace ablate {
namespace device {

// A block's position in its grid.
struct Block {
  int64_t x = 0, y = 0;
};

struct GridSize {
  int64_t x = 1, y = 1;
};

// What every row kernel of one recurrence shares.
struct RowShape {
  int64_t batch = 0, hidden = 0;
  int64_t gate_width = 0;  // columns of the h-projection: 2H (GRU), H (MGU), 4H (LSTM)
  int64_t width = 0;       // columns of an input-table row: gate_width + H, or 4H (LSTM)
  bool layer_norm = false;
  bool tied = false;  // the MGU, whose reset gate is its update gate
};

// The team of the CPU: one thread that does everything in order.
struct SerialTeam {
  int index() const { return 0; }
  int count() const { return 1; }
  float Sum(float v) { return v; }
  void Sum2(float* a, float* b) {
    (void)a;
    (void)b;
  }
};

// Columns a block of a column kernel covers (and threads it runs on a GPU).
inline constexpr int64_t kColumnTile = 256;
// Rows one block of ColumnPartialSums adds up.
inline constexpr int64_t kRowsPerChunk = 256;

inline int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// ------------------------------------------------------------ GRU and MGU --

// Gates of step t from their h-projection z (= h_t W_h): [u, r] (GRU) or f
// (MGU) = sigmoid(x + LN(z)), and r * h_t, the candidate product's input.
struct GatedGatesForward {
  RowShape shape;
  const int64_t* tokens = nullptr;        // [B]: this step's symbols
  const float* table = nullptr;           // [V, width]: input projections
  const float* z = nullptr;               // [B, gate_width]
  const float* gain = nullptr;            // [gate_width], layer norm only
  const float* shift = nullptr;
  const float* h = nullptr;     // [B, H]
  float* gates = nullptr;       // [B, gate_width]
  float* xhat = nullptr;        // [B, gate_width], layer norm only
  float* rstd = nullptr;        // [B], layer norm only
  float* rh = nullptr;          // [B, H]
  uint16_t* rh_bf16 = nullptr;  // [B, H] or null: rh in bf16 for the product

  GridSize Grid() const { return {shape.batch, 1}; }

  template <class Team>
  ABLATE_HD static void Run(const GatedGatesForward& a, Block block, Team& team) {
    const int64_t b = block.x, H = a.shape.hidden, G = a.shape.gate_width;
    const float* z = a.z + b * G;
    const float* x = a.table + a.tokens[b] * a.shape.width;
    const float* h = a.h + b * H;
    float* gate = a.gates + b * G;
    float mean = 0, rstd = 0;
    if (a.shape.layer_norm) {
      float s = 0;
      for (int64_t j = team.index(); j < G; j += team.count()) s += z[j];
      mean = team.Sum(s) / float(G);
      float q = 0;
      for (int64_t j = team.index(); j < G; j += team.count()) q += (z[j] - mean) * (z[j] - mean);
      rstd = cell::LayerNormRstd(team.Sum(q), G);
      if (team.index() == 0) a.rstd[b] = rstd;
    }
    // Thread j does column j and, for the GRU, column H + j (r), so that it
    // has r_j for r * h at hand.
    for (int64_t j = team.index(); j < H; j += team.count()) {
      float r = 0;
      for (int64_t col = j; col < G; col += H) {
        float xh = 0;
        if (a.shape.layer_norm) {
          xh = (z[col] - mean) * rstd;
          a.xhat[b * G + col] = xh;
        }
        const float g = cell::Sigmoid(x[col] + cell::Projection(a.shape.layer_norm, z[col], xh,
                                                                a.shape.layer_norm ? a.gain[col] : 0.f,
                                                                a.shape.layer_norm ? a.shift[col] : 0.f));
        gate[col] = g;
        r = g;  // the last column of the loop: r for the GRU, f for the MGU
      }
      const float rh = r * h[j];
      a.rh[b * H + j] = rh;
      if (a.rh_bf16 != nullptr) a.rh_bf16[b * H + j] = cell::FloatToBf16Bits(rh);
    }
  }
};

// The candidate of step t from its product z (= (r * h_t) W_hc), and
// h_{t+1} = h_t + u * (c - h_t).
struct GatedCandidateForward {
  RowShape shape;
  const int64_t* tokens = nullptr;
  const float* table = nullptr;  // [V, width]; the candidate's columns follow the gates'
  const float* z = nullptr;      // [B, H]
  const float* gain = nullptr;   // [H], layer norm only
  const float* shift = nullptr;
  const float* h = nullptr;      // [B, H]: h_t
  const float* gates = nullptr;  // [B, gate_width]: u in the first H columns
  float* candidate = nullptr;    // [B, H]
  float* xhat = nullptr;         // [B, H], layer norm only
  float* rstd = nullptr;         // [B], layer norm only
  float* h_next = nullptr;       // [B, H]
  uint16_t* h_next_bf16 = nullptr;

  GridSize Grid() const { return {shape.batch, 1}; }

  template <class Team>
  ABLATE_HD static void Run(const GatedCandidateForward& a, Block block, Team& team) {
    const int64_t b = block.x, H = a.shape.hidden;
    const float* z = a.z + b * H;
    const float* x = a.table + a.tokens[b] * a.shape.width + a.shape.gate_width;
    float mean = 0, rstd = 0;
    if (a.shape.layer_norm) {
      float s = 0;
      for (int64_t j = team.index(); j < H; j += team.count()) s += z[j];
      mean = team.Sum(s) / float(H);
      float q = 0;
      for (int64_t j = team.index(); j < H; j += team.count()) q += (z[j] - mean) * (z[j] - mean);
      rstd = cell::LayerNormRstd(team.Sum(q), H);
      if (team.index() == 0) a.rstd[b] = rstd;
    }
    for (int64_t j = team.index(); j < H; j += team.count()) {
      const int64_t i = b * H + j;
      float xh = 0;
      if (a.shape.layer_norm) {
        xh = (z[j] - mean) * rstd;
        a.xhat[i] = xh;
      }
      const float c =
          cell::Tanh(x[j] + cell::Projection(a.shape.layer_norm, z[j], xh, a.shape.layer_norm ? a.gain[j] : 0.f,
                                             a.shape.layer_norm ? a.shift[j] : 0.f));
      a.candidate[i] = c;
      const float next = cell::GatedUpdate(a.h[i], a.gates[b * a.shape.gate_width + j], c);
      a.h_next[i] = next;
      if (a.h_next_bf16 != nullptr) a.h_next_bf16[i] = cell::FloatToBf16Bits(next);
    }
  }
};

// Backward through the update and the candidate of step t, given dh (the
// gradient of h_{t+1} from step t+1) and dhs (from the outputs, or null).
// Writes du, dh_prev = d * (1 - u) (the direct path; GatedGatesBackward and
// the product with W_h^T add the rest), the candidate's pre-activation
// gradient into its columns of dxg, and dz, the gradient of its product.
struct GatedCandidateBackward {
  RowShape shape;
  const float* dh = nullptr;         // [B, H]
  const float* dhs = nullptr;        // [B, H] or null
  const float* gates = nullptr;      // [B, gate_width]
  const float* candidate = nullptr;  // [B, H]
  const float* h = nullptr;          // [B, H]: h_t
  const float* xhat = nullptr;       // [B, H], layer norm only
  const float* rstd = nullptr;       // [B]
  const float* gain = nullptr;       // [H]
  float* du = nullptr;               // [B, H]
  float* dh_prev = nullptr;          // [B, H]
  float* dxg = nullptr;              // [B, width]: writes columns [gate_width, width)
  float* dz = nullptr;               // [B, H]
  uint16_t* dz_bf16 = nullptr;

  GridSize Grid() const { return {shape.batch, 1}; }

  template <class Team>
  ABLATE_HD static void Run(const GatedCandidateBackward& a, Block block, Team& team) {
    const int64_t b = block.x, H = a.shape.hidden;
    float* dxc = a.dxg + b * a.shape.width + a.shape.gate_width;
    float sum_dx = 0, sum_dx_xhat = 0;
    for (int64_t j = team.index(); j < H; j += team.count()) {
      const int64_t i = b * H + j;
      const float d = a.dh[i] + (a.dhs != nullptr ? a.dhs[i] : 0.f);
      const float u = a.gates[b * a.shape.gate_width + j], c = a.candidate[i];
      a.du[i] = cell::GatedUpdateGradU(d, a.h[i], c);
      a.dh_prev[i] = cell::GatedUpdateGradH(d, u);
      const float g = cell::GatedUpdateGradCandidate(d, u, c);
      dxc[j] = g;
      if (a.shape.layer_norm) {
        sum_dx += g * a.gain[j];
        sum_dx_xhat += g * a.gain[j] * a.xhat[i];
      }
    }
    WriteProductGrad(a.shape.layer_norm, dxc, a.xhat + b * H, a.shape.layer_norm ? a.rstd[b] : 0.f, a.gain, H,
                     sum_dx, sum_dx_xhat, a.dz + b * H, a.dz_bf16 ? a.dz_bf16 + b * H : nullptr,
                     team);
  }

  // dz = LN backward of dx (the identity without layer norm), for the
  // columns this thread wrote in dx.
  template <class Team>
  ABLATE_HD static void WriteProductGrad(bool layer_norm, const float* dx, const float* xhat,
                                         float rstd, const float* gain, int64_t n, float sum_dx,
                                         float sum_dx_xhat, float* dz, uint16_t* dz_bf16,
                                         Team& team) {
    if (layer_norm) {
      team.Sum2(&sum_dx, &sum_dx_xhat);
      sum_dx /= float(n);
      sum_dx_xhat /= float(n);
    }
    for (int64_t j = team.index(); j < n; j += team.count()) {
      const float v =
          layer_norm ? cell::LayerNormInputGrad(dx[j], gain[j], xhat[j], rstd, sum_dx, sum_dx_xhat)
                     : dx[j];
      dz[j] = v;
      if (dz_bf16 != nullptr) dz_bf16[j] = cell::FloatToBf16Bits(v);
    }
  }
};

// Backward through the gates of step t, given d_rh (the gradient of r * h_t,
// = dz_candidate W_hc^T) and du: adds r * d_rh to dh_prev, writes the gates'
// pre-activation gradients into their columns of dxg and dz, the gradient
// of their product.
struct GatedGatesBackward {
  RowShape shape;
  const float* d_rh = nullptr;   // [B, H]
  const float* du = nullptr;     // [B, H]
  const float* gates = nullptr;  // [B, gate_width]
  const float* h = nullptr;      // [B, H]: h_t
  const float* xhat = nullptr;   // [B, gate_width], layer norm only
  const float* rstd = nullptr;   // [B]
  const float* gain = nullptr;   // [gate_width]
  float* dh_prev = nullptr;      // [B, H], added to
  float* dxg = nullptr;          // [B, width]: writes columns [0, gate_width)
  float* dz = nullptr;           // [B, gate_width]
  uint16_t* dz_bf16 = nullptr;

  GridSize Grid() const { return {shape.batch, 1}; }

  template <class Team>
  ABLATE_HD static void Run(const GatedGatesBackward& a, Block block, Team& team) {
    const int64_t b = block.x, H = a.shape.hidden, G = a.shape.gate_width;
    const float* gate = a.gates + b * G;
    float* dx = a.dxg + b * a.shape.width;
    float sum_dx = 0, sum_dx_xhat = 0;
    for (int64_t j = team.index(); j < H; j += team.count()) {
      const int64_t i = b * H + j;
      const float drh = a.d_rh[i], h = a.h[i], u = gate[j];
      if (a.shape.tied) {
        a.dh_prev[i] += drh * u;
        dx[j] = (a.du[i] + drh * h) * cell::SigmoidSlope(u);
      } else {
        const float r = gate[H + j];
        a.dh_prev[i] += drh * r;
        dx[j] = a.du[i] * cell::SigmoidSlope(u);
        dx[H + j] = drh * h * cell::SigmoidSlope(r);
      }
      if (a.shape.layer_norm) {
        for (int64_t col = j; col < G; col += H) {
          const float g = dx[col] * a.gain[col];
          sum_dx += g;
          sum_dx_xhat += g * a.xhat[b * G + col];
        }
      }
    }
    // Each thread reads back the columns it wrote: j and H + j.
    if (a.shape.layer_norm) {
      team.Sum2(&sum_dx, &sum_dx_xhat);
      sum_dx /= float(G);
      sum_dx_xhat /= float(G);
    }
    const float rstd = a.shape.layer_norm ? a.rstd[b] : 0.f;
    for (int64_t j = team.index(); j < H; j += team.count()) {
      for (int64_t col = j; col < G; col += H) {
        const float v = a.shape.layer_norm
                            ? cell::LayerNormInputGrad(dx[col], a.gain[col], a.xhat[b * G + col],
                                                       rstd, sum_dx, sum_dx_xhat)
                            : dx[col];
        a.dz[b * G + col] = v;
        if (a.dz_bf16 != nullptr) a.dz_bf16[b * G + col] = cell::FloatToBf16Bits(v);
      }
    }
  }
};

// ------------------------------------------------------------------- LSTM --

// Step t of the LSTM from z = h_t W_h: [f, i, o, g] = x + LN(z); c' = sf * c
// + si * tanh(g); h' = so * tanh(LN(c')). Thread j does columns j, H + j,
// 2H + j and 3H + j, so it has every gate of unit j.
struct LstmForward {
  RowShape shape;
  const int64_t* tokens = nullptr;
  const float* table = nullptr;  // [V, 4H]
  const float* z = nullptr;      // [B, 4H]
  const float* gain_h = nullptr;
  const float* shift_h = nullptr;
  const float* gain_c = nullptr;
  const float* shift_c = nullptr;
  const float* c = nullptr;  // [B, H]: c_t
  float* gates = nullptr;    // [B, 4H]: sf, si, so, tanh(g)
  float* xhat_h = nullptr;   // [B, 4H], layer norm only
  float* rstd_h = nullptr;   // [B]
  float* c_next = nullptr;   // [B, H]
  float* xhat_c = nullptr;   // [B, H], layer norm only
  float* rstd_c = nullptr;   // [B]
  float* tc = nullptr;       // [B, H]: tanh(LN(c'))
  float* h_next = nullptr;   // [B, H]
  uint16_t* h_next_bf16 = nullptr;

  GridSize Grid() const { return {shape.batch, 1}; }

  template <class Team>
  ABLATE_HD static void Run(const LstmForward& a, Block block, Team& team) {
    const int64_t b = block.x, H = a.shape.hidden, W = 4 * H;
    const float* z = a.z + b * W;
    const float* x = a.table + a.tokens[b] * W;
    float* act = a.gates + b * W;
    float mean = 0, rstd = 0;
    if (a.shape.layer_norm) {
      float s = 0;
      for (int64_t j = team.index(); j < H; j += team.count()) {
        for (int64_t col = j; col < W; col += H) s += z[col];
      }
      mean = team.Sum(s) / float(W);
      float q = 0;
      for (int64_t j = team.index(); j < H; j += team.count()) {
        for (int64_t col = j; col < W; col += H) q += (z[col] - mean) * (z[col] - mean);
      }
      rstd = cell::LayerNormRstd(team.Sum(q), W);
      if (team.index() == 0) a.rstd_h[b] = rstd;
    }
    float c_sum = 0;
    for (int64_t j = team.index(); j < H; j += team.count()) {
      float g[4];
      for (int k = 0; k < 4; ++k) {
        const int64_t col = k * H + j;
        float xh = 0;
        if (a.shape.layer_norm) {
          xh = (z[col] - mean) * rstd;
          a.xhat_h[b * W + col] = xh;
        }
        const float pre =
            x[col] + cell::Projection(a.shape.layer_norm, z[col], xh, a.shape.layer_norm ? a.gain_h[col] : 0.f,
                                      a.shape.layer_norm ? a.shift_h[col] : 0.f);
        g[k] = k < 3 ? cell::Sigmoid(pre) : cell::Tanh(pre);
        act[col] = g[k];
      }
      const float cn = cell::LstmCell(g[0], a.c[b * H + j], g[1], g[3]);
      a.c_next[b * H + j] = cn;
      c_sum += cn;
    }
    float c_mean = 0, c_rstd = 0;
    if (a.shape.layer_norm) {
      c_mean = team.Sum(c_sum) / float(H);
      float q = 0;
      for (int64_t j = team.index(); j < H; j += team.count()) {
        const float d = a.c_next[b * H + j] - c_mean;
        q += d * d;
      }
      c_rstd = cell::LayerNormRstd(team.Sum(q), H);
      if (team.index() == 0) a.rstd_c[b] = c_rstd;
    }
    for (int64_t j = team.index(); j < H; j += team.count()) {
      const int64_t i = b * H + j;
      const float cn = a.c_next[i];
      float xh = 0;
      if (a.shape.layer_norm) {
        xh = (cn - c_mean) * c_rstd;
        a.xhat_c[i] = xh;
      }
      const float t =
          cell::Tanh(cell::Projection(a.shape.layer_norm, cn, xh, a.shape.layer_norm ? a.gain_c[j] : 0.f,
                                      a.shape.layer_norm ? a.shift_c[j] : 0.f));
      a.tc[i] = t;
      const float next = act[2 * H + j] * t;
      a.h_next[i] = next;
      if (a.h_next_bf16 != nullptr) a.h_next_bf16[i] = cell::FloatToBf16Bits(next);
    }
  }
};

// Backward through step t of the LSTM, given dh and dc (the gradients of
// h_{t+1} and c_{t+1} from step t+1) and dhs (from the outputs, or null).
// Writes dc_prev, the pre-activation gradients dxg, dz (the gradient of the
// product h_t W_h) and, with layer norm, dn_c (the gradient of LN(c')'s
// output, for its gain and shift).
struct LstmBackward {
  RowShape shape;
  const float* dh = nullptr;      // [B, H]
  const float* dhs = nullptr;     // [B, H] or null
  const float* dc = nullptr;      // [B, H]
  const float* gates = nullptr;   // [B, 4H]
  const float* tc = nullptr;      // [B, H]
  const float* c = nullptr;       // [B, H]: c_t
  const float* xhat_h = nullptr;  // [B, 4H], layer norm only
  const float* rstd_h = nullptr;
  const float* gain_h = nullptr;
  const float* xhat_c = nullptr;  // [B, H], layer norm only
  const float* rstd_c = nullptr;
  const float* gain_c = nullptr;
  float* dn_c = nullptr;     // [B, H], layer norm only
  float* dc_prev = nullptr;  // [B, H]
  float* dxg = nullptr;      // [B, 4H]
  float* dz = nullptr;       // [B, 4H]
  uint16_t* dz_bf16 = nullptr;

  GridSize Grid() const { return {shape.batch, 1}; }

  template <class Team>
  ABLATE_HD static void Run(const LstmBackward& a, Block block, Team& team) {
    const int64_t b = block.x, H = a.shape.hidden, W = 4 * H;
    const float* act = a.gates + b * W;
    float* dx = a.dxg + b * W;
    // Pass 1: the output gate, and the gradient of tanh's input (dn_c with
    // layer norm; kept in dx's cell-input columns until pass 2 needs them).
    float sum_dn = 0, sum_dn_xhat = 0;
    for (int64_t j = team.index(); j < H; j += team.count()) {
      const int64_t i = b * H + j;
      const float d = a.dh[i] + (a.dhs != nullptr ? a.dhs[i] : 0.f);
      const float so = act[2 * H + j], t = a.tc[i];
      dx[2 * H + j] = d * t * cell::SigmoidSlope(so);
      const float dn = d * so * cell::TanhSlope(t);
      if (a.shape.layer_norm) {
        a.dn_c[i] = dn;
        sum_dn += dn * a.gain_c[j];
        sum_dn_xhat += dn * a.gain_c[j] * a.xhat_c[i];
      }
      dx[3 * H + j] = dn;
    }
    if (a.shape.layer_norm) {
      team.Sum2(&sum_dn, &sum_dn_xhat);
      sum_dn /= float(H);
      sum_dn_xhat /= float(H);
    }
    // Pass 2: through c' = sf * c + si * tg into the other gates.
    float sum_dx = 0, sum_dx_xhat = 0;
    for (int64_t j = team.index(); j < H; j += team.count()) {
      const int64_t i = b * H + j;
      const float dn = dx[3 * H + j];
      const float dct = a.shape.layer_norm ? cell::LayerNormInputGrad(dn, a.gain_c[j], a.xhat_c[i],
                                                                a.rstd_c[b], sum_dn, sum_dn_xhat)
                                     : dn;
      const float d = dct + a.dc[i];
      const float sf = act[j], si = act[H + j], tg = act[3 * H + j];
      dx[j] = d * a.c[i] * cell::SigmoidSlope(sf);
      dx[H + j] = d * tg * cell::SigmoidSlope(si);
      dx[3 * H + j] = d * si * cell::TanhSlope(tg);
      a.dc_prev[i] = d * sf;
      if (a.shape.layer_norm) {
        for (int64_t col = j; col < W; col += H) {
          const float g = dx[col] * a.gain_h[col];
          sum_dx += g;
          sum_dx_xhat += g * a.xhat_h[b * W + col];
        }
      }
    }
    if (a.shape.layer_norm) {
      team.Sum2(&sum_dx, &sum_dx_xhat);
      sum_dx /= float(W);
      sum_dx_xhat /= float(W);
    }
    const float rstd = a.shape.layer_norm ? a.rstd_h[b] : 0.f;
    for (int64_t j = team.index(); j < H; j += team.count()) {
      for (int64_t col = j; col < W; col += H) {
        const float v =
            a.shape.layer_norm ? cell::LayerNormInputGrad(dx[col], a.gain_h[col], a.xhat_h[b * W + col],
                                                    rstd, sum_dx, sum_dx_xhat)
                         : dx[col];
        a.dz[b * W + col] = v;
        if (a.dz_bf16 != nullptr) a.dz_bf16[b * W + col] = cell::FloatToBf16Bits(v);
      }
    }
  }
};

// ---------------------------------------------------- reductions over rows --

// Per column of two row-major matrices a and b ([rows, cols], leading
// dimensions lda and ldb): partial sums of a * b and of a over chunks of
// kRowsPerChunk rows, in double. Block (x, y) does chunk x of columns
// [y * kColumnTile, ...). ColumnFinalSums adds the chunks up in order.
struct ColumnPartialSums {
  int64_t rows = 0, cols = 0;
  const float* a = nullptr;
  int64_t lda = 0;
  const float* b = nullptr;
  int64_t ldb = 0;
  double* partial_dot = nullptr;  // [chunks, cols]
  double* partial_sum = nullptr;  // [chunks, cols]

  int64_t chunks() const { return CeilDiv(rows, kRowsPerChunk); }
  GridSize Grid() const { return {chunks(), CeilDiv(cols, kColumnTile)}; }

  template <class Team>
  ABLATE_HD static void Run(const ColumnPartialSums& p, Block block, Team& team) {
    const int64_t r0 = block.x * kRowsPerChunk;
    const int64_t r1 = r0 + kRowsPerChunk < p.rows ? r0 + kRowsPerChunk : p.rows;
    for (int64_t i = team.index(); i < kColumnTile; i += team.count()) {
      const int64_t col = block.y * kColumnTile + i;
      if (col >= p.cols) break;
      double dot = 0, sum = 0;
      for (int64_t r = r0; r < r1; ++r) {
        const double av = p.a[r * p.lda + col];
        dot += av * double(p.b[r * p.ldb + col]);
        sum += av;
      }
      p.partial_dot[block.x * p.cols + col] = dot;
      p.partial_sum[block.x * p.cols + col] = sum;
    }
  }
};

struct ColumnFinalSums {
  int64_t cols = 0, chunks = 0;
  const double* partial_dot = nullptr;
  const double* partial_sum = nullptr;
  float* dot = nullptr;  // [cols]
  float* sum = nullptr;  // [cols]

  GridSize Grid() const { return {CeilDiv(cols, kColumnTile), 1}; }

  template <class Team>
  ABLATE_HD static void Run(const ColumnFinalSums& p, Block block, Team& team) {
    for (int64_t i = team.index(); i < kColumnTile; i += team.count()) {
      const int64_t col = block.x * kColumnTile + i;
      if (col >= p.cols) break;
      double dot = 0, sum = 0;
      for (int64_t k = 0; k < p.chunks; ++k) {
        dot += p.partial_dot[k * p.cols + col];
        sum += p.partial_sum[k * p.cols + col];
      }
      p.dot[col] = float(dot);
      p.sum[col] = float(sum);
    }
  }
};

// The gradient of the input-projection table: d_table[v] = the sum of the
// rows of dxg whose symbol is v, in an order fixed by their positions. `order`
// lists the positions sorted by symbol (stably), `starts[v]` where symbol v's
// run begins in it (starts[V] = rows). Block (v, y) does columns [y *
// kColumnTile, ...) of symbol v.
struct TableGradient {
  int64_t vocab = 0, width = 0;
  const int64_t* order = nullptr;   // [rows]
  const int64_t* starts = nullptr;  // [vocab + 1]
  const float* dxg = nullptr;       // [rows, width]
  float* d_table = nullptr;         // [vocab, width]

  GridSize Grid() const { return {vocab, CeilDiv(width, kColumnTile)}; }

  template <class Team>
  ABLATE_HD static void Run(const TableGradient& p, Block block, Team& team) {
    const int64_t v = block.x, begin = p.starts[v], end = p.starts[v + 1];
    for (int64_t i = team.index(); i < kColumnTile; i += team.count()) {
      const int64_t col = block.y * kColumnTile + i;
      if (col >= p.width) break;
      // Eight running sums, so that eight loads are in flight (a frequent
      // symbol, text8's space, has thousands of rows a step); combined in a
      // fixed order.
      double part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      int64_t k = begin;
      for (; k + 8 <= end; k += 8) {
        for (int u = 0; u < 8; ++u) part[u] += p.dxg[p.order[k + u] * p.width + col];
      }
      for (; k < end; ++k) part[0] += p.dxg[p.order[k] * p.width + col];
      const double sum = ((part[0] + part[1]) + (part[2] + part[3])) +
                         ((part[4] + part[5]) + (part[6] + part[7]));
      p.d_table[v * p.width + col] = float(sum);
    }
  }
};

// ------------------------------------------------------------ the products --

enum class GemmInputs { kFp32, kTf32, kBf16 };

// C[m, n] = op(A)[m, k] op(B)[k, n] + beta C, all row-major (op transposes
// when asked); A and B are float, or bf16 bits with kBf16; C is float, and
// the products accumulate in float.
struct RowMajorGemm {
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  const void* a = nullptr;
  int64_t lda = 0;
  const void* b = nullptr;
  int64_t ldb = 0;
  float* c = nullptr;
  int64_t ldc = 0;
  float beta = 0;
  GemmInputs inputs = GemmInputs::kFp32;
};

}  // namespace device
}  // namespace ablate

#endif  // ABLATE_WORKER_DEVICE_KERNELS_H_
