#include "worker/model.h"

#include "worker/init.h"

namespace ablate {

namespace {

std::vector<std::pair<std::string, std::vector<int64_t>>> Layout(Cell cell, bool layer_norm,
                                                                 int64_t hidden, int64_t vocab) {
  const int64_t gates = GateWidth(cell, hidden);
  const int64_t width = cell == Cell::kLstm ? gates : gates + hidden;
  std::vector<std::pair<std::string, std::vector<int64_t>>> layout = {
      {"w_x", {vocab, width}}, {"b_x", {width}}, {"w_h", {hidden, gates}}};
  if (cell != Cell::kLstm) layout.push_back({"w_hc", {hidden, hidden}});
  if (layer_norm) {
    layout.push_back({"ln_x_gain", {width}});
    layout.push_back({"ln_x_shift", {width}});
    layout.push_back({"ln_h_gain", {gates}});
    layout.push_back({"ln_h_shift", {gates}});
    // GRU/MGU: the candidate's h-projection; LSTM: the cell state c'.
    layout.push_back({"ln_2_gain", {hidden}});
    layout.push_back({"ln_2_shift", {hidden}});
  }
  layout.push_back({"w_out", {hidden, vocab}});
  layout.push_back({"b_out", {vocab}});
  return layout;
}

int64_t Numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

}  // namespace

CharRnnImpl::CharRnnImpl(Cell cell, bool layer_norm, int64_t hidden, int64_t vocab,
                         torch::TensorOptions options)
    : cell_(cell),
      layer_norm_(layer_norm),
      hidden_(hidden),
      vocab_(vocab),
      layout_(Layout(cell, layer_norm, hidden, vocab)) {
  // Summed from the layout, not common/model_size.h's closed form: the
  // buffer must fit what is registered, and model_test checks the two agree.
  int64_t total = 0;
  for (const auto& entry : layout_) total += Numel(entry.second);
  flat_params_ = torch::zeros({total}, options);
  flat_grads_ = torch::zeros({total}, options);
  int64_t offset = 0;
  w_x_ = Param("w_x", &offset);
  b_x_ = Param("b_x", &offset);
  w_h_ = Param("w_h", &offset);
  if (cell != Cell::kLstm) w_hc_ = Param("w_hc", &offset);
  if (layer_norm) {
    ln_x_gain_ = Param("ln_x_gain", &offset);
    ln_x_shift_ = Param("ln_x_shift", &offset);
    ln_h_gain_ = Param("ln_h_gain", &offset);
    ln_h_shift_ = Param("ln_h_shift", &offset);
    ln_2_gain_ = Param("ln_2_gain", &offset);
    ln_2_shift_ = Param("ln_2_shift", &offset);
  }
  w_out_ = Param("w_out", &offset);
  b_out_ = Param("b_out", &offset);
  TORCH_CHECK(offset == total, "parameter layout does not fill the flat buffer");
}

torch::Tensor CharRnnImpl::Param(const std::string& name, int64_t* offset) {
  std::vector<int64_t> shape;
  for (const auto& entry : layout_) {
    if (entry.first == name) shape = entry.second;
  }
  const int64_t n = Numel(shape);
  torch::Tensor p = register_parameter(name, flat_params_.narrow(0, *offset, n).view(shape));
  // Autograd accumulates into an existing .grad in place, so every gradient
  // lands in the flat gradient buffer.
  p.mutable_grad() = flat_grads_.narrow(0, *offset, n).view(shape);
  *offset += n;
  return p;
}

std::vector<int64_t> CharRnnImpl::input_groups() const {
  switch (cell_) {
    case Cell::kLstm: return {4 * hidden_};
    case Cell::kGru: return {2 * hidden_, hidden_};
    case Cell::kMgu: return {hidden_, hidden_};
  }
  return {};
}

void CharRnnImpl::Initialize(Init init, at::Generator& gen) {
  torch::NoGradGuard no_grad;
  // Draw on the CPU in double so a seed gives the same weights on any device.
  auto draw = [&](const torch::Tensor& w, int64_t group, int64_t gate) {
    torch::Tensor tmp = torch::empty(w.sizes(), torch::TensorOptions().dtype(torch::kDouble));
    InitWeight(init, tmp, group, gate, gen);
    w.copy_(tmp);
  };
  int64_t col = 0;
  for (int64_t group : input_groups()) {
    draw(w_x_.narrow(1, col, group), group, hidden_);
    col += group;
  }
  draw(w_h_, w_h_.size(1), hidden_);
  if (w_hc_.defined()) draw(w_hc_, hidden_, hidden_);
  draw(w_out_, vocab_, vocab_);

  b_x_.zero_();
  if (cell_ == Cell::kLstm) {
    b_x_.narrow(0, 0, hidden_).fill_(1.0);  // forget gate
  } else {
    b_x_.narrow(0, 0, GateWidth(cell_, hidden_)).fill_(-1.0);  // update/reset gates
  }
  b_out_.zero_();
  if (layer_norm_) {
    for (auto* gain : {&ln_x_gain_, &ln_h_gain_, &ln_2_gain_}) gain->fill_(1.0);
    for (auto* shift : {&ln_x_shift_, &ln_h_shift_, &ln_2_shift_}) shift->zero_();
  }
}

RecurrentWeights CharRnnImpl::recurrent_weights() const {
  return {cell_, layer_norm_, w_h_, w_hc_, ln_h_gain_, ln_h_shift_, ln_2_gain_, ln_2_shift_};
}

RecurrentState CharRnnImpl::InitialState(int64_t batch) const {
  RecurrentState state;
  state.h = torch::zeros({batch, hidden_}, flat_params_.options());
  if (cell_ == Cell::kLstm) state.c = torch::zeros({batch, hidden_}, flat_params_.options());
  return state;
}

ModelOutput CharRnnImpl::Forward(const torch::Tensor& tokens, const RecurrentState& state,
                                 Kernel kernel, Precision precision) {
  const int64_t steps = tokens.size(0), batch = tokens.size(1);
  // The input projection of a one-hot symbol is a row of w_x, so LN(x W_x) + b
  // is a per-symbol table: normalise the V rows once, then gather.
  torch::Tensor table;
  if (layer_norm_) {
    std::vector<torch::Tensor> groups;
    int64_t col = 0;
    for (int64_t group : input_groups()) {
      groups.push_back(torch::layer_norm(w_x_.narrow(1, col, group), {group},
                                         ln_x_gain_.narrow(0, col, group),
                                         ln_x_shift_.narrow(0, col, group), kLayerNormEps));
      col += group;
    }
    table = (groups.size() == 1 ? groups[0] : torch::cat(groups, 1)) + b_x_;
  } else {
    table = w_x_ + b_x_;
  }
  RecurrentOutput rec = RunRecurrence(kernel, table, tokens, state, recurrent_weights(), precision);
  ModelOutput out;
  out.logits = torch::addmm(b_out_, rec.hs.reshape({steps * batch, hidden_}), w_out_);
  out.state = rec.final;
  return out;
}

int64_t CharRnnImpl::ForwardMacsPerSymbol() const {
  return ablate::ForwardMacsPerSymbol(cell_, hidden_, vocab_);
}

}  // namespace ablate
