// The HTML report of a sweep (`ablate report`): one self-contained file that
// opens from disk with nothing fetched (inline CSS and SVG, and a few lines of
// script that sort the grid table). It shows the seed post's figures, the
// averaged validation learning curves with mean ± std bands, one figure per
// factor other than the seed (for the seed's grid: by cell, by layer norm, by
// initializer); the best configuration (lowest final validation bpc averaged
// over seeds) with its parameter count and test bpc; the whole grid as a
// sortable table; what matters (`ablate effects`: each factor's effects with
// their intervals, shares of variance and p-values, and each factor's
// effects against the training step); and the sweep's facts: jobs by state,
// compute hours, the devices and precisions the jobs ran on, dates, and every
// failure with its last error. Light and dark colour schemes follow the
// reader's preference; the layout follows the window's width. Every text that
// comes from the database is escaped.
#ifndef ABLATE_CLI_REPORT_H_
#define ABLATE_CLI_REPORT_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cli/effects.h"
#include "cli/source.h"
#include "common/status.h"
#include "proto/ablate.pb.h"

namespace ablate {

// Everything a report shows, as the queries answered it. Only done jobs count.
struct ReportData {
  // Final validation bpc per job: the sweep, its factors, facts and failures.
  v1::ResultsResponse jobs;
  // Final bpc of each split grouped by every factor but the seed (the grid's
  // configurations); grid_valid's rows carry their configs.
  v1::ResultsResponse grid_valid, grid_test, grid_train;
  // Validation curves grouped by each factor but the seed, in spec order.
  std::vector<v1::CurvesResponse> figures;
  // The analysis of variance of final validation bpc (`ablate effects`), or
  // why the jobs do not allow one.
  std::optional<EffectsAnswer> effects;
  std::string effects_refused;
  // The same analysis at up to kEffectSteps steps of the validation curves,
  // each where the jobs that reach it allow it.
  std::vector<std::pair<int64_t, Anova>> effects_by_step;
};

// Effects over training are drawn from at most this many steps.
inline constexpr int kEffectSteps = 12;

// Runs the report's queries on `sweep`; their errors pass through.
StatusOr<ReportData> CollectReport(Source& source, const v1::SweepRef& sweep);

// The whole HTML document. Deterministic: the same data gives the same bytes
// (no time of generation is written).
std::string RenderReport(const ReportData& data);

// One part of the report's body: the id of the <section> that holds it, and
// its HTML.
struct ReportSection {
  std::string id;
  std::string html;
};
// The report's body in page order: the best configuration, the learning
// curves, what matters, the grid, the sweep's facts with its failures. The
// report and `ablate serve`'s sweep page both show these.
std::vector<ReportSection> RenderReportSections(const ReportData& data);
// The same sections, empty but the first, which holds `note`: what a live
// page shows until the report is collected.
std::vector<ReportSection> PendingReportSections(const std::string& note);
// Each section as <section id="ID">HTML</section>, in order.
std::string SectionsHtml(const std::vector<ReportSection>& sections);

// A whole document in the report's look: `title`, the report's CSS then
// `extra_style`, `body` inside <main>, the report's script (sortable tables,
// sortTable(table, column, direction)) then `script`.
std::string HtmlPage(const std::string& title, const std::string& extra_style,
                     const std::string& body, const std::string& script);

// A figure of `curves` as the report draws its learning curves: per group a
// mean line with a ± std band, a legend of the groups' values of factor `key`
// (bare values when `key` is empty), `y_title` on the y axis. `index` makes
// its clip path's id unique in the page.
std::string CurvesFigure(const v1::CurvesResponse& curves, const std::string& key,
                         const std::string& title, const std::string& y_title, int index);

// "cell GRU, layer norm yes, initializer xavier" for a job's factors JSON.
std::string FactorsText(const std::string& factors_json);
// "2026-12-07 14:03 UTC"; "–" for 0.
std::string FormatDate(int64_t ms);

// Text made safe for HTML element content and attribute values.
std::string HtmlEscape(const std::string& text);

}  // namespace ablate

#endif  // ABLATE_CLI_REPORT_H_
