// What matters in a sweep: an analysis of variance of the factorial design,
// with each factor's main effects and their uncertainty. Pure functions over
// a table of observations (one per job: its level of every factor and its
// response, e.g. final validation bpc); `ablate effects` and the report
// build the table from a per-job Results reply.
//
// The model holds every factor's main effect and every interaction of up to
// `order` factors. Its sums of squares are Type II: each term's is the drop
// in residual sum of squares when the term joins a least-squares fit of all
// the terms that do not contain it (effect-coded columns, rank by
// Gram-Schmidt, so empty cells cost degrees of freedom instead of breaking
// the fit). On a balanced complete grid they equal the classical sums of
// squares (Types I, II and III agree); on an unbalanced or incomplete one
// (failed or excluded jobs) they are what R's car::Anova and statsmodels'
// anova_lm(typ=2) report.
//
// The error term is what the model leaves: replicates (seeds) and every
// interaction of more than `order` factors. With one observation per cell
// (one seed) it is the interactions above `order` alone, e.g. the three-way
// interaction of a three-factor grid at order 2.
//
// Each two-factor interaction A:B also has per-cell effects. With ȳ_ij the
// mean of the observations in cell (i, j) of the A×B table (pooled over every
// other factor), and the row, column and grand means taken over those cell
// means unweighted (ȳ_i the mean of row i's b cell means, ȳ_j of column j's
// a, ȳ of all a·b), the interaction effect of the cell is
//   (ab)_ij = ȳ_ij - ȳ_i - ȳ_j + ȳ = Σ_kl c_kl ȳ_kl,
//   c_kl = (δ_ik - 1/a)(δ_jl - 1/b),
// what the cell's mean holds beyond its two main effects. The cell means are
// independent, so the half-width of its 95% interval is
//   t(0.975, df_error) * sqrt(MSE * Σ_kl c_kl² / n_kl),
// which on a balanced grid (n observations in every A×B cell) is
//   t(0.975, df_error) * sqrt(MSE * (a-1)(b-1) / (a·b·n)).
// On a balanced grid ȳ_i, ȳ_j and ȳ are the plain level and grand means; on
// an unbalanced one they are unweighted means of cell means, so a cell's
// effect need not equal its mean minus the main effects above. A table with
// an empty cell has no unweighted means: such a term gets no cell effects.
#ifndef ABLATE_STORE_EFFECTS_H_
#define ABLATE_STORE_EFFECTS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace ablate {

// The observations of a factorial design.
struct FactorialData {
  std::vector<std::string> factors;
  // Per factor, its levels in display order.
  std::vector<std::vector<std::string>> levels;
  struct Observation {
    std::vector<int> level;  // per factor, an index into levels
    double response = 0;
  };
  std::vector<Observation> observations;
};

// One level of a factor: its count, its mean response, and its main effect
// (mean - grand mean) with the half-width of its 95% interval,
//   t(0.975, df_error) * sqrt(MSE * (1/n - 1/N)),
// the standard error of a level mean's deviation from the grand mean (the
// grand mean holds the level's own observations, hence - 1/N).
struct LevelEffect {
  std::string level;
  int64_t n = 0;
  double mean = 0, effect = 0, ci95 = 0;
};

// One cell of a two-factor interaction: its levels, count and mean, and its
// interaction effect with the half-width of its 95% interval (see above).
struct CellEffect {
  std::vector<std::string> levels;  // one per factor of the term, in the term's order
  int64_t n = 0;
  double mean = 0, effect = 0, ci95 = 0;
};

// A row of the analysis of variance: a main effect or an interaction.
struct AnovaTerm {
  std::vector<int> factors;  // indices into FactorialData::factors, ascending
  std::string name;          // "cell", "cell:layer_norm"
  int64_t df = 0;
  double sum_sq = 0, mean_sq = 0;
  double f = 0, p = 0;  // F = mean_sq / MSE; p = P(F(df, df_error) > f)
  // Share of variance: eta squared, sum_sq / total sum of squares. Under
  // Type II on an unbalanced grid the shares need not add up to 1.
  double eta_squared = 0;
  std::vector<LevelEffect> levels;  // main effects only: every observed level
  // Two-factor interactions only: every cell of the two factors' table, the
  // first factor's levels outermost; none when some cell has no observation.
  std::vector<CellEffect> cells;
  int64_t empty_cells = 0;  // two-factor interactions: cells without observations
};

struct Anova {
  std::vector<std::string> factors;  // those analysed, in the data's order
  int64_t n = 0;
  double grand_mean = 0;
  double ss_total = 0;           // about the grand mean; df n - 1
  int order = 0;                 // the highest interaction order in the model
  std::vector<AnovaTerm> terms;  // ranked by eta squared, largest first
  int64_t df_error = 0;
  double ss_error = 0, ms_error = 0;
  // Every cell (combination of the analysed factors' levels) has the same
  // number of observations: the sums of squares are the classical ones.
  bool balanced = false;
  // Some cell has more than one observation (seeds as replicates).
  bool replicated = false;
  // Factors left out because the observations hold one level of them.
  std::vector<std::string> single_level;
};

// The analysis of variance of `data` with interactions of up to `order`
// factors (capped at the number of factors). `order` 0 chooses: 2 when that
// leaves degrees of freedom for an error term, else 1. Errors:
// InvalidArgument for observations that do not match the factors, or a
// negative order; FailedPrecondition when fewer than one factor has two
// levels, or when the model leaves no degrees of freedom for the error term
// (the message says how many observations and parameters there are, and
// what would help).
StatusOr<Anova> FactorialAnova(const FactorialData& data, int order = 0);

}  // namespace ablate

#endif  // ABLATE_STORE_EFFECTS_H_
