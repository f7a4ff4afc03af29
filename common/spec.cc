#include "common/spec.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <numeric>
#include <optional>
#include <set>
#include <sstream>
#include <utility>

#include "common/config_hash.h"

namespace ablate {

namespace {

using nlohmann::json;

constexpr size_t kMaxNameLength = 100;
constexpr int kMaxAttemptsLimit = 1000;
constexpr double kMinLeaseSeconds = 0.001;  // the coordinator keeps leases in milliseconds
constexpr double kMaxLeaseSeconds = 7 * 24 * 3600;

// ---------------------------------------------------------------- messages

SourcePosition PositionOf(const YAML::Mark& mark) {
  if (mark.is_null()) return {};
  return {mark.line + 1, mark.column + 1};
}

Status ErrorAt(const std::string& filename, SourcePosition where, const std::string& message) {
  if (where.line <= 0) return Status::InvalidArgument(filename + ": " + message);
  return Status::InvalidArgument(filename + ":" + std::to_string(where.line) + ":" +
                                 std::to_string(where.column) + ": " + message);
}

// A JSON value in a message; never throws, whatever bytes a string holds.
std::string Show(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string Quote(const std::string& text) { return Show(json(text)); }

std::string Join(const std::vector<std::string>& items, const char* separator = ", ") {
  std::string joined;
  for (const auto& item : items) joined += (joined.empty() ? "" : separator) + item;
  return joined;
}

// How a node reads in a message: the scalar itself, or what kind of thing it is.
std::string Describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Scalar:
      return Quote(node.Scalar());
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    default:
      return "nothing";
  }
}

// ---------------------------------------------------------------- program values

// Canonical JSON text; never throws, whatever bytes a string holds.
std::string Dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

// A float as Python's repr writes it: the shortest digits that read back
// the same, positional from 1e-4 up to 1e16 (with ".0" when whole), else
// d.ddde+XX with at least two exponent digits.
std::string PythonFloat(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value < 0 ? "-inf" : "inf";
  char buffer[64];
  auto [end, error] =
      std::to_chars(buffer, buffer + sizeof buffer, value, std::chars_format::scientific);
  if (error != std::errc()) return Dump(json(value));
  std::string text(buffer, end);
  std::string sign;
  if (text[0] == '-') {
    sign = "-";
    text.erase(0, 1);
  }
  const size_t e = text.find('e');
  std::string digits = text.substr(0, e);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  const int exponent = std::stoi(text.substr(e + 1));
  if (exponent >= -4 && exponent < 16) {
    if (exponent < 0) return sign + "0." + std::string(-exponent - 1, '0') + digits;
    const size_t whole = static_cast<size_t>(exponent) + 1;
    if (digits.size() <= whole) {
      return sign + digits + std::string(whole - digits.size(), '0') + ".0";
    }
    return sign + digits.substr(0, whole) + "." + digits.substr(whole);
  }
  std::string mantissa = digits.substr(0, 1);
  if (digits.size() > 1) mantissa += "." + digits.substr(1);
  char power[16];
  std::snprintf(power, sizeof power, "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
  return sign + mantissa + power;
}

// A string as Python's repr writes it: single quotes unless it holds a
// single quote and no double one.
std::string PythonRepr(const std::string& text) {
  const bool double_quotes =
      text.find('\'') != std::string::npos && text.find('"') == std::string::npos;
  const char quote = double_quotes ? '"' : '\'';
  std::string out(1, quote);
  for (char c : text) {
    if (c == '\\' || c == quote) {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else {
      out += c;
    }
  }
  return out + quote;
}

// A parameter's value as W&B's agent puts it on a command line: Python's
// str() of the value YAML gave it, so strings bare at the top and quoted
// inside lists and mappings.
std::string PythonStr(const json& value, bool nested = false) {
  switch (value.type()) {
    case json::value_t::string:
      return nested ? PythonRepr(value.get<std::string>()) : value.get<std::string>();
    case json::value_t::boolean:
      return value.get<bool>() ? "True" : "False";
    case json::value_t::null:
      return "None";
    case json::value_t::number_float:
      return PythonFloat(value.get<double>());
    case json::value_t::array: {
      std::vector<std::string> items;
      for (const auto& item : value) items.push_back(PythonStr(item, true));
      return "[" + Join(items) + "]";
    }
    case json::value_t::object: {
      std::vector<std::string> items;
      for (auto item = value.begin(); item != value.end(); ++item) {
        items.push_back(PythonRepr(item.key()) + ": " + PythonStr(*item, true));
      }
      return "{" + Join(items) + "}";
    }
    default:  // integers
      return value.dump();
  }
}

// ---------------------------------------------------------------- settings

std::string SectionOf(const std::string& key) { return key.substr(0, key.find('.')); }
std::string FieldOf(const std::string& key) { return key.substr(key.find('.') + 1); }

bool IsSection(const std::string& name) {
  for (const auto& key : SettingKeys()) {
    if (SectionOf(key) == name) return true;
  }
  return false;
}

std::vector<std::string> FieldsOf(const std::string& section) {
  std::vector<std::string> fields;
  for (const auto& key : SettingKeys()) {
    if (SectionOf(key) == section) fields.push_back(FieldOf(key));
  }
  return fields;
}

// ---------------------------------------------------------------- raw text checks

// Rejects what yaml-cpp would misread or copy into strings unchecked: bytes
// that are not UTF-8 (yaml-cpp passes them through; JSON cannot hold them) and
// the control characters YAML forbids (a NUL also switches yaml-cpp to UTF-16/32).
Status CheckText(std::string_view text, const std::string& filename) {
  int line = 1, column = 1;
  for (size_t i = 0; i < text.size();) {
    const auto byte = static_cast<unsigned char>(text[i]);
    SourcePosition here{line, column};
    size_t length = 0;
    unsigned char low = 0x80, high = 0xBF;  // allowed range of the second byte
    if (byte < 0x80) {
      if ((byte < 0x20 && byte != '\t' && byte != '\n' && byte != '\r') || byte == 0x7F) {
        char code[8];
        std::snprintf(code, sizeof code, "U+%04X", byte);
        return ErrorAt(filename, here,
                       std::string("control character ") + code + " is not allowed");
      }
      length = 1;
    } else if (byte >= 0xC2 && byte <= 0xDF) {
      length = 2;
    } else if (byte >= 0xE0 && byte <= 0xEF) {
      length = 3;
      if (byte == 0xE0) low = 0xA0;   // overlong
      if (byte == 0xED) high = 0x9F;  // UTF-16 surrogates
    } else if (byte >= 0xF0 && byte <= 0xF4) {
      length = 4;
      if (byte == 0xF0) low = 0x90;   // overlong
      if (byte == 0xF4) high = 0x8F;  // past U+10FFFF
    }
    bool valid = length > 0 && i + length <= text.size();
    for (size_t k = 1; valid && k < length; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      valid = k == 1 ? (next >= low && next <= high) : (next >= 0x80 && next <= 0xBF);
    }
    if (!valid) {
      char code[8];
      std::snprintf(code, sizeof code, "0x%02X", byte);
      return ErrorAt(filename, here, std::string("invalid UTF-8 (byte ") + code + ")");
    }
    if (byte == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
    i += length;
  }
  return Status::OK();
}

// One pass over yaml-cpp's event stream before any node is built, rejecting
// what yaml-cpp accepts but no spec needs: nesting past kMaxSpecNesting
// (yaml-cpp's own limit is far deeper), an alias inside its own anchor (a
// cyclic node graph) and a second document.
class StructureCheck : public YAML::EventHandler {
 public:
  // Thrown out of the parser to stop it at the first problem.
  struct Violation {
    YAML::Mark mark;
    std::string message;
  };

  int documents() const { return documents_; }

  void OnDocumentStart(const YAML::Mark& mark) override {
    if (++documents_ > 1) throw Violation{mark, "a spec is one YAML document; found a second"};
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    if (std::find(open_anchors_.begin(), open_anchors_.end(), anchor) != open_anchors_.end()) {
      throw Violation{mark, "alias refers to a node that contains it"};
    }
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    Open(mark, anchor);
  }
  void OnSequenceEnd() override { open_anchors_.pop_back(); }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    Open(mark, anchor);
  }
  void OnMapEnd() override { open_anchors_.pop_back(); }

 private:
  void Open(const YAML::Mark& mark, YAML::anchor_t anchor) {
    if (open_anchors_.size() >= static_cast<size_t>(kMaxSpecNesting)) {
      throw Violation{mark, "nesting deeper than " + std::to_string(kMaxSpecNesting) + " levels"};
    }
    open_anchors_.push_back(anchor);  // 0 (no anchor) never matches an alias
  }

  int documents_ = 0;
  std::vector<YAML::anchor_t> open_anchors_;  // one per open collection
};

Status CheckStructure(const std::string& text, const std::string& filename) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  StructureCheck check;
  try {
    while (parser.HandleNextDocument(check)) {
    }
  } catch (const StructureCheck::Violation& violation) {
    return ErrorAt(filename, PositionOf(violation.mark), violation.message);
  }
  if (check.documents() == 0) return ErrorAt(filename, {}, "the spec is empty");
  return Status::OK();
}

// ---------------------------------------------------------------- scalars

bool AllDigits(std::string_view text, int base) {
  if (text.empty()) return false;
  for (char c : text) {
    const bool digit = base == 16 ? std::isxdigit(static_cast<unsigned char>(c)) != 0
                                  : (c >= '0' && c < '0' + base);
    if (!digit) return false;
  }
  return true;
}

// [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?: the core schema's float.
bool IsDecimal(std::string_view text) {
  size_t i = 0;
  auto digits = [&] {
    const size_t start = i;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
    return i - start;
  };
  if (i < text.size() && (text[i] == '-' || text[i] == '+')) ++i;
  const size_t whole = digits();
  size_t fraction = 0;
  if (i < text.size() && text[i] == '.') {
    ++i;
    fraction = digits();
  }
  if (whole == 0 && fraction == 0) return false;
  if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
    ++i;
    if (i < text.size() && (text[i] == '-' || text[i] == '+')) ++i;
    if (digits() == 0) return false;
  }
  return i == text.size();
}

// An integer as int64, or as uint64 when it is only representable there.
std::optional<json> ParseInteger(std::string_view digits, bool negative, int base) {
  uint64_t magnitude = 0;
  auto [end, error] =
      std::from_chars(digits.data(), digits.data() + digits.size(), magnitude, base);
  if (error != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
  constexpr auto kMaxInt = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  if (!negative) {
    if (magnitude <= kMaxInt) return json(static_cast<int64_t>(magnitude));
    return json(magnitude);
  }
  if (magnitude <= kMaxInt) return json(-static_cast<int64_t>(magnitude));
  if (magnitude == kMaxInt + 1) return json(std::numeric_limits<int64_t>::min());
  return std::nullopt;
}

// A YAML scalar as the JSON value RunConfig::FromJson expects, typed by the
// YAML 1.2 core schema: quoted -> string; true/false -> bool; integers (also
// 0x.., 0o..) -> int64 (uint64 above its range); decimals -> double; anything
// else -> string. `label` names the setting in messages; errors carry no position.
StatusOr<json> TypedScalar(const YAML::Node& node, const std::string& label) {
  if (node.IsNull()) return Status::InvalidArgument(label + ": has no value");
  if (!node.IsScalar()) {
    return Status::InvalidArgument(label + ": expected a single value, got " + Describe(node));
  }
  const std::string& text = node.Scalar();
  const std::string& tag = node.Tag();
  if (tag == "!" || tag == "tag:yaml.org,2002:str") return json(text);
  if (tag != "?") {
    return Status::InvalidArgument(label + ": unsupported tag " + Quote(tag) +
                                   "; write the value plain or quoted");
  }
  if (text == "true" || text == "True" || text == "TRUE") return json(true);
  if (text == "false" || text == "False" || text == "FALSE") return json(false);

  // Integers: decimal with an optional sign, or unsigned 0x.. (hex) and 0o.. (octal).
  std::string_view digits = text;
  const bool negative = !digits.empty() && digits[0] == '-';
  if (!digits.empty() && (digits[0] == '-' || digits[0] == '+')) digits.remove_prefix(1);
  int base = 10;
  if (digits.size() > 2 && digits.size() == text.size() && digits[0] == '0' &&
      (digits[1] == 'x' || digits[1] == 'o')) {
    base = digits[1] == 'x' ? 16 : 8;
    digits.remove_prefix(2);
  }
  if (AllDigits(digits, base)) {
    std::optional<json> integer = ParseInteger(digits, negative, base);
    if (!integer) return Status::InvalidArgument(label + ": integer " + text + " is out of range");
    return *integer;
  }

  if (IsDecimal(text)) {
    double value = 0;
    const std::string_view unsigned_text = std::string_view(text).substr(text[0] == '+' ? 1 : 0);
    auto [end, error] =
        std::from_chars(unsigned_text.data(), unsigned_text.data() + unsigned_text.size(), value);
    if (error != std::errc() || end != unsigned_text.data() + unsigned_text.size() ||
        !std::isfinite(value)) {
      return Status::InvalidArgument(label + ": number " + text + " is out of range");
    }
    return json(value);
  }
  static const std::set<std::string> kNonFinite = {".inf",  ".Inf",  ".INF",  "+.inf",
                                                   "+.Inf", "+.INF", "-.inf", "-.Inf",
                                                   "-.INF", ".nan",  ".NaN",  ".NAN"};
  if (kNonFinite.count(text)) {
    return Status::InvalidArgument(label + ": " + text + " is not a finite number");
  }
  return json(text);
}

// A scalar, list or mapping as JSON, scalars typed as TypedScalar types them.
// `budget` counts down the scalars, lists and mappings read so far, so that
// aliases (which YAML lets repeat a node any number of times without
// writing it again) cannot make a small spec a huge value.
StatusOr<json> TypedValue(const YAML::Node& node, const std::string& label, size_t* budget) {
  if (*budget == 0) {
    return Status::InvalidArgument(label + ": the values hold more than " +
                                   std::to_string(kMaxValueItems) + " items in all");
  }
  --*budget;
  if (node.IsSequence()) {
    json list = json::array();
    for (const auto& item : node) {
      ABLATE_ASSIGN_OR_RETURN(json value, TypedValue(item, label, budget));
      list.push_back(std::move(value));
    }
    return list;
  }
  if (node.IsMap()) {
    json object = json::object();
    for (const auto& pair : node) {
      if (!pair.first.IsScalar()) {
        return Status::InvalidArgument(label + ": mapping keys must be names, got " +
                                       Describe(pair.first));
      }
      const std::string& key = pair.first.Scalar();
      if (object.contains(key)) {
        return Status::InvalidArgument(label + ": key " + Quote(key) + " appears twice");
      }
      ABLATE_ASSIGN_OR_RETURN(object[key], TypedValue(pair.second, label + "." + key, budget));
    }
    return object;
  }
  return TypedScalar(node, label);
}

// The place of a parameter in a parameter object, made (as objects) on the
// way; null where a value that is not an object is in the way, which only a
// spec assembled by hand can have.
json* ParameterAt(json& object, const std::vector<std::string>& path) {
  json* node = &object;
  for (const auto& part : path) {
    if (!node->is_object() && !node->is_null()) return nullptr;
    node = &(*node)[part];
  }
  return node;
}

// Finds axes by key and their levels by value. Numbers compare by value
// (nlohmann::json orders integers and floats together), so 1e-3 finds a
// level written 0.001 and 1e3 one written 1000.
class AxisIndex {
 public:
  explicit AxisIndex(const std::vector<GridAxis>& axes) : levels_(axes.size()) {
    for (size_t a = 0; a < axes.size(); ++a) {
      axes_.emplace(axes[a].key, a);
      for (size_t level = 0; level < axes[a].values.size(); ++level) {
        levels_[a].emplace(axes[a].values[level], level);
      }
    }
  }

  std::optional<size_t> Axis(const std::string& key) const {
    auto it = axes_.find(key);
    return it == axes_.end() ? std::nullopt : std::optional<size_t>(it->second);
  }
  std::optional<size_t> Level(size_t axis, const json& value) const {
    auto it = levels_[axis].find(value);
    return it == levels_[axis].end() ? std::nullopt : std::optional<size_t>(it->second);
  }

 private:
  std::map<std::string, size_t> axes_;
  std::vector<std::map<json, size_t>> levels_;  // per axis: value -> level
};

// ---------------------------------------------------------------- reading the YAML

struct Entry {
  std::string name;
  YAML::Node key;
  YAML::Node value;
};

// A setting as the spec writes it, before the pieces are put together.
struct WrittenSetting {
  std::string key;      // canonical
  std::string spelled;  // as the spec writes it, e.g. "grid.cell" or "seeds"
  SourcePosition written;
  bool is_axis = false;
  bool in_section = false;   // written in data:/model:/train:, where an axis may override it
  std::vector<json> values;  // exactly one when !is_axis
  std::vector<SourcePosition> value_written;
  std::vector<std::string> path;  // program sweeps: where it sits in the parameter object
};

// Top-level keys of the native form and of the W&B form (which has
// `method` or `parameters`). project and entity are W&B bookkeeping, accepted
// so that W&B files load, and ignored.
const std::vector<std::string>& NativeKeys() {
  static const auto* keys = new std::vector<std::string>{
      "name", "description", "data", "model", "train", "grid", "seeds", "exclude", "schedule"};
  return *keys;
}
const std::vector<std::string>& WandbKeys() {
  static const auto* keys = new std::vector<std::string>{
      "method", "name",  "description", "metric", "program", "command", "project", "entity",
      "data",   "model", "parameters",  "train",  "seeds",   "exclude", "schedule"};
  return *keys;
}

bool Contains(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

// A run config (`ablate-worker train CONFIG.yaml`): one job, no grid.
const std::vector<std::string>& RunConfigKeys() {
  static const auto* keys = new std::vector<std::string>{"description", "data", "model", "train"};
  return *keys;
}

class SpecReader {
 public:
  // `single_run`: read a run config, whose only top-level keys are
  // RunConfigKeys() and which needs no name.
  SpecReader(const std::string& filename, bool single_run)
      : filename_(filename), single_run_(single_run) {}

  StatusOr<SweepSpec> Read(const YAML::Node& root) {
    spec_.filename = filename_;
    ABLATE_ASSIGN_OR_RETURN(std::vector<Entry> top, Entries(root, "the spec"));
    bool wandb = false;
    for (const auto& entry : top) wandb |= entry.name == "method" || entry.name == "parameters";
    for (const auto& entry : top) {
      program_ |= wandb && (entry.name == "program" || entry.name == "command");
    }
    if (single_run_) {
      for (const auto& entry : top) {
        if (!Contains(RunConfigKeys(), entry.name)) {
          return Error(entry.key, "unknown top-level key " + Quote(entry.name) +
                                      " in a run config (known: " + Join(RunConfigKeys()) +
                                      "; grids, seeds and excludes belong in a sweep spec)");
        }
      }
    }
    const std::vector<std::string>& allowed = wandb ? WandbKeys() : NativeKeys();

    const Entry* name = nullptr;
    const Entry* exclude = nullptr;
    const Entry* seeds = nullptr;
    const Entry* command = nullptr;
    for (const auto& entry : top) {
      if (!Contains(allowed, entry.name)) {
        if (Contains(WandbKeys(), entry.name)) {
          return Error(entry.key, entry.name +
                                      ": belongs to the W&B form, a spec with method "
                                      "and parameters instead of grid");
        }
        if (Contains(NativeKeys(), entry.name)) {
          return Error(entry.key, entry.name +
                                      ": not part of the W&B form (a spec with method "
                                      "or parameters); put the axes under parameters");
        }
        return Error(entry.key, "unknown top-level key " + Quote(entry.name) +
                                    " (known: " + Join(allowed) + ")");
      }
      if (entry.name == "name") {
        name = &entry;
      } else if (entry.name == "description") {
        if (!entry.value.IsNull()) {
          ABLATE_RETURN_IF_ERROR(RequireScalar(entry, "description"));
          spec_.description = entry.value.Scalar();
        }
      } else if (IsSection(entry.name) && program_) {
        return Error(entry.key, entry.name +
                                    ": a program sweep has no built-in trainer settings; its "
                                    "program takes every setting it needs as a parameter under "
                                    "parameters");
      } else if (IsSection(entry.name)) {
        ABLATE_RETURN_IF_ERROR(ReadSection(entry));
      } else if (entry.name == "grid") {
        ABLATE_RETURN_IF_ERROR(ReadGrid(entry));
      } else if (entry.name == "parameters" && program_) {
        ABLATE_RETURN_IF_ERROR(ReadProgramParameters(entry, {}));
      } else if (entry.name == "parameters") {
        ABLATE_RETURN_IF_ERROR(ReadParameters(entry, ""));
      } else if (entry.name == "seeds") {
        seeds = &entry;
        ABLATE_RETURN_IF_ERROR(ReadAxis(SeedKey(), "seeds", entry, {SeedKey()}));
      } else if (entry.name == "program") {
        ABLATE_RETURN_IF_ERROR(ReadProgram(entry));
      } else if (entry.name == "command") {
        command = &entry;
        ABLATE_RETURN_IF_ERROR(ReadCommand(entry));
      } else if (entry.name == "exclude") {
        exclude = &entry;  // read once the axes are known
      } else if (entry.name == "schedule") {
        ABLATE_RETURN_IF_ERROR(ReadSchedule(entry));
      } else if (entry.name == "method") {
        ABLATE_RETURN_IF_ERROR(RequireScalar(entry, "method"));
        if (entry.value.Scalar() != "grid") {
          return Error(entry.value,
                       "method: only grid search is supported, got " + Describe(entry.value));
        }
      } else if (entry.name == "metric") {
        ABLATE_RETURN_IF_ERROR(ReadMetric(entry));
      } else {  // project, entity: W&B bookkeeping with no meaning here
        ABLATE_RETURN_IF_ERROR(RequireScalar(entry, entry.name));
      }
    }
    if (name == nullptr && !single_run_ && !wandb) {
      return ErrorAt(filename_, PositionOf(root.Mark()), "name: is required");
    }
    if (name == nullptr && wandb) {
      spec_.name = NameFromFilename(filename_);
      if (spec_.name.empty()) {
        return ErrorAt(filename_, PositionOf(root.Mark()),
                       "name: is required, as the file's name gives no usable sweep name");
      }
    }
    if (name != nullptr) ABLATE_RETURN_IF_ERROR(ReadName(*name));
    if (program_) ABLATE_RETURN_IF_ERROR(FinishProgram(root, command));
    ABLATE_RETURN_IF_ERROR(Assemble(seeds != nullptr));
    ABLATE_RETURN_IF_ERROR(program_ ? CheckProgramAxes() : Canonicalize());
    if (exclude != nullptr) ABLATE_RETURN_IF_ERROR(ReadExcludes(*exclude));
    return std::move(spec_);
  }

 private:
  Status Error(const YAML::Node& at, const std::string& message) const {
    return ErrorAt(filename_, PositionOf(at.Mark()), message);
  }
  // A null value has no text of its own; yaml-cpp marks it on the next line.
  static const YAML::Node& PlaceOf(const Entry& entry) {
    return entry.value.IsNull() ? entry.key : entry.value;
  }

  // The entries of a mapping in file order; every key a scalar, none repeated.
  StatusOr<std::vector<Entry>> Entries(const YAML::Node& node, const std::string& label,
                                       const YAML::Node* place = nullptr) const {
    if (!node.IsMap()) {
      return Error(place ? *place : node, label + ": expected a mapping, got " + Describe(node));
    }
    std::vector<Entry> entries;
    std::map<std::string, YAML::Mark> seen;
    for (const auto& pair : node) {
      const YAML::Node& key = pair.first;
      if (!key.IsScalar()) {
        return Error(key, label + ": keys must be names, got " + Describe(key));
      }
      const std::string& name = key.Scalar();
      auto [previous, fresh] = seen.emplace(name, key.Mark());
      if (!fresh) {
        const SourcePosition first = PositionOf(previous->second);
        return Error(key, label + ": key " + Quote(name) + " appears twice (first at line " +
                              std::to_string(first.line) + ")");
      }
      entries.push_back({name, key, pair.second});
    }
    return entries;
  }

  Status RequireScalar(const Entry& entry, const std::string& label) const {
    if (!entry.value.IsScalar()) {
      return Error(PlaceOf(entry),
                   label + ": expected a single value, got " + Describe(entry.value));
    }
    return Status::OK();
  }

  Status ReadName(const Entry& entry) {
    ABLATE_RETURN_IF_ERROR(RequireScalar(entry, "name"));
    const std::string& name = entry.value.Scalar();
    const bool charset_ok = std::all_of(name.begin(), name.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
    });
    if (name.empty() || !charset_ok || name == "." || name == ".." ||
        name.size() > kMaxNameLength) {
      return Error(entry.value, "name: " + Quote(name) + " must be 1 to " +
                                    std::to_string(kMaxNameLength) +
                                    " characters of a-z, 0-9, _, . and - (and not . or ..)");
    }
    spec_.name = name;
    return Status::OK();
  }

  // data:/model:/train: — fixed settings of one section.
  Status ReadSection(const Entry& section) {
    ABLATE_ASSIGN_OR_RETURN(std::vector<Entry> fields,
                            Entries(section.value, section.name, &PlaceOf(section)));
    for (const auto& field : fields) {
      const std::string key = section.name + "." + field.name;
      if (!Contains(SettingKeys(), key)) {
        return Error(field.key, key + ": unknown setting (known in " + section.name + ": " +
                                    Join(FieldsOf(section.name)) + ")");
      }
      ABLATE_RETURN_IF_ERROR(ReadFixed(key, key, field, /*in_section=*/true));
    }
    return Status::OK();
  }

  Status ReadGrid(const Entry& grid) {
    ABLATE_ASSIGN_OR_RETURN(std::vector<Entry> axes, Entries(grid.value, "grid", &PlaceOf(grid)));
    for (const auto& axis : axes) {
      StatusOr<std::string> key = ResolveSettingKey(axis.name);
      if (!key.ok()) return Error(axis.key, "grid: " + key.status().message());
      ABLATE_RETURN_IF_ERROR(ReadAxis(*key, "grid." + axis.name, axis));
    }
    return Status::OK();
  }

  // W&B `parameters:`; `section` is set inside a nested `model: {parameters: ...}`.
  Status ReadParameters(const Entry& parameters, const std::string& section) {
    const std::string label = section.empty() ? "parameters" : "parameters." + section;
    ABLATE_ASSIGN_OR_RETURN(std::vector<Entry> entries,
                            Entries(parameters.value, label, &PlaceOf(parameters)));
    for (const auto& entry : entries) {
      const std::string spelled = label + "." + entry.name;
      if (section.empty() && IsSection(entry.name)) {
        ABLATE_ASSIGN_OR_RETURN(std::vector<Entry> nested,
                                Entries(entry.value, spelled, &PlaceOf(entry)));
        for (const auto& inner : nested) {
          if (inner.name != "parameters") {
            return Error(inner.key, spelled + ": a nested section holds only \"parameters\", got " +
                                        Quote(inner.name));
          }
          ABLATE_RETURN_IF_ERROR(ReadParameters(inner, entry.name));
        }
        continue;
      }
      std::string key = section + "." + entry.name;
      if (section.empty()) {
        StatusOr<std::string> resolved = ResolveSettingKey(entry.name);
        if (!resolved.ok()) return Error(entry.key, label + ": " + resolved.status().message());
        key = *resolved;
      } else if (!Contains(SettingKeys(), key)) {
        return Error(entry.key, key + ": unknown setting (known in " + section + ": " +
                                    Join(FieldsOf(section)) + ")");
      }
      ABLATE_ASSIGN_OR_RETURN(std::vector<Entry> fields,
                              Entries(entry.value, spelled, &PlaceOf(entry)));
      if (fields.size() != 1 || (fields[0].name != "values" && fields[0].name != "value")) {
        const YAML::Node& at = fields.empty() ? PlaceOf(entry) : fields.back().key;
        return Error(at, spelled +
                             ": give exactly one of value (a fixed setting) and values "
                             "(a grid axis); distributions are not supported (grid only)");
      }
      if (fields[0].name == "values") {
        ABLATE_RETURN_IF_ERROR(ReadAxis(key, spelled, fields[0]));
      } else {
        ABLATE_RETURN_IF_ERROR(ReadFixed(key, spelled, fields[0], /*in_section=*/false));
      }
    }
    return Status::OK();
  }

  // The seeds' axis: the trainer's train.seed, or a program's parameter "seed".
  std::string SeedKey() const { return program_ ? "seed" : "train.seed"; }

  // A value as the sweep takes it: a typed scalar, or for a program sweep
  // also a list or mapping of them.
  StatusOr<json> Value(const YAML::Node& node, const std::string& label) const {
    return program_ ? TypedValue(node, label, &value_budget_) : TypedScalar(node, label);
  }

  // A program sweep's `parameters:`, any names; `prefix` is the path of the
  // parameter whose nested `parameters:` these are.
  Status ReadProgramParameters(const Entry& parameters, const std::vector<std::string>& prefix) {
    std::string label = "parameters";
    for (const auto& part : prefix) label += "." + part;
    ABLATE_ASSIGN_OR_RETURN(std::vector<Entry> entries,
                            Entries(parameters.value, label, &PlaceOf(parameters)));
    if (entries.empty()) return Error(PlaceOf(parameters), label + ": no parameters");
    for (const auto& entry : entries) {
      const std::string spelled = label + "." + entry.name;
      if (entry.name.empty()) return Error(entry.key, label + ": a parameter name is empty");
      std::vector<std::string> path = prefix;
      path.push_back(entry.name);
      std::string key;
      for (const auto& part : path) key += (key.empty() ? "" : ".") + part;
      ABLATE_ASSIGN_OR_RETURN(std::vector<Entry> fields,
                              Entries(entry.value, spelled, &PlaceOf(entry)));
      if (fields.size() == 1 && fields[0].name == "parameters") {
        ABLATE_RETURN_IF_ERROR(ReadProgramParameters(fields[0], path));
        continue;
      }
      if (fields.size() != 1 || (fields[0].name != "values" && fields[0].name != "value")) {
        const YAML::Node& at = fields.empty() ? PlaceOf(entry) : fields.back().key;
        return Error(at, spelled +
                             ": give exactly one of value (a fixed parameter), values (a grid "
                             "axis) and parameters (nested parameters); distributions are not "
                             "supported (grid only)");
      }
      if (fields[0].name == "values") {
        ABLATE_RETURN_IF_ERROR(ReadAxis(key, spelled, fields[0], std::move(path)));
      } else {
        ABLATE_RETURN_IF_ERROR(
            ReadFixed(key, spelled, fields[0], /*in_section=*/false, std::move(path)));
      }
    }
    return Status::OK();
  }

  Status ReadProgram(const Entry& entry) {
    ABLATE_RETURN_IF_ERROR(RequireScalar(entry, "program"));
    if (entry.value.Scalar().empty()) return Error(entry.value, "program: is empty");
    if (!spec_.program) spec_.program.emplace();
    spec_.program->program = entry.value.Scalar();
    return Status::OK();
  }

  Status ReadCommand(const Entry& entry) {
    const YAML::Node& list = entry.value;
    if (!list.IsSequence()) {
      return Error(PlaceOf(entry),
                   "command: expected a list of arguments, got " + Describe(entry.value));
    }
    if (list.size() == 0) return Error(list, "command: the list is empty");
    std::vector<std::string> command;
    for (const auto& item : list) {
      const YAML::Node& place = item.IsNull() ? list : item;
      if (!item.IsScalar()) {
        return Error(place,
                     "command: expected each argument to be a single value, got " + Describe(item));
      }
      if (item.Scalar().find("${envvar:") != std::string::npos) {
        return Error(place, "command: " + Quote(item.Scalar()) +
                                ": ${envvar:NAME} is not supported; the command is expanded when "
                                "the sweep is launched, before any worker's environment is known");
      }
      command.push_back(item.Scalar());
    }
    if (!spec_.program) spec_.program.emplace();
    spec_.program->command = std::move(command);
    return Status::OK();
  }

  // A program sweep's command: W&B's default without `command:`, and a
  // program wherever ${program} asks for one.
  Status FinishProgram(const YAML::Node& root, const Entry* command) {
    ProgramSpec& program = spec_.program ? *spec_.program : spec_.program.emplace();
    if (command == nullptr) program.command = DefaultProgramCommand();
    const bool uses_program = std::find(program.command.begin(), program.command.end(),
                                        "${program}") != program.command.end();
    if (uses_program && program.program.empty()) {
      return Error(command != nullptr ? command->key : root,
                   "program: is required, as the command uses ${program}");
    }
    return Status::OK();
  }

  // The error for `axis`'s value at `level`, which repeats the one at `first`.
  Status RepeatedValue(const GridAxis& axis, size_t level, size_t first) const {
    const SourcePosition first_written = axis.written[first];
    return ErrorAt(filename_, axis.written[level],
                   axis.key + ": value " + Show(axis.values[level]) +
                       " appears twice in the axis (first at line " +
                       std::to_string(first_written.line) + ", column " +
                       std::to_string(first_written.column) + ")");
  }

  // A program's values need no trainer's check; an axis still may not
  // repeat one.
  Status CheckProgramAxes() const {
    for (const GridAxis& axis : spec_.axes) {
      std::map<std::string, size_t> seen;  // value as JSON -> level
      for (size_t level = 0; level < axis.values.size(); ++level) {
        auto [previous, fresh] = seen.emplace(Show(axis.values[level]), level);
        if (!fresh) return RepeatedValue(axis, level, previous->second);
      }
    }
    return Status::OK();
  }

  Status ReadFixed(const std::string& key, const std::string& spelled, const Entry& entry,
                   bool in_section, std::vector<std::string> path = {}) {
    StatusOr<json> value = Value(entry.value, spelled);
    if (!value.ok()) return Error(PlaceOf(entry), value.status().message());
    WrittenSetting fixed;
    fixed.key = key;
    fixed.spelled = spelled;
    fixed.written = PositionOf(entry.key.Mark());
    fixed.in_section = in_section;
    fixed.values.push_back(std::move(value).value());
    fixed.value_written.push_back(PositionOf(PlaceOf(entry).Mark()));
    fixed.path = std::move(path);
    settings_.push_back(std::move(fixed));
    return Status::OK();
  }

  Status ReadAxis(const std::string& key, const std::string& spelled, const Entry& entry,
                  std::vector<std::string> path = {}) {
    const YAML::Node& list = entry.value;
    if (!list.IsSequence()) {
      return Error(PlaceOf(entry), spelled + ": expected a list of values, got " + Describe(list));
    }
    if (list.size() == 0) return Error(list, spelled + ": the list of values is empty");
    WrittenSetting axis;
    axis.key = key;
    axis.spelled = spelled;
    axis.written = PositionOf(entry.key.Mark());
    axis.is_axis = true;
    grid_values_ += list.size();
    if (grid_values_ > kMaxGridValues) {
      return Error(list, spelled + ": the axes hold more than " + std::to_string(kMaxGridValues) +
                             " values in all, more than any grid within the job limit needs");
    }
    for (const auto& item : list) {
      const YAML::Node& place = item.IsNull() ? list : item;  // a null item has no mark of its own
      StatusOr<json> value = Value(item, spelled);
      if (!value.ok()) return Error(place, value.status().message());
      axis.values.push_back(std::move(value).value());
      axis.value_written.push_back(PositionOf(place.Mark()));
    }
    axis.path = std::move(path);
    settings_.push_back(std::move(axis));
    return Status::OK();
  }

  Status ReadSchedule(const Entry& schedule) {
    ABLATE_ASSIGN_OR_RETURN(std::vector<Entry> fields,
                            Entries(schedule.value, "schedule", &PlaceOf(schedule)));
    for (const auto& field : fields) {
      const std::string label = "schedule." + field.name;
      StatusOr<json> value = TypedScalar(field.value, label);
      if (!value.ok()) return Error(PlaceOf(field), value.status().message());
      const json& v = *value;
      if (field.name == "max_attempts") {
        if (!v.is_number_integer() || v.get<int64_t>() < 1 ||
            v.get<int64_t>() > kMaxAttemptsLimit) {
          return Error(field.value, label + ": expected an integer from 1 to " +
                                        std::to_string(kMaxAttemptsLimit) + ", got " +
                                        Describe(field.value));
        }
        spec_.schedule.max_attempts = v.get<int>();
      } else if (field.name == "lease_seconds") {
        if (!v.is_number() || !(v.get<double>() >= kMinLeaseSeconds) ||
            v.get<double>() > kMaxLeaseSeconds) {
          return Error(field.value, label + ": expected a number of seconds from " +
                                        Show(kMinLeaseSeconds) + " to " + Show(kMaxLeaseSeconds) +
                                        ", got " + Describe(field.value));
        }
        spec_.schedule.lease_seconds = v.get<double>();
      } else if (field.name == "retry_on_nan") {
        if (!v.is_boolean()) {
          return Error(field.value,
                       label + ": expected true or false, got " + Describe(field.value));
        }
        spec_.schedule.retry_on_nan = v.get<bool>();
      } else if (field.name == "keep_checkpoints") {
        if (!v.is_string() || (v.get<std::string>() != "final" && v.get<std::string>() != "none")) {
          return Error(field.value,
                       label + ": expected final or none, got " + Describe(field.value));
        }
        spec_.schedule.keep_final_checkpoint = v.get<std::string>() == "final";
      } else if (field.name == "silence_seconds") {
        if (!v.is_number() || !(v.get<double>() >= 0) || v.get<double>() > kMaxLeaseSeconds) {
          return Error(field.value, label + ": expected a number of seconds from 0 (never) to " +
                                        Show(kMaxLeaseSeconds) + ", got " + Describe(field.value));
        }
        spec_.schedule.silence_seconds = v.get<double>();
      } else {
        return Error(field.key, label +
                                    ": unknown setting (known: max_attempts, lease_seconds, "
                                    "retry_on_nan, keep_checkpoints, silence_seconds)");
      }
    }
    return Status::OK();
  }

  // W&B's metric names what its tuner optimizes: here what results, best
  // values and the report are judged by. W&B's target (stop once reached)
  // is checked and ignored.
  Status ReadMetric(const Entry& metric) {
    ABLATE_ASSIGN_OR_RETURN(std::vector<Entry> fields,
                            Entries(metric.value, "metric", &PlaceOf(metric)));
    for (const auto& field : fields) {
      if (field.name != "name" && field.name != "goal" && field.name != "target") {
        return Error(field.key,
                     "metric." + field.name + ": unknown key (known: name, goal, target)");
      }
      ABLATE_RETURN_IF_ERROR(RequireScalar(field, "metric." + field.name));
      if (field.name == "goal") {
        if (field.value.Scalar() == "maximize") {
          spec_.metric.goal = MetricGoal::kMaximize;
        } else if (field.value.Scalar() != "minimize") {
          return Error(field.value,
                       "metric.goal: expected minimize or maximize, got " + Describe(field.value));
        }
      } else if (field.name == "name") {
        Status valid = CheckMetricName(field.value.Scalar());
        if (!valid.ok()) return Error(field.value, "metric.name: " + valid.message());
        spec_.metric.name = field.value.Scalar();
      }
    }
    return Status::OK();
  }

  // Puts the written settings together: fixed ones into `base`, axes in file
  // order with the seeds last. A setting is given once, except that a section
  // entry is a default an axis may override; it is then left out of `base`.
  Status Assemble(bool has_seeds) {
    std::map<std::string, WrittenSetting*> by_key;
    for (auto& setting : settings_) {
      auto [previous, fresh] = by_key.emplace(setting.key, &setting);
      if (fresh) continue;
      WrittenSetting& first = *previous->second;
      if (first.is_axis != setting.is_axis && (first.in_section || setting.in_section)) {
        (setting.in_section ? setting : first).values.clear();  // shadowed by the axis
        if (setting.is_axis) previous->second = &setting;       // a second axis is still an error
        continue;
      }
      return ErrorAt(filename_, setting.written,
                     setting.key + " is given twice: as " + Quote(setting.spelled) +
                         " here and as " + Quote(first.spelled) + " at line " +
                         std::to_string(first.written.line) + ", column " +
                         std::to_string(first.written.column));
    }
    for (auto& setting : settings_) {
      if (setting.values.empty()) continue;
      if (setting.is_axis) {
        spec_.axes.push_back({setting.key, std::move(setting.values),
                              std::move(setting.value_written), std::move(setting.path)});
      } else if (program_) {
        json* slot = ParameterAt(spec_.base, setting.path);
        if (slot == nullptr) {
          return ErrorAt(filename_, setting.written,
                         setting.key + ": inside a parameter that is not a mapping");
        }
        *slot = setting.values[0];
        spec_.base_written[setting.key] = setting.value_written[0];
      } else {
        spec_.base[SectionOf(setting.key)][FieldOf(setting.key)] = setting.values[0];
        spec_.base_written[setting.key] = setting.value_written[0];
      }
    }
    if (has_seeds) {
      auto seeds = std::find_if(spec_.axes.begin(), spec_.axes.end(),
                                [&](const GridAxis& axis) { return axis.key == SeedKey(); });
      std::rotate(seeds, seeds + 1, spec_.axes.end());
    }
    return Status::OK();
  }

  // Checks every grid value (and the fixed settings) with RunConfig::FromJson
  // and replaces each with its canonical form; then no axis may repeat a value.
  Status Canonicalize();

  Status ReadExcludes(const Entry& exclude) {
    const YAML::Node& list = exclude.value;
    if (!list.IsSequence()) {
      return Error(PlaceOf(exclude), "exclude: expected a list of mappings, got " + Describe(list));
    }
    if (list.size() == 0) return Error(list, "exclude: the list is empty");
    if (list.size() > kMaxExcludes) {
      return Error(list, "exclude: " + std::to_string(list.size()) + " entries, more than the " +
                             "limit of " + std::to_string(kMaxExcludes));
    }
    const AxisIndex index(spec_.axes);
    for (const auto& item : list) {
      ABLATE_ASSIGN_OR_RETURN(std::vector<Entry> fields, Entries(item, "exclude"));
      if (fields.empty()) return Error(item, "exclude: an empty entry would drop every job");
      json match = json::object();
      for (const auto& field : fields) {
        StatusOr<std::string> key =
            program_ ? StatusOr<std::string>(field.name) : ResolveSettingKey(field.name);
        if (!key.ok()) return Error(field.key, "exclude: " + key.status().message());
        const std::optional<size_t> axis = index.Axis(*key);
        if (!axis) {
          return Error(field.key, "exclude: " + *key + " is not a grid axis; exclude can only " +
                                      "name axes (grid keys or seeds)");
        }
        if (match.contains(*key)) {
          return Error(field.key, "exclude: " + *key + " is given twice in one entry");
        }
        StatusOr<json> value = Value(field.value, "exclude." + field.name);
        if (!value.ok()) return Error(PlaceOf(field), value.status().message());
        const std::optional<size_t> level = index.Level(*axis, *value);
        const std::vector<json>& values = spec_.axes[*axis].values;
        if (!level) {
          std::vector<std::string> levels;
          for (const auto& v : values) levels.push_back(Show(v));
          return Error(PlaceOf(field), "exclude: " + *key + ": " + Show(*value) +
                                           " is not one of the axis's values (" + Join(levels) +
                                           ")");
        }
        match[*key] = values[*level];
      }
      spec_.excludes.push_back(std::move(match));
    }
    return Status::OK();
  }

  const std::string& filename_;
  const bool single_run_;
  bool program_ = false;  // a W&B spec with program: or command:
  mutable size_t value_budget_ = kMaxValueItems;  // TypedValue's, over the whole spec
  SweepSpec spec_;
  std::vector<WrittenSetting> settings_;  // in file order
  size_t grid_values_ = 0;                // over all axes so far
};

// ---------------------------------------------------------------- building configs

// Where the setting that RunConfig's error names was written: its grid value
// in this job, its fixed entry, or for a whole-section error ("data: give
// exactly one of ...") the first setting of that section the job takes.
SourcePosition WhereWritten(const SweepSpec& spec, const std::vector<size_t>& levels,
                            const std::string& setting) {
  auto axis_position = [&](size_t a) {
    const GridAxis& axis = spec.axes[a];
    return levels[a] < axis.written.size() ? axis.written[levels[a]] : SourcePosition{};
  };
  for (size_t a = 0; a < spec.axes.size(); ++a) {
    if (spec.axes[a].key == setting) return axis_position(a);
  }
  if (auto it = spec.base_written.find(setting); it != spec.base_written.end()) return it->second;
  for (size_t a = 0; a < spec.axes.size(); ++a) {
    if (SectionOf(spec.axes[a].key) == setting) return axis_position(a);
  }
  for (const auto& [key, position] : spec.base_written) {
    if (SectionOf(key) == setting) return position;
  }
  return {};
}

// Builds the RunConfigs of grid points through one JSON document in which
// only the axes' values change from point to point.
class ConfigBuilder {
 public:
  // spec.base must be an object of objects.
  explicit ConfigBuilder(const SweepSpec& spec) : spec_(spec), config_(spec.base) {
    // std::map nodes do not move, so these stay valid as the document fills.
    for (const auto& axis : spec.axes) {
      slots_.push_back(&config_[SectionOf(axis.key)][FieldOf(axis.key)]);
    }
  }

  // The RunConfig of the point that takes level levels[a] of axis a, or
  // RunConfig's complaint placed at the value it is about.
  StatusOr<RunConfig> Build(const std::vector<size_t>& levels) {
    for (size_t a = 0; a < slots_.size(); ++a) *slots_[a] = spec_.axes[a].values[levels[a]];
    StatusOr<RunConfig> run = RunConfig::FromJson(config_);
    if (!run.ok()) {
      // RunConfig's messages start with the setting they are about.
      const std::string& message = run.status().message();
      const std::string setting = message.substr(0, message.find(':'));
      return ErrorAt(spec_.filename, WhereWritten(spec_, levels, setting), message);
    }
    return run;
  }

 private:
  const SweepSpec& spec_;
  json config_;
  std::vector<json*> slots_;  // where each axis's value sits in config_
};

// A setting's value as RunConfig::ToJson writes it; `fallback` for the
// settings ToJson leaves out (data.path and data.corpus when empty,
// train.precision at its default).
json CanonicalValue(const json& canonical, const std::string& key, const json& fallback) {
  const json& section = canonical.at(SectionOf(key));
  auto it = section.find(FieldOf(key));
  return it == section.end() ? fallback : *it;
}

Status SpecReader::Canonicalize() {
  // Each value is tried with the first level of every other axis, so a value
  // that needs a particular partner (data.path vs data.corpus) is judged in a
  // real job of the grid.
  ConfigBuilder builder(spec_);
  std::vector<size_t> levels(spec_.axes.size(), 0);
  ABLATE_ASSIGN_OR_RETURN(RunConfig first, builder.Build(levels));
  const json first_json = first.ToJson();
  for (auto section = spec_.base.begin(); section != spec_.base.end(); ++section) {
    for (auto field = section->begin(); field != section->end(); ++field) {
      *field = CanonicalValue(first_json, section.key() + "." + field.key(), *field);
    }
  }
  for (size_t a = 0; a < spec_.axes.size(); ++a) {
    GridAxis& axis = spec_.axes[a];
    std::map<std::string, size_t> seen;  // canonical text -> level
    for (size_t level = 0; level < axis.values.size(); ++level) {
      levels[a] = level;
      ABLATE_ASSIGN_OR_RETURN(RunConfig run, builder.Build(levels));
      axis.values[level] = CanonicalValue(run.ToJson(), axis.key, axis.values[level]);
      auto [previous, fresh] = seen.emplace(Show(axis.values[level]), level);
      if (!fresh) return RepeatedValue(axis, level, previous->second);
    }
    levels[a] = 0;
  }
  return Status::OK();
}

// ---------------------------------------------------------------- hand-out order

// The position of every grid point in a reference order of the full grid in
// which each axis's levels come round in turn: any L consecutive jobs from a
// multiple of L hold each of an L-level axis's levels once, so every prefix
// is balanced on every axis. Built axis by axis: the order of the first a
// axes (length M) is repeated L times, and the new axis takes level
// (k + k / T) mod L at position k, T = lcm(M, L); the k / T shift gives each
// repeat of a point of the shorter order a level it has not had yet.
// Returns rank[grid point], grid points numbered with the last axis fastest.
std::vector<size_t> ReferenceRanks(const std::vector<size_t>& axis_sizes, size_t points) {
  const size_t num_axes = axis_sizes.size();
  std::vector<size_t> prefix_points(num_axes), periods(num_axes), strides(num_axes);
  size_t length = 1;
  for (size_t a = 0; a < num_axes; ++a) {
    periods[a] = std::lcm(length, axis_sizes[a]);
    length *= axis_sizes[a];
    prefix_points[a] = length;
  }
  size_t stride = 1;
  for (size_t a = num_axes; a-- > 0;) {
    strides[a] = stride;
    stride *= axis_sizes[a];
  }
  std::vector<size_t> rank(points);
  for (size_t k = 0; k < points; ++k) {
    size_t point = 0;
    for (size_t a = 0; a < num_axes; ++a) {
      const size_t position = k % prefix_points[a];
      point += (position + position / periods[a]) % axis_sizes[a] * strides[a];
    }
    rank[point] = k;
  }
  return rank;
}

// Greedy balancing: repeatedly take the remaining job whose levels have been
// handed out least often, summed over axes, the first in `scan_order` on
// ties. `levels` holds each job's level per axis, job after job.
//
// Scores only grow, so the last pick's score bounds every remaining score
// from below, and so does the sum over axes of the least count among levels
// that still have jobs; a scan stops at the first job that reaches the larger
// bound. With the reference order as `scan_order` and nothing excluded that
// is always the first job scanned.
std::vector<size_t> BalancedOrder(const std::vector<size_t>& levels,
                                  const std::vector<size_t>& scan_order,
                                  const std::vector<size_t>& axis_sizes) {
  const size_t num_axes = axis_sizes.size();
  const size_t num_jobs = scan_order.size();
  std::vector<size_t> offsets(num_axes);  // of each axis's levels in the per-level arrays
  size_t total_levels = 0;
  for (size_t a = 0; a < num_axes; ++a) {
    offsets[a] = total_levels;
    total_levels += axis_sizes[a];
  }
  std::vector<uint64_t> handed(total_levels, 0);  // jobs handed out, per level
  std::vector<uint64_t> left(total_levels, 0);    // jobs not yet handed out, per level
  for (size_t job : scan_order) {
    for (size_t a = 0; a < num_axes; ++a) ++left[offsets[a] + levels[job * num_axes + a]];
  }
  // Per axis: the least `handed` among levels with jobs left, and how many have it.
  std::vector<uint64_t> least(num_axes, 0);
  std::vector<size_t> at_least(num_axes, 0);
  auto recount = [&](size_t a) {
    least[a] = std::numeric_limits<uint64_t>::max();
    for (size_t i = offsets[a]; i < offsets[a] + axis_sizes[a]; ++i) {
      if (left[i] == 0) continue;
      if (handed[i] < least[a]) {
        least[a] = handed[i];
        at_least[a] = 0;
      }
      at_least[a] += handed[i] == least[a];
    }
  };
  for (size_t a = 0; a < num_axes; ++a) recount(a);

  // The jobs not handed out, as a list over positions in `scan_order`:
  // next[num_jobs] is the first, and num_jobs also marks the end.
  std::vector<size_t> next(num_jobs + 1);
  std::iota(next.begin(), next.end(), 1);
  next[num_jobs] = 0;
  if (num_jobs > 0) next[num_jobs - 1] = num_jobs;

  std::vector<size_t> order;
  order.reserve(num_jobs);
  uint64_t floor = 0;
  while (order.size() < num_jobs) {
    uint64_t bound = 0;
    for (size_t a = 0; a < num_axes; ++a) bound += least[a];
    floor = std::max(floor, bound);
    size_t best_prev = num_jobs;
    uint64_t best_score = std::numeric_limits<uint64_t>::max();
    for (size_t prev = num_jobs, p = next[num_jobs]; p != num_jobs && best_score > floor;
         prev = p, p = next[p]) {
      const size_t* job_levels = levels.data() + scan_order[p] * num_axes;
      uint64_t score = 0;
      for (size_t a = 0; a < num_axes; ++a) score += handed[offsets[a] + job_levels[a]];
      if (score < best_score) {
        best_score = score;
        best_prev = prev;
      }
    }
    floor = best_score;
    const size_t position = next[best_prev];
    next[best_prev] = next[position];
    const size_t job = scan_order[position];
    order.push_back(job);
    for (size_t a = 0; a < num_axes; ++a) {
      const size_t i = offsets[a] + levels[job * num_axes + a];
      if (handed[i] == least[a]) --at_least[a];
      ++handed[i];
      --left[i];
      if (at_least[a] == 0 && order.size() < num_jobs) recount(a);
    }
  }
  return order;
}

std::string DescribeCount(double count) {
  char text[32];
  std::snprintf(text, sizeof text, count < 1e15 ? "%.0f" : "%.3g", count);
  return text;
}

}  // namespace

// ---------------------------------------------------------------- public API

const std::vector<std::string>& SettingKeys() {
  static const std::vector<std::string> keys = [] {
    // ToJson writes every setting except an empty data source and a default
    // precision; set both sources and a precision that is not the default.
    RunConfig every;
    every.data.path = "path";
    every.data.corpus = "corpus";
    every.train.precision = Precision::kFp32;
    const json canonical = every.ToJson();
    std::vector<std::string> all;
    for (const auto& section : canonical.items()) {
      for (const auto& field : section.value().items()) {
        all.push_back(section.key() + "." + field.key());
      }
    }
    std::sort(all.begin(), all.end());
    return all;
  }();
  return keys;
}

StatusOr<std::string> ResolveSettingKey(const std::string& name) {
  return ResolveSettingKey(name, SettingKeys());
}

StatusOr<std::string> ResolveSettingKey(const std::string& name,
                                        const std::vector<std::string>& known_keys) {
  std::vector<std::string> matches;
  for (const auto& key : known_keys) {
    const bool dotted = name.find('.') != std::string::npos;
    if (dotted ? key == name : FieldOf(key) == name) matches.push_back(key);
  }
  if (matches.size() == 1) return matches[0];
  if (matches.size() > 1) {
    return Status::InvalidArgument("setting " + Quote(name) + " is ambiguous; write one of " +
                                   Join(matches));
  }
  return Status::InvalidArgument("unknown setting " + Quote(name) + " (known: " + Join(known_keys) +
                                 ")");
}

namespace {

StatusOr<SweepSpec> ParseSpecText(std::string_view yaml_text, const std::string& filename,
                                  bool single_run) {
  if (yaml_text.size() > kMaxSpecBytes) {
    return ErrorAt(filename, {},
                   "the spec is " + std::to_string(yaml_text.size()) +
                       " bytes, more than the limit of " + std::to_string(kMaxSpecBytes));
  }
  ABLATE_RETURN_IF_ERROR(CheckText(yaml_text, filename));
  const std::string text(yaml_text);
  try {
    ABLATE_RETURN_IF_ERROR(CheckStructure(text, filename));
    const YAML::Node root = YAML::Load(text);
    ABLATE_ASSIGN_OR_RETURN(SweepSpec spec, SpecReader(filename, single_run).Read(root));
    spec.source_text = text;
    return spec;
  } catch (const YAML::Exception& e) {
    return ErrorAt(filename, PositionOf(e.mark), "invalid YAML: " + e.msg);
  }
}

StatusOr<std::string> ReadSpecText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int error = errno;
    if (error == ENOENT) return Status::NotFound(path + ": no such file");
    return Status::IOError(path + ": cannot open: " + std::strerror(error));
  }
  // One byte past the limit is enough to know the file is too large.
  std::string text(kMaxSpecBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (in.bad() || (!in && !in.eof())) return Status::IOError(path + ": read failed");
  text.resize(static_cast<size_t>(in.gcount()));
  return text;
}

}  // namespace

StatusOr<SweepSpec> ParseSpec(std::string_view yaml_text, const std::string& filename) {
  return ParseSpecText(yaml_text, filename, /*single_run=*/false);
}

StatusOr<SweepSpec> LoadSpecFile(const std::string& path) {
  ABLATE_ASSIGN_OR_RETURN(std::string text, ReadSpecText(path));
  return ParseSpec(text, path);
}

StatusOr<RunConfig> ParseRunConfig(std::string_view yaml_text, const std::string& filename) {
  ABLATE_ASSIGN_OR_RETURN(SweepSpec spec, ParseSpecText(yaml_text, filename, /*single_run=*/true));
  ABLATE_ASSIGN_OR_RETURN(std::vector<Job> jobs, ExpandGrid(spec, 1));
  return std::move(jobs.front().config);
}

StatusOr<RunConfig> LoadRunConfigFile(const std::string& path) {
  ABLATE_ASSIGN_OR_RETURN(std::string text, ReadSpecText(path));
  return ParseRunConfig(text, path);
}

namespace {

// The number of grid points, refused (without overflowing) past max_jobs.
StatusOr<size_t> CountPoints(const SweepSpec& spec, size_t max_jobs) {
  size_t points = 1;
  bool too_many = false;
  double approximate = 1;
  std::vector<std::string> shape;
  for (const auto& axis : spec.axes) {
    if (axis.values.empty()) return ErrorAt(spec.filename, {}, axis.key + ": the axis is empty");
    const size_t size = axis.values.size();
    approximate *= static_cast<double>(size);
    shape.push_back(std::to_string(size));
    if (too_many || points > max_jobs / size) {
      too_many = true;
    } else {
      points *= size;
    }
  }
  if (too_many || points > max_jobs) {
    return ErrorAt(spec.filename, {},
                   "the grid has " + DescribeCount(approximate) + " points (" + Join(shape, " x ") +
                       "), more than the limit of " + std::to_string(max_jobs) + " jobs");
  }
  return points;
}

// Each exclude as the (axis, level) pairs it matches.
using Exclude = std::vector<std::pair<size_t, size_t>>;

StatusOr<std::vector<Exclude>> ResolveExcludes(const SweepSpec& spec) {
  const AxisIndex index(spec.axes);
  std::vector<Exclude> excludes;
  for (const auto& exclude : spec.excludes) {
    if (!exclude.is_object()) {
      return ErrorAt(spec.filename, {}, "exclude: expected {setting: value}, got " + Show(exclude));
    }
    Exclude& pairs = excludes.emplace_back();
    for (auto field = exclude.begin(); field != exclude.end(); ++field) {
      const std::optional<size_t> axis = index.Axis(field.key());
      if (!axis) {
        return ErrorAt(spec.filename, {}, "exclude: " + field.key() + " is not a grid axis");
      }
      const std::optional<size_t> level = index.Level(*axis, *field);
      if (!level) {
        return ErrorAt(
            spec.filename, {},
            "exclude: " + field.key() + ": " + Show(*field) + " is not one of the axis's values");
      }
      pairs.emplace_back(*axis, *level);
    }
  }
  return excludes;
}

// The grid points no exclude drops, in grid order (the last axis turns
// fastest): their axis levels, one row of spec.axes.size() after another,
// and their point numbers.
struct KeptPoints {
  std::vector<size_t> levels;
  std::vector<size_t> points;
};

KeptPoints Keep(const SweepSpec& spec, size_t points, const std::vector<Exclude>& excludes) {
  KeptPoints kept;
  const size_t num_axes = spec.axes.size();
  std::vector<size_t> levels(num_axes, 0);
  for (size_t point = 0; point < points; ++point) {
    const bool excluded = std::any_of(excludes.begin(), excludes.end(), [&](const Exclude& pairs) {
      return std::all_of(pairs.begin(), pairs.end(),
                         [&](const auto& pair) { return levels[pair.first] == pair.second; });
    });
    if (!excluded) {
      kept.levels.insert(kept.levels.end(), levels.begin(), levels.end());
      kept.points.push_back(point);
    }
    for (size_t a = num_axes; a-- > 0;) {  // odometer
      if (++levels[a] < spec.axes[a].values.size()) break;
      levels[a] = 0;
    }
  }
  return kept;
}

// Refuses a program sweep whose jobs' parameter objects could be too large:
// one job's past kMaxProgramConfigBytes, or all jobs' together past
// kMaxProgramSweepBytes (its command holds the parameters a few times more).
// Bounded from above by the fixed parameters and each axis's largest value.
Status CheckProgramSize(const SweepSpec& spec, size_t points) {
  size_t job_bytes = Dump(spec.base).size();
  for (const GridAxis& axis : spec.axes) {
    size_t largest = 0;
    for (const json& value : axis.values) largest = std::max(largest, Dump(value).size());
    job_bytes += axis.key.size() + largest + 8;  // quotes, colon, comma, nesting
  }
  if (job_bytes > kMaxProgramConfigBytes) {
    return ErrorAt(spec.filename, {},
                   "parameters: a job's parameters take up to " + std::to_string(job_bytes) +
                       " bytes as JSON, more than the limit of " +
                       std::to_string(kMaxProgramConfigBytes));
  }
  if (job_bytes * points > kMaxProgramSweepBytes) {
    return ErrorAt(spec.filename, {},
                   "parameters: the " + std::to_string(points) + " jobs' parameters take up to " +
                       std::to_string(job_bytes * points) +
                       " bytes as JSON, more than the limit of " +
                       std::to_string(kMaxProgramSweepBytes));
  }
  return Status::OK();
}

// A program job per kept point, in grid order: its factors, parameter
// object, command and hash.
StatusOr<std::vector<Job>> BuildProgramJobs(const SweepSpec& spec, const KeptPoints& kept) {
  const size_t num_axes = spec.axes.size();
  std::vector<Job> jobs(kept.points.size());
  for (size_t j = 0; j < jobs.size(); ++j) {
    Job& job = jobs[j];
    job.factors = json::object();
    job.parameters = spec.base;
    for (size_t a = 0; a < num_axes; ++a) {
      const GridAxis& axis = spec.axes[a];
      const json& value = axis.values[kept.levels[j * num_axes + a]];
      job.factors[axis.key] = value;
      json* slot = ParameterAt(job.parameters,
                               axis.path.empty() ? std::vector<std::string>{axis.key} : axis.path);
      if (slot == nullptr) {
        return ErrorAt(spec.filename, {}, axis.key + ": inside a parameter that is not a mapping");
      }
      *slot = value;
    }
    job.command = ExpandCommand(*spec.program, job.parameters);
    if (job.command.empty()) {
      return ErrorAt(
          spec.filename, {},
          "command: expands to no arguments at all (in the job " + Show(job.factors) + ")");
    }
    job.config_hash = Sha256Hex(job.ConfigJson());
  }
  return jobs;
}

// A job per kept point, in grid order: its factors, config and hash.
StatusOr<std::vector<Job>> BuildJobs(const SweepSpec& spec, const KeptPoints& kept) {
  if (spec.program) return BuildProgramJobs(spec, kept);
  const size_t num_axes = spec.axes.size();
  ConfigBuilder builder(spec);
  std::vector<Job> jobs(kept.points.size());
  std::vector<size_t> levels;
  for (size_t j = 0; j < jobs.size(); ++j) {
    levels.assign(kept.levels.begin() + static_cast<std::ptrdiff_t>(j * num_axes),
                  kept.levels.begin() + static_cast<std::ptrdiff_t>((j + 1) * num_axes));
    Job& job = jobs[j];
    job.factors = json::object();
    for (size_t a = 0; a < num_axes; ++a) {
      job.factors[spec.axes[a].key] = spec.axes[a].values[levels[a]];
    }
    StatusOr<RunConfig> config = builder.Build(levels);
    if (!config.ok()) {
      return Status::InvalidArgument(config.status().message() + " (in the job " +
                                     Show(job.factors) + ")");
    }
    job.config = std::move(config).value();
    job.config_hash = ConfigHash(job.config);
  }
  return jobs;
}

// The jobs in hand-out order (BalancedOrder over the reference ranks), each
// with its order set.
std::vector<Job> InHandOutOrder(const SweepSpec& spec, size_t points, const KeptPoints& kept,
                                std::vector<Job> grid_jobs) {
  std::vector<size_t> axis_sizes;
  for (const auto& axis : spec.axes) axis_sizes.push_back(axis.values.size());
  const std::vector<size_t> rank = ReferenceRanks(axis_sizes, points);
  std::vector<size_t> scan_order(grid_jobs.size());
  std::iota(scan_order.begin(), scan_order.end(), 0);
  std::sort(scan_order.begin(), scan_order.end(),
            [&](size_t a, size_t b) { return rank[kept.points[a]] < rank[kept.points[b]]; });
  std::vector<Job> jobs;
  jobs.reserve(grid_jobs.size());
  for (size_t index : BalancedOrder(kept.levels, scan_order, axis_sizes)) {
    jobs.push_back(std::move(grid_jobs[index]));
    jobs.back().order = static_cast<int64_t>(jobs.size() - 1);
  }
  return jobs;
}

}  // namespace

StatusOr<std::vector<Job>> ExpandGrid(const SweepSpec& spec, size_t max_jobs) {
  // The size first, so that no grid is too large to refuse.
  ABLATE_ASSIGN_OR_RETURN(const size_t points, CountPoints(spec, max_jobs));
  // A spec assembled by hand rather than by ParseSpec may have any shape.
  const bool base_ok =
      spec.base.is_object() &&
      (spec.program || std::all_of(spec.base.begin(), spec.base.end(),
                                   [](const json& section) { return section.is_object(); }));
  if (!base_ok) {
    return ErrorAt(spec.filename, {},
                   "base: expected {section: {setting: value}}, got " + Show(spec.base));
  }
  if (spec.program) ABLATE_RETURN_IF_ERROR(CheckProgramSize(spec, points));
  ABLATE_ASSIGN_OR_RETURN(const std::vector<Exclude> excludes, ResolveExcludes(spec));
  const KeptPoints kept = Keep(spec, points, excludes);
  if (kept.points.empty()) {
    return ErrorAt(spec.filename, {}, "the excludes drop every job of the grid");
  }
  ABLATE_ASSIGN_OR_RETURN(std::vector<Job> grid_jobs, BuildJobs(spec, kept));
  return InHandOutOrder(spec, points, kept, std::move(grid_jobs));
}

std::string SpecHash(const SweepSpec& spec) {
  json axes = json::array();
  for (const auto& axis : spec.axes) {
    json entry = {{"key", axis.key}, {"values", axis.values}};
    if (spec.program) entry["path"] = axis.path;
    axes.push_back(std::move(entry));
  }
  json identity = {{"base", spec.base}, {"axes", axes}, {"excludes", spec.excludes}};
  // Only program sweeps name these, so that a built-in sweep keeps its hash.
  if (spec.program) {
    identity["program"] = spec.program->program;
    identity["command"] = spec.program->command;
  }
  return Sha256Hex(identity.dump(-1, ' ', false, json::error_handler_t::replace));
}

std::string Job::ConfigJson() const {
  if (parameters.is_object()) return Dump(parameters);
  return config.ToJson().dump();
}

const std::vector<std::string>& DefaultProgramCommand() {
  static const auto* command =
      new std::vector<std::string>{"${env}", "${interpreter}", "${program}", "${args}"};
  return *command;
}

std::vector<std::string> ExpandCommand(const ProgramSpec& program, const json& parameters) {
  std::vector<std::string> args, no_hyphens, no_equals, no_boolean_flags;
  for (auto parameter = parameters.begin(); parameter != parameters.end(); ++parameter) {
    const std::string& name = parameter.key();
    const std::string value = PythonStr(*parameter);
    args.push_back("--" + name + "=" + value);
    no_hyphens.push_back(name + "=" + value);
    no_equals.push_back("--" + name);
    no_equals.push_back(value);
    if (!parameter->is_boolean()) {
      no_boolean_flags.push_back("--" + name + "=" + value);
    } else if (parameter->get<bool>()) {
      no_boolean_flags.push_back("--" + name);
    }
  }
  const std::map<std::string, std::vector<std::string>> macros = {
      {"${env}", {"/usr/bin/env"}},
      {"${interpreter}", {"python3"}},
      {"${program}", {program.program}},
      {"${args}", args},
      {"${args_no_hyphens}", no_hyphens},
      {"${args_no_equals}", no_equals},
      {"${args_no_boolean_flags}", no_boolean_flags},
      {"${args_json}", {Dump(parameters.is_object() ? parameters : json::object())}},
  };
  std::vector<std::string> command;
  for (const std::string& argument : program.command) {
    auto macro = macros.find(argument);
    if (macro == macros.end()) {
      command.push_back(argument);
    } else {
      command.insert(command.end(), macro->second.begin(), macro->second.end());
    }
  }
  return command;
}

std::string NameFromFilename(const std::string& filename) {
  std::string name = filename.substr(filename.find_last_of('/') + 1);
  for (const char* extension : {".yaml", ".yml"}) {
    const size_t length = std::strlen(extension);
    if (name.size() > length && name.compare(name.size() - length, length, extension) == 0) {
      name.resize(name.size() - length);
      break;
    }
  }
  for (char& c : name) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    const bool allowed =
        (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
    if (!allowed) c = '-';
  }
  if (name.size() > kMaxNameLength) name.resize(kMaxNameLength);
  if (name == "." || name == "..") return "";
  return name;
}

}  // namespace ablate
