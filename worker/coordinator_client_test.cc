#include "worker/coordinator_client.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <thread>

#include "worker/stop_state.h"

namespace ablate {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

// A worker told to stop while a heartbeat waits for a coordinator that is
// gone: the call ends when the stop's grace does, not at its own deadline.
TEST(CoordinatorClient, CallsStillInFlightWhenTheGraceEndsAreCancelled) {
  StopState stop(/*grace_seconds=*/0.3);
  // Nothing listens on port 1: a wait-for-ready call waits out its deadline.
  GrpcCoordinatorClient client(
      grpc::CreateChannel("127.0.0.1:1", grpc::InsecureChannelCredentials()), &stop);
  Status result;
  const auto start = steady_clock::now();
  std::thread call([&] {
    v1::HeartbeatResponse response;
    result = client.Heartbeat(v1::HeartbeatRequest(), &response);
  });
  std::this_thread::sleep_for(milliseconds(300));  // in flight, with a 10 s deadline
  EXPECT_EQ(client.CancelCallsPastCap(), 0) << "before the stop";
  stop.Request();
  EXPECT_EQ(client.CancelCallsPastCap(), 0) << "within the grace";
  std::this_thread::sleep_for(milliseconds(500));
  EXPECT_EQ(client.CancelCallsPastCap(), 1);
  call.join();
  // Read as the deadline it is, so callers retry or give up as for a
  // coordinator that is away, never take it for a refusal.
  EXPECT_EQ(result.code(), Status::kDeadlineExceeded) << result.ToString();
  EXPECT_LT(steady_clock::now() - start, std::chrono::seconds(5));

  // A call started past the end of the grace fails at once.
  v1::HeartbeatResponse response;
  const auto late = steady_clock::now();
  const Status late_result = client.Heartbeat(v1::HeartbeatRequest(), &response);
  EXPECT_EQ(late_result.code(), Status::kDeadlineExceeded) << late_result.ToString();
  EXPECT_LT(steady_clock::now() - late, milliseconds(2000));
}

TEST(StopState, GraceStartsAtTheFirstRequest) {
  StopState stop(/*grace_seconds=*/0.2);
  EXPECT_FALSE(stop.requested());
  EXPECT_TRUE(stop.WithinGrace());
  EXPECT_FALSE(stop.PastDeadlineCap());
  const auto far = std::chrono::system_clock::now() + std::chrono::hours(1);
  EXPECT_EQ(stop.CapDeadline(far), far) << "no cap before the stop";

  stop.Request();
  EXPECT_TRUE(stop.requested());
  EXPECT_TRUE(stop.WithinGrace());
  EXPECT_LT(stop.CapDeadline(far), std::chrono::system_clock::now() + std::chrono::seconds(1));
  std::this_thread::sleep_for(milliseconds(100));
  stop.Request();  // a second signal does not restart the grace
  std::this_thread::sleep_for(milliseconds(150));
  EXPECT_FALSE(stop.WithinGrace());
  EXPECT_TRUE(stop.PastDeadlineCap());
}

TEST(StopState, SigtermRequestsTheStopOfTheInstalledInstance) {
  StopState stop(/*grace_seconds=*/60);
  stop.InstallSignalHandlers();
  ASSERT_EQ(raise(SIGTERM), 0);
  EXPECT_TRUE(stop.requested());
  EXPECT_TRUE(stop.WithinGrace());
}

}  // namespace
}  // namespace ablate
