#include "cli/serve.h"

#include <fmt/format.h>
#include <httplib.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <thread>

#include "cli/commands.h"
#include "cli/effects.h"
#include "cli/report.h"
#include "cli/results_format.h"
#include "cli/serve_content.h"
#include "cli/source.h"
#include "cli/status_view.h"
#include "common/mutex.h"
#include "coordinator/server.h"

namespace ablate {

namespace {

using Clock = std::chrono::steady_clock;

// A sweep's report is collected again when its job counts change, and at
// least this often (a retried job can leave the counts as they were).
constexpr auto kReportMaxAge = std::chrono::seconds(30);
// How long a page waits for its sweep's first report before it shows the
// progress alone and lets the live updates bring the report.
constexpr auto kFirstReportWait = std::chrono::milliseconds(800);
// The cookie the sign-in form sets.
constexpr char kSessionCookie[] = "ablate_session";

struct ServeOptions {
  std::string sweep;
  std::string listen = "127.0.0.1:8080";
  std::string https_cert, https_key;
  double poll_seconds = 2;
  SourceOptions source;
};

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int HttpStatus(const Status& status) {
  switch (status.code()) {
    case Status::kInvalidArgument:
      return 400;
    case Status::kNotFound:
      return 404;
    case Status::kFailedPrecondition:
      return 409;
    case Status::kUnavailable:
    case Status::kDeadlineExceeded:
      return 503;
    default:
      return 500;
  }
}

bool SameSecret(const std::string& a, const std::string& b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string CookieValue(const httplib::Request& request, const std::string& name) {
  const std::string header = request.get_header_value("Cookie");
  for (size_t start = 0; start < header.size();) {
    size_t end = header.find(';', start);
    if (end == std::string::npos) end = header.size();
    std::string pair = header.substr(start, end - start);
    pair.erase(0, pair.find_first_not_of(' '));
    if (pair.compare(0, name.size() + 1, name + "=") == 0) return pair.substr(name.size() + 1);
    start = end + 1;
  }
  return "";
}

// A path on this server to go on to after signing in; anything else goes to /.
std::string LocalPath(const std::string& next) {
  const bool local = !next.empty() && next[0] == '/' && next.rfind("//", 0) != 0 &&
                     next.find_first_of("\\\r\n") == std::string::npos;
  return local ? next : "/";
}

bool IsApi(const httplib::Request& request) { return request.path.rfind("/api/", 0) == 0; }

bool FlagSet(const httplib::Request& request, const char* name) {
  const std::string value = request.get_param_value(name);
  return value == "1" || value == "true";
}

class SweepServer {
 public:
  // `source_options` opens the collector's own source; `source` serves the
  // requests.
  SweepServer(std::unique_ptr<Source> source, SourceOptions source_options, std::string token,
              bool https, int poll_ms)
      : source_(std::move(source)),
        source_options_(std::move(source_options)),
        token_(std::move(token)),
        https_(https),
        poll_ms_(poll_ms) {
    unsigned char bytes[32];
    if (RAND_bytes(bytes, sizeof bytes) != 1) {
      std::fprintf(stderr, "ablate serve: no random bytes for the session cookie\n");
      std::abort();
    }
    for (unsigned char b : bytes) session_ += fmt::format("{:02x}", b);
    collector_ = std::thread([this] { CollectReports(); });
  }

  ~SweepServer() EXCLUDES(mu_) {
    {
      MutexLock lock(&mu_);
      stopping_ = true;
    }
    wake_.SignalAll();
    collector_.join();
  }
  SweepServer(const SweepServer&) = delete;
  SweepServer& operator=(const SweepServer&) = delete;

  void Register(httplib::Server& server, const std::string& sweep) {
    server.set_default_headers({
        {"Cache-Control", "no-store"},
        {"X-Content-Type-Options", "nosniff"},
        {"Referrer-Policy", "no-referrer"},
        // Nothing but this server: inline style and script, fetches to itself.
        {"Content-Security-Policy",
         "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
         "connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'"},
    });
    server.set_pre_routing_handler(
        [this](const httplib::Request& request, httplib::Response& response) {
          return Authorize(request, response) ? httplib::Server::HandlerResponse::Unhandled
                                              : httplib::Server::HandlerResponse::Handled;
        });
    server.Get("/login", [](const httplib::Request& request, httplib::Response& response) {
      response.set_content(LoginPage(LocalPath(request.get_param_value("next")), ""),
                           "text/html; charset=utf-8");
    });
    server.Post("/login", [this](const httplib::Request& request, httplib::Response& response) {
      Login(request, response);
    });
    server.Get("/", [this, sweep](const httplib::Request&, httplib::Response& response) {
      if (!sweep.empty()) return response.set_redirect("/sweeps/" + sweep);
      Page(response, [&]() REQUIRES(mu_) -> StatusOr<std::string> {
        ABLATE_ASSIGN_OR_RETURN(std::vector<ReportSection> sections, SweepsSections());
        return LivePage("Sweeps", "reading " + source_->Describe(), sections, "/live", poll_ms_);
      });
    });
    server.Get("/live", [this](const httplib::Request& request, httplib::Response& response) {
      Live(request, response, [&]() REQUIRES(mu_) { return SweepsSections(); });
    });
    server.Get(R"(/sweeps/([^/]+))",
               [this](const httplib::Request& request, httplib::Response& response) {
                 Page(response, [&]() REQUIRES(mu_) -> StatusOr<std::string> {
                   ABLATE_ASSIGN_OR_RETURN(int64_t id, source_->ResolveSweep(request.matches[1]));
                   ABLATE_ASSIGN_OR_RETURN(std::vector<ReportSection> sections, SweepSections(id));
                   return LivePage("Sweep " + names_[id], descriptions_[id], sections,
                                   fmt::format("/sweeps/{}/live", id), PollMs(id));
                 });
               });
    server.Get(R"(/sweeps/(\d+)/live)",
               [this](const httplib::Request& request, httplib::Response& response) {
                 const int64_t id = std::stoll(request.matches[1]);
                 Live(
                     request, response, [&]() REQUIRES(mu_) { return SweepSections(id); },
                     [&]() REQUIRES(mu_) { return PollMs(id); });
               });
    server.Get(
        R"(/jobs/(\d+))", [this](const httplib::Request& request, httplib::Response& response) {
          Page(response, [&]() REQUIRES(mu_) -> StatusOr<std::string> {
            ABLATE_ASSIGN_OR_RETURN(v1::GetJobResponse job, Job(request.matches[1]));
            return LivePage(fmt::format("Job {}", job.job_id()), FactorsText(job.factors_json()),
                            JobSections(job), fmt::format("/jobs/{}/live", job.job_id()), poll_ms_);
          });
        });
    server.Get(R"(/jobs/(\d+)/live)", [this](const httplib::Request& request,
                                             httplib::Response& response) {
      Live(request, response, [&]() REQUIRES(mu_) -> StatusOr<std::vector<ReportSection>> {
        ABLATE_ASSIGN_OR_RETURN(v1::GetJobResponse job, Job(request.matches[1]));
        return JobSections(job);
      });
    });
    RegisterApi(server);
  }

 private:
  void RegisterApi(httplib::Server& server) {
    server.Get("/api/sweeps", [this](const httplib::Request&, httplib::Response& response) {
      Json(response, [&]() REQUIRES(mu_) -> StatusOr<std::string> {
        v1::ListSweepsResponse sweeps;
        ABLATE_RETURN_IF_ERROR(source_->ListSweeps(&sweeps));
        return SweepListJson(sweeps).dump() + "\n";
      });
    });
    server.Get("/api/workers", [this](const httplib::Request&, httplib::Response& response) {
      Json(response, [&]() REQUIRES(mu_) -> StatusOr<std::string> {
        v1::ListWorkersResponse workers;
        ABLATE_RETURN_IF_ERROR(source_->ListWorkers(&workers));
        return WorkersJson(workers).dump() + "\n";
      });
    });
    server.Get(R"(/api/sweeps/([^/]+))",
               [this](const httplib::Request& request, httplib::Response& response) {
                 Json(response, [&]() REQUIRES(mu_) -> StatusOr<std::string> {
                   ABLATE_ASSIGN_OR_RETURN(int64_t id, source_->ResolveSweep(request.matches[1]));
                   ABLATE_ASSIGN_OR_RETURN(v1::SweepStatus sweep, StatusOf(id));
                   return SweepStatusJson(sweep, view_).dump() + "\n";
                 });
               });
    server.Get(R"(/api/sweeps/([^/]+)/results)",
               [this](const httplib::Request& request, httplib::Response& response) {
                 Json(response, [&]() REQUIRES(mu_) -> StatusOr<std::string> {
                   v1::ResultsRequest query;
                   ABLATE_RETURN_IF_ERROR(ParseValueFlags(Param(request, "metric", ""),
                                                          Param(request, "at", "final"), &query));
                   ABLATE_ASSIGN_OR_RETURN(std::vector<std::string> group_by,
                                           ParseGroupBy(Param(request, "group_by", "none")));
                   for (const std::string& name : group_by) query.add_group_by(name);
                   query.set_include_unfinished(FlagSet(request, "include_unfinished"));
                   ABLATE_ASSIGN_OR_RETURN(int64_t id, source_->ResolveSweep(request.matches[1]));
                   query.mutable_sweep()->set_id(id);
                   v1::ResultsResponse results;
                   ABLATE_RETURN_IF_ERROR(source_->Results(query, &results));
                   query.set_metric(results.metric());
                   return ResultsJson(query, results);
                 });
               });
    server.Get(R"(/api/sweeps/([^/]+)/curves)",
               [this](const httplib::Request& request, httplib::Response& response) {
                 Json(response, [&]() REQUIRES(mu_) -> StatusOr<std::string> {
                   v1::CurvesRequest query;
                   ABLATE_RETURN_IF_ERROR(
                       ParseMetric(Param(request, "metric", ""), query.mutable_metric()));
                   ABLATE_ASSIGN_OR_RETURN(std::vector<std::string> group_by,
                                           ParseGroupBy(Param(request, "group_by", "none")));
                   for (const std::string& name : group_by) query.add_group_by(name);
                   ABLATE_ASSIGN_OR_RETURN(int points, Count(request, "points", 0));
                   query.set_points(points);
                   query.set_include_unfinished(FlagSet(request, "include_unfinished"));
                   ABLATE_ASSIGN_OR_RETURN(int64_t id, source_->ResolveSweep(request.matches[1]));
                   query.mutable_sweep()->set_id(id);
                   v1::CurvesResponse curves;
                   ABLATE_RETURN_IF_ERROR(source_->Curves(query, &curves));
                   return CurvesJson(curves);
                 });
               });
    server.Get(R"(/api/sweeps/([^/]+)/effects)",
               [this](const httplib::Request& request, httplib::Response& response) {
                 Json(response, [&]() REQUIRES(mu_) -> StatusOr<std::string> {
                   v1::ResultsRequest query;
                   ABLATE_RETURN_IF_ERROR(ParseValueFlags(Param(request, "metric", ""),
                                                          Param(request, "at", "final"), &query));
                   ABLATE_ASSIGN_OR_RETURN(int interactions, Count(request, "interactions", 0));
                   ABLATE_ASSIGN_OR_RETURN(int64_t id, source_->ResolveSweep(request.matches[1]));
                   query.mutable_sweep()->set_id(id);
                   ABLATE_ASSIGN_OR_RETURN(EffectsAnswer answer,
                                           ComputeEffects(*source_, query, interactions));
                   query.set_metric(answer.jobs.metric());
                   return EffectsJson(query, answer);
                 });
               });
    server.Get(R"(/api/jobs/(\d+))",
               [this](const httplib::Request& request, httplib::Response& response) {
                 Json(response, [&]() REQUIRES(mu_) -> StatusOr<std::string> {
                   ABLATE_ASSIGN_OR_RETURN(v1::GetJobResponse job, Job(request.matches[1]));
                   return JobJson(job).dump() + "\n";
                 });
               });
  }

  static std::string Param(const httplib::Request& request, const char* name,
                           const char* fallback) {
    return request.has_param(name) ? request.get_param_value(name) : fallback;
  }

  // A non-negative integer parameter.
  static StatusOr<int> Count(const httplib::Request& request, const char* name, int fallback) {
    if (!request.has_param(name)) return fallback;
    const std::string text = request.get_param_value(name);
    if (text.empty() || text.size() > 9 ||
        text.find_first_not_of("0123456789") != std::string::npos) {
      return Status::InvalidArgument(fmt::format("{}: '{}' is not a count", name, text));
    }
    return std::stoi(text);
  }

  // True when the request may go on; otherwise `response` is the refusal.
  bool Authorize(const httplib::Request& request, httplib::Response& response) {
    if (token_.empty() || request.path == "/login") return true;
    const std::string authorization = request.get_header_value("Authorization");
    const std::string bearer = "Bearer ";
    if (authorization.rfind(bearer, 0) == 0) {
      if (SameSecret(authorization.substr(bearer.size()), token_)) return true;
      Refuse(request, response, "the token is wrong");
      return false;
    }
    const std::string session = CookieValue(request, kSessionCookie);
    if (!session.empty() && SameSecret(session, session_)) return true;
    Refuse(request, response,
           session.empty() ? "" : "this sign-in is no longer valid (the server restarted)");
    return false;
  }

  void Refuse(const httplib::Request& request, httplib::Response& response,
              const std::string& why) {
    response.status = 401;
    if (IsApi(request)) {
      response.set_header("WWW-Authenticate", "Bearer");
      response.set_content(
          nlohmann::json{
              {"error", why.empty() ? "a token is required: Authorization: Bearer TOKEN" : why}}
                  .dump() +
              "\n",
          "application/json");
      return;
    }
    response.set_content(LoginPage(LocalPath(request.path), why), "text/html; charset=utf-8");
  }

  void Login(const httplib::Request& request, httplib::Response& response) {
    const std::string next = LocalPath(request.get_param_value("next"));
    if (token_.empty()) return response.set_redirect(next, 303);
    if (!SameSecret(request.get_param_value("token"), token_)) {
      response.status = 401;
      response.set_content(LoginPage(next, "Wrong token: access refused."),
                           "text/html; charset=utf-8");
      return;
    }
    response.set_header("Set-Cookie",
                        fmt::format("{}={}; Path=/; HttpOnly; SameSite=Strict{}", kSessionCookie,
                                    session_, https_ ? "; Secure" : ""));
    response.set_redirect(next, 303);
  }

  // Runs `render` under the lock; its page, or a page that says what failed.
  template <typename Render>
  void Page(httplib::Response& response, Render&& render) {
    MutexLock lock(&mu_);
    StatusOr<std::string> page = render();
    if (!page.ok()) {
      response.status = HttpStatus(page.status());
      response.set_content(MessagePage("Cannot show this page", page.status().message()),
                           "text/html; charset=utf-8");
      return;
    }
    response.set_content(*page, "text/html; charset=utf-8");
  }

  template <typename Render>
  void Json(httplib::Response& response, Render&& render) {
    MutexLock lock(&mu_);
    StatusOr<std::string> json = render();
    if (!json.ok()) {
      response.status = HttpStatus(json.status());
      response.set_content(nlohmann::json{{"error", json.status().message()}}.dump() + "\n",
                           "application/json");
      return;
    }
    response.set_content(*json, "application/json");
  }

  // A live page's poll: 204 when the page already shows this version.
  template <typename Sections, typename Poll>
  void Live(const httplib::Request& request, httplib::Response& response, Sections&& sections,
            Poll&& poll) {
    MutexLock lock(&mu_);
    StatusOr<std::vector<ReportSection>> answer = sections();
    if (!answer.ok()) {
      response.status = HttpStatus(answer.status());
      response.set_content(nlohmann::json{{"error", answer.status().message()}}.dump() + "\n",
                           "application/json");
      return;
    }
    if (request.get_param_value("since") == SectionsVersion(*answer)) {
      response.status = 204;
      return;
    }
    response.set_content(LiveJson(*answer, poll()), "application/json");
  }

  template <typename Sections>
  void Live(const httplib::Request& request, httplib::Response& response, Sections&& sections) {
    Live(request, response, std::forward<Sections>(sections),
         [this]() REQUIRES(mu_) { return poll_ms_; });
  }

  StatusOr<std::vector<ReportSection>> SweepsSections() REQUIRES(mu_) {
    v1::ListSweepsResponse sweeps;
    ABLATE_RETURN_IF_ERROR(source_->ListSweeps(&sweeps));
    return std::vector<ReportSection>{SweepsSection(sweeps)};
  }

  // Every sweep's status goes through the one StatusView, whose ETAs come
  // from the progress seen across requests.
  StatusOr<v1::SweepStatus> StatusOf(int64_t id) REQUIRES(mu_) {
    v1::GetStatusResponse all;
    ABLATE_RETURN_IF_ERROR(source_->GetStatus(v1::GetStatusRequest(), &all));
    view_.Update(all, Clock::now(), NowMs());
    for (const v1::SweepStatus& sweep : all.sweeps()) {
      if (sweep.sweep().id() == id) return sweep;
    }
    return Status::NotFound(fmt::format("no sweep with id {}", id));
  }

  // The progress, fresh, then the report's sections. The report is
  // collected on the collector's thread, again when the sweep's job counts
  // changed or the last collection aged; meanwhile the page shows the last
  // one, or, for kFirstReportWait at most, waits for the first.
  StatusOr<std::vector<ReportSection>> SweepSections(int64_t id) REQUIRES(mu_) {
    ABLATE_ASSIGN_OR_RETURN(v1::SweepStatus sweep, StatusOf(id));
    v1::ListWorkersResponse workers;
    ABLATE_RETURN_IF_ERROR(source_->ListWorkers(&workers));
    names_[id] = sweep.sweep().name();
    descriptions_[id] = sweep.sweep().description();

    CachedReport& cached = reports_[id];
    const std::string counts = sweep.sweep().counts().SerializeAsString();
    const bool stale = cached.sections.empty() || cached.counts != counts ||
                       Clock::now() - cached.at > kReportMaxAge;
    if (stale && !cached.queued) {
      cached.queued = true;
      queue_.push_back({id, counts});
      wake_.SignalAll();
    }
    const Clock::time_point until = Clock::now() + kFirstReportWait;
    while (cached.sections.empty() && cached.error.empty() && Clock::now() < until) {
      wake_.WaitUntil(until);
    }
    std::vector<ReportSection> sections = {ProgressSection(sweep, view_, workers)};
    if (!cached.sections.empty()) {
      sections.insert(sections.end(), cached.sections.begin(), cached.sections.end());
    } else {
      const std::vector<ReportSection> pending = PendingReportSections(
          cached.error.empty() ? "Collecting the report; it appears here when it is ready."
                               : "The report could not be collected: " + cached.error);
      sections.insert(sections.end(), pending.begin(), pending.end());
    }
    return sections;
  }

  // The collector's thread: collects each queued sweep's report through its
  // own source (a source answers one query at a time), outside the lock.
  void CollectReports() EXCLUDES(mu_) {
    std::unique_ptr<Source> source;
    MutexLock lock(&mu_);
    while (true) {
      while (queue_.empty() && !stopping_) wake_.Wait();
      if (stopping_) return;
      const auto [id, counts] = queue_.front();
      queue_.pop_front();
      mu_.Unlock();
      const Clock::time_point started = Clock::now();
      StatusOr<std::vector<ReportSection>> sections = Collect(&source, id);
      const Clock::time_point done = Clock::now();
      mu_.Lock();
      CachedReport& cached = reports_[id];
      cached.queued = false;
      cached.at = done;
      cached.collect_ms =
          std::chrono::duration_cast<std::chrono::milliseconds>(done - started).count();
      if (sections.ok()) {
        cached.sections = std::move(sections).value();
        cached.counts = counts;
        cached.error.clear();
      } else {
        cached.error = sections.status().message();
      }
      wake_.SignalAll();
    }
  }

  StatusOr<std::vector<ReportSection>> Collect(std::unique_ptr<Source>* source, int64_t id) {
    if (!*source) {
      ABLATE_ASSIGN_OR_RETURN(*source, Source::Open(source_options_));
    }
    v1::SweepRef ref;
    ref.set_id(id);
    ABLATE_ASSIGN_OR_RETURN(ReportData data, CollectReport(**source, ref));
    return RenderReportSections(data);
  }

  // Polls no faster than the report takes to collect, so that a large
  // sweep's page leaves the source time for other readers.
  int PollMs(int64_t id) REQUIRES(mu_) {
    return static_cast<int>(std::max<int64_t>(poll_ms_, 2 * reports_[id].collect_ms));
  }

  StatusOr<v1::GetJobResponse> Job(const std::string& id) REQUIRES(mu_) {
    if (id.size() > 18) return Status::NotFound("no job with id " + id);
    v1::GetJobRequest request;
    request.set_job_id(std::stoll(id));
    v1::GetJobResponse job;
    ABLATE_RETURN_IF_ERROR(source_->GetJob(request, &job));
    return job;
  }

  struct CachedReport {
    std::string counts;  // the serialized JobCounts it was collected at
    Clock::time_point at;
    int64_t collect_ms = 0;
    std::vector<ReportSection> sections;
    bool queued = false;  // waiting for, or in, the collector
    std::string error;    // why the last collection failed; empty when it did not
  };

  Mutex mu_;
  CondVar wake_{&mu_};  // a report queued or collected, or the server stopping
  // One connection (or channel), one query at a time.
  const std::unique_ptr<Source> source_ GUARDED_BY(mu_);
  StatusView view_ GUARDED_BY(mu_);
  std::map<int64_t, CachedReport> reports_ GUARDED_BY(mu_);
  std::map<int64_t, std::string> names_ GUARDED_BY(mu_);
  std::map<int64_t, std::string> descriptions_ GUARDED_BY(mu_);
  // Sweeps whose reports wait for the collector, with the counts they are for.
  std::deque<std::pair<int64_t, std::string>> queue_ GUARDED_BY(mu_);
  bool stopping_ GUARDED_BY(mu_) = false;
  const SourceOptions source_options_;
  const std::string token_;
  const bool https_;
  const int poll_ms_;
  // What the sign-in cookie holds: random per process, never the token.
  std::string session_;
  std::thread collector_;  // last: starts after everything above is built
};

// HOST and PORT of --listen; "[::1]:8080" gives "::1".
Status SplitListen(const std::string& listen, std::string* host, int* port) {
  const size_t colon = listen.rfind(':');
  const std::string port_text = colon == std::string::npos ? "" : listen.substr(colon + 1);
  if (colon == 0 || port_text.empty() || port_text.size() > 5 ||
      port_text.find_first_not_of("0123456789") != std::string::npos ||
      std::stoi(port_text) > 65535) {
    return Status::InvalidArgument("--listen " + listen + ": expected HOST:PORT");
  }
  *host = listen.substr(0, colon);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') {
    *host = host->substr(1, host->size() - 2);
  }
  *port = std::stoi(port_text);
  return Status::OK();
}

int RunServe(const ServeOptions& options) {
  const char* command = "serve";
  // SIGINT and SIGTERM stop the server from a thread that waits for them;
  // blocked before any thread starts (gRPC's included), so none takes them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  const std::string& token = options.source.client.token;
  if (token.empty() && !IsLoopbackAddress(options.listen)) {
    return ReportError(
        command, Status::InvalidArgument(fmt::format(
                     "refusing to listen on {} without a token: anyone who can reach it could read "
                     "every sweep. Pass the coordinator's token (--token-file FILE or "
                     "ABLATE_TOKEN), or listen on 127.0.0.1",
                     options.listen)));
  }
  if (options.https_cert.empty() != options.https_key.empty()) {
    return ReportError(command,
                       Status::InvalidArgument("--https-cert and --https-key go together"));
  }
  if (!(options.poll_seconds >= 0.2)) {
    return ReportError(command, Status::InvalidArgument(fmt::format(
                                    "--poll: {} is under 0.2 seconds", options.poll_seconds)));
  }
  std::string host;
  int port = 0;
  Status listen = SplitListen(options.listen, &host, &port);
  if (!listen.ok()) return ReportError(command, listen);
  const bool https = !options.https_cert.empty();
  if (https) {
    for (const std::string& path : {options.https_cert, options.https_key}) {
      StatusOr<std::string> pem = ReadPemFile(path);
      if (!pem.ok()) return ReportError(command, pem.status());
    }
  }

  StatusOr<std::unique_ptr<Source>> source = Source::Open(options.source);
  if (!source.ok()) return ReportError(command, source.status());
  if (!options.sweep.empty()) {
    StatusOr<int64_t> id = (*source)->ResolveSweep(options.sweep);
    if (!id.ok()) return ReportError(command, id.status());
  }
  const std::string described = (*source)->Describe();

  std::unique_ptr<httplib::Server> server;
  if (https) {
    server =
        std::make_unique<httplib::SSLServer>(options.https_cert.c_str(), options.https_key.c_str());
    if (!server->is_valid()) {
      return ReportError(command, Status::InvalidArgument("--https-cert " + options.https_cert +
                                                          " and --https-key " + options.https_key +
                                                          " do not make a usable certificate"));
    }
  } else {
    server = std::make_unique<httplib::Server>();
  }
  SweepServer handlers(std::move(source).value(), options.source, token, https,
                       static_cast<int>(options.poll_seconds * 1000));
  handlers.Register(*server, options.sweep);

  if (port == 0) {
    port = server->bind_to_any_port(host);
  } else if (!server->bind_to_port(host, port)) {
    port = -1;
  }
  if (port < 0) {
    return ReportError(command,
                       Status::Unavailable("cannot listen on " + options.listen +
                                           " (address in use, or not an address of this host)"));
  }
  const std::string shown_host = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  std::printf("ablate serve: listening on %s://%s:%d, reading %s\n", https ? "https" : "http",
              shown_host.c_str(), port, described.c_str());
  std::fflush(stdout);

  std::thread stopper([&server, stop_signals] {
    int signal = 0;
    sigwait(&stop_signals, &signal);
    server->stop();
  });
  const bool served = server->listen_after_bind();
  // listen_after_bind returns only after stop(), or on an error; either way
  // the waiting thread is released with a signal to this process.
  if (!served) kill(getpid(), SIGTERM);
  stopper.join();
  if (!served) return ReportError(command, Status::Unavailable("the server stopped unexpectedly"));
  return 0;
}

}  // namespace

void AddServeCommand(CLI::App* app) {
  auto options = std::make_shared<ServeOptions>();
  CLI::App* cmd = app->add_subcommand(
      "serve", "The sweeps live in a browser, and as JSON (read-only; loopback by default)");
  cmd->add_option("sweep", options->sweep,
                  "Sweep name (the newest of that name) or id that / opens; default: the list");
  cmd->add_option("--listen", options->listen,
                  "HOST:PORT to serve on; port 0 picks a free one. Any address but loopback "
                  "needs the token")
      ->capture_default_str();
  cmd->add_option("--https-cert", options->https_cert,
                  "Certificate chain (PEM) to serve HTTPS with");
  cmd->add_option("--https-key", options->https_key, "Private key (PEM) of --https-cert");
  cmd->add_option("--poll", options->poll_seconds,
                  "Seconds between a page's updates (at least 0.2)")
      ->capture_default_str();
  AddSourceFlags(cmd, &options->source);
  cmd->callback([options] { FinishCommand(RunServe(*options)); });
}

}  // namespace ablate
