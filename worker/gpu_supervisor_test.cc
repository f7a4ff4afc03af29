#include "worker/gpu_supervisor.h"

#include <gtest/gtest.h>

namespace ablate {
namespace {

using Env = std::map<std::string, std::string>;

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

TEST(WithoutOptions, DropsBothFormsWithTheirValues) {
  const std::vector<std::string> args = {"--coordinator",   "h:1", "--gpus", "all", "--name=box",
                                         "--threads",       "4",   "--name", "x",   "--gpus=0,1",
                                         "--exit-when-idle"};
  EXPECT_EQ(
      WithoutOptions(args, {"--gpus", "--name"}),
      (std::vector<std::string>{"--coordinator", "h:1", "--threads", "4", "--exit-when-idle"}));
}

TEST(WithoutOptions, KeepsOptionsThatOnlyShareAPrefix) {
  const std::vector<std::string> args = {"--gpus-extra", "1", "--names", "a"};
  EXPECT_EQ(WithoutOptions(args, {"--gpus", "--name"}), args);
}

}  // namespace
}  // namespace ablate
