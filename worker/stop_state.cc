#include "worker/stop_state.h"

#include <time.h>

#include <algorithm>
#include <csignal>

namespace ablate {

namespace {

static_assert(std::atomic<int64_t>::is_always_lock_free,
              "StopState::Request runs in signal handlers");
static_assert(std::atomic<bool>::is_always_lock_free, "StopState::Request runs in signal handlers");
static_assert(std::atomic<StopState*>::is_always_lock_free, "OnStopSignal runs in signal handlers");

// The instance the signal handler sets; null: none.
std::atomic<StopState*> g_installed{nullptr};

int64_t ClockNs(clockid_t clock) {
  timespec now{};
  clock_gettime(clock, &now);
  return int64_t{now.tv_sec} * 1000000000 + now.tv_nsec;
}

void OnStopSignal(int) {
  if (StopState* stop = g_installed.load()) stop->Request();
}

}  // namespace

StopState::StopState(double grace_seconds) : grace_seconds_(grace_seconds) {}

StopState::~StopState() {
  StopState* self = this;
  g_installed.compare_exchange_strong(self, nullptr);
}

void StopState::InstallSignalHandlers() {
  g_installed.store(this);
  std::signal(SIGTERM, OnStopSignal);
  std::signal(SIGINT, OnStopSignal);
}

void StopState::Request() {
  int64_t none = 0;
  if (!requested_monotonic_ns_.compare_exchange_strong(none, ClockNs(CLOCK_MONOTONIC))) return;
  deadline_cap_ns_.store(ClockNs(CLOCK_REALTIME) + static_cast<int64_t>(grace_seconds_ * 1e9));
  requested_.store(true);
}

bool StopState::WithinGrace() const {
  const int64_t since = requested_monotonic_ns_.load();
  return since == 0 ||
         ClockNs(CLOCK_MONOTONIC) - since < static_cast<int64_t>(grace_seconds_ * 1e9);
}

std::chrono::system_clock::time_point StopState::CapDeadline(
    std::chrono::system_clock::time_point deadline) const {
  const int64_t cap = deadline_cap_ns_.load();
  if (cap == 0) return deadline;
  return std::min(deadline, std::chrono::system_clock::time_point(
                                std::chrono::duration_cast<std::chrono::system_clock::duration>(
                                    std::chrono::nanoseconds(cap))));
}

bool StopState::PastDeadlineCap() const {
  const int64_t cap = deadline_cap_ns_.load();
  return cap != 0 && ClockNs(CLOCK_REALTIME) >= cap;
}

}  // namespace ablate
