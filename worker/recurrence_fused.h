// The fused CPU kernels behind Kernel::kFused (see recurrence.h). Internal to
// the trainer library: RunRecurrence wraps them in an autograd function.
#ifndef ABLATE_WORKER_RECURRENCE_FUSED_H_
#define ABLATE_WORKER_RECURRENCE_FUSED_H_

#include <torch/torch.h>

#include <vector>

#include "worker/recurrence.h"

namespace ablate {

// What the forward pass keeps for the backward pass; the layout is private to
// recurrence_fused.cc.
struct FusedActivations {
  std::vector<torch::Tensor> tensors;
};

struct FusedGrads {
  torch::Tensor xg, h0, c0, w_h, w_hc, ln_h_gain, ln_h_shift, ln_2_gain, ln_2_shift;
};

// Whether the pointwise passes may run their AVX-512 or AVX2 copy (default
// yes; which one follows VectorIsaInUse). Tests turn it off to cover the
// baseline copy, which is what CPUs without AVX2 run. Read at every pass; set
// it between them.
void SetWideFusedKernels(bool enabled);

// Whether the time loops give each thread its own group of batch rows (see
// RunTimeLoop in recurrence_fused.cc) or share every product and pass among
// the threads. kAuto (the default) takes groups when each thread gets at
// least 16 rows and the recurrent weights are at most 1 MiB; kAlways whenever
// there are at least as many rows as threads. Both only with the packed
// kernel, whose results do not depend on the split. Tests and benchmarks compare them; set it between passes.
enum class RowGroups { kAuto, kAlways, kNever };
void SetRowGroups(RowGroups policy);

// The next split of the batch rows among threads, given each thread's rows
// and the seconds it took over the last segment: whole rows, the same total,
// moved halfway towards shares proportional to the measured speeds and kept
// between half and one and a half times an equal share. Unchanged when a
// time is under 0.1 ms (too short to say anything).
std::vector<int64_t> BalanceRows(const std::vector<int64_t>& rows,
                                 const std::vector<double>& seconds);

// Forward over all steps of xg; fills `acts`.
RecurrentOutput FusedForward(const torch::Tensor& xg, const RecurrentState& init,
                             const RecurrentWeights& w, FusedActivations* acts);

// Gradients given the gradients of hs and of the final state (any may be
// undefined, meaning zero).
FusedGrads FusedBackward(const torch::Tensor& d_hs, const torch::Tensor& d_h_final,
                         const torch::Tensor& d_c_final, const RecurrentWeights& w,
                         const FusedActivations& acts);

}  // namespace ablate

#endif  // ABLATE_WORKER_RECURRENCE_FUSED_H_
