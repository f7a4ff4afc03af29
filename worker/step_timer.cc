#include "worker/step_timer.h"

#include <algorithm>
#include <chrono>

#include "data/text8.h"
#include "worker/trainer.h"

namespace ablate {

namespace {

constexpr int kMaxTimedSteps = 5;

// Step times do not depend on the text; any English will do.
constexpr const char* kStandInText =
    "A recurrent network reads one character at a time and predicts the next one. Its state "
    "carries what it has seen so far, and layer normalization keeps the activations of the "
    "gates in a range where they still learn. ";

text8::Corpus StandInCorpus(int64_t min_train_bytes) {
  const std::string paragraph = text8::Clean(kStandInText);
  std::string text;
  // The training split is 90%; the margin keeps rounding from falling short.
  while (static_cast<int64_t>(text.size()) * 9 / 10 < min_train_bytes + 64) text += paragraph;
  return std::move(text8::Corpus::FromBytes(std::move(text), "stand-in corpus")).value();
}

}  // namespace

StatusOr<double> MeasureStepSeconds(const RunConfig& config, const std::string& device, int64_t seq,
                                    double budget_seconds) {
  RunConfig timed = config;
  timed.data = DataConfig();
  timed.data.path = "stand-in corpus";
  timed.model.init = Init::kXavier;
  timed.train.seq = seq;
  timed.train.steps = kMaxTimedSteps + 1;
  timed.train.checkpoint_every = 0;
  TrainerOptions options;
  options.device = device;
  const text8::Corpus corpus = StandInCorpus(timed.train.batch * (seq + 1));
  ABLATE_ASSIGN_OR_RETURN(std::unique_ptr<Trainer> trainer,
                          Trainer::Create(timed, options, corpus));
  // item() waits for a GPU to finish the step.
  trainer->TrainStep().item<double>();
  const auto start = std::chrono::steady_clock::now();
  double fastest = 0;
  for (int i = 0; i < kMaxTimedSteps; ++i) {
    const auto step_start = std::chrono::steady_clock::now();
    trainer->TrainStep().item<double>();
    const auto now = std::chrono::steady_clock::now();
    const double seconds = std::chrono::duration<double>(now - step_start).count();
    fastest = i == 0 ? seconds : std::min(fastest, seconds);
    if (std::chrono::duration<double>(now - start).count() >= budget_seconds) break;
  }
  return fastest;
}

}  // namespace ablate
