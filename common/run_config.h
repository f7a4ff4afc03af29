// RunConfig: everything that defines one training run (one job of a sweep):
// which data, which model, how to train. A plain value type shared by the
// trainer, the spec parser and the coordinator; its JSON form (ToJson) is the
// canonical text that a job's config hash is computed over.
#ifndef ABLATE_COMMON_RUN_CONFIG_H_
#define ABLATE_COMMON_RUN_CONFIG_H_

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace ablate {

enum class Cell { kLstm, kGru, kMgu };
enum class Init { kXavier, kVarianceScaling, kOrthogonal };
// Arithmetic of the recurrent matrix products on CUDA: plain float32; float32
// storage with TF32 tensor-core products; or bf16 products with float32
// master weights and float32 accumulation. The CPU always computes in float32.
enum class Precision { kFp32, kTf32, kBf16 };

const char* CellName(Cell cell);
const char* InitName(Init init);
const char* PrecisionName(Precision precision);  // "fp32", "tf32", "bf16"
StatusOr<Cell> ParseCell(const std::string& name);
StatusOr<Init> ParseInit(const std::string& name);
// InvalidArgument naming train.precision and the known values.
StatusOr<Precision> ParsePrecision(const std::string& name);

// Whether a device string names a GPU: "cuda", "cuda:0", and the longer
// "cuda:0 (NVIDIA H100 80GB HBM3)" a worker may register; "cpu" does not.
bool IsCudaDevice(std::string_view device);
// The precision a run configured with `configured` computes at on `device`:
// `configured` on CUDA, kFp32 anywhere else.
Precision EffectivePrecision(Precision configured, std::string_view device);

// The published text8 archive; the default download source.
inline constexpr const char* kText8Url = "http://mattmahoney.net/dc/text8.zip";

struct DataConfig {
  // Exactly one of `path` (any text8-format file) and `corpus` ("text8") is set.
  std::string path;
  std::string corpus;
  // Where `corpus: text8` is fetched from. Where it is cached is a property of
  // the machine, not of the run: see the worker's --data-dir.
  std::string url = kText8Url;
};

struct ModelConfig {
  Cell cell = Cell::kGru;
  bool layer_norm = true;
  Init init = Init::kXavier;
  int64_t hidden = 2000;
  int64_t vocab = 256;  // 256 raw bytes, or 27 for the text8 alphabet
};

struct TrainConfig {
  int64_t batch = 100;
  int64_t seq = 200;
  double lr = 1e-3;
  double clip_norm = 1.0;       // global gradient-norm clip; 0 turns clipping off
  int64_t steps = 1000;         // the step budget
  int64_t log_every = 10;       // training bpc every N steps
  int64_t eval_every = 100;     // validation bpc every N steps; 0: only at the end
  int64_t eval_bytes = 0;       // cap on validation bytes per evaluation; 0: the whole split
  int64_t checkpoint_every = 0; // 0: no periodic checkpoints
  uint64_t seed = 0;
  Precision precision = Precision::kTf32;  // on CUDA only; the CPU ignores it
};

struct RunConfig {
  DataConfig data;
  ModelConfig model;
  TrainConfig train;

  // Canonical JSON, keys sorted (nlohmann::json sorts): every field present
  // except an empty data.path or data.corpus, and train.precision when it is
  // the default (tf32). Settings added later are left out at their default
  // like that, so every config written before them keeps its text, and with
  // it its job hash and its checkpoints' resume identity.
  nlohmann::json ToJson() const;

  // Strict: an unknown key, a wrong type or a value out of range is an
  // InvalidArgument naming the setting (as "section.key") and the value.
  // Missing keys keep their defaults.
  static StatusOr<RunConfig> FromJson(const nlohmann::json& json);

  // Range checks on every field; FromJson calls it.
  Status Validate() const;
};

// Bounds beyond which a setting is rejected as absurd rather than tried.
inline constexpr int64_t kMaxHidden = 65536;
inline constexpr int64_t kMaxBatch = 65536;
inline constexpr int64_t kMaxSeq = 65536;
inline constexpr int64_t kMaxSteps = 1'000'000'000;

}  // namespace ablate

#endif  // ABLATE_COMMON_RUN_CONFIG_H_
