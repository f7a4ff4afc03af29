// The recurrence as a GPU runs it (Kernel::kCuda), written once for any
// device that can run the kernel bodies of device_kernels.h and a row-major
// product: per timestep one product per dependent matmul (two for the GRU
// and the MGU, whose reset gate comes before the candidate's product) and
// one fused kernel for layer norm, gates and update, which gathers the
// input-projection rows itself; the backward likewise; the weight gradients
// as single products over all T steps after the loop, and the gradients of
// the layer-norm parameters and of the input table as column reductions in a
// fixed order. Nothing is summed with atomics, so a run repeats bit for bit
// on the same device.
//
// CudaRecurrenceDevice (worker/cuda/) runs it on a GPU, the products
// through LibTorch's cuBLAS;
// HostRecurrenceDevice runs the same bodies on the CPU, one block at a time,
// so that the tests check the arithmetic and the bookkeeping of the CUDA path
// on machines without a GPU.
#ifndef ABLATE_WORKER_RECURRENCE_DEVICE_H_
#define ABLATE_WORKER_RECURRENCE_DEVICE_H_

#include <torch/torch.h>

#include <memory>
#include <vector>

#include "common/run_config.h"
#include "worker/device_kernels.h"
#include "worker/recurrence.h"

namespace ablate {

// What runs the kernels: every call is queued in order (on a GPU, on the
// current stream) and may return before it has run.
class RecurrenceDevice {
 public:
  virtual ~RecurrenceDevice() = default;
  virtual void Gemm(const device::RowMajorGemm& gemm) = 0;
  virtual void Run(const device::GatedGatesForward& args) = 0;
  virtual void Run(const device::GatedCandidateForward& args) = 0;
  virtual void Run(const device::GatedCandidateBackward& args) = 0;
  virtual void Run(const device::GatedGatesBackward& args) = 0;
  virtual void Run(const device::LstmForward& args) = 0;
  virtual void Run(const device::LstmBackward& args) = 0;
  virtual void Run(const device::ColumnPartialSums& args) = 0;
  virtual void Run(const device::ColumnFinalSums& args) = 0;
  virtual void Run(const device::TableGradient& args) = 0;
};

// The CPU, running each kernel's blocks in parallel and each block's team as
// one thread; products through LibTorch on the same views as on a GPU, bf16
// operands widened to float.
std::unique_ptr<RecurrenceDevice> MakeHostRecurrenceDevice();

// A product's operands and result as tensors over its raw memory on
// `device` (views, nothing copied): a [m, k] and b [k, n] (transposed views
// where the product asks for a transpose), bf16 or float, and out [m, n].
struct GemmViews {
  torch::Tensor a, b, out;
};
GemmViews ViewsOf(const device::RowMajorGemm& gemm, const torch::Device& device);

// What the forward pass keeps for the backward pass; the layout is private to
// recurrence_device.cc.
struct DeviceActivations {
  std::vector<torch::Tensor> tensors;
  Precision precision = Precision::kTf32;
};

struct DeviceGrads {
  torch::Tensor table, h0, c0, w_h, w_hc, ln_h_gain, ln_h_shift, ln_2_gain, ln_2_shift;
};

// Forward over the T steps of `tokens` ([T, B] int64 symbols), whose input
// pre-activations are the rows of `table` ([V, input_width()]: LN(x W_x) + b
// per symbol). Products of the recurrent weights in `precision` (fp32, tf32,
// or bf16 operands with float accumulation). Fills `acts` for the backward
// pass; with `acts` null keeps only what the next step needs.
RecurrentOutput DeviceForward(RecurrenceDevice& device, const torch::Tensor& table,
                              const torch::Tensor& tokens, const RecurrentState& init,
                              const RecurrentWeights& w, Precision precision,
                              DeviceActivations* acts);

// Gradients given those of hs and of the final state (any may be undefined,
// meaning zero).
DeviceGrads DeviceBackward(RecurrenceDevice& device, const torch::Tensor& d_hs,
                           const torch::Tensor& d_h_final, const torch::Tensor& d_c_final,
                           const RecurrentWeights& w, const DeviceActivations& acts);

}  // namespace ablate

#endif  // ABLATE_WORKER_RECURRENCE_DEVICE_H_
