#include "store/statistics.h"

#include <gtest/gtest.h>

#include <cmath>

namespace ablate {
namespace {

TEST(StudentT, QuantilesMatchTables) {
  EXPECT_NEAR(StudentT975(1), 12.7062047, 1e-6);
  EXPECT_NEAR(StudentT975(2), 4.30265273, 1e-6);
  EXPECT_NEAR(StudentT975(8), 2.30600414, 1e-6);
  EXPECT_NEAR(StudentT975(30), 2.04227246, 1e-6);
  EXPECT_NEAR(StudentT975(1'000'000), 1.95996, 1e-4);
  EXPECT_EQ(StudentT975(0), StudentT975(1));
}

// Worked by hand: mean 5, squared deviations 9 + 1 + 1 + 9 = 20, so the
// sample standard deviation is sqrt(20 / 3) and ci95 = t(0.975, 3) * sd / 2.
TEST(Summary, MeanSpreadAndIntervalOfASample) {
  const Summary s = Summarize({2, 4, 6, 8});
  EXPECT_EQ(s.n, 4);
  EXPECT_DOUBLE_EQ(s.mean, 5);
  EXPECT_DOUBLE_EQ(s.stddev, std::sqrt(20.0 / 3));
  EXPECT_EQ(s.min, 2);
  EXPECT_EQ(s.max, 8);
  EXPECT_NEAR(s.ci95, 3.18244630528 * std::sqrt(20.0 / 3) / 2, 1e-9);
  const Summary one = Summarize({1.5});
  EXPECT_EQ(one.mean, 1.5);
  EXPECT_TRUE(std::isnan(one.stddev));
  EXPECT_TRUE(std::isnan(one.ci95));
}

TEST(Summary, RunningValuesAgreeWithTheWholeSample) {
  const std::vector<double> values = {1.37, 1.33, 1.42, 1.29, 1.40, 1.31};
  RunningSummary running;
  EXPECT_TRUE(std::isnan(running.mean()));
  for (double v : values) running.Add(v);
  const Summary whole = Summarize(values);
  EXPECT_EQ(running.n(), whole.n);
  EXPECT_NEAR(running.mean(), whole.mean, 1e-12);
  EXPECT_NEAR(running.stddev(), whole.stddev, 1e-12);
  EXPECT_EQ(running.min(), whole.min);
  EXPECT_EQ(running.max(), whole.max);
}

}  // namespace
}  // namespace ablate
