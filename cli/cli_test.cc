// The `ablate` CLI end to end: the real binary against the real coordinator
// on loopback and real SQLite files, and `ablate local` with real workers.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "common/model_size.h"
#include "data/text8.h"
#include "tests/support/corpus.h"
#include "tests/support/process.h"
#include "tests/support/sqlite_query.h"

namespace ablate {
namespace {

using testing::Binary;
using testing::BinDir;
using testing::Process;
using testing::QueryInt;
using testing::ReadFile;
using testing::RunCommand;
using testing::RunResult;
using testing::TempDir;
using testing::WriteFile;

const char* const kGrid =
    "grid:\n"
    "  cell: [lstm, gru, mgu]\n"
    "  layer_norm: [true, false]\n"
    "  init: [xavier, variance_scaling, orthogonal]\n";

// The 18-cell grid with a model small enough to train in well under a second.
std::string TinySpec(const std::string& corpus, const std::string& name = "tiny") {
  return "name: " + name + "\n" + "data: {path: " + corpus +
         "}\n"
         "model: {hidden: 16, vocab: 27}\n"
         "train: {batch: 2, seq: 16, steps: 30, log_every: 10, eval_every: 15, eval_bytes: 300}\n" +
         kGrid;
}

// A temp dir with the English corpus and the tiny spec in it; processes'
// output goes to logs/ inside it.
struct Workspace {
  Workspace() {
    WriteFile(dir.File("corpus.txt"), testing::EnglishText8(9));
    WriteFile(spec, TinySpec(dir.File("corpus.txt")));
    std::filesystem::create_directory(logs);
  }
  RunResult Ablate(std::vector<std::string> args,
                   std::chrono::milliseconds timeout = std::chrono::seconds(120)) const {
    args.insert(args.begin(), Binary("ablate"));
    return RunCommand(args, logs, timeout);
  }
  // The names in the directory, logs/ aside.
  std::set<std::string> Files() const {
    std::set<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
      if (entry.path() != logs) names.insert(entry.path().filename().string());
    }
    return names;
  }
  TempDir dir;
  const std::string logs = dir.File("logs");
  const std::string spec = dir.File("tiny.yaml");
  const std::string db = dir.File("sweep.db");
};

// The real coordinator on a free loopback port.
struct Coordinator {
  Coordinator(const TempDir& dir, const std::string& db)
      : process("coordinator",
                {Binary("ablate-coordinator"), "--db", db, "--listen", "127.0.0.1:0"},
                dir.File("logs")) {
    const std::string line = process.WaitForLine("listening on");
    std::smatch m;
    if (std::regex_search(line, m, std::regex("listening on (\\S+)"))) address = m[1];
  }
  // Graceful, so that the database is complete for --db readers.
  int Stop() {
    process.Signal(SIGTERM);
    return process.Wait();
  }
  Process process;
  std::string address;
};

// `ablate status --format json` of one sweep.
std::string Counts(const std::string& name, int total, int pending, int running, int done,
                   int failed, int cancelled, int64_t checkpoint_bytes = 0) {
  return "{\"sweep\":\"" + name + "\",\"total\":" + std::to_string(total) +
         ",\"jobs\":{\"pending\":" + std::to_string(pending) +
         ",\"running\":" + std::to_string(running) + ",\"done\":" + std::to_string(done) +
         ",\"failed\":" + std::to_string(failed) + ",\"cancelled\":" + std::to_string(cancelled) +
         "},\"checkpoint_bytes\":" + std::to_string(checkpoint_bytes) + "}";
}

std::string Trim(const std::string& text) {
  const size_t end = text.find_last_not_of("\n");
  return end == std::string::npos ? "" : text.substr(0, end + 1);
}

TEST(Launch, PrintsTheSweepAndLaunchingTheSameSpecAgainCreatesNothing) {
  Workspace ws;
  Coordinator coordinator(ws.dir, ws.db);
  ASSERT_FALSE(coordinator.address.empty()) << coordinator.process.Stderr();

  RunResult first = ws.Ablate({"launch", ws.spec, "--coordinator", coordinator.address});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_EQ(Trim(first.out), "sweep 1 'tiny': 18 jobs created, 0 already there");

  RunResult again =
      ws.Ablate({"launch", ws.spec, "--coordinator", coordinator.address, "--format", "json"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(Trim(again.out), R"({"sweep_id":1,"name":"tiny","jobs_created":0,"jobs_existing":18})");
  EXPECT_EQ(QueryInt(ws.db, "SELECT count(*) FROM jobs"), 18);
  EXPECT_EQ(QueryInt(ws.db, "SELECT count(*) FROM sweeps"), 1);
}

TEST(Launch, DryRunShowsEveryJobWithItsSizeAndStoresNothing) {
  Workspace ws;
  WriteFile(ws.dir.File("big.yaml"), "name: big\ndata: {path: " + ws.dir.File("corpus.txt") +
                                         "}\n"
                                         "model: {hidden: 2000, vocab: 256}\n"
                                         "train: {batch: 2, seq: 8, steps: 100}\n" +
                                         std::string(kGrid));
  Coordinator coordinator(ws.dir, ws.db);
  ASSERT_FALSE(coordinator.address.empty()) << coordinator.process.Stderr();
  const std::set<std::string> files = ws.Files();

  RunResult table = ws.Ablate({"launch", ws.dir.File("big.yaml"), "--dry-run", "--threads", "1",
                               "--coordinator", coordinator.address});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  std::set<std::string> cells;  // distinct (cell, layer_norm, init) rows
  const std::regex row("^\\s*\\d+\\s+(lstm|gru|mgu)\\s+(true|false)\\s+(\\S+)\\s+([\\d,]+)\\s");
  for (const std::string& line : testing::Lines(table.out)) {
    std::smatch m;
    if (!std::regex_search(line, m, row)) continue;
    const Cell cell = *ParseCell(m[1]);
    const bool layer_norm = m[2] == "true";
    std::string digits = m[4];
    digits.erase(std::remove(digits.begin(), digits.end(), ','), digits.end());
    EXPECT_EQ(std::stoll(digits), CountParameters(cell, layer_norm, 2000, 256)) << line;
    if (cell == Cell::kGru && layer_norm) {
      EXPECT_EQ(m[4], "14,078,256");
    }
    cells.insert(m[1].str() + " " + m[2].str() + " " + m[3].str());
  }
  EXPECT_EQ(cells.size(), 18u) << table.out;
  EXPECT_NE(table.out.find("CPU-hours"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("timed on this machine (cpu, 1 thread"), std::string::npos);

  // Nothing reached the coordinator, and no file appeared.
  RunResult status =
      ws.Ablate({"status", "--format", "json", "--coordinator", coordinator.address});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  EXPECT_EQ(Trim(status.out), "[]");
  EXPECT_EQ(ws.Files(), files);
}

const std::string kProgramSweep = testing::SourceDir() + "/cli/testdata/wandb_program.yaml";

TEST(Launch, DryRunOfAProgramSweepShowsEachJobsCommandLine) {
  Workspace ws;
  RunResult table = ws.Ablate({"launch", kProgramSweep, "--dry-run"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("Dry run of sweep 'wandb_program'"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("/usr/bin/env python3 train.py --config '${args_json_file}' "
                           "'--layers=[64, 64]' --lr=0.001 '--optimizer=momentum sgd'"),
            std::string::npos)
      << table.out;
  EXPECT_NE(table.out.find("No cost estimate"), std::string::npos) << table.out;

  RunResult csv = ws.Ablate({"launch", kProgramSweep, "--dry-run", "--format", "csv"});
  ASSERT_EQ(csv.exit_code, 0) << csv.err;
  const std::vector<std::string> lines = testing::Lines(csv.out);
  ASSERT_EQ(lines.size(), 5u) << csv.out;
  EXPECT_EQ(lines[0], "order,lr,optimizer,command");
  EXPECT_NE(std::find(lines.begin(), lines.end(),
                      "0,0.01,adam,\"/usr/bin/env python3 train.py --config '${args_json_file}' "
                      "'--layers=[64, 64]' --lr=0.01 --optimizer=adam\""),
            lines.end())
      << csv.out;

  RunResult json = ws.Ablate({"launch", kProgramSweep, "--dry-run", "--format", "json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  const nlohmann::json out = nlohmann::json::parse(json.out);
  EXPECT_EQ(out["sweep"], "wandb_program");
  EXPECT_EQ(out["program"], "train.py");
  ASSERT_EQ(out["jobs"].size(), 4u);
  std::set<std::string> commands;
  for (const auto& job : out["jobs"]) {
    EXPECT_EQ(job["config"]["layers"], nlohmann::json::parse("[64, 64]"));
    EXPECT_EQ(job["config"]["lr"], job["factors"]["lr"]);
    EXPECT_EQ(job["command"][4], "${args_json_file}");
    commands.insert(job["command_line"].get<std::string>());
  }
  EXPECT_EQ(commands.size(), 4u);
  EXPECT_EQ(ws.Files(), std::set<std::string>({"corpus.txt", "tiny.yaml"}));
}

TEST(Launch, AProgramSweepIsStoredUnderItsFilesNameWithItsCommands) {
  Workspace ws;
  Coordinator coordinator(ws.dir, ws.db);
  ASSERT_FALSE(coordinator.address.empty()) << coordinator.process.Stderr();
  RunResult launched = ws.Ablate({"launch", kProgramSweep, "--coordinator", coordinator.address});
  ASSERT_EQ(launched.exit_code, 0) << launched.err;
  EXPECT_EQ(Trim(launched.out), "sweep 1 'wandb_program': 4 jobs created, 0 already there");
  EXPECT_EQ(QueryInt(ws.db, "SELECT silence_ms FROM sweeps"), 120000);
  EXPECT_EQ(QueryInt(ws.db,
                     "SELECT count(*) FROM jobs WHERE json_extract(command_json, '$[2]') = "
                     "'train.py' AND json_extract(config_json, '$.optimizer') IS NOT NULL"),
            4);
}

TEST(Launch, DryRunJsonCountsSixFlopsPerMacOfEveryStep) {
  Workspace ws;
  RunResult json =
      ws.Ablate({"launch", ws.spec, "--dry-run", "--threads", "1", "--format", "json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  const auto out = nlohmann::json::parse(json.out);
  ASSERT_EQ(out["jobs"].size(), 18u);
  for (const auto& job : out["jobs"]) {
    const auto& f = job["factors"];
    const Cell cell = *ParseCell(f["model.cell"].get<std::string>());
    const bool layer_norm = f["model.layer_norm"].get<bool>();
    EXPECT_EQ(job["parameters"].get<int64_t>(), CountParameters(cell, layer_norm, 16, 27));
    // batch 2 x seq 16 symbols a step, 30 steps.
    const double step = 6.0 * double(ForwardMacsPerSymbol(cell, 16, 27)) * 2 * 16;
    EXPECT_DOUBLE_EQ(job["flops_per_step"].get<double>(), step);
    EXPECT_GT(job["eval_flops"].get<double>(), 0);
    EXPECT_DOUBLE_EQ(job["flops"].get<double>(), 30 * step + job["eval_flops"].get<double>());
    EXPECT_GT(job["estimated_seconds"].get<double>(), 0);
  }
  EXPECT_GT(out["estimated_cpu_hours"].get<double>(), 0);
  EXPECT_EQ(out["threads"], 1);
}

TEST(Launch, DryRunShowsEachJobsPrecisionAndThatTheCpuIgnoresIt) {
  Workspace ws;
  const std::string spec = ws.dir.File("precision.yaml");
  WriteFile(spec, "name: precision\ndata: {path: " + ws.dir.File("corpus.txt") +
                      "}\n"
                      "model: {hidden: 16, vocab: 27}\n"
                      "train: {batch: 2, seq: 16, steps: 30, eval_every: 15}\n"
                      "grid:\n  cell: [lstm, gru]\n  precision: [tf32, bf16]\n");
  RunResult table = ws.Ablate({"launch", spec, "--dry-run", "--threads", "1", "--device", "cpu"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  std::map<std::string, std::set<std::string>> precisions;  // by cell
  const std::regex row("^\\s*\\d+\\s+(lstm|gru)\\s+(tf32|bf16)\\s");
  const std::vector<std::string> lines = testing::Lines(table.out);
  for (const std::string& line : lines) {
    std::smatch m;
    if (std::regex_search(line, m, row)) precisions[m[1]].insert(m[2]);
  }
  const std::set<std::string> both = {"tf32", "bf16"};
  EXPECT_EQ(precisions,
            (std::map<std::string, std::set<std::string>>{{"lstm", both}, {"gru", both}}))
      << table.out;
  EXPECT_TRUE(std::regex_search(table.out, std::regex("\\norder +cell +precision +parameters")))
      << table.out;
  EXPECT_NE(table.out.find("\ntrain.precision: tf32 or bf16 as the precision column says (the "
                           "recurrent matrix products on CUDA); ignored here: the CPU trains, "
                           "and was timed, in float32.\n"),
            std::string::npos)
      << table.out;

  RunResult json = ws.Ablate(
      {"launch", spec, "--dry-run", "--threads", "1", "--device", "cpu", "--format", "json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  const auto out = nlohmann::json::parse(json.out);
  ASSERT_EQ(out["jobs"].size(), 4u);
  std::map<std::string, double> seconds;  // by cell: the same whatever the precision on a CPU
  for (const auto& job : out["jobs"]) {
    EXPECT_EQ(job["precision"], job["factors"]["train.precision"]) << job;
    EXPECT_EQ(job["effective_precision"], "fp32") << job;
    const std::string cell = job["factors"]["model.cell"];
    auto [it, first] = seconds.emplace(cell, job["estimated_seconds"].get<double>());
    if (!first) {
      EXPECT_EQ(it->second, job["estimated_seconds"].get<double>()) << cell;
    }
  }

  // Without the axis, one precision for every job.
  RunResult plain = ws.Ablate({"launch", ws.spec, "--dry-run", "--threads", "1"});
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  EXPECT_NE(plain.out.find("\ntrain.precision: tf32 for every job (the recurrent matrix products "
                           "on CUDA)"),
            std::string::npos)
      << plain.out;
}

// A copy of `ablate` alone in a directory, with `worker` (a script), if
// given, as the ablate-worker beside it.
std::string AblateBeside(const TempDir& dir, const std::string& worker = "") {
  const std::string bin = dir.File("bin");
  std::filesystem::create_directory(bin);
  std::filesystem::copy_file(Binary("ablate"), bin + "/ablate");
  if (!worker.empty()) {
    WriteFile(bin + "/ablate-worker", "#!/bin/sh\n" + worker);
    std::filesystem::permissions(bin + "/ablate-worker", std::filesystem::perms::owner_all);
  }
  return bin + "/ablate";
}

TEST(Launch, DryRunFindsTheWorkerOnPathWhenNoneIsBesideIt) {
  Workspace ws;
  const std::string ablate = AblateBeside(ws.dir);
  const std::vector<std::string> args = {ablate,      "launch", ws.spec,    "--dry-run",
                                         "--threads", "1",      "--format", "json"};
  RunResult alone = RunCommand(args, ws.logs, std::chrono::seconds(120), {{"PATH", ""}});
  EXPECT_NE(alone.exit_code, 0);
  EXPECT_EQ(testing::Lines(alone.err).size(), 1u) << alone.err;
  EXPECT_NE(alone.err.find("ablate launch: no ablate-worker next to ablate (looked for " +
                           ws.dir.File("bin/ablate-worker") + ") nor on PATH"),
            std::string::npos)
      << alone.err;
  EXPECT_EQ(alone.out, "");

  RunResult on_path = RunCommand(args, ws.logs, std::chrono::seconds(120), {{"PATH", BinDir()}});
  ASSERT_EQ(on_path.exit_code, 0) << on_path.err;
  const auto out = nlohmann::json::parse(on_path.out);
  EXPECT_EQ(out["jobs"].size(), 18u);
  EXPECT_GT(out["estimated_seconds"].get<double>(), 0);
}

TEST(Launch, DryRunNamesAWorkerThatFailsOrAnswersNonsense) {
  Workspace ws;
  struct Case {
    std::string worker;    // the script
    std::string expected;  // in the one line of stderr
  };
  const Case cases[] = {
      {"echo 'no room at the inn' >&2\nexit 3\n",
       "time-steps exited with status 3: no room at the inn"},
      {"kill -KILL $$\n", "time-steps exited with status 137"},
      {"echo 'timing, not JSON'\n", "time-steps printed no JSON reply"},
      {"echo '{\"seconds\": [1]}'\n", "time-steps: step timing device: unexpected null"},
      {"echo '{\"seconds\": [], \"device\": \"cpu\", \"threads\": 1, \"blas\": \"\"}'\n",
       "time-steps timed 0 shapes of 6"},
  };
  for (const Case& c : cases) {
    TempDir dir;
    const std::string ablate = AblateBeside(dir, c.worker);
    RunResult r = RunCommand({ablate, "launch", ws.spec, "--dry-run"}, ws.logs);
    EXPECT_EQ(r.exit_code, 1) << c.worker;
    ASSERT_EQ(testing::Lines(r.err).size(), 1u) << r.err;
    EXPECT_NE(r.err.find("ablate launch: " + dir.File("bin/ablate-worker") + " " + c.expected),
              std::string::npos)
        << r.err;
  }
}

// The pids of `parent`'s children whose command line contains `word`.
std::vector<pid_t> ChildrenRunning(pid_t parent, const std::string& word) {
  std::vector<pid_t> children;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    // The parent is the second field after the command name, which is in
    // parentheses and may hold spaces.
    const std::string stat = testing::ReadFile(entry.path().string() + "/stat");
    const size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream fields(stat.substr(close + 1));
    std::string state;
    long ppid = 0;
    if (!(fields >> state >> ppid) || ppid != parent) continue;
    std::string cmdline = testing::ReadFile(entry.path().string() + "/cmdline");
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (cmdline.find(word) != std::string::npos) children.push_back(std::stoi(name));
  }
  return children;
}

// Whether `pid` has exited (a zombie nobody reaped counts).
bool Exited(pid_t pid) {
  const std::string stat = testing::ReadFile("/proc/" + std::to_string(pid) + "/stat");
  const size_t close = stat.rfind(')');
  return close == std::string::npos || stat.compare(close + 1, 3, " Z ") == 0;
}

template <typename Predicate>
bool WaitUntil(Predicate done, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return true;
}

// A dry run times steps in an ablate-worker child for up to minutes; a
// SIGTERM sent to the CLI alone (not its process group, as Ctrl-C does) must
// not leave that child running for nobody.
TEST(Launch, DryRunsTimingChildDoesNotOutliveTheCli) {
  Workspace ws;
  WriteFile(ws.dir.File("seed.yaml"), "name: seed\ndata: {path: " + ws.dir.File("corpus.txt") +
                                          "}\nmodel: {hidden: 2000, vocab: 256}\n"
                                          "train: {batch: 100, seq: 200, steps: 100}\n" +
                                          std::string(kGrid));
  Process cli("dry-run",
              {Binary("ablate"), "launch", ws.dir.File("seed.yaml"), "--dry-run", "--threads", "1"},
              ws.logs);
  std::vector<pid_t> timing;
  ASSERT_TRUE(WaitUntil(
      [&] {
        timing = ChildrenRunning(cli.pid(), "time-steps");
        return !timing.empty() || !cli.running();
      },
      std::chrono::seconds(30)));
  ASSERT_EQ(timing.size(), 1u) << cli.Stderr();
  cli.Signal(SIGTERM);
  EXPECT_EQ(cli.Wait(std::chrono::seconds(10)), 128 + SIGTERM) << cli.Stderr();
  // Timing the 6 shapes takes about 10 s here; the child should go at once.
  EXPECT_TRUE(WaitUntil([&] { return Exited(timing[0]); }, std::chrono::seconds(3)))
      << "ablate-worker time-steps (pid " << timing[0] << ") outlived the CLI";
}

TEST(Launch, DryRunOnADeviceThisMachineLacksSaysSo) {
  Workspace ws;
  RunResult r = ws.Ablate({"launch", ws.spec, "--dry-run", "--device", "cuda:99"});
  EXPECT_EQ(r.exit_code, 1);
  ASSERT_EQ(testing::Lines(r.err).size(), 1u) << r.err;
  EXPECT_TRUE(std::regex_search(r.err, std::regex("^ablate launch: --device: \"cuda:99\"")))
      << r.err;
}

TEST(Launch, ABadSpecNamesFileLineAndColumnAndFails) {
  Workspace ws;
  const std::string bad = ws.dir.File("bad.yaml");
  WriteFile(bad,
            "name: bad\n"
            "data: {path: corpus.txt}\n"
            "grid:\n"
            "  cell: [lstm, gruu]\n");
  for (const char* flag : {"--dry-run", "--extend"}) {
    RunResult r = ws.Ablate({"launch", bad, flag, "--coordinator", "127.0.0.1:1"});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_TRUE(std::regex_search(r.err, std::regex("^ablate launch: " + bad + ":4:\\d+: .*gruu")))
        << r.err;
    EXPECT_EQ(testing::Lines(r.err).size(), 1u) << r.err;
  }
}

TEST(Status, JsonCountsFromTheCoordinatorAndFromItsDatabaseAfterItStopped) {
  Workspace ws;
  const std::string one = Counts("tiny", 18, 18, 0, 0, 0, 0);
  const std::string other = Counts("other", 18, 18, 0, 0, 0, 0);
  {
    Coordinator coordinator(ws.dir, ws.db);
    ASSERT_FALSE(coordinator.address.empty()) << coordinator.process.Stderr();
    WriteFile(ws.dir.File("other.yaml"), TinySpec(ws.dir.File("corpus.txt"), "other"));
    ASSERT_EQ(ws.Ablate({"launch", ws.spec, "--coordinator", coordinator.address}).exit_code, 0);
    ASSERT_EQ(ws.Ablate({"launch", ws.dir.File("other.yaml"), "--coordinator", coordinator.address})
                  .exit_code,
              0);

    RunResult named =
        ws.Ablate({"status", "tiny", "--format", "json", "--coordinator", coordinator.address});
    ASSERT_EQ(named.exit_code, 0) << named.err;
    EXPECT_EQ(Trim(named.out), one);
    RunResult by_id =
        ws.Ablate({"status", "2", "--format", "json", "--coordinator", coordinator.address});
    EXPECT_EQ(Trim(by_id.out), other) << by_id.err;
    RunResult all = ws.Ablate({"status", "--format", "json", "--coordinator", coordinator.address});
    EXPECT_EQ(Trim(all.out), "[" + one + "," + other + "]") << all.err;
    ASSERT_EQ(coordinator.Stop(), 0);
  }
  const std::string before = ReadFile(ws.db);
  RunResult named = ws.Ablate({"status", "tiny", "--format", "json", "--db", ws.db});
  ASSERT_EQ(named.exit_code, 0) << named.err;
  EXPECT_EQ(Trim(named.out), one);
  RunResult all = ws.Ablate({"status", "--format", "json", "--db", ws.db});
  EXPECT_EQ(Trim(all.out), "[" + one + "," + other + "]") << all.err;
  RunResult table = ws.Ablate({"status", "--db", ws.db});
  EXPECT_NE(table.out.find("tiny (sweep 1)"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("0/18 done"), std::string::npos) << table.out;
  RunResult list = ws.Ablate({"list", "--db", ws.db, "--format", "csv"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_EQ(testing::Lines(list.out).size(), 3u) << list.out;
  RunResult unknown = ws.Ablate({"status", "nosuch", "--db", ws.db});
  EXPECT_NE(unknown.exit_code, 0);
  EXPECT_NE(unknown.err.find("nosuch"), std::string::npos) << unknown.err;
  EXPECT_EQ(ReadFile(ws.db), before);
}

TEST(Status, ShowsEachRunningJobWithItsWorkerProgressRateBpcAndEta) {
  Workspace ws;
  // Heartbeats every second; far more steps than the test waits for.
  WriteFile(ws.dir.File("long.yaml"),
            "name: long\ndata: {path: " + ws.dir.File("corpus.txt") +
                "}\n"
                "model: {hidden: 16, vocab: 27}\n"
                "train: {batch: 2, seq: 16, steps: 1000000, log_every: 20, eval_every: 0}\n"
                "schedule: {lease_seconds: 3}\n"
                "grid:\n"
                "  cell: [gru]\n");
  Coordinator coordinator(ws.dir, ws.db);
  ASSERT_FALSE(coordinator.address.empty()) << coordinator.process.Stderr();
  const std::vector<std::string> at = {"--coordinator", coordinator.address};
  ASSERT_EQ(ws.Ablate({"launch", ws.dir.File("long.yaml"), at[0], at[1]}).exit_code, 0);
  Process worker("worker",
                 {Binary("ablate-worker"), "--coordinator", coordinator.address, "--threads", "1",
                  "--exit-when-idle", "--name", "runner"},
                 ws.logs);

  // job id, factor, worker, step/steps_total, rate, training bpc, ETA.
  const std::regex line(
      "\n +1 +gru +runner +[1-9]\\d*/1000000 +[\\d.]+ [kM]?B/s +\\d\\.\\d{3} +\\d+[dhms]");
  std::string shown;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    shown = ws.Ablate({"status", "long", at[0], at[1]}).out;
    if (std::regex_search(shown, line)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  EXPECT_TRUE(std::regex_search(shown, line)) << shown;
  EXPECT_NE(shown.find("0/1 done  1 running  0 pending  0 failed  ETA "), std::string::npos)
      << shown;

  // Cancelled, the job stops at the worker's next heartbeat and it exits.
  ASSERT_EQ(ws.Ablate({"cancel", "long", at[0], at[1]}).exit_code, 0);
  EXPECT_EQ(worker.Wait(std::chrono::seconds(60)), 0) << worker.Stderr();
  EXPECT_EQ(Trim(ws.Ablate({"status", "long", "--format", "json", at[0], at[1]}).out),
            Counts("long", 1, 0, 0, 0, 0, 1));
}

TEST(Status, DbThatIsMissingOrNotOursIsOneClearErrorAndStaysUntouched) {
  Workspace ws;
  const std::string missing = ws.dir.File("missing.db");
  RunResult r = ws.Ablate({"status", "--db", missing});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find(missing), std::string::npos) << r.err;
  EXPECT_EQ(testing::Lines(r.err).size(), 1u) << r.err;
  EXPECT_FALSE(std::filesystem::exists(missing));

  const std::string text = ws.dir.File("notes.txt");
  WriteFile(text, testing::EnglishText8(3));
  for (const char* command : {"status", "list", "workers"}) {
    RunResult foreign = ws.Ablate({command, "--db", text});
    EXPECT_NE(foreign.exit_code, 0) << command;
    EXPECT_NE(foreign.err.find(text), std::string::npos) << foreign.err;
    EXPECT_NE(foreign.err.find("not"), std::string::npos) << foreign.err;
    EXPECT_EQ(testing::Lines(foreign.err).size(), 1u) << foreign.err;
  }
  EXPECT_EQ(ReadFile(text), testing::EnglishText8(3));
  EXPECT_EQ(ws.Files(), (std::set<std::string>{"corpus.txt", "notes.txt", "tiny.yaml"}));
}

TEST(Control, CancelAndRetryChangeTheStatesOfAJobOrASweep) {
  Workspace ws;
  Coordinator coordinator(ws.dir, ws.db);
  ASSERT_FALSE(coordinator.address.empty()) << coordinator.process.Stderr();
  const std::vector<std::string> at = {"--coordinator", coordinator.address};
  auto ablate = [&](std::vector<std::string> args) {
    args.insert(args.end(), at.begin(), at.end());
    return ws.Ablate(args);
  };
  auto counts = [&] { return Trim(ablate({"status", "tiny", "--format", "json"}).out); };
  ASSERT_EQ(ablate({"launch", ws.spec}).exit_code, 0);

  RunResult one = ablate({"cancel", "--job", "3"});
  ASSERT_EQ(one.exit_code, 0) << one.err;
  EXPECT_EQ(Trim(one.out), "job 3: 1 job cancelled");
  EXPECT_EQ(counts(), Counts("tiny", 18, 17, 0, 0, 0, 1));
  EXPECT_EQ(QueryInt(ws.db, "SELECT count(*) FROM jobs WHERE id = 3 AND state = 'cancelled'"), 1);

  RunResult sweep = ablate({"cancel", "tiny"});
  ASSERT_EQ(sweep.exit_code, 0) << sweep.err;
  EXPECT_EQ(Trim(sweep.out), "sweep 1 ('tiny'): 17 jobs cancelled");
  EXPECT_EQ(counts(), Counts("tiny", 18, 0, 0, 0, 0, 18));

  RunResult retry_one = ablate({"retry", "--job", "5"});
  ASSERT_EQ(retry_one.exit_code, 0) << retry_one.err;
  EXPECT_EQ(counts(), Counts("tiny", 18, 1, 0, 0, 0, 17));
  RunResult retry_all = ablate({"retry", "1"});
  ASSERT_EQ(retry_all.exit_code, 0) << retry_all.err;
  EXPECT_EQ(Trim(retry_all.out), "sweep 1 ('1'): 17 jobs pending again");
  EXPECT_EQ(counts(), Counts("tiny", 18, 18, 0, 0, 0, 0));

  RunResult neither = ablate({"cancel"});
  EXPECT_NE(neither.exit_code, 0);
  RunResult both = ablate({"retry", "tiny", "--job", "2"});
  EXPECT_NE(both.exit_code, 0);
  RunResult unknown = ablate({"cancel", "nosuch"});
  EXPECT_NE(unknown.exit_code, 0);
  EXPECT_NE(unknown.err.find("nosuch"), std::string::npos) << unknown.err;
  // A database file is only ever read.
  RunResult db = ws.Ablate({"cancel", "tiny", "--db", ws.db});
  EXPECT_NE(db.exit_code, 0);
  EXPECT_EQ(counts(), Counts("tiny", 18, 18, 0, 0, 0, 0));
}

TEST(Workers, ListsTheRegisteredWorkers) {
  Workspace ws;
  Coordinator coordinator(ws.dir, ws.db);
  ASSERT_FALSE(coordinator.address.empty()) << coordinator.process.Stderr();
  // With nothing to do, a worker registers and exits.
  RunResult worker = RunCommand({Binary("ablate-worker"), "--coordinator", coordinator.address,
                                 "--threads", "1", "--exit-when-idle", "--name", "box-7/0"},
                                ws.logs);
  ASSERT_EQ(worker.exit_code, 0) << worker.err;

  RunResult json = ws.Ablate({"workers", "--format", "json", "--coordinator", coordinator.address});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  const auto workers = nlohmann::json::parse(json.out);
  ASSERT_EQ(workers.size(), 1u) << json.out;
  EXPECT_EQ(workers[0]["name"], "box-7/0");
  EXPECT_EQ(workers[0]["device"], "cpu");
  EXPECT_EQ(workers[0]["threads"], 1);
  EXPECT_TRUE(workers[0]["running_job_ids"].empty());

  RunResult table = ws.Ablate({"workers", "--coordinator", coordinator.address});
  EXPECT_NE(table.out.find("box-7/0"), std::string::npos) << table.out;
  ASSERT_EQ(coordinator.Stop(), 0);
  RunResult db = ws.Ablate({"workers", "--db", ws.db});
  EXPECT_NE(db.out.find("box-7/0"), std::string::npos) << db.out << db.err;
}

// Two sweeps of one job each, checkpointing every 10 of 30 steps: one keeps
// its checkpoints (the default), one keeps none.
std::string CheckpointSpec(const std::string& corpus, const std::string& name,
                           const std::string& keep) {
  return "name: " + name + "\ndata: {path: " + corpus +
         "}\n"
         "model: {hidden: 16, vocab: 27, cell: gru}\n"
         "train: {batch: 2, seq: 16, steps: 30, log_every: 10, eval_every: 15, eval_bytes: 300, "
         "checkpoint_every: 10}\n"
         "schedule: {keep_checkpoints: " +
         keep + "}\n";
}

TEST(Checkpoint, TrainedModelsComeOutLiveAndFromTheDatabaseAndResumeAtTheEnd) {
  Workspace ws;
  WriteFile(ws.dir.File("kept.yaml"), CheckpointSpec(ws.dir.File("corpus.txt"), "kept", "final"));
  WriteFile(ws.dir.File("dropped.yaml"),
            CheckpointSpec(ws.dir.File("corpus.txt"), "dropped", "none"));
  Coordinator coordinator(ws.dir, ws.db);
  ASSERT_FALSE(coordinator.address.empty()) << coordinator.process.Stderr();
  const std::vector<std::string> at = {"--coordinator", coordinator.address};
  for (const char* spec : {"kept.yaml", "dropped.yaml"}) {
    ASSERT_EQ(ws.Ablate({"launch", ws.dir.File(spec), at[0], at[1]}).exit_code, 0);
  }
  RunResult worker = RunCommand({Binary("ablate-worker"), "--coordinator", coordinator.address,
                                 "--threads", "1", "--exit-when-idle"},
                                ws.logs, std::chrono::seconds(180));
  ASSERT_EQ(worker.exit_code, 0) << worker.err;
  const int64_t kept = QueryInt(ws.db,
                                "SELECT j.id FROM jobs j JOIN sweeps s ON s.id = "
                                "j.sweep_id WHERE s.name = 'kept'");
  const int64_t dropped = QueryInt(ws.db,
                                   "SELECT j.id FROM jobs j JOIN sweeps s ON s.id = "
                                   "j.sweep_id WHERE s.name = 'dropped'");
  // The kept job's checkpoint is its trained model, at the last step.
  EXPECT_EQ(QueryInt(ws.db, "SELECT checkpoint_step FROM jobs WHERE id = " + std::to_string(kept)),
            30);
  const std::string checkpoints = ws.db + ".ckpt";
  EXPECT_EQ(testing::ListDir(checkpoints).size(), 1u) << "the dropped job's file is gone";

  RunResult live =
      ws.Ablate({"checkpoint", std::to_string(kept), "-o", ws.dir.File("live.ckpt"), at[0], at[1]});
  ASSERT_EQ(live.exit_code, 0) << live.err;
  EXPECT_NE(live.out.find("checkpoint at step 30"), std::string::npos) << live.out;
  RunResult none = ws.Ablate(
      {"checkpoint", std::to_string(dropped), "-o", ws.dir.File("none.ckpt"), at[0], at[1]});
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_EQ(testing::Lines(none.err).size(), 1u) << none.err;
  EXPECT_NE(none.err.find("job " + std::to_string(dropped) + " has no checkpoint"),
            std::string::npos)
      << none.err;
  EXPECT_FALSE(std::filesystem::exists(ws.dir.File("none.ckpt")));
  RunResult unknown =
      ws.Ablate({"checkpoint", "999", "-o", ws.dir.File("none.ckpt"), at[0], at[1]});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.err.find("no job with id 999"), std::string::npos) << unknown.err;
  // The coordinator's disk use, in `ablate status`.
  const auto status =
      nlohmann::json::parse(ws.Ablate({"status", "kept", "--format", "json", at[0], at[1]}).out);
  EXPECT_EQ(status["checkpoint_bytes"].get<int64_t>(),
            static_cast<int64_t>(ReadFile(ws.dir.File("live.ckpt")).size()));
  ASSERT_EQ(coordinator.Stop(), 0);

  RunResult from_file = ws.Ablate(
      {"checkpoint", std::to_string(kept), "-o", ws.dir.File("file.ckpt"), "--db", ws.db});
  ASSERT_EQ(from_file.exit_code, 0) << from_file.err;
  EXPECT_EQ(ReadFile(ws.dir.File("file.ckpt")), ReadFile(ws.dir.File("live.ckpt")));
  RunResult elsewhere = ws.Ablate({"checkpoint", std::to_string(kept), "-o", ws.dir.File("x.ckpt"),
                                   "--db", ws.db, "--checkpoint-dir", ws.dir.File("nowhere")});
  EXPECT_EQ(elsewhere.exit_code, 1);
  EXPECT_NE(elsewhere.err.find("--checkpoint-dir"), std::string::npos) << elsewhere.err;

  // The model trained to the end: resumed, it has no step left to take.
  WriteFile(ws.dir.File("run.yaml"),
            "data: {path: " + ws.dir.File("corpus.txt") +
                "}\n"
                "model: {hidden: 16, vocab: 27, cell: gru}\n"
                "train: {batch: 2, seq: 16, steps: 30, log_every: 10, eval_every: 15, "
                "eval_bytes: 300, checkpoint_every: 10}\n");
  RunResult resumed = RunCommand({Binary("ablate-worker"), "train", ws.dir.File("run.yaml"),
                                  "--resume", ws.dir.File("file.ckpt"), "--checkpoint",
                                  ws.dir.File("again.ckpt"), "--threads", "1", "--format", "json"},
                                 ws.logs, std::chrono::seconds(120));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("resumed at step 30"), std::string::npos) << resumed.err;
  const auto last = nlohmann::json::parse(testing::Lines(resumed.out).back());
  EXPECT_EQ(last["outcome"], "finished");
  EXPECT_EQ(last["step"], 30);
}

TEST(Local, TrainsTheGridWithTwoWorkersAndAgainResumesWithNothingToDo) {
  Workspace ws;
  RunResult run = ws.Ablate({"local", ws.spec, "--workers", "2", "--threads", "1", "--db", ws.db},
                            std::chrono::seconds(300));
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  // The coordinator closed the database cleanly after the results were read
  // (and before anything here opened it).
  EXPECT_FALSE(std::filesystem::exists(ws.db + "-wal"));
  EXPECT_NE(run.out.find("18 jobs created"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("18 of 18 jobs done, 0 failed"), std::string::npos) << run.out;
  // The results averaged by each factor: 6 jobs per cell and per initializer, 9 per layer norm.
  for (const char* level : {"lstm", "gru", "mgu", "xavier", "variance_scaling", "orthogonal"}) {
    EXPECT_TRUE(std::regex_search(run.out, std::regex(std::string("\n") + level + " +6 ")))
        << level << "\n"
        << run.out;
  }
  EXPECT_TRUE(std::regex_search(run.out, std::regex("\ntrue +9 "))) << run.out;
  EXPECT_EQ(QueryInt(ws.db, "SELECT count(*) FROM jobs WHERE state = 'done'"), 18);
  EXPECT_EQ(QueryInt(ws.db, "SELECT count(*) FROM workers"), 2);
  const int64_t points = QueryInt(ws.db, "SELECT count(*) FROM curve_points");
  const int64_t finished = QueryInt(ws.db, "SELECT sum(finished_ms) FROM jobs");

  RunResult again = ws.Ablate({"local", ws.spec, "--workers", "2", "--db", ws.db});
  ASSERT_EQ(again.exit_code, 0) << again.out << again.err;
  EXPECT_NE(again.out.find("0 jobs created, 18 already there"), std::string::npos) << again.out;
  EXPECT_NE(again.out.find("nothing to do"), std::string::npos) << again.out;
  EXPECT_EQ(QueryInt(ws.db, "SELECT count(*) FROM curve_points"), points);
  EXPECT_EQ(QueryInt(ws.db, "SELECT sum(finished_ms) FROM jobs"), finished);

  // Every sweep is finished, so watching ends at once.
  RunResult watch = ws.Ablate({"status", "--watch", "1", "--db", ws.db}, std::chrono::seconds(30));
  EXPECT_EQ(watch.exit_code, 0) << watch.err;
  EXPECT_NE(watch.out.find("18/18 done"), std::string::npos) << watch.out;
}

TEST(Local, AFailedJobMakesItExitNonZero) {
  Workspace ws;
  // Capitals are outside the 27-symbol alphabet: that job fails for good.
  WriteFile(ws.dir.File("raw.txt"), std::string(2000, 'A'));
  WriteFile(ws.dir.File("mixed.yaml"),
            "name: mixed\n"
            "model: {hidden: 8, vocab: 27}\n"
            "train: {batch: 2, seq: 8, steps: 10, log_every: 5, eval_every: 5, eval_bytes: 100}\n"
            "grid:\n"
            "  path: [" +
                ws.dir.File("corpus.txt") + ", " + ws.dir.File("raw.txt") + "]\n");
  RunResult run = ws.Ablate({"local", ws.dir.File("mixed.yaml"), "--workers", "1", "--db", ws.db},
                            std::chrono::seconds(120));
  EXPECT_EQ(run.exit_code, 1) << run.out << run.err;
  EXPECT_NE(run.out.find("1 of 2 jobs done, 1 failed"), std::string::npos) << run.out;
  EXPECT_EQ(QueryInt(ws.db, "SELECT count(*) FROM jobs WHERE state = 'failed'"), 1);
}

}  // namespace
}  // namespace ablate
