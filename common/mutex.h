// Mutex, MutexLock and CondVar: std::mutex and std::condition_variable with
// the capability attributes of common/thread_annotations.h, which libstdc++'s
// own types lack, so that clang checks every GUARDED_BY field against them.
//
//   class Queue {
//    public:
//     void Push(int v) EXCLUDES(mu_) {
//       MutexLock lock(&mu_);
//       items_.push_back(v);
//       nonempty_.Signal();
//     }
//     int Pop() EXCLUDES(mu_) {
//       MutexLock lock(&mu_);
//       while (items_.empty()) nonempty_.Wait();
//       ...
//     }
//    private:
//     Mutex mu_;
//     CondVar nonempty_{&mu_};
//     std::deque<int> items_ GUARDED_BY(mu_);
//   };
//
// Waits take no predicate: a lambda that reads guarded fields is a function
// of its own to the analysis, which cannot see that the lock is held in it.
#ifndef ABLATE_COMMON_MUTEX_H_
#define ABLATE_COMMON_MUTEX_H_

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "common/thread_annotations.h"

namespace ablate {

class CondVar;

// Not recursive. Thread-safe, as a lock is.
class CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ACQUIRE() { mu_.lock(); }
  void Unlock() RELEASE() { mu_.unlock(); }
  // Tells the analysis that the caller holds the lock, where it cannot see it
  // (std::mutex cannot tell who holds it, so nothing is checked at run time).
  void AssertHeld() const ASSERT_CAPABILITY(this) {}

 private:
  friend class CondVar;
  std::mutex mu_;
};

// Holds a Mutex from its construction to the end of its scope.
class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ACQUIRE(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() RELEASE() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

// A condition variable bound to one Mutex, which every caller of Wait*
// holds: the wait releases it and takes it again before returning. Wakeups
// may be spurious, so every wait sits in a loop over its condition:
//   while (!done_) cv_.Wait();
class CondVar {
 public:
  explicit CondVar(Mutex* mu) : mu_(mu) {}
  CondVar(const CondVar&) = delete;
  CondVar& operator=(const CondVar&) = delete;

  void Wait() {
    std::unique_lock<std::mutex> lock(mu_->mu_, std::adopt_lock);
    cv_.wait(lock);
    lock.release();
  }

  // Like Wait, but returns by `deadline` at the latest. True when the
  // deadline has passed.
  template <typename Clock, typename Duration>
  bool WaitUntil(const std::chrono::time_point<Clock, Duration>& deadline) {
    std::unique_lock<std::mutex> lock(mu_->mu_, std::adopt_lock);
    const bool timed_out = cv_.wait_until(lock, deadline) == std::cv_status::timeout;
    lock.release();
    return timed_out;
  }

  // Like Wait, but returns after `timeout` at the latest. True when it has
  // passed.
  template <typename Rep, typename Period>
  bool WaitFor(const std::chrono::duration<Rep, Period>& timeout) {
    return WaitUntil(std::chrono::steady_clock::now() + timeout);
  }

  // Wake one waiter / every waiter. The lock need not be held.
  void Signal() { cv_.notify_one(); }
  void SignalAll() { cv_.notify_all(); }

 private:
  Mutex* const mu_;
  std::condition_variable cv_;
};

}  // namespace ablate

#endif  // ABLATE_COMMON_MUTEX_H_
