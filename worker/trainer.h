// Trainer: trains one configuration of the seed's experiment on one device.
//
// Data protocol (shared/MODEL.md's open choices, decided here):
//  - The training split is cut into B contiguous streams of L = N / B bytes;
//    step s reads window w = s mod W of every stream (W = (L - 1) / T windows
//    per epoch): T input symbols and the T symbols after them. The recurrent
//    state is carried from one window to the next (truncated BPTT) and reset
//    to zero when the streams wrap around to a new epoch.
//  - Training bpc is the mean loss, in bits, over the steps since the last
//    training point. Validation and test bpc are the mean over every byte of
//    the split (or its first eval_bytes), each byte predicted from all bytes
//    before it in its stream; the split is read as up to B streams, each
//    starting from a zero state, its first byte predicted from the byte that
//    precedes it in the corpus.
//  - Adam (beta 0.9, 0.999, eps 1e-8) at a fixed learning rate; the global
//    gradient norm is clipped to clip_norm before each update.
//
// Everything that decides the next step is in a checkpoint: parameters, Adam's
// moments and step, the carried state, the data position, the running loss of
// the current training-point window and the elapsed training time. Restoring
// one in a new process and training on gives the same losses, bit for bit, as
// never stopping (same device and thread count).
//
// With the CUDA kernel (and kCudaOnCpu) a step is written so that it can be
// captured as a CUDA graph: every tensor it reads or writes is allocated
// once (the window's symbols, the carried state, the loss), Adam's bias
// corrections reach it as a tensor, and the loss is a log-sum-exp minus the
// target's logit, whose gradient has no atomics (LibTorch's CUDA NLL loss
// is not deterministic). Evaluation likewise, a window at a time.
// train.precision sets the recurrent products and, on a GPU, whether
// LibTorch's other float products may use TF32 (tf32 and bf16: yes).
//
// Not thread-safe; one Trainer per thread.
#ifndef ABLATE_WORKER_TRAINER_H_
#define ABLATE_WORKER_TRAINER_H_

#include <torch/torch.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "common/run_config.h"
#include "common/status.h"
#include "data/text8.h"
#include "worker/cuda_support.h"
#include "worker/model.h"
#include "worker/run_listener.h"

namespace ablate {

const char* SplitName(Split split);

struct TrainerOptions {
  // "cpu", "cuda", "cuda:N" or "auto" (a GPU when one is visible).
  std::string device = "auto";
  // kFused on the CPU, kCuda on a GPU, unless forced. kCudaOnCpu runs the
  // CUDA path's kernels and step on the CPU, for tests.
  enum class KernelChoice {
    kAuto,
    kFused,
    kReference,
    kCuda,
    kCudaOnCpu
  } kernel = KernelChoice::kAuto;
  // With the CUDA kernel, capture the training step and a window of
  // evaluation as CUDA graphs once and replay them.
  bool cuda_graphs = true;
  // The text8-format file to train on; empty: config.data.path. Callers
  // resolve `corpus: text8` to its cached file (see text8_fetch.h).
  std::string corpus_path;
  // Where periodic checkpoints go; required when train.checkpoint_every > 0.
  std::string checkpoint_path;
};

struct TrainSummary {
  enum class Outcome {
    kFinished,  // the step budget is spent and the test split evaluated
    kStopped,   // the listener asked to stop; resume from a checkpoint
    kDiverged,  // the loss became NaN or infinite; `message` says where
  } outcome = Outcome::kFinished;
  std::string message;
  int64_t step = 0;
  double final_train_bpc = 0, final_valid_bpc = 0, test_bpc = 0;
  double wall_time = 0;
};

// Resolves a device setting; errors name the setting and the value.
StatusOr<torch::Device> ParseDevice(const std::string& device);

// ResourceExhausted, naming model.hidden, train.batch and train.seq, when
// training `config` certainly needs more than `available_bytes`
// (TrainingBytesLowerBound in common/model_size.h); OK when it may fit or
// available_bytes is unknown (negative).
Status CheckMemory(const RunConfig& config, int64_t available_bytes);

class Trainer {
 public:
  // Loads the corpus, builds and initialises the model from config.train.seed.
  // Errors (InvalidArgument or NotFound) name the setting and the value: an
  // unusable device, a corpus shorter than one batch, a byte outside the
  // alphabet when model.vocab is 27, a missing file. ResourceExhausted: on
  // the CPU a model that certainly does not fit in the memory available
  // (CheckMemory), or any device's allocator refusing. (Past RAM or a
  // cgroup's limit under Linux's default overcommit, the kernel's OOM killer
  // ends the process instead: no allocator refuses.)
  static StatusOr<std::unique_ptr<Trainer>> Create(const RunConfig& config,
                                                   const TrainerOptions& options);
  // The same on a corpus already in memory; options.corpus_path and
  // config.data are not read.
  static StatusOr<std::unique_ptr<Trainer>> Create(const RunConfig& config,
                                                   const TrainerOptions& options,
                                                   const text8::Corpus& corpus);

  // Trains until the step budget is spent (then evaluates the test split) or
  // the listener asks to stop. An allocation that fails on the way is
  // ResourceExhausted naming the step (any other exception from LibTorch,
  // Internal); the trainer is not to be used after it. So too for the
  // checkpoint calls below.
  StatusOr<TrainSummary> Run(TrainerListener* listener);

  // Writes a checkpoint atomically (temporary file, fsync, rename).
  Status SaveCheckpoint(const std::string& path) const;

  // Loads a checkpoint written for the same configuration. The file is read
  // and verified whole before anything changes: a corrupt, truncated or
  // foreign file is an error that leaves the trainer as it was.
  Status RestoreCheckpoint(const std::string& path);

  // Validation (or test) bpc of the current parameters.
  double Evaluate(Split split);

  int64_t step() const { return step_; }
  const RunConfig& config() const { return config_; }
  CharRnn& model() { return model_; }
  const CharRnn& model() const { return model_; }
  torch::Device device() const { return device_; }
  Kernel kernel() const { return kernel_; }
  int64_t bytes_per_step() const { return config_.train.batch * config_.train.seq; }

  // One optimizer step; returns the step's mean loss in nats (on the device,
  // no host sync).
  torch::Tensor TrainStep();

  // On a GPU, the most memory LibTorch held in tensors on it since the
  // trainer was built (or the last ResetPeakMemory), in bytes; -1 elsewhere.
  int64_t PeakDeviceBytes() const;
  void ResetPeakMemory();

 private:
  // Device-step buffers for evaluating with a given number of streams.
  struct EvalBuffers {
    torch::Tensor inputs, targets, valid, total;
    RecurrentState state;
    int graph = -1;
  };

  Trainer(const RunConfig& config, const TrainerOptions& options, torch::Device device,
          Kernel kernel);

  // Run, Save- and RestoreCheckpoint without the translation of exceptions
  // into a Status.
  StatusOr<TrainSummary> RunSteps(TrainerListener* listener);
  Status WriteCheckpoint(const std::string& path) const;
  Status ReadCheckpoint(const std::string& path);
  struct CheckpointContents;
  // The archive in a verified payload; DataLoss naming `path` if unreadable.
  static StatusOr<CheckpointContents> ParseCheckpoint(const std::string& payload,
                                                      const std::string& path);
  // OK when the contents belong to this configuration; FailedPrecondition
  // (another configuration) or DataLoss otherwise.
  Status CheckFits(const CheckpointContents& contents, const std::string& path) const;
  // What RunSteps is doing, for the error when something throws.
  void SetActivity(const char* activity, int64_t step) {
    activity_ = activity;
    activity_step_ = step;
  }
  // Build's allocating part, after the settings are checked.
  static StatusOr<std::unique_ptr<Trainer>> BuildOn(const RunConfig& config,
                                                    const TrainerOptions& options,
                                                    const text8::Corpus* corpus,
                                                    torch::Device device, Kernel kernel);
  // BuildOn's part on the trainer's device: loads the data (`corpus`, or
  // null for the file the options or config name) and allocates.
  Status Allocate(const text8::Corpus* corpus);
  // Both Creates: `corpus` null means the file the options or config name.
  static StatusOr<std::unique_ptr<Trainer>> Build(const RunConfig& config,
                                                  const TrainerOptions& options,
                                                  const text8::Corpus* corpus);
  // `name` (a path) goes into error messages.
  Status LoadData(const text8::Corpus& corpus, const std::string& name);
  torch::Tensor Window(int64_t window) const;
  // Backward from `loss` into the flat gradients, clipped to
  // train.clip_norm, and Adam's moments updated from them: what both steps
  // share before the parameter update.
  void BackwardAndMoments(const torch::Tensor& loss);
  double ElapsedSeconds() const;
  // The device step (see above): the graph-capturable training step and
  // evaluation window, on the CUDA runner's stream when there is one.
  bool device_step() const { return kernel_ == Kernel::kCuda || kernel_ == Kernel::kCudaOnCpu; }
  template <typename Work>
  void OnDevice(const Work& work) const;
  torch::Tensor DeviceTrainStep();
  void DeviceStepBody();
  void CaptureTrainStep();
  double DeviceEvaluate(int64_t begin, int64_t size);
  void EvalWindowBody(EvalBuffers& b, const torch::Tensor& inputs, const torch::Tensor& targets,
                      const torch::Tensor& valid);

  RunConfig config_;
  TrainerOptions options_;
  torch::Device device_;
  Kernel kernel_;
  CharRnn model_{nullptr};

  torch::Tensor symbols_;       // the whole corpus as uint8 symbols, on the device
  int64_t train_size_ = 0, valid_begin_ = 0, valid_size_ = 0, test_begin_ = 0, test_size_ = 0;
  int64_t stream_length_ = 0;   // L
  int64_t windows_per_epoch_ = 0;
  torch::Tensor stream_offsets_;  // [T + 1, B] offsets of a window's bytes from its start

  // Adam.
  torch::Tensor adam_m_, adam_v_, adam_denom_;
  int64_t adam_step_ = 0;

  // The device step: its runner (on a GPU), the window's symbols [T + 1, B],
  // Adam's bias corrections [1 / sqrt(1 - beta2^t), 1 - beta1^t], the step's
  // loss, the captured step and each evaluation's buffers by stream count.
  std::unique_ptr<CudaRunner> cuda_;
  torch::Tensor window_tokens_, adam_corrections_, step_loss_;
  int train_graph_ = -1;
  std::map<int64_t, EvalBuffers> eval_buffers_;

  // Training progress.
  int64_t step_ = 0;
  RecurrentState state_;
  torch::Tensor loss_sum_;      // sum of step losses (nats) since the last training point
  int64_t loss_steps_ = 0;
  double elapsed_before_ = 0;   // training seconds in earlier processes
  const char* activity_ = "training step";  // SetActivity
  int64_t activity_step_ = 0;
  std::chrono::steady_clock::time_point run_started_;
  bool running_ = false;
  at::Generator generator_;
};

// Sets LibTorch's intra-op threads: `threads` if > 0, else the machine's cores,
// and calls KeepFreedMemory. Returns the number of threads in effect.
int ConfigureThreads(int threads);

// Makes this process keep the memory it frees for its next allocations
// instead of returning it to the system (ConfigureThreads calls it): the
// trainer frees and allocates the same large buffers every step.
void KeepFreedMemory();

}  // namespace ablate

#endif  // ABLATE_WORKER_TRAINER_H_
