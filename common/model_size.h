// Sizes of the CharRnn (worker/model.h) from its equations (shared/MODEL.md),
// without building it: the CLI's report and cost estimate count with these
// and do not link LibTorch. worker/model_test.cc checks them against the
// built model.
#ifndef ABLATE_COMMON_MODEL_SIZE_H_
#define ABLATE_COMMON_MODEL_SIZE_H_

#include <cstdint>

#include "common/run_config.h"

namespace ablate {

// Width of the recurrent projection w_h: the GRU's and MGU's gates, or all
// four LSTM gates.
int64_t GateWidth(Cell cell, int64_t hidden);

// Parameters of one recurrent layer with `hidden` units reading and
// predicting `vocab` symbols: the input projection of every gate group
// (V x G) and its bias, the recurrent projections (H x gates, and for the GRU
// and MGU the candidate's H x H), with layer norm a gain and a shift per
// normalised width, and the output layer (H x V + V).
int64_t CountParameters(Cell cell, bool layer_norm, int64_t hidden, int64_t vocab);

// Multiply-accumulates of one forward step for one stream: the recurrent and
// output matmuls (the input side is a row gather).
int64_t ForwardMacsPerSymbol(Cell cell, int64_t hidden, int64_t vocab);

// Bytes that training `model` with `train` certainly allocates on its
// device, in float32: the parameters with their gradients and Adam's three
// buffers (five copies), and one step's hidden states and gate activations,
// [T, B, H + gates]. A lower bound: the peak is several
// times its activation part (the seed's size peaks at about 3.3 GiB, against
// about 0.7 GiB here). Saturates at INT64_MAX rather than overflow.
int64_t TrainingBytesLowerBound(const ModelConfig& model, const TrainConfig& train);

}  // namespace ablate

#endif  // ABLATE_COMMON_MODEL_SIZE_H_
