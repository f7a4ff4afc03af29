// Metric names: what a curve point measures. The built-in trainer reports
// train_bpc, valid_bpc and test_bpc; a program reports any names of its own
// ("valid/loss"). Thread-compatible; never throws.
#ifndef ABLATE_COMMON_METRIC_H_
#define ABLATE_COMMON_METRIC_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "common/status.h"

namespace ablate {

inline constexpr size_t kMaxMetricNameBytes = 128;

// The metric the built-in trainer's validation points are filed under, and
// what results default to when a sweep names no metric.
inline constexpr const char* kDefaultMetric = "valid_bpc";

// Whether a metric is best low (the default, as for losses and bpc) or high.
enum class MetricGoal { kMinimize, kMaximize };

// "minimize", "maximize": the spelling of specs and of the sweeps table.
const char* MetricGoalName(MetricGoal goal);

// OK when `name` is 1 to kMaxMetricNameBytes characters, each a letter, a
// digit or one of _ - . / : (no spaces, quotes or control characters);
// otherwise InvalidArgument naming the name and what is wrong with it.
Status CheckMetricName(std::string_view name);

// train_bpc, valid_bpc or test_bpc: the built-in trainer's metrics.
bool IsBuiltinMetric(std::string_view name);

}  // namespace ablate

#endif  // ABLATE_COMMON_METRIC_H_
