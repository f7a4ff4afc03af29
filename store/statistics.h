// The statistics of results and curves: a sample's mean, spread and 95%
// confidence interval, all at once or one value at a time.
#ifndef ABLATE_STORE_STATISTICS_H_
#define ABLATE_STORE_STATISTICS_H_

#include <cstdint>
#include <limits>
#include <vector>

namespace ablate {

// t(0.975, df), the quantile that bounds a two-sided 95% interval of
// Student's t with `degrees_of_freedom` (Boost.Math); below 1 counts as 1.
double StudentT975(int64_t degrees_of_freedom);

// A sample's count, mean, sample standard deviation (n - 1), extremes and
// the half-width of the 95% Student-t interval of its mean. stddev and
// ci95 are NaN when n < 2.
struct Summary {
  int64_t n = 0;
  double mean = 0, stddev = 0, min = 0, max = 0, ci95 = 0;
};

// `values` must not be empty.
Summary Summarize(const std::vector<double>& values);

// Count, mean, sample standard deviation and extremes built one value at a
// time (Welford's running mean and sum of squared deviations); NaN where
// there are too few values.
class RunningSummary {
 public:
  void Add(double x);
  int64_t n() const { return n_; }
  double mean() const;
  double stddev() const;
  double min() const;
  double max() const;

 private:
  int64_t n_ = 0;
  double mean_ = 0, m2_ = 0;
  double min_ = std::numeric_limits<double>::infinity();
  double max_ = -std::numeric_limits<double>::infinity();
};

}  // namespace ablate

#endif  // ABLATE_STORE_STATISTICS_H_
