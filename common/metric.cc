#include "common/metric.h"

namespace ablate {

const char* MetricGoalName(MetricGoal goal) {
  return goal == MetricGoal::kMaximize ? "maximize" : "minimize";
}

Status CheckMetricName(std::string_view name) {
  if (name.empty()) return Status::InvalidArgument("a metric name is empty");
  // Quoted so that the message shows where a control character or space is.
  const std::string shown =
      "\"" + std::string(name.substr(0, 40)) + (name.size() > 40 ? "...\"" : "\"");
  if (name.size() > kMaxMetricNameBytes) {
    return Status::InvalidArgument("metric name " + shown + " is " + std::to_string(name.size()) +
                                   " characters, more than " + std::to_string(kMaxMetricNameBytes));
  }
  for (const char c : name) {
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (alnum || c == '_' || c == '-' || c == '.' || c == '/' || c == ':') continue;
    const auto byte = static_cast<unsigned char>(c);
    const std::string what = c == ' '                      ? std::string("a space")
                             : byte >= 0x21 && byte < 0x7f ? std::string("'") + c + "'"
                                                           : "byte " + std::to_string(byte);
    return Status::InvalidArgument("metric name " + shown + " has " + what +
                                   "; names are letters, digits and _ - . / :");
  }
  return Status::OK();
}

bool IsBuiltinMetric(std::string_view name) {
  return name == "train_bpc" || name == "valid_bpc" || name == "test_bpc";
}

}  // namespace ablate
