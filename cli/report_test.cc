// The HTML report, rendered by a real browser: a sweep of the seed's grid
// with two seeds is written through the coordinator's managers, the report
// is generated from its database, and headless Chromium (scripts/setup.sh
// installs it) loads the file from disk, dumps its DOM and takes
// screenshots in the light and the dark colour scheme. The checks read the
// page's text and the drawn pixels, not the generated HTML.
#include "cli/report.h"

#include <gtest/gtest.h>
#include <png.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <regex>
#include <set>

#include "store/reader.h"
#include "store/store.h"
#include "tests/results_fixture.h"
#include "tests/support/process.h"

namespace ablate {
namespace {

using testing::RunCommand;
using testing::SweepWriter;
using testing::TempDir;
using testing::WriteReportSweep;

// An error with every character HTML treats specially.
const char* kNastyError = "CUDA error: <script>alert('boom')</script> & \"out of memory\"";

struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> rgba;
  const uint8_t* at(int x, int y) const { return &rgba[(static_cast<size_t>(y) * width + x) * 4]; }
};

Image ReadPng(const std::string& path) {
  Image image;
  png_image png{};
  png.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&png, path.c_str())) {
    ADD_FAILURE() << "cannot read " << path << ": " << png.message;
    return image;
  }
  png.format = PNG_FORMAT_RGBA;
  image.width = static_cast<int>(png.width);
  image.height = static_cast<int>(png.height);
  image.rgba.resize(PNG_IMAGE_SIZE(png));
  if (!png_image_finish_read(&png, nullptr, image.rgba.data(), 0, nullptr)) {
    ADD_FAILURE() << "cannot decode " << path << ": " << png.message;
  }
  return image;
}

// Pixels within `tolerance` (per channel) of the colour #rrggbb.
int64_t CountColour(const Image& image, uint32_t rgb, int tolerance = 12) {
  const int r = rgb >> 16, g = (rgb >> 8) & 0xff, b = rgb & 0xff;
  int64_t count = 0;
  for (size_t i = 0; i + 3 < image.rgba.size(); i += 4) {
    if (std::abs(image.rgba[i] - r) <= tolerance && std::abs(image.rgba[i + 1] - g) <= tolerance &&
        std::abs(image.rgba[i + 2] - b) <= tolerance) {
      ++count;
    }
  }
  return count;
}

size_t DistinctColours(const Image& image) {
  std::set<uint32_t> colours;
  for (size_t i = 0; i + 3 < image.rgba.size(); i += 4) {
    colours.insert(image.rgba[i] << 16 | image.rgba[i + 1] << 8 | image.rgba[i + 2]);
  }
  return colours.size();
}

// The browser on $PATH (Process runs a path, not a name).
std::string FindChromium() {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/bin";
  for (size_t start = 0; start <= dirs.size();) {
    const size_t colon = std::min(dirs.find(':', start), dirs.size());
    const std::string candidate = dirs.substr(start, colon - start) + "/chromium";
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
    start = colon + 1;
  }
  return "chromium";
}

class ReportTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    const std::string db_path = dir_->File("sweep.db");
    {
      SweepWriter writer(db_path);
      WriteReportSweep(writer, kNastyError);
    }
    SourceOptions from_file;
    from_file.db_path = db_path;
    auto source = Source::Open(from_file);
    ASSERT_TRUE(source.ok()) << source.status().ToString();
    v1::SweepRef sweep;
    sweep.set_name("seed-grid");
    auto data = CollectReport(**source, sweep);
    ASSERT_TRUE(data.ok()) << data.status().ToString();
    data_ = new ReportData(*std::move(data));
    html_ = new std::string(RenderReport(*data_));
    report_path_ = new std::string(dir_->File("report.html"));
    testing::WriteFile(*report_path_, *html_);
    // Kept for a person to look at: ABLATE_REPORT_COPY=/some/dir.
    if (const char* copy = std::getenv("ABLATE_REPORT_COPY")) {
      testing::WriteFile(std::string(copy) + "/report.html", *html_);
    }
  }

  static void TearDownTestSuite() {
    delete data_;
    delete html_;
    delete report_path_;
    delete dir_;
  }

  // Runs headless Chromium on the report with `flags`; its stdout.
  static std::string Chromium(std::vector<std::string> flags) {
    TempDir profile;
    std::vector<std::string> argv = {FindChromium(),
                                     "--headless",
                                     "--no-sandbox",
                                     "--disable-gpu",
                                     "--disable-quic",
                                     "--no-first-run",
                                     "--disable-background-networking",
                                     "--disable-component-update",
                                     "--disable-sync",
                                     "--hide-scrollbars",
                                     "--user-data-dir=" + profile.path(),
                                     "--window-size=1280,2000"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    argv.push_back("file://" + *report_path_);
    testing::RunResult run = RunCommand(argv, profile.path(), std::chrono::seconds(120));
    EXPECT_EQ(run.exit_code, 0) << "is chromium installed (scripts/setup.sh)? " << run.err;
    return run.out;
  }

  static TempDir* dir_;
  static ReportData* data_;  // what the report shows
  static std::string* html_;
  static std::string* report_path_;
};

TempDir* ReportTest::dir_ = nullptr;
ReportData* ReportTest::data_ = nullptr;
std::string* ReportTest::html_ = nullptr;
std::string* ReportTest::report_path_ = nullptr;

TEST_F(ReportTest, IsOneFileThatFetchesNothing) {
  for (const char* outside : {"http://", "https://", "<link", "src=", "@import"}) {
    EXPECT_EQ(html_->find(outside), std::string::npos) << outside;
  }
  // url() only ever names an element of the page (the charts' clip paths).
  EXPECT_FALSE(std::regex_search(*html_, std::regex("url\\([^#]")));
  EXPECT_NE(html_->find("prefers-color-scheme: dark"), std::string::npos);
  EXPECT_NE(html_->find("name=\"viewport\""), std::string::npos);
}

TEST_F(ReportTest, TextFromTheDatabaseIsEscaped) {
  EXPECT_EQ(html_->find("<script>alert"), std::string::npos);
  EXPECT_NE(html_->find("&lt;script&gt;alert(&#39;boom&#39;)&lt;/script&gt; &amp; &quot;out of "
                        "memory&quot;"),
            std::string::npos);
  EXPECT_NE(html_->find("the seed&#39;s grid &lt;small&gt; &amp; &quot;quoted&quot;"),
            std::string::npos);
}

TEST_F(ReportTest, BrowserShowsTheBestConfigurationFiguresGridAndFacts) {
  const std::string dom = Chromium({"--dump-dom"});
  ASSERT_FALSE(dom.empty());
  // The best configuration, its size (MODEL.md: GRU with layer norm at 2000
  // units and 256 symbols) and its test bpc.
  EXPECT_NE(dom.find("id=\"best-config\">GRU · layer norm · xavier</p>"), std::string::npos);
  EXPECT_NE(dom.find("id=\"best-parameters\">14,078,256</p>"), std::string::npos);
  EXPECT_TRUE(std::regex_search(dom, std::regex("id=\"best-test\">1\\.3\\d{3}</p>")));
  for (const char* title : {"Validation bpc by cell", "Validation bpc by layer norm",
                            "Validation bpc by initializer"}) {
    EXPECT_NE(dom.find(std::string("<h3>") + title + "</h3>"), std::string::npos) << title;
  }
  // The grid: 18 configurations in the sortable table.
  const size_t grid = dom.find("id=\"grid\"");
  ASSERT_NE(grid, std::string::npos);
  const std::string table = dom.substr(grid, dom.find("</table>", grid) - grid);
  size_t rows = 0;
  for (size_t at = table.find("<tr"); at != std::string::npos; at = table.find("<tr", at + 1)) {
    ++rows;
  }
  EXPECT_EQ(rows, 1u + 18u);  // the header and one row per configuration
  EXPECT_NE(table.find("<tr class=\"best\"><td data-sort=\"GRU\">GRU</td>"), std::string::npos);
  // The facts and the failure, escaped as text by the browser too.
  EXPECT_NE(dom.find("36 in all: 33 done, 1 failed, 0 cancelled, 1 running, 1 pending"),
            std::string::npos);
  // Every third done job ran on the GPU worker; the rest, the failed and the
  // running one on CPUs, which compute in fp32 whatever the config says.
  EXPECT_TRUE(std::regex_search(dom, std::regex("<dt>ran on</dt><dd>cpu, fp32: 24 jobs, "
                                                "\\d+\\.\\d\\d h<br>cuda:0, tf32: 11 "
                                                "jobs, \\d+\\.\\d\\d h</dd>")))
      << dom.substr(dom.find("id=\"facts\""), 1500);
  EXPECT_NE(dom.find("&lt;script&gt;alert('boom')&lt;/script&gt;"), std::string::npos);

  // Each chart drew one line and one band per group: 3 cells, 2, 3 inits.
  std::vector<size_t> lines_per_chart;
  for (size_t at = dom.find("<figure class=\"chart\""); at != std::string::npos;
       at = dom.find("<figure class=\"chart\"", at + 1)) {
    const std::string figure = dom.substr(at, dom.find("</figure>", at) - at);
    size_t lines = 0;
    const std::regex line_path("<path class=\"line\" d=\"([^\"]*)\"");
    for (std::sregex_iterator it(figure.begin(), figure.end(), line_path), end; it != end; ++it) {
      const std::string d = (*it)[1];
      // 20 validation points: one move and 19 segments.
      const auto segments = std::count(d.begin(), d.end(), 'L');
      EXPECT_EQ(segments, 19) << d;
      ++lines;
    }
    EXPECT_EQ(std::count(figure.begin(), figure.end(), 'Z') >= static_cast<long>(lines), true);
    lines_per_chart.push_back(lines);
  }
  EXPECT_EQ(lines_per_chart, (std::vector<size_t>{3, 2, 3}));
}

TEST_F(ReportTest, BrowserShowsWhatMattersWithEffectsOverTraining) {
  const std::string dom = Chromium({"--dump-dom"});
  ASSERT_FALSE(dom.empty());
  EXPECT_NE(dom.find("<h2>What matters</h2>"), std::string::npos);
  // 33 done jobs, one configuration with a single seed: unbalanced, so Type
  // II; two seeds elsewhere are the replicates.
  const size_t method = dom.find("id=\"effects-method\"");
  ASSERT_NE(method, std::string::npos);
  const std::string note = dom.substr(method, dom.find("</p>", method) - method);
  EXPECT_NE(note.find("Final validation bpc of 33 done jobs"), std::string::npos) << note;
  EXPECT_NE(note.find("Type II sums of squares"), std::string::npos) << note;
  EXPECT_NE(note.find("Error term: the replicates (2 seeds) and the interactions of more than 2 "
                      "factors"),
            std::string::npos)
      << note;
  // The terms ranked by share: the fixture's cells are 0.1 bpc apart, layer
  // norm 0.1 plus its faster fall (0.2 at the end of these short curves),
  // initializers at most 0.05.
  const size_t table = dom.find("<table id=\"effects\">");
  ASSERT_NE(table, std::string::npos);
  const std::string terms = dom.substr(table, dom.find("</table>", table) - table);
  std::vector<std::string> names;
  const std::regex row("<tr><td>([^<]*)</td><td class=\"num\">(\\d+)</td>");
  for (std::sregex_iterator it(terms.begin(), terms.end(), row), end; it != end; ++it) {
    names.push_back((*it)[1]);
  }
  ASSERT_EQ(names.size(), 7u) << terms;  // 3 main effects, 3 interactions, error
  EXPECT_EQ(names[0], "layer norm");
  EXPECT_EQ(names[1], "cell");
  EXPECT_EQ(names[2], "initializer");
  EXPECT_EQ(names[6], "error");
  // Every main-effect level with its interval, layer norm's negative.
  EXPECT_TRUE(std::regex_search(
      dom, std::regex("<tr><td>layer norm</td><td>yes</td><td class=\"num\">17</td><td "
                      "class=\"num\">\\d\\.\\d{4}</td><td class=\"num\">-0\\.\\d{4} \u00b1 "
                      "0\\.\\d{4}</td></tr>")))
      << dom.substr(dom.find("id=\"main-effects\""), 1500);
  // One figure per factor of its levels' effects against the step: a line
  // per level through 12 of the 20 validation steps.
  std::vector<size_t> lines_per_chart;
  for (size_t at = dom.find("<figure class=\"effect-chart\""); at != std::string::npos;
       at = dom.find("<figure class=\"effect-chart\"", at + 1)) {
    const std::string figure = dom.substr(at, dom.find("</figure>", at) - at);
    EXPECT_NE(figure.find("at 12 steps"), std::string::npos);
    EXPECT_NE(figure.find("class=\"axis zero\""), std::string::npos);
    size_t lines = 0;
    const std::regex line_path("<path class=\"line\" d=\"([^\"]*)\"");
    for (std::sregex_iterator it(figure.begin(), figure.end(), line_path), end; it != end; ++it) {
      const std::string d = (*it)[1];
      EXPECT_EQ(std::count(d.begin(), d.end(), 'L'), 11) << d;
      ++lines;
    }
    lines_per_chart.push_back(lines);
  }
  EXPECT_EQ(lines_per_chart, (std::vector<size_t>{2, 3, 3}));  // in the ranking's order
  EXPECT_NE(dom.find("<h3>Effect of layer norm over training</h3>"), std::string::npos);
}

TEST_F(ReportTest, LayerNormsEffectFadesOverTrainingInTheFixture) {
  // The fixture's curves fall faster with layer norm: its advantage is
  // large early (half of about 0.5 bpc at step 100) and shrinks towards the
  // final one (half of about 0.2 bpc). The figure's data says so.
  const ReportData* data = data_;
  ASSERT_NE(data, nullptr);
  ASSERT_EQ(data->effects_by_step.size(), static_cast<size_t>(kEffectSteps));
  auto layer_norm_gain = [](const Anova& anova) {
    for (const AnovaTerm& term : anova.terms) {
      if (term.name != "layer_norm") continue;
      for (const LevelEffect& level : term.levels) {
        if (level.level == "true") return -level.effect;
      }
    }
    return std::nan("");
  };
  const double early = layer_norm_gain(data->effects_by_step.front().second);
  const double late = layer_norm_gain(data->effects_by_step.back().second);
  EXPECT_EQ(data->effects_by_step.front().first, 100);
  EXPECT_EQ(data->effects_by_step.back().first, 2000);
  EXPECT_NEAR(early, 0.25, 0.05);
  EXPECT_NEAR(late, 0.1, 0.03);
  // The last step is the final one: the same values as the final analysis.
  EXPECT_NEAR(late, layer_norm_gain(data->effects->anova), 1e-12);
}

TEST_F(ReportTest, SortingTheGridByValidBpcPutsTheBestFirst) {
  // The page's own script sorts the table; the DOM after a click on the
  // "valid bpc" heading (simulated by a script appended to a copy).
  std::string clicked = *html_;
  const std::string click =
      "<script>document.querySelectorAll('#grid th button')[4].click();</script>\n</body>";
  clicked.replace(clicked.rfind("</body>"), 7, click);
  const std::string copy = dir_->File("clicked.html");
  testing::WriteFile(copy, clicked);
  std::string original = *report_path_;
  *report_path_ = copy;
  const std::string dom = Chromium({"--dump-dom"});
  *report_path_ = original;
  const size_t first_row = dom.find("<tr", dom.find("<tbody>", dom.find("id=\"grid\"")));
  ASSERT_NE(first_row, std::string::npos);
  const std::string best_row = "<tr class=\"best\"><td data-sort=\"GRU\">GRU</td>";
  EXPECT_EQ(dom.compare(first_row, best_row.size(), best_row), 0) << dom.substr(first_row, 200);
  EXPECT_NE(dom.find("aria-sort=\"ascending\""), std::string::npos);
}

TEST_F(ReportTest, ScreenshotsHaveTheCurvesInBothColourSchemes) {
  struct Scheme {
    const char* name;
    std::vector<std::string> flags;
    uint32_t background;
    std::vector<uint32_t> series;  // the first three line colours
  };
  const std::vector<Scheme> schemes = {
      {"light", {}, 0xffffff, {0x0072b2, 0xd55e00, 0x009e73}},
      {"dark",
       {"--force-dark-mode", "--blink-settings=preferredColorScheme=0"},
       0x0d1117,
       {0x56b4e9, 0xff8c4b, 0x3fd6a4}},
  };
  for (const Scheme& scheme : schemes) {
    const std::string png = dir_->File(std::string(scheme.name) + ".png");
    std::vector<std::string> flags = scheme.flags;
    flags.push_back("--screenshot=" + png);
    Chromium(flags);
    if (const char* copy = std::getenv("ABLATE_REPORT_COPY")) {
      testing::WriteFile(std::string(copy) + "/" + scheme.name + ".png", testing::ReadFile(png));
    }
    const Image image = ReadPng(png);
    ASSERT_EQ(image.width, 1280) << scheme.name;
    ASSERT_EQ(image.height, 2000) << scheme.name;
    const uint8_t* corner = image.at(2, 2);
    EXPECT_EQ(corner[0] << 16 | corner[1] << 8 | corner[2], scheme.background) << scheme.name;
    EXPECT_GT(DistinctColours(image), 500u) << scheme.name;
    for (uint32_t colour : scheme.series) {
      // Its lines in two or three figures: beyond what the legend swatches
      // alone (3 x 18 x 2 pixels) could account for.
      EXPECT_GT(CountColour(image, colour), 250) << scheme.name << " #" << std::hex << colour;
    }
  }
}

// A program sweep's report is about its own metric: the grid's column is
// the metric, the built-in trainer's test and train bpc and its parameter
// count stay out, and with goal maximize the highest row is the best.
TEST(ProgramReport, TheSweepsOwnMetricHeadsTheGridAndMaximizeMarksTheHighestBest) {
  ReportData data;
  data.jobs.set_metric("eval/acc");
  data.grid_valid.set_metric("eval/acc");
  data.grid_valid.set_maximize(true);
  data.grid_valid.add_columns("lr");
  data.grid_valid.add_column_keys("lr");
  for (const auto& [lr, acc] : {std::pair{"0.01", 0.625}, {"0.003", 0.875}, {"0.001", 0.5}}) {
    v1::ResultRow* row = data.grid_valid.add_rows();
    row->add_values_json(lr);
    row->set_n(1);
    row->set_mean(acc);
  }
  const std::string html = RenderReport(data);
  EXPECT_NE(html.find("<button type=\"button\">eval/acc</button>"), std::string::npos);
  EXPECT_NE(html.find("Final eval/acc of done jobs"), std::string::npos);
  EXPECT_EQ(html.find("test bpc"), std::string::npos);
  EXPECT_EQ(html.find("train bpc"), std::string::npos);
  EXPECT_EQ(html.find("best-parameters"), std::string::npos);
  const size_t best = html.find("<tr class=\"best\">");
  ASSERT_NE(best, std::string::npos);
  EXPECT_EQ(html.find("0.003", best),
            html.find("<td", best) + std::string("<td data-sort=\"").size())
      << html.substr(best, 200);
  EXPECT_NE(html.find("highest final eval/acc"), std::string::npos);
}

}  // namespace
}  // namespace ablate
