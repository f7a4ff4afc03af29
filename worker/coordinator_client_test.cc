#include "worker/coordinator_client.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <thread>

namespace ablate {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

// The scenario of a worker told to stop while a heartbeat waits for a
// coordinator that is gone. Returns 0 when it behaves; otherwise says why.
int CallInFlightEndsAtTheCap() {
  // Nothing listens on port 1: a wait-for-ready call waits out its deadline.
  CoordinatorClient client(grpc::CreateChannel("127.0.0.1:1", grpc::InsecureChannelCredentials()));
  Status result;
  const auto start = steady_clock::now();
  std::thread call([&] {
    v1::HeartbeatResponse response;
    result = client.Heartbeat(v1::HeartbeatRequest(), &response);
  });
  std::this_thread::sleep_for(milliseconds(300));  // in flight, with a 10 s deadline
  CoordinatorClient::CapDeadlines(0.3);
  if (int n = CoordinatorClient::CancelCallsPastCap(); n != 0) {
    std::fprintf(stderr, "cancelled %d call(s) before the cap\n", n);
    return 1;
  }
  std::this_thread::sleep_for(milliseconds(500));
  const int cancelled = CoordinatorClient::CancelCallsPastCap();
  call.join();
  const double seconds = std::chrono::duration<double>(steady_clock::now() - start).count();
  if (cancelled != 1) {
    std::fprintf(stderr, "cancelled %d calls past the cap, not 1\n", cancelled);
    return 1;
  }
  // Read as the deadline it is, so callers retry or give up as for a
  // coordinator that is away, never take it for a refusal.
  if (result.code() != Status::kDeadlineExceeded || seconds > 5) {
    std::fprintf(stderr, "the call ended after %.1f s with %s\n", seconds,
                 result.ToString().c_str());
    return 1;
  }
  // A call started past the cap fails at once.
  v1::HeartbeatResponse response;
  const auto late = steady_clock::now();
  const Status late_result = client.Heartbeat(v1::HeartbeatRequest(), &response);
  if (late_result.code() != Status::kDeadlineExceeded ||
      steady_clock::now() - late > milliseconds(2000)) {
    std::fprintf(stderr, "a call started past the cap: %s\n", late_result.ToString().c_str());
    return 1;
  }
  return 0;
}

// The cap lasts for the process, so the scenario runs in a child of its own.
TEST(CoordinatorClientDeathTest, CallsStillInFlightWhenTheCapPassesAreCancelled) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(_exit(CallInFlightEndsAtTheCap()), testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace ablate
