// The recurrent layer of the seed's model, run over a whole window of T steps.
//
// The input side of every cell (LN(x W_x) + b) depends only on the input
// symbol, so the model computes it once per symbol and gathers it; what is
// left here is the sequential part: the h-projections, their layer norms, the
// gate nonlinearities and the state update (equations in shared/MODEL.md).
//
// Four implementations compute the same function:
//  - kReference: per-step LibTorch ops under autograd. Works on any device and
//    dtype; the oracle the tests check the others against.
//  - kFused: a custom autograd function with a hand-derived backward. Per step
//    it runs the recurrent matmuls through BLAS and every pointwise operation
//    (layer norm, gates, update) as one fused pass over the batch; weight
//    gradients are taken after the loop as single large matmuls over all T
//    steps. CPU only (float and double).
//  - kCuda: the same structure on a GPU (recurrence_device.h): cuBLAS
//    products and fused CUDA kernels that gather the input rows themselves,
//    with deterministic reductions. Float only; needs a build with CUDA.
//  - kCudaOnCpu: kCuda's kernels and bookkeeping run on the CPU one block at
//    a time (slow): how tests check the CUDA path where no GPU is.
#ifndef ABLATE_WORKER_RECURRENCE_H_
#define ABLATE_WORKER_RECURRENCE_H_

#include <torch/torch.h>

#include "common/run_config.h"

namespace ablate {

enum class Kernel { kReference, kFused, kCuda, kCudaOnCpu };
const char* KernelName(Kernel kernel);

// Epsilon of every layer norm.
inline constexpr double kLayerNormEps = 1e-5;

// The recurrent weights as the kernels see them. Tensors a configuration does
// not use are undefined.
struct RecurrentWeights {
  Cell cell = Cell::kGru;
  bool layer_norm = false;
  // GRU: [H, 2H] for [u, r]; MGU: [H, H] for f; LSTM: [H, 4H] for [f, i, o, g].
  torch::Tensor w_h;
  // GRU and MGU: [H, H], the candidate's projection of (r * h).
  torch::Tensor w_hc;
  // Layer norm gain and shift over w_h's output, over w_hc's output (GRU, MGU)
  // and over the LSTM's cell state c' (in h' = o * tanh(LN(c'))).
  torch::Tensor ln_h_gain, ln_h_shift;
  torch::Tensor ln_2_gain, ln_2_shift;

  int64_t hidden() const { return w_h.size(0); }
  // Width of the input-side pre-activations xg: 3H (GRU), 2H (MGU), 4H (LSTM).
  int64_t input_width() const;
};

struct RecurrentState {
  torch::Tensor h;  // [B, H]
  torch::Tensor c;  // [B, H], LSTM only
};

struct RecurrentOutput {
  torch::Tensor hs;      // [T, B, H]: h after every step
  RecurrentState final;  // state after the last step
};

// xg: [T, B, input_width()], the input-side pre-activations with biases added,
// in the column order of w_h then w_hc (GRU: [u, r, c]; MGU: [f, c]).
// Differentiable with respect to xg, the weights and the initial state.
// kReference and kFused only.
RecurrentOutput RunRecurrence(Kernel kernel, const torch::Tensor& xg, const RecurrentState& init,
                              const RecurrentWeights& weights);

// The same, with xg[t, b] = table[tokens[t, b]]: table [V, input_width()]
// holds each symbol's pre-activations, tokens [T, B] the symbols.
// Differentiable with respect to the table, the weights and the initial
// state. Any kernel; `precision` sets the recurrent products of kCuda and
// kCudaOnCpu, and of kReference on a GPU (tf32, or bf16 operands); the CPU
// kernels compute in the tensors' dtype.
RecurrentOutput RunRecurrence(Kernel kernel, const torch::Tensor& table,
                              const torch::Tensor& tokens, const RecurrentState& init,
                              const RecurrentWeights& weights, Precision precision);

}  // namespace ablate

#endif  // ABLATE_WORKER_RECURRENCE_H_
