#include "cli/estimate.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <tuple>

#include "cli/worker_process.h"
#include "common/model_size.h"
#include "common/run_config.h"
#include "common/step_timing.h"
#include "data/text8.h"

namespace ablate {

namespace {

// FLOPs per multiply-accumulate: forward 2, backward 4 (input and weight
// gradients).
constexpr double kForwardFlopsPerMac = 2;
constexpr double kTrainFlopsPerMac = 6;

// Everything a step's time depends on except train.seq. The precision
// matters on CUDA only; `on_cpu` leaves it out (as fp32).
using Shape = std::tuple<Cell, bool, int64_t, int64_t, int64_t, Precision>;

Shape ShapeOf(const RunConfig& config, bool on_cpu) {
  return {config.model.cell,   config.model.layer_norm,
          config.model.hidden, config.model.vocab,
          config.train.batch,  on_cpu ? Precision::kFp32 : config.train.precision};
}

// Bytes in the corpus a job reads, or nullopt when this machine cannot tell.
std::optional<int64_t> CorpusBytes(const DataConfig& data) {
  if (!data.path.empty()) {
    struct stat st;
    if (stat(data.path.c_str(), &st) != 0) return std::nullopt;
    return static_cast<int64_t>(st.st_size);
  }
  return static_cast<int64_t>(text8::kText8Bytes);
}

// What one validation or test evaluation reads (Trainer::Evaluate).
struct EvalSize {
  int64_t symbols = 0;
  int64_t positions = 0;  // forward steps of all streams at once
};

EvalSize EvaluationSize(int64_t split_bytes, const TrainConfig& train) {
  EvalSize size;
  size.symbols = train.eval_bytes > 0 ? std::min(split_bytes, train.eval_bytes) : split_bytes;
  const int64_t streams = std::max<int64_t>(1, std::min(train.batch, size.symbols));
  size.positions = (size.symbols + streams - 1) / streams;
  return size;
}

// Validation evaluations in a run: at every eval_every steps and at the end.
int64_t ValidationCount(const TrainConfig& train) {
  if (train.eval_every <= 0) return 1;
  return train.steps / train.eval_every + (train.steps % train.eval_every != 0 ? 1 : 0);
}

// Times the request's steps in an `ablate-worker time-steps` process.
StatusOr<StepTimingReply> TimeSteps(const StepTimingRequest& request) {
  ABLATE_ASSIGN_OR_RETURN(std::string worker, FindWorkerBinary());
  ABLATE_ASSIGN_OR_RETURN(CommandOutput output,
                          RunWithInput({worker, "time-steps"}, request.ToJson().dump()));
  const std::string command = worker + " time-steps";
  const nlohmann::json json =
      nlohmann::json::parse(output.out, nullptr, /*allow_exceptions=*/false);
  if (!json.is_discarded()) {
    ABLATE_RETURN_IF_ERROR(StepTimingErrorFromJson(json));
  }
  if (output.exit_code != 0) {
    // The last line says why; earlier ones are the worker's log.
    std::string err = output.err;
    while (!err.empty() && err.back() == '\n') err.pop_back();
    err = err.substr(err.find_last_of('\n') + 1);
    return Status::Internal(command + " exited with status " + std::to_string(output.exit_code) +
                            (err.empty() ? "" : ": " + err));
  }
  if (json.is_discarded()) return Status::Internal(command + " printed no JSON reply");
  StatusOr<StepTimingReply> reply = StepTimingReply::FromJson(json);
  if (!reply.ok()) return Status::Internal(command + ": " + reply.status().message());
  if (reply->seconds.size() != request.shapes.size()) {
    return Status::Internal(command + " timed " + std::to_string(reply->seconds.size()) +
                            " shapes of " + std::to_string(request.shapes.size()));
  }
  return reply;
}

// The step timings one estimate needs: one shape per distinct kind of job,
// with a sequence short enough to time within the budget.
struct TimingPlan {
  StepTimingRequest request;
  // Per shape: its index in the request. Each precision is timed unless the
  // device is known to be the CPU beforehand ("auto" may become a GPU); on
  // the CPU the jobs of every precision take the first one's timing, so that
  // they are estimated alike.
  std::map<Shape, size_t> shape_index;
  std::map<Shape, size_t> cpu_shape_index;
  bool cpu_requested = false;

  size_t TimedShape(const RunConfig& c, bool on_cpu) const {
    return on_cpu ? cpu_shape_index.at(ShapeOf(c, /*on_cpu=*/true))
                  : shape_index.at(ShapeOf(c, cpu_requested));
  }
};

TimingPlan PlanTimings(const std::vector<Job>& jobs, const EstimateOptions& options,
                       SweepEstimate* estimate) {
  TimingPlan plan;
  plan.request.device = options.device;
  plan.request.threads = options.threads;
  plan.request.budget_seconds = options.timing_seconds;
  plan.cpu_requested = options.device == "cpu";
  for (const Job& job : jobs) {
    const Shape shape = ShapeOf(job.config, plan.cpu_requested);
    if (plan.shape_index.count(shape)) continue;
    plan.cpu_shape_index.emplace(ShapeOf(job.config, /*on_cpu=*/true), plan.request.shapes.size());
    const RunConfig& c = job.config;
    const double flops_per_position =
        kTrainFlopsPerMac *
        double(ForwardMacsPerSymbol(c.model.cell, c.model.hidden, c.model.vocab)) *
        double(c.train.batch);
    const int64_t seq = std::min(
        c.train.seq,
        std::max<int64_t>(2, static_cast<int64_t>(options.timing_flops / flops_per_position)));
    plan.shape_index.emplace(shape, plan.request.shapes.size());
    plan.request.shapes.push_back({c, seq});
    std::vector<int64_t>& measured = estimate->seq_measured;
    if (std::find(measured.begin(), measured.end(), seq) == measured.end()) {
      measured.push_back(seq);
    }
  }
  std::sort(estimate->seq_measured.begin(), estimate->seq_measured.end());
  estimate->shapes = static_cast<int>(plan.request.shapes.size());
  return plan;
}

// One job's size and time, from the measured seconds per position of its
// shape; evaluation counted where the corpus's size is known.
JobEstimate EstimateJob(const RunConfig& c, double seconds_per_position,
                        std::vector<std::string>* unknown_corpora) {
  JobEstimate e;
  e.parameters = CountParameters(c.model.cell, c.model.layer_norm, c.model.hidden, c.model.vocab);
  e.macs_per_symbol = ForwardMacsPerSymbol(c.model.cell, c.model.hidden, c.model.vocab);
  e.flops_per_step =
      kTrainFlopsPerMac * double(e.macs_per_symbol) * double(c.train.batch * c.train.seq);
  e.flops = e.flops_per_step * double(c.train.steps);
  e.seconds = seconds_per_position * double(c.train.seq) * double(c.train.steps);
  std::optional<int64_t> bytes = CorpusBytes(c.data);
  if (!bytes) {
    const std::string& path = c.data.path;
    if (std::find(unknown_corpora->begin(), unknown_corpora->end(), path) ==
        unknown_corpora->end()) {
      unknown_corpora->push_back(path);
    }
    return e;
  }
  const text8::SplitPoints split = text8::SplitText8(static_cast<uint64_t>(*bytes));
  const EvalSize valid =
      EvaluationSize(static_cast<int64_t>(split.validation_end - split.train_end), c.train);
  const EvalSize test =
      EvaluationSize(*bytes - static_cast<int64_t>(split.validation_end), c.train);
  const int64_t evaluations = ValidationCount(c.train);
  e.eval_symbols = evaluations * valid.symbols + test.symbols;
  e.eval_flops = kForwardFlopsPerMac * double(e.macs_per_symbol) * double(*e.eval_symbols);
  e.flops += e.eval_flops;
  // A forward step costs about a third of a training step (2 of 6 FLOPs per
  // MAC) at the same batch.
  e.seconds += seconds_per_position * kForwardFlopsPerMac / kTrainFlopsPerMac *
               double(evaluations * valid.positions + test.positions);
  return e;
}

}  // namespace

StatusOr<SweepEstimate> EstimateSweep(const std::vector<Job>& jobs,
                                      const EstimateOptions& options) {
  SweepEstimate estimate;
  const TimingPlan plan = PlanTimings(jobs, options, &estimate);

  const auto started = std::chrono::steady_clock::now();
  ABLATE_ASSIGN_OR_RETURN(StepTimingReply timing, TimeSteps(plan.request));
  estimate.measuring_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  estimate.device = timing.device;
  estimate.threads = timing.threads;
  estimate.blas = timing.blas;

  const bool on_cpu = !IsCudaDevice(timing.device);
  for (const Job& job : jobs) {
    const size_t timed = plan.TimedShape(job.config, on_cpu);
    const int64_t timed_seq = plan.request.shapes[timed].seq;
    if (timed_seq < job.config.train.seq) estimate.scaled = true;
    const JobEstimate& e = estimate.jobs.emplace_back(EstimateJob(
        job.config, timing.seconds[timed] / double(timed_seq), &estimate.unknown_corpora));
    estimate.flops += e.flops;
    estimate.seconds += e.seconds;
  }
  return estimate;
}

}  // namespace ablate
