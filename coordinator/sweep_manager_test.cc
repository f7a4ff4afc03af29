#include "coordinator/sweep_manager.h"

#include <gtest/gtest.h>

#include "coordinator/test_util.h"
#include "store/store.h"

namespace ablate {
namespace {

using testing::Await;
using testing::kTestSpecJobs;
using testing::Managers;
using testing::TempDir;
using testing::TestSpec;

class SweepManagerTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    m_ = std::make_unique<Managers>(GetParam() ? ":memory:" : dir_.File("ablate.db"));
    Status opened = m_->Open();
    ASSERT_TRUE(opened.ok()) << opened.ToString();
  }

  StatusOr<v1::LaunchResponse> Launch(const std::string& text, bool extend = false) {
    v1::LaunchRequest request;
    request.set_spec_text(text);
    request.set_filename("sweep.yaml");
    request.set_extend(extend);
    v1::LaunchResponse reply;
    Status status = Await([&](auto done) { m_->sweeps->Launch(request, &reply, done); });
    if (!status.ok()) return status;
    return reply;
  }

  v1::ListSweepsResponse List() {
    v1::ListSweepsResponse reply;
    EXPECT_TRUE(Await([&](auto done) { m_->sweeps->ListSweeps(&reply, done); }).ok());
    return reply;
  }

  TempDir dir_;
  std::unique_ptr<Managers> m_;
};

INSTANTIATE_TEST_SUITE_P(Backends, SweepManagerTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Memory" : "File"; });

TEST_P(SweepManagerTest, LaunchCreatesOnePendingJobPerGridPoint) {
  auto launched = Launch(TestSpec("a"));
  ASSERT_TRUE(launched.ok()) << launched.status().ToString();
  EXPECT_EQ(launched->name(), "a");
  EXPECT_EQ(launched->jobs_created(), kTestSpecJobs);
  EXPECT_EQ(launched->jobs_existing(), 0);
  v1::ListSweepsResponse sweeps = List();
  ASSERT_EQ(sweeps.sweeps_size(), 1);
  EXPECT_EQ(sweeps.sweeps(0).id(), launched->sweep_id());
  EXPECT_EQ(sweeps.sweeps(0).state(), "active");
  EXPECT_EQ(sweeps.sweeps(0).counts().pending(), kTestSpecJobs);
  EXPECT_EQ(sweeps.sweeps(0).spec_hash().size(), 64u);
}

TEST_P(SweepManagerTest, LaunchingTheSameSpecAgainCreatesNothing) {
  auto first = Launch(TestSpec("a"));
  ASSERT_TRUE(first.ok());
  // Layout and comments do not change what the sweep runs.
  auto second = Launch("# again\n" + TestSpec("a"));
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_EQ(second->sweep_id(), first->sweep_id());
  EXPECT_EQ(second->jobs_created(), 0);
  EXPECT_EQ(second->jobs_existing(), kTestSpecJobs);
  EXPECT_EQ(List().sweeps_size(), 1);
}

TEST_P(SweepManagerTest, ChangedSpecUnderTheSameNameIsANewSweep) {
  auto first = Launch(TestSpec("a"));
  auto second = Launch(TestSpec("a", "seeds: [1, 2]\n"));
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_NE(second->sweep_id(), first->sweep_id());
  EXPECT_EQ(second->jobs_created(), 2 * kTestSpecJobs);
  EXPECT_EQ(List().sweeps_size(), 2);
}

TEST_P(SweepManagerTest, ExtendAddsOnlyTheNewGridPoints) {
  auto first = Launch(TestSpec("a", "seeds: [0]\n"));
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  auto extended = Launch(TestSpec("a", "seeds: [0, 1]\n"), /*extend=*/true);
  ASSERT_TRUE(extended.ok()) << extended.status().ToString();
  EXPECT_EQ(extended->sweep_id(), first->sweep_id());
  EXPECT_EQ(extended->jobs_created(), kTestSpecJobs);
  EXPECT_EQ(extended->jobs_existing(), kTestSpecJobs);
  v1::ListSweepsResponse sweeps = List();
  ASSERT_EQ(sweeps.sweeps_size(), 1);
  EXPECT_EQ(sweeps.sweeps(0).counts().total(), 2 * kTestSpecJobs);
  auto again = Launch(TestSpec("a", "seeds: [0, 1]\n"), /*extend=*/true);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->jobs_created(), 0);
}

constexpr char kProgramSpec[] = R"(name: p
program: train.py
parameters:
  lr: {values: [0.1, 0.01]}
)";

TEST_P(SweepManagerTest, ExtendAddsProgramJobsButRefusesAnotherCommand) {
  auto first = Launch(kProgramSpec);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  auto extended = Launch(std::string(kProgramSpec) + "  seed: {values: [0, 1]}\n", true);
  ASSERT_TRUE(extended.ok()) << extended.status().ToString();
  EXPECT_EQ(extended->sweep_id(), first->sweep_id());
  EXPECT_EQ(extended->jobs_created(), 4);

  for (const std::string& other :
       {std::string(kProgramSpec) +
            "command: [\"${env}\", python3, \"${program}\", \"${args_no_hyphens}\"]\n",
        std::string("name: p\nprogram: other.py\nparameters:\n  lr: {values: [0.1, 0.01]}\n"),
        TestSpec("p")}) {
    auto refused = Launch(other, /*extend=*/true);
    ASSERT_FALSE(refused.ok()) << other;
    EXPECT_EQ(refused.status().code(), Status::kFailedPrecondition);
    EXPECT_NE(refused.status().message().find("--extend cannot change what sweep"),
              std::string::npos)
        << refused.status().message();
  }
  v1::ListSweepsResponse sweeps = List();
  ASSERT_EQ(sweeps.sweeps_size(), 1);
  EXPECT_EQ(sweeps.sweeps(0).counts().total(), 6);
}

// A W&B file whose program: an older release ignored: its jobs ran the
// trainer, so extending it with that same file (now a program sweep) would
// mix the two, however its stored text parses today.
TEST_P(SweepManagerTest, ExtendOfATrainerSweepWhoseStoredSpecNamesAProgramIsRefused) {
  const std::string wandb = "name: p\nprogram: train.py\nparameters:\n  lr: {values: [0.1]}\n";
  ASSERT_TRUE(Launch(TestSpec("p")).ok());
  ASSERT_TRUE(m_->db->Exec("UPDATE sweeps SET spec_text = '" + wandb + "'").ok());
  auto refused = Launch(wandb, /*extend=*/true);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Status::kFailedPrecondition) << refused.status().ToString();
  EXPECT_EQ(List().sweeps(0).counts().total(), kTestSpecJobs);
}

TEST_P(SweepManagerTest, SpecErrorIsInvalidArgumentWithItsPlaceAndWritesNothing) {
  auto launched = Launch(TestSpec("a", "bogus: 1\n"));
  ASSERT_FALSE(launched.ok());
  EXPECT_EQ(launched.status().code(), Status::kInvalidArgument);
  EXPECT_EQ(launched.status().message().rfind("sweep.yaml:", 0), 0u) << launched.status().message();
  EXPECT_EQ(List().sweeps_size(), 0);
}

}  // namespace
}  // namespace ablate
