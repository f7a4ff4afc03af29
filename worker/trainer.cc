#include "worker/trainer.h"

#include <malloc.h>
#include <zlib.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <thread>

#include "common/file.h"
#include "common/model_size.h"
#include "worker/memory.h"

namespace ablate {

namespace {

// What a LibTorch error says, without the backtrace and without the
// "[enforce fail at FILE:LINE] CONDITION. VALUES. " that starts an
// allocator's refusal ("... err == 0. 12 vs 0. DefaultCPUAllocator: can't
// allocate memory: ...").
std::string LibTorchMessage(const c10::Error& e) {
  std::string message = e.what_without_backtrace();
  if (message.rfind("[enforce fail at ", 0) == 0) {
    const size_t allocator = message.find("DefaultCPUAllocator: ");
    const size_t bracket = message.find("] ");
    const size_t sentence = bracket == std::string::npos ? bracket : message.find(". ", bracket);
    if (allocator != std::string::npos) {
      message = message.substr(allocator);
    } else if (sentence != std::string::npos) {
      message = message.substr(sentence + 2);
    }
  }
  return message;
}

// Whether a LibTorch error is an allocator refusing (CUDA's out of memory, or
// the CPU allocator's enforce).
bool IsAllocationFailure(const c10::Error& e) {
  if (dynamic_cast<const c10::OutOfMemoryError*>(&e) != nullptr) return true;
  const std::string message = e.what_without_backtrace();
  return message.find("can't allocate memory") != std::string::npos ||
         message.find("out of memory") != std::string::npos;
}

// Runs `body` (returning a Status or a StatusOr) and turns what LibTorch or
// the standard library throws into a Status that starts with what(): a
// failed allocation is ResourceExhausted, anything else Internal. A worker
// then fails the job with the reason instead of aborting.
template <typename What, typename Body>
auto Guarded(const What& what, const Body& body) -> decltype(body()) {
  try {
    return body();
  } catch (const c10::Error& e) {
    const std::string message = what() + ": " + LibTorchMessage(e);
    return IsAllocationFailure(e) ? Status::ResourceExhausted(message) : Status::Internal(message);
  } catch (const std::bad_alloc&) {
    return Status::ResourceExhausted(what() + ": out of memory");
  } catch (const std::exception& e) {
    return Status::Internal(what() + ": " + e.what());
  }
}

constexpr double kLn2 = 0.69314718055994530942;
constexpr double kAdamBeta1 = 0.9;
constexpr double kAdamBeta2 = 0.999;
constexpr double kAdamEps = 1e-8;
// Added to the gradient norm before dividing, as torch.nn.utils.clip_grad_norm_.
constexpr double kClipEps = 1e-6;

// Checkpoint file: magic, format version, payload size, CRC-32 of the payload,
// then the payload (a LibTorch archive). Integers little-endian.
constexpr char kCheckpointMagic[8] = {'A', 'B', 'L', 'A', 'T', 'E', 'C', 'K'};
constexpr uint32_t kCheckpointVersion = 1;
constexpr size_t kCheckpointHeaderBytes = 8 + 4 + 8 + 4;

// A checkpoint's checksum: the standard CRC-32, zlib's.
uint32_t Crc32(std::string_view data) {
  return static_cast<uint32_t>(
      crc32_z(0L, reinterpret_cast<const Bytef*>(data.data()), data.size()));
}

template <typename Int>
void PutLe(std::string* out, Int value) {
  for (size_t i = 0; i < sizeof(Int); ++i) out->push_back(char((uint64_t(value) >> (8 * i)) & 0xFF));
}

template <typename Int>
Int GetLe(const char* p) {
  uint64_t v = 0;
  for (size_t i = 0; i < sizeof(Int); ++i) v |= uint64_t(static_cast<unsigned char>(p[i])) << (8 * i);
  return static_cast<Int>(v);
}

// The parts of a configuration a checkpoint must agree with to be resumed:
// everything but where the data file lives on this machine.
nlohmann::json ResumeIdentity(const RunConfig& config) {
  nlohmann::json j = config.ToJson();
  j["data"].erase("path");
  return j;
}

// The loss of a step: the mean over positions of log-sum-exp of the logits
// minus the target's logit. The CPU kernels keep LibTorch's cross entropy;
// the device step takes this form because LibTorch's CUDA NLL loss is not
// deterministic, while this gradient scatters one value to each row.
torch::Tensor PositionLosses(const torch::Tensor& logits, const torch::Tensor& targets) {
  return torch::logsumexp(logits, {1}) - logits.gather(1, targets.unsqueeze(1)).squeeze(1);
}

// On a GPU, whether LibTorch's float products may use TF32, from
// train.precision (tf32 and bf16: yes), for as long as it lives; then as it
// was. (A captured graph keeps what was set when it was captured.)
class PrecisionScope {
 public:
  PrecisionScope(const torch::Device& device, Precision precision) : active_(device.is_cuda()) {
    if (!active_) return;
    saved_ = at::globalContext().allowTF32CuBLAS();
    at::globalContext().setAllowTF32CuBLAS(precision != Precision::kFp32);
  }
  ~PrecisionScope() {
    if (active_) at::globalContext().setAllowTF32CuBLAS(saved_);
  }
  PrecisionScope(const PrecisionScope&) = delete;
  PrecisionScope& operator=(const PrecisionScope&) = delete;

 private:
  bool active_;
  bool saved_ = false;
};

using KernelChoice = TrainerOptions::KernelChoice;

StatusOr<Kernel> ChooseKernel(KernelChoice choice, const torch::Device& device) {
  const bool cpu = device.is_cpu();
  auto refuse = [&](const char* kernel, const char* where) {
    return Status::InvalidArgument(std::string("the ") + kernel + " kernel runs " + where +
                                   ", device is " + device.str());
  };
  switch (choice) {
    case KernelChoice::kAuto:
      if (cpu) return Kernel::kFused;
      return CudaKernelsBuilt() ? Kernel::kCuda : Kernel::kReference;
    case KernelChoice::kReference:
      return Kernel::kReference;
    case KernelChoice::kFused:
      if (!cpu) return refuse("fused", "on the CPU only");
      return Kernel::kFused;
    case KernelChoice::kCudaOnCpu:
      if (!cpu) return refuse("cuda-on-cpu", "on the CPU only");
      return Kernel::kCudaOnCpu;
    case KernelChoice::kCuda:
      if (!device.is_cuda()) return refuse("cuda", "on a CUDA GPU only");
      if (!CudaKernelsBuilt()) {
        return Status::InvalidArgument(
            "the cuda kernel is not in this build: build against a CUDA LibTorch with nvcc");
      }
      return Kernel::kCuda;
  }
  return Status::InvalidArgument("unknown kernel choice");
}

Status UnusableCheckpoint(const std::string& path, const std::string& why) {
  return Status::DataLoss("checkpoint " + path + " is not usable: " + why);
}

// The payload of the checkpoint file at `path`, its header and checksum
// verified: NotFound, or DataLoss naming what is wrong with the file.
StatusOr<std::string> ReadCheckpointPayload(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("checkpoint " + path + ": " + std::strerror(errno));
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (data.size() < kCheckpointHeaderBytes ||
      std::memcmp(data.data(), kCheckpointMagic, sizeof(kCheckpointMagic)) != 0) {
    return UnusableCheckpoint(path,
                              "not an ablate checkpoint (bad magic or shorter than its header)");
  }
  const uint32_t version = GetLe<uint32_t>(data.data() + 8);
  const uint64_t payload_size = GetLe<uint64_t>(data.data() + 12);
  const uint32_t crc = GetLe<uint32_t>(data.data() + 20);
  if (version != kCheckpointVersion) {
    return UnusableCheckpoint(path, "format version " + std::to_string(version) +
                                        ", this build reads " + std::to_string(kCheckpointVersion));
  }
  if (data.size() - kCheckpointHeaderBytes != payload_size) {
    return UnusableCheckpoint(path, "truncated or padded: the header says " +
                                        std::to_string(payload_size) +
                                        " payload bytes, the file has " +
                                        std::to_string(data.size() - kCheckpointHeaderBytes));
  }
  std::string payload = data.substr(kCheckpointHeaderBytes);
  if (Crc32(payload) != crc) return UnusableCheckpoint(path, "checksum mismatch");
  return payload;
}

}  // namespace

// The archive's entries, as read (WriteCheckpoint names them).
struct Trainer::CheckpointContents {
  torch::Tensor params, adam_m, adam_v, state_h, state_c, loss_sum, rng;
  c10::IValue config, step, window, adam_step, loss_steps, elapsed;
};

StatusOr<Trainer::CheckpointContents> Trainer::ParseCheckpoint(const std::string& payload,
                                                               const std::string& path) {
  CheckpointContents c;
  try {
    torch::serialize::InputArchive archive;
    std::istringstream stream{payload};
    archive.load_from(stream, torch::kCPU);
    archive.read("config", c.config);
    archive.read("step", c.step);
    archive.read("window", c.window);
    archive.read("params", c.params);
    archive.read("adam_m", c.adam_m);
    archive.read("adam_v", c.adam_v);
    archive.read("adam_step", c.adam_step);
    archive.read("state_h", c.state_h);
    archive.read("state_c", c.state_c);
    archive.read("loss_sum", c.loss_sum);
    archive.read("loss_steps", c.loss_steps);
    archive.read("elapsed", c.elapsed);
    archive.read("rng", c.rng);
  } catch (const c10::Error& e) {
    if (IsAllocationFailure(e)) throw;  // not the file's fault: Guarded says so
    return UnusableCheckpoint(path, e.what_without_backtrace());
  }
  return c;
}

const char* SplitName(Split split) {
  switch (split) {
    case Split::kTrain: return "train";
    case Split::kValid: return "valid";
    case Split::kTest: return "test";
  }
  return "?";
}

StatusOr<torch::Device> ParseDevice(const std::string& device) {
  if (device == "auto") {
    return torch::cuda::is_available() ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
  }
  if (device == "cpu") return torch::Device(torch::kCPU);
  if (device == "cuda" || device.rfind("cuda:", 0) == 0) {
    int index = 0;
    if (device.size() > 5) {
      const std::string digits = device.substr(5);
      if (digits.empty() || digits.size() > 3 ||
          digits.find_first_not_of("0123456789") != std::string::npos) {
        return Status::InvalidArgument("--device: \"" + device +
                                       "\" is not cpu, cuda, cuda:N or auto");
      }
      index = std::stoi(digits);
    }
    if (!torch::cuda::is_available()) {
      return Status::InvalidArgument("--device: \"" + device +
                                     "\" asks for a GPU, but this LibTorch sees none (built "
                                     "without CUDA, or no GPU visible)");
    }
    const int count = static_cast<int>(torch::cuda::device_count());
    if (index >= count) {
      return Status::InvalidArgument("--device: \"" + device + "\" but only " +
                                     std::to_string(count) + " GPU(s) are visible");
    }
    return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  return Status::InvalidArgument("--device: \"" + device + "\" is not cpu, cuda, cuda:N or auto");
}

int ConfigureThreads(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  torch::set_num_threads(threads);
  KeepFreedMemory();
  return torch::get_num_threads();
}

void KeepFreedMemory() {
#if defined(__GLIBC__)
  // glibc serves blocks over its mmap threshold (at most 32 MiB) with mmap
  // and unmaps them on free, so every step's activations were fresh pages:
  // page faults, zeroing and cgroup accounting cost a quarter of a step at
  // the seed's size. Served from the heap and never trimmed, freed blocks
  // are reused by the next step (about 15% more peak memory).
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, std::numeric_limits<int>::max());
#endif
}

Trainer::Trainer(const RunConfig& config, const TrainerOptions& options, torch::Device device,
                 Kernel kernel)
    : config_(config),
      options_(options),
      device_(device),
      kernel_(kernel),
      generator_(at::detail::createCPUGenerator(config.train.seed)) {}

StatusOr<std::unique_ptr<Trainer>> Trainer::Create(const RunConfig& config,
                                                   const TrainerOptions& options) {
  return Build(config, options, nullptr);
}

StatusOr<std::unique_ptr<Trainer>> Trainer::Create(const RunConfig& config,
                                                   const TrainerOptions& options,
                                                   const text8::Corpus& corpus) {
  return Build(config, options, &corpus);
}

StatusOr<std::unique_ptr<Trainer>> Trainer::Build(const RunConfig& config,
                                                  const TrainerOptions& options,
                                                  const text8::Corpus* corpus) {
  ABLATE_RETURN_IF_ERROR(config.Validate());
  ABLATE_ASSIGN_OR_RETURN(torch::Device device, ParseDevice(options.device));
  ABLATE_ASSIGN_OR_RETURN(Kernel kernel, ChooseKernel(options.kernel, device));
  if (config.train.checkpoint_every > 0 && options.checkpoint_path.empty()) {
    return Status::InvalidArgument("train.checkpoint_every is " +
                                   std::to_string(config.train.checkpoint_every) +
                                   " but no checkpoint path was given");
  }
  if (!options.checkpoint_path.empty()) {
    // Fail now rather than at the first checkpoint, maybe hours in. The probe
    // is a temporary file beside the path, removed at once.
    std::error_code error;
    if (std::filesystem::is_directory(options.checkpoint_path, error)) {
      return Status::InvalidArgument("checkpoint " + options.checkpoint_path +
                                     " is a directory; give a file path");
    }
    StatusOr<AtomicFile> probe = AtomicFile::Create(options.checkpoint_path);
    if (!probe.ok()) return probe.status().WithContext("checkpoint " + options.checkpoint_path);
  }
  if (device.is_cpu()) ABLATE_RETURN_IF_ERROR(CheckMemory(config, AvailableMemoryBytes()));
  return Guarded([] { return std::string("building the model"); },
                 [&] { return BuildOn(config, options, corpus, device, kernel); });
}

Status CheckMemory(const RunConfig& config, int64_t available_bytes) {
  const int64_t needed = TrainingBytesLowerBound(config.model, config.train);
  if (available_bytes < 0 || needed <= available_bytes) return Status::OK();
  auto size = [](int64_t bytes) {
    double value = bytes / 1073741824.0;
    const char* unit = "GiB";
    for (const char* larger : {"TiB", "PiB", "EiB"}) {
      if (value < 1024) break;
      value /= 1024;
      unit = larger;
    }
    char text[32];
    std::snprintf(text, sizeof(text), "%.1f %s", value, unit);
    return std::string(text);
  };
  return Status::ResourceExhausted(
      "model.hidden " + std::to_string(config.model.hidden) + " with train.batch " +
      std::to_string(config.train.batch) + " and train.seq " + std::to_string(config.train.seq) +
      " needs at least " + size(needed) +
      " to train (parameters, gradients, Adam state and one step's activations), but only " +
      size(available_bytes) + " is available to this process");
}

StatusOr<std::unique_ptr<Trainer>> Trainer::BuildOn(const RunConfig& config,
                                                    const TrainerOptions& options,
                                                    const text8::Corpus* corpus,
                                                    torch::Device device, Kernel kernel) {
  std::unique_ptr<Trainer> trainer(new Trainer(config, options, device, kernel));
  // On a GPU the device step runs on the trainer's own stream, building
  // included; the reference kernel runs on LibTorch's default stream.
  if (device.is_cuda() && trainer->device_step()) trainer->cuda_ = CudaRunner::Create(device);
  Status built;
  trainer->OnDevice([&] { built = trainer->Allocate(corpus); });
  if (!built.ok()) return built;
  return trainer;
}

Status Trainer::Allocate(const text8::Corpus* corpus) {
  const RunConfig& config = config_;
  if (corpus != nullptr) {
    ABLATE_RETURN_IF_ERROR(LoadData(*corpus, "the corpus"));
  } else {
    const std::string path = options_.corpus_path.empty() ? config.data.path : options_.corpus_path;
    if (path.empty()) {
      return Status::InvalidArgument("data: no corpus file (data.path is empty and data.corpus \"" +
                                     config.data.corpus + "\" was not resolved to a file)");
    }
    ABLATE_ASSIGN_OR_RETURN(text8::Corpus file, text8::LoadCorpus(path));
    ABLATE_RETURN_IF_ERROR(LoadData(file, path));
  }

  const ModelConfig& m = config.model;
  model_ = CharRnn(m.cell, m.layer_norm, m.hidden, m.vocab,
                   torch::TensorOptions().dtype(torch::kFloat).device(device_));
  model_->Initialize(m.init, generator_);
  torch::Tensor& params = model_->flat_params();
  adam_m_ = torch::zeros_like(params);
  adam_v_ = torch::zeros_like(params);
  adam_denom_ = torch::empty_like(params);
  state_ = model_->InitialState(config.train.batch);
  loss_sum_ = torch::zeros({}, params.options().dtype(torch::kDouble));
  if (device_step()) {
    window_tokens_ = torch::zeros({config.train.seq + 1, config.train.batch},
                                  params.options().dtype(torch::kLong));
    adam_corrections_ = torch::zeros({2}, params.options());
    step_loss_ = torch::zeros({}, params.options());
  }
  return Status::OK();
}

Status Trainer::LoadData(const text8::Corpus& corpus, const std::string& name) {
  std::vector<uint8_t> symbols;
  Status encoded = text8::EncodeSymbols(corpus.bytes(), static_cast<int>(config_.model.vocab),
                                        &symbols);
  if (!encoded.ok()) return encoded.WithContext(name);
  const TrainConfig& t = config_.train;
  train_size_ = static_cast<int64_t>(corpus.train().size());
  valid_begin_ = train_size_;
  valid_size_ = static_cast<int64_t>(corpus.validation().size());
  test_begin_ = valid_begin_ + valid_size_;
  test_size_ = static_cast<int64_t>(corpus.test().size());
  const int64_t needed = t.batch * (t.seq + 1);
  if (train_size_ < needed) {
    return Status::InvalidArgument(
        "data.path: the training split of " + name + " has " + std::to_string(train_size_) +
        " bytes, but train.batch " + std::to_string(t.batch) + " x (train.seq " +
        std::to_string(t.seq) + " + 1) needs at least " + std::to_string(needed));
  }
  stream_length_ = train_size_ / t.batch;
  windows_per_epoch_ = (stream_length_ - 1) / t.seq;
  symbols_ = torch::from_blob(symbols.data(), {static_cast<int64_t>(symbols.size())}, torch::kUInt8)
                 .to(device_, /*non_blocking=*/false, /*copy=*/true);
  auto long_opts = torch::TensorOptions().dtype(torch::kLong).device(device_);
  stream_offsets_ = torch::arange(t.seq + 1, long_opts).unsqueeze(1) +
                    torch::arange(t.batch, long_opts).unsqueeze(0) * stream_length_;
  return Status::OK();
}

torch::Tensor Trainer::Window(int64_t window) const {
  const TrainConfig& t = config_.train;
  torch::Tensor index = stream_offsets_ + window * t.seq;
  return symbols_.index_select(0, index.view({-1})).view({t.seq + 1, t.batch}).to(torch::kLong);
}

template <typename Work>
void Trainer::OnDevice(const Work& work) const {
  if (cuda_) {
    cuda_->Run(work);
  } else {
    work();
  }
}

int64_t Trainer::PeakDeviceBytes() const { return cuda_ ? cuda_->PeakAllocatedBytes() : -1; }

void Trainer::ResetPeakMemory() {
  if (cuda_) cuda_->ResetPeak();
}

torch::Tensor Trainer::TrainStep() {
  if (device_step()) return DeviceTrainStep();
  const TrainConfig& t = config_.train;
  PrecisionScope precision(device_, t.precision);
  const int64_t window = step_ % windows_per_epoch_;
  if (window == 0 && step_ > 0) state_ = model_->InitialState(t.batch);  // a new epoch
  torch::Tensor tokens = Window(window);
  ModelOutput out = model_->Forward(tokens.narrow(0, 0, t.seq), state_, kernel_, t.precision);
  torch::Tensor loss = torch::cross_entropy_loss(out.logits, tokens.narrow(0, 1, t.seq).reshape(-1));
  BackwardAndMoments(loss);

  torch::NoGradGuard no_grad;
  ++adam_step_;
  const double correction1 = 1 - std::pow(kAdamBeta1, double(adam_step_));
  const double correction2 = 1 - std::pow(kAdamBeta2, double(adam_step_));
  at::sqrt_out(adam_denom_, adam_v_);
  adam_denom_.div_(std::sqrt(correction2)).add_(kAdamEps);
  model_->flat_params().addcdiv_(adam_m_, adam_denom_, -t.lr / correction1);

  state_.h = out.state.h.detach();
  if (out.state.c.defined()) state_.c = out.state.c.detach();
  ++step_;
  torch::Tensor detached = loss.detach();
  loss_sum_.add_(detached);
  ++loss_steps_;
  return detached;
}

void Trainer::BackwardAndMoments(const torch::Tensor& loss) {
  torch::Tensor& grads = model_->flat_grads();
  grads.zero_();
  loss.backward();
  torch::NoGradGuard no_grad;
  const double clip_norm = config_.train.clip_norm;
  if (clip_norm > 0) {
    torch::Tensor scale = (clip_norm / (grads.norm() + kClipEps)).clamp_max(1.0);
    grads.mul_(scale);
  }
  adam_m_.mul_(kAdamBeta1).add_(grads, 1 - kAdamBeta1);
  adam_v_.mul_(kAdamBeta2).addcmul_(grads, grads, 1 - kAdamBeta2);
}

double Trainer::Evaluate(Split split) {
  torch::NoGradGuard no_grad;
  const TrainConfig& t = config_.train;
  const int64_t begin = split == Split::kTest ? test_begin_ : valid_begin_;
  int64_t size = split == Split::kTest ? test_size_ : valid_size_;
  if (t.eval_bytes > 0) size = std::min(size, t.eval_bytes);
  if (device_step()) {
    double bpc = 0;
    OnDevice([&] { bpc = DeviceEvaluate(begin, size); });
    return bpc;
  }
  PrecisionScope precision(device_, t.precision);
  const int64_t streams = std::min(t.batch, size);
  const int64_t length = (size + streams - 1) / streams;  // targets per stream

  auto long_opts = torch::TensorOptions().dtype(torch::kLong).device(device_);
  torch::Tensor stream_start = torch::arange(streams, long_opts) * length;  // [S]
  RecurrentState state = model_->InitialState(streams);
  torch::Tensor total = torch::zeros({}, torch::TensorOptions().dtype(torch::kDouble).device(device_));
  for (int64_t w0 = 0; w0 < length; w0 += t.seq) {
    const int64_t len = std::min(t.seq, length - w0);
    // Target k of stream s is byte begin + s * length + w0 + j; its input the
    // byte before it. Positions past the split's end are masked out.
    torch::Tensor pos = torch::arange(len, long_opts).unsqueeze(1) + w0 + stream_start.unsqueeze(0);
    torch::Tensor valid = pos < size;
    torch::Tensor target_pos = torch::where(valid, pos, torch::zeros_like(pos)) + begin;
    torch::Tensor inputs = symbols_.index_select(0, (target_pos - 1).view({-1})).view({len, streams});
    torch::Tensor targets = symbols_.index_select(0, target_pos.view({-1})).to(torch::kLong);
    ModelOutput out = model_->Forward(inputs.to(torch::kLong), state, kernel_, t.precision);
    state = out.state;
    torch::Tensor nll = torch::nn::functional::cross_entropy(
        out.logits, targets,
        torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
    total += (nll.to(torch::kDouble) * valid.view({-1})).sum();
  }
  return total.item<double>() / double(size) / kLn2;
}

double Trainer::ElapsedSeconds() const {
  if (!running_) return elapsed_before_;
  return elapsed_before_ +
         std::chrono::duration<double>(std::chrono::steady_clock::now() - run_started_).count();
}

StatusOr<TrainSummary> Trainer::Run(TrainerListener* listener) {
  StatusOr<TrainSummary> summary = Status::Internal("not run");
  OnDevice([&] {
    summary = Guarded([&] { return std::string(activity_) + " " + std::to_string(activity_step_); },
                      [&] { return RunSteps(listener); });
  });
  running_ = false;
  return summary;
}

StatusOr<TrainSummary> Trainer::RunSteps(TrainerListener* listener) {
  const TrainConfig& t = config_.train;
  run_started_ = std::chrono::steady_clock::now();
  running_ = true;
  const int64_t first_step = step_;
  TrainSummary summary;
  auto finish = [&](TrainSummary::Outcome outcome, std::string message) {
    elapsed_before_ = ElapsedSeconds();
    running_ = false;
    summary.outcome = outcome;
    summary.message = std::move(message);
    summary.step = step_;
    summary.wall_time = elapsed_before_;
    return summary;
  };
  auto emit = [&](Split split, double bpc) {
    listener->OnPoint({split, step_, bpc, step_ * bytes_per_step(), ElapsedSeconds(), {}});
  };

  while (step_ < t.steps) {
    SetActivity("training step", step_ + 1);
    if (listener->ShouldStop()) return finish(TrainSummary::Outcome::kStopped, "stopped");
    TrainStep();
    if (step_ % t.log_every == 0 || step_ == t.steps) {
      const double bpc = loss_sum_.item<double>() / double(loss_steps_) / kLn2;
      const int64_t window_steps = loss_steps_;
      loss_sum_.zero_();
      loss_steps_ = 0;
      if (!std::isfinite(bpc)) {
        return finish(TrainSummary::Outcome::kDiverged,
                      "training loss became " + std::string(std::isnan(bpc) ? "NaN" : "infinite") +
                          " in steps " + std::to_string(step_ - window_steps + 1) + "-" +
                          std::to_string(step_));
      }
      summary.final_train_bpc = bpc;
      emit(Split::kTrain, bpc);
    }
    if ((t.eval_every > 0 && step_ % t.eval_every == 0) || step_ == t.steps) {
      SetActivity("validation at step", step_);
      const double bpc = Evaluate(Split::kValid);
      if (!std::isfinite(bpc)) {
        return finish(TrainSummary::Outcome::kDiverged,
                      "validation loss became non-finite at step " + std::to_string(step_));
      }
      summary.final_valid_bpc = bpc;
      emit(Split::kValid, bpc);
    }
    if (t.checkpoint_every > 0 && step_ % t.checkpoint_every == 0 && step_ < t.steps) {
      SetActivity("checkpoint at step", step_);
      ABLATE_RETURN_IF_ERROR(SaveCheckpoint(options_.checkpoint_path));
      ABLATE_RETURN_IF_ERROR(listener->OnCheckpoint(options_.checkpoint_path, step_));
    }
    SetActivity("progress report after step", step_);
    Progress progress;
    progress.step = step_;
    progress.steps_total = t.steps;
    const double run_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - run_started_).count();
    const int64_t run_steps = step_ - first_step;
    if (run_seconds > 0) {
      progress.bytes_per_s = run_steps * bytes_per_step() / run_seconds;
      progress.eta_seconds = (t.steps - step_) * run_seconds / run_steps;
    }
    progress.train_bpc = summary.final_train_bpc;
    listener->OnProgress(progress);
  }
  SetActivity("test evaluation at step", step_);
  const double test = Evaluate(Split::kTest);
  if (!std::isfinite(test)) {
    return finish(TrainSummary::Outcome::kDiverged, "test loss is non-finite");
  }
  summary.test_bpc = test;
  emit(Split::kTest, test);
  return finish(TrainSummary::Outcome::kFinished, "finished");
}

Status Trainer::SaveCheckpoint(const std::string& path) const {
  Status status;
  OnDevice([&] {
    status = Guarded([&] { return "writing checkpoint " + path; },
                     [&] { return WriteCheckpoint(path); });
  });
  return status;
}

Status Trainer::RestoreCheckpoint(const std::string& path) {
  Status status;
  OnDevice([&] {
    status =
        Guarded([&] { return "reading checkpoint " + path; }, [&] { return ReadCheckpoint(path); });
  });
  return status;
}

Status Trainer::WriteCheckpoint(const std::string& path) const {
  torch::serialize::OutputArchive archive;
  auto cpu = [](const torch::Tensor& x) {
    return x.defined() ? x.detach().to(torch::kCPU) : torch::empty({0});
  };
  archive.write("config", c10::IValue(ResumeIdentity(config_).dump()));
  archive.write("step", c10::IValue(step_));
  archive.write("window", c10::IValue(step_ % windows_per_epoch_));
  archive.write("params", cpu(model_->flat_params()));
  archive.write("adam_m", cpu(adam_m_));
  archive.write("adam_v", cpu(adam_v_));
  archive.write("adam_step", c10::IValue(adam_step_));
  archive.write("state_h", cpu(state_.h));
  archive.write("state_c", cpu(state_.c));
  archive.write("loss_sum", cpu(loss_sum_));
  archive.write("loss_steps", c10::IValue(loss_steps_));
  archive.write("elapsed", c10::IValue(ElapsedSeconds()));
  archive.write("rng", generator_.get_state());
  std::ostringstream payload_stream;
  try {
    archive.save_to(payload_stream);
  } catch (const c10::Error& e) {
    if (IsAllocationFailure(e)) throw;  // not a serialising problem: Guarded says so
    return Status::Internal("serialising checkpoint: " + std::string(e.what_without_backtrace()));
  }
  const std::string payload = payload_stream.str();
  std::string header(kCheckpointMagic, sizeof(kCheckpointMagic));
  PutLe<uint32_t>(&header, kCheckpointVersion);
  PutLe<uint64_t>(&header, payload.size());
  PutLe<uint32_t>(&header, Crc32(payload));

  ABLATE_ASSIGN_OR_RETURN(AtomicFile file, AtomicFile::Create(path));
  ABLATE_RETURN_IF_ERROR(file.Append(header));
  ABLATE_RETURN_IF_ERROR(file.Append(payload));
  return file.Commit();
}

Status Trainer::ReadCheckpoint(const std::string& path) {
  ABLATE_ASSIGN_OR_RETURN(const std::string payload, ReadCheckpointPayload(path));
  // Read everything into locals first: nothing changes unless all of it fits.
  ABLATE_ASSIGN_OR_RETURN(const CheckpointContents in, ParseCheckpoint(payload, path));
  ABLATE_RETURN_IF_ERROR(CheckFits(in, path));

  // Everything that allocates on the device first, so that a failure there
  // leaves the trainer as it was.
  const bool lstm = config_.model.cell == Cell::kLstm;
  torch::Tensor device_h = in.state_h.to(device_);
  torch::Tensor device_c = lstm ? in.state_c.to(device_) : state_.c;
  torch::NoGradGuard no_grad;
  model_->flat_params().copy_(in.params);
  adam_m_.copy_(in.adam_m);
  adam_v_.copy_(in.adam_v);
  adam_step_ = in.adam_step.toInt();
  // In place: a captured step reads and writes these very tensors.
  state_.h.copy_(device_h);
  if (lstm) state_.c.copy_(device_c);
  loss_sum_.copy_(in.loss_sum.reshape({}));
  loss_steps_ = in.loss_steps.toInt();
  elapsed_before_ = in.elapsed.toDouble();
  step_ = in.step.toInt();
  generator_.set_state(in.rng);
  return Status::OK();
}

Status Trainer::CheckFits(const CheckpointContents& in, const std::string& path) const {
  const std::string expected = ResumeIdentity(config_).dump();
  if (!in.config.isString() || in.config.toStringRef() != expected) {
    return Status::FailedPrecondition(
        "checkpoint " + path + " was written for a different configuration: " +
        (in.config.isString() ? in.config.toStringRef() : "?") + " vs " + expected);
  }
  const int64_t batch = config_.train.batch, hidden = config_.model.hidden;
  const bool lstm = config_.model.cell == Cell::kLstm;
  if (!in.step.isInt() || !in.window.isInt() || !in.adam_step.isInt() || !in.loss_steps.isInt() ||
      !in.elapsed.isDouble() || in.params.numel() != model_->parameter_count() ||
      !in.adam_m.sizes().equals(in.params.sizes()) ||
      !in.adam_v.sizes().equals(in.params.sizes()) || !in.state_h.sizes().equals({batch, hidden}) ||
      (lstm && !in.state_c.sizes().equals({batch, hidden})) || in.loss_sum.numel() != 1 ||
      in.step.toInt() < 0 || in.step.toInt() > config_.train.steps ||
      in.window.toInt() != in.step.toInt() % windows_per_epoch_) {
    return UnusableCheckpoint(path, "its contents do not fit this configuration");
  }
  return Status::OK();
}

// ------------------------------------------------------------ device step --

torch::Tensor Trainer::DeviceTrainStep() {
  torch::Tensor loss;
  OnDevice([&] {
    PrecisionScope precision(device_, config_.train.precision);
    const int64_t window = step_ % windows_per_epoch_;
    if (window == 0 && step_ > 0) {  // a new epoch
      state_.h.zero_();
      if (state_.c.defined()) state_.c.zero_();
    }
    window_tokens_.copy_(Window(window));
    ++adam_step_;
    adam_corrections_[0].fill_(1 / std::sqrt(1 - std::pow(kAdamBeta2, double(adam_step_))));
    adam_corrections_[1].fill_(1 - std::pow(kAdamBeta1, double(adam_step_)));
    if (cuda_ && options_.cuda_graphs) {
      if (train_graph_ < 0) CaptureTrainStep();
      cuda_->Replay(train_graph_);
    } else {
      DeviceStepBody();
    }
    ++step_;
    ++loss_steps_;
    loss = step_loss_.clone();
  });
  return loss;
}

void Trainer::DeviceStepBody() {
  const TrainConfig& t = config_.train;
  ModelOutput out =
      model_->Forward(window_tokens_.narrow(0, 0, t.seq), state_, kernel_, t.precision);
  torch::Tensor loss =
      PositionLosses(out.logits, window_tokens_.narrow(0, 1, t.seq).reshape({-1})).mean();
  BackwardAndMoments(loss);

  torch::NoGradGuard no_grad;
  // p -= lr * m / (c1 * (sqrt(v) / sqrt(c2) + eps)), the corrections read
  // from the device.
  at::sqrt_out(adam_denom_, adam_v_);
  adam_denom_.mul_(adam_corrections_[0]).add_(kAdamEps).mul_(adam_corrections_[1]);
  model_->flat_params().addcdiv_(adam_m_, adam_denom_, -t.lr);

  state_.h.copy_(out.state.h);
  if (state_.c.defined()) state_.c.copy_(out.state.c);
  step_loss_.copy_(loss);
  loss_sum_.add_(step_loss_);
}

void Trainer::CaptureTrainStep() {
  // One step runs first, outside the capture: LibTorch makes its cuBLAS
  // handles and workspaces, and the autograd engine's thread its own, none of
  // which may happen while capturing. The step is then undone, so every step
  // of a job is a replay of the same graph, resumed or not.
  torch::Tensor& params = model_->flat_params();
  const torch::Tensor saved_params = params.clone(), saved_m = adam_m_.clone(),
                      saved_v = adam_v_.clone(), saved_h = state_.h.clone(),
                      saved_loss = loss_sum_.clone();
  const torch::Tensor saved_c = state_.c.defined() ? state_.c.clone() : torch::Tensor();
  DeviceStepBody();
  {
    torch::NoGradGuard no_grad;
    params.copy_(saved_params);
    adam_m_.copy_(saved_m);
    adam_v_.copy_(saved_v);
    state_.h.copy_(saved_h);
    if (saved_c.defined()) state_.c.copy_(saved_c);
    loss_sum_.copy_(saved_loss);
  }
  cuda_->Synchronize();
  // The eager step's blocks would otherwise stay reserved beside the graph's.
  cuda_->ReleaseCachedMemory();
  train_graph_ = cuda_->Capture([&] { DeviceStepBody(); });
}

double Trainer::DeviceEvaluate(int64_t begin, int64_t size) {
  torch::NoGradGuard no_grad;
  PrecisionScope precision(device_, config_.train.precision);
  const TrainConfig& t = config_.train;
  const int64_t streams = std::min(t.batch, size);
  const int64_t length = (size + streams - 1) / streams;  // targets per stream
  auto long_opts = torch::TensorOptions().dtype(torch::kLong).device(device_);
  EvalBuffers& b = eval_buffers_[streams];
  if (!b.total.defined()) {
    b.inputs = torch::zeros({t.seq, streams}, long_opts);
    b.targets = torch::zeros({t.seq * streams}, long_opts);
    b.valid = torch::zeros({t.seq * streams}, long_opts.dtype(torch::kDouble));
    b.total = torch::zeros({}, long_opts.dtype(torch::kDouble));
    b.state = model_->InitialState(streams);
  }
  b.total.zero_();
  b.state.h.zero_();
  if (b.state.c.defined()) b.state.c.zero_();
  torch::Tensor stream_start = torch::arange(streams, long_opts) * length;
  for (int64_t w0 = 0; w0 < length; w0 += t.seq) {
    const int64_t len = std::min(t.seq, length - w0);
    // As in Evaluate: target j of stream s is byte begin + s * length + w0 + j.
    torch::Tensor pos = torch::arange(len, long_opts).unsqueeze(1) + w0 + stream_start.unsqueeze(0);
    torch::Tensor valid = pos < size;
    torch::Tensor target_pos = torch::where(valid, pos, torch::zeros_like(pos)) + begin;
    torch::Tensor inputs =
        symbols_.index_select(0, (target_pos - 1).view({-1})).view({len, streams});
    torch::Tensor targets = symbols_.index_select(0, target_pos.view({-1})).to(torch::kLong);
    torch::Tensor weights = valid.view({-1}).to(torch::kDouble);
    if (!cuda_ || !options_.cuda_graphs || len < t.seq) {
      EvalWindowBody(b, inputs.to(torch::kLong), targets, weights);
      continue;
    }
    b.inputs.copy_(inputs);
    b.targets.copy_(targets);
    b.valid.copy_(weights);
    if (b.graph < 0) {
      // As in CaptureTrainStep: one window outside the capture, then undone.
      const torch::Tensor saved_h = b.state.h.clone(), saved_total = b.total.clone();
      const torch::Tensor saved_c = b.state.c.defined() ? b.state.c.clone() : torch::Tensor();
      EvalWindowBody(b, b.inputs, b.targets, b.valid);
      b.state.h.copy_(saved_h);
      if (saved_c.defined()) b.state.c.copy_(saved_c);
      b.total.copy_(saved_total);
      cuda_->Synchronize();
      b.graph = cuda_->Capture([&] { EvalWindowBody(b, b.inputs, b.targets, b.valid); });
    }
    cuda_->Replay(b.graph);
  }
  return b.total.item<double>() / double(size) / kLn2;
}

void Trainer::EvalWindowBody(EvalBuffers& b, const torch::Tensor& inputs,
                             const torch::Tensor& targets, const torch::Tensor& valid) {
  ModelOutput out = model_->Forward(inputs, b.state, kernel_, config_.train.precision);
  b.total.add_((PositionLosses(out.logits, targets).to(torch::kDouble) * valid).sum());
  b.state.h.copy_(out.state.h);
  if (b.state.c.defined()) b.state.c.copy_(out.state.c);
}

}  // namespace ablate
