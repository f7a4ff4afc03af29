#include "common/metric.h"

#include <gtest/gtest.h>

#include <string>

namespace ablate {
namespace {

TEST(MetricName, TakesWandbStyleNames) {
  for (const char* name : {"valid_bpc", "valid/loss", "eval:acc", "top-1.err", "A9"}) {
    EXPECT_TRUE(CheckMetricName(name).ok()) << name;
  }
  EXPECT_TRUE(CheckMetricName(std::string(kMaxMetricNameBytes, 'x')).ok());
}

TEST(MetricName, RefusesEmptyLongSpacedQuotedAndControlNames) {
  EXPECT_EQ(CheckMetricName("").code(), Status::kInvalidArgument);
  EXPECT_EQ(CheckMetricName(std::string(kMaxMetricNameBytes + 1, 'x')).code(),
            Status::kInvalidArgument);
  Status spaced = CheckMetricName("valid loss");
  EXPECT_EQ(spaced.code(), Status::kInvalidArgument);
  EXPECT_EQ(spaced.message(),
            "metric name \"valid loss\" has a space; names are letters, digits and _ - . / :");
  Status quoted = CheckMetricName("a\"b");
  EXPECT_NE(quoted.message().find("'\"'"), std::string::npos) << quoted.ToString();
  EXPECT_NE(CheckMetricName("a\nb").message().find("byte 10"), std::string::npos);
  EXPECT_EQ(CheckMetricName("caf\xc3\xa9").code(), Status::kInvalidArgument);
}

TEST(MetricName, KnowsTheBuiltInTrainersMetrics) {
  EXPECT_TRUE(IsBuiltinMetric("train_bpc"));
  EXPECT_TRUE(IsBuiltinMetric("test_bpc"));
  EXPECT_FALSE(IsBuiltinMetric("valid/loss"));
  EXPECT_FALSE(IsBuiltinMetric("bpc"));
}

}  // namespace
}  // namespace ablate
