#include "common/model_size.h"

#include <limits>

namespace ablate {

// Width of the recurrent projection w_h: the GRU's and MGU's gates, or all
// four LSTM gates.
int64_t GateWidth(Cell cell, int64_t hidden) {
  switch (cell) {
    case Cell::kLstm:
      return 4 * hidden;
    case Cell::kGru:
      return 2 * hidden;
    case Cell::kMgu:
      return hidden;
  }
  return 0;
}

int64_t CountParameters(Cell cell, bool layer_norm, int64_t hidden, int64_t vocab) {
  const int64_t gates = GateWidth(cell, hidden);
  // The GRU and MGU project the input to the candidate too.
  const int64_t input_width = cell == Cell::kLstm ? gates : gates + hidden;
  int64_t count = vocab * input_width + input_width + hidden * gates;
  if (cell != Cell::kLstm) count += hidden * hidden;
  // Gains and shifts of the input projection, the gates' recurrent projection
  // and the third normalisation (the candidate's projection, or the LSTM's c').
  if (layer_norm) count += 2 * (input_width + gates + hidden);
  return count + hidden * vocab + vocab;
}

int64_t ForwardMacsPerSymbol(Cell cell, int64_t hidden, int64_t vocab) {
  int64_t macs = hidden * GateWidth(cell, hidden) + hidden * vocab;
  if (cell != Cell::kLstm) macs += hidden * hidden;
  return macs;
}

int64_t TrainingBytesLowerBound(const ModelConfig& model, const TrainConfig& train) {
  // In long double, then saturated: the validated maxima stay within int64
  // (about 5.6e15 bytes), but callers may pass settings not yet validated.
  const long double parameters = static_cast<long double>(
      CountParameters(model.cell, model.layer_norm, model.hidden, model.vocab));
  const long double activations = static_cast<long double>(train.seq) * train.batch *
                                  (model.hidden + GateWidth(model.cell, model.hidden));
  const long double bytes = 4.0L * (5.0L * parameters + activations);
  const long double most = static_cast<long double>(std::numeric_limits<int64_t>::max());
  return bytes >= most ? std::numeric_limits<int64_t>::max() : static_cast<int64_t>(bytes);
}

}  // namespace ablate
