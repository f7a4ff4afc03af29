#include "common/mutex.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

namespace ablate {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

class Flag {
 public:
  void Set() EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    set_ = true;
    changed_.SignalAll();
  }

  // Whether the flag was set before `timeout` passed.
  bool WaitFor(milliseconds timeout) EXCLUDES(mu_) {
    const auto deadline = steady_clock::now() + timeout;
    MutexLock lock(&mu_);
    bool timed_out = false;
    while (!set_ && !timed_out) timed_out = changed_.WaitUntil(deadline);
    return set_;
  }

 private:
  Mutex mu_;
  CondVar changed_{&mu_};
  bool set_ GUARDED_BY(mu_) = false;
};

TEST(CondVar, WaitUntilReturnsOnceSignalled) {
  Flag flag;
  std::thread setter([&] {
    std::this_thread::sleep_for(milliseconds(20));
    flag.Set();
  });
  const auto start = steady_clock::now();
  EXPECT_TRUE(flag.WaitFor(milliseconds(10'000)));
  EXPECT_LT(steady_clock::now() - start, milliseconds(5'000));
  setter.join();
}

TEST(CondVar, WaitUntilReturnsAtTheDeadline) {
  Flag flag;
  const auto start = steady_clock::now();
  EXPECT_FALSE(flag.WaitFor(milliseconds(50)));
  EXPECT_GE(steady_clock::now() - start, milliseconds(50));
}

TEST(CondVar, WaitForSaysWhetherItTimedOut) {
  Mutex mu;
  CondVar cv(&mu);
  MutexLock lock(&mu);
  bool timed_out = false;
  // A spurious wakeup is allowed to return early; the time passes in the end.
  for (int i = 0; i < 100 && !timed_out; ++i) timed_out = cv.WaitFor(milliseconds(1));
  EXPECT_TRUE(timed_out);
}

}  // namespace
}  // namespace ablate
