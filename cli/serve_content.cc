#include "cli/serve_content.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <functional>
#include <iterator>
#include <map>
#include <set>

#include "cli/results_format.h"
#include "cli/table.h"
#include "store/reader.h"

namespace ablate {

namespace {

using nlohmann::ordered_json;

// What the live pages add to the report's look: progress bars, links, the
// navigation line and the sign-in form.
const char* kServeStyle = R"css(
a { color: var(--c0); }
nav { font-size: .9em; margin-bottom: 8px; display: flex; gap: 16px; align-items: baseline; }
nav .state { margin-left: auto; color: var(--muted); font-size: .85em; }
.bar { display: flex; height: 10px; min-width: 140px; border-radius: 5px; overflow: hidden;
  background: var(--rule); }
.bar span { display: block; height: 100%; }
.bar .done { background: var(--c2); } .bar .failed { background: var(--bad); }
.bar .cancelled { background: var(--muted); } .bar .running { background: var(--c0); }
.progress { display: grid; grid-template-columns: minmax(140px, 420px) 1fr; gap: 12px; align-items: center; }
.figures.single { max-width: 720px; }
pre.config { background: var(--card); border: 1px solid var(--rule); border-radius: 8px;
  padding: 10px; overflow-x: auto; font-size: .85em; }
form.login { display: flex; gap: 8px; margin-top: 12px; }
form.login input { font: inherit; padding: 4px 8px; }
)css";

// Polls the body's data-live-url and swaps the sections whose hash changed,
// keeping a sorted table sorted; a 204 means nothing changed.
const char* kLiveScript = R"js(
(function () {
  var body = document.body;
  var url = body.getAttribute("data-live-url");
  if (!url) return;
  var version = body.getAttribute("data-version");
  var pollMs = parseInt(body.getAttribute("data-poll-ms"), 10) || 2000;
  var updates = 0;
  function state(text) {
    body.setAttribute("data-live-state", text);
    var shown = document.getElementById("live-state");
    if (shown) shown.textContent = text;
  }
  function apply(answer) {
    answer.sections.forEach(function (section) {
      var element = document.getElementById(section.id);
      if (!element || element.getAttribute("data-hash") === section.hash) return;
      var sorted = element.querySelector("table.sortable th[aria-sort]");
      var column = sorted ? sorted.cellIndex : -1;
      var direction = sorted && sorted.getAttribute("aria-sort") === "descending" ? -1 : 1;
      element.innerHTML = section.html;
      element.setAttribute("data-hash", section.hash);
      var table = element.querySelector("table.sortable");
      if (table && column >= 0) sortTable(table, column, direction);
    });
    version = answer.version;
    pollMs = answer.poll_ms || pollMs;
    updates += 1;
    body.setAttribute("data-version", version);
    body.setAttribute("data-live-updates", String(updates));
  }
  function poll() {
    fetch(url + "?since=" + encodeURIComponent(version), {cache: "no-store", credentials: "same-origin"})
      .then(function (response) {
        if (response.status === 204) return null;
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (answer) {
        if (answer) apply(answer);
        state("live");
      })
      .catch(function (error) { state("offline: " + error.message); })
      .then(function () { setTimeout(poll, pollMs); });
  }
  state("live");
  setTimeout(poll, pollMs);
})();
)js";

std::string Hash(const std::string& text) {
  return fmt::format("{:016x}", std::hash<std::string>{}(text));
}

// A coloured bar of the jobs' states.
std::string StateBar(const v1::JobCounts& c) {
  if (c.total() <= 0) return "<div class=\"bar\"></div>";
  std::string out = "<div class=\"bar\" role=\"img\" aria-label=\"progress\">";
  const std::pair<const char*, int64_t> parts[] = {{"done", c.done()},
                                                   {"failed", c.failed()},
                                                   {"cancelled", c.cancelled()},
                                                   {"running", c.running()}};
  for (const auto& [name, n] : parts) {
    if (n <= 0) continue;
    out += fmt::format("<span class=\"{}\" style=\"width:{:.3f}%\"></span>", name,
                       100.0 * double(n) / double(c.total()));
  }
  return out + "</div>";
}

std::string CountsText(const v1::JobCounts& c) {
  return fmt::format("{}/{} done, {} running, {} pending, {} failed, {} cancelled", c.done(),
                     c.total(), c.running(), c.pending(), c.failed(), c.cancelled());
}

std::string Seconds(double seconds) { return seconds < 0 ? "–" : FormatDuration(seconds); }

ordered_json NullableSeconds(double seconds) {
  return seconds < 0 ? ordered_json(nullptr) : ordered_json(seconds);
}

// "2026-12-07 14:03:27 UTC"; "–" for 0.
std::string Time(int64_t ms) {
  if (ms <= 0) return "–";
  const std::time_t seconds = static_cast<std::time_t>(ms / 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S UTC", &utc);
  return text;
}

std::string JobLink(int64_t id) { return fmt::format("<a href=\"/jobs/{0}\">{0}</a>", id); }

std::string BpcText(double bpc) { return std::isfinite(bpc) && bpc > 0 ? Fixed(bpc) : "–"; }

ordered_json ParsedOr(const std::string& text) {
  ordered_json parsed = ordered_json::parse(text, nullptr, /*allow_exceptions=*/false);
  return parsed.is_discarded() ? ordered_json(text) : parsed;
}

}  // namespace

ReportSection SweepsSection(const v1::ListSweepsResponse& sweeps) {
  std::string out = "<h2>Sweeps</h2>\n";
  if (sweeps.sweeps_size() == 0)
    return {"section-sweeps", out + "<p class=\"muted\">No sweeps yet.</p>\n"};
  out +=
      "<div class=\"scroll\"><table class=\"sortable\" id=\"sweeps\">\n<thead><tr>"
      "<th class=\"num\"><button type=\"button\">id</button></th>"
      "<th><button type=\"button\">name</button></th><th><button "
      "type=\"button\">state</button></th>"
      "<th>progress</th><th class=\"num\"><button type=\"button\">jobs</button></th>"
      "<th><button "
      "type=\"button\">launched</button></th><th>description</th></tr></thead>\n<tbody>\n";
  for (auto it = sweeps.sweeps().rbegin(); it != sweeps.sweeps().rend(); ++it) {
    const v1::SweepSummary& s = *it;
    out += fmt::format(
        "<tr><td class=\"num\" data-sort=\"{0}\">{0}</td><td data-sort=\"{1}\"><a "
        "href=\"/sweeps/{0}\">{1}</a></td><td data-sort=\"{2}\">{2}</td><td>{3}<span "
        "class=\"spread\">{4}</span></td><td class=\"num\" data-sort=\"{5}\">{5}</td><td "
        "data-sort=\"{6}\">{7}</td><td class=\"muted\">{8}</td></tr>\n",
        s.id(), HtmlEscape(s.name()), HtmlEscape(s.state()), StateBar(s.counts()),
        HtmlEscape(CountsText(s.counts())), s.counts().total(), s.created_ms(),
        FormatDate(s.created_ms()), HtmlEscape(s.description()));
  }
  return {"section-sweeps", out + "</tbody></table></div>\n"};
}

ReportSection ProgressSection(const v1::SweepStatus& sweep, const StatusView& view,
                              const v1::ListWorkersResponse& workers) {
  const v1::JobCounts& c = sweep.sweep().counts();
  std::string out = fmt::format(
      "<h2>Progress</h2>\n<div class=\"progress\">{}<p id=\"counts\">{} &#183; ETA {}</p></div>\n",
      StateBar(c), HtmlEscape(CountsText(c)), Seconds(view.SweepEta(sweep)));
  out += "<h3>Running jobs</h3>\n";
  if (sweep.running_size() == 0) {
    out += "<p class=\"muted\" id=\"running\">No job is running.</p>\n";
  } else {
    out +=
        "<div class=\"scroll\"><table id=\"running\">\n<thead><tr><th>job</th><th>configuration</"
        "th><th>attempt</th><th>worker</th><th>progress</th><th class=\"num\">step</th><th "
        "class=\"num\">rate</th><th class=\"num\">train bpc</th><th "
        "class=\"num\">ETA</th></tr></thead>\n<tbody>\n";
    for (const v1::RunningJob& job : sweep.running()) {
      const double fraction =
          job.steps_total() > 0 ? std::min(1.0, double(job.step()) / double(job.steps_total())) : 0;
      out += fmt::format(
          "<tr data-job=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><div "
          "class=\"bar\"><span class=\"running\" style=\"width:{:.1f}%\"></span></div></td><td "
          "class=\"num\">{} / {}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td "
          "class=\"num\">{}</td></tr>\n",
          job.job_id(), JobLink(job.job_id()), HtmlEscape(FactorsText(job.factors_json())),
          job.attempt(), HtmlEscape(job.worker_name()), 100 * fraction, job.step(),
          job.steps_total() > 0 ? std::to_string(job.steps_total()) : "?",
          job.bytes_per_s() > 0 ? FormatRate(job.bytes_per_s()) : "–", BpcText(job.train_bpc()),
          Seconds(view.JobEta(job)));
    }
    out += "</tbody></table></div>\n";
  }

  std::set<int64_t> ours;
  for (const v1::RunningJob& job : sweep.running()) ours.insert(job.job_id());
  out += "<h3>Workers</h3>\n";
  if (workers.workers_size() == 0) {
    return {"section-progress",
            out + "<p class=\"muted\" id=\"workers\">No worker has registered.</p>\n"};
  }
  out +=
      "<div class=\"scroll\"><table id=\"workers\">\n<thead><tr><th>worker</th><th>host</"
      "th><th>device</th><th class=\"num\">threads</th><th>last seen</th><th>running "
      "jobs</th></tr></thead>\n<tbody>\n";
  for (const v1::WorkerInfo& w : workers.workers()) {
    std::string jobs;
    for (int64_t id : w.running_job_ids()) {
      jobs += (jobs.empty() ? "" : ", ") + (ours.count(id) ? JobLink(id) : std::to_string(id));
    }
    out += fmt::format(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td></"
        "tr>\n",
        HtmlEscape(w.name()), HtmlEscape(w.host()), HtmlEscape(w.device()), w.threads(),
        Time(w.last_seen_ms()), jobs.empty() ? "–" : jobs);
  }
  return {"section-progress", out + "</tbody></table></div>\n"};
}

std::string SectionsVersion(const std::vector<ReportSection>& sections) {
  std::string all;
  for (const ReportSection& section : sections) all += section.id + ":" + Hash(section.html) + ";";
  return Hash(all);
}

std::string LivePage(const std::string& title, const std::string& subtitle,
                     const std::vector<ReportSection>& sections, const std::string& live_url,
                     int poll_ms) {
  std::string body = fmt::format(
      "<nav><a href=\"/\">all sweeps</a><span class=\"state\" id=\"live-state\">loading</span></"
      "nav>\n<header>\n<h1>{}</h1>\n",
      HtmlEscape(title));
  if (!subtitle.empty()) {
    body += fmt::format("<p class=\"muted\" id=\"description\">{}</p>\n", HtmlEscape(subtitle));
  }
  body += "</header>\n";
  for (const ReportSection& section : sections) {
    body += fmt::format("<section id=\"{}\" data-hash=\"{}\">\n{}</section>\n", section.id,
                        Hash(section.html), section.html);
  }
  std::string page = HtmlPage(title + " · ablate", kServeStyle, body, kLiveScript);
  // The live attributes go on <body>, which HtmlPage opens bare.
  const std::string attributes = fmt::format(
      "<body data-live-url=\"{}\" data-version=\"{}\" data-poll-ms=\"{}\" "
      "data-live-updates=\"0\">",
      HtmlEscape(live_url), SectionsVersion(sections), poll_ms);
  page.replace(page.find("<body>"), 6, attributes);
  return page;
}

std::string LiveJson(const std::vector<ReportSection>& sections, int poll_ms) {
  ordered_json out;
  out["version"] = SectionsVersion(sections);
  out["poll_ms"] = poll_ms;
  out["sections"] = ordered_json::array();
  for (const ReportSection& section : sections) {
    out["sections"].push_back(
        {{"id", section.id}, {"hash", Hash(section.html)}, {"html", section.html}});
  }
  return out.dump();
}

std::vector<ReportSection> JobSections(const v1::GetJobResponse& job) {
  std::vector<ReportSection> sections;
  std::string facts = "<h2>The job</h2>\n<dl id=\"job-facts\">\n";
  facts += fmt::format("<dt>sweep</dt><dd><a href=\"/sweeps/{}\">{}</a> (id {})</dd>\n",
                       job.sweep().id(), HtmlEscape(job.sweep().name()), job.sweep().id());
  facts += fmt::format("<dt>state</dt><dd id=\"job-state\">{}</dd>\n", HtmlEscape(job.state()));
  facts += fmt::format("<dt>configuration</dt><dd>{}</dd>\n",
                       HtmlEscape(FactorsText(job.factors_json())));
  facts += fmt::format("<dt>attempts</dt><dd>{}</dd>\n", job.attempts());
  facts += fmt::format("<dt>step</dt><dd id=\"job-step\">{}</dd>\n", job.step());
  if (!job.worker_name().empty()) {
    facts += fmt::format("<dt>worker</dt><dd>{} ({})</dd>\n", HtmlEscape(job.worker_name()),
                         HtmlEscape(job.device()));
  }
  if (job.has_final()) {
    const v1::FinalMetrics& f = job.final();
    facts += fmt::format(
        "<dt>final bpc</dt><dd id=\"job-final\">valid {}, test {}, train {}</dd>\n<dt>trained</"
        "dt><dd>{} steps in {}</dd>\n",
        f.has_valid_bpc() ? Fixed(f.valid_bpc()) : "–",
        f.has_test_bpc() ? Fixed(f.test_bpc()) : "–",
        f.has_train_bpc() ? Fixed(f.train_bpc()) : "–", f.steps(), FormatDuration(f.wall_time()));
  }
  facts += fmt::format("<dt>created</dt><dd>{}</dd>\n<dt>ran</dt><dd>{} to {}</dd>\n",
                       Time(job.created_ms()), Time(job.started_ms()), Time(job.finished_ms()));
  if (!job.last_error().empty()) {
    facts += fmt::format("<dt>last error</dt><dd class=\"error\">{}</dd>\n",
                         HtmlEscape(job.last_error()));
  }
  sections.push_back({"section-job", facts + "</dl>\n"});

  // Both splits on the one grid of their steps. Between two of its points a
  // split's line is drawn straight through the other split's steps (n 1
  // there too), so that sparse validation points still make a line.
  std::map<v1::Split, std::map<int64_t, double>> by_split;
  std::set<int64_t> steps;
  for (const v1::CurvePoint& p : job.points()) {
    if (p.split() == v1::SPLIT_TEST) continue;
    by_split[p.split()][p.step()] = p.bpc();
    steps.insert(p.step());
  }
  v1::CurvesResponse curves;
  for (int64_t step : steps) curves.add_steps(step);
  for (v1::Split split : {v1::SPLIT_TRAIN, v1::SPLIT_VALID}) {
    if (!by_split.count(split)) continue;
    v1::CurveGroup* group = curves.add_groups();
    group->add_values_json(nlohmann::json(SplitName(split)).dump());
    group->set_jobs(1);
    const std::map<int64_t, double>& points = by_split[split];
    for (int64_t step : steps) {
      auto after = points.lower_bound(step);
      double bpc = NAN;
      if (after != points.end() && after->first == step) {
        bpc = after->second;
      } else if (after != points.end() && after != points.begin()) {
        auto before = std::prev(after);
        const double t = double(step - before->first) / double(after->first - before->first);
        bpc = before->second + t * (after->second - before->second);
      }
      group->add_n(std::isfinite(bpc) ? 1 : 0);
      group->add_mean(bpc);
      group->add_stddev(NAN);
      group->add_min(NAN);
      group->add_max(NAN);
    }
  }
  std::string figure = "<h2>Learning curves</h2>\n<div class=\"figures single\">\n";
  figure += CurvesFigure(curves, "", fmt::format("Job {}: bpc by step", job.job_id()), "bpc", 0);
  figure += "</div>\n";
  for (const v1::CurvePoint& p : job.points()) {
    if (p.split() == v1::SPLIT_TEST) {
      figure += fmt::format("<p class=\"note\" id=\"job-test\">test bpc {} at step {}</p>\n",
                            Fixed(p.bpc()), p.step());
    }
  }
  figure += fmt::format("<p class=\"note\">{} stored points</p>\n", job.points_size());
  sections.push_back({"section-job-curves", figure});

  const ordered_json config = ParsedOr(job.config_json());
  sections.push_back(
      {"section-job-config",
       fmt::format("<h2>Config</h2>\n<pre class=\"config\" id=\"job-config\">{}</pre>\n",
                   HtmlEscape(config.is_string() ? job.config_json() : config.dump(2)))});

  std::string events =
      "<h2>Attempts and events</h2>\n<p class=\"note\">Every state transition the coordinator "
      "recorded. Workers write their logs to their own standard error; the store keeps none, so "
      "there are no logs to show here.</p>\n";
  if (job.events_size() == 0) {
    events += "<p class=\"muted\" id=\"job-events\">No events recorded.</p>\n";
  } else {
    events +=
        "<div class=\"scroll\"><table id=\"job-events\">\n<thead><tr><th>time</th><th>event</"
        "th><th class=\"num\">worker</th><th>detail</th></tr></thead>\n<tbody>\n";
    for (const v1::JobEvent& e : job.events()) {
      events += fmt::format(
          "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"error\">{}</td></tr>\n",
          Time(e.time_ms()), HtmlEscape(e.kind()),
          e.worker_id() > 0 ? std::to_string(e.worker_id()) : "–", HtmlEscape(e.detail()));
    }
    events += "</tbody></table></div>\n";
  }
  sections.push_back({"section-job-events", events});
  return sections;
}

ordered_json SweepStatusJson(const v1::SweepStatus& sweep, const StatusView& view) {
  ordered_json out = SweepCountsJson(sweep.sweep());
  out["id"] = sweep.sweep().id();
  out["eta_s"] = NullableSeconds(view.SweepEta(sweep));
  out["running"] = ordered_json::array();
  for (const v1::RunningJob& job : sweep.running()) {
    ordered_json j;
    j["job_id"] = job.job_id();
    j["factors"] = ParsedOr(job.factors_json());
    j["attempt"] = job.attempt();
    j["worker"] = job.worker_name();
    j["step"] = job.step();
    j["steps_total"] = job.steps_total();
    j["bytes_per_s"] = job.bytes_per_s();
    j["train_bpc"] = job.train_bpc() > 0 ? Number(job.train_bpc()) : ordered_json(nullptr);
    j["started_ms"] = job.started_ms();
    j["eta_s"] = NullableSeconds(view.JobEta(job));
    out["running"].push_back(std::move(j));
  }
  return out;
}

ordered_json JobJson(const v1::GetJobResponse& job) {
  ordered_json out;
  out["job_id"] = job.job_id();
  out["sweep"] = {{"id", job.sweep().id()}, {"name", job.sweep().name()}};
  out["order"] = job.order();
  out["state"] = job.state();
  out["factors"] = ParsedOr(job.factors_json());
  out["config"] = ParsedOr(job.config_json());
  out["attempts"] = job.attempts();
  out["worker"] = job.worker_name();
  out["device"] = job.device();
  out["last_error"] = job.last_error();
  out["created_ms"] = job.created_ms();
  out["started_ms"] = job.started_ms();
  out["finished_ms"] = job.finished_ms();
  out["step"] = job.step();
  if (job.has_final()) {
    const v1::FinalMetrics& f = job.final();
    out["final"] = {{"train_bpc", f.has_train_bpc() ? Number(f.train_bpc()) : nullptr},
                    {"valid_bpc", f.has_valid_bpc() ? Number(f.valid_bpc()) : nullptr},
                    {"test_bpc", f.has_test_bpc() ? Number(f.test_bpc()) : nullptr},
                    {"steps", f.steps()},
                    {"wall_time", f.wall_time()}};
  } else {
    out["final"] = nullptr;
  }
  ordered_json curves = ordered_json::object();
  for (const v1::CurvePoint& p : job.points()) {
    // The built-in trainer's curves by split with their bpc; a program's by
    // metric name with their value.
    const bool named = !p.metric().empty();
    ordered_json& split = curves[named ? p.metric() : std::string(SplitName(p.split()))];
    if (split.is_null()) {
      for (const char* key : {"step", named ? "value" : "bpc", "bytes_seen", "wall_time"}) {
        split[key] = ordered_json::array();
      }
    }
    split["step"].push_back(p.step());
    split[named ? "value" : "bpc"].push_back(Number(named ? p.value() : p.bpc()));
    split["bytes_seen"].push_back(p.bytes_seen());
    split["wall_time"].push_back(p.wall_time());
  }
  out["curves"] = std::move(curves);
  out["events"] = ordered_json::array();
  for (const v1::JobEvent& e : job.events()) {
    out["events"].push_back({{"time_ms", e.time_ms()},
                             {"kind", e.kind()},
                             {"detail", e.detail()},
                             {"worker_id", e.worker_id()}});
  }
  return out;
}

std::string MessagePage(const std::string& title, const std::string& message) {
  return HtmlPage(title + " · ablate", kServeStyle,
                  fmt::format("<nav><a href=\"/\">all sweeps</a></nav>\n<h1>{}</h1>\n<p "
                              "id=\"message\">{}</p>\n",
                              HtmlEscape(title), HtmlEscape(message)),
                  "");
}

std::string LoginPage(const std::string& next, const std::string& message) {
  std::string body = "<h1>Sign in</h1>\n";
  if (!message.empty()) {
    body += fmt::format("<p class=\"error\" id=\"message\">{}</p>\n", HtmlEscape(message));
  }
  body += fmt::format(
      "<p>This page needs the coordinator&#39;s token (the content of its --token-file).</p>\n"
      "<form class=\"login\" method=\"post\" action=\"/login\">\n"
      "<input type=\"hidden\" name=\"next\" value=\"{}\">\n"
      "<input type=\"password\" name=\"token\" autocomplete=\"current-password\" "
      "placeholder=\"token\" aria-label=\"token\" autofocus required>\n"
      "<button type=\"submit\">Sign in</button>\n</form>\n",
      HtmlEscape(next));
  return HtmlPage("Sign in · ablate", kServeStyle, body, "");
}

}  // namespace ablate
