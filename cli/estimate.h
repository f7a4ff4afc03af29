// What a sweep will cost before it runs: per job its parameter count, FLOPs
// and training time, the time coming from real trainer steps measured on this
// machine for each distinct model shape by an `ablate-worker time-steps`
// process (worker/time_steps_command.h; the CLI does not link LibTorch), at a
// shorter sequence length for large models and scaled linearly to the jobs'
// (which overstates the per-step part that does not grow with the sequence:
// clipping and the Adam update). Each train.precision is timed apart, except
// on the CPU, which ignores it.
//
// FLOPs count 2 per multiply-accumulate forward and 4 backward: a training
// step is 6 * (recurrent + output MACs per symbol) * batch * seq, an
// evaluation 2 * MACs per symbol evaluated.
#ifndef ABLATE_CLI_ESTIMATE_H_
#define ABLATE_CLI_ESTIMATE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/spec.h"
#include "common/status.h"

namespace ablate {

struct EstimateOptions {
  std::string device = "auto";  // as TrainerOptions::device
  int threads = 0;              // the worker's intra-op threads; 0: the machine's cores
  // Steps are timed at a sequence length that keeps one near this many
  // FLOPs (at least 2 and at most train.seq positions), and scaled linearly
  // to train.seq, so that measuring stays quick.
  double timing_flops = 8e9;
  // Timed steps per shape stop after this long (MeasureStepSeconds).
  double timing_seconds = 0.5;
};

struct JobEstimate {
  int64_t parameters = 0;
  int64_t macs_per_symbol = 0;
  double flops_per_step = 0;
  // Bytes the evaluations read (validation at every eval point, test once);
  // unset when the corpus size is unknown here.
  std::optional<int64_t> eval_symbols;
  double eval_flops = 0;  // of those evaluations; 0 when unknown
  double flops = 0;       // the whole job: training and evaluation
  double seconds = 0;     // the whole job on the measured device
};

struct SweepEstimate {
  std::vector<JobEstimate> jobs;  // parallel to the jobs estimated
  double flops = 0;
  double seconds = 0;  // sum over jobs: device-seconds
  std::string device;  // "cpu" or "cuda:0"
  int threads = 0;
  std::string blas;                   // OpenBLAS's kernels, "" when not OpenBLAS
  int shapes = 0;  // distinct (cell, layer norm, hidden, vocab, batch, precision) measured
  std::vector<int64_t> seq_measured;  // every sequence length a step was timed at
  bool scaled = false;                // some steps were timed shorter than the jobs train
  double measuring_seconds = 0;
  // Corpora whose size is unknown here, so their evaluations are not counted.
  std::vector<std::string> unknown_corpora;
};

// Measures (in an ablate-worker found as FindWorkerBinary finds it) and
// multiplies out. Errors: no ablate-worker (NotFound), a device this machine
// lacks or a trainer that cannot be built for a job's shape (the worker's
// Status), a worker that fails or answers nonsense (Internal, naming it).
StatusOr<SweepEstimate> EstimateSweep(const std::vector<Job>& jobs, const EstimateOptions& options);

}  // namespace ablate

#endif  // ABLATE_CLI_ESTIMATE_H_
