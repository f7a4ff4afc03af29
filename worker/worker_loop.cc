#include "worker/worker_loop.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <charconv>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <thread>

#include "common/file.h"
#include "common/mutex.h"
#include "common/run_config.h"
#include "common/temp_dir.h"
#include "data/fetch.h"
#include "data/text8.h"
#include "worker/blas.h"
#include "worker/coordinator_client.h"
#include "worker/cuda_support.h"
#include "worker/gpu_supervisor.h"
#include "worker/job_uplink.h"
#include "worker/program_runner.h"
#include "worker/stop_state.h"
#include "worker/train_command.h"
#include "worker/trainer.h"

namespace ablate {

namespace {

// Once the stop's grace is over, cancels the coordinator calls still in
// flight: one started just before the signal keeps its own deadline (10 s
// for a unary call), which would otherwise outlast a shorter grace.
class GraceWatchdog {
 public:
  GraceWatchdog(const StopState* stop, GrpcCoordinatorClient* client)
      : stop_(stop), client_(client), thread_([this] { Loop(); }) {}
  ~GraceWatchdog() EXCLUDES(mu_) {
    {
      MutexLock lock(&mu_);
      done_ = true;
    }
    wake_.SignalAll();
    thread_.join();
  }

 private:
  void Loop() EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    while (!done_) {
      wake_.WaitFor(std::chrono::milliseconds(50));
      if (!done_ && stop_->requested()) client_->CancelCallsPastCap();
    }
  }

  const StopState* const stop_;
  GrpcCoordinatorClient* const client_;
  Mutex mu_;
  CondVar wake_{&mu_};
  bool done_ GUARDED_BY(mu_) = false;
  std::thread thread_;  // last: starts after everything above is built
};

// The GPUs a program job may see, from the worker's --device: none on the
// CPU, the device's own on cuda:N (an index into CUDA_VISIBLE_DEVICES when
// the worker has one, as a --gpus slot does); unset keeps the worker's.
std::optional<std::string> ProgramGpus(const std::string& device) {
  if (device == "cpu") return std::string();
  if (device.rfind("cuda:", 0) != 0) return std::nullopt;
  int index = -1;
  const std::string digits = device.substr(5);
  const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), index);
  if (error != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
  return VisibleGpu(std::getenv("CUDA_VISIBLE_DEVICES"), index);
}

std::string DefaultName() {
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  return std::string(host) + "-" + std::to_string(getpid());
}

class Worker {
 public:
  // `stop` and `client` must outlive it.
  Worker(const WorkerOptions& options, const StopState* stop, CoordinatorClient* client)
      : options_(options), stop_(stop), client_(client) {}

  int Run() {
    const int threads = ConfigureThreads(options_.threads);
    auto device = ParseDevice(options_.device);
    if (!device.ok()) {
      spdlog::error("{}", device.status().message());
      return 1;
    }
    if (device->is_cpu()) {
      const std::string warning = SlowBlasWarning(MeasureMatmulGflops(), threads);
      if (!warning.empty()) spdlog::warn("{}", warning);
    }
    Status s = Register(*device, threads);
    if (!s.ok()) {
      spdlog::error("cannot register with the coordinator at {}: {}", options_.client.address,
                    s.ToString());
      return stop_->requested() ? 0 : 1;
    }
    return ServeJobs();
  }

 private:
  Status Register(const torch::Device& device, int threads) {
    v1::RegisterWorkerRequest request;
    request.set_name(options_.name.empty() ? DefaultName() : options_.name);
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    request.set_host(host);
    // With the GPU's name where there is one: results and `ablate workers`
    // say what trained each job.
    request.set_device(DescribeDevice(device));
    request.set_threads(threads);
    request.set_version(ABLATE_VERSION);
    v1::RegisterWorkerResponse registered;
    ABLATE_RETURN_IF_ERROR(CoordinatorClient::CallWithRetry(
        [&] { return client_->Register(request, &registered); }, RetryUntilStop()));
    worker_id_ = registered.worker_id();
    spdlog::info("worker {} ({}) registered with {} as id {}; {} on {} thread(s)", request.name(),
                 host, options_.client.address, worker_id_, request.device(), threads);
    return Status::OK();
  }

  // Leases and runs jobs until the stop, or until there is nothing left
  // (exit_when_idle) or max_jobs ran. Returns the exit code.
  int ServeJobs() {
    std::mt19937 rng{std::random_device{}()};
    int64_t jobs_run = 0;
    while (!stop_->requested()) {
      v1::LeaseJobResponse lease;
      Status s = CoordinatorClient::CallWithRetry(
          [&] { return client_->Lease(worker_id_, &lease); }, RetryUntilStop());
      if (stop_->requested()) break;
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
        SleepUnlessStopped(options_.idle_poll_seconds * jitter(rng));
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

  // keep_trying for CallWithRetry: until the stop / until its grace is over.
  std::function<bool()> RetryUntilStop() const {
    return [stop = stop_] { return !stop->requested(); };
  }
  std::function<bool()> RetryWithinGrace() const {
    return [stop = stop_] { return stop->WithinGrace(); };
  }

  void SleepUnlessStopped(double seconds) const {
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (!stop_->requested() && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  void RunJob(const v1::JobLease& lease) {
    spdlog::info("job {} (sweep {}, attempt {}): {}", lease.job_id(), lease.sweep_name(),
                 lease.attempt(), lease.factors_json());
    if (lease.command_size() > 0) return RunProgramJob(lease);
    const std::string checkpoint =
        options_.work_dir + "/job-" + std::to_string(lease.job_id()) + ".ckpt";
    JobUplink uplink(client_, stop_, lease, options_.max_points_per_report);
    std::unique_ptr<Trainer> trainer = PrepareTrainer(lease, checkpoint, &uplink);
    if (!trainer) return;
    StatusOr<TrainSummary> summary = trainer->Run(&uplink);
    if (Abandoned(lease, uplink, summary)) {
      std::filesystem::remove(checkpoint);
      return;
    }
    if (!summary.ok()) return Fail(lease, &uplink, summary.status(), true, false);
    switch (summary->outcome) {
      case TrainSummary::Outcome::kDiverged:
        return Fail(lease, &uplink, Status::Aborted(summary->message), false, true);
      case TrainSummary::Outcome::kStopped:
        return HandBack(lease, trainer.get(), &uplink, checkpoint);
      case TrainSummary::Outcome::kFinished:
        if (lease.upload_final_checkpoint()) {
          UploadTrainedModel(lease, trainer.get(), &uplink, checkpoint);
        }
        v1::FinalMetrics metrics;
        metrics.set_train_bpc(summary->final_train_bpc);
        metrics.set_valid_bpc(summary->final_valid_bpc);
        metrics.set_test_bpc(summary->test_bpc);
        metrics.set_steps(summary->step);
        metrics.set_wall_time(summary->wall_time);
        Complete(lease, metrics, fmt::format("test {:.4f} bpc", summary->test_bpc), &uplink);
        std::filesystem::remove(checkpoint);
        return;
    }
  }

  // A program sweep's job: the user's command under the run protocol.
  void RunProgramJob(const v1::JobLease& lease) {
    const std::string job_dir = options_.work_dir + "/job-" + std::to_string(lease.job_id());
    JobUplink uplink(client_, stop_, lease, options_.max_points_per_report);
    ProgramJob job;
    job.command.assign(lease.command().begin(), lease.command().end());
    job.config_json = lease.config_json();
    job.job_id = lease.job_id();
    job.attempt = lease.attempt();
    job.work_dir = job_dir + "/run";
    job.program_dir = options_.program_dir;
    job.silence_seconds = lease.silence_seconds();
    // The other half of the grace is for the upload and the release.
    job.stop_grace_seconds = options_.stop_grace_seconds / 2;
    if (std::optional<std::string> gpus = ProgramGpus(options_.device)) {
      job.env["CUDA_VISIBLE_DEVICES"] = *gpus;
    }
    Status ready = Status::OK();
    if (lease.checkpoint_step() > 0) {
      job.resume_archive = job_dir + "/resume.zip";
      ready = DownloadProgramCheckpoint(lease, job.resume_archive)
                  .WithContext("resuming from the checkpoint");
    }
    const StatusOr<ProgramSummary> summary =
        ready.ok() ? RunProgram(job, &uplink) : StatusOr<ProgramSummary>(ready);
    FinishProgramJob(lease, summary, &uplink);
    std::error_code ignored;
    std::filesystem::remove_all(job_dir, ignored);
  }

  Status DownloadProgramCheckpoint(const v1::JobLease& lease, const std::string& path) {
    std::error_code error;
    std::filesystem::create_directories(std::filesystem::path(path).parent_path(), error);
    if (error) return Status::Internal("cannot create the folder of " + path);
    StatusOr<int64_t> step = Status::Unavailable("not tried");
    return CoordinatorClient::CallWithRetry(
        [&] {
          step = client_->DownloadCheckpoint(lease.job_id(), lease.lease_token(), path);
          return step.status();
        },
        RetryUntilStop());
  }

  void FinishProgramJob(const v1::JobLease& lease, const StatusOr<ProgramSummary>& summary,
                        JobUplink* uplink) {
    const StopReason reason = uplink->stop_reason();
    if (reason == StopReason::kCancelled || reason == StopReason::kLeaseLost) {
      spdlog::warn("job {}: {}; dropping it", lease.job_id(),
                   reason == StopReason::kCancelled ? "cancelled" : "the lease is no longer ours");
      return;
    }
    if (!summary.ok()) {
      if (stop_->requested()) {
        spdlog::warn(
            "job {}: stopped before it could hand the job back ({}); its lease will "
            "lapse and it resumes from its last uploaded checkpoint",
            lease.job_id(), summary.status().ToString());
        return;
      }
      const bool retryable = summary.status().code() != Status::kInvalidArgument;
      return Fail(lease, uplink, summary.status(), retryable, false);
    }
    switch (summary->outcome) {
      case ProgramSummary::Outcome::kFailed:
        return Fail(lease, uplink, Status::Aborted(summary->message), summary->retryable, false);
      case ProgramSummary::Outcome::kStopped:
        return ReleaseProgramJob(lease, *summary);
      case ProgramSummary::Outcome::kFinished: {
        v1::FinalMetrics metrics;
        metrics.set_steps(summary->step);
        metrics.set_wall_time(summary->wall_time);
        return Complete(lease, metrics, "the program exited 0", uplink);
      }
    }
  }

  void ReleaseProgramJob(const v1::JobLease& lease, const ProgramSummary& summary) {
    v1::ReleaseJobRequest request;
    request.set_job_id(lease.job_id());
    request.set_lease_token(lease.lease_token());
    // It resumes from the last checkpoint uploaded: this attempt's, or the
    // one it started from.
    const int64_t resume_step =
        summary.checkpoint_step >= 0 ? summary.checkpoint_step : lease.checkpoint_step();
    request.set_reason(summary.checkpoint_step >= 0
                           ? "worker terminated; the program's checkpoint at step " +
                                 std::to_string(summary.checkpoint_step) + " uploaded"
                           : "worker terminated; the program announced no checkpoint");
    Status released = CoordinatorClient::CallWithRetry([&] { return client_->Release(request); },
                                                       RetryWithinGrace());
    if (released.ok()) {
      spdlog::info("job {}: released at step {}; it resumes from step {}", lease.job_id(),
                   summary.step, resume_step);
    } else {
      spdlog::warn(
          "job {}: not released ({}); its lease will lapse and it resumes from its "
          "last uploaded checkpoint",
          lease.job_id(), released.ToString());
    }
  }

  // The job's trainer, resumed from the job's checkpoint when it has one.
  // Null when the job cannot be trained here; it has then failed.
  std::unique_ptr<Trainer> PrepareTrainer(const v1::JobLease& lease, const std::string& checkpoint,
                                          JobUplink* uplink) {
    auto config_json = nlohmann::json::parse(lease.config_json(), nullptr, false);
    auto config = config_json.is_discarded()
                      ? StatusOr<RunConfig>(Status::InvalidArgument("config_json is not JSON"))
                      : RunConfig::FromJson(config_json);
    if (!config.ok()) {
      Fail(lease, uplink, config.status(), false, false);
      return nullptr;
    }
    auto corpus = ResolveCorpus(config->data, options_.data_dir);
    if (!corpus.ok()) {
      Fail(lease, uplink, corpus.status(), true, false);
      return nullptr;
    }
    TrainerOptions trainer_options;
    trainer_options.device = options_.device;
    trainer_options.corpus_path = *corpus;
    trainer_options.checkpoint_path = checkpoint;
    auto trainer = Trainer::Create(*config, trainer_options);
    if (!trainer.ok()) {
      const bool retryable = trainer.status().code() != Status::kInvalidArgument;
      Fail(lease, uplink, trainer.status(), retryable, false);
      return nullptr;
    }
    if (lease.checkpoint_step() > 0) {
      Status s = Resume(lease, checkpoint, trainer->get());
      if (!s.ok()) {
        Fail(lease, uplink, s.WithContext("resuming from the checkpoint"), true, false);
        return nullptr;
      }
    }
    return std::move(trainer).value();
  }

  Status Resume(const v1::JobLease& lease, const std::string& checkpoint, Trainer* trainer) {
    StatusOr<int64_t> step = Status::Unavailable("not tried");
    ABLATE_RETURN_IF_ERROR(CoordinatorClient::CallWithRetry(
        [&] {
          step = client_->DownloadCheckpoint(lease.job_id(), lease.lease_token(), checkpoint);
          return step.status();
        },
        RetryUntilStop()));
    ABLATE_RETURN_IF_ERROR(trainer->RestoreCheckpoint(checkpoint));
    spdlog::info("job {}: resumed from the checkpoint at step {}", lease.job_id(), trainer->step());
    return Status::OK();
  }

  // True when the job is no longer this worker's to report on: cancelled, its
  // lease lost, or the worker stopping with no coordinator to hand it to.
  bool Abandoned(const v1::JobLease& lease, const JobUplink& uplink,
                 const StatusOr<TrainSummary>& summary) const {
    const StopReason reason = uplink.stop_reason();
    if (reason == StopReason::kCancelled || reason == StopReason::kLeaseLost) {
      spdlog::warn("job {}: {}; dropping it", lease.job_id(),
                   reason == StopReason::kCancelled ? "cancelled" : "the lease is no longer ours");
      return true;
    }
    if (!summary.ok() && stop_->requested()) {
      // Stopping, and a checkpoint upload found no coordinator within the
      // grace: a FailJob would not get through either.
      spdlog::warn(
          "job {}: stopped before it could hand the job back ({}); its lease will lapse "
          "and it resumes from its last uploaded checkpoint",
          lease.job_id(), summary.status().ToString());
      return true;
    }
    return false;
  }

  void Fail(const v1::JobLease& lease, JobUplink* uplink, const Status& status, bool retryable,
            bool non_finite) {
    (void)uplink->Flush();  // what was measured before the failure still counts
    v1::FailJobRequest request;
    request.set_job_id(lease.job_id());
    request.set_lease_token(lease.lease_token());
    request.set_error(status.message());
    request.set_retryable(retryable);
    request.set_non_finite_loss(non_finite);
    v1::FailJobResponse response;
    Status s = CoordinatorClient::CallWithRetry([&] { return client_->Fail(request, &response); },
                                                RetryWithinGrace());
    spdlog::error("job {} failed ({}): {}{}", lease.job_id(), retryable ? "retryable" : "final",
                  status.message(),
                  s.ok() ? "" : "; the coordinator did not take it: " + s.ToString());
  }

  // Stopping: hands the job back with everything needed to resume it.
  void HandBack(const v1::JobLease& lease, Trainer* trainer, JobUplink* uplink,
                const std::string& checkpoint) {
    Status s = trainer->SaveCheckpoint(checkpoint);
    if (s.ok()) s = uplink->UploadCheckpoint(checkpoint, trainer->step());
    v1::ReleaseJobRequest request;
    request.set_job_id(lease.job_id());
    request.set_lease_token(lease.lease_token());
    request.set_reason(s.ok() ? "worker terminated; checkpoint uploaded"
                              : "worker terminated; checkpoint not uploaded: " + s.message());
    Status released = CoordinatorClient::CallWithRetry([&] { return client_->Release(request); },
                                                       RetryWithinGrace());
    if (released.ok()) {
      spdlog::info("job {}: released at step {}", lease.job_id(), trainer->step());
    } else {
      spdlog::warn(
          "job {}: not released ({}); its lease will lapse and it resumes from its "
          "last uploaded checkpoint",
          lease.job_id(), released.ToString());
    }
    std::filesystem::remove(checkpoint);
  }

  // The trained model as the job's last checkpoint, which the coordinator
  // keeps for `ablate checkpoint` (schedule.keep_checkpoints: final). A
  // failed upload is a warning only: the job's results are whole without it.
  void UploadTrainedModel(const v1::JobLease& lease, Trainer* trainer, JobUplink* uplink,
                          const std::string& checkpoint) {
    Status s = trainer->SaveCheckpoint(checkpoint);
    if (s.ok()) s = uplink->UploadCheckpoint(checkpoint, trainer->step());
    if (!s.ok()) {
      spdlog::warn("job {}: the trained model was not uploaded: {}", lease.job_id(), s.ToString());
    }
  }

  // Records the job as done with its final metrics; `result` says what it
  // achieved, for the log.
  void Complete(const v1::JobLease& lease, const v1::FinalMetrics& metrics,
                const std::string& result, JobUplink* uplink) {
    Status flushed = uplink->Flush();
    v1::CompleteJobRequest request;
    request.set_job_id(lease.job_id());
    request.set_lease_token(lease.lease_token());
    *request.mutable_metrics() = metrics;
    Status s = flushed.ok() ? CoordinatorClient::CallWithRetry(
                                  [&] { return client_->Complete(request); }, RetryWithinGrace())
                            : flushed;
    if (s.ok()) {
      spdlog::info("job {} done: {} after {} steps in {:.1f} s", lease.job_id(), result,
                   metrics.steps(), metrics.wall_time());
    } else {
      spdlog::error("job {}: completion not recorded: {}", lease.job_id(), s.ToString());
    }
  }

  const WorkerOptions options_;
  const StopState* const stop_;
  CoordinatorClient* const client_;
  int64_t worker_id_ = 0;
};

}  // namespace

int RunWorker(const WorkerOptions& given) {
  WorkerOptions options = given;
  StopState stop(options.stop_grace_seconds);
  stop.InstallSignalHandlers();
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
  GrpcCoordinatorClient client(MakeChannel(options.client), &stop);
  int code = 0;
  {
    GraceWatchdog watchdog(&stop, &client);
    Worker worker(options, &stop, &client);
    code = worker.Run();
  }
  if (given.work_dir.empty()) std::filesystem::remove_all(options.work_dir);
  return code;
}

}  // namespace ablate
