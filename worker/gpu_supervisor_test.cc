#include "worker/gpu_supervisor.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

namespace ablate {
namespace {

using Env = std::map<std::string, std::string>;

struct SupervisorRun {
  int exit_code = -1;
  std::string output;  // its stdout and stderr: its own log and its children's lines
};

// RunSupervisor in a process of its own, since it leaves signals blocked for
// good; what it writes is captured.
SupervisorRun RunSupervisorApart(const SupervisorOptions& options) {
  char path[] = "/tmp/gpu_supervisor_test.XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) return {};
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    const int code = RunSupervisor(options);
    std::fflush(stdout);
    _exit(code);
  }
  close(fd);
  SupervisorRun run;
  int status = 0;
  if (pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status)) {
    run.exit_code = WEXITSTATUS(status);
  }
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  run.output = text.str();
  unlink(path);
  return run;
}

// A stand-in worker that prints the GPU it was pinned to and the flags the
// supervisor gave it, then exits 0.
SupervisorOptions FakeWorkers(std::vector<WorkerSlot> slots) {
  SupervisorOptions options;
  options.program = "/bin/sh";
  options.args = {"-c", "echo \"CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES $*\"", "fake-worker"};
  options.name = "box";
  options.slots = std::move(slots);
  options.max_restarts = 0;
  return options;
}

// The lines the children wrote, as the supervisor prefixed them, sorted.
std::vector<std::string> ChildLines(const std::string& output) {
  std::vector<std::string> lines;
  std::istringstream in(output);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("[gpu", 0) == 0) lines.push_back(line);
  }
  std::sort(lines.begin(), lines.end());
  return lines;
}

// The children the supervisor reported starting: label -> pid.
std::map<std::string, std::string> Started(const std::string& output) {
  std::map<std::string, std::string> started;
  const std::regex started_line("started (\\S+) as pid (\\d+)");
  for (std::sregex_iterator m(output.begin(), output.end(), started_line), end; m != end; ++m) {
    started[(*m)[1]] = (*m)[2];
  }
  return started;
}

TEST(ResolveGpuSlots, AllIsOneSlotPerGpuEachSeeingOnlyItsOwn) {
  auto slots = ResolveGpuSlots("all", 3, nullptr);
  ASSERT_TRUE(slots.ok()) << slots.status().ToString();
  ASSERT_EQ(slots->size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ((*slots)[i].label, "gpu" + std::to_string(i));
    EXPECT_EQ((*slots)[i].device, "cuda:0");
    EXPECT_EQ((*slots)[i].env, (Env{{"CUDA_VISIBLE_DEVICES", std::to_string(i)}}));
  }
}

TEST(ResolveGpuSlots, IndicesPickThoseGpus) {
  auto slots = ResolveGpuSlots("0,2", 4, nullptr);
  ASSERT_TRUE(slots.ok()) << slots.status().ToString();
  ASSERT_EQ(slots->size(), 2u);
  EXPECT_EQ((*slots)[0].label, "gpu0");
  EXPECT_EQ((*slots)[1].label, "gpu2");
  EXPECT_EQ((*slots)[1].env.at("CUDA_VISIBLE_DEVICES"), "2");
}

TEST(ResolveGpuSlots, KeepsTheGpusAnAllocatorAlreadyChose) {
  // Slurm or a device plugin made GPUs 5 and 7 (or these UUIDs) CUDA's 0 and 1.
  auto slots = ResolveGpuSlots("all", 2, "5,7");
  ASSERT_TRUE(slots.ok()) << slots.status().ToString();
  EXPECT_EQ((*slots)[0].env.at("CUDA_VISIBLE_DEVICES"), "5");
  EXPECT_EQ((*slots)[1].env.at("CUDA_VISIBLE_DEVICES"), "7");
  EXPECT_EQ((*slots)[1].label, "gpu1");

  slots = ResolveGpuSlots("1", 2, "GPU-aaaa, GPU-bbbb");
  ASSERT_TRUE(slots.ok()) << slots.status().ToString();
  EXPECT_EQ((*slots)[0].env.at("CUDA_VISIBLE_DEVICES"), "GPU-bbbb");
}

TEST(ResolveGpuSlots, NoGpuIsAClearError) {
  auto slots = ResolveGpuSlots("all", 0, nullptr);
  ASSERT_FALSE(slots.ok());
  EXPECT_EQ(slots.status().code(), Status::kInvalidArgument);
  EXPECT_NE(slots.status().message().find("no GPU is visible"), std::string::npos);
  EXPECT_NE(slots.status().message().find("--device cpu"), std::string::npos);

  slots = ResolveGpuSlots("all", 0, "");
  ASSERT_FALSE(slots.ok());
  EXPECT_NE(slots.status().message().find("CUDA_VISIBLE_DEVICES"), std::string::npos);
}

TEST(ResolveGpuSlots, RefusesBadSpecs) {
  for (const char* spec : {"", "0,", "1;2", "-1", "x", "0, 1", "1000", "some"}) {
    auto slots = ResolveGpuSlots(spec, 4, nullptr);
    EXPECT_FALSE(slots.ok()) << spec;
    EXPECT_EQ(slots.status().code(), Status::kInvalidArgument) << spec;
  }
  auto out_of_range = ResolveGpuSlots("0,4", 4, nullptr);
  ASSERT_FALSE(out_of_range.ok());
  EXPECT_NE(out_of_range.status().message().find("GPU 4 is not visible"), std::string::npos);
  auto twice = ResolveGpuSlots("1,1", 4, nullptr);
  ASSERT_FALSE(twice.ok());
  EXPECT_NE(twice.status().message().find("named twice"), std::string::npos);
}

TEST(ResolveGpuSlots, RefusesAVisibleListShorterThanTheDeviceCount) {
  auto slots = ResolveGpuSlots("all", 2, "3");
  ASSERT_FALSE(slots.ok());
  EXPECT_EQ(slots.status().code(), Status::kFailedPrecondition);
}

TEST(SharedGpuSlots, OneJobPerGpuKeepsTheSlotsAsTheyAre) {
  auto gpus = ResolveGpuSlots("0,2", 3, nullptr);
  ASSERT_TRUE(gpus.ok()) << gpus.status().ToString();
  const auto slots = SharedGpuSlots(*gpus, 1);
  ASSERT_EQ(slots.size(), 2u);
  EXPECT_EQ(slots[0].label, "gpu0");
  EXPECT_EQ(slots[1].label, "gpu2");
  EXPECT_EQ(slots[1].env, (Env{{"CUDA_VISIBLE_DEVICES", "2"}}));
}

TEST(SharedGpuSlots, EachGpuGetsNSlotsPinnedToItAndNumberedFromZero) {
  auto gpus = ResolveGpuSlots("all", 2, "5,GPU-bbbb");
  ASSERT_TRUE(gpus.ok()) << gpus.status().ToString();
  const auto slots = SharedGpuSlots(*gpus, 3);
  ASSERT_EQ(slots.size(), 6u);
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"gpu0.0", "5"},        {"gpu0.1", "5"},        {"gpu0.2", "5"},
      {"gpu1.0", "GPU-bbbb"}, {"gpu1.1", "GPU-bbbb"}, {"gpu1.2", "GPU-bbbb"}};
  for (size_t i = 0; i < slots.size(); ++i) {
    EXPECT_EQ(slots[i].label, expected[i].first);
    EXPECT_EQ(slots[i].device, "cuda:0") << slots[i].label;
    EXPECT_EQ(slots[i].env, (Env{{"CUDA_VISIBLE_DEVICES", expected[i].second}})) << slots[i].label;
  }
}

TEST(SharedGpuSlots, TheMostJobsPerGpuAreAllowed) {
  auto gpus = ResolveGpuSlots("0", 1, nullptr);
  ASSERT_TRUE(gpus.ok()) << gpus.status().ToString();
  const auto slots = SharedGpuSlots(*gpus, kMaxJobsPerGpu);
  ASSERT_EQ(slots.size(), static_cast<size_t>(kMaxJobsPerGpu));
  EXPECT_EQ(slots.back().label, "gpu0." + std::to_string(kMaxJobsPerGpu - 1));
}

TEST(SharedGpuSlots, AnUncheckedCountCrashesLoudly) {
  auto gpus = ResolveGpuSlots("0", 1, nullptr);
  ASSERT_TRUE(gpus.ok()) << gpus.status().ToString();
  EXPECT_DEATH(SharedGpuSlots(*gpus, 0), "0 jobs per GPU");
  EXPECT_DEATH(SharedGpuSlots(*gpus, kMaxJobsPerGpu + 1), "65 jobs per GPU");
}

TEST(RunSupervisor, StartsNWorkersPerGpuEachPinnedToItUnderItsOwnName) {
  auto gpus = ResolveGpuSlots("all", 2, "5,7");
  ASSERT_TRUE(gpus.ok()) << gpus.status().ToString();
  const SupervisorRun run = RunSupervisorApart(FakeWorkers(SharedGpuSlots(*gpus, 2)));
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_EQ(ChildLines(run.output),
            (std::vector<std::string>{
                "[gpu0.0] CUDA_VISIBLE_DEVICES=5 --device cuda:0 --name box/gpu0.0",
                "[gpu0.1] CUDA_VISIBLE_DEVICES=5 --device cuda:0 --name box/gpu0.1",
                "[gpu1.0] CUDA_VISIBLE_DEVICES=7 --device cuda:0 --name box/gpu1.0",
                "[gpu1.1] CUDA_VISIBLE_DEVICES=7 --device cuda:0 --name box/gpu1.1",
            }))
      << run.output;
  // Four processes, not one started four times.
  const auto started = Started(run.output);
  std::set<std::string> pids;
  for (const auto& [label, pid] : started) pids.insert(pid);
  EXPECT_EQ(started.size(), 4u) << run.output;
  EXPECT_EQ(pids.size(), 4u) << run.output;
}

TEST(RunSupervisor, OneWorkerPerGpuKeepsItsNameAndPrefix) {
  auto gpus = ResolveGpuSlots("0,2", 3, nullptr);
  ASSERT_TRUE(gpus.ok()) << gpus.status().ToString();
  const SupervisorRun run = RunSupervisorApart(FakeWorkers(SharedGpuSlots(*gpus, 1)));
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_EQ(ChildLines(run.output),
            (std::vector<std::string>{
                "[gpu0] CUDA_VISIBLE_DEVICES=0 --device cuda:0 --name box/gpu0",
                "[gpu2] CUDA_VISIBLE_DEVICES=2 --device cuda:0 --name box/gpu2",
            }))
      << run.output;
}

TEST(ParseJobsPerGpu, TakesAWholeNumberFromOneTo64) {
  for (const auto& [text, jobs] :
       std::vector<std::pair<std::string, int>>{{"1", 1}, {"2", 2}, {"64", 64}, {"08", 8}}) {
    auto parsed = ParseJobsPerGpu(text, true);
    ASSERT_TRUE(parsed.ok()) << text << ": " << parsed.status().ToString();
    EXPECT_EQ(*parsed, jobs) << text;
  }
}

TEST(ParseJobsPerGpu, RefusesAnythingElseNamingTheFlagAndTheValue) {
  for (const std::string text :
       {"0", "-1", "65", "1000", "99999999999", "2.5", "1e2", "+2", " 2", "two", "", "0x4"}) {
    auto parsed = ParseJobsPerGpu(text, true);
    ASSERT_FALSE(parsed.ok()) << text;
    EXPECT_EQ(parsed.status().code(), Status::kInvalidArgument) << text;
    EXPECT_EQ(parsed.status().message(),
              "--jobs-per-gpu " + text + ": expected a whole number of workers per GPU, 1 to 64");
  }
}

TEST(ParseJobsPerGpu, RefusesAnyValueWithoutGpus) {
  for (const std::string text : {"1", "4", "0"}) {
    auto parsed = ParseJobsPerGpu(text, false);
    ASSERT_FALSE(parsed.ok()) << text;
    EXPECT_EQ(parsed.status().code(), Status::kInvalidArgument) << text;
    EXPECT_EQ(parsed.status().message(),
              "--jobs-per-gpu " + text +
                  ": only with --gpus: it is how many workers share each of those GPUs");
  }
}

TEST(WithoutOptions, DropsBothFormsWithTheirValues) {
  const std::vector<std::string> args = {"--coordinator",   "h:1", "--gpus", "all", "--name=box",
                                         "--threads",       "4",   "--name", "x",   "--gpus=0,1",
                                         "--exit-when-idle"};
  EXPECT_EQ(
      WithoutOptions(args, {"--gpus", "--name"}),
      (std::vector<std::string>{"--coordinator", "h:1", "--threads", "4", "--exit-when-idle"}));
}

TEST(WithoutOptions, DropsJobsPerGpuForTheChildren) {
  const std::vector<std::string> args = {"--gpus",    "all",    "--jobs-per-gpu=4",
                                         "--threads", "2",      "--jobs-per-gpu",
                                         "3",         "--name", "box"};
  EXPECT_EQ(WithoutOptions(args, {"--gpus", "--jobs-per-gpu", "--name"}),
            (std::vector<std::string>{"--threads", "2"}));
}

TEST(WithoutOptions, KeepsOptionsThatOnlyShareAPrefix) {
  const std::vector<std::string> args = {"--gpus-extra", "1", "--names", "a"};
  EXPECT_EQ(WithoutOptions(args, {"--gpus", "--name"}), args);
}

}  // namespace
}  // namespace ablate
