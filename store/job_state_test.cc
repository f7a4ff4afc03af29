#include "store/job_state.h"

#include <gtest/gtest.h>

#include <string>

namespace ablate {
namespace {

TEST(JobState, EveryStateSpellsAsTheStoreKeepsItAndParsesBack) {
  // The words of the jobs table's CHECK constraint (store.cc).
  const std::string words[] = {"pending", "running", "done", "failed", "cancelled"};
  int i = 0;
  for (JobState s : {JobState::kPending, JobState::kRunning, JobState::kDone, JobState::kFailed,
                     JobState::kCancelled}) {
    EXPECT_EQ(JobStateName(s), words[i++]);
    EXPECT_EQ(ParseJobState(JobStateName(s)), s);
  }
  EXPECT_EQ(ParseJobState("Done"), std::nullopt);
  EXPECT_EQ(ParseJobState(""), std::nullopt);
}

}  // namespace
}  // namespace ablate
