// Time as the scheduler sees it: milliseconds since the Unix epoch. Injected
// so that lease expiry can be tested without waiting.
#ifndef ABLATE_COORDINATOR_CLOCK_H_
#define ABLATE_COORDINATOR_CLOCK_H_

#include <atomic>
#include <cstdint>

namespace ablate {

class Clock {
 public:
  virtual ~Clock() = default;
  // Thread-safe.
  virtual int64_t NowMs() const = 0;
  // The wall clock; lives forever.
  static Clock* Real();
};

// A clock that moves only when told to. Thread-safe.
class FakeClock : public Clock {
 public:
  explicit FakeClock(int64_t now_ms = 1'700'000'000'000) : now_ms_(now_ms) {}
  int64_t NowMs() const override { return now_ms_.load(); }
  void AdvanceMs(int64_t ms) { now_ms_ += ms; }

 private:
  std::atomic<int64_t> now_ms_;
};

}  // namespace ablate

#endif  // ABLATE_COORDINATOR_CLOCK_H_
