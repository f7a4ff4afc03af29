#include "worker/worker_loop.h"

#include <time.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <mutex>
#include <random>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/file.h"
#include "common/run_config.h"
#include "common/temp_dir.h"
#include "worker/blas.h"
#include "worker/coordinator_client.h"
#include "worker/cuda_support.h"
#include "data/fetch.h"
#include "data/text8.h"
#include "worker/train_command.h"
#include "worker/trainer.h"

namespace ablate {

namespace {

std::atomic<bool> g_terminate{false};

// WorkerOptions::stop_grace_seconds, for the whole process.
double g_stop_grace_seconds = 60;

// When SIGTERM came, nanoseconds of CLOCK_MONOTONIC; 0 before. Set before
// g_terminate, so whoever sees g_terminate sees it.
std::atomic<int64_t> g_terminated_ns{0};

int64_t MonotonicNs() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return int64_t{now.tv_sec} * 1000000000 + now.tv_nsec;
}

// Everything here is async-signal-safe.
void OnTerminate(int) {
  int64_t none = 0;
  if (!g_terminated_ns.compare_exchange_strong(none, MonotonicNs())) return;  // a second signal
  CoordinatorClient::CapDeadlines(g_stop_grace_seconds);
  g_terminate = true;
}

// True until SIGTERM, then for the stop grace more: how long calls to a
// coordinator that does not answer are retried once the worker is asked to
// stop (and no call runs past it: CapDeadlines). Giving up loses nothing
// acknowledged: the job's lease lapses and it resumes from its last uploaded
// checkpoint.
bool WithinStopGrace() {
  const int64_t since = g_terminated_ns;
  return since == 0 || MonotonicNs() - since < static_cast<int64_t>(g_stop_grace_seconds * 1e9);
}

v1::Split ToProto(Split split) {
  switch (split) {
    case Split::kTrain: return v1::SPLIT_TRAIN;
    case Split::kValid: return v1::SPLIT_VALID;
    case Split::kTest: return v1::SPLIT_TEST;
  }
  return v1::SPLIT_UNSPECIFIED;
}

// Why a job's training stopped early.
enum class StopReason { kNone, kTerminate, kCancelled, kLeaseLost };

// The link between one training job and the coordinator: the trainer thread
// queues points and progress; an uplink thread sends heartbeats and point
// batches, retrying while the coordinator is away.
class JobUplink : public TrainerListener {
 public:
  JobUplink(CoordinatorClient* client, const v1::JobLease& lease, int max_points)
      : client_(client),
        job_id_(lease.job_id()),
        token_(lease.lease_token()),
        heartbeat_period_(std::chrono::milliseconds(
            static_cast<int64_t>(1000 * std::max(0.05, lease.heartbeat_seconds())))),
        max_points_(max_points),
        thread_([this] { Loop(); }) {}

  ~JobUplink() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      closing_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  // TrainerListener, on the training thread.
  void OnPoint(const CurvePoint& p) override {
    std::lock_guard<std::mutex> lock(mu_);
    v1::CurvePoint point;
    point.set_split(ToProto(p.split));
    point.set_step(p.step);
    point.set_bpc(p.bpc);
    point.set_bytes_seen(p.bytes_seen);
    point.set_wall_time(p.wall_time);
    pending_.push_back(point);
    ++queued_;
    cv_.notify_all();
  }
  void OnProgress(const Progress& progress) override {
    std::lock_guard<std::mutex> lock(mu_);
    progress_ = progress;
  }
  Status OnCheckpoint(const std::string& path, int64_t step) override {
    return UploadCheckpoint(path, step);
  }
  bool ShouldStop() override { return g_terminate || stop_reason() != StopReason::kNone; }

  StopReason stop_reason() const {
    std::lock_guard<std::mutex> lock(mu_);
    return reason_;
  }

  // Blocks until every point queued so far is acknowledged, or the lease is
  // lost (then returns FailedPrecondition).
  Status Flush() {
    std::unique_lock<std::mutex> lock(mu_);
    const int64_t target = queued_;
    flush_requested_ = true;
    cv_.notify_all();
    while (!cv_.wait_for(lock, std::chrono::milliseconds(200),
                         [&] { return acked_ >= target || reason_ == StopReason::kLeaseLost; })) {
      if (!WithinStopGrace()) {
        return Status::Unavailable(fmt::format(
            "{} points not acknowledged within {} s of the stop", target - acked_,
            g_stop_grace_seconds));
      }
    }
    if (acked_ < target) return Status::FailedPrecondition("lease lost while flushing points");
    return Status::OK();
  }

  // Points first, so that a job resumed from this checkpoint misses none.
  Status UploadCheckpoint(const std::string& path, int64_t step) {
    ABLATE_RETURN_IF_ERROR(Flush());
    Status s = CoordinatorClient::CallWithRetry(
        [&] { return client_->UploadCheckpoint(job_id_, token_, step, path); },
        [&] { return stop_reason() != StopReason::kLeaseLost && WithinStopGrace(); });
    if (s.ok()) spdlog::info("job {}: checkpoint at step {} uploaded", job_id_, step);
    return s;
  }

 private:
  void Loop() {
    std::unique_lock<std::mutex> lock(mu_);
    auto next_heartbeat = std::chrono::steady_clock::now();
    while (!closing_ || (!pending_.empty() && reason_ != StopReason::kLeaseLost && !give_up_)) {
      if (closing_ && !WithinStopGrace()) break;  // the points go with the lease
      const auto now = std::chrono::steady_clock::now();
      // A closing uplink's job is over (done, failed or released): no lease to keep.
      if (!closing_ && now >= next_heartbeat && reason_ == StopReason::kNone) {
        v1::HeartbeatRequest request;
        request.set_job_id(job_id_);
        request.set_lease_token(token_);
        request.mutable_progress()->set_step(progress_.step);
        request.mutable_progress()->set_steps_total(progress_.steps_total);
        request.mutable_progress()->set_bytes_per_s(progress_.bytes_per_s);
        request.mutable_progress()->set_train_bpc(progress_.train_bpc);
        lock.unlock();
        v1::HeartbeatResponse response;
        Status s = client_->Heartbeat(request, &response);
        lock.lock();
        if (s.ok() && response.state() == v1::LEASE_STATE_CANCELLED) {
          reason_ = StopReason::kCancelled;
        } else if ((s.ok() && response.state() == v1::LEASE_STATE_LOST) ||
                   s.code() == Status::kFailedPrecondition || s.code() == Status::kNotFound) {
          reason_ = StopReason::kLeaseLost;
        } else if (!s.ok()) {
          spdlog::warn("job {}: heartbeat failed ({}); retrying", job_id_, s.ToString());
        }
        next_heartbeat = std::chrono::steady_clock::now() + heartbeat_period_;
        cv_.notify_all();
        continue;
      }
      const bool send = !pending_.empty() &&
                        (flush_requested_ || closing_ || pending_.size() >= 64 ||
                         now - last_send_ >= std::chrono::milliseconds(500)) &&
                        now >= retry_at_;
      if (send && reason_ != StopReason::kLeaseLost) {
        v1::ReportPointsRequest request;
        request.set_job_id(job_id_);
        request.set_lease_token(token_);
        const size_t n = std::min<size_t>(pending_.size(), max_points_);
        for (size_t i = 0; i < n; ++i) *request.add_points() = pending_[i];
        lock.unlock();
        Status s = client_->ReportPoints(request);
        lock.lock();
        last_send_ = std::chrono::steady_clock::now();
        if (s.ok()) {
          pending_.erase(pending_.begin(), pending_.begin() + n);
          acked_ += n;
          backoff_ = std::chrono::milliseconds(100);
          if (pending_.empty()) flush_requested_ = false;
        } else if (IsTransient(s)) {
          spdlog::warn("job {}: {} points wait for the coordinator ({})", job_id_,
                       pending_.size(), s.ToString());
          retry_at_ = last_send_ + backoff_;
          backoff_ = std::min<std::chrono::milliseconds>(backoff_ * 2, std::chrono::seconds(5));
          // A closing uplink whose coordinator stays away keeps trying for a
          // while, then gives the points up with the lease.
          if (closing_ && ++closing_failures_ > 30) give_up_ = true;
        } else {
          spdlog::error("job {}: points refused: {}", job_id_, s.ToString());
          reason_ = StopReason::kLeaseLost;
        }
        cv_.notify_all();
        continue;
      }
      auto wake = next_heartbeat;
      if (!pending_.empty()) wake = std::min(wake, std::max(retry_at_, last_send_ + std::chrono::milliseconds(500)));
      cv_.wait_until(lock, wake);
    }
  }

  CoordinatorClient* const client_;
  const int64_t job_id_, token_;
  const std::chrono::milliseconds heartbeat_period_;
  const size_t max_points_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<v1::CurvePoint> pending_;  // GUARDED_BY(mu_)
  int64_t queued_ = 0, acked_ = 0;      // GUARDED_BY(mu_)
  Progress progress_;                   // GUARDED_BY(mu_)
  StopReason reason_ = StopReason::kNone;  // GUARDED_BY(mu_)
  bool flush_requested_ = false, closing_ = false, give_up_ = false;  // GUARDED_BY(mu_)
  int closing_failures_ = 0;
  std::chrono::steady_clock::time_point last_send_{}, retry_at_{};
  std::chrono::milliseconds backoff_{100};
  std::thread thread_;  // last: starts after everything above is built
};

// Once SIGTERM's stop grace is over, cancels the coordinator calls still in
// flight: one started just before the signal keeps its own deadline (10 s
// for a unary call), which would otherwise outlast a shorter grace.
class GraceWatchdog {
 public:
  GraceWatchdog() : thread_([this] { Loop(); }) {}
  ~GraceWatchdog() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  void Loop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!cv_.wait_for(lock, std::chrono::milliseconds(50), [this] { return done_; })) {
      if (g_terminate) CoordinatorClient::CancelCallsPastCap();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;  // last: starts after everything above is built
};

std::string DefaultName() {
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  return std::string(host) + "-" + std::to_string(getpid());
}

class Worker {
 public:
  Worker(const WorkerOptions& options, CoordinatorClient* client)
      : options_(options), client_(client) {}

  int Run() {
    std::signal(SIGTERM, OnTerminate);
    std::signal(SIGINT, OnTerminate);
    GraceWatchdog watchdog;
    const int threads = ConfigureThreads(options_.threads);
    v1::RegisterWorkerRequest request;
    request.set_name(options_.name.empty() ? DefaultName() : options_.name);
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    request.set_host(host);
    auto device = ParseDevice(options_.device);
    if (!device.ok()) {
      spdlog::error("{}", device.status().message());
      return 1;
    }
    if (device->is_cpu()) {
      const std::string warning = SlowBlasWarning(MeasureMatmulGflops(), threads);
      if (!warning.empty()) spdlog::warn("{}", warning);
    }
    // With the GPU's name where there is one: results and `ablate workers`
    // say what trained each job.
    request.set_device(DescribeDevice(*device));
    request.set_threads(threads);
    request.set_version(ABLATE_VERSION);
    v1::RegisterWorkerResponse registered;
    Status s = CoordinatorClient::CallWithRetry(
        [&] { return client_->Register(request, &registered); }, [] { return !g_terminate; });
    if (!s.ok()) {
      spdlog::error("cannot register with the coordinator at {}: {}", options_.client.address,
                    s.ToString());
      return g_terminate ? 0 : 1;
    }
    worker_id_ = registered.worker_id();
    spdlog::info("worker {} ({}) registered with {} as id {}; {} on {} thread(s)", request.name(),
                 host, options_.client.address, worker_id_, request.device(), threads);

    std::mt19937 rng{std::random_device{}()};
    int64_t jobs_run = 0;
    while (!g_terminate) {
      v1::LeaseJobResponse lease;
      s = CoordinatorClient::CallWithRetry([&] { return client_->Lease(worker_id_, &lease); },
                                           [] { return !g_terminate; });
      if (g_terminate) break;
      if (!s.ok()) {
        spdlog::error("lease failed: {}", s.ToString());
        return 1;
      }
      if (!lease.has_job()) {
        if (options_.exit_when_idle && lease.pending_jobs() == 0 && lease.running_jobs() == 0) {
          spdlog::info("no pending or running jobs left; exiting");
          return 0;
        }
        std::uniform_real_distribution<double> jitter(0.5, 1.5);
        SleepUnlessTerminated(options_.idle_poll_seconds * jitter(rng));
        continue;
      }
      RunJob(lease.job());
      if (options_.max_jobs > 0 && ++jobs_run >= options_.max_jobs) {
        spdlog::info("ran {} job(s), the --max-jobs limit; exiting", jobs_run);
        return 0;
      }
    }
    spdlog::info("terminated; exiting");
    return 0;
  }

 private:
  static void SleepUnlessTerminated(double seconds) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (!g_terminate && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  void RunJob(const v1::JobLease& lease) {
    const int64_t job = lease.job_id();
    spdlog::info("job {} (sweep {}, attempt {}): {}", job, lease.sweep_name(), lease.attempt(),
                 lease.factors_json());
    const std::string checkpoint = options_.work_dir + "/job-" + std::to_string(job) + ".ckpt";
    JobUplink uplink(client_, lease, options_.max_points_per_report);

    auto fail = [&](const Status& status, bool retryable, bool non_finite) {
      (void)uplink.Flush();  // what was measured before the failure still counts
      v1::FailJobRequest request;
      request.set_job_id(job);
      request.set_lease_token(lease.lease_token());
      request.set_error(status.message());
      request.set_retryable(retryable);
      request.set_non_finite_loss(non_finite);
      v1::FailJobResponse response;
      Status s = CoordinatorClient::CallWithRetry(
          [&] { return client_->Fail(request, &response); }, WithinStopGrace);
      spdlog::error("job {} failed ({}): {}{}", job, retryable ? "retryable" : "final",
                    status.message(), s.ok() ? "" : "; the coordinator did not take it: " + s.ToString());
    };

    auto config_json = nlohmann::json::parse(lease.config_json(), nullptr, false);
    auto config = config_json.is_discarded()
                      ? StatusOr<RunConfig>(Status::InvalidArgument("config_json is not JSON"))
                      : RunConfig::FromJson(config_json);
    if (!config.ok()) return fail(config.status(), false, false);
    auto corpus = ResolveCorpus(config->data, options_.data_dir);
    if (!corpus.ok()) return fail(corpus.status(), true, false);
    TrainerOptions trainer_options;
    trainer_options.device = options_.device;
    trainer_options.corpus_path = *corpus;
    trainer_options.checkpoint_path = checkpoint;
    auto trainer = Trainer::Create(*config, trainer_options);
    if (!trainer.ok()) {
      return fail(trainer.status(), trainer.status().code() != Status::kInvalidArgument, false);
    }
    if (lease.checkpoint_step() > 0) {
      StatusOr<int64_t> step = Status::Unavailable("not tried");
      Status s = CoordinatorClient::CallWithRetry(
          [&] {
            step = client_->DownloadCheckpoint(job, lease.lease_token(), checkpoint);
            return step.status();
          },
          [] { return !g_terminate; });
      if (s.ok()) s = (*trainer)->RestoreCheckpoint(checkpoint);
      if (!s.ok()) return fail(s.WithContext("resuming from the checkpoint"), true, false);
      spdlog::info("job {}: resumed from the checkpoint at step {}", job, (*trainer)->step());
    }

    auto summary = (*trainer)->Run(&uplink);
    const StopReason reason = uplink.stop_reason();
    if (reason == StopReason::kCancelled || reason == StopReason::kLeaseLost) {
      spdlog::warn("job {}: {}; dropping it", job,
                   reason == StopReason::kCancelled ? "cancelled" : "the lease is no longer ours");
      std::filesystem::remove(checkpoint);
      return;
    }
    if (!summary.ok() && g_terminate) {
      // Stopping, and a checkpoint upload found no coordinator within the
      // grace: a FailJob would not get through either.
      spdlog::warn("job {}: stopped before it could hand the job back ({}); its lease will lapse "
                   "and it resumes from its last uploaded checkpoint",
                   job, summary.status().ToString());
      std::filesystem::remove(checkpoint);
      return;
    }
    if (!summary.ok()) return fail(summary.status(), true, false);
    switch (summary->outcome) {
      case TrainSummary::Outcome::kDiverged:
        return fail(Status::Aborted(summary->message), false, true);
      case TrainSummary::Outcome::kStopped: {
        // SIGTERM: hand the job back with everything needed to resume it.
        Status s = (*trainer)->SaveCheckpoint(checkpoint);
        if (s.ok()) s = uplink.UploadCheckpoint(checkpoint, (*trainer)->step());
        v1::ReleaseJobRequest request;
        request.set_job_id(job);
        request.set_lease_token(lease.lease_token());
        request.set_reason(s.ok() ? "worker terminated; checkpoint uploaded"
                                  : "worker terminated; checkpoint not uploaded: " + s.message());
        Status released = CoordinatorClient::CallWithRetry(
            [&] { return client_->Release(request); }, WithinStopGrace);
        if (released.ok()) {
          spdlog::info("job {}: released at step {}", job, (*trainer)->step());
        } else {
          spdlog::warn("job {}: not released ({}); its lease will lapse and it resumes from its "
                       "last uploaded checkpoint",
                       job, released.ToString());
        }
        std::filesystem::remove(checkpoint);
        return;
      }
      case TrainSummary::Outcome::kFinished:
        break;
    }
    Status flushed = uplink.Flush();
    v1::CompleteJobRequest request;
    request.set_job_id(job);
    request.set_lease_token(lease.lease_token());
    v1::FinalMetrics* m = request.mutable_metrics();
    m->set_train_bpc(summary->final_train_bpc);
    m->set_valid_bpc(summary->final_valid_bpc);
    m->set_test_bpc(summary->test_bpc);
    m->set_steps(summary->step);
    m->set_wall_time(summary->wall_time);
    Status s = flushed.ok() ? CoordinatorClient::CallWithRetry(
                                  [&] { return client_->Complete(request); }, WithinStopGrace)
                            : flushed;
    std::filesystem::remove(checkpoint);
    if (s.ok()) {
      spdlog::info("job {} done: test {:.4f} bpc after {} steps in {:.1f} s", job,
                   summary->test_bpc, summary->step, summary->wall_time);
    } else {
      spdlog::error("job {}: completion not recorded: {}", job, s.ToString());
    }
  }

  const WorkerOptions options_;
  CoordinatorClient* const client_;
  int64_t worker_id_ = 0;
};

}  // namespace

int RunWorker(const WorkerOptions& given) {
  WorkerOptions options = given;
  g_stop_grace_seconds = options.stop_grace_seconds;
  if (options.client.address.empty()) {
    spdlog::error("no coordinator: pass --coordinator HOST:PORT or set ABLATE_COORDINATOR");
    return 2;
  }
  if (options.work_dir.empty()) {
    StatusOr<std::string> made = MakeTempDirectory("ablate-worker");
    if (!made.ok()) {
      spdlog::error("work directory: {}", made.status().message());
      return 1;
    }
    options.work_dir = *made;
  } else {
    // A volume's folder may not exist yet; one that cannot be written is
    // refused now rather than failing every job it leases.
    std::error_code error;
    std::filesystem::create_directories(options.work_dir, error);
    StatusOr<AtomicFile> probe = AtomicFile::Create(options.work_dir + "/probe");
    if (error || !probe.ok()) {
      spdlog::error("work directory {}: {}", options.work_dir,
                    error ? error.message() : probe.status().message());
      return 1;
    }
  }
  CoordinatorClient client(MakeChannel(options.client));
  Worker worker(options, &client);
  const int code = worker.Run();
  if (given.work_dir.empty()) std::filesystem::remove_all(options.work_dir);
  return code;
}

}  // namespace ablate
