#include "store/statistics.h"

#include <algorithm>
#include <boost/math/distributions/students_t.hpp>
#include <cmath>

namespace ablate {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Fills stddev and ci95 from n and the sum of squared deviations.
void Spread(double squared_deviations, Summary* s) {
  if (s->n < 2) {
    s->stddev = s->ci95 = kNaN;
    return;
  }
  s->stddev = std::sqrt(squared_deviations / static_cast<double>(s->n - 1));
  s->ci95 = StudentT975(s->n - 1) * s->stddev / std::sqrt(static_cast<double>(s->n));
}

}  // namespace

double StudentT975(int64_t degrees_of_freedom) {
  const boost::math::students_t t(static_cast<double>(std::max<int64_t>(degrees_of_freedom, 1)));
  return boost::math::quantile(boost::math::complement(t, 0.025));
}

Summary Summarize(const std::vector<double>& values) {
  Summary s;
  s.n = static_cast<int64_t>(values.size());
  double sum = 0;
  for (double v : values) sum += v;
  s.mean = sum / static_cast<double>(s.n);
  double squares = 0;
  for (double v : values) squares += (v - s.mean) * (v - s.mean);
  s.min = *std::min_element(values.begin(), values.end());
  s.max = *std::max_element(values.begin(), values.end());
  Spread(squares, &s);
  return s;
}

void RunningSummary::Add(double x) {
  ++n_;
  const double delta = x - mean_;
  mean_ += delta / static_cast<double>(n_);
  m2_ += delta * (x - mean_);
  min_ = std::min(min_, x);
  max_ = std::max(max_, x);
}

double RunningSummary::mean() const { return n_ > 0 ? mean_ : kNaN; }
double RunningSummary::stddev() const {
  return n_ > 1 ? std::sqrt(m2_ / static_cast<double>(n_ - 1)) : kNaN;
}
double RunningSummary::min() const { return n_ > 0 ? min_ : kNaN; }
double RunningSummary::max() const { return n_ > 0 ? max_ : kNaN; }

}  // namespace ablate
