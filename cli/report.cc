#include "cli/report.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <ctime>
#include <limits>
#include <nlohmann/json.hpp>

#include "cli/results_format.h"
#include "cli/table.h"
#include "common/metric.h"
#include "common/model_size.h"
#include "common/run_config.h"

namespace ablate {

namespace {

using nlohmann::json;

// Figures interpolate onto this many evenly spaced steps when the union of
// the jobs' eval steps is too large for one reply.
constexpr int kFallbackCurvePoints = 500;
// Each chart's coordinate system (CSS scales it to the page) and margins.
constexpr double kChartWidth = 400, kChartHeight = 300;
constexpr double kPlotLeft = 50, kPlotRight = 380, kPlotTop = 14, kPlotBottom = 252;
// Series colours; charts with more lines than this repeat them dashed.
constexpr int kColours = 6;
// A failure's error is shown up to this many characters.
constexpr size_t kErrorChars = 2000;

const char* kStyle = R"css(
:root {
  color-scheme: light dark;
  --bg: #ffffff; --fg: #1f2328; --muted: #59636e; --rule: #d1d9e0; --card: #f6f8fa;
  --best: #dafbe1; --bad: #cf222e;
  --c0: #0072b2; --c1: #d55e00; --c2: #009e73; --c3: #cc79a7; --c4: #b8860b; --c5: #56b4e9;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #0d1117; --fg: #e6edf3; --muted: #9198a1; --rule: #3d444d; --card: #151b23;
    --best: #12361f; --bad: #ff7b72;
    --c0: #56b4e9; --c1: #ff8c4b; --c2: #3fd6a4; --c3: #e59ad3; --c4: #f0c24a; --c5: #a5c8ff;
  }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", sans-serif; }
main { max-width: 1280px; margin: 0 auto; padding: 20px 16px 48px; }
h1 { font-size: 1.6em; margin: 0 0 4px; }
h2 { font-size: 1.2em; margin: 32px 0 10px; border-bottom: 1px solid var(--rule); padding-bottom: 4px; }
h3 { font-size: 1em; margin: 0; }
p { margin: 4px 0; }
.muted, .note { color: var(--muted); }
.note { font-size: .85em; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(200px, 1fr)); gap: 12px; }
.card { background: var(--card); border: 1px solid var(--rule); border-radius: 8px; padding: 12px 14px; }
.card .big { font-size: 1.35em; font-weight: 600; }
.figures { display: grid; grid-template-columns: repeat(auto-fit, minmax(340px, 1fr)); gap: 14px; }
figure { margin: 0; background: var(--card); border: 1px solid var(--rule); border-radius: 8px; padding: 10px; }
figcaption { margin-bottom: 4px; }
svg { display: block; width: 100%; height: auto; }
svg text { fill: var(--fg); font-size: 12px; font-family: inherit; }
svg .tick { fill: var(--muted); font-size: 11px; }
svg .gridline { stroke: var(--rule); stroke-width: 1; }
svg .axis { stroke: var(--muted); stroke-width: 1; }
svg .band { fill: var(--c); fill-opacity: .15; stroke: none; }
svg .line { fill: none; stroke: var(--c); stroke-width: 2; stroke-linejoin: round; stroke-linecap: round; }
svg .dashed { stroke-dasharray: 6 4; }
.legend { display: flex; flex-wrap: wrap; gap: 2px 16px; list-style: none; margin: 4px 0 0; padding: 0 0 0 44px; font-size: .85em; }
.legend li { display: flex; align-items: center; gap: 6px; }
.swatch { display: inline-block; width: 20px; border-top: 3px solid var(--c); }
.swatch.dashed { border-top-style: dashed; }
.s0 { --c: var(--c0); } .s1 { --c: var(--c1); } .s2 { --c: var(--c2); }
.s3 { --c: var(--c3); } .s4 { --c: var(--c4); } .s5 { --c: var(--c5); }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 10px; border-bottom: 1px solid var(--rule); text-align: left; vertical-align: top; }
td.num, th.num { text-align: right; }
#grid th, #grid td { white-space: nowrap; }
th button { all: inherit; cursor: pointer; padding: 0; font-weight: 600; }
th button::after { content: " \2195"; color: var(--muted); font-weight: 400; }
th[aria-sort=ascending] button::after { content: " \2191"; }
th[aria-sort=descending] button::after { content: " \2193"; }
tr.best td { background: var(--best); }
.spread { color: var(--muted); font-size: .85em; }
.error { white-space: pre-wrap; word-break: break-word; font-family: ui-monospace, monospace; font-size: .85em; color: var(--bad); }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 0; }
dt { color: var(--muted); }
dd { margin: 0; }
)css";

// Sorts a table by the clicked column: numerically by each cell's
// data-sort when both read as numbers, else by text. One listener on the
// document, so a table replaced later (`ablate serve`'s live updates) sorts
// too; sortTable lets such a page sort a new table as the old one was.
const char* kScript = R"js(
function sortTable(table, column, direction) {
  var heads = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
  heads[column].setAttribute("aria-sort", direction > 0 ? "ascending" : "descending");
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  rows.sort(function (a, b) {
    var x = a.cells[column].getAttribute("data-sort");
    var y = b.cells[column].getAttribute("data-sort");
    var nx = parseFloat(x), ny = parseFloat(y);
    if (!isNaN(nx) && !isNaN(ny)) return direction * (nx - ny);
    if (isNaN(nx) !== isNaN(ny)) return isNaN(nx) ? 1 : -1;
    return direction * x.localeCompare(y);
  });
  rows.forEach(function (row) { body.appendChild(row); });
}
document.addEventListener("click", function (event) {
  var button = event.target.closest("table.sortable th button");
  if (!button) return;
  var th = button.closest("th");
  sortTable(th.closest("table"), th.cellIndex,
            th.getAttribute("aria-sort") === "ascending" ? -1 : 1);
});
)js";

std::string ShortName(const std::string& key) {
  const size_t dot = key.find('.');
  return dot == std::string::npos ? key : key.substr(dot + 1);
}

// How a factor is named in titles and headers.
std::string AxisTitle(const std::string& key) {
  if (key == "model.cell") return "cell";
  if (key == "model.layer_norm") return "layer norm";
  if (key == "model.init") return "initializer";
  std::string name = ShortName(key);
  std::replace(name.begin(), name.end(), '_', ' ');
  return name;
}

// How a factor's value reads in legends and in the best configuration
// ("GRU", "layer norm", "variance scaling"), or in a table column headed by
// the factor (`in_column`: "yes" rather than "layer norm").
std::string ValueLabel(const std::string& key, const std::string& value_json, bool in_column) {
  if (key.empty()) return FactorText(value_json);
  const json value = json::parse(value_json, nullptr, /*allow_exceptions=*/false);
  if (key == "model.cell" && value.is_string()) {
    std::string cell = value.get<std::string>();
    for (char& c : cell) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return cell;
  }
  if (key == "model.layer_norm" && value.is_boolean()) {
    if (in_column) return value.get<bool>() ? "yes" : "no";
    return value.get<bool>() ? "layer norm" : "no layer norm";
  }
  std::string text = FactorText(value_json);
  if (key == "model.init") std::replace(text.begin(), text.end(), '_', ' ');
  if (!in_column && key != "model.init") text = AxisTitle(key) + " " + text;
  return text;
}

std::string Bpc(double value) { return std::isfinite(value) ? fmt::format("{:.4f}", value) : "–"; }

std::string DataSort(double value) { return std::isfinite(value) ? fmt::format("{}", value) : ""; }

}  // namespace

std::string FormatDate(int64_t ms) {
  if (ms <= 0) return "–";
  const std::time_t seconds = static_cast<std::time_t>(ms / 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M UTC", &utc);
  return text;
}

namespace {

// The parameter count of a job's config, or -1 when it does not parse.
int64_t Parameters(const std::string& config_json) {
  const json config = json::parse(config_json, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded()) return -1;
  StatusOr<RunConfig> run = RunConfig::FromJson(config);
  if (!run.ok()) return -1;
  const ModelConfig& m = run->model;
  return CountParameters(m.cell, m.layer_norm, m.hidden, m.vocab);
}

}  // namespace

std::string FactorsText(const std::string& factors_json) {
  const json factors = json::parse(factors_json, nullptr, /*allow_exceptions=*/false);
  if (!factors.is_object()) return factors_json;
  std::string out;
  for (const auto& item : factors.items()) {
    out += (out.empty() ? "" : ", ") + AxisTitle(item.key()) + " " +
           ValueLabel(item.key(), item.value().dump(), /*in_column=*/true);
  }
  return out;
}

namespace {

// --- Charts -------------------------------------------------------------------

struct Axis {
  double low = 0, high = 1, step = 1;
  std::vector<double> ticks;
};

// An axis over [low, high] with about `count` round ticks, widened to them.
Axis NiceAxis(double low, double high, int count) {
  if (!(high > low)) {
    const double pad = low == 0 ? 1 : std::fabs(low) * 0.05;
    low -= pad;
    high += pad;
  }
  const double raw = (high - low) / count;
  const double magnitude = std::pow(10, std::floor(std::log10(raw)));
  const double normal = raw / magnitude;
  const double step = (normal < 1.5 ? 1 : normal < 3 ? 2 : normal < 7 ? 5 : 10) * magnitude;
  Axis axis;
  axis.step = step;
  axis.low = std::floor(low / step + 1e-9) * step;
  axis.high = std::ceil(high / step - 1e-9) * step;
  for (int i = 0; axis.low + i * step <= axis.high + step * 1e-6; ++i) {
    axis.ticks.push_back(axis.low + i * step);
  }
  return axis;
}

std::string StepLabel(double value, double step, double largest) {
  if (largest >= 10000) {
    const double k = value / 1000;
    return step >= 1000 ? fmt::format("{:.0f}k", k) : fmt::format("{:.1f}k", k);
  }
  return fmt::format("{:.0f}", value);
}

std::string BpcLabel(double value, double step) {
  const int decimals = std::max(0, static_cast<int>(-std::floor(std::log10(step) + 1e-9)));
  return fmt::format("{:.{}f}", value, decimals);
}

// What a figure covers: the steps with points, and the bpc range of the
// last two thirds of training. The first third's steep drop from the
// untrained model would flatten the differences the figure is about, so its
// start runs off the top (`zoomed`).
struct ChartExtent {
  double x_low = std::numeric_limits<double>::infinity();
  double x_high = -std::numeric_limits<double>::infinity();
  double y_low = std::numeric_limits<double>::infinity();
  double y_high = -std::numeric_limits<double>::infinity();
  bool zoomed = false;

  bool empty() const { return !std::isfinite(x_low); }
};

// The band's half-width at point i: the standard deviation, 0 for one job.
double Spread(const v1::CurveGroup& group, int i) {
  return std::isfinite(group.stddev(i)) ? group.stddev(i) : 0;
}

ChartExtent MeasureChart(const v1::CurvesResponse& curves) {
  const auto& steps = curves.steps();
  ChartExtent e;
  for (const v1::CurveGroup& group : curves.groups()) {
    for (int i = 0; i < steps.size(); ++i) {
      if (group.n(i) == 0) continue;
      e.x_low = std::min(e.x_low, static_cast<double>(steps[i]));
      e.x_high = std::max(e.x_high, static_cast<double>(steps[i]));
    }
  }
  const double zoom_from = e.x_low + (e.x_high - e.x_low) / 3;
  double y_first_third = -std::numeric_limits<double>::infinity();
  for (const v1::CurveGroup& group : curves.groups()) {
    for (int i = 0; i < steps.size(); ++i) {
      if (group.n(i) == 0) continue;
      e.y_low = std::min(e.y_low, group.mean(i) - Spread(group, i));
      double& high = static_cast<double>(steps[i]) >= zoom_from ? e.y_high : y_first_third;
      high = std::max(high, group.mean(i) + Spread(group, i));
    }
  }
  e.zoomed = y_first_third > e.y_high;
  return e;
}

// Pixel positions of a figure's steps and bpc values.
struct ChartScale {
  Axis x, y;
  double px(double step) const {
    return kPlotLeft + (step - x.low) / (x.high - x.low) * (kPlotRight - kPlotLeft);
  }
  double py(double bpc) const {
    return kPlotBottom - (bpc - y.low) / (y.high - y.low) * (kPlotBottom - kPlotTop);
  }
};

// An SVG figure's start, titled for screen readers, with the plot area as
// the clip path `clip_id` that the series use.
std::string ChartSvgStart(const std::string& title, const std::string& clip_id) {
  return fmt::format(
      "<svg viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"{}\">\n"
      "<defs><clipPath id=\"{}\"><rect x=\"{}\" y=\"{}\" width=\"{}\" "
      "height=\"{}\"/></clipPath></defs>\n",
      kChartWidth, kChartHeight, HtmlEscape(title), clip_id, kPlotLeft, kPlotTop,
      kPlotRight - kPlotLeft, kPlotBottom - kPlotTop);
}

// Gridlines, ticks, both axes and their titles.
std::string ChartAxes(const ChartScale& s, const std::string& y_title) {
  std::string out;
  for (double t : s.y.ticks) {
    out += fmt::format(
        "<line class=\"gridline\" x1=\"{:.1f}\" x2=\"{:.1f}\" y1=\"{:.1f}\" y2=\"{:.1f}\"/>"
        "<text class=\"tick\" x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n",
        kPlotLeft, kPlotRight, s.py(t), s.py(t), kPlotLeft - 6, s.py(t) + 4, BpcLabel(t, s.y.step));
  }
  for (double t : s.x.ticks) {
    out += fmt::format(
        "<line class=\"axis\" x1=\"{0:.1f}\" x2=\"{0:.1f}\" y1=\"{1:.1f}\" y2=\"{2:.1f}\"/>"
        "<text class=\"tick\" x=\"{0:.1f}\" y=\"{3:.1f}\" text-anchor=\"middle\">{4}</text>\n",
        s.px(t), kPlotBottom, kPlotBottom + 5, kPlotBottom + 18, StepLabel(t, s.x.step, s.x.high));
  }
  out += fmt::format(
      "<line class=\"axis\" x1=\"{0}\" x2=\"{1}\" y1=\"{2}\" y2=\"{2}\"/>"
      "<line class=\"axis\" x1=\"{0}\" x2=\"{0}\" y1=\"{3}\" y2=\"{2}\"/>\n"
      "<text x=\"{4}\" y=\"{5}\" text-anchor=\"middle\">training step</text>\n"
      "<text transform=\"translate(13 {6}) rotate(-90)\" text-anchor=\"middle\">{7}</text>\n",
      kPlotLeft, kPlotRight, kPlotBottom, kPlotTop, (kPlotLeft + kPlotRight) / 2, kChartHeight - 8,
      (kPlotTop + kPlotBottom) / 2, HtmlEscape(y_title));
  return out;
}

// One group's mean line and spread band as SVG paths; each run of steps the
// group covers is one stretch of line and band.
std::string ChartSeries(const ChartScale& s, const google::protobuf::RepeatedField<int64_t>& steps,
                        const v1::CurveGroup& group, int g) {
  std::string line, band;
  for (int i = 0; i < steps.size();) {
    if (group.n(i) == 0) {
      ++i;
      continue;
    }
    int end = i;
    while (end < steps.size() && group.n(end) > 0) ++end;
    std::string upper, lower;
    for (int k = i; k < end; ++k) {
      const double sx = s.px(static_cast<double>(steps[k]));
      const char* move = k == i ? "M" : " L";
      line += fmt::format("{}{:.1f} {:.1f}", move, sx, s.py(group.mean(k)));
      upper += fmt::format("{}{:.1f} {:.1f}", move, sx, s.py(group.mean(k) + Spread(group, k)));
      lower = fmt::format(" L{:.1f} {:.1f}", sx, s.py(group.mean(k) - Spread(group, k))) + lower;
    }
    if (end - i == 1) line += " h0";  // a single point still shows as a dot
    band += upper + lower + " Z";
    i = end;
  }
  return fmt::format(
      "<g class=\"series s{}\"><path class=\"band\" d=\"{}\"/><path class=\"line{}\" "
      "d=\"{}\"/></g>\n",
      g % kColours, band, g >= kColours ? " dashed" : "", line);
}

}  // namespace

std::string CurvesFigure(const v1::CurvesResponse& curves, const std::string& key,
                         const std::string& title, const std::string& y_title, int index) {
  const ChartExtent extent = MeasureChart(curves);
  const bool one_job_each =
      std::all_of(curves.groups().begin(), curves.groups().end(),
                  [](const v1::CurveGroup& group) { return group.jobs() <= 1; });
  std::string out = fmt::format(
      "<figure class=\"chart\" data-key=\"{}\">\n<figcaption><h3>{}</h3><p class=\"note\">{}{}"
      "</p></figcaption>\n",
      HtmlEscape(key), HtmlEscape(title),
      one_job_each ? "each line one job&#39;s points"
                   : "mean (line) &#177; standard deviation (band) over each line&#39;s jobs",
      extent.zoomed ? "; the first third of training runs off the top" : "");
  if (extent.empty()) {
    return out + "<p class=\"muted\">No points yet.</p>\n</figure>\n";
  }

  const ChartScale scale{NiceAxis(extent.x_low, extent.x_high, 5),
                         NiceAxis(extent.y_low, extent.y_high, 5)};
  const std::string clip = fmt::format("plot-{}", index);
  out += ChartSvgStart(title, clip);
  out += ChartAxes(scale, y_title);
  out += fmt::format("<g clip-path=\"url(#{})\">\n", clip);
  for (int g = 0; g < curves.groups_size(); ++g) {
    out += ChartSeries(scale, curves.steps(), curves.groups(g), g);
  }
  out += "</g>\n</svg>\n";
  // Below the plot rather than on it: curves that are still falling leave
  // no corner free.
  out += "<ul class=\"legend\">";
  for (int g = 0; g < curves.groups_size(); ++g) {
    const v1::CurveGroup& group = curves.groups(g);
    const std::string label =
        fmt::format("{} (n={})", ValueLabel(key, group.values_json(0), false), group.jobs());
    out += fmt::format("<li><span class=\"swatch s{}{}\"></span>{}</li>", g % kColours,
                       g >= kColours ? " dashed" : "", HtmlEscape(label));
  }
  return out + "</ul>\n</figure>\n";
}

namespace {

// A factor's main effects at each analysed step as curves: per level, the
// effect (mean) and its 95% half-width (as the band's spread); n is 0 at
// steps where the level was not analysed.
v1::CurvesResponse EffectCurves(const std::vector<std::pair<int64_t, Anova>>& by_step,
                                const AnovaTerm& final_term) {
  v1::CurvesResponse curves;
  for (const auto& [step, anova] : by_step) curves.add_steps(step);
  for (const LevelEffect& final_level : final_term.levels) {
    v1::CurveGroup* group = curves.add_groups();
    group->add_values_json(final_level.level);
    group->set_jobs(final_level.n);
    for (const auto& [step, anova] : by_step) {
      const LevelEffect* found = nullptr;
      for (const AnovaTerm& term : anova.terms) {
        if (term.levels.empty() || term.name != final_term.name) continue;
        for (const LevelEffect& level : term.levels) {
          if (level.level == final_level.level) found = &level;
        }
      }
      group->add_n(found ? found->n : 0);
      group->add_mean(found ? found->effect : NAN);
      group->add_stddev(found ? found->ci95 : NAN);
      group->add_min(NAN);
      group->add_max(NAN);
    }
  }
  return curves;
}

// Each level's effect on validation bpc against the step, with its 95%
// interval as a band and a line at zero.
std::string EffectChart(const v1::CurvesResponse& curves, const std::string& key, int index) {
  const std::string title = "Effect of " + AxisTitle(key) + " over training";
  std::string out = fmt::format(
      "<figure class=\"effect-chart\" data-key=\"{}\">\n<figcaption><h3>{}</h3><p "
      "class=\"note\">each level&#39;s mean minus the grand mean (line) with its 95% interval "
      "(band), at {} steps</p></figcaption>\n",
      HtmlEscape(key), HtmlEscape(title), curves.steps_size());
  double x_low = INFINITY, x_high = -INFINITY, y_low = 0, y_high = 0;
  for (const v1::CurveGroup& group : curves.groups()) {
    for (int i = 0; i < curves.steps_size(); ++i) {
      if (group.n(i) == 0) continue;
      x_low = std::min(x_low, static_cast<double>(curves.steps(i)));
      x_high = std::max(x_high, static_cast<double>(curves.steps(i)));
      y_low = std::min(y_low, group.mean(i) - Spread(group, i));
      y_high = std::max(y_high, group.mean(i) + Spread(group, i));
    }
  }
  if (!std::isfinite(x_low)) {
    return out + "<p class=\"muted\">No step has enough jobs for the analysis.</p>\n</figure>\n";
  }
  const ChartScale scale{NiceAxis(x_low, x_high, 5), NiceAxis(y_low, y_high, 5)};
  const std::string clip = fmt::format("effect-plot-{}", index);
  out += ChartSvgStart(title, clip);
  out += ChartAxes(scale, "effect on validation bpc");
  out += fmt::format(
      "<line class=\"axis zero\" x1=\"{0}\" x2=\"{1}\" y1=\"{2:.1f}\" y2=\"{2:.1f}\"/>\n",
      kPlotLeft, kPlotRight, scale.py(0));
  out += fmt::format("<g clip-path=\"url(#{})\">\n", clip);
  for (int g = 0; g < curves.groups_size(); ++g) {
    out += ChartSeries(scale, curves.steps(), curves.groups(g), g);
  }
  out += "</g>\n</svg>\n<ul class=\"legend\">";
  for (int g = 0; g < curves.groups_size(); ++g) {
    out += fmt::format("<li><span class=\"swatch s{}{}\"></span>{}</li>", g % kColours,
                       g >= kColours ? " dashed" : "",
                       HtmlEscape(ValueLabel(key, curves.groups(g).values_json(0), false)));
  }
  return out + "</ul>\n</figure>\n";
}

// --- Sections -----------------------------------------------------------------

const v1::ResultRow* FindRow(const v1::ResultsResponse& results, const v1::ResultRow& like) {
  for (const v1::ResultRow& row : results.rows()) {
    if (std::equal(row.values_json().begin(), row.values_json().end(), like.values_json().begin(),
                   like.values_json().end())) {
      return &row;
    }
  }
  return nullptr;
}

std::string Configuration(const v1::ResultsResponse& grid, const v1::ResultRow& row) {
  std::string out;
  for (int i = 0; i < row.values_json_size() && i < grid.column_keys_size(); ++i) {
    out += (out.empty() ? "" : " · ") + ValueLabel(grid.column_keys(i), row.values_json(i), false);
  }
  return out;
}

// How the report names the sweep's metric: the built-in validation bpc in
// words, any other by its name.
std::string MetricLabel(const std::string& metric) {
  return metric.empty() || metric == kDefaultMetric ? "validation bpc" : metric;
}

// Whether the report's metric is the built-in trainer's, whose test and
// train bpc stand beside it; a program's metric stands alone.
bool BuiltinMetrics(const ReportData& data) {
  return data.grid_valid.metric().empty() || IsBuiltinMetric(data.grid_valid.metric());
}

std::string BestSection(const ReportData& data) {
  const bool maximize = data.grid_valid.maximize();
  const v1::ResultRow* best = nullptr;
  for (const v1::ResultRow& row : data.grid_valid.rows()) {
    if (best == nullptr || (maximize ? row.mean() > best->mean() : row.mean() < best->mean())) {
      best = &row;
    }
  }
  const std::string metric = MetricLabel(data.grid_valid.metric());
  std::string out = "<h2>Best configuration</h2>\n";
  if (best == nullptr) return out + "<p class=\"muted\">No job has finished yet.</p>\n";
  const v1::ResultRow* test = FindRow(data.grid_test, *best);
  const int64_t parameters = Parameters(best->config_json());
  out += "<div class=\"cards\" id=\"best\">\n";
  out += fmt::format(
      "<div class=\"card\"><p class=\"muted\">{} final {}, mean over {} "
      "{}</p><p class=\"big\" id=\"best-config\">{}</p></div>\n",
      maximize ? "highest" : "lowest", HtmlEscape(metric), best->n(),
      best->n() == 1 ? "job" : "jobs", HtmlEscape(Configuration(data.grid_valid, *best)));
  out += fmt::format(
      "<div class=\"card\"><p class=\"muted\">{}</p><p class=\"big\">{}</p><p "
      "class=\"spread\">{}</p></div>\n",
      HtmlEscape(metric), Bpc(best->mean()),
      best->n() > 1 ? fmt::format("&#177; {} std, {} &#8211; {}", Bpc(best->stddev()),
                                  Bpc(best->min()), Bpc(best->max()))
                    : std::string("a single job: no spread yet"));
  if (BuiltinMetrics(data)) {
    out += fmt::format(
        "<div class=\"card\"><p class=\"muted\">test bpc</p><p class=\"big\" "
        "id=\"best-test\">{}</p></div>\n",
        test ? Bpc(test->mean()) : "–");
    out += fmt::format(
        "<div class=\"card\"><p class=\"muted\">parameters</p><p class=\"big\" "
        "id=\"best-parameters\">{}</p><p class=\"spread\">{}</p></div>\n",
        parameters >= 0 ? FormatThousands(parameters) : "–",
        parameters >= 0 ? FormatSi(static_cast<double>(parameters)) : "");
  }
  return out + "</div>\n";
}

std::string GridSection(const ReportData& data) {
  const v1::ResultsResponse& grid = data.grid_valid;
  const bool builtin = BuiltinMetrics(data);
  std::string out = fmt::format(
      "<h2>The grid</h2>\n<p class=\"note\">Final {} of done jobs, mean over seeds (&#177; "
      "std). Click a heading to sort.</p>\n",
      builtin ? "bpc" : HtmlEscape(grid.metric()));
  if (grid.rows_size() == 0) return out + "<p class=\"muted\">No job has finished yet.</p>\n";
  const bool maximize = grid.maximize();
  const v1::ResultRow* best = nullptr;
  for (const v1::ResultRow& row : grid.rows()) {
    if (best == nullptr || (maximize ? row.mean() > best->mean() : row.mean() < best->mean())) {
      best = &row;
    }
  }
  out += "<div class=\"scroll\"><table class=\"sortable\" id=\"grid\">\n<thead><tr>";
  for (const std::string& key : grid.column_keys()) {
    out += fmt::format("<th><button type=\"button\">{}</button></th>", HtmlEscape(AxisTitle(key)));
  }
  const std::vector<std::string> headings =
      builtin ? std::vector<std::string>{"jobs", "valid bpc", "test bpc", "train bpc", "parameters"}
              : std::vector<std::string>{"jobs", grid.metric()};
  for (const std::string& heading : headings) {
    out += fmt::format("<th class=\"num\"><button type=\"button\">{}</button></th>",
                       HtmlEscape(heading));
  }
  out += "</tr></thead>\n<tbody>\n";
  for (const v1::ResultRow& row : grid.rows()) {
    out += &row == best ? "<tr class=\"best\">" : "<tr>";
    for (int i = 0; i < row.values_json_size() && i < grid.column_keys_size(); ++i) {
      const std::string label = ValueLabel(grid.column_keys(i), row.values_json(i), true);
      out += fmt::format("<td data-sort=\"{0}\">{0}</td>", HtmlEscape(label));
    }
    const v1::ResultRow* test = FindRow(data.grid_test, row);
    const v1::ResultRow* train = FindRow(data.grid_train, row);
    const double test_bpc = test ? test->mean() : NAN;
    const double train_bpc = train ? train->mean() : NAN;
    const int64_t parameters = Parameters(row.config_json());
    out += fmt::format("<td class=\"num\" data-sort=\"{0}\">{0}</td>", row.n());
    out += fmt::format(
        "<td class=\"num\" data-sort=\"{}\">{}{}</td>", DataSort(row.mean()), Bpc(row.mean()),
        row.n() > 1 ? fmt::format(" <span class=\"spread\">&#177; {}</span>", Bpc(row.stddev()))
                    : "");
    if (!builtin) {
      out += "</tr>\n";
      continue;
    }
    out += fmt::format("<td class=\"num\" data-sort=\"{}\">{}</td>", DataSort(test_bpc),
                       Bpc(test_bpc));
    out += fmt::format("<td class=\"num\" data-sort=\"{}\">{}</td>", DataSort(train_bpc),
                       Bpc(train_bpc));
    out += fmt::format("<td class=\"num\" data-sort=\"{}\">{}</td></tr>\n",
                       parameters >= 0 ? std::to_string(parameters) : "",
                       parameters >= 0 ? FormatThousands(parameters) : "–");
  }
  return out + "</tbody></table></div>\n";
}

std::string PValueText(double p) {
  if (!std::isfinite(p)) return "–";
  return p >= 0.001 ? fmt::format("{:.4f}", p) : fmt::format("{:.1e}", p);
}

// The factor's canonical key, from the column it is named by.
std::string KeyOf(const v1::ResultsResponse& jobs, const std::string& column) {
  for (int c = 0; c < jobs.columns_size() && c < jobs.column_keys_size(); ++c) {
    if (jobs.columns(c) == column) return jobs.column_keys(c);
  }
  return column;
}

// A term's name as the report's headings read: "cell × layer norm".
std::string TermTitle(const v1::ResultsResponse& jobs, const AnovaTerm& term,
                      const std::vector<std::string>& factors) {
  std::string out;
  for (int f : term.factors) out += (out.empty() ? "" : " × ") + AxisTitle(KeyOf(jobs, factors[f]));
  return out;
}

std::string EffectsTerms(const EffectsAnswer& answer) {
  const Anova& anova = answer.anova;
  std::string out =
      "<div class=\"scroll\"><table id=\"effects\">\n<thead><tr><th>term</th><th "
      "class=\"num\">df</th><th class=\"num\">share of variance</th><th "
      "class=\"num\">F</th><th class=\"num\">p</th></tr></thead>\n<tbody>\n";
  for (const AnovaTerm& term : anova.terms) {
    out += fmt::format(
        "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{:.1f}%</td><td "
        "class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n",
        HtmlEscape(TermTitle(answer.jobs, term, anova.factors)), term.df, 100 * term.eta_squared,
        std::isfinite(term.f) ? fmt::format("{:.2f}", term.f) : "–", PValueText(term.p));
  }
  out += fmt::format(
      "<tr><td>error</td><td class=\"num\">{}</td><td "
      "class=\"num\">{:.1f}%</td><td></td><td></td></tr>\n",
      anova.df_error, anova.ss_total > 0 ? 100 * anova.ss_error / anova.ss_total : 0.0);
  return out + "</tbody></table></div>\n";
}

std::string EffectsLevels(const EffectsAnswer& answer) {
  std::string out =
      "<p class=\"note\">Main effects: each level&#39;s mean minus the grand mean, with the "
      "half-width of its 95% interval, t(0.975, df) &#183; &#8730;(MSE (1/n &#8722; "
      "1/N)).</p>\n"
      "<div class=\"scroll\"><table id=\"main-effects\">\n<thead><tr><th>factor</th><th>level</"
      "th><th class=\"num\">jobs</th><th class=\"num\">mean bpc</th><th class=\"num\">effect "
      "&#177; 95% interval</th></tr></thead>\n<tbody>\n";
  for (const AnovaTerm& term : answer.anova.terms) {
    if (term.factors.size() != 1) continue;
    const std::string key = KeyOf(answer.jobs, term.name);
    for (const LevelEffect& level : term.levels) {
      out += fmt::format(
          "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td "
          "class=\"num\">{:+.4f} &#177; {:.4f}</td></tr>\n",
          HtmlEscape(AxisTitle(key)), HtmlEscape(ValueLabel(key, level.level, true)), level.n,
          Bpc(level.mean), level.effect, level.ci95);
    }
  }
  return out + "</tbody></table></div>\n";
}

std::string EffectsSection(const ReportData& data) {
  std::string out = "<h2>What matters</h2>\n";
  if (!data.effects) {
    return out + fmt::format("<p class=\"muted\" id=\"effects\">No analysis of variance: {}.</p>\n",
                             HtmlEscape(data.effects_refused));
  }
  const EffectsAnswer& answer = *data.effects;
  const Anova& anova = answer.anova;
  out += fmt::format(
      "<p class=\"note\" id=\"effects-method\">Final validation bpc of {} done jobs (grand mean "
      "{}): analysis of variance with {}; {}. Error term: {} ({} df). Share of variance: eta "
      "squared, the term&#39;s sum of squares over the total; terms ranked by it.</p>\n",
      anova.n, Bpc(anova.grand_mean),
      anova.order == 1 ? std::string("main effects only")
                       : fmt::format("interactions of up to {} factors", anova.order),
      HtmlEscape(SumsOfSquaresText(anova)), HtmlEscape(ErrorTermText(answer)), anova.df_error);
  for (const std::string& factor : anova.single_level) {
    out += fmt::format("<p class=\"note\">{} is left out: one level among the done jobs.</p>\n",
                       HtmlEscape(AxisTitle(KeyOf(answer.jobs, factor))));
  }
  out += EffectsTerms(answer) + EffectsLevels(answer);
  out += "<div class=\"figures\" id=\"effects-over-training\">\n";
  int index = 0;
  for (const AnovaTerm& term : anova.terms) {
    if (term.factors.size() != 1) continue;
    out += EffectChart(EffectCurves(data.effects_by_step, term), KeyOf(answer.jobs, term.name),
                       index++);
  }
  return out + "</div>\n";
}

std::string FactsSection(const ReportData& data) {
  const v1::SweepSummary& sweep = data.jobs.sweep();
  const v1::JobCounts& counts = sweep.counts();
  const v1::SweepFacts& facts = data.jobs.facts();
  std::string out = "<h2>The sweep</h2>\n<dl id=\"facts\">\n";
  out += fmt::format("<dt>sweep</dt><dd>{} (id {}, spec {})</dd>\n", HtmlEscape(sweep.name()),
                     sweep.id(), HtmlEscape(sweep.spec_hash().substr(0, 12)));
  out += fmt::format(
      "<dt>jobs</dt><dd>{} in all: {} done, {} failed, {} cancelled, {} running, {} "
      "pending</dd>\n",
      counts.total(), counts.done(), counts.failed(), counts.cancelled(), counts.running(),
      counts.pending());
  out += fmt::format(
      "<dt>compute</dt><dd>{} on CPUs, {} on GPUs ({:.2f} and {:.2f} hours: the jobs&#39; "
      "training wall times)</dd>\n",
      FormatDuration(facts.cpu_hours() * 3600), FormatDuration(facts.gpu_hours() * 3600),
      facts.cpu_hours(), facts.gpu_hours());
  if (facts.ran_on_size() > 0) {
    std::vector<std::string> uses;
    for (const v1::DeviceUse& use : facts.ran_on()) uses.push_back(HtmlEscape(DeviceUseText(use)));
    out += fmt::format("<dt>ran on</dt><dd>{}</dd>\n", fmt::join(uses, "<br>"));
  }
  out += fmt::format("<dt>launched</dt><dd>{}</dd>\n", FormatDate(sweep.created_ms()));
  out += fmt::format("<dt>ran</dt><dd>{} to {}</dd>\n", FormatDate(facts.first_started_ms()),
                     FormatDate(facts.last_finished_ms()));
  const int64_t unfinished = counts.running() + counts.pending();
  if (unfinished > 0) {
    out += fmt::format(
        "<dt>note</dt><dd>{} {} not finished; every number here counts done jobs only</dd>\n",
        unfinished, unfinished == 1 ? "job is" : "jobs are");
  }
  if (data.jobs.left_out().missing_size() > 0) {
    out += fmt::format("<dt>note</dt><dd>{} done {} no validation point</dd>\n",
                       data.jobs.left_out().missing_size(),
                       data.jobs.left_out().missing_size() == 1 ? "job has" : "jobs have");
  }
  out += "</dl>\n";

  const auto& failed = data.jobs.left_out().failed();
  out += fmt::format("<h2>Failures</h2>\n");
  if (failed.empty()) return out + "<p class=\"muted\" id=\"failures\">No job failed.</p>\n";
  out +=
      "<div class=\"scroll\"><table id=\"failures\">\n<thead><tr><th>job</th><th>configuration</"
      "th><th>last error</th></tr></thead>\n<tbody>\n";
  for (const v1::JobNote& note : failed) {
    std::string error = note.detail();
    if (error.size() > kErrorChars) error = error.substr(0, kErrorChars) + "...";
    out +=
        fmt::format("<tr><td>{}</td><td>{}</td><td class=\"error\">{}</td></tr>\n", note.job_id(),
                    HtmlEscape(FactorsText(note.factors_json())), HtmlEscape(error));
  }
  return out + "</tbody></table></div>\n";
}

// Up to kEffectSteps steps of `steps`, evenly spread, the first and the last
// among them.
std::vector<int64_t> SampleSteps(const google::protobuf::RepeatedField<int64_t>& steps) {
  std::vector<int64_t> out;
  const int count = steps.size();
  if (count <= kEffectSteps) return {steps.begin(), steps.end()};
  for (int i = 0; i < kEffectSteps; ++i) {
    out.push_back(steps[static_cast<int>(
        std::lround(static_cast<double>(i) * (count - 1) / (kEffectSteps - 1)))]);
  }
  return out;
}

// The analysis of variance of the sweep's final metric, and at the sampled steps
// of the figures' grid. A refusal (too few jobs, one level) is shown, not an
// error.
Status CollectEffects(Source& source, int64_t sweep_id, const std::string& metric,
                      ReportData* data) {
  v1::ResultsRequest request;
  request.mutable_sweep()->set_id(sweep_id);
  request.set_metric(metric);
  request.set_at(v1::VALUE_AT_FINAL);
  StatusOr<EffectsAnswer> answer = ComputeEffects(source, request, 0);
  if (answer.status().code() == Status::kFailedPrecondition) {
    data->effects_refused = answer.status().message();
    return Status::OK();
  }
  ABLATE_RETURN_IF_ERROR(answer.status());
  const int order = answer->anova.order;
  data->effects = std::move(*answer);
  if (data->figures.empty()) return Status::OK();
  request.set_at(v1::VALUE_AT_STEP);
  for (int64_t step : SampleSteps(data->figures.front().steps())) {
    request.set_step(step);
    StatusOr<EffectsAnswer> at_step = ComputeEffects(source, request, order);
    if (at_step.status().code() == Status::kFailedPrecondition) continue;
    ABLATE_RETURN_IF_ERROR(at_step.status());
    data->effects_by_step.emplace_back(step, std::move(at_step->anova));
  }
  return Status::OK();
}

}  // namespace

std::string HtmlEscape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

StatusOr<ReportData> CollectReport(Source& source, const v1::SweepRef& sweep) {
  ReportData data;
  v1::ResultsRequest request;
  *request.mutable_sweep() = sweep;
  request.set_at(v1::VALUE_AT_FINAL);
  ABLATE_RETURN_IF_ERROR(source.Results(request, &data.jobs));
  // The sweep by id from here on, so a newer sweep of the same name cannot
  // slip in between the queries; its metric (spec metric.name, else
  // valid_bpc) as the first reply resolved it.
  request.mutable_sweep()->set_id(data.jobs.sweep().id());
  request.set_metric(data.jobs.metric());

  std::vector<std::string> configuration;  // every factor but the seed
  for (const std::string& key : data.jobs.column_keys()) {
    if (key != "train.seed") configuration.push_back(key);
  }
  for (const std::string& key : configuration) request.add_group_by(key);
  request.set_with_config(true);
  ABLATE_RETURN_IF_ERROR(source.Results(request, &data.grid_valid));
  request.set_with_config(false);
  request.set_metric("test_bpc");
  ABLATE_RETURN_IF_ERROR(source.Results(request, &data.grid_test));
  request.set_metric("train_bpc");
  ABLATE_RETURN_IF_ERROR(source.Results(request, &data.grid_train));

  for (const std::string& key : configuration) {
    v1::CurvesRequest curves;
    curves.mutable_sweep()->set_id(data.jobs.sweep().id());
    curves.add_group_by(key);
    curves.set_metric(data.jobs.metric());
    v1::CurvesResponse& figure = data.figures.emplace_back();
    Status status = source.Curves(curves, &figure);
    if (status.code() == Status::kInvalidArgument) {
      // Too many distinct steps for one reply: an even grid draws the same lines.
      curves.set_points(kFallbackCurvePoints);
      status = source.Curves(curves, &figure);
    }
    ABLATE_RETURN_IF_ERROR(status);
  }
  ABLATE_RETURN_IF_ERROR(CollectEffects(source, data.jobs.sweep().id(), data.jobs.metric(), &data));
  return data;
}

std::string HtmlPage(const std::string& title, const std::string& extra_style,
                     const std::string& body, const std::string& script) {
  return fmt::format(
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
      "<meta name=\"color-scheme\" content=\"light dark\">\n"
      "<title>{}</title>\n<style>{}{}</style>\n</head>\n<body>\n<main>\n{}</main>\n"
      "<script>{}{}</script>\n</body>\n</html>\n",
      HtmlEscape(title), kStyle, extra_style, body, kScript, script);
}

// The report's sections, in page order.
constexpr const char* kSectionIds[] = {"section-best", "section-curves", "section-effects",
                                       "section-grid", "section-facts"};

std::vector<ReportSection> RenderReportSections(const ReportData& data) {
  std::vector<ReportSection> sections;
  sections.push_back({kSectionIds[0], BestSection(data)});
  std::string curves = "<h2>Learning curves</h2>\n<div class=\"figures\">\n";
  for (size_t i = 0; i < data.figures.size(); ++i) {
    const v1::CurvesResponse& figure = data.figures[i];
    const std::string key = figure.column_keys_size() > 0 ? figure.column_keys(0) : "";
    const std::string metric = MetricLabel(figure.metric());
    std::string title = metric + " by " + AxisTitle(key);
    title[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(title[0])));
    curves += CurvesFigure(figure, key, title, metric, static_cast<int>(i));
  }
  sections.push_back({kSectionIds[1], curves + "</div>\n"});
  sections.push_back({kSectionIds[2], EffectsSection(data)});
  sections.push_back({kSectionIds[3], GridSection(data)});
  sections.push_back({kSectionIds[4], FactsSection(data)});
  return sections;
}

std::vector<ReportSection> PendingReportSections(const std::string& note) {
  std::vector<ReportSection> sections;
  for (const char* id : kSectionIds) sections.push_back({id, ""});
  sections[0].html = "<p class=\"muted\" id=\"report-pending\">" + HtmlEscape(note) + "</p>\n";
  return sections;
}

std::string SectionsHtml(const std::vector<ReportSection>& sections) {
  std::string out;
  for (const ReportSection& section : sections) {
    out += fmt::format("<section id=\"{}\">\n{}</section>\n", section.id, section.html);
  }
  return out;
}

std::string RenderReport(const ReportData& data) {
  const v1::SweepSummary& sweep = data.jobs.sweep();
  std::string body = fmt::format("<header>\n<h1>Sweep {}</h1>\n", HtmlEscape(sweep.name()));
  if (!sweep.description().empty()) {
    body += fmt::format("<p class=\"muted\" id=\"description\">{}</p>\n",
                        HtmlEscape(sweep.description()));
  }
  body += "</header>\n" + SectionsHtml(RenderReportSections(data));
  return HtmlPage("ablate report: " + sweep.name(), "", body, "");
}

}  // namespace ablate
