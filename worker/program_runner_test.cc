#include "worker/program_runner.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <zip.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>
#include <tuple>
#include <vector>

#include "common/temp_dir.h"
#include "common/test_files.h"
#include "tests/support/process.h"
#include "worker/checkpoint_archive.h"

namespace ablate {
namespace {

using testing::ReadFile;
using testing::SourceDir;
using testing::WriteFile;

std::string TestData(const std::string& name) { return SourceDir() + "/worker/testdata/" + name; }

// Keeps what the runner reports; copies each checkpoint archive it is given.
class Recorder : public TrainerListener {
 public:
  explicit Recorder(std::string checkpoint_copy = "") : copy_(std::move(checkpoint_copy)) {}

  void OnPoint(const CurvePoint& point) override { points.push_back(point); }
  void OnProgress(const Progress& progress) override { last_progress = progress.step; }
  Status OnCheckpoint(const std::string& path, int64_t step) override {
    checkpoints.push_back(step);
    if (!copy_.empty())
      std::filesystem::copy_file(path, copy_, std::filesystem::copy_options::overwrite_existing);
    return Status::OK();
  }
  bool ShouldStop() override { return stop_when && stop_when(*this); }

  std::vector<CurvePoint> points;
  std::vector<int64_t> checkpoints;
  int64_t last_progress = -1;
  std::function<bool(const Recorder&)> stop_when;

  std::vector<double> Values(const std::string& metric) const {
    std::vector<double> values;
    for (const CurvePoint& p : points) {
      if (p.metric == metric) values.push_back(p.bpc);
    }
    return values;
  }

 private:
  std::string copy_;
};

ProgramJob ShellJob(const TempDir& dir, const std::string& script) {
  ProgramJob job;
  job.command = {"/bin/sh", "-c", script};
  job.job_id = 7;
  job.work_dir = dir.File("job");
  job.config_json = R"({"lr": 0.5})";
  return job;
}

bool ProcessGone(pid_t pid) {
  for (int i = 0; i < 500; ++i) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string pid_field, comm, state;
    if (!(stat >> pid_field >> comm >> state) || state == "Z" || state == "X") return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

TEST(ProgramRunner, MetricsLinesBecomeNamedPointsAndProgress) {
  TempDir dir;
  Recorder recorder;
  auto summary = RunProgram(ShellJob(dir, R"(
      echo '{"step": 1, "train/loss": 2.5, "valid/loss": 3}' >&3
      echo '{"step": 2, "train/loss": 2.25}' >&3
      echo 'plain output on stdout'
      echo 'and on stderr' >&2)"),
                            &recorder);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_EQ(summary->outcome, ProgramSummary::Outcome::kFinished);
  EXPECT_EQ(summary->step, 2);
  EXPECT_EQ(summary->refused_lines, 0);
  ASSERT_EQ(recorder.points.size(), 3u);
  EXPECT_EQ(recorder.points[1].metric, "valid/loss");
  EXPECT_EQ(recorder.points[1].step, 1);
  EXPECT_EQ(recorder.points[1].bpc, 3.0);
  EXPECT_EQ(recorder.Values("train/loss"), (std::vector<double>{2.5, 2.25}));
  EXPECT_EQ(recorder.last_progress, 2);
}

TEST(ProgramRunner, MalformedLinesAreRefusedAndNeverReported) {
  TempDir dir;
  Recorder recorder;
  auto summary = RunProgram(ShellJob(dir, R"(
      echo '{"step": 10, "loss": 1}' >&3
      echo 'not json' >&3
      echo '[1, 2]' >&3
      echo '{"loss": 1}' >&3
      echo '{"step": -1, "loss": 1}' >&3
      echo '{"step": 11.5, "loss": 1}' >&3
      echo '{"step": 11, "loss": "high"}' >&3
      echo '{"step": 11, "loss": true}' >&3
      echo '{"step": 11, "loss": NaN}' >&3
      echo '{"step": 11, "bad name": 1}' >&3
      echo '{"step": 11}' >&3
      echo '{"step": 9, "loss": 1}' >&3
      echo '{"checkpoint": 11, "loss": 1}' >&3
      echo '{"step": 12, "loss": 2}' >&3
      echo '{"step": 12, "loss": 3}' >&3
      echo '{"step": 12, "acc": 0.5}' >&3
      echo '{"checkpoint": 0}' >&3
      printf '{"step": 13, "loss": 4}' >&3)"),
                            &recorder);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_EQ(summary->outcome, ProgramSummary::Outcome::kFinished);
  // The second loss at step 12 and the checkpoint at step 0 are refused too;
  // another metric at step 12 and a last line without its newline are not.
  EXPECT_EQ(summary->refused_lines, 14);
  EXPECT_EQ(recorder.Values("loss"), (std::vector<double>{1, 2, 4}));
  EXPECT_EQ(recorder.Values("acc"), (std::vector<double>{0.5}));
  EXPECT_EQ(recorder.points.size(), 4u);
  EXPECT_TRUE(recorder.checkpoints.empty());
}

TEST(ProgramRunner, TooManyRefusedLinesEndTheProgramAndFailTheJobForGood) {
  TempDir dir;
  Recorder recorder;
  const auto start = std::chrono::steady_clock::now();
  auto summary = RunProgram(ShellJob(dir, "while true; do echo 'garbage' >&3; done"), &recorder);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_EQ(summary->outcome, ProgramSummary::Outcome::kFailed);
  EXPECT_FALSE(summary->retryable);
  EXPECT_NE(summary->message.find("metrics lines refused; the last: not JSON"), std::string::npos)
      << summary->message;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  EXPECT_TRUE(recorder.points.empty());
}

TEST(ProgramRunner, ACrashFailsTheJobWithTheLastLinesOfStderr) {
  TempDir dir;
  Recorder recorder;
  auto summary = RunProgram(ShellJob(dir, R"(
      i=0; while [ $i -lt 50 ]; do echo "trace line $i" >&2; i=$((i + 1)); done
      echo 'ValueError: the last words' >&2
      exit 3)"),
                            &recorder);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_EQ(summary->outcome, ProgramSummary::Outcome::kFailed);
  EXPECT_TRUE(summary->retryable);
  const std::string& m = summary->message;
  EXPECT_NE(m.find("exited with code 3"), std::string::npos) << m;
  EXPECT_NE(m.find("ValueError: the last words"), std::string::npos) << m;
  EXPECT_NE(m.find("trace line 49"), std::string::npos) << m;
  EXPECT_EQ(m.find("trace line 10\n"), std::string::npos) << m;
  EXPECT_LE(m.size(), 4096u + 200u);
}

TEST(ProgramRunner, DeathBySignalIsAFailureThatNamesTheSignal) {
  TempDir dir;
  Recorder recorder;
  auto summary = RunProgram(ShellJob(dir, "kill -SEGV $$"), &recorder);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_EQ(summary->outcome, ProgramSummary::Outcome::kFailed);
  EXPECT_NE(summary->message.find("killed by signal 11 (SIGSEGV)"), std::string::npos)
      << summary->message;
}

TEST(ProgramRunner, ASilentProgramIsEndedAsHung) {
  TempDir dir;
  Recorder recorder;
  ProgramJob job = ShellJob(dir, "echo '{\"step\": 1, \"loss\": 1}' >&3; exec sleep 60");
  job.silence_seconds = 0.5;
  const auto start = std::chrono::steady_clock::now();
  auto summary = RunProgram(job, &recorder);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_EQ(summary->outcome, ProgramSummary::Outcome::kFailed);
  EXPECT_TRUE(summary->retryable);
  EXPECT_NE(summary->message.find("ended as hung"), std::string::npos) << summary->message;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  EXPECT_EQ(recorder.points.size(), 1u);
}

TEST(ProgramRunner, AFloodOfOutputIsDrainedWithoutGrowingMemory) {
  TempDir dir;
  Recorder recorder;
  rusage before{};
  getrusage(RUSAGE_SELF, &before);
  // 200 MB on each stream; the runner keeps only a bounded tail.
  auto summary = RunProgram(ShellJob(dir, R"(
      head -c 200000000 /dev/zero | tr '\0' 'x' &
      head -c 200000000 /dev/zero | tr '\0' 'y' >&2
      wait
      echo '{"step": 1, "after_flood": 1}' >&3)"),
                            &recorder);
  rusage after{};
  getrusage(RUSAGE_SELF, &after);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_EQ(summary->outcome, ProgramSummary::Outcome::kFinished);
  EXPECT_EQ(recorder.Values("after_flood"), (std::vector<double>{1}));
  EXPECT_LT(after.ru_maxrss - before.ru_maxrss, 32 * 1024) << "KiB";
}

TEST(ProgramRunner, StopTerminatesTheGroupAndKeepsTheCheckpointAnnouncedInTheGrace) {
  TempDir dir;
  Recorder recorder(dir.File("copy.zip"));
  ProgramJob job;
  job.command = {TestData("checkpointing.sh"), "1000"};
  job.env = {{"STEP_SECONDS", "0.02"}};
  job.work_dir = dir.File("job");
  job.stop_grace_seconds = 5;
  recorder.stop_when = [](const Recorder& r) { return r.points.size() >= 7; };
  auto summary = RunProgram(job, &recorder);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_EQ(summary->outcome, ProgramSummary::Outcome::kStopped);
  // The periodic checkpoint at 5, then the one the SIGTERM asked for.
  ASSERT_EQ(recorder.checkpoints.size(), 2u);
  EXPECT_EQ(recorder.checkpoints[0], 5);
  EXPECT_GE(recorder.checkpoints[1], 7);
  EXPECT_LT(recorder.checkpoints[1], 1000);
  // The child that ignored SIGTERM went with the group.
  const pid_t child = std::stoi(ReadFile(dir.File("job/child.pid")));
  EXPECT_TRUE(ProcessGone(child));
  TempDir restored;
  auto comment = ExtractArchive(dir.File("copy.zip"), restored.path());
  ASSERT_TRUE(comment.ok()) << comment.status().ToString();
  EXPECT_EQ(ReadFile(restored.File("count")), std::to_string(recorder.checkpoints[1]) + "\n");
  EXPECT_EQ(ReadFile(restored.File("state/note")),
            "at " + std::to_string(recorder.checkpoints[1]) + "\n");
}

TEST(ProgramRunner, AProgramThatIgnoresSIGTERMIsKilledAfterTheGrace) {
  TempDir dir;
  Recorder recorder;
  ProgramJob job = ShellJob(dir, R"(trap '' TERM; echo '{"step": 1, "x": 1}' >&3;
      while true; do sleep 0.05; done)");
  job.stop_grace_seconds = 0.5;
  recorder.stop_when = [](const Recorder& r) { return !r.points.empty(); };
  const auto start = std::chrono::steady_clock::now();
  auto summary = RunProgram(job, &recorder);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_EQ(summary->outcome, ProgramSummary::Outcome::kStopped);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

TEST(ProgramRunner, AResumedAttemptStartsFromTheRestoredCheckpoint) {
  TempDir dir;
  Recorder first(dir.File("copy.zip"));
  ProgramJob job;
  job.command = {TestData("checkpointing.sh"), "12"};
  job.work_dir = dir.File("job");
  auto summary = RunProgram(job, &first);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_EQ(first.checkpoints, (std::vector<int64_t>{5, 10}));

  Recorder second;
  job.resume_archive = dir.File("copy.zip");
  job.attempt = 2;
  summary = RunProgram(job, &second);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_EQ(summary->outcome, ProgramSummary::Outcome::kFinished);
  EXPECT_EQ(second.Values("restored"), (std::vector<double>{10}));
  EXPECT_EQ(second.Values("loss"), (std::vector<double>{11.5, 12.5}));
  EXPECT_EQ(summary->step, 12);
}

TEST(ProgramRunner, TheProtocolsEnvironmentAndTheGpuSlotReachTheProgram) {
  TempDir dir;
  Recorder recorder;
  ProgramJob job;
  job.command = {"python3", "protocol_env.py"};  // found on PATH, run from program_dir
  job.program_dir = SourceDir() + "/worker/testdata";
  job.config_json = R"({"lr": 0.25})";
  job.job_id = 42;
  job.attempt = 3;
  job.work_dir = dir.File("job");
  job.env = {{"CUDA_VISIBLE_DEVICES", "2"}};
  auto summary = RunProgram(job, &recorder);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  ASSERT_EQ(summary->outcome, ProgramSummary::Outcome::kFinished) << summary->message;
  EXPECT_EQ(recorder.Values("lr"), (std::vector<double>{0.25}));
  EXPECT_EQ(recorder.Values("job"), (std::vector<double>{42}));
  EXPECT_EQ(recorder.Values("attempt"), (std::vector<double>{3}));
  EXPECT_EQ(recorder.Values("resume"), (std::vector<double>{0}));
  EXPECT_EQ(recorder.Values("gpu"), (std::vector<double>{2}));
  EXPECT_EQ(recorder.Values("cwd_is_program_dir"), (std::vector<double>{1}));
}

TEST(ProgramRunner, TheConfigFileArgumentIsReplacedByItsPath) {
  TempDir dir;
  Recorder recorder;
  ProgramJob job = ShellJob(dir, "");
  job.command = {"/bin/sh", "-c", R"(grep -q '"lr": 0.5' "$1" && echo '{"step": 0, "ok": 1}' >&3)",
                 "sh", "${args_json_file}"};
  auto summary = RunProgram(job, &recorder);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_EQ(recorder.Values("ok"), (std::vector<double>{1}));
}

// A relative --work-dir and a program that runs from --program-dir: the
// argument still names the config file.
TEST(ProgramRunner, TheConfigFileArgumentNamesItFromTheProgramsDirectory) {
  TempDir dir;
  Recorder recorder;
  ProgramJob job = ShellJob(dir, "");
  job.work_dir = std::filesystem::relative(dir.File("job")).string();
  ASSERT_FALSE(job.work_dir.empty());
  ASSERT_NE(job.work_dir[0], '/');
  job.program_dir = dir.File("program");
  std::filesystem::create_directories(job.program_dir);
  job.command = {"/bin/sh", "-c", R"(grep -q '"lr": 0.5' "$1" && echo '{"step": 0, "ok": 1}' >&3)",
                 "sh", "${args_json_file}"};
  auto summary = RunProgram(job, &recorder);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_EQ(recorder.Values("ok"), (std::vector<double>{1}));
}

TEST(ProgramRunner, AProgramNotOnThePathIsAnErrorNamingIt) {
  TempDir dir;
  Recorder recorder;
  ProgramJob job = ShellJob(dir, "");
  job.command = {"no-such-program-anywhere", "--flag"};
  auto summary = RunProgram(job, &recorder);
  ASSERT_FALSE(summary.ok());
  EXPECT_NE(summary.status().message().find("no-such-program-anywhere"), std::string::npos);
}

// The example of examples/charlm under the runner, as a worker runs it:
// stopped mid-way, it checkpoints in the grace; resumed from that archive, its
// curve continues with no step missing or repeated and equals, bit for bit,
// the curve of a run never stopped.
TEST(ProgramRunner, TheCharLmExampleResumedFromItsCheckpointEqualsAnUninterruptedRun) {
  TempDir dir;
  ProgramJob job;
  job.command = {"/usr/bin/python3",     SourceDir() + "/examples/charlm/train.py",
                 "--steps=60",           "--hidden=32",
                 "--log-every=5",        "--eval-every=20",
                 "--checkpoint-every=20"};
  job.work_dir = dir.File("job");
  job.env = {{"CUDA_VISIBLE_DEVICES", ""}};
  job.stop_grace_seconds = 60;
  using Curve = std::vector<std::tuple<std::string, int64_t, double>>;
  auto curve = [](const std::vector<CurvePoint>& points, int64_t from, int64_t to) {
    Curve c;
    for (const CurvePoint& p : points) {
      if (p.step >= from && p.step <= to) c.emplace_back(p.metric, p.step, p.bpc);
    }
    return c;
  };

  Recorder whole;
  auto summary = RunProgram(job, &whole);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  ASSERT_EQ(summary->outcome, ProgramSummary::Outcome::kFinished) << summary->message;
  EXPECT_EQ(whole.checkpoints, (std::vector<int64_t>{20, 40, 60}));

  Recorder stopped(dir.File("copy.zip"));
  stopped.stop_when = [](const Recorder& r) {
    return !r.points.empty() && r.points.back().step >= 25;
  };
  summary = RunProgram(job, &stopped);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  ASSERT_EQ(summary->outcome, ProgramSummary::Outcome::kStopped);
  ASSERT_GE(stopped.checkpoints.size(), 2u);
  const int64_t resumed_at = stopped.checkpoints.back();
  ASSERT_GE(resumed_at, 25);
  ASSERT_LT(resumed_at, 60);

  Recorder resumed;
  job.resume_archive = dir.File("copy.zip");
  job.attempt = 2;
  summary = RunProgram(job, &resumed);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  ASSERT_EQ(summary->outcome, ProgramSummary::Outcome::kFinished) << summary->message;
  EXPECT_EQ(summary->step, 60);

  Curve joined = curve(stopped.points, 0, resumed_at);
  const Curve rest = curve(resumed.points, 0, 60);
  ASSERT_FALSE(rest.empty());
  EXPECT_GT(std::get<1>(rest.front()), resumed_at);
  joined.insert(joined.end(), rest.begin(), rest.end());
  EXPECT_EQ(joined, curve(whole.points, 0, 60));
}

TEST(CheckpointArchive, AnEntryEscapingTheDirectoryIsRefusedBeforeAnythingIsWritten) {
  TempDir dir;
  const std::string archive_path = dir.File("evil.zip");
  int error = 0;
  zip_t* archive = zip_open(archive_path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &error);
  ASSERT_NE(archive, nullptr);
  static const char kBytes[] = "x";
  for (const char* name : {"fine.txt", "../escaped.txt"}) {
    zip_source_t* source = zip_source_buffer(archive, kBytes, 1, 0);
    ASSERT_GE(zip_file_add(archive, name, source, 0), 0) << zip_strerror(archive);
  }
  ASSERT_EQ(zip_close(archive), 0);
  std::filesystem::create_directory(dir.File("into"));
  auto extracted = ExtractArchive(archive_path, dir.File("into"));
  ASSERT_FALSE(extracted.ok());
  EXPECT_EQ(extracted.status().code(), Status::kInvalidArgument);
  EXPECT_NE(extracted.status().message().find("../escaped.txt"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir.File("escaped.txt")));
  EXPECT_FALSE(std::filesystem::exists(dir.File("into/fine.txt")));
}

TEST(CheckpointArchive, ADirectoryRoundTripsWithItsComment) {
  TempDir dir;
  std::filesystem::create_directories(dir.File("from/sub"));
  WriteFile(dir.File("from/a.bin"), std::string("\0\1\2", 3));
  WriteFile(dir.File("from/sub/b.txt"), "b");
  ASSERT_TRUE(ArchiveDirectory(dir.File("from"), dir.File("c.zip"), R"({"step": 3})").ok());
  std::filesystem::create_directory(dir.File("to"));
  auto comment = ExtractArchive(dir.File("c.zip"), dir.File("to"));
  ASSERT_TRUE(comment.ok()) << comment.status().ToString();
  EXPECT_EQ(*comment, R"({"step": 3})");
  EXPECT_EQ(ReadFile(dir.File("to/a.bin")), std::string("\0\1\2", 3));
  EXPECT_EQ(ReadFile(dir.File("to/sub/b.txt")), "b");
  EXPECT_FALSE(ExtractArchive(dir.File("to/a.bin"), dir.File("to")).ok());
}

}  // namespace
}  // namespace ablate
