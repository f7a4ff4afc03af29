#include "cli/effects.h"

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "cli/commands.h"
#include "cli/results_format.h"
#include "cli/table.h"

namespace ablate {

namespace {

using nlohmann::ordered_json;

constexpr const char* kSeedKey = "train.seed";

struct EffectsOptions {
  std::string sweep;
  std::string metric;  // empty: the sweep's own
  std::string at = "final";
  int interactions = 0;  // 0: chosen by the grid
  bool interactions_given = false;
  std::string format = "table";
  SourceOptions source;
};

std::string Signed(double value) {
  return std::isfinite(value) ? fmt::format("{:+.4f}", value) : "-";
}

std::string Share(double value) {
  return std::isfinite(value) ? fmt::format("{:.1f}%", 100 * value) : "-";
}

std::string PValue(double p) {
  if (!std::isfinite(p)) return "-";
  return p >= 0.001 ? fmt::format("{:.4f}", p) : fmt::format("{:.1e}", p);
}

// The per-job reply as a factorial design: every column but the seed is a
// factor. `levels` holds each column's values in the spec's order; a value
// missing from it (a job that finished between the queries) goes last.
FactorialData DesignOf(const v1::ResultsResponse& jobs,
                       const std::vector<std::vector<std::string>>& levels, int64_t* seeds) {
  FactorialData data;
  std::vector<int> columns;
  int seed_column = -1;
  for (int c = 0; c < jobs.column_keys_size(); ++c) {
    if (jobs.column_keys(c) == kSeedKey) {
      seed_column = c;
      continue;
    }
    columns.push_back(c);
    data.factors.push_back(jobs.columns(c));
    data.levels.push_back(levels[c]);
  }
  std::set<std::string> seen_seeds;
  for (const v1::ResultRow& row : jobs.rows()) {
    FactorialData::Observation observation;
    for (size_t f = 0; f < columns.size(); ++f) {
      const std::string& value = row.values_json(columns[f]);
      std::vector<std::string>& factor_levels = data.levels[f];
      auto it = std::find(factor_levels.begin(), factor_levels.end(), value);
      if (it == factor_levels.end()) it = factor_levels.insert(factor_levels.end(), value);
      observation.level.push_back(static_cast<int>(it - factor_levels.begin()));
    }
    if (seed_column >= 0) seen_seeds.insert(row.values_json(seed_column));
    observation.response = row.mean();
    data.observations.push_back(std::move(observation));
  }
  *seeds = static_cast<int64_t>(seen_seeds.size());
  return data;
}

// Each column's values in the spec's order, as grouping by it returns them.
StatusOr<std::vector<std::vector<std::string>>> LevelsInSpecOrder(Source& source,
                                                                  v1::ResultsRequest request,
                                                                  const v1::ResultsResponse& jobs) {
  std::vector<std::vector<std::string>> levels;
  for (const std::string& key : jobs.column_keys()) {
    if (key == kSeedKey) {  // replicates: their order does not matter
      levels.emplace_back();
      continue;
    }
    request.clear_group_by();
    request.add_group_by(key);
    v1::ResultsResponse grouped;
    ABLATE_RETURN_IF_ERROR(source.Results(request, &grouped));
    std::vector<std::string>& values = levels.emplace_back();
    for (const v1::ResultRow& row : grouped.rows()) values.push_back(row.values_json(0));
  }
  return levels;
}

std::string Title(const v1::ResultsRequest& request, const EffectsAnswer& answer) {
  const v1::SweepSummary& sweep = answer.jobs.sweep();
  return fmt::format("sweep {} (id {}): effects on {}, {}, grand mean {}\n", sweep.name(),
                     sweep.id(), ValueName(request), Plural(answer.anova.n, "job"),
                     Fixed(answer.anova.grand_mean));
}

std::string ModelText(const Anova& anova) {
  if (anova.order == 1) return "main effects only";
  return fmt::format("main effects and interactions of up to {} factors", anova.order);
}

// Lines, each ending in "\n", for the factors left out of the analysis.
std::string SingleLevelFooter(const Anova& anova) {
  std::string out;
  for (const std::string& factor : anova.single_level) {
    out += fmt::format("left out: {} has one level among the counted jobs\n", factor);
  }
  return out;
}

std::vector<const AnovaTerm*> MainEffects(const Anova& anova) {
  std::vector<const AnovaTerm*> terms;
  for (const AnovaTerm& term : anova.terms) {
    if (term.factors.size() == 1) terms.push_back(&term);
  }
  return terms;
}

std::vector<const AnovaTerm*> TwoFactorInteractions(const Anova& anova) {
  std::vector<const AnovaTerm*> terms;
  for (const AnovaTerm& term : anova.terms) {
    if (term.factors.size() == 2) terms.push_back(&term);
  }
  return terms;
}

// "gru × true".
std::string CellText(const CellEffect& cell) {
  return FactorText(cell.levels[0]) + " × " + FactorText(cell.levels[1]);
}

// The two-factor interactions' cell effects, or "" for a model without them.
std::string InteractionsText(const Anova& anova) {
  const std::vector<const AnovaTerm*> interactions = TwoFactorInteractions(anova);
  if (interactions.empty()) return "";
  std::string out =
      "\ninteractions: each cell's mean minus its two level means plus the grand mean";
  if (!anova.balanced) out += " (level and grand means from the unweighted cell means)";
  out += ", with its 95% interval\n";
  Table cells({"term", "cell", "n", "mean", "effect", "ci95"});
  std::string without;
  for (const AnovaTerm* term : interactions) {
    if (term->empty_cells > 0) {
      without += fmt::format("{}: no cell effects, {} without jobs\n", term->name,
                             Plural(term->empty_cells, "cell"));
    }
    bool first = true;
    for (const CellEffect& cell : term->cells) {
      cells.AddRow({first ? term->name : "", CellText(cell), std::to_string(cell.n),
                    Fixed(cell.mean), Signed(cell.effect), Fixed(cell.ci95)});
      first = false;
    }
  }
  if (!cells.empty()) out += cells.ToText();
  return out + without;
}

int RunEffects(const EffectsOptions& options) {
  const char* command = "effects";
  v1::ResultsRequest request;
  Status flags = ParseValueFlags(options.metric, options.at, &request);
  if (!flags.ok()) return ReportError(command, flags);
  if (options.interactions_given && options.interactions < 1) {
    return ReportError(command, Status::InvalidArgument(fmt::format(
                                    "--interactions: {} is not 1 or more (1: main effects only)",
                                    options.interactions)));
  }
  StatusOr<Format> format =
      ParseFormat(options.format, {Format::kTable, Format::kCsv, Format::kJson});
  if (!format.ok()) return ReportError(command, format.status());

  StatusOr<std::unique_ptr<Source>> source = Source::Open(options.source);
  if (!source.ok()) return ReportError(command, source.status());
  StatusOr<int64_t> id = (*source)->ResolveSweep(options.sweep);
  if (!id.ok()) return ReportError(command, id.status());
  request.mutable_sweep()->set_id(*id);
  StatusOr<EffectsAnswer> answer = ComputeEffects(**source, request, options.interactions);
  if (!answer.ok()) return ReportError(command, answer.status());
  request.set_metric(answer->jobs.metric());
  if (*format == Format::kTable) {
    std::fputs(EffectsTable(request, *answer).c_str(), stdout);
    return 0;
  }
  std::fputs(
      (*format == Format::kCsv ? EffectsCsv(*answer) : EffectsJson(request, *answer)).c_str(),
      stdout);
  std::fputs((LeftOutFooter(answer->jobs.left_out(), false, ValueName(request)) +
              SingleLevelFooter(answer->anova))
                 .c_str(),
             stderr);
  return 0;
}

}  // namespace

StatusOr<EffectsAnswer> ComputeEffects(Source& source, v1::ResultsRequest request, int order) {
  request.clear_group_by();
  request.set_include_unfinished(false);
  request.set_with_config(false);
  EffectsAnswer answer;
  ABLATE_RETURN_IF_ERROR(source.Results(request, &answer.jobs));
  request.set_metric(answer.jobs.metric());
  const std::string what =
      fmt::format("{} of sweep '{}'", ValueName(request), answer.jobs.sweep().name());
  if (answer.jobs.rows_size() == 0) {
    return Status::FailedPrecondition(fmt::format("no done job of sweep '{}' has a {}",
                                                  answer.jobs.sweep().name(), ValueName(request)));
  }
  request.mutable_sweep()->set_id(answer.jobs.sweep().id());
  ABLATE_ASSIGN_OR_RETURN(std::vector<std::vector<std::string>> levels,
                          LevelsInSpecOrder(source, request, answer.jobs));
  const FactorialData data = DesignOf(answer.jobs, levels, &answer.seeds);
  StatusOr<Anova> anova = FactorialAnova(data, order);
  if (!anova.ok()) {
    return Status(anova.status().code(),
                  "cannot analyse the " + what + ": " + anova.status().message());
  }
  answer.anova = std::move(*anova);
  return answer;
}

std::string SumsOfSquaresText(const Anova& anova) {
  if (anova.balanced) {
    return "balanced grid: classical sums of squares (Types I, II and III agree)";
  }
  return "unbalanced or incomplete grid: Type II sums of squares (each term adjusted for every "
         "term that does not contain it)";
}

std::string ErrorTermText(const EffectsAnswer& answer) {
  const Anova& anova = answer.anova;
  const int factors = static_cast<int>(anova.factors.size());
  const std::string higher =
      anova.order == 1 ? std::string("every interaction")
                       : fmt::format("the interactions of more than {} factors", anova.order);
  if (anova.replicated) {
    const std::string replicates = answer.seeds > 1
                                       ? fmt::format("the replicates ({} seeds)", answer.seeds)
                                       : std::string("the replicates (jobs of the same cell)");
    return anova.order >= factors ? replicates : replicates + " and " + higher;
  }
  const std::string one = answer.seeds > 1 ? "one job per cell" : "one seed";
  if (anova.order == factors - 1) {
    std::string highest;
    for (const std::string& f : anova.factors) highest += (highest.empty() ? "" : ":") + f;
    return one + ": the highest-order interaction, " + highest;
  }
  return one + ": " + higher;
}

std::string EffectsTable(const v1::ResultsRequest& request, const EffectsAnswer& answer) {
  const Anova& anova = answer.anova;
  std::string out = Title(request, answer);
  out += fmt::format("analysis of variance, {}; {}\n", ModelText(anova), SumsOfSquaresText(anova));
  out += fmt::format("error term: {} (df {}, mean square {:.3g})\n", ErrorTermText(answer),
                     anova.df_error, anova.ms_error);
  out += "share: eta squared, the term's sum of squares over the total; ranked by share\n\n";
  Table terms({"term", "df", "share", "F", "p"});
  for (const AnovaTerm& term : anova.terms) {
    terms.AddRow({term.name, std::to_string(term.df), Share(term.eta_squared),
                  std::isfinite(term.f) ? fmt::format("{:.2f}", term.f) : "-", PValue(term.p)});
  }
  terms.AddRow({"error", std::to_string(anova.df_error),
                Share(anova.ss_total > 0 ? anova.ss_error / anova.ss_total : NAN), "", ""});
  out += terms.ToText();

  out += "\nmain effects: each level's mean minus the grand mean, with its 95% interval\n";
  Table levels({"factor", "level", "n", "mean", "effect", "ci95"});
  for (const AnovaTerm* term : MainEffects(anova)) {
    bool first = true;
    for (const LevelEffect& level : term->levels) {
      levels.AddRow({first ? term->name : "", FactorText(level.level), std::to_string(level.n),
                     Fixed(level.mean), Signed(level.effect), Fixed(level.ci95)});
      first = false;
    }
  }
  out += levels.ToText();
  out += InteractionsText(anova);
  const std::string footer =
      LeftOutFooter(answer.jobs.left_out(), false, ValueName(request)) + SingleLevelFooter(anova);
  if (!footer.empty()) out += "\n" + footer;
  return out;
}

std::string EffectsJson(const v1::ResultsRequest& request, const EffectsAnswer& answer) {
  const Anova& anova = answer.anova;
  ordered_json out;
  out["sweep"] = answer.jobs.sweep().name();
  out["sweep_id"] = answer.jobs.sweep().id();
  out["value"] = ValueName(request);
  out["jobs"] = anova.n;
  out["seeds"] = answer.seeds;
  out["grand_mean"] = Number(anova.grand_mean);
  out["order"] = anova.order;
  out["sums_of_squares"] = anova.balanced ? "classical" : "type II";
  out["balanced"] = anova.balanced;
  out["error"] = {{"source", ErrorTermText(answer)},
                  {"df", anova.df_error},
                  {"sum_sq", Number(anova.ss_error)},
                  {"mean_sq", Number(anova.ms_error)}};
  out["total_sum_sq"] = Number(anova.ss_total);
  out["left_out_factors"] = anova.single_level;
  ordered_json terms = ordered_json::array();
  for (const AnovaTerm& term : anova.terms) {
    ordered_json factors = ordered_json::array();
    for (int f : term.factors) factors.push_back(anova.factors[f]);
    ordered_json row = {{"term", term.name},
                        {"factors", factors},
                        {"df", term.df},
                        {"sum_sq", Number(term.sum_sq)},
                        {"share", Number(term.eta_squared)},
                        {"f", Number(term.f)},
                        {"p", Number(term.p)}};
    if (term.factors.size() == 1) {
      ordered_json levels = ordered_json::array();
      for (const LevelEffect& level : term.levels) {
        levels.push_back({{"level", FactorJson(level.level)},
                          {"n", level.n},
                          {"mean", Number(level.mean)},
                          {"effect", Number(level.effect)},
                          {"ci95", Number(level.ci95)}});
      }
      row["levels"] = levels;
    }
    if (term.factors.size() == 2) {
      ordered_json cells = ordered_json::array();
      for (const CellEffect& cell : term.cells) {
        cells.push_back({{"levels", {FactorJson(cell.levels[0]), FactorJson(cell.levels[1])}},
                         {"n", cell.n},
                         {"mean", Number(cell.mean)},
                         {"effect", Number(cell.effect)},
                         {"ci95", Number(cell.ci95)}});
      }
      row["empty_cells"] = term.empty_cells;
      row["cells"] = cells;
    }
    terms.push_back(row);
  }
  out["terms"] = terms;
  return out.dump(-1, ' ', false, ordered_json::error_handler_t::replace) + "\n";
}

std::string EffectsCsv(const EffectsAnswer& answer) {
  Table table({"term", "level", "n", "mean", "effect", "ci95", "df", "sum_sq", "share", "f", "p"});
  for (const AnovaTerm& term : answer.anova.terms) {
    const std::vector<std::string> test = {std::to_string(term.df), Exact(term.sum_sq),
                                           Exact(term.eta_squared), Exact(term.f), Exact(term.p)};
    if (term.levels.empty() && term.cells.empty()) {
      std::vector<std::string> cells = {term.name, "", "", "", "", ""};
      cells.insert(cells.end(), test.begin(), test.end());
      table.AddRow(std::move(cells));
    }
    for (const LevelEffect& level : term.levels) {
      std::vector<std::string> cells = {
          term.name,         FactorText(level.level), std::to_string(level.n),
          Exact(level.mean), Exact(level.effect),     Exact(level.ci95)};
      cells.insert(cells.end(), test.begin(), test.end());
      table.AddRow(std::move(cells));
    }
    for (const CellEffect& cell : term.cells) {
      std::vector<std::string> cells = {
          term.name,        CellText(cell),     std::to_string(cell.n),
          Exact(cell.mean), Exact(cell.effect), Exact(cell.ci95)};
      cells.insert(cells.end(), test.begin(), test.end());
      table.AddRow(std::move(cells));
    }
  }
  return table.ToCsv();
}

void AddEffectsCommand(CLI::App* app) {
  auto options = std::make_shared<EffectsOptions>();
  CLI::App* cmd = app->add_subcommand(
      "effects",
      "What matters: each factor's effect with its 95% interval, share of variance and p-value");
  cmd->add_option("sweep", options->sweep, "Sweep name (the newest of that name) or id")
      ->required();
  cmd->add_option("--metric", options->metric, kMetricHelp);
  cmd->add_option("--at", options->at,
                  "final, best (the curve's minimum; its maximum for a sweep metric whose goal is "
                  "maximize) or step:N")
      ->capture_default_str();
  CLI::Option* interactions =
      cmd->add_option("--interactions", options->interactions,
                      "Interactions of up to N factors (1: main effects only); default 2 where the "
                      "grid leaves an error term, else 1");
  cmd->add_option("--format", options->format, "table, csv or json")->capture_default_str();
  AddSourceFlags(cmd, &options->source);
  cmd->callback([options, interactions] {
    options->interactions_given = interactions->count() > 0;
    FinishCommand(RunEffects(*options));
  });
}

}  // namespace ablate
