#include "worker/startup.h"

#include <gtest/gtest.h>

#include <fstream>

namespace ablate {
namespace {

TEST(Startup, HugetlbTunableIsTheLastOneNamed) {
  EXPECT_EQ(HugetlbTunable(nullptr), "");
  EXPECT_EQ(HugetlbTunable(""), "");
  EXPECT_EQ(HugetlbTunable("glibc.malloc.arena_max=2"), "");
  EXPECT_EQ(HugetlbTunable("glibc.malloc.hugetlb=0"), "0");
  EXPECT_EQ(HugetlbTunable("glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"), "1");
  EXPECT_EQ(HugetlbTunable("glibc.malloc.hugetlb=1:glibc.malloc.hugetlb=0"), "0");
  EXPECT_EQ(HugetlbTunable("glibc.malloc.hugetlb=2:"), "2");
  // A longer name that starts the same is another tunable.
  EXPECT_EQ(HugetlbTunable("glibc.malloc.hugetlbx=1"), "");
}

TEST(Startup, TunablesWithHugetlbKeepWhatIsThere) {
  EXPECT_EQ(TunablesWithHugetlb(nullptr), "glibc.malloc.hugetlb=1");
  EXPECT_EQ(TunablesWithHugetlb(""), "glibc.malloc.hugetlb=1");
  EXPECT_EQ(TunablesWithHugetlb("glibc.malloc.arena_max=2"),
            "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1");
  EXPECT_EQ(TunablesWithHugetlb("glibc.malloc.arena_max=2:"),
            "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1");
  EXPECT_EQ(HugetlbTunable(TunablesWithHugetlb("glibc.malloc.check=0").c_str()), "1");
}

TEST(Startup, ReadsTheKernelsHugePageMode) {
  std::ifstream in("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string line;
  const std::string mode = TransparentHugePageMode();
  if (!std::getline(in, line)) {
    EXPECT_EQ(mode, "");
    return;
  }
  EXPECT_NE(line.find("[" + mode + "]"), std::string::npos) << line;
  EXPECT_TRUE(mode == "always" || mode == "madvise" || mode == "never") << mode;
  EXPECT_GE(HugePageMib(), 0);
}

}  // namespace
}  // namespace ablate
