#include "worker/job_uplink.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>

#include "proto/rpc.h"

namespace ablate {

namespace {

using std::chrono::milliseconds;

// Points wait for a batch this large, or this long, unless flushed.
constexpr size_t kBatchPoints = 64;
constexpr milliseconds kBatchWait{500};
// The pause after a failed report: doubles per failure, from the first to the last.
constexpr milliseconds kFirstBackoff{100};
constexpr milliseconds kMaxBackoff{5000};
// A closing uplink whose coordinator stays away tries this many times more,
// then gives its points up with the lease.
constexpr int kClosingTries = 30;
// How often Flush looks whether the stop's grace is over.
constexpr milliseconds kFlushPoll{200};

v1::Split ToProto(Split split) {
  switch (split) {
    case Split::kTrain:
      return v1::SPLIT_TRAIN;
    case Split::kValid:
      return v1::SPLIT_VALID;
    case Split::kTest:
      return v1::SPLIT_TEST;
  }
  return v1::SPLIT_UNSPECIFIED;
}

}  // namespace

JobUplink::JobUplink(CoordinatorClient* client, const StopState* stop, const v1::JobLease& lease,
                     int max_points)
    : client_(client),
      stop_(stop),
      job_id_(lease.job_id()),
      token_(lease.lease_token()),
      heartbeat_period_(
          milliseconds(static_cast<int64_t>(1000 * std::max(0.05, lease.heartbeat_seconds())))),
      max_points_(max_points),
      backoff_(kFirstBackoff),
      thread_([this] { Loop(); }) {}

JobUplink::~JobUplink() {
  {
    MutexLock lock(&mu_);
    closing_ = true;
  }
  wake_.SignalAll();
  thread_.join();
}

void JobUplink::OnPoint(const CurvePoint& p) {
  v1::CurvePoint point;
  if (p.metric.empty()) {
    point.set_split(ToProto(p.split));
    point.set_bpc(p.bpc);
  } else {
    point.set_metric(p.metric);
    point.set_value(p.bpc);
  }
  point.set_step(p.step);
  point.set_bytes_seen(p.bytes_seen);
  point.set_wall_time(p.wall_time);
  MutexLock lock(&mu_);
  pending_.push_back(std::move(point));
  ++queued_;
  wake_.SignalAll();
}

void JobUplink::OnProgress(const Progress& progress) {
  MutexLock lock(&mu_);
  progress_ = progress;
}

Status JobUplink::OnCheckpoint(const std::string& path, int64_t step) {
  return UploadCheckpoint(path, step);
}

bool JobUplink::ShouldStop() { return stop_->requested() || stop_reason() != StopReason::kNone; }

StopReason JobUplink::stop_reason() const {
  MutexLock lock(&mu_);
  return reason_;
}

Status JobUplink::Flush() {
  MutexLock lock(&mu_);
  const int64_t target = queued_;
  flush_requested_ = true;
  wake_.SignalAll();
  while (acked_ < target && reason_ != StopReason::kLeaseLost) {
    if (!stop_->WithinGrace()) {
      return Status::Unavailable(fmt::format("{} points not acknowledged within {} s of the stop",
                                             target - acked_, stop_->grace_seconds()));
    }
    wake_.WaitFor(kFlushPoll);
  }
  if (acked_ < target) return Status::FailedPrecondition("lease lost while flushing points");
  return Status::OK();
}

Status JobUplink::UploadCheckpoint(const std::string& path, int64_t step) {
  ABLATE_RETURN_IF_ERROR(Flush());
  Status s = CoordinatorClient::CallWithRetry(
      [&] { return client_->UploadCheckpoint(job_id_, token_, step, path); },
      [&] { return stop_reason() != StopReason::kLeaseLost && stop_->WithinGrace(); });
  if (s.ok()) spdlog::info("job {}: checkpoint at step {} uploaded", job_id_, step);
  return s;
}

void JobUplink::Loop() {
  MutexLock lock(&mu_);
  while (!Finished()) {
    if (closing_ && !stop_->WithinGrace()) break;  // the points go with the lease
    const SteadyClock::time_point now = SteadyClock::now();
    if (HeartbeatDue(now)) {
      SendHeartbeat();
    } else if (PointsDue(now)) {
      SendPoints();
    } else {
      WaitForWork();
    }
  }
}

bool JobUplink::Finished() const {
  return closing_ && (pending_.empty() || reason_ == StopReason::kLeaseLost || give_up_);
}

// A closing uplink's job is over (done, failed or released): no lease to keep.
bool JobUplink::HeartbeatDue(SteadyClock::time_point now) const {
  return !closing_ && reason_ == StopReason::kNone && now >= next_heartbeat_;
}

bool JobUplink::PointsDue(SteadyClock::time_point now) const {
  const bool batch_ready = flush_requested_ || closing_ || pending_.size() >= kBatchPoints ||
                           now - last_send_ >= kBatchWait;
  return !pending_.empty() && reason_ != StopReason::kLeaseLost && batch_ready && now >= retry_at_;
}

void JobUplink::WaitForWork() {
  std::optional<SteadyClock::time_point> wake;
  if (!closing_ && reason_ == StopReason::kNone) wake = next_heartbeat_;
  if (!pending_.empty() && reason_ != StopReason::kLeaseLost) {
    const SteadyClock::time_point send = std::max(retry_at_, last_send_ + kBatchWait);
    wake = wake ? std::min(*wake, send) : send;
  }
  if (wake) {
    wake_.WaitUntil(*wake);
  } else {
    wake_.Wait();  // for a point, a flush or the close
  }
}

void JobUplink::SendHeartbeat() {
  v1::HeartbeatRequest request;
  request.set_job_id(job_id_);
  request.set_lease_token(token_);
  request.mutable_progress()->set_step(progress_.step);
  request.mutable_progress()->set_steps_total(progress_.steps_total);
  request.mutable_progress()->set_bytes_per_s(progress_.bytes_per_s);
  request.mutable_progress()->set_train_bpc(progress_.train_bpc);
  mu_.Unlock();
  v1::HeartbeatResponse response;
  const Status s = client_->Heartbeat(request, &response);
  mu_.Lock();
  if (s.ok() && response.state() == v1::LEASE_STATE_CANCELLED) {
    reason_ = StopReason::kCancelled;
  } else if ((s.ok() && response.state() == v1::LEASE_STATE_LOST) ||
             s.code() == Status::kFailedPrecondition || s.code() == Status::kNotFound) {
    reason_ = StopReason::kLeaseLost;
  } else if (!s.ok()) {
    spdlog::warn("job {}: heartbeat failed ({}); retrying", job_id_, s.ToString());
  }
  next_heartbeat_ = SteadyClock::now() + heartbeat_period_;
  wake_.SignalAll();
}

void JobUplink::SendPoints() {
  v1::ReportPointsRequest request;
  request.set_job_id(job_id_);
  request.set_lease_token(token_);
  const size_t n = std::min(pending_.size(), max_points_);
  for (size_t i = 0; i < n; ++i) *request.add_points() = pending_[i];
  mu_.Unlock();
  const Status s = client_->ReportPoints(request);
  mu_.Lock();
  // Points queued meanwhile went to the back: the first n are the ones sent.
  last_send_ = SteadyClock::now();
  if (s.ok()) {
    pending_.erase(pending_.begin(), pending_.begin() + n);
    acked_ += n;
    backoff_ = kFirstBackoff;
    if (pending_.empty()) flush_requested_ = false;
  } else if (IsTransient(s)) {
    spdlog::warn("job {}: {} points wait for the coordinator ({})", job_id_, pending_.size(),
                 s.ToString());
    BackOff();
  } else {
    spdlog::error("job {}: points refused: {}", job_id_, s.ToString());
    reason_ = StopReason::kLeaseLost;
  }
  wake_.SignalAll();
}

void JobUplink::BackOff() {
  retry_at_ = last_send_ + backoff_;
  backoff_ = std::min(backoff_ * 2, kMaxBackoff);
  if (closing_ && ++closing_failures_ > kClosingTries) give_up_ = true;
}

}  // namespace ablate
