#include "worker/memory.h"

#include <gtest/gtest.h>
#include <malloc.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <vector>

#include "common/model_size.h"
#include "common/run_config.h"
#include "common/temp_dir.h"
#include "worker/trainer.h"

namespace ablate {
namespace {

constexpr int64_t kGiB = int64_t{1} << 30;

TEST(Memory, MemAvailableIsReadFromMeminfo) {
  EXPECT_EQ(MemAvailableBytes("MemTotal:       24563020 kB\nMemFree:         1000 kB\n"
                              "MemAvailable:   24242020 kB\nBuffers: 1 kB\n"),
            int64_t{24242020} * 1024);
  EXPECT_EQ(MemAvailableBytes("MemTotal:       24563020 kB\n"), -1);  // kernels before 3.14
  EXPECT_EQ(MemAvailableBytes("MemAvailable:   lots\n"), -1);
  EXPECT_EQ(MemAvailableBytes(""), -1);
}

TEST(Memory, CgroupHeadroomIsTheLimitLessTheWorkingSet) {
  EXPECT_EQ(CgroupHeadroomBytes("8589934592\n", "1073741824\n", -1), 7 * kGiB);
  // A container that has read or written files sits near its limit in page
  // cache the kernel reclaims first: it is room, not use.
  EXPECT_EQ(CgroupHeadroomBytes("8589934592\n", "8589934592\n", 6 * kGiB), 6 * kGiB);
  EXPECT_EQ(CgroupHeadroomBytes("8589934592\n", "1073741824\n", 2 * kGiB), 8 * kGiB);
  EXPECT_EQ(CgroupHeadroomBytes("max\n", "1073741824\n", 0), -1);  // v2, no limit
  // v1 with no limit: a number near INT64_MAX, which leaves MemAvailable lower.
  EXPECT_EQ(CgroupHeadroomBytes("9223372036854771712\n", "139333632\n", 0),
            9223372036854771712 - 139333632);
  EXPECT_EQ(CgroupHeadroomBytes("1073741824\n", "2147483648\n", 0), 0);  // over, in reclaim
  EXPECT_EQ(CgroupHeadroomBytes("", "1\n", 0), -1);                      // unreadable
  EXPECT_EQ(CgroupHeadroomBytes("12x\n", "1\n", 0), -1);
  EXPECT_EQ(CgroupHeadroomBytes("99999999999999999999999\n", "1\n", 0), -1);  // overflows
}

TEST(Memory, MemoryStatValuesAreFoundByWholeKey) {
  const std::string stat =
      "cache 160522240\nrss 4096\ninactive_file 7\nhierarchical_memory_limit "
      "9223372036854771712\ntotal_inactive_file 9\n";
  EXPECT_EQ(MemoryStatValue(stat, "inactive_file"), 7);
  EXPECT_EQ(MemoryStatValue(stat, "total_inactive_file"), 9);
  EXPECT_EQ(MemoryStatValue(stat, "hierarchical_memory_limit"), 9223372036854771712);
  EXPECT_EQ(MemoryStatValue(stat, "file"), -1);  // not a prefix match of inactive_file
  EXPECT_EQ(MemoryStatValue("", "rss"), -1);
}

TEST(Memory, CgroupPathsOfBothHierarchies) {
  // cgroup v2 only, as on current distributions and in most containers.
  CgroupPaths v2 = ParseCgroupPaths("0::/user.slice/user-0.slice/session-1.scope\n");
  EXPECT_EQ(v2.unified, "/user.slice/user-0.slice/session-1.scope");
  EXPECT_EQ(v2.memory, "");
  // Hybrid, as on this machine: v1 controllers beside an empty unified tree.
  CgroupPaths hybrid = ParseCgroupPaths(
      "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/c3fd\n2:cpu,cpuacct:/\n0::/\n");
  EXPECT_EQ(hybrid.unified, "/");
  EXPECT_EQ(hybrid.memory, "/process_api/c3fd");
  // Controllers share a line; a path may hold colons.
  EXPECT_EQ(ParseCgroupPaths("5:cpu,memory:/a:b\n").memory, "/a:b");
  EXPECT_EQ(ParseCgroupPaths("garbage\n").memory, "");
}

// A cgroup tree in a temporary directory, files as the kernel shows them.
class CgroupTree {
 public:
  CgroupTree() {
    if (dir_.path().empty()) ADD_FAILURE() << "no temporary directory";
  }
  void Write(const std::string& file, const std::string& text) {
    const std::filesystem::path path = root_ + "/" + file;
    std::filesystem::create_directories(path.parent_path());
    std::ofstream(path) << text;
  }
  const std::string& root() const { return root_; }

 private:
  TempDir dir_{"ablate-cgroup"};
  std::string root_ = dir_.path().empty() ? "/nonexistent" : dir_.path();
};

TEST(Memory, V2HeadroomIsTheLeastOfTheCgroupAndItsAncestors) {
  CgroupTree tree;
  // As Slurm and systemd set it: the limit on the job's cgroup, none on the
  // task's below it.
  tree.Write("job/memory.max", "8589934592\n");
  tree.Write("job/memory.current", "3221225472\n");
  tree.Write("job/memory.stat", "anon 1\ninactive_file 1073741824\n");
  tree.Write("job/task/memory.max", "max\n");
  tree.Write("job/task/memory.current", "1073741824\n");
  EXPECT_EQ(CgroupHeadroom(tree.root(), "/job/task", CgroupVersion::kV2), 6 * kGiB);
  // A tighter limit below wins.
  tree.Write("job/task/memory.max", "2147483648\n");
  EXPECT_EQ(CgroupHeadroom(tree.root(), "/job/task", CgroupVersion::kV2), kGiB);
  // A path the namespace does not show: the mount's root, which a container
  // sees as its own cgroup.
  tree.Write("memory.max", "4294967296\n");
  tree.Write("memory.current", "0\n");
  EXPECT_EQ(CgroupHeadroom(tree.root(), "/../../elsewhere", CgroupVersion::kV2), 4 * kGiB);
  EXPECT_EQ(CgroupHeadroom(tree.root(), "/not/here", CgroupVersion::kV2), 4 * kGiB);
  EXPECT_EQ(CgroupHeadroom(tree.root(), "/job/../job/task", CgroupVersion::kV2), 4 * kGiB);
  // The mount as given with a trailing slash: nothing above it is read.
  EXPECT_EQ(CgroupHeadroom(tree.root() + "/job/", "/task", CgroupVersion::kV2), kGiB);
  EXPECT_EQ(CgroupHeadroom(tree.root() + "/job/task/none", "/", CgroupVersion::kV2), -1);
}

TEST(Memory, V1HeadroomCountsTheAncestorsAndTheHierarchicalLimit) {
  CgroupTree tree;
  const std::string step = "slurm/uid_0/job_7/step_0/";
  tree.Write(step + "memory.limit_in_bytes", "9223372036854771712\n");
  tree.Write(step + "memory.usage_in_bytes", "2147483648\n");
  tree.Write(step + "memory.stat",
             "cache 1073741824\nhierarchical_memory_limit 4294967296\n"
             "total_inactive_file 1073741824\n");
  // Only the step's own files: its hierarchical limit.
  EXPECT_EQ(CgroupHeadroom(tree.root(), "/" + step, CgroupVersion::kV1), 3 * kGiB);
  // The job's cgroup holds the limit, and a sibling step uses most of it.
  tree.Write("slurm/uid_0/job_7/memory.limit_in_bytes", "4294967296\n");
  tree.Write("slurm/uid_0/job_7/memory.usage_in_bytes", "3758096384\n");
  EXPECT_EQ(CgroupHeadroom(tree.root(), "/" + step, CgroupVersion::kV1), kGiB / 2);
}

TEST(Memory, AvailableIsTheTightestLimitPlusTheFreeHeap) {
  EXPECT_EQ(CombineAvailable(20 * kGiB, {}, 0), 20 * kGiB);
  EXPECT_EQ(CombineAvailable(20 * kGiB, {-1, 3 * kGiB}, 0), 3 * kGiB);  // a container's limit
  EXPECT_EQ(CombineAvailable(20 * kGiB, {5 * kGiB, 4 * kGiB}, kGiB), 5 * kGiB);
  EXPECT_EQ(CombineAvailable(-1, {-1}, kGiB), -1);  // nothing known: no check
  EXPECT_EQ(CombineAvailable(-1, {2 * kGiB}, 0), 2 * kGiB);
}

TEST(Memory, FreedHeapIsCountedAsThisProcesssToUse) {
#if !defined(__GLIBC__) || __GLIBC__ < 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ < 33)
  GTEST_SKIP() << "FreeHeapBytes needs glibc's mallinfo2 (2.33 or later)";
#endif
  // The trainer's settings (KeepFreedMemory): freed blocks stay in the heap.
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, std::numeric_limits<int>::max());
  {
    std::vector<char> block(64 << 20, 1);
    ASSERT_EQ(block[12345], 1);
  }
  EXPECT_GE(FreeHeapBytes(), int64_t{60} << 20);
}

TEST(Memory, AvailableMemoryOnThisMachineIsAtMostMemAvailablePlusTheFreeHeap) {
  std::ifstream in("/proc/meminfo");
  std::ostringstream text;
  text << in.rdbuf();
  const int64_t mem_available = MemAvailableBytes(text.str());
  if (mem_available < 0) GTEST_SKIP() << "no MemAvailable in /proc/meminfo";
  const int64_t free_heap = FreeHeapBytes();
  const int64_t available = AvailableMemoryBytes();
  EXPECT_GE(available, free_heap - (int64_t{1} << 20));
  // Within what MemAvailable said a moment ago, give or take 1 GiB of churn.
  EXPECT_LE(available, mem_available + free_heap + kGiB);
}

RunConfig Seed() {
  RunConfig config;
  config.model.cell = Cell::kGru;
  config.model.layer_norm = true;
  config.model.hidden = 2000;
  config.model.vocab = 256;
  config.train.batch = 100;
  config.train.seq = 200;
  return config;
}

TEST(Memory, TrainingLowerBoundCountsParametersAdamAndActivations) {
  const RunConfig seed = Seed();
  // 5 copies of 14,078,256 parameters and [200, 100, 2000 + 4000] floats.
  EXPECT_EQ(TrainingBytesLowerBound(seed.model, seed.train),
            4 * (5 * int64_t{14078256} + int64_t{200} * 100 * 6000));
  // Below what the seed's size measures at its peak (3,281 MiB, BENCHMARKS.md).
  EXPECT_LT(TrainingBytesLowerBound(seed.model, seed.train), int64_t{3281} << 20);
  RunConfig most = seed;
  most.model.hidden = most.train.batch = most.train.seq = 65536;
  most.model.cell = Cell::kLstm;
  // Every setting at its validated maximum: petabytes, still counted exactly.
  const int64_t h = 65536;
  EXPECT_EQ(TrainingBytesLowerBound(most.model, most.train),
            4 * (5 * CountParameters(Cell::kLstm, true, h, 256) + h * h * (h + 4 * h)));
}

TEST(Memory, CheckMemoryRefusesOnlyWhatCannotFitAndNamesTheSettings) {
  RunConfig seed = Seed();
  EXPECT_TRUE(CheckMemory(seed, 24 * kGiB).ok());
  EXPECT_TRUE(CheckMemory(seed, -1).ok());  // unknown: let the allocator decide
  const Status refused = CheckMemory(seed, kGiB / 2);
  EXPECT_EQ(refused.code(), Status::kResourceExhausted);
  EXPECT_NE(refused.message().find("model.hidden 2000 with train.batch 100 and train.seq 200 "
                                   "needs at least 0.7 GiB"),
            std::string::npos)
      << refused.message();
  EXPECT_NE(refused.message().find("but only 0.5 GiB is available to this process"), std::string::npos)
      << refused.message();
  RunConfig huge = seed;
  huge.model.hidden = 65536;
  const Status too_big = CheckMemory(huge, 24 * kGiB);
  EXPECT_NE(too_big.message().find("needs at least 255.9 GiB"), std::string::npos)
      << too_big.message();
}

}  // namespace
}  // namespace ablate
