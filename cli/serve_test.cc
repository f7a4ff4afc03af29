// `ablate serve` end to end: the real binary serves real databases (written
// through the coordinator's managers, tests/results_fixture.h) and a real
// coordinator over HTTP on loopback; the JSON endpoints are compared with
// the CLI's own output, the pages are loaded in headless Chromium (directly
// with --dump-dom, and driven through Selenium and chromedriver by
// cli/testdata/serve_browser.py), and the database file is compared byte
// for byte before and after.
#include <gtest/gtest.h>
#include <httplib.h>

#include <csignal>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>

#include "tests/results_fixture.h"
#include "tests/support/process.h"

namespace ablate {
namespace {

using nlohmann::json;
using testing::Binary;
using testing::FinishRealisticJob;
using testing::FixturePoint;
using testing::GridSpec;
using testing::LeasedJob;
using testing::Process;
using testing::RunCommand;
using testing::RunResult;
using testing::SweepWriter;
using testing::TempDir;
using testing::WriteReportSweep;

const char* kToken = "serve-test-token-0123456789";

// A running `ablate serve`, stopped with SIGTERM when it goes away.
class Server {
 public:
  Server(const TempDir& dir, std::vector<std::string> args,
         std::map<std::string, std::string> env = {}) {
    args.insert(args.begin(), {Binary("ablate"), "serve"});
    if (std::find(args.begin(), args.end(), "--listen") == args.end()) {
      args.insert(args.end(), {"--listen", "127.0.0.1:0"});
    }
    process_ = std::make_unique<Process>("serve" + std::to_string(++count_), args, dir.path(), env);
    const std::string line = process_->WaitForLine("listening on");
    std::smatch m;
    if (std::regex_search(line, m, std::regex("listening on (https?)://([^:]+):(\\d+)"))) {
      scheme_ = m[1];
      port_ = std::stoi(m[3]);
    }
  }
  ~Server() {
    if (process_->running()) {
      process_->Signal(SIGTERM);
      EXPECT_EQ(process_->Wait(std::chrono::seconds(20)), 0) << process_->Stderr();
    }
  }

  bool up() const { return port_ > 0; }
  int port() const { return port_; }
  std::string Url(const std::string& path) const {
    return scheme_ + "://127.0.0.1:" + std::to_string(port_) + path;
  }
  httplib::Client Client() const {
    httplib::Client client("127.0.0.1", port_);
    client.set_read_timeout(std::chrono::seconds(60));
    return client;
  }
  // The body of a GET that must answer 200.
  std::string Get(const std::string& path, const std::string& token = "") const {
    httplib::Client client = Client();
    httplib::Headers headers;
    if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
    httplib::Result result = client.Get(path.c_str(), headers);
    if (!result) {
      ADD_FAILURE() << path << ": no answer";
      return "";
    }
    EXPECT_EQ(result->status, 200) << path << ": " << result->body;
    return result->body;
  }
  Process& process() { return *process_; }

 private:
  static inline int count_ = 0;
  std::unique_ptr<Process> process_;
  std::string scheme_ = "http";
  int port_ = -1;
};

std::string FindOnPath(const std::string& name) {
  for (const char* dir : {"/usr/bin", "/usr/local/bin", "/bin"}) {
    const std::string candidate = std::string(dir) + "/" + name;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return name;
}

// Headless Chromium's DOM of `url` after its scripts ran.
std::string DumpDom(const TempDir& dir, const std::string& url) {
  TempDir profile;
  RunResult run = RunCommand(
      {FindOnPath("chromium"), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
       "--disable-background-networking", "--user-data-dir=" + profile.path(),
       "--window-size=1280,2000", "--virtual-time-budget=3000", "--dump-dom", url},
      dir.path(), std::chrono::seconds(120));
  EXPECT_EQ(run.exit_code, 0) << "is chromium installed (scripts/setup.sh)? " << run.err;
  return run.out;
}

// Kept for README: ABLATE_SERVE_SCREENSHOTS=/some/dir writes PNGs of `url`.
void Screenshot(const TempDir& dir, const std::string& url, const std::string& name,
                const std::string& size) {
  const char* to = std::getenv("ABLATE_SERVE_SCREENSHOTS");
  if (to == nullptr) return;
  TempDir profile;
  RunResult run = RunCommand(
      {FindOnPath("chromium"), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
       "--hide-scrollbars", "--user-data-dir=" + profile.path(), "--window-size=" + size,
       "--virtual-time-budget=3000", "--screenshot=" + std::string(to) + "/" + name, url},
      dir.path(), std::chrono::seconds(120));
  EXPECT_EQ(run.exit_code, 0) << run.err;
}

std::string BrowserScript() { return testing::SourceDir() + "/cli/testdata/serve_browser.py"; }

// The JSON after "KIND " in the script's output line.
json Observation(const std::string& line, const std::string& kind) {
  const size_t at = line.find(kind + " ");
  if (at == std::string::npos) return json();
  return json::parse(line.substr(at + kind.size() + 1), nullptr, false);
}

class ServeTest : public ::testing::Test {
 protected:
  // The report test's sweep: the seed's grid with two seeds, 33 jobs done,
  // one failed, one running, one pending.
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    db_ = new std::string(dir_->File("sweep.db"));
    SweepWriter writer(*db_);
    running_job_ = WriteReportSweep(writer, "CUDA error: <script>alert('boom')</script>");
  }
  static void TearDownTestSuite() {
    delete db_;
    delete dir_;
  }

  // The CLI's stdout for `args` with `--db`.
  static std::string Cli(std::vector<std::string> args) {
    args.insert(args.begin(), Binary("ablate"));
    args.insert(args.end(), {"--db", *db_});
    RunResult run = RunCommand(args, dir_->path());
    EXPECT_EQ(run.exit_code, 0) << run.err;
    return run.out;
  }

  static TempDir* dir_;
  static std::string* db_;
  static int64_t running_job_;
};

TempDir* ServeTest::dir_ = nullptr;
std::string* ServeTest::db_ = nullptr;
int64_t ServeTest::running_job_ = 0;

TEST_F(ServeTest, JsonEndpointsGiveTheCliJsonBytes) {
  Server server(*dir_, {"--db", *db_});
  ASSERT_TRUE(server.up()) << server.process().Stderr();
  EXPECT_EQ(server.Get("/api/sweeps"), Cli({"list", "--format", "json"}));
  EXPECT_EQ(server.Get("/api/workers"), Cli({"workers", "--format", "json"}));
  EXPECT_EQ(server.Get("/api/sweeps/seed-grid/results?group_by=layer_norm"),
            Cli({"results", "seed-grid", "--group-by", "layer_norm", "--format", "json"}));
  EXPECT_EQ(server.Get("/api/sweeps/1/results?group_by=cell,init&metric=test_bpc&at=best"),
            Cli({"results", "1", "--group-by", "cell,init", "--metric", "test_bpc", "--at", "best",
                 "--format", "json"}));
  EXPECT_EQ(
      server.Get("/api/sweeps/seed-grid/curves?group_by=cell&points=7"),
      Cli({"curves", "seed-grid", "--group-by", "cell", "--points", "7", "--format", "json"}));
  EXPECT_EQ(server.Get("/api/sweeps/seed-grid/effects"),
            Cli({"effects", "seed-grid", "--format", "json"}));

  const json status = json::parse(server.Get("/api/sweeps/seed-grid"));
  EXPECT_EQ(status["sweep"], "seed-grid");
  EXPECT_EQ(status["total"], 36);
  EXPECT_EQ(status["jobs"]["done"], 33);
  EXPECT_EQ(status["jobs"]["failed"], 1);
  ASSERT_EQ(status["running"].size(), 1u);
  EXPECT_EQ(status["running"][0]["job_id"], running_job_);
  EXPECT_EQ(status["running"][0]["step"], 100);

  const json job = json::parse(server.Get("/api/jobs/1"));
  EXPECT_EQ(job["job_id"], 1);
  EXPECT_EQ(job["state"], "done");
  EXPECT_EQ(job["sweep"]["name"], "seed-grid");
  EXPECT_EQ(job["config"]["model"]["hidden"], 2000);
  EXPECT_EQ(job["curves"]["valid"]["step"].size(), 20u);  // every 100 steps to 2000
  EXPECT_EQ(job["curves"]["valid"]["bpc"].back(), job["final"]["valid_bpc"]);
  EXPECT_FALSE(job["events"].empty());
}

TEST_F(ServeTest, BadRequestsGetClearErrors) {
  Server server(*dir_, {"--db", *db_});
  ASSERT_TRUE(server.up());
  httplib::Client client = server.Client();
  auto unknown = client.Get("/api/sweeps/no-such-sweep");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
  EXPECT_NE(unknown->body.find("no sweep named 'no-such-sweep'"), std::string::npos);
  auto factor = client.Get("/api/sweeps/1/results?group_by=colour");
  ASSERT_TRUE(factor);
  EXPECT_EQ(factor->status, 400);
  EXPECT_NE(factor->body.find("colour"), std::string::npos) << factor->body;
  auto points = client.Get("/api/sweeps/1/curves?group_by=cell&points=-3");
  ASSERT_TRUE(points);
  EXPECT_EQ(points->status, 400);
  auto job = client.Get("/jobs/99999");
  ASSERT_TRUE(job);
  EXPECT_EQ(job->status, 404);
  EXPECT_NE(job->body.find("no job with id 99999"), std::string::npos);
}

TEST_F(ServeTest, CoordinatorAndFileServeTheSameBytes) {
  // A copy for the coordinator, which opens its database for writing.
  const std::string copy = dir_->File("copy.db");
  std::filesystem::copy_file(*db_, copy, std::filesystem::copy_options::overwrite_existing);
  const std::vector<std::string> paths = {"/api/sweeps/seed-grid/results?group_by=cell",
                                          "/api/sweeps/1/results?group_by=none",
                                          "/api/sweeps/1/curves?group_by=layer_norm",
                                          "/api/sweeps/1/effects",
                                          "/api/jobs/1",
                                          "/api/jobs/7"};
  std::vector<std::string> live, offline;
  {
    Process coordinator("coordinator",
                        {Binary("ablate-coordinator"), "--db", copy, "--listen", "127.0.0.1:0"},
                        dir_->path());
    std::smatch m;
    const std::string line = coordinator.WaitForLine("listening on");
    ASSERT_TRUE(std::regex_search(line, m, std::regex("listening on (\\S+)")));
    Server server(*dir_, {"--coordinator", m[1]});
    ASSERT_TRUE(server.up()) << server.process().Stderr();
    for (const std::string& path : paths) live.push_back(server.Get(path));
    coordinator.Signal(SIGTERM);
    ASSERT_NE(coordinator.Wait(), -1);
  }
  Server server(*dir_, {"--db", copy});
  ASSERT_TRUE(server.up());
  for (const std::string& path : paths) offline.push_back(server.Get(path));
  for (size_t i = 0; i < paths.size(); ++i) {
    EXPECT_FALSE(live[i].empty()) << paths[i];
    EXPECT_EQ(live[i], offline[i]) << paths[i];
  }
}

TEST_F(ServeTest, NeverWritesTheDatabase) {
  const std::string before = testing::ReadFile(*db_);
  const auto mtime = std::filesystem::last_write_time(*db_);
  {
    Server server(*dir_, {"--db", *db_});
    ASSERT_TRUE(server.up());
    for (const char* path : {"/", "/sweeps/1", "/sweeps/1/live", "/jobs/3", "/api/sweeps/1",
                             "/api/sweeps/1/effects", "/api/jobs/3"}) {
      server.Get(path);
    }
  }
  EXPECT_TRUE(testing::ReadFile(*db_) == before);
  EXPECT_EQ(std::filesystem::last_write_time(*db_), mtime);
}

TEST_F(ServeTest, BrowserShowsTheSweepPageWithItsFigures) {
  Server server(*dir_, {"--db", *db_});
  ASSERT_TRUE(server.up());
  const std::string dom = DumpDom(*dir_, server.Url("/sweeps/seed-grid"));
  // The report's sections, drawn by the report's renderers: three figures
  // of validation bpc (by cell, layer norm, initializer) with their lines.
  EXPECT_NE(dom.find("id=\"best-config\">GRU · layer norm · xavier</p>"), std::string::npos);
  for (const char* key : {"model.cell", "model.layer_norm", "model.init"}) {
    EXPECT_NE(dom.find(std::string("<figure class=\"chart\" data-key=\"") + key), std::string::npos)
        << key;
  }
  std::smatch m;
  const std::regex curves("id=\"section-curves\"[\\s\\S]*?</section>");
  ASSERT_TRUE(std::regex_search(dom, m, curves));
  const std::string figures = m[0];
  const std::regex line("<path class=\"line");
  EXPECT_EQ(std::distance(std::sregex_iterator(figures.begin(), figures.end(), line),
                          std::sregex_iterator()),
            3 + 2 + 3);
  EXPECT_NE(dom.find("<table class=\"sortable\" id=\"grid\">"), std::string::npos);
  EXPECT_NE(dom.find("&lt;script&gt;alert"), std::string::npos);
  EXPECT_EQ(dom.find("<script>alert"), std::string::npos);
  // Progress: the running job linked to its page, with its step; the
  // script ran and polled.
  EXPECT_NE(dom.find("<a href=\"/jobs/" + std::to_string(running_job_) + "\">"), std::string::npos);
  EXPECT_NE(dom.find("33/36 done, 1 running, 1 pending, 1 failed"), std::string::npos);
  EXPECT_NE(dom.find("data-live-state=\"live\""), std::string::npos);

  const std::string job = DumpDom(*dir_, server.Url("/jobs/1"));
  EXPECT_NE(job.find("<h1>Job 1</h1>"), std::string::npos);
  EXPECT_NE(job.find("<path class=\"line"), std::string::npos);
  EXPECT_NE(job.find("id=\"job-config\""), std::string::npos);
  EXPECT_NE(job.find("id=\"job-events\""), std::string::npos);
  EXPECT_NE(job.find("the store keeps none"), std::string::npos);

  const std::string list = DumpDom(*dir_, server.Url("/"));
  EXPECT_NE(list.find("<a href=\"/sweeps/1\">seed-grid</a>"), std::string::npos);

  Screenshot(*dir_, server.Url("/sweeps/seed-grid"), "serve-sweep.png", "1280,2400");
  Screenshot(*dir_, server.Url("/jobs/1"), "serve-job.png", "1280,1300");
}

TEST_F(ServeTest, FigureChangesWithoutReloadAsJobsFinish) {
  TempDir dir;
  const std::string db = dir.File("live.db");
  SweepWriter writer(db);
  writer.Launch(GridSpec("live"));
  for (int i = 0; i < 6; ++i) {
    FinishRealisticJob(writer, writer.Lease(), 2000, 50, 100, static_cast<uint64_t>(i));
  }
  LeasedJob running = writer.Lease();
  writer.Report(running, {FixturePoint(v1::SPLIT_TRAIN, 10, 7.0)});

  Server server(dir, {"live", "--db", db, "--poll", "0.3"});
  ASSERT_TRUE(server.up());
  const std::string go = dir.File("go");
  Process browser("browser", {"/usr/bin/python3", BrowserScript(), "live", server.Url("/"), go},
                  dir.path());
  const json before = Observation(browser.WaitForLine("READY", std::chrono::seconds(120)), "READY");
  ASSERT_TRUE(before.is_object()) << browser.Stdout() << browser.Stderr();

  // While the page is open: the running job gets points and finishes, and
  // six more jobs finish.
  writer.Report(running, {FixturePoint(v1::SPLIT_TRAIN, 20, 6.0)});
  FinishRealisticJob(writer, running, 2000, 50, 100, 6);
  for (int i = 7; i < 13; ++i) {
    FinishRealisticJob(writer, writer.Lease(), 2000, 50, 100, static_cast<uint64_t>(i));
  }
  testing::WriteFile(go, "");
  const json after =
      Observation(browser.WaitForLine("CHANGED", std::chrono::seconds(120)), "CHANGED");
  ASSERT_TRUE(after.is_object()) << browser.Stdout() << browser.Stderr();
  EXPECT_EQ(browser.Wait(), 0) << browser.Stderr();

  EXPECT_NE(after["hash"], before["hash"]);
  EXPECT_NE(after["legend"], before["legend"]);
  EXPECT_GT(after["updates"].get<int>(), before["updates"].get<int>());
  EXPECT_TRUE(after["marker"].get<bool>()) << "the page was reloaded";
  EXPECT_NE(before["counts"].get<std::string>().find("6/18 done"), std::string::npos) << before;
  EXPECT_NE(after["counts"].get<std::string>().find("13/18 done"), std::string::npos) << after;
}

TEST_F(ServeTest, WithATokenEveryRequestNeedsIt) {
  Server server(*dir_, {"--db", *db_}, {{"ABLATE_TOKEN", kToken}});
  ASSERT_TRUE(server.up());
  httplib::Client client = server.Client();
  auto none = client.Get("/api/sweeps");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 401);
  auto wrong = client.Get("/api/sweeps", {{"Authorization", "Bearer wrong-token"}});
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 401);
  EXPECT_NE(wrong->body.find("the token is wrong"), std::string::npos);
  EXPECT_EQ(server.Get("/api/sweeps", kToken), Cli({"list", "--format", "json"}));

  auto page = client.Get("/sweeps/1");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 401);
  EXPECT_NE(page->body.find("action=\"/login\""), std::string::npos);
  auto refused =
      client.Post("/login", "token=wrong&next=/sweeps/1", "application/x-www-form-urlencoded");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 401);
  EXPECT_NE(refused->body.find("Wrong token: access refused."), std::string::npos);
  auto signed_in = client.Post("/login", std::string("token=") + kToken + "&next=/sweeps/1",
                               "application/x-www-form-urlencoded");
  ASSERT_TRUE(signed_in);
  EXPECT_EQ(signed_in->status, 303);
  EXPECT_EQ(signed_in->get_header_value("Location"), "/sweeps/1");
  const std::string cookie = signed_in->get_header_value("Set-Cookie");
  EXPECT_EQ(cookie.find(kToken), std::string::npos) << "the cookie must not carry the token";
  auto with_cookie = client.Get("/sweeps/1", {{"Cookie", cookie.substr(0, cookie.find(';'))}});
  ASSERT_TRUE(with_cookie);
  EXPECT_EQ(with_cookie->status, 200);

  // The same in a browser: a wrong token is refused on the page, the right
  // one opens the sweep with its figures.
  RunResult run =
      RunCommand({"/usr/bin/python3", BrowserScript(), "login", server.Url("/sweeps/1"), kToken},
                 dir_->path(), std::chrono::seconds(180));
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  const json login = Observation(run.out, "LOGIN");
  EXPECT_EQ(login["first"], "Sign in");
  EXPECT_EQ(login["refused"], "Wrong token: access refused.");
  EXPECT_EQ(login["figures"], 3);
}

TEST_F(ServeTest, RefusesToListenBeyondLoopbackWithoutAToken) {
  RunResult run =
      RunCommand({Binary("ablate"), "serve", "--db", *db_, "--listen", "0.0.0.0:0"}, dir_->path());
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.err.find("ablate serve: refusing to listen on 0.0.0.0:0 without a token"),
            std::string::npos)
      << run.err;
  Server with_token(*dir_, {"--db", *db_, "--listen", "0.0.0.0:0"}, {{"ABLATE_TOKEN", kToken}});
  EXPECT_TRUE(with_token.up()) << with_token.process().Stderr();
}

TEST_F(ServeTest, ServesHttpsWithTheGivenCertificate) {
  const std::string cert = dir_->File("serve.pem"), key = dir_->File("serve.key");
  RunResult made =
      RunCommand({"/usr/bin/openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                  "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert, "-days",
                  "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"},
                 dir_->path());
  ASSERT_EQ(made.exit_code, 0) << made.err;
  Server server(*dir_, {"--db", *db_, "--https-cert", cert, "--https-key", key},
                {{"ABLATE_TOKEN", kToken}});
  ASSERT_TRUE(server.up()) << server.process().Stderr();
  EXPECT_EQ(server.Url("/").rfind("https://", 0), 0u);
  httplib::SSLClient client("127.0.0.1", server.port());
  client.set_ca_cert_path(cert.c_str());
  client.enable_server_certificate_verification(true);
  auto answer = client.Get("/api/sweeps", {{"Authorization", std::string("Bearer ") + kToken}});
  ASSERT_TRUE(answer) << httplib::to_string(answer.error());
  EXPECT_EQ(answer->status, 200);
  EXPECT_EQ(answer->body, Cli({"list", "--format", "json"}));

  RunResult mismatched = RunCommand(
      {Binary("ablate"), "serve", "--db", *db_, "--listen", "127.0.0.1:0", "--https-cert", cert},
      dir_->path());
  EXPECT_EQ(mismatched.exit_code, 1);
  EXPECT_NE(mismatched.err.find("--https-cert and --https-key go together"), std::string::npos);
}

}  // namespace
}  // namespace ablate
