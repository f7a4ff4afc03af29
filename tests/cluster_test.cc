// Running across machines, with real processes on the CPU:
//  - the GPU supervisor (`ablate-worker --gpus`): children get their device,
//    name and CUDA_VISIBLE_DEVICES; SIGTERM reaches every child, which
//    checkpoints and releases its job; a crashed child is started again, one
//    that keeps crashing is given up. supervisor_harness stands in for
//    `ablate-worker --gpus` only where CUDA would be asked how many GPUs exist;
//  - the images' entrypoint scripts, run as the images run them;
//  - the Slurm job script, with a stand-in scontrol.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <regex>
#include <thread>

#include "data/text8.h"
#include "proto/ablate.grpc.pb.h"
#include "tests/support/process.h"
#include "tests/support/sqlite_query.h"

namespace ablate {
namespace {

using testing::Binary;
using testing::Process;
using testing::Query;
using testing::QueryInt;
using testing::TempDir;

struct Coordinator {
  Coordinator(const TempDir& dir, const std::string& db)
      : process("coordinator",
                {Binary("ablate-coordinator"), "--db", db, "--listen", "127.0.0.1:0"}, dir.path()) {
    std::smatch m;
    const std::string line = process.WaitForLine("listening on");
    if (std::regex_search(line, m, std::regex("listening on (\\S+)"))) address = m[1];
  }
  Process process;
  std::string address;
};

// Launches a sweep of the two cells LSTM and GRU on a small corpus, each job
// `steps` long, and returns how many jobs it created.
int LaunchSweep(const TempDir& dir, const std::string& address, int steps) {
  std::string corpus;
  for (int i = 0; i < 400; ++i)
    corpus += text8::Clean("the quick brown fox jumps over the lazy dog ");
  testing::WriteFile(dir.File("corpus.txt"), corpus);
  v1::LaunchRequest launch;
  launch.set_spec_text(
      "name: cells\n"
      "data: {path: " +
      dir.File("corpus.txt") +
      "}\n"
      "model: {hidden: 32, vocab: 27}\n"
      "train: {batch: 4, seq: 32, steps: " +
      std::to_string(steps) + ", log_every: 20, eval_every: " + std::to_string(steps) +
      ", eval_bytes: 500}\n"
      "grid:\n"
      "  cell: [lstm, gru]\n");
  launch.set_filename("cells.yaml");
  v1::LaunchResponse launched;
  grpc::ClientContext context;
  auto stub = v1::Sweeps::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  if (!stub->Launch(&context, launch, &launched).ok()) return -1;
  return launched.jobs_created();
}

// Long enough to be mid-training whenever a test stops it.
constexpr int kLongJob = 1000000;

std::vector<std::string> HarnessArgs(const std::string& gpus, int device_count,
                                     std::vector<std::string> worker_args,
                                     std::vector<std::string> extra = {}) {
  std::vector<std::string> argv = {ABLATE_SUPERVISOR_HARNESS,
                                   "--worker",
                                   Binary("ablate-worker"),
                                   "--name",
                                   "box",
                                   "--gpus",
                                   gpus,
                                   "--device-count",
                                   std::to_string(device_count)};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back("--");
  argv.insert(argv.end(), worker_args.begin(), worker_args.end());
  return argv;
}

// The children the supervisor reported starting, in order: (label, pid).
std::vector<std::pair<std::string, pid_t>> Started(const Process& supervisor) {
  std::vector<std::pair<std::string, pid_t>> started;
  const std::regex started_line("started (\\S+) as pid (\\d+)");
  for (const std::string& line : testing::Lines(supervisor.Stderr())) {
    std::smatch m;
    if (std::regex_search(line, m, started_line)) started.emplace_back(m[1], std::stoi(m[2]));
  }
  return started;
}

// Waits until `done` holds, checking every 50 ms; false on timeout.
template <typename Predicate>
bool WaitFor(Predicate done, std::chrono::seconds timeout = std::chrono::seconds(60)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return true;
}

// /proc/PID/cmdline or /proc/PID/environ as its NUL-separated entries.
std::vector<std::string> ProcEntries(pid_t pid, const std::string& file) {
  const std::string text = testing::ReadFile("/proc/" + std::to_string(pid) + "/" + file);
  std::vector<std::string> entries;
  size_t start = 0;
  for (size_t end; (end = text.find('\0', start)) != std::string::npos; start = end + 1) {
    entries.push_back(text.substr(start, end - start));
  }
  return entries;
}

// The arguments of child `pid` once it runs ablate-worker: right after fork
// it is still a copy of its parent. Empty if it never does.
std::vector<std::string> WorkerArgs(pid_t pid) {
  std::vector<std::string> argv;
  WaitFor([&] {
    argv = ProcEntries(pid, "cmdline");
    return !argv.empty() && argv[0] == Binary("ablate-worker");
  });
  return argv.empty() || argv[0] != Binary("ablate-worker") ? std::vector<std::string>{} : argv;
}

// CUDA_VISIBLE_DEVICES=... as the child got it (the worker may re-exec itself
// with more variables, never fewer).
std::string PinnedGpu(pid_t pid) {
  for (const std::string& entry : ProcEntries(pid, "environ")) {
    if (entry.rfind("CUDA_VISIBLE_DEVICES=", 0) == 0) return entry;
  }
  return "";
}

bool Contains(const std::vector<std::string>& entries, const std::vector<std::string>& run) {
  return std::search(entries.begin(), entries.end(), run.begin(), run.end()) != entries.end();
}

TEST(GpuSupervisor, EachChildIsPinnedAndNamedAndSigtermMakesEveryOneRelease) {
  TempDir dir;
  const std::string db = dir.File("sweep.db");
  Coordinator coordinator(dir, db);
  ASSERT_FALSE(coordinator.address.empty()) << coordinator.process.Stderr();
  ASSERT_EQ(LaunchSweep(dir, coordinator.address, kLongJob), 2);

  Process supervisor(
      "supervisor",
      HarnessArgs("0,2", 3,
                  {"--coordinator", coordinator.address, "--threads", "1", "--poll", "0.2"}),
      dir.path());
  ASSERT_TRUE(WaitFor([&] { return Started(supervisor).size() == 2; })) << supervisor.Stderr();
  const auto children = Started(supervisor);
  EXPECT_EQ(children[0].first, "gpu0");
  EXPECT_EQ(children[1].first, "gpu2");
  for (const auto& [label, pid] : children) {
    const auto argv = WorkerArgs(pid);
    ASSERT_FALSE(argv.empty()) << label << " never ran ablate-worker";
    EXPECT_TRUE(Contains(argv, {"--coordinator", coordinator.address, "--threads", "1"}));
    EXPECT_TRUE(Contains(argv, {"--device", "cpu", "--name", "box/" + label}))
        << testing::ReadFile("/proc/" + std::to_string(pid) + "/cmdline");
    EXPECT_EQ(PinnedGpu(pid), "CUDA_VISIBLE_DEVICES=" + label.substr(3));
  }

  // Both train, under their own names.
  const std::string running =
      "SELECT group_concat(name, ',') FROM (SELECT w.name FROM jobs j JOIN workers w ON "
      "w.id = j.lease_owner WHERE j.state = 'running' AND j.step > 0 ORDER BY w.name)";
  ASSERT_TRUE(WaitFor([&] { return Query(db, running)[0][0] == "box/gpu0,box/gpu2"; }))
      << supervisor.Stderr();

  supervisor.Signal(SIGTERM);
  EXPECT_EQ(supervisor.Wait(std::chrono::seconds(120)), 0) << supervisor.Stderr();
  const std::string err = supervisor.Stderr();
  EXPECT_NE(err.find("gpu0 exited with 0"), std::string::npos) << err;
  EXPECT_NE(err.find("gpu2 exited with 0"), std::string::npos) << err;
  // Each handed its job back with a checkpoint to resume from.
  EXPECT_TRUE(WaitFor([&] {
    return QueryInt(db,
                    "SELECT count(*) FROM jobs WHERE state = 'pending' AND "
                    "checkpoint_step > 0") == 2;
  })) << err;
  // Children's lines reach the supervisor's stderr under their label.
  EXPECT_NE(err.find("[gpu0] "), std::string::npos);
  EXPECT_NE(err.find("[gpu2] "), std::string::npos);
}

TEST(GpuSupervisor, JobsPerGpuStartsThatManyWorkersOnEachGpuEachLeasingItsOwnJob) {
  TempDir dir;
  const std::string db = dir.File("sweep.db");
  Coordinator coordinator(dir, db);
  ASSERT_FALSE(coordinator.address.empty()) << coordinator.process.Stderr();
  ASSERT_EQ(LaunchSweep(dir, coordinator.address, kLongJob), 2);

  Process supervisor(
      "supervisor",
      HarnessArgs("1", 2, {"--coordinator", coordinator.address, "--threads", "1", "--poll", "0.2"},
                  {"--jobs-per-gpu", "2"}),
      dir.path());
  ASSERT_TRUE(WaitFor([&] { return Started(supervisor).size() == 2; })) << supervisor.Stderr();
  const auto children = Started(supervisor);
  EXPECT_EQ(children[0].first, "gpu1.0");
  EXPECT_EQ(children[1].first, "gpu1.1");
  EXPECT_NE(children[0].second, children[1].second);
  for (const auto& [label, pid] : children) {
    const auto argv = WorkerArgs(pid);
    ASSERT_FALSE(argv.empty()) << label << " never ran ablate-worker";
    EXPECT_TRUE(Contains(argv, {"--device", "cpu", "--name", "box/" + label}))
        << testing::ReadFile("/proc/" + std::to_string(pid) + "/cmdline");
    EXPECT_EQ(PinnedGpu(pid), "CUDA_VISIBLE_DEVICES=1") << label;
  }

  // Two workers on the one GPU, each training a job of its own.
  const std::string running =
      "SELECT group_concat(name, ',') FROM (SELECT w.name FROM jobs j JOIN workers w ON "
      "w.id = j.lease_owner WHERE j.state = 'running' AND j.step > 0 ORDER BY w.name)";
  ASSERT_TRUE(WaitFor([&] { return Query(db, running)[0][0] == "box/gpu1.0,box/gpu1.1"; }))
      << supervisor.Stderr();

  supervisor.Signal(SIGTERM);
  EXPECT_EQ(supervisor.Wait(std::chrono::seconds(120)), 0) << supervisor.Stderr();
  const std::string err = supervisor.Stderr();
  EXPECT_NE(err.find("gpu1.0 exited with 0"), std::string::npos) << err;
  EXPECT_NE(err.find("gpu1.1 exited with 0"), std::string::npos) << err;
  EXPECT_NE(err.find("[gpu1.0] "), std::string::npos);
  EXPECT_NE(err.find("[gpu1.1] "), std::string::npos);
}

TEST(GpuSupervisor, ACrashedChildIsStartedAgainWithTheSameFlags) {
  TempDir dir;
  Coordinator coordinator(dir, dir.File("idle.db"));
  ASSERT_FALSE(coordinator.address.empty()) << coordinator.process.Stderr();
  Process supervisor("supervisor",
                     HarnessArgs("all", 2, {"--coordinator", coordinator.address, "--threads", "1"},
                                 {"--backoff-ms", "100"}),
                     dir.path());
  ASSERT_TRUE(WaitFor([&] { return Started(supervisor).size() == 2; })) << supervisor.Stderr();
  const auto [label, pid] = Started(supervisor)[0];
  const auto argv = WorkerArgs(pid);
  ASSERT_FALSE(argv.empty());
  const std::string pinned = PinnedGpu(pid);
  EXPECT_EQ(pinned, "CUDA_VISIBLE_DEVICES=0");
  ASSERT_EQ(kill(pid, SIGKILL), 0);

  ASSERT_TRUE(WaitFor([&] { return Started(supervisor).size() == 3; })) << supervisor.Stderr();
  const auto [again_label, again_pid] = Started(supervisor)[2];
  EXPECT_EQ(again_label, label);
  EXPECT_NE(again_pid, pid);
  EXPECT_EQ(WorkerArgs(again_pid), argv);
  EXPECT_EQ(PinnedGpu(again_pid), pinned);
  EXPECT_NE(supervisor.Stderr().find("restarting it in 100 ms"), std::string::npos);

  // A clean stop after a recovered crash is a clean exit.
  supervisor.Signal(SIGTERM);
  EXPECT_EQ(supervisor.Wait(std::chrono::seconds(60)), 0) << supervisor.Stderr();
}

TEST(GpuSupervisor, AChildThatKeepsCrashingIsGivenUpAndTheExitSaysSo) {
  TempDir dir;
  Process supervisor(
      "supervisor",
      HarnessArgs("0", 1, {"--no-such-flag"}, {"--backoff-ms", "10", "--max-restarts", "2"}),
      dir.path());
  EXPECT_EQ(supervisor.Wait(std::chrono::seconds(60)), 1) << supervisor.Stderr();
  EXPECT_EQ(Started(supervisor).size(), 3u) << supervisor.Stderr();
  const std::string err = supervisor.Stderr();
  EXPECT_NE(err.find("3 crashes in a row, leaving it stopped"), std::string::npos) << err;
  // The child's own complaint, under its label.
  EXPECT_NE(err.find("[gpu0] The following argument was not expected: --no-such-flag"),
            std::string::npos)
      << err;
}

TEST(GpuSupervisor, ExitsOnceEveryChildHasFinished) {
  TempDir dir;
  Coordinator coordinator(dir, dir.File("empty.db"));
  ASSERT_FALSE(coordinator.address.empty()) << coordinator.process.Stderr();
  Process supervisor(
      "supervisor",
      HarnessArgs("all", 2,
                  {"--coordinator", coordinator.address, "--threads", "1", "--exit-when-idle"}),
      dir.path());
  EXPECT_EQ(supervisor.Wait(std::chrono::seconds(60)), 0) << supervisor.Stderr();
  EXPECT_EQ(Started(supervisor).size(), 2u);
}

TEST(WorkerGpus, AllOnAMachineWithoutGpusIsAClearError) {
  if (access("/dev/nvidiactl", F_OK) == 0) GTEST_SKIP() << "this machine has an NVIDIA GPU";
  TempDir dir;
  auto result = testing::RunCommand(
      {Binary("ablate-worker"), "--gpus", "all", "--coordinator", "127.0.0.1:1"}, dir.path());
  EXPECT_EQ(result.exit_code, 1) << result.err;
  EXPECT_NE(result.err.find("--gpus all: no GPU is visible"), std::string::npos) << result.err;
  EXPECT_NE(result.err.find("--device cpu"), std::string::npos) << result.err;
}

TEST(WorkerGpus, ExcludesDeviceAndTheSubcommands) {
  TempDir dir;
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--gpus", "all", "--device", "cpu"},
        std::vector<std::string>{"--gpus", "all", "train", "x.yaml"}}) {
    std::vector<std::string> argv = {Binary("ablate-worker")};
    argv.insert(argv.end(), args.begin(), args.end());
    auto result = testing::RunCommand(argv, dir.path());
    EXPECT_NE(result.exit_code, 0);
    EXPECT_NE(result.err.find("--gpus"), std::string::npos) << result.err;
  }
}

TEST(WorkerGpus, JobsPerGpuRefusesBadValuesAndUseWithoutGpusInOneLine) {
  TempDir dir;
  const std::string expected_range = ": expected a whole number of workers per GPU, 1 to 64\n";
  const std::string expected_gpus =
      ": only with --gpus: it is how many workers share each of those GPUs\n";
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--gpus", "all", "--jobs-per-gpu", "0"}, "--jobs-per-gpu 0" + expected_range},
      {{"--gpus", "all", "--jobs-per-gpu", "-1"}, "--jobs-per-gpu -1" + expected_range},
      {{"--gpus", "all", "--jobs-per-gpu=65"}, "--jobs-per-gpu 65" + expected_range},
      {{"--gpus", "all", "--jobs-per-gpu", "2.5"}, "--jobs-per-gpu 2.5" + expected_range},
      {{"--gpus", "all", "--jobs-per-gpu", "two"}, "--jobs-per-gpu two" + expected_range},
      {{"--jobs-per-gpu", "2"}, "--jobs-per-gpu 2" + expected_gpus},
      {{"--device", "cpu", "--jobs-per-gpu", "1"}, "--jobs-per-gpu 1" + expected_gpus},
  };
  for (const auto& [args, expected] : cases) {
    std::vector<std::string> argv = {Binary("ablate-worker"), "--coordinator", "127.0.0.1:1"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto result = testing::RunCommand(argv, dir.path());
    EXPECT_EQ(result.exit_code, 2) << args.back() << ": " << result.err;
    EXPECT_EQ(result.err, "ablate-worker: " + expected) << args.back();
  }
}

// --- The images' entrypoints ------------------------------------------------

// The source tree, compiled in: CTest's per-test environment carries only the
// first of the variables AblateTest.cmake sets.
std::string Script(const std::string& path) { return testing::SourceDir() + "/" + path; }

// The environment a container would give the scripts: every ABLATE_ setting
// they map cleared (so the developer's own shell does not leak in), then
// `settings`. ($ABLATE_TOKEN stays as it is: the binaries read it themselves,
// and an empty one is a malformed token.)
std::map<std::string, std::string> ContainerEnv(std::map<std::string, std::string> settings) {
  std::map<std::string, std::string> env = {{"ABLATE_BIN_DIR", testing::BinDir()}};
  for (const char* name : {"ABLATE_DB",       "ABLATE_LISTEN",          "ABLATE_CHECKPOINT_DIR",
                           "ABLATE_SYNC",     "ABLATE_LOG_LEVEL",       "ABLATE_TOKEN_FILE",
                           "ABLATE_TLS_CERT", "ABLATE_TLS_KEY",         "ABLATE_TLS_CLIENT_CA",
                           "ABLATE_TLS_CA",   "ABLATE_TLS_SERVER_NAME", "ABLATE_COORDINATOR",
                           "ABLATE_GPUS",     "ABLATE_DEVICE",          "ABLATE_THREADS",
                           "ABLATE_DATA_DIR", "ABLATE_WORK_DIR",        "ABLATE_NAME",
                           "ABLATE_POLL",     "ABLATE_EXIT_WHEN_IDLE",  "ABLATE_WORKER_CMD",
                           "ABLATE_HOME",     "ABLATE_JOBS_PER_GPU"}) {
    env[name] = "";
  }
  for (auto& [key, value] : settings) env[key] = value;
  return env;
}

// The coordinator started through its image's entrypoint on a free port.
struct EntrypointCoordinator {
  EntrypointCoordinator(const TempDir& dir, std::map<std::string, std::string> settings)
      : port(testing::FreePort()),
        process("coordinator", {Script("scripts/coordinator-entrypoint.sh")}, dir.path(),
                ContainerEnv(
                    Merge(settings, {{"ABLATE_LISTEN", "127.0.0.1:" + std::to_string(port)}}))) {
    std::smatch m;
    const std::string line = process.WaitForLine("listening on");
    if (std::regex_search(line, m, std::regex("listening on (\\S+)"))) address = m[1];
  }
  static std::map<std::string, std::string> Merge(std::map<std::string, std::string> a,
                                                  const std::map<std::string, std::string>& b) {
    a.insert(b.begin(), b.end());
    return a;
  }
  int port;
  Process process;
  std::string address;
};

TEST(Entrypoints, ACoordinatorAndTwoWorkersStartedAsTheImagesStartThemFinishASweep) {
  TempDir dir;
  // A fresh volume: the database's folder does not exist yet.
  const std::string db = dir.File("volume/db/ablate.db");
  EntrypointCoordinator coordinator(dir, {{"ABLATE_DB", db}, {"ABLATE_LOG_LEVEL", "debug"}});
  ASSERT_FALSE(coordinator.address.empty()) << coordinator.process.Stderr();
  EXPECT_EQ(coordinator.address, "127.0.0.1:" + std::to_string(coordinator.port));
  ASSERT_EQ(LaunchSweep(dir, coordinator.address, 40), 2);

  std::vector<std::unique_ptr<Process>> workers;
  for (const std::string name : {"w0", "w1"}) {
    workers.push_back(std::make_unique<Process>(
        name, std::vector<std::string>{Script("scripts/worker-entrypoint.sh")}, dir.path(),
        ContainerEnv({{"ABLATE_COORDINATOR", coordinator.address},
                      {"ABLATE_DEVICE", "cpu"},
                      {"ABLATE_THREADS", "1"},
                      {"ABLATE_NAME", name},
                      {"ABLATE_POLL", "0.2"},
                      {"ABLATE_DATA_DIR", dir.File("data")},
                      {"ABLATE_WORK_DIR", dir.File("work-" + name)},
                      {"ABLATE_EXIT_WHEN_IDLE", "true"}})));
  }
  for (auto& w : workers) {
    EXPECT_EQ(w->Wait(std::chrono::seconds(240)), 0) << w->name() << ": " << w->Stderr();
  }
  EXPECT_EQ(QueryInt(db, "SELECT count(*) FROM jobs WHERE state = 'done'"), 2);
  EXPECT_EQ(Query(db,
                  "SELECT group_concat(name, ',') FROM (SELECT name FROM workers ORDER BY "
                  "name)")[0][0],
            "w0,w1");
  // The entrypoint exec'd the coordinator: the container's SIGTERM reaches it.
  coordinator.process.Signal(SIGTERM);
  EXPECT_EQ(coordinator.process.Wait(std::chrono::seconds(30)), 0) << coordinator.process.Stderr();
}

TEST(Entrypoints, AMissingOrBadSettingIsOneClearLine) {
  TempDir dir;
  auto coordinator = testing::RunCommand({Script("scripts/coordinator-entrypoint.sh")}, dir.path(),
                                         std::chrono::seconds(30), ContainerEnv({}));
  EXPECT_NE(coordinator.exit_code, 0);
  EXPECT_NE(coordinator.err.find("set ABLATE_DB"), std::string::npos) << coordinator.err;

  auto worker = testing::RunCommand({Script("scripts/worker-entrypoint.sh")}, dir.path(),
                                    std::chrono::seconds(30), ContainerEnv({}));
  EXPECT_NE(worker.exit_code, 0);
  EXPECT_NE(worker.err.find("set ABLATE_COORDINATOR"), std::string::npos) << worker.err;

  auto idle = testing::RunCommand(
      {Script("scripts/worker-entrypoint.sh")}, dir.path(), std::chrono::seconds(30),
      ContainerEnv({{"ABLATE_COORDINATOR", "127.0.0.1:1"}, {"ABLATE_EXIT_WHEN_IDLE", "maybe"}}));
  EXPECT_EQ(idle.exit_code, 2);
  EXPECT_NE(idle.err.find("ABLATE_EXIT_WHEN_IDLE=maybe"), std::string::npos) << idle.err;
}

TEST(Entrypoints, JobsPerGpuReachesTheWorker) {
  // Refused by the worker itself, before it looks for a GPU: the setting got through.
  TempDir dir;
  auto worker = testing::RunCommand({Script("scripts/worker-entrypoint.sh")}, dir.path(),
                                    std::chrono::seconds(30),
                                    ContainerEnv({{"ABLATE_COORDINATOR", "127.0.0.1:1"},
                                                  {"ABLATE_GPUS", "all"},
                                                  {"ABLATE_JOBS_PER_GPU", "0"}}));
  EXPECT_EQ(worker.exit_code, 2) << worker.err;
  EXPECT_NE(worker.err.find("--jobs-per-gpu 0: expected"), std::string::npos) << worker.err;

  auto without_gpus = testing::RunCommand({Script("scripts/worker-entrypoint.sh")}, dir.path(),
                                          std::chrono::seconds(30),
                                          ContainerEnv({{"ABLATE_COORDINATOR", "127.0.0.1:1"},
                                                        {"ABLATE_DEVICE", "cpu"},
                                                        {"ABLATE_JOBS_PER_GPU", "4"}}));
  EXPECT_EQ(without_gpus.exit_code, 2) << without_gpus.err;
  EXPECT_NE(without_gpus.err.find("--jobs-per-gpu 4: only with --gpus"), std::string::npos)
      << without_gpus.err;
}

TEST(Entrypoints, TheHealthCheckPassesWhileTheCoordinatorServes) {
  TempDir dir;
  EntrypointCoordinator coordinator(dir, {{"ABLATE_DB", dir.File("ablate.db")}});
  ASSERT_FALSE(coordinator.address.empty()) << coordinator.process.Stderr();
  auto env = ContainerEnv({{"ABLATE_LISTEN", "0.0.0.0:" + std::to_string(coordinator.port)}});
  auto healthy = testing::RunCommand({Script("scripts/coordinator-entrypoint.sh"), "health"},
                                     dir.path(), std::chrono::seconds(30), env);
  EXPECT_EQ(healthy.exit_code, 0) << healthy.err;

  coordinator.process.Signal(SIGTERM);
  ASSERT_EQ(coordinator.process.Wait(std::chrono::seconds(30)), 0);
  auto gone = testing::RunCommand({Script("scripts/coordinator-entrypoint.sh"), "health"},
                                  dir.path(), std::chrono::seconds(60), env);
  EXPECT_NE(gone.exit_code, 0);
}

TEST(Entrypoints, TheTokenFileReachesTheCoordinatorAndTheWorkers) {
  TempDir dir;
  testing::WriteFile(dir.File("token"), "s3cret-token-for-the-test\n");
  EntrypointCoordinator coordinator(
      dir, {{"ABLATE_DB", dir.File("ablate.db")}, {"ABLATE_TOKEN_FILE", dir.File("token")}});
  ASSERT_FALSE(coordinator.address.empty()) << coordinator.process.Stderr();
  ASSERT_EQ(LaunchSweep(dir, coordinator.address, 20), -1) << "a launch without the token";

  auto worker = testing::RunCommand({Script("scripts/worker-entrypoint.sh")}, dir.path(),
                                    std::chrono::seconds(60),
                                    ContainerEnv({{"ABLATE_COORDINATOR", coordinator.address},
                                                  {"ABLATE_TOKEN_FILE", dir.File("token")},
                                                  {"ABLATE_DEVICE", "cpu"},
                                                  {"ABLATE_THREADS", "1"},
                                                  {"ABLATE_NAME", "with-token"},
                                                  {"ABLATE_EXIT_WHEN_IDLE", "1"}}));
  EXPECT_EQ(worker.exit_code, 0) << worker.err;
  EXPECT_EQ(
      QueryInt(dir.File("ablate.db"), "SELECT count(*) FROM workers WHERE name = 'with-token'"), 1);
}

TEST(Entrypoints, TlsSettingsReachTheCoordinatorItsHealthCheckAndTheWorkers) {
  ASSERT_EQ(access("/usr/bin/openssl", X_OK), 0) << "scripts/setup.sh installs openssl";
  TempDir dir;
  auto made = testing::RunCommand(
      {"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
       "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout",
       dir.File("key.pem"), "-out", dir.File("cert.pem")},
      dir.path());
  ASSERT_EQ(made.exit_code, 0) << made.err;
  const std::map<std::string, std::string> tls = {{"ABLATE_TLS_CERT", dir.File("cert.pem")},
                                                  {"ABLATE_TLS_KEY", dir.File("key.pem")}};
  auto settings = tls;
  settings["ABLATE_DB"] = dir.File("ablate.db");
  EntrypointCoordinator coordinator(dir, settings);
  ASSERT_FALSE(coordinator.address.empty()) << coordinator.process.Stderr();

  // The image's HEALTHCHECK, with the same environment as the coordinator.
  settings["ABLATE_LISTEN"] = coordinator.address;
  auto healthy = testing::RunCommand({Script("scripts/coordinator-entrypoint.sh"), "health"},
                                     dir.path(), std::chrono::seconds(30), ContainerEnv(settings));
  EXPECT_EQ(healthy.exit_code, 0) << healthy.out << healthy.err;

  auto worker = testing::RunCommand({Script("scripts/worker-entrypoint.sh")}, dir.path(),
                                    std::chrono::seconds(60),
                                    ContainerEnv({{"ABLATE_COORDINATOR", coordinator.address},
                                                  {"ABLATE_TLS_CA", dir.File("cert.pem")},
                                                  {"ABLATE_DEVICE", "cpu"},
                                                  {"ABLATE_THREADS", "1"},
                                                  {"ABLATE_NAME", "over-tls"},
                                                  {"ABLATE_EXIT_WHEN_IDLE", "1"}}));
  EXPECT_EQ(worker.exit_code, 0) << worker.err;
  EXPECT_EQ(QueryInt(dir.File("ablate.db"), "SELECT count(*) FROM workers WHERE name = 'over-tls'"),
            1);
}

// --- The Slurm job script -----------------------------------------------------

// Runs docker/slurm/ablate-worker.sbatch as Slurm would run one array task,
// with a stand-in scontrol that records its arguments in scontrol.log.
struct SlurmTask {
  SlurmTask(const TempDir& dir, const std::string& coordinator)
      : process("slurm-task", {Script("docker/slurm/ablate-worker.sbatch")}, dir.path(),
                Env(dir, coordinator)) {}

  static std::map<std::string, std::string> Env(const TempDir& dir,
                                                const std::string& coordinator) {
    std::filesystem::create_directories(dir.File("bin"));
    testing::WriteFile(dir.File("bin/scontrol"),
                       "#!/bin/sh\necho \"$@\" >> " + dir.File("scontrol.log") + "\n");
    std::filesystem::permissions(dir.File("bin/scontrol"), std::filesystem::perms::owner_all);
    const char* path = std::getenv("PATH");
    // No GPU here: one worker on the CPU instead of --gpus all.
    return ContainerEnv({{"PATH", dir.File("bin") + ":" + (path ? path : "/usr/bin:/bin")},
                         {"ABLATE_COORDINATOR", coordinator},
                         {"ABLATE_HOME", testing::SourceDir()},
                         {"ABLATE_GPUS", ""},
                         {"ABLATE_DEVICE", "cpu"},
                         {"ABLATE_THREADS", "1"},
                         {"ABLATE_POLL", "0.2"},
                         {"ABLATE_EXIT_WHEN_IDLE", "0"},
                         {"SLURM_JOB_ID", "4242"},
                         {"SLURM_ARRAY_JOB_ID", "4240"},
                         {"SLURM_ARRAY_TASK_ID", "2"}});
  }
  Process process;
};

// Waits until the task's worker trains, under the name that survives requeues.
bool TaskTrains(const std::string& db) {
  return WaitFor([&] {
    return QueryInt(db,
                    "SELECT count(*) FROM jobs j JOIN workers w ON w.id = j.lease_owner "
                    "WHERE j.state = 'running' AND j.step > 0 AND "
                    "w.name = 'slurm-4240-2'") == 1;
  });
}

// A coordinator with a sweep of two long jobs, and a Slurm task training one.
class SlurmScript : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(coordinator_.address.empty()) << coordinator_.process.Stderr();
    ASSERT_EQ(LaunchSweep(dir_, coordinator_.address, kLongJob), 2);
    task_ = std::make_unique<SlurmTask>(dir_, coordinator_.address);
    ASSERT_TRUE(TaskTrains(db_)) << task_->process.Stderr();
  }

  // Whether the job went back to pending with a checkpoint to resume from.
  bool JobReleasedWithCheckpoint() {
    return WaitFor([&] {
      return QueryInt(db_,
                      "SELECT count(*) FROM jobs WHERE state = 'pending' AND "
                      "checkpoint_step > 0") == 1;
    });
  }

  TempDir dir_;
  const std::string db_ = dir_.File("sweep.db");
  Coordinator coordinator_{dir_, db_};
  std::unique_ptr<SlurmTask> task_;
};

TEST_F(SlurmScript, TheTimeLimitWarningReleasesTheJobAndRequeuesTheTask) {
  task_->process.Signal(SIGUSR1);  // --signal=B:USR1@120
  EXPECT_EQ(task_->process.Wait(std::chrono::seconds(120)), 0) << task_->process.Stderr();
  EXPECT_EQ(testing::ReadFile(dir_.File("scontrol.log")), "requeue 4242\n");
  EXPECT_TRUE(JobReleasedWithCheckpoint());
}

TEST_F(SlurmScript, ACancelReleasesTheJobWithoutRequeueing) {
  task_->process.Signal(SIGTERM);  // scancel, or preemption (Slurm requeues those itself)
  EXPECT_EQ(task_->process.Wait(std::chrono::seconds(120)), 0) << task_->process.Stderr();
  EXPECT_FALSE(std::filesystem::exists(dir_.File("scontrol.log")));
  EXPECT_TRUE(JobReleasedWithCheckpoint());
}

// --- The deployment lint -----------------------------------------------------

// One problem planted in an otherwise clean copy of the deployment files, and
// what the lint must say about it.
struct Planted {
  std::string file, contents, expected;
  bool executable = true;
};

TEST(DeployLint, FailsOnWhatWouldBreakADeploy) {
  const std::string dockerfile_head = "FROM debian:bookworm-20251229-slim\n";
  const std::string deployment =
      "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: w\nspec:\n"
      "  selector:\n    matchLabels:\n      app: w\n  template:\n    metadata:\n"
      "      labels:\n        app: w\n    spec:\n      containers:\n        - name: w\n"
      "          image: ablate-worker-cuda:0.1.0\n";
  const std::vector<Planted> problems = {
      {"docker/a.Dockerfile", dockerfile_head + "COPY scripts/missing.sh /usr/local/bin/\n",
       "COPY scripts/missing.sh: no such file"},
      {"docker/a.Dockerfile", "FROM debian:latest\n", "pin a dated tag"},
      {"docker/a.Dockerfile", dockerfile_head + "ENTRYPOINT [\"worker-entrypoint.sh\"]\n",
       "which no COPY provides"},
      {"docker/a.Dockerfile",
       dockerfile_head + "RUN apt-get update && apt-get install -y libboost-dev\n",
       "libboost-dev is not in scripts/setup.sh"},
      {"scripts/new-entrypoint.sh", "#!/usr/bin/env bash\nif true; then\n", "bash -n"},
      {"docker/slurm/a.sbatch", "#!/usr/bin/env bash\nset -e\n#SBATCH --requeue\n",
       "comes after the first command"},
      {"docker/k8s/a.yaml",
       std::regex_replace(deployment, std::regex("      app: w\n  template"),
                          "      app: other\n  template"),
       "does not match the pod labels"},
      {"docker/k8s/a.yaml",
       deployment + "          env:\n            - name: ABLATE_COORDINATER\n"
                    "              value: c:1\n",
       "ABLATE_COORDINATER is read by no entrypoint script"},
      {"docker/k8s/a.yaml",
       deployment + "          resources:\n            limits:\n"
                    "              nvidia.com/gpu: 1\n",
       "too short to checkpoint"},
      {"docker/compose.yaml", "services:\n  w:\n    image: x:1\n    depends_on: [nobody]\n",
       "unknown service nobody"},
  };
  // The same copy without a planted problem passes: each failure below is
  // the planted one.
  auto fixture = [](const TempDir& root) {
    std::filesystem::create_directories(root.File("scripts"));
    for (const char* script : {"scripts/coordinator-entrypoint.sh", "scripts/worker-entrypoint.sh",
                               "scripts/setup.sh"}) {
      std::filesystem::copy_file(Script(script), root.File(script));
    }
  };
  {
    TempDir root;
    fixture(root);
    auto clean = testing::RunCommand({Script("scripts/lint-deploy.sh"), root.path()}, root.path());
    ASSERT_EQ(clean.exit_code, 0) << clean.out << clean.err;
  }
  for (const Planted& planted : problems) {
    TempDir root;
    fixture(root);
    std::filesystem::create_directories(
        std::filesystem::path(root.File(planted.file)).parent_path());
    testing::WriteFile(root.File(planted.file), planted.contents);
    auto lint = testing::RunCommand({Script("scripts/lint-deploy.sh"), root.path()}, root.path());
    EXPECT_EQ(lint.exit_code, 1) << planted.file << ":\n" << lint.out << lint.err;
    EXPECT_NE((lint.out + lint.err).find(planted.expected), std::string::npos)
        << planted.expected << " in:\n"
        << lint.out << lint.err;
  }
}

TEST(DeployLint, RefusesAnEntrypointThatIsNotExecutable) {
  TempDir root;
  std::filesystem::create_directories(root.File("scripts"));
  std::filesystem::create_directories(root.File("docker"));
  std::filesystem::copy_file(Script("scripts/worker-entrypoint.sh"),
                             root.File("scripts/worker-entrypoint.sh"));
  std::filesystem::permissions(
      root.File("scripts/worker-entrypoint.sh"),
      std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  testing::WriteFile(root.File("docker/a.Dockerfile"),
                     "FROM debian:bookworm-20251229-slim\n"
                     "COPY scripts/worker-entrypoint.sh /usr/local/bin/\n"
                     "ENTRYPOINT [\"worker-entrypoint.sh\"]\n");
  auto lint = testing::RunCommand({Script("scripts/lint-deploy.sh"), root.path()}, root.path());
  EXPECT_EQ(lint.exit_code, 1) << lint.out << lint.err;
  EXPECT_NE(lint.out.find("the script is not executable"), std::string::npos) << lint.out;
}

// What the images install at run time: the Debian packages of the libraries
// the binaries link, found by docker/runtime-packages.sh in the build stage.
TEST(Images, RuntimePackagesAreTheDebianPackagesOfTheLinkedLibraries) {
  TempDir dir;
  auto found = testing::RunCommand(
      {Script("docker/runtime-packages.sh"), Binary("ablate-worker"), Binary("ablate-coordinator")},
      dir.path());
  ASSERT_EQ(found.exit_code, 0) << found.err;
  const auto packages = testing::Lines(found.out);
  for (const char* package : {"libc6", "libgrpc++1.51", "libprotobuf32", "libsqlite3-0"}) {
    EXPECT_NE(std::find(packages.begin(), packages.end(), package), packages.end())
        << package << " in:\n"
        << found.out;
  }
  // Libraries shipped with the image as files are left out.
  auto bundled = testing::RunCommand(
      {Script("docker/runtime-packages.sh"), "--bundled", "/usr/lib", Binary("ablate-coordinator")},
      dir.path());
  EXPECT_EQ(bundled.exit_code, 0) << bundled.err;
  EXPECT_EQ(bundled.out, "");
}

}  // namespace
}  // namespace ablate
