// CharRnn: the seed's byte-level language model. One recurrent layer (LSTM,
// GRU or MGU, layer norm on or off) reads one symbol per step and a linear
// layer predicts the next symbol (equations in shared/MODEL.md).
//
// All parameters live in one flat buffer and their gradients in another, so
// gradient clipping and the optimizer step are a handful of operations on two
// tensors instead of a few per parameter.
#ifndef ABLATE_WORKER_MODEL_H_
#define ABLATE_WORKER_MODEL_H_

#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "common/model_size.h"
#include "common/run_config.h"
#include "worker/recurrence.h"

namespace ablate {

struct ModelOutput {
  torch::Tensor logits;  // [T * B, V]
  RecurrentState state;  // after the last step, still attached to the graph
};

class CharRnnImpl : public torch::nn::Module {
 public:
  // Allocates the parameters (uninitialised) on `options`' device and dtype.
  // `vocab` may be any size >= 2 here; configs restrict it to 27 or 256.
  CharRnnImpl(Cell cell, bool layer_norm, int64_t hidden, int64_t vocab,
              torch::TensorOptions options = {});

  // Draws every weight with `init` from `gen` and sets biases and layer norm
  // parameters to the seed's values (gate bias -1 for GRU and MGU, forget bias
  // +1 for LSTM, gains 1, shifts 0).
  void Initialize(Init init, at::Generator& gen);

  // tokens: [T, B] int64 symbols. The state is not modified. `precision`
  // sets the recurrent products on a GPU (RunRecurrence).
  ModelOutput Forward(const torch::Tensor& tokens, const RecurrentState& state, Kernel kernel,
                      Precision precision = Precision::kFp32);

  // Zero state for `batch` streams.
  RecurrentState InitialState(int64_t batch) const;

  // The flat parameter and gradient buffers; every parameter (and its .grad)
  // is a view into them.
  torch::Tensor& flat_params() { return flat_params_; }
  const torch::Tensor& flat_params() const { return flat_params_; }
  torch::Tensor& flat_grads() { return flat_grads_; }
  int64_t parameter_count() const { return flat_params_.numel(); }
  // (name, shape) of every parameter in buffer order: a checkpoint's layout.
  const std::vector<std::pair<std::string, std::vector<int64_t>>>& layout() const {
    return layout_;
  }

  Cell cell() const { return cell_; }
  bool layer_norm() const { return layer_norm_; }
  int64_t hidden() const { return hidden_; }
  int64_t vocab() const { return vocab_; }
  // Widths of the input-projection groups, each normalised on its own:
  // GRU {2H, H}, MGU {H, H}, LSTM {4H}.
  std::vector<int64_t> input_groups() const;

  // Multiply-accumulates of one forward step for one stream, for FLOP counts
  // (common/model_size.h's ForwardMacsPerSymbol).
  int64_t ForwardMacsPerSymbol() const;

 private:
  // Registers the next parameter of the layout as a view into the flat buffers.
  torch::Tensor Param(const std::string& name, int64_t* offset);
  RecurrentWeights recurrent_weights() const;

  Cell cell_;
  bool layer_norm_;
  int64_t hidden_, vocab_;
  torch::Tensor flat_params_, flat_grads_;
  std::vector<std::pair<std::string, std::vector<int64_t>>> layout_;

  torch::Tensor w_x_, b_x_, ln_x_gain_, ln_x_shift_;  // input side [V, G], [G]
  torch::Tensor w_h_, w_hc_, ln_h_gain_, ln_h_shift_, ln_2_gain_, ln_2_shift_;
  torch::Tensor w_out_, b_out_;  // [H, V], [V]
};
TORCH_MODULE(CharRnn);

}  // namespace ablate

#endif  // ABLATE_WORKER_MODEL_H_
