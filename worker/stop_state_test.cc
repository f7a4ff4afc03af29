#include "worker/stop_state.h"

#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <thread>

namespace ablate {
namespace {

using std::chrono::system_clock;

TEST(StopStateTest, BeforeTheStopCallsAreRetriedAndDeadlinesKept) {
  StopState stop(5);
  EXPECT_FALSE(stop.requested());
  EXPECT_TRUE(stop.WithinGrace());
  EXPECT_FALSE(stop.PastDeadlineCap());
  const auto far = system_clock::now() + std::chrono::hours(1);
  EXPECT_EQ(stop.CapDeadline(far), far);
}

TEST(StopStateTest, TheStopCapsDeadlinesAtTheEndOfItsGrace) {
  StopState stop(5);
  const auto before = system_clock::now();
  stop.Request();
  EXPECT_TRUE(stop.requested());
  EXPECT_TRUE(stop.WithinGrace());
  EXPECT_FALSE(stop.PastDeadlineCap());
  const auto capped = stop.CapDeadline(system_clock::now() + std::chrono::hours(1));
  EXPECT_GE(capped, before + std::chrono::seconds(5));
  EXPECT_LE(capped, system_clock::now() + std::chrono::seconds(5));
  // A deadline sooner than the cap stays as it is.
  const auto soon = system_clock::now() + std::chrono::seconds(1);
  EXPECT_EQ(stop.CapDeadline(soon), soon);
}

TEST(StopStateTest, ASecondRequestDoesNotRestartTheGrace) {
  StopState stop(0.2);
  stop.Request();
  const auto cap = stop.CapDeadline(system_clock::time_point::max());
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  stop.Request();
  EXPECT_EQ(stop.CapDeadline(system_clock::time_point::max()), cap);
  std::this_thread::sleep_for(std::chrono::milliseconds(250));
  EXPECT_FALSE(stop.WithinGrace());
  EXPECT_TRUE(stop.PastDeadlineCap());
}

TEST(StopStateTest, SigtermRequestsTheStopOfTheInstalledInstance) {
  StopState first(5), second(5);
  first.InstallSignalHandlers();
  second.InstallSignalHandlers();  // replaces the first
  ASSERT_EQ(std::raise(SIGTERM), 0);
  EXPECT_TRUE(second.requested());
  EXPECT_FALSE(first.requested());
}

TEST(StopStateTest, ASignalAfterTheInstanceIsGoneIsIgnored) {
  {
    StopState stop(5);
    stop.InstallSignalHandlers();
  }
  // The handler stays, with nothing to set: the process lives on.
  ASSERT_EQ(std::raise(SIGINT), 0);
  SUCCEED();
}

}  // namespace
}  // namespace ablate
