#include "common/run_config.h"

#include <cmath>
#include <set>

namespace ablate {

namespace {

using nlohmann::json;

std::string Show(const json& value) { return value.dump(); }

constexpr const char* kPrecisionNames = "fp32, tf32, bf16";

Status Invalid(const std::string& key, const std::string& why) {
  return Status::InvalidArgument(key + ": " + why);
}

Status CheckKeys(const json& object, const std::string& section,
                 const std::set<std::string>& known) {
  if (!object.is_object()) {
    return Invalid(section, "expected a mapping, got " + Show(object));
  }
  for (const auto& item : object.items()) {
    if (!known.count(item.key())) {
      std::string names;
      for (const auto& k : known) names += (names.empty() ? "" : ", ") + k;
      return Invalid(section.empty() ? item.key() : section + "." + item.key(),
                     "unknown setting (known: " + names + ")");
    }
  }
  return Status::OK();
}

Status ReadString(const json& object, const std::string& section, const char* key,
                  std::string* out) {
  auto it = object.find(key);
  if (it == object.end()) return Status::OK();
  if (!it->is_string()) return Invalid(section + "." + key, "expected a string, got " + Show(*it));
  *out = it->get<std::string>();
  return Status::OK();
}

Status ReadBool(const json& object, const std::string& section, const char* key, bool* out) {
  auto it = object.find(key);
  if (it == object.end()) return Status::OK();
  if (!it->is_boolean()) return Invalid(section + "." + key, "expected true or false, got " + Show(*it));
  *out = it->get<bool>();
  return Status::OK();
}

template <typename Int>
Status ReadInt(const json& object, const std::string& section, const char* key, Int* out) {
  auto it = object.find(key);
  if (it == object.end()) return Status::OK();
  if (it->is_number_integer()) {
    if (std::is_unsigned<Int>::value && !it->is_number_unsigned() && it->get<int64_t>() < 0) {
      return Invalid(section + "." + key, "must not be negative, got " + Show(*it));
    }
    *out = it->get<Int>();
    return Status::OK();
  }
  // 1e5 written in YAML arrives as a float; accept it when it is a whole number.
  if (it->is_number_float()) {
    double d = it->get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e15) {
      if (std::is_unsigned<Int>::value && d < 0) {
        return Invalid(section + "." + key, "must not be negative, got " + Show(*it));
      }
      *out = static_cast<Int>(d);
      return Status::OK();
    }
  }
  return Invalid(section + "." + key, "expected an integer, got " + Show(*it));
}

Status ReadDouble(const json& object, const std::string& section, const char* key, double* out) {
  auto it = object.find(key);
  if (it == object.end()) return Status::OK();
  if (!it->is_number()) return Invalid(section + "." + key, "expected a number, got " + Show(*it));
  *out = it->get<double>();
  return Status::OK();
}

Status InRange(const char* key, int64_t value, int64_t lo, int64_t hi) {
  if (value < lo || value > hi) {
    return Invalid(key, "must be between " + std::to_string(lo) + " and " + std::to_string(hi) +
                            ", got " + std::to_string(value));
  }
  return Status::OK();
}

}  // namespace

const char* CellName(Cell cell) {
  switch (cell) {
    case Cell::kLstm: return "lstm";
    case Cell::kGru: return "gru";
    case Cell::kMgu: return "mgu";
  }
  return "?";
}

const char* InitName(Init init) {
  switch (init) {
    case Init::kXavier: return "xavier";
    case Init::kVarianceScaling: return "variance_scaling";
    case Init::kOrthogonal: return "orthogonal";
  }
  return "?";
}

const char* PrecisionName(Precision precision) {
  switch (precision) {
    case Precision::kFp32: return "fp32";
    case Precision::kTf32: return "tf32";
    case Precision::kBf16: return "bf16";
  }
  return "?";
}

StatusOr<Cell> ParseCell(const std::string& name) {
  for (Cell c : {Cell::kLstm, Cell::kGru, Cell::kMgu}) {
    if (name == CellName(c)) return c;
  }
  return Invalid("model.cell", "unknown cell \"" + name + "\" (known: lstm, gru, mgu)");
}

StatusOr<Init> ParseInit(const std::string& name) {
  for (Init i : {Init::kXavier, Init::kVarianceScaling, Init::kOrthogonal}) {
    if (name == InitName(i)) return i;
  }
  return Invalid("model.init",
                 "unknown initializer \"" + name + "\" (known: xavier, variance_scaling, orthogonal)");
}

StatusOr<Precision> ParsePrecision(const std::string& name) {
  for (Precision p : {Precision::kFp32, Precision::kTf32, Precision::kBf16}) {
    if (name == PrecisionName(p)) return p;
  }
  return Invalid("train.precision",
                 "unknown precision \"" + name + "\" (known: " + kPrecisionNames + ")");
}

bool IsCudaDevice(std::string_view device) { return device.substr(0, 4) == "cuda"; }

Precision EffectivePrecision(Precision configured, std::string_view device) {
  return IsCudaDevice(device) ? configured : Precision::kFp32;
}

json RunConfig::ToJson() const {
  json data = {{"url", this->data.url}};
  if (!this->data.path.empty()) data["path"] = this->data.path;
  if (!this->data.corpus.empty()) data["corpus"] = this->data.corpus;
  json out{
      {"data", data},
      {"model",
       {{"cell", CellName(model.cell)},
        {"layer_norm", model.layer_norm},
        {"init", InitName(model.init)},
        {"hidden", model.hidden},
        {"vocab", model.vocab}}},
      {"train",
       {{"batch", train.batch},
        {"seq", train.seq},
        {"lr", train.lr},
        {"clip_norm", train.clip_norm},
        {"steps", train.steps},
        {"log_every", train.log_every},
        {"eval_every", train.eval_every},
        {"eval_bytes", train.eval_bytes},
        {"checkpoint_every", train.checkpoint_every},
        {"seed", train.seed}}},
  };
  // Left out at its default so that configs from before the setting keep their hash.
  if (train.precision != Precision::kTf32) {
    out["train"]["precision"] = PrecisionName(train.precision);
  }
  return out;
}

StatusOr<RunConfig> RunConfig::FromJson(const json& root) {
  RunConfig config;
  ABLATE_RETURN_IF_ERROR(CheckKeys(root, "", {"data", "model", "train"}));

  if (auto it = root.find("data"); it != root.end()) {
    const json& d = *it;
    ABLATE_RETURN_IF_ERROR(CheckKeys(d, "data", {"path", "corpus", "url"}));
    ABLATE_RETURN_IF_ERROR(ReadString(d, "data", "path", &config.data.path));
    ABLATE_RETURN_IF_ERROR(ReadString(d, "data", "corpus", &config.data.corpus));
    ABLATE_RETURN_IF_ERROR(ReadString(d, "data", "url", &config.data.url));
  }
  if (auto it = root.find("model"); it != root.end()) {
    const json& m = *it;
    ABLATE_RETURN_IF_ERROR(
        CheckKeys(m, "model", {"cell", "layer_norm", "init", "hidden", "vocab"}));
    std::string cell = CellName(config.model.cell), init = InitName(config.model.init);
    ABLATE_RETURN_IF_ERROR(ReadString(m, "model", "cell", &cell));
    ABLATE_RETURN_IF_ERROR(ReadString(m, "model", "init", &init));
    ABLATE_ASSIGN_OR_RETURN(config.model.cell, ParseCell(cell));
    ABLATE_ASSIGN_OR_RETURN(config.model.init, ParseInit(init));
    ABLATE_RETURN_IF_ERROR(ReadBool(m, "model", "layer_norm", &config.model.layer_norm));
    ABLATE_RETURN_IF_ERROR(ReadInt(m, "model", "hidden", &config.model.hidden));
    ABLATE_RETURN_IF_ERROR(ReadInt(m, "model", "vocab", &config.model.vocab));
  }
  if (auto it = root.find("train"); it != root.end()) {
    const json& t = *it;
    ABLATE_RETURN_IF_ERROR(
        CheckKeys(t, "train",
                  {"batch", "seq", "lr", "clip_norm", "steps", "log_every", "eval_every",
                   "eval_bytes", "checkpoint_every", "seed", "precision"}));
    ABLATE_RETURN_IF_ERROR(ReadInt(t, "train", "batch", &config.train.batch));
    ABLATE_RETURN_IF_ERROR(ReadInt(t, "train", "seq", &config.train.seq));
    ABLATE_RETURN_IF_ERROR(ReadDouble(t, "train", "lr", &config.train.lr));
    ABLATE_RETURN_IF_ERROR(ReadDouble(t, "train", "clip_norm", &config.train.clip_norm));
    ABLATE_RETURN_IF_ERROR(ReadInt(t, "train", "steps", &config.train.steps));
    ABLATE_RETURN_IF_ERROR(ReadInt(t, "train", "log_every", &config.train.log_every));
    ABLATE_RETURN_IF_ERROR(ReadInt(t, "train", "eval_every", &config.train.eval_every));
    ABLATE_RETURN_IF_ERROR(ReadInt(t, "train", "eval_bytes", &config.train.eval_bytes));
    ABLATE_RETURN_IF_ERROR(ReadInt(t, "train", "checkpoint_every", &config.train.checkpoint_every));
    ABLATE_RETURN_IF_ERROR(ReadInt(t, "train", "seed", &config.train.seed));
    if (auto precision = t.find("precision"); precision != t.end()) {
      if (!precision->is_string()) {
        return Invalid("train.precision", std::string("expected one of ") + kPrecisionNames +
                                              ", got " + Show(*precision));
      }
      ABLATE_ASSIGN_OR_RETURN(config.train.precision,
                              ParsePrecision(precision->get<std::string>()));
    }
  }
  ABLATE_RETURN_IF_ERROR(config.Validate());
  return config;
}

Status RunConfig::Validate() const {
  if (data.path.empty() == data.corpus.empty()) {
    return Invalid("data", "give exactly one of data.path (a text8-format file) and data.corpus (text8)");
  }
  if (!data.corpus.empty() && data.corpus != "text8") {
    return Invalid("data.corpus", "unknown corpus \"" + data.corpus + "\" (known: text8)");
  }
  if (data.url.empty()) return Invalid("data.url", "must not be empty");
  ABLATE_RETURN_IF_ERROR(InRange("model.hidden", model.hidden, 1, kMaxHidden));
  if (model.vocab != 256 && model.vocab != 27) {
    return Invalid("model.vocab",
                   "must be 256 (raw bytes) or 27 (the text8 alphabet), got " +
                       std::to_string(model.vocab));
  }
  ABLATE_RETURN_IF_ERROR(InRange("train.batch", train.batch, 1, kMaxBatch));
  ABLATE_RETURN_IF_ERROR(InRange("train.seq", train.seq, 1, kMaxSeq));
  if (!(train.lr > 0) || !std::isfinite(train.lr) || train.lr > 10) {
    return Invalid("train.lr", "must be a number in (0, 10], got " + json(train.lr).dump());
  }
  if (!(train.clip_norm >= 0) || !std::isfinite(train.clip_norm)) {
    return Invalid("train.clip_norm",
                   "must be a finite number >= 0 (0 turns clipping off), got " +
                       json(train.clip_norm).dump());
  }
  ABLATE_RETURN_IF_ERROR(InRange("train.steps", train.steps, 1, kMaxSteps));
  ABLATE_RETURN_IF_ERROR(InRange("train.log_every", train.log_every, 1, kMaxSteps));
  ABLATE_RETURN_IF_ERROR(InRange("train.eval_every", train.eval_every, 0, kMaxSteps));
  ABLATE_RETURN_IF_ERROR(InRange("train.eval_bytes", train.eval_bytes, 0, int64_t{1} << 40));
  ABLATE_RETURN_IF_ERROR(InRange("train.checkpoint_every", train.checkpoint_every, 0, kMaxSteps));
  return Status::OK();
}

}  // namespace ablate
