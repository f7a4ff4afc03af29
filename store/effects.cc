#include "store/effects.h"

#include <algorithm>
#include <boost/math/distributions/fisher_f.hpp>
#include <cmath>
#include <limits>
#include <map>

#include "store/statistics.h"

namespace ablate {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
// A column whose part outside the span of the columns before it is below
// this fraction of its length adds nothing to the fit (an empty cell, a
// confounded term).
constexpr double kRankTolerance = 1e-9;

using Column = std::vector<double>;

// The observations with only the analysed factors, their levels renumbered
// to the observed ones.
struct Design {
  std::vector<std::string> factors;
  std::vector<std::vector<std::string>> levels;
  std::vector<std::vector<int>> level;  // per observation, per factor
  std::vector<double> response;
};

double Dot(const Column& a, const Column& b) {
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) sum += a[i] * b[i];
  return sum;
}

// Removes from `v` its projection on every column of `basis` (orthonormal).
void Orthogonalize(const std::vector<Column>& basis, Column* v) {
  for (const Column& q : basis) {
    const double c = Dot(q, *v);
    for (size_t i = 0; i < v->size(); ++i) (*v)[i] -= c * q[i];
  }
}

struct Fit {
  int64_t rank = 0;
  double rss = 0;  // residual sum of squares
};

// The least-squares fit of the response on `columns` (modified Gram-Schmidt,
// orthogonalized twice for accuracy; dependent columns are skipped).
Fit FitColumns(const std::vector<Column>& columns, const Column& response) {
  std::vector<Column> basis;
  for (Column v : columns) {
    const double length = std::sqrt(Dot(v, v));
    Orthogonalize(basis, &v);
    Orthogonalize(basis, &v);
    const double rest = std::sqrt(Dot(v, v));
    if (rest <= kRankTolerance * std::max(length, 1.0)) continue;
    for (double& x : v) x /= rest;
    basis.push_back(std::move(v));
  }
  Column residual = response;
  Orthogonalize(basis, &residual);
  Orthogonalize(basis, &residual);
  return {static_cast<int64_t>(basis.size()), Dot(residual, residual)};
}

// A factor's effect-coded columns: for each level but the last, 1 at that
// level, -1 at the last, 0 elsewhere.
std::vector<Column> FactorColumns(const Design& design, int factor) {
  const int levels = static_cast<int>(design.levels[factor].size());
  std::vector<Column> columns(levels - 1, Column(design.response.size(), 0.0));
  for (size_t i = 0; i < design.response.size(); ++i) {
    const int level = design.level[i][factor];
    for (int j = 0; j < levels - 1; ++j) {
      columns[j][i] = level == j ? 1.0 : level == levels - 1 ? -1.0 : 0.0;
    }
  }
  return columns;
}

// A term's columns: the products of its factors' columns.
std::vector<Column> TermColumns(const Design& design, const std::vector<int>& term) {
  std::vector<Column> columns = {Column(design.response.size(), 1.0)};
  for (int factor : term) {
    std::vector<Column> next;
    for (const Column& f : FactorColumns(design, factor)) {
      for (const Column& c : columns) {
        Column product(c.size());
        for (size_t i = 0; i < c.size(); ++i) product[i] = c[i] * f[i];
        next.push_back(std::move(product));
      }
    }
    columns = std::move(next);
  }
  return columns;
}

// The fit of the intercept and `terms`.
Fit FitTerms(const Design& design, const std::vector<std::vector<int>>& terms) {
  std::vector<Column> columns = {Column(design.response.size(), 1.0)};
  for (const std::vector<int>& term : terms) {
    for (Column& c : TermColumns(design, term)) columns.push_back(std::move(c));
  }
  return FitColumns(columns, design.response);
}

// Every set of 1 to `order` factors, main effects first.
std::vector<std::vector<int>> ModelTerms(int factors, int order) {
  std::vector<std::vector<int>> terms;
  for (int size = 1; size <= order; ++size) {
    std::vector<bool> pick(factors, false);
    std::fill(pick.begin(), pick.begin() + size, true);
    do {
      std::vector<int> term;
      for (int f = 0; f < factors; ++f) {
        if (pick[f]) term.push_back(f);
      }
      terms.push_back(term);
    } while (std::prev_permutation(pick.begin(), pick.end()));
  }
  return terms;
}

bool Contains(const std::vector<int>& outer, const std::vector<int>& inner) {
  return std::includes(outer.begin(), outer.end(), inner.begin(), inner.end());
}

Status CheckData(const FactorialData& data) {
  if (data.levels.size() != data.factors.size()) {
    return Status::InvalidArgument("levels are given for " + std::to_string(data.levels.size()) +
                                   " factors, not " + std::to_string(data.factors.size()));
  }
  if (data.observations.empty()) return Status::FailedPrecondition("there are no observations");
  for (size_t i = 0; i < data.observations.size(); ++i) {
    const FactorialData::Observation& o = data.observations[i];
    const std::string which = "observation " + std::to_string(i);
    if (o.level.size() != data.factors.size()) {
      return Status::InvalidArgument(which + " has " + std::to_string(o.level.size()) +
                                     " levels for " + std::to_string(data.factors.size()) +
                                     " factors");
    }
    for (size_t f = 0; f < o.level.size(); ++f) {
      if (o.level[f] < 0 || o.level[f] >= static_cast<int>(data.levels[f].size())) {
        return Status::InvalidArgument(which + " has no level " + std::to_string(o.level[f]) +
                                       " of factor " + data.factors[f]);
      }
    }
    if (!std::isfinite(o.response)) {
      return Status::InvalidArgument(which + " has a response that is not finite");
    }
  }
  return Status::OK();
}

// The factors with two or more observed levels, each with only its observed
// levels; the others are named in `single_level`.
Design Analysed(const FactorialData& data, std::vector<std::string>* single_level) {
  Design design;
  std::vector<int> kept;
  std::vector<std::vector<int>> renumber;
  for (size_t f = 0; f < data.factors.size(); ++f) {
    std::vector<bool> seen(data.levels[f].size(), false);
    for (const auto& o : data.observations) seen[o.level[f]] = true;
    std::vector<int> index(seen.size(), -1);
    std::vector<std::string> levels;
    for (size_t l = 0; l < seen.size(); ++l) {
      if (!seen[l]) continue;
      index[l] = static_cast<int>(levels.size());
      levels.push_back(data.levels[f][l]);
    }
    if (levels.size() < 2) {
      single_level->push_back(data.factors[f]);
      continue;
    }
    kept.push_back(static_cast<int>(f));
    renumber.push_back(std::move(index));
    design.factors.push_back(data.factors[f]);
    design.levels.push_back(std::move(levels));
  }
  for (const auto& o : data.observations) {
    std::vector<int> level;
    for (size_t k = 0; k < kept.size(); ++k) level.push_back(renumber[k][o.level[kept[k]]]);
    design.level.push_back(std::move(level));
    design.response.push_back(o.response);
  }
  return design;
}

// Sets `balanced` and `replicated` from the observations per cell.
void CountCells(const Design& design, Anova* anova) {
  std::map<std::vector<int>, int64_t> cells;
  for (const auto& level : design.level) ++cells[level];
  size_t possible = 1;
  for (const auto& levels : design.levels) possible *= levels.size();
  int64_t least = cells.begin()->second, most = least;
  for (const auto& [cell, count] : cells) {
    least = std::min(least, count);
    most = std::max(most, count);
  }
  anova->balanced = cells.size() == possible && least == most;
  anova->replicated = most > 1;
}

std::string TermName(const Design& design, const std::vector<int>& term) {
  std::string name;
  for (int f : term) name += (name.empty() ? "" : ":") + design.factors[f];
  return name;
}

// The Type II row of `term` in the model of `terms`.
AnovaTerm TypeTwoRow(const Design& design, const std::vector<std::vector<int>>& terms,
                     const std::vector<int>& term) {
  std::vector<std::vector<int>> without;
  for (const auto& other : terms) {
    if (!Contains(other, term)) without.push_back(other);
  }
  const Fit base = FitTerms(design, without);
  without.push_back(term);
  const Fit with = FitTerms(design, without);
  AnovaTerm row;
  row.factors = term;
  row.name = TermName(design, term);
  row.df = with.rank - base.rank;
  row.sum_sq = std::max(base.rss - with.rss, 0.0);
  return row;
}

void MainEffects(const Design& design, int factor, double t975, Anova* anova, AnovaTerm* row) {
  const double n_total = static_cast<double>(anova->n);
  for (size_t l = 0; l < design.levels[factor].size(); ++l) {
    LevelEffect effect;
    effect.level = design.levels[factor][l];
    double sum = 0;
    for (size_t i = 0; i < design.response.size(); ++i) {
      if (design.level[i][factor] != static_cast<int>(l)) continue;
      ++effect.n;
      sum += design.response[i];
    }
    const double n = static_cast<double>(effect.n);
    effect.mean = sum / n;
    effect.effect = effect.mean - anova->grand_mean;
    effect.ci95 = t975 * std::sqrt(anova->ms_error * (1.0 / n - 1.0 / n_total));
    row->levels.push_back(std::move(effect));
  }
}

// The cell effects of the two-factor term {first, second}: each cell mean
// as a combination of all the table's cell means (store/effects.h).
void CellEffects(const Design& design, int first, int second, double t975, double ms_error,
                 AnovaTerm* row) {
  const int a = static_cast<int>(design.levels[first].size());
  const int b = static_cast<int>(design.levels[second].size());
  std::vector<int64_t> count(a * b, 0);
  std::vector<double> mean(a * b, 0.0);
  for (size_t i = 0; i < design.response.size(); ++i) {
    const int cell = design.level[i][first] * b + design.level[i][second];
    ++count[cell];
    mean[cell] += design.response[i];
  }
  row->empty_cells = std::count(count.begin(), count.end(), 0);
  if (row->empty_cells > 0) return;
  std::vector<double> row_mean(a, 0.0), column_mean(b, 0.0);
  double grand = 0;
  for (int cell = 0; cell < a * b; ++cell) {
    mean[cell] /= static_cast<double>(count[cell]);
    row_mean[cell / b] += mean[cell] / b;
    column_mean[cell % b] += mean[cell] / a;
    grand += mean[cell] / (a * b);
  }
  for (int i = 0; i < a; ++i) {
    for (int j = 0; j < b; ++j) {
      CellEffect effect;
      effect.levels = {design.levels[first][i], design.levels[second][j]};
      effect.n = count[i * b + j];
      effect.mean = mean[i * b + j];
      effect.effect = effect.mean - row_mean[i] - column_mean[j] + grand;
      double variance = 0;  // in units of MSE
      for (int k = 0; k < a; ++k) {
        for (int l = 0; l < b; ++l) {
          const double c = ((k == i ? 1.0 : 0.0) - 1.0 / a) * ((l == j ? 1.0 : 0.0) - 1.0 / b);
          variance += c * c / static_cast<double>(count[k * b + l]);
        }
      }
      effect.ci95 = t975 * std::sqrt(ms_error * variance);
      row->cells.push_back(std::move(effect));
    }
  }
}

void FTest(const Anova& anova, AnovaTerm* row) {
  row->mean_sq = row->df > 0 ? row->sum_sq / static_cast<double>(row->df) : kNaN;
  row->eta_squared = anova.ss_total > 0 ? row->sum_sq / anova.ss_total : kNaN;
  if (row->df <= 0) {
    row->f = row->p = kNaN;
  } else if (anova.ms_error > 0) {
    row->f = row->mean_sq / anova.ms_error;
    const boost::math::fisher_f distribution(static_cast<double>(row->df),
                                             static_cast<double>(anova.df_error));
    row->p = boost::math::cdf(boost::math::complement(distribution, row->f));
  } else {  // the model fits exactly: any effect is infinitely significant
    row->f = row->sum_sq > 0 ? std::numeric_limits<double>::infinity() : kNaN;
    row->p = row->sum_sq > 0 ? 0.0 : kNaN;
  }
}

}  // namespace

StatusOr<Anova> FactorialAnova(const FactorialData& data, int order) {
  if (order < 0) {
    return Status::InvalidArgument("the interaction order " + std::to_string(order) +
                                   " is negative");
  }
  ABLATE_RETURN_IF_ERROR(CheckData(data));
  Anova anova;
  const Design design = Analysed(data, &anova.single_level);
  const int factors = static_cast<int>(design.factors.size());
  if (factors == 0) {
    return Status::FailedPrecondition("no factor has two levels among the " +
                                      std::to_string(data.observations.size()) + " observations");
  }
  anova.factors = design.factors;
  anova.n = static_cast<int64_t>(design.response.size());
  double sum = 0;
  for (double y : design.response) sum += y;
  anova.grand_mean = sum / static_cast<double>(anova.n);
  for (double y : design.response) {
    anova.ss_total += (y - anova.grand_mean) * (y - anova.grand_mean);
  }
  CountCells(design, &anova);

  anova.order = std::min(order == 0 ? 2 : order, factors);
  std::vector<std::vector<int>> terms = ModelTerms(factors, anova.order);
  Fit full = FitTerms(design, terms);
  if (order == 0 && anova.n - full.rank <= 0 && anova.order > 1) {
    anova.order = 1;
    terms = ModelTerms(factors, 1);
    full = FitTerms(design, terms);
  }
  anova.df_error = anova.n - full.rank;
  if (anova.df_error <= 0) {
    return Status::FailedPrecondition(
        std::to_string(anova.n) + " observations leave no degrees of freedom for the error term " +
        "of a model with " + std::to_string(full.rank) + " parameters (interactions of up to " +
        std::to_string(anova.order) + " factors); use fewer interactions or more seeds");
  }
  anova.ss_error = full.rss;
  anova.ms_error = full.rss / static_cast<double>(anova.df_error);

  const double t975 = StudentT975(anova.df_error);
  for (const std::vector<int>& term : terms) {
    AnovaTerm row = TypeTwoRow(design, terms, term);
    FTest(anova, &row);
    if (term.size() == 1) MainEffects(design, term[0], t975, &anova, &row);
    if (term.size() == 2) CellEffects(design, term[0], term[1], t975, anova.ms_error, &row);
    anova.terms.push_back(std::move(row));
  }
  std::stable_sort(
      anova.terms.begin(), anova.terms.end(),
      [](const AnovaTerm& a, const AnovaTerm& b) { return a.eta_squared > b.eta_squared; });
  return anova;
}

}  // namespace ablate
