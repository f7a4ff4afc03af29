// FactorialAnova against reference values computed independently by
// statsmodels (store/testdata/make_effects_fixtures.py, run by hand): Type II
// sums of squares, F, p, each level's effect and each two-factor cell's
// interaction effect with their 95% intervals, on balanced and unbalanced
// grids with and without replicates.
#include "store/effects.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "store/statistics.h"

namespace ablate {
namespace {

using nlohmann::json;

// Relative, with an absolute floor for values near zero (an effect of a
// balanced grid's middle level, a p-value of 1e-8).
constexpr double kRelative = 1e-6;
constexpr double kAbsolute = 1e-12;

json ReadFixture(const std::string& name) {
  std::ifstream file(std::string(ABLATE_EFFECTS_FIXTURES) + "/effects_" + name + ".json");
  EXPECT_TRUE(file.good()) << name;
  std::stringstream text;
  text << file.rdbuf();
  return json::parse(text.str());
}

FactorialData DataOf(const json& fixture) {
  FactorialData data;
  data.factors = fixture["factors"].get<std::vector<std::string>>();
  data.levels = fixture["levels"].get<std::vector<std::vector<std::string>>>();
  for (const json& o : fixture["observations"]) {
    FactorialData::Observation observation;
    for (size_t f = 0; f < data.factors.size(); ++f) {
      const auto& levels = data.levels[f];
      const std::string level = o["levels"][f];
      observation.level.push_back(
          static_cast<int>(std::find(levels.begin(), levels.end(), level) - levels.begin()));
    }
    observation.response = o["y"];
    data.observations.push_back(observation);
  }
  return data;
}

void ExpectClose(double actual, double expected, const std::string& what) {
  EXPECT_LE(std::abs(actual - expected), kRelative * std::abs(expected) + kAbsolute)
      << what << ": " << actual << " vs " << expected;
}

const AnovaTerm* FindTerm(const Anova& anova, const std::string& name) {
  for (const AnovaTerm& term : anova.terms) {
    if (term.name == name) return &term;
  }
  return nullptr;
}

// A two-factor term's cell effects against the fixture's, cell by cell.
void CheckCells(const AnovaTerm& term, const json& cells, const std::string& what) {
  EXPECT_EQ(term.empty_cells, 0) << what;
  EXPECT_EQ(term.cells.size(), cells.size()) << what;
  for (const CellEffect& cell : term.cells) {
    const std::string which = what + " cell " + cell.levels[0] + " x " + cell.levels[1];
    const json* want = nullptr;
    for (const json& c : cells) {
      if (c["levels"] == json(cell.levels)) want = &c;
    }
    if (want == nullptr) {
      ADD_FAILURE() << which << ": unexpected";
      continue;
    }
    EXPECT_EQ(cell.n, (*want)["n"].get<int64_t>()) << which;
    ExpectClose(cell.mean, (*want)["mean"], which + " mean");
    ExpectClose(cell.effect, (*want)["effect"], which + " effect");
    ExpectClose(cell.ci95, (*want)["ci95"], which + " ci95");
  }
}

Anova CheckAgainstFixture(const std::string& name) {
  const json fixture = ReadFixture(name);
  const json& expected = fixture["expected"];
  StatusOr<Anova> anova = FactorialAnova(DataOf(fixture), fixture["order"]);
  EXPECT_TRUE(anova.ok()) << anova.status().ToString();
  if (!anova.ok()) return {};
  ExpectClose(anova->grand_mean, expected["grand_mean"], name + " grand mean");
  ExpectClose(anova->ss_total, expected["ss_total"], name + " total SS");
  EXPECT_EQ(anova->df_error, expected["df_error"].get<int64_t>()) << name;
  ExpectClose(anova->ss_error, expected["ss_error"], name + " error SS");
  EXPECT_EQ(anova->terms.size(), expected["terms"].size()) << name;
  for (const json& want : expected["terms"]) {
    const std::string term_name = want["name"];
    const AnovaTerm* term = FindTerm(*anova, term_name);
    EXPECT_NE(term, nullptr) << name << ": no term " << term_name;
    if (term == nullptr) continue;
    const std::string what = name + " " + term_name;
    EXPECT_EQ(term->df, want["df"].get<int64_t>()) << what;
    ExpectClose(term->sum_sq, want["sum_sq"], what + " SS");
    ExpectClose(term->f, want["f"], what + " F");
    ExpectClose(term->p, want["p"], what + " p");
    ExpectClose(term->eta_squared, want["eta_squared"], what + " eta squared");
    const bool main_effect = term_name.find(':') == std::string::npos;
    if (!main_effect) {
      EXPECT_TRUE(term->levels.empty()) << what;
      CheckCells(*term, expected["interactions"][term_name], what);
      continue;
    }
    EXPECT_TRUE(term->cells.empty()) << what;
    const json& levels = expected["effects"][term_name];
    EXPECT_EQ(term->levels.size(), levels.size()) << what;
    for (const LevelEffect& level : term->levels) {
      if (!levels.contains(level.level)) {
        ADD_FAILURE() << what << ": unexpected level " << level.level;
        continue;
      }
      const json& want_level = levels[level.level];
      EXPECT_EQ(level.n, want_level["n"].get<int64_t>()) << what << " " << level.level;
      ExpectClose(level.mean, want_level["mean"], what + " mean of " + level.level);
      ExpectClose(level.effect, want_level["effect"], what + " effect of " + level.level);
      ExpectClose(level.ci95, want_level["ci95"], what + " ci95 of " + level.level);
    }
  }
  for (size_t i = 1; i < anova->terms.size(); ++i) {
    EXPECT_GE(anova->terms[i - 1].eta_squared, anova->terms[i].eta_squared) << name;
  }
  return *anova;
}

TEST(FactorialAnova, BalancedTwoWayWithSeedsMatchesStatsmodels) {
  const Anova anova = CheckAgainstFixture("two_way_replicated");
  EXPECT_TRUE(anova.balanced);
  EXPECT_TRUE(anova.replicated);
  EXPECT_EQ(anova.order, 2);
  EXPECT_EQ(anova.terms.front().name, "cell");
}

TEST(FactorialAnova, ThreeWayWithOneSeedUsesTheThreeWayInteractionAsError) {
  const Anova anova = CheckAgainstFixture("three_way_one_seed");
  EXPECT_TRUE(anova.balanced);
  EXPECT_FALSE(anova.replicated);
  EXPECT_EQ(anova.df_error, 4);  // (3-1)(2-1)(3-1)
}

TEST(FactorialAnova, UnbalancedTwoWayHasTypeTwoSumsOfSquares) {
  const Anova anova = CheckAgainstFixture("two_way_unbalanced");
  EXPECT_FALSE(anova.balanced);
}

TEST(FactorialAnova, ThreeWayWithAMissingJobHasTypeTwoSumsOfSquares) {
  const Anova anova = CheckAgainstFixture("three_way_one_missing");
  EXPECT_FALSE(anova.balanced);
}

// A published worked example: Montgomery, Design and Analysis of
// Experiments (5th ed.), Example 5-1, battery life by plate material and
// temperature, four replicates; its ANOVA table (Table 5-5) gives
// SS material 10683.72, temperature 39118.72, interaction 9613.78, error
// 18230.75 (27 df).
TEST(FactorialAnova, MatchesMontgomerysBatteryLifeExample) {
  const std::vector<std::vector<std::vector<double>>> life = {
      {{130, 155, 74, 180}, {34, 40, 80, 75}, {20, 70, 82, 58}},
      {{150, 188, 159, 126}, {136, 122, 106, 115}, {25, 70, 58, 45}},
      {{138, 110, 168, 160}, {174, 120, 150, 139}, {96, 104, 82, 60}}};
  FactorialData data;
  data.factors = {"material", "temperature"};
  data.levels = {{"1", "2", "3"}, {"15", "70", "125"}};
  for (int m = 0; m < 3; ++m) {
    for (int t = 0; t < 3; ++t) {
      for (double y : life[m][t]) data.observations.push_back({{m, t}, y});
    }
  }
  StatusOr<Anova> anova = FactorialAnova(data, 2);
  ASSERT_TRUE(anova.ok()) << anova.status().ToString();
  ASSERT_EQ(anova->terms.size(), 3u);
  EXPECT_EQ(anova->terms[0].name, "temperature");
  EXPECT_NEAR(anova->terms[0].sum_sq, 39118.72, 0.01);
  EXPECT_EQ(anova->terms[1].name, "material");
  EXPECT_NEAR(anova->terms[1].sum_sq, 10683.72, 0.01);
  EXPECT_EQ(anova->terms[2].name, "material:temperature");
  EXPECT_NEAR(anova->terms[2].sum_sq, 9613.78, 0.01);
  EXPECT_EQ(anova->df_error, 27);
  EXPECT_NEAR(anova->ss_error, 18230.75, 0.01);

  // On a balanced grid the interaction's sum of squares is n times the sum
  // of its squared cell effects, and every cell has the balanced half-width
  // t * sqrt(MSE (a-1)(b-1) / (a b n)).
  const AnovaTerm& interaction = anova->terms[2];
  ASSERT_EQ(interaction.cells.size(), 9u);
  double sum_sq = 0;
  for (const CellEffect& cell : interaction.cells) {
    EXPECT_EQ(cell.n, 4);
    sum_sq += 4 * cell.effect * cell.effect;
    EXPECT_NEAR(cell.ci95,
                StudentT975(27) * std::sqrt(anova->ms_error * (3 - 1) * (3 - 1) / (3 * 3 * 4)),
                1e-9);
  }
  EXPECT_NEAR(sum_sq, 9613.78, 0.01);
  // Material 1 at 15 degrees: cell mean 134.75, row mean 83.1667, column
  // mean 144.8333, grand mean 105.5278.
  EXPECT_EQ(interaction.cells[0].levels, (std::vector<std::string>{"1", "15"}));
  EXPECT_NEAR(interaction.cells[0].mean, 134.75, 1e-9);
  EXPECT_NEAR(interaction.cells[0].effect, 134.75 - 249.5 / 3 - 434.5 / 3 + 949.75 / 9, 1e-9);
}

TEST(FactorialAnova, AnInteractionWithAnEmptyCellHasNoCellEffects) {
  // Two seeds of a 2x2x2 grid without the jobs at a = y and c = t: the a:c
  // table has an empty cell, the a:b and b:c tables have none.
  FactorialData data;
  data.factors = {"a", "b", "c"};
  data.levels = {{"x", "y"}, {"u", "v"}, {"s", "t"}};
  double y = 1;
  for (int a = 0; a < 2; ++a) {
    for (int b = 0; b < 2; ++b) {
      for (int c = 0; c < 2; ++c) {
        if (a == 1 && c == 1) continue;
        for (int seed = 0; seed < 2; ++seed) {
          data.observations.push_back({{a, b, c}, y += 0.1 * a + 0.3 * b * c + 0.01 * seed});
        }
      }
    }
  }
  StatusOr<Anova> anova = FactorialAnova(data, 2);
  ASSERT_TRUE(anova.ok()) << anova.status().ToString();
  const AnovaTerm* ac = FindTerm(*anova, "a:c");
  ASSERT_NE(ac, nullptr);
  EXPECT_EQ(ac->empty_cells, 1);
  EXPECT_TRUE(ac->cells.empty());
  for (const char* name : {"a:b", "b:c"}) {
    const AnovaTerm* term = FindTerm(*anova, name);
    ASSERT_NE(term, nullptr) << name;
    EXPECT_EQ(term->empty_cells, 0) << name;
    ASSERT_EQ(term->cells.size(), 4u) << name;
    for (const CellEffect& cell : term->cells) {
      EXPECT_TRUE(std::isfinite(cell.effect)) << name;
      EXPECT_GT(cell.ci95, 0) << name;
    }
  }
  // Unbalanced a:b cells (4 observations in row x's, 2 in row y's): as in
  // any 2x2 table, the four cell effects are one value with alternating signs.
  const AnovaTerm* ab = FindTerm(*anova, "a:b");
  EXPECT_NEAR(std::abs(ab->cells[0].effect), std::abs(ab->cells[3].effect), 1e-12);
  EXPECT_NEAR(ab->cells[0].effect, -ab->cells[1].effect, 1e-12);
}

TEST(FactorialAnova, DefaultOrderDropsInteractionsWhenTheyLeaveNoError) {
  // Two factors, one seed: the interaction is all that is left for error.
  FactorialData data;
  data.factors = {"a", "b"};
  data.levels = {{"x", "y"}, {"u", "v", "w"}};
  double y = 1;
  for (int a = 0; a < 2; ++a) {
    for (int b = 0; b < 3; ++b) data.observations.push_back({{a, b}, y += 0.5 * a + b * b});
  }
  StatusOr<Anova> chosen = FactorialAnova(data);
  ASSERT_TRUE(chosen.ok()) << chosen.status().ToString();
  EXPECT_EQ(chosen->order, 1);
  EXPECT_EQ(chosen->df_error, 2);
  StatusOr<Anova> forced = FactorialAnova(data, 2);
  ASSERT_FALSE(forced.ok());
  EXPECT_EQ(forced.status().message(),
            "6 observations leave no degrees of freedom for the error term of a model with 6 "
            "parameters (interactions of up to 2 factors); use fewer interactions or more seeds");
}

TEST(FactorialAnova, SingleLevelFactorsAreLeftOutAndNamed) {
  FactorialData data;
  data.factors = {"a", "hidden", "b"};
  data.levels = {{"x", "y"}, {"32", "64"}, {"u", "v"}};
  const double values[] = {1.0, 1.3, 2.1, 2.2, 1.1, 1.2, 2.0, 2.4};
  for (int i = 0; i < 8; ++i) data.observations.push_back({{i % 2, 0, (i / 2) % 2}, values[i]});
  StatusOr<Anova> anova = FactorialAnova(data);
  ASSERT_TRUE(anova.ok()) << anova.status().ToString();
  EXPECT_EQ(anova->single_level, std::vector<std::string>{"hidden"});
  for (const AnovaTerm& term : anova->terms) {
    EXPECT_EQ(term.name.find("hidden"), std::string::npos) << term.name;
  }
}

TEST(FactorialAnova, BadInputIsRefusedWithItsReason) {
  FactorialData data;
  data.factors = {"a"};
  data.levels = {{"x", "y"}};
  EXPECT_EQ(FactorialAnova(data).status().message(), "there are no observations");
  data.observations = {{{0}, 1.0}, {{2}, 2.0}};
  EXPECT_EQ(FactorialAnova(data).status().message(), "observation 1 has no level 2 of factor a");
  data.observations = {{{0}, 1.0}, {{0}, 2.0}};
  EXPECT_EQ(FactorialAnova(data).status().message(),
            "no factor has two levels among the 2 observations");
  data.observations = {{{0}, 1.0}, {{1}, std::nan("")}};
  EXPECT_EQ(FactorialAnova(data).status().message(),
            "observation 1 has a response that is not finite");
}

}  // namespace
}  // namespace ablate
