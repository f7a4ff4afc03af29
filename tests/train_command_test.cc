// `ablate-worker train` and `data prepare` as a user runs them.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "data/text8.h"
#include "tests/support/corpus.h"
#include "tests/support/process.h"

namespace ablate {
namespace {

using nlohmann::json;
using testing::Binary;
using testing::RunCommand;
using testing::TempDir;
using testing::WriteFile;

std::string Config(const std::string& corpus, const std::string& cell, int steps) {
  return "data: {path: " + corpus + "}\nmodel: {cell: " + cell +
         ", layer_norm: true, hidden: 24, vocab: 27}\ntrain: {batch: 4, seq: 16, lr: 0.003, "
         "steps: " +
         std::to_string(steps) + ", log_every: 3, eval_every: 4, seed: 9}\n";
}

std::vector<json> JsonLines(const std::string& out) {
  std::vector<json> lines;
  for (const std::string& line : testing::Lines(out)) lines.push_back(json::parse(line));
  return lines;
}

TEST(TrainCommand, ResumingInANewProcessGivesBitIdenticalLosses) {
  TempDir dir;
  WriteFile(dir.File("corpus.txt"), testing::EnglishText8(13));
  for (const std::string cell : {"lstm", "gru", "mgu"}) {
    WriteFile(dir.File("run.yaml"), Config(dir.File("corpus.txt"), cell, 14));
    const std::vector<std::string> base = {Binary("ablate-worker"),
                                           "train",
                                           dir.File("run.yaml"),
                                           "--format",
                                           "json",
                                           "--threads",
                                           "2"};
    auto straight = RunCommand(base, dir.path());
    ASSERT_EQ(straight.exit_code, 0) << straight.err;

    std::vector<std::string> first = base;
    first.insert(first.end(), {"--stop-at", "7", "--checkpoint", dir.File("ckpt")});
    auto part1 = RunCommand(first, dir.path());
    ASSERT_EQ(part1.exit_code, 0) << part1.err;
    std::vector<std::string> second = base;
    second.insert(second.end(), {"--resume", dir.File("ckpt")});
    auto part2 = RunCommand(second, dir.path());
    ASSERT_EQ(part2.exit_code, 0) << part2.err;
    EXPECT_NE(part2.err.find("resumed at step 7"), std::string::npos) << part2.err;

    std::vector<json> all = JsonLines(straight.out);
    std::vector<json> joined = JsonLines(part1.out);
    ASSERT_TRUE(joined.back().value("final", false));
    EXPECT_EQ(joined.back()["outcome"], "stopped");
    joined.pop_back();
    for (const json& j : JsonLines(part2.out)) joined.push_back(j);
    ASSERT_EQ(joined.size(), all.size()) << cell;
    int compared = 0;
    for (size_t i = 0; i < all.size(); ++i) {
      for (const char* key : {"train_bpc", "valid_bpc", "test_bpc"}) {
        if (!all[i].contains(key)) continue;
        ASSERT_TRUE(joined[i].contains(key)) << cell << " line " << i;
        // Bit for bit: JSON carries doubles exactly (17 significant digits).
        EXPECT_EQ(joined[i][key].get<double>(), all[i][key].get<double>())
            << cell << " " << key << " at step " << all[i]["step"];
        ++compared;
      }
      EXPECT_EQ(joined[i]["step"], all[i]["step"]);
    }
    EXPECT_GE(compared, 10);
  }
}

// ABLATE_ISA caps the trainer's own kernels, as on an older CPU: the start
// line names the vectors in use, the curve stays the same but for the last
// bits of the layer-norm sums, and a value it does not know is named and
// ignored.
TEST(TrainCommand, VectorIsaCapIsNamedAndKeepsTheCurve) {
  TempDir dir;
  WriteFile(dir.File("corpus.txt"), testing::EnglishText8(13));
  WriteFile(dir.File("run.yaml"), Config(dir.File("corpus.txt"), "gru", 8));
  const std::vector<std::string> argv = {
      Binary("ablate-worker"), "train", dir.File("run.yaml"), "--format", "json", "--threads", "2"};
  auto widest = RunCommand(argv, dir.path());
  ASSERT_EQ(widest.exit_code, 0) << widest.err;
  const bool has_avx2 = widest.err.find("fused (baseline)") == std::string::npos;
  for (const std::string isa : {"avx2", "baseline"}) {
    SCOPED_TRACE(isa);
    auto capped = RunCommand(argv, dir.path(), std::chrono::seconds(120), {{"ABLATE_ISA", isa}});
    ASSERT_EQ(capped.exit_code, 0) << capped.err;
    const std::string expected = has_avx2 || isa == "baseline" ? isa : "baseline";
    EXPECT_NE(capped.err.find("fused (" + expected + ")"), std::string::npos) << capped.err;
    std::vector<json> a = JsonLines(widest.out), b = JsonLines(capped.out);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      if (!a[i].contains("train_bpc")) continue;
      EXPECT_NEAR(b[i]["train_bpc"].get<double>(), a[i]["train_bpc"].get<double>(), 1e-4);
    }
  }
  auto unknown = RunCommand(argv, dir.path(), std::chrono::seconds(120), {{"ABLATE_ISA", "sse9"}});
  EXPECT_EQ(unknown.exit_code, 0) << unknown.err;
  EXPECT_NE(unknown.err.find("ignoring ABLATE_ISA=sse9"), std::string::npos) << unknown.err;
}

// The kernel's transparent-huge-page mode, read here rather than through the
// code under test.
std::string HugePageMode() {
  std::ifstream in("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string line;
  std::getline(in, line);
  for (const char* mode : {"always", "madvise", "never"}) {
    if (line.find(std::string("[") + mode + "]") != std::string::npos) return mode;
  }
  return "";
}

// The worker restarts itself with glibc.malloc.hugetlb=1 where glibc then
// asks the kernel for huge pages ("madvise" mode), and leaves a hugetlb
// setting of the user's as it is; in "always" mode the kernel backs the heap
// with huge pages whatever glibc says.
TEST(TrainCommand, HeapAsksForHugePagesUnlessTheUserSaysOtherwise) {
  TempDir dir;
  WriteFile(dir.File("corpus.txt"), testing::EnglishText8(13));
  WriteFile(dir.File("run.yaml"), Config(dir.File("corpus.txt"), "mgu", 2));
  const std::vector<std::string> argv = {Binary("ablate-worker"), "train", dir.File("run.yaml"),
                                         "--format", "json"};
  const std::string mode = HugePageMode();
  const std::string on = ", heap on huge pages";
  const auto run = [&](const std::string& tunables) {
    // Whatever this test's own environment holds, the worker starts afresh.
    auto result = RunCommand(argv, dir.path(), std::chrono::seconds(120),
                             {{"GLIBC_TUNABLES", tunables}, {"ABLATE_RESTARTED", ""}});
    EXPECT_EQ(result.exit_code, 0) << result.err;
    return result;
  };
  auto plain = run("");
  EXPECT_EQ(plain.err.find(on) != std::string::npos, mode == "always" || mode == "madvise")
      << mode << "\n" << plain.err;
  // Another tunable of the user's: hugetlb is added beside it.
  auto other = run("glibc.malloc.arena_max=2");
  EXPECT_EQ(other.err.find(on) != std::string::npos, mode == "always" || mode == "madvise")
      << mode << "\n" << other.err;
  // The user's own hugetlb=0 wins, but cannot overrule the kernel's "always".
  auto off = run("glibc.malloc.hugetlb=0");
  EXPECT_EQ(off.err.find(on) != std::string::npos, mode == "always") << mode << "\n" << off.err;
  // The curve does not depend on where the heap's pages come from.
  std::vector<json> a = JsonLines(plain.out), b = JsonLines(off.out);
  ASSERT_EQ(a.size(), b.size());
  int compared = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    for (const char* key : {"train_bpc", "valid_bpc", "test_bpc"}) {
      if (!a[i].contains(key)) continue;
      ASSERT_TRUE(b[i].contains(key)) << key << " line " << i;
      EXPECT_EQ(a[i][key].get<double>(), b[i][key].get<double>()) << key << " line " << i;
      ++compared;
    }
  }
  EXPECT_GE(compared, 2);
}

TEST(TrainCommand, BadInputIsOneLineNamingTheSettingAndNothingIsWritten) {
  TempDir dir;
  WriteFile(dir.File("corpus.txt"), testing::EnglishText8(13));
  WriteFile(dir.File("caps.txt"), "Capital letters are not in the text8 alphabet");
  struct Case {
    std::string name, yaml;
    std::vector<std::string> flags;
    std::string expect;
  };
  const std::string corpus = dir.File("corpus.txt");
  std::vector<Case> cases = {
      {"cell", "data: {path: " + corpus + "}\nmodel: {cell: rnn}\n", {}, "rnn"},
      {"init", "data: {path: " + corpus + "}\nmodel: {init: glorot}\n", {}, "glorot"},
      {"hidden", "data: {path: " + corpus + "}\nmodel: {hidden: 0}\n", {}, "model.hidden"},
      {"batch", "data: {path: " + corpus + "}\ntrain: {batch: 100000000}\n", {}, "train.batch"},
      {"short",
       "data: {path: " + corpus + "}\nmodel: {vocab: 27}\ntrain: {batch: 5000, seq: 100}\n",
       {},
       "needs at least"},
      {"alphabet",
       "data: {path: " + dir.File("caps.txt") + "}\nmodel: {vocab: 27}\n",
       {},
       "0x43 'C'"},
      {"missing", "data: {path: " + dir.File("absent.txt") + "}\n", {}, "absent.txt"},
      {"data dir", "data: {corpus: text8}\n", {"--data-dir", dir.File("no/such/dir")}, "no/such"},
      {"checkpoint",
       "data: {path: " + corpus +
           "}\nmodel: {hidden: 8, vocab: 27}\ntrain: {batch: 2, seq: 8, "
           "steps: 4}\n",
       {"--stop-at", "2", "--checkpoint", dir.File("nowhere/ckpt")},
       "nowhere"},
      {"checkpoint is a directory",
       "data: {path: " + corpus + "}\nmodel: {hidden: 8, vocab: 27}\ntrain: {batch: 2, seq: 8}\n",
       {"--checkpoint", dir.path()},
       "is a directory"},
      {"device", "data: {path: " + corpus + "}\n", {"--device", "cuda:3"}, "cuda:3"},
      // Far more memory than any machine has: refused before anything is
      // allocated, not an abort in LibTorch's allocator.
      {"memory",
       "data: {path: " + corpus +
           "}\nmodel: {hidden: 65536, vocab: 27}\ntrain: {batch: 65536, seq: 65536, "
           "checkpoint_every: 1}\n",
       {"--checkpoint", dir.File("big.ckpt"), "--device", "cpu"},
       "model.hidden 65536 with train.batch 65536 and train.seq 65536 needs at least"},
  };
  for (const Case& c : cases) {
    WriteFile(dir.File("bad.yaml"), c.yaml);
    std::vector<std::string> argv = {Binary("ablate-worker"), "train", dir.File("bad.yaml")};
    argv.insert(argv.end(), c.flags.begin(), c.flags.end());
    auto r = RunCommand(argv, dir.path());
    EXPECT_NE(r.exit_code, 0) << c.name;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << c.name << ": " << r.err;
    EXPECT_TRUE(r.out.empty()) << c.name << ": " << r.out;
    EXPECT_EQ(testing::Lines(r.err).size(), 1u) << c.name << ": " << r.err;
  }
  EXPECT_FALSE(std::filesystem::exists(dir.File("nowhere")));
  // Nor the checkpoint probes' temporary files.
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    EXPECT_EQ(entry.path().filename().string().find(".tmp-"), std::string::npos) << entry.path();
  }
  EXPECT_FALSE(std::filesystem::exists(dir.File("big.ckpt")));
  EXPECT_FALSE(std::filesystem::exists(dir.File("no")));
}

// An allocation that fails mid-run (here under an address-space limit; on a
// GPU, CUDA's out of memory) ends the run with an error naming the step, not
// an abort: a worker fails the job and carries on. The big config passes the
// up-front memory check (its lower bound is 1.5 GiB) but a step needs about
// 9 GiB. One thread, as OpenBLAS's buffers grow with the thread count; the
// small config first shows that this build starts and trains under the limit.
TEST(TrainCommand, RunningOutOfMemoryMidRunIsAnErrorNotAnAbort) {
  TempDir dir;
  WriteFile(dir.File("corpus.txt"), testing::EnglishText8(900));
  const std::string model = "model: {cell: gru, layer_norm: true, init: xavier, vocab: 27, ";
  WriteFile(dir.File("small.yaml"), "data: {path: " + dir.File("corpus.txt") + "}\n" + model +
                                        "hidden: 16}\ntrain: {batch: 4, seq: 16, steps: 2}\n");
  WriteFile(dir.File("big.yaml"),
            "data: {path: " + dir.File("corpus.txt") + "}\n" + model +
                "hidden: 256}\ntrain: {batch: 1024, seq: 512, steps: 2, log_every: 1}\n");
  auto limited = [&](const std::string& config) {
    return RunCommand({"/bin/bash", "-c",
                       "ulimit -v 3500000 && exec \"$0\" train \"$1\" --threads 1 --device cpu "
                       "--format json",
                       Binary("ablate-worker"), dir.File(config)},
                      dir.path());
  };
  const auto small = limited("small.yaml");
  if (small.exit_code != 0) {
    // A build that maps more (CUDA's libraries) cannot start under the limit;
    // anything else is a failure of its own.
    ASSERT_TRUE(small.err.find("memory") != std::string::npos ||
                small.err.find("allocate") != std::string::npos ||
                small.err.find("Resource temporarily unavailable") != std::string::npos)
        << small.err;
    GTEST_SKIP() << "this build does not start in 3.5 GB: " << small.err;
  }
  const auto r = limited("big.yaml");
  if (r.err.find("needs at least") != std::string::npos) {
    GTEST_SKIP() << "this machine has too little memory to get past the check: " << r.err;
  }
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
  // LibTorch's CPU allocator refuses, or (where another allocation crosses
  // the limit first) operator new.
  EXPECT_TRUE(r.err.find("ablate-worker train: training step 1: DefaultCPUAllocator: can't "
                         "allocate memory") != std::string::npos ||
              r.err.find("ablate-worker train: training step 1: out of memory") !=
                  std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find("terminate called"), std::string::npos) << r.err;
}

// The worker creates its --work-dir (a container's volume may not have the
// folder yet) and refuses at start one it cannot write, rather than failing
// every job it leases. No coordinator is needed to get that far.
TEST(Worker, AWorkDirThatCannotBeWrittenIsRefusedAtStart) {
  TempDir dir;
  WriteFile(dir.File("a-file"), "not a directory");
  const std::string coordinator = "127.0.0.1:" + std::to_string(testing::FreePort());
  auto r = RunCommand({Binary("ablate-worker"), "--coordinator", coordinator, "--work-dir",
                       dir.File("a-file/work")},
                      dir.path(), std::chrono::seconds(60));
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("work directory " + dir.File("a-file/work") + ": "), std::string::npos)
      << r.err;
  EXPECT_EQ(testing::Lines(r.err).size(), 1u) << r.err;
}

TEST(DataPrepare, TurnsTextIntoText8Format) {
  TempDir dir;
  WriteFile(dir.File("in.html"), "<p>In 1999, <b>GRU</b> &amp; LSTM cells!</p>\n");
  auto r = RunCommand(
      {Binary("ablate-worker"), "data", "prepare", dir.File("in.html"), dir.File("out.txt")},
      dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(testing::ReadFile(dir.File("out.txt")), " in one nine nine nine gru lstm cells");
  auto missing = RunCommand(
      {Binary("ablate-worker"), "data", "prepare", dir.File("absent"), dir.File("out2.txt")},
      dir.path());
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.err.find("absent"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir.File("out2.txt")));
}

}  // namespace
}  // namespace ablate
