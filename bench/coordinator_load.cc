// coordinator_load: the coordinator under a crowd of simulated workers. Starts
// the real ablate-coordinator binary as its own process on a fresh database
// in a temp dir, launches enough sweeps through Sweeps.Launch, then plays N
// workers (default 1,000) over real gRPC from this one process with the
// callback API: each registers, leases a job, reports points in batches,
// heartbeats on its lease's schedule, completes after --points-per-job points
// and leases the next. One connection per simulated worker, as separate
// worker processes would have.
//
// Phases, each for --seconds, each ending once every call in flight is
// answered:
//   saturate  every worker reports its next batch as soon as the last is acked
//   rate      the workers together offer --rate points/s on a fixed schedule;
//             latency counts from each report's scheduled time, so a slow
//             reply delays (and is charged to) the reports queued behind it
//   lease     every worker completes its job at once and leases the next
// Points and completions count as committed only when a read-only SQLite
// connection sees them in curve_points and jobs. The coordinator's RSS is
// sampled every second throughout. Then Optuna's own SQLite storage runs
// bench/optuna_reference.py for the same time, for the ratio.
//
//   coordinator_load [--workers 1000] [--batch 50] [--seconds 10] [--rate 50000]
//                    [--phase all|report|saturate|rate|lease] [--keep-db] [--json PATH]
//                    [--no-optuna] [--sync normal|full]
#include <absl/synchronization/mutex.h>
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <queue>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/mutex.h"
#include "common/status.h"
#include "common/subprocess.h"
#include "common/temp_dir.h"
#include "proto/ablate.grpc.pb.h"
#include "proto/rpc.h"

namespace ablate {
namespace {

using SteadyClock = std::chrono::steady_clock;
using TimePoint = SteadyClock::time_point;
using nlohmann::json;

// 18 grid points (cell x layer_norm x init) times this many seeds stays under
// the spec's cap of 10,000 jobs per sweep.
constexpr int kSeedsPerSweep = 555;
constexpr int kJobsPerSweep = 18 * kSeedsPerSweep;
// No call of a healthy coordinator comes near this.
constexpr std::chrono::seconds kCallDeadline{30};
// After an empty lease or a failed call.
constexpr std::chrono::milliseconds kRetryDelay{50};
constexpr std::chrono::seconds kStartTimeout{60};
// The memory verdict: RSS in the last half of the run may exceed the first
// half's peak by at most this fraction.
constexpr double kFlatGrowth = 0.10;

// The issue's targets on 2 cores.
constexpr double kTargetPointsPerSecond = 50'000;
constexpr double kTargetCyclesPerSecond = 5'000;
constexpr double kTargetP99Ms = 50;
// --named-metrics: the names a simulated program reports.
constexpr int kMaxNamedMetrics = 16;
const std::array<std::string, kMaxNamedMetrics> kMetricNames = [] {
  std::array<std::string, kMaxNamedMetrics> names;
  for (int i = 0; i < kMaxNamedMetrics; ++i) names[i] = "metric/" + std::to_string(i);
  return names;
}();

double Seconds(SteadyClock::duration d) { return std::chrono::duration<double>(d).count(); }

double Milliseconds(SteadyClock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

std::string FirstLineWith(const std::string& path, const std::string& prefix) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(prefix, 0) == 0) return line;
  }
  return "";
}

std::string CpuModel() {
  std::string line = FirstLineWith("/proc/cpuinfo", "model name");
  size_t colon = line.find(':');
  return colon == std::string::npos ? "unknown" : line.substr(colon + 2);
}

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  double one = 0, five = 0, fifteen = 0;
  in >> one >> five >> fifteen;
  char text[64];
  std::snprintf(text, sizeof text, "%.2f %.2f %.2f", one, five, fifteen);
  return text;
}

double ClientCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

// 1,000 client sockets here and as many on the server's side exceed the
// usual soft limit of 1,024 descriptors; the coordinator inherits this.
void RaiseDescriptorLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

// The real ablate-coordinator, started on a fresh database and stopped with
// SIGTERM as in production.
class CoordinatorProcess {
 public:
  static StatusOr<std::unique_ptr<CoordinatorProcess>> Start(const std::string& binary,
                                                             const std::string& dir,
                                                             const std::string& sync) {
    std::unique_ptr<CoordinatorProcess> p(new CoordinatorProcess);
    p->db_path_ = dir + "/coordinator.db";
    p->log_path_ = dir + "/coordinator.log";
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0) return Status::Internal("pipe failed");
    p->stdout_fd_ = out[0];
    const int log = open(p->log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    SpawnOptions options;
    options.argv = {binary,        "--db", p->db_path_, "--listen", "127.0.0.1:0",
                    "--log-level", "warn", "--sync",    sync};
    options.stdout_fd = out[1];
    options.stderr_fd = log;
    StatusOr<pid_t> pid =
        log >= 0 ? Spawn(options) : StatusOr<pid_t>(Status::IOError("cannot open " + p->log_path_));
    close(out[1]);
    if (log >= 0) close(log);
    if (!pid.ok()) return pid.status();
    p->pid_ = *pid;
    ABLATE_RETURN_IF_ERROR(p->ReadAddress());
    return p;
  }

  ~CoordinatorProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      (void)WaitForExit(pid_);
    }
    if (stdout_fd_ >= 0) close(stdout_fd_);
  }

  // Graceful stop: SIGTERM, then the exit status.
  Status Stop() {
    if (pid_ <= 0) return Status::OK();
    kill(pid_, SIGTERM);
    StatusOr<int> code = WaitForExit(pid_);
    pid_ = -1;
    if (code.ok() && *code == 0) return Status::OK();
    return Status::Internal("the coordinator did not exit cleanly; see " + log_path_);
  }

  pid_t pid() const { return pid_; }
  const std::string& address() const { return address_; }
  const std::string& db_path() const { return db_path_; }

  // VmRSS in KiB; 0 when it cannot be read.
  int64_t RssKiB() const {
    std::string line = FirstLineWith("/proc/" + std::to_string(pid_) + "/status", "VmRSS:");
    return line.empty() ? 0 : std::atoll(line.c_str() + 6);
  }

  // User plus system CPU time so far.
  double CpuSeconds() const {
    std::ifstream in("/proc/" + std::to_string(pid_) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // Fields after the parenthesised command name, which may hold spaces.
    std::istringstream fields(stat.substr(stat.rfind(')') + 2));
    std::string field;
    double utime = 0, stime = 0;
    for (int i = 3; i <= 15 && fields >> field; ++i) {
      if (i == 14) utime = std::atof(field.c_str());
      if (i == 15) stime = std::atof(field.c_str());
    }
    return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
  }

 private:
  CoordinatorProcess() = default;

  // Waits for the "listening on HOST:PORT" line.
  Status ReadAddress() {
    const std::string prefix = "listening on ";
    std::string text;
    const TimePoint deadline = SteadyClock::now() + kStartTimeout;
    while (SteadyClock::now() < deadline) {
      pollfd fd{stdout_fd_, POLLIN, 0};
      if (poll(&fd, 1, 100) <= 0) continue;
      char buffer[256];
      ssize_t n = read(stdout_fd_, buffer, sizeof buffer);
      if (n <= 0) break;
      text.append(buffer, static_cast<size_t>(n));
      size_t at = text.find(prefix), end = text.find('\n', at);
      if (at != std::string::npos && end != std::string::npos) {
        address_ = text.substr(at + prefix.size(), end - at - prefix.size());
        return Status::OK();
      }
    }
    return Status::Unavailable("the coordinator did not start; see " + log_path_);
  }

  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  std::string db_path_, log_path_, address_;
};

// Counts what the coordinator committed, from its database file, as the CLI's
// --db reads it: a separate read-only connection.
class CommittedCounter {
 public:
  explicit CommittedCounter(const std::string& path) {
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
      std::fprintf(stderr, "cannot open %s read-only: %s\n", path.c_str(), sqlite3_errmsg(db_));
      std::exit(1);
    }
    sqlite3_busy_timeout(db_, 10'000);
  }
  ~CommittedCounter() { sqlite3_close(db_); }
  CommittedCounter(const CommittedCounter&) = delete;
  CommittedCounter& operator=(const CommittedCounter&) = delete;

  int64_t Points() { return Count("SELECT COUNT(*) FROM curve_points"); }
  int64_t DoneJobs() { return Count("SELECT COUNT(*) FROM jobs WHERE state = 'done'"); }

 private:
  int64_t Count(const char* sql) {
    sqlite3_stmt* stmt = nullptr;
    int64_t n = -1;
    if (sqlite3_prepare_v2(db_, sql, -1, &stmt, nullptr) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
      n = sqlite3_column_int64(stmt, 0);
    }
    sqlite3_finalize(stmt);
    if (n < 0) {
      std::fprintf(stderr, "counting failed: %s: %s\n", sql, sqlite3_errmsg(db_));
      std::exit(1);
    }
    return n;
  }

  sqlite3* db_ = nullptr;
};

// Call latencies of one kind in one phase.
class Latencies {
 public:
  struct Summary {
    size_t n = 0;
    double p50 = 0, p95 = 0, p99 = 0, max = 0;  // milliseconds
  };

  void Add(double ms) EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    values_.push_back(ms);
  }

  Summary Summarize() EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    std::sort(values_.begin(), values_.end());
    return SummaryOfSorted(values_);
  }

 private:
  static Summary SummaryOfSorted(const std::vector<double>& sorted) {
    Summary s;
    s.n = sorted.size();
    if (s.n == 0) return s;
    auto at = [&](double q) { return sorted[std::min(s.n - 1, static_cast<size_t>(q * s.n))]; };
    s.p50 = at(0.50);
    s.p95 = at(0.95);
    s.p99 = at(0.99);
    s.max = sorted.back();
    return s;
  }

  Mutex mu_;
  std::vector<double> values_ GUARDED_BY(mu_);
};

json ToJson(const Latencies::Summary& s) {
  return {{"n", s.n}, {"p50_ms", s.p50}, {"p95_ms", s.p95}, {"p99_ms", s.p99}, {"max_ms", s.max}};
}

enum class Mode { kStopping, kSaturate, kRate, kLeaseCycle };

// What the simulated workers did in one phase, as the client saw it.
class PhaseStats {
 public:
  std::atomic<int64_t> reports{0}, points{0}, heartbeats{0}, leases{0}, empty_leases{0},
      completes{0}, lost_leases{0}, errors{0};
  Latencies report_ms, lease_ms, complete_ms;

  void Error(const grpc::Status& status, const char* call) EXCLUDES(mu_) {
    ++errors;
    MutexLock lock(&mu_);
    if (first_error_.empty()) {
      first_error_ = std::string(call) + ": " + FromGrpc(status).ToString();
    }
  }

  std::string first_error() EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    return first_error_;
  }

 private:
  Mutex mu_;
  std::string first_error_ GUARDED_BY(mu_);
};

struct LoadOptions {
  int workers = 1000;
  int batch = 50;
  int points_per_job = 1000;
  double rate = 50'000;  // points/s offered in the rate phase
  // 0: the built-in trainer's train points. N > 0: a program's N named
  // metrics ("metric/0" ...), each report `batch` points over as many steps
  // as it takes, N points a step.
  int named_metrics = 0;
};

// N simulated workers over the callback API. Each has at most one call in
// flight, and its completion starts the next, so no thread waits per worker;
// a single timer thread starts the calls scheduled for later.
class Load {
 public:
  Load(const LoadOptions& options, const std::string& address) : options_(options) {
    workers_.resize(options.workers);
    for (int i = 0; i < options.workers; ++i) {
      // MakeChannel's channels share one connection per address within a
      // process; a worker of its own would have its own.
      grpc::ChannelArguments args;
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
      // Call counters nobody reads here, on every call.
      args.SetInt(GRPC_ARG_ENABLE_CHANNELZ, 0);
      workers_[i].index = i;
      workers_[i].stub = v1::Coordinator::NewStub(
          grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args));
    }
    timer_ = std::thread([this] { TimerLoop(); });
  }

  ~Load() {
    {
      MutexLock lock(&timer_mu_);
      timer_stop_ = true;
    }
    timer_wake_.Signal();
    timer_.join();
  }

  // Registers every worker, all at once.
  Status Register() {
    Registration registration(options_.workers);
    for (Worker& w : workers_) {
      w.register_request.set_name("load-" + std::to_string(w.index));
      w.register_request.set_host("coordinator_load");
      w.register_request.set_device("cpu");
      w.register_request.set_threads(1);
      w.register_request.set_version(ABLATE_VERSION);
      NewContext(w);
      w.stub->async()->RegisterWorker(w.context.get(), &w.register_request, &w.register_reply,
                                      [&registration, wp = &w](grpc::Status s) {
                                        if (s.ok()) wp->id = wp->register_reply.worker_id();
                                        registration.Answered(s);
                                      });
    }
    return registration.Wait();
  }

  // Runs one phase for `seconds`, then lets every call in flight finish.
  // Returns the wall time from the start to the last reply.
  double Run(Mode mode, double seconds, PhaseStats* stats) {
    stats_ = stats;
    {
      MutexLock lock(&idle_mu_);
      active_ = options_.workers;
    }
    const TimePoint start = SteadyClock::now();
    const auto interval = std::chrono::duration_cast<SteadyClock::duration>(
        std::chrono::duration<double>(options_.workers * options_.batch / options_.rate));
    mode_ = mode;
    for (Worker& w : workers_) {
      // Staggered so the offered load is even within each interval.
      w.next_report = start + interval * w.index / options_.workers;
      w.interval = interval;
      Act(w);
    }
    std::this_thread::sleep_until(start + std::chrono::duration_cast<SteadyClock::duration>(
                                              std::chrono::duration<double>(seconds)));
    mode_ = Mode::kStopping;
    timer_wake_.Signal();
    MutexLock lock(&idle_mu_);
    while (active_ != 0) idle_.Wait();
    return Seconds(SteadyClock::now() - start);
  }

 private:
  struct Worker {
    int index = 0;
    int64_t id = 0;
    std::unique_ptr<v1::Coordinator::Stub> stub;
    std::unique_ptr<grpc::ClientContext> context;
    // The current job; 0: none.
    int64_t job_id = 0, token = 0, next_step = 0, points_in_job = 0;
    SteadyClock::duration heartbeat_every{}, interval{};
    TimePoint next_heartbeat, next_report, sent;
    v1::RegisterWorkerRequest register_request;
    v1::RegisterWorkerResponse register_reply;
    v1::LeaseJobRequest lease_request;
    v1::LeaseJobResponse lease_reply;
    v1::ReportPointsRequest report_request;
    v1::ReportPointsResponse report_reply;
    v1::HeartbeatRequest heartbeat_request;
    v1::HeartbeatResponse heartbeat_reply;
    v1::CompleteJobRequest complete_request;
    v1::CompleteJobResponse complete_reply;
  };

  static void NewContext(Worker& w) {
    w.context = std::make_unique<grpc::ClientContext>();
    w.context->set_deadline(std::chrono::system_clock::now() + kCallDeadline);
  }

  // Starts the worker's next call, or schedules it, or parks the worker.
  void Act(Worker& w) {
    const Mode mode = mode_;
    if (mode == Mode::kStopping) return Park();
    if (w.job_id == 0) return Lease(w);
    if (mode == Mode::kLeaseCycle || w.points_in_job >= options_.points_per_job) {
      return Complete(w);
    }
    const TimePoint now = SteadyClock::now();
    if (now >= w.next_heartbeat) return Heartbeat(w);
    if (mode == Mode::kRate) {
      if (now < w.next_report) return At(w.next_report, &w);
      const TimePoint scheduled = w.next_report;
      w.next_report += w.interval;
      return Report(w, scheduled);
    }
    Report(w, now);
  }

  void Park() EXCLUDES(idle_mu_) {
    MutexLock lock(&idle_mu_);
    if (--active_ == 0) idle_.SignalAll();
  }

  void Lease(Worker& w) {
    w.lease_request.set_worker_id(w.id);
    w.lease_reply.Clear();
    NewContext(w);
    w.sent = SteadyClock::now();
    w.stub->async()->LeaseJob(
        w.context.get(), &w.lease_request, &w.lease_reply, [this, &w](grpc::Status s) {
          const TimePoint now = SteadyClock::now();
          if (!s.ok()) {
            stats_->Error(s, "LeaseJob");
            return At(now + kRetryDelay, &w);
          }
          stats_->lease_ms.Add(Milliseconds(now - w.sent));
          if (!w.lease_reply.has_job()) {
            ++stats_->empty_leases;
            return At(now + kRetryDelay, &w);
          }
          ++stats_->leases;
          const v1::JobLease& job = w.lease_reply.job();
          w.job_id = job.job_id();
          w.token = job.lease_token();
          w.next_step = job.checkpoint_step() + 1;
          w.points_in_job = 0;
          w.heartbeat_every = std::chrono::duration_cast<SteadyClock::duration>(
              std::chrono::duration<double>(job.heartbeat_seconds()));
          w.next_heartbeat = now + w.heartbeat_every;
          Act(w);
        });
  }

  int64_t StepsPerReport() const {
    const int named = options_.named_metrics;
    return named > 0 ? (options_.batch + named - 1) / named : options_.batch;
  }

  void Report(Worker& w, TimePoint scheduled) {
    v1::ReportPointsRequest& r = w.report_request;
    r.Clear();
    r.set_job_id(w.job_id);
    r.set_lease_token(w.token);
    const int named = options_.named_metrics;
    for (int i = 0; i < options_.batch; ++i) {
      const int64_t step = w.next_step + (named > 0 ? i / named : i);
      const double value = 1.5 + 3.0 / std::sqrt(static_cast<double>(step));
      v1::CurvePoint* p = r.add_points();
      if (named > 0) {
        p->set_metric(kMetricNames[i % named]);
        p->set_value(value);
      } else {
        p->set_split(v1::SPLIT_TRAIN);
        p->set_bpc(value);
      }
      p->set_step(step);
      p->set_bytes_seen(step * 3200);
      p->set_wall_time(step * 0.01);
    }
    NewContext(w);
    w.sent = scheduled;
    w.stub->async()->ReportPoints(w.context.get(), &w.report_request, &w.report_reply,
                                  [this, &w](grpc::Status s) {
                                    const TimePoint now = SteadyClock::now();
                                    if (Failed(s, "ReportPoints", now, w)) return;
                                    stats_->report_ms.Add(Milliseconds(now - w.sent));
                                    ++stats_->reports;
                                    stats_->points += options_.batch;
                                    w.next_step += StepsPerReport();
                                    w.points_in_job += options_.batch;
                                    Act(w);
                                  });
  }

  // For a call on `w`'s lease: a refusal (the lease was lost) drops the job
  // and goes on; another error retries after a pause. True when `s` was one.
  bool Failed(const grpc::Status& s, const char* rpc, TimePoint now, Worker& w) {
    if (s.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
      ++stats_->lost_leases;
      w.job_id = 0;
      Act(w);
      return true;
    }
    if (!s.ok()) {
      stats_->Error(s, rpc);
      At(now + kRetryDelay, &w);
      return true;
    }
    return false;
  }

  void Heartbeat(Worker& w) {
    v1::HeartbeatRequest& r = w.heartbeat_request;
    r.set_job_id(w.job_id);
    r.set_lease_token(w.token);
    r.mutable_progress()->set_step(w.next_step - 1);
    r.mutable_progress()->set_steps_total(options_.points_per_job);
    NewContext(w);
    w.stub->async()->Heartbeat(w.context.get(), &w.heartbeat_request, &w.heartbeat_reply,
                               [this, &w](grpc::Status s) {
                                 const TimePoint now = SteadyClock::now();
                                 if (!s.ok()) {
                                   stats_->Error(s, "Heartbeat");
                                   return At(now + kRetryDelay, &w);
                                 }
                                 ++stats_->heartbeats;
                                 w.next_heartbeat = now + w.heartbeat_every;
                                 if (w.heartbeat_reply.state() != v1::LEASE_STATE_ACTIVE) {
                                   ++stats_->lost_leases;
                                   w.job_id = 0;
                                 }
                                 Act(w);
                               });
  }

  void Complete(Worker& w) {
    v1::CompleteJobRequest& r = w.complete_request;
    r.set_job_id(w.job_id);
    r.set_lease_token(w.token);
    r.mutable_metrics()->set_train_bpc(1.5);
    r.mutable_metrics()->set_steps(w.next_step - 1);
    NewContext(w);
    w.sent = SteadyClock::now();
    w.stub->async()->CompleteJob(w.context.get(), &w.complete_request, &w.complete_reply,
                                 [this, &w](grpc::Status s) {
                                   const TimePoint now = SteadyClock::now();
                                   if (Failed(s, "CompleteJob", now, w)) return;
                                   stats_->complete_ms.Add(Milliseconds(now - w.sent));
                                   ++stats_->completes;
                                   w.job_id = 0;
                                   Act(w);
                                 });
  }

  // Runs Act(*w) at `when` on the timer thread.
  void At(TimePoint when, Worker* w) EXCLUDES(timer_mu_) {
    {
      MutexLock lock(&timer_mu_);
      timers_.push({when, w});
    }
    timer_wake_.Signal();
  }

  void TimerLoop() EXCLUDES(timer_mu_) {
    MutexLock lock(&timer_mu_);
    while (!timer_stop_) {
      if (timers_.empty()) {
        timer_wake_.Wait();
        continue;
      }
      const Timer next = timers_.top();
      // A stopping phase parks the waiting workers at once.
      if (mode_ != Mode::kStopping && SteadyClock::now() < next.when) {
        timer_wake_.WaitUntil(next.when);
        continue;
      }
      timers_.pop();
      timer_mu_.Unlock();
      Act(*next.worker);
      timer_mu_.Lock();
    }
  }

  // The workers' answers to RegisterWorker, counted down.
  class Registration {
   public:
    explicit Registration(int workers) : left_(workers) {}

    void Answered(const grpc::Status& s) EXCLUDES(mu_) {
      MutexLock lock(&mu_);
      if (!s.ok() && failure_.ok()) failure_ = FromGrpc(s);
      if (--left_ == 0) done_.Signal();
    }

    // Once every worker has its answer: the first failure, or OK.
    Status Wait() EXCLUDES(mu_) {
      MutexLock lock(&mu_);
      while (left_ != 0) done_.Wait();
      return failure_;
    }

   private:
    Mutex mu_;
    CondVar done_{&mu_};
    int left_ GUARDED_BY(mu_);
    Status failure_ GUARDED_BY(mu_);
  };

  struct Timer {
    TimePoint when;
    Worker* worker;
    bool operator>(const Timer& other) const { return when > other.when; }
  };

  const LoadOptions options_;
  std::vector<Worker> workers_;
  std::atomic<Mode> mode_{Mode::kStopping};
  PhaseStats* stats_ = nullptr;  // set before a phase's first call

  Mutex idle_mu_;
  CondVar idle_{&idle_mu_};
  int active_ GUARDED_BY(idle_mu_) = 0;  // workers not parked in this phase

  Mutex timer_mu_;
  CondVar timer_wake_{&timer_mu_};
  std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> timers_ GUARDED_BY(timer_mu_);
  bool timer_stop_ GUARDED_BY(timer_mu_) = false;
  std::thread timer_;
};

// The coordinator's RSS once a second, with the phase it was taken in.
class RssSampler {
 public:
  struct Sample {
    double t;  // seconds since the sampler started
    int64_t kib;
    std::string phase;
  };

  explicit RssSampler(const CoordinatorProcess* coordinator)
      : coordinator_(coordinator), start_(SteadyClock::now()) {
    thread_ = std::thread([this] { Loop(); });
  }
  ~RssSampler() { Stop(); }

  void SetPhase(const std::string& phase) EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    phase_ = phase;
  }

  void Stop() EXCLUDES(mu_) {
    {
      MutexLock lock(&mu_);
      if (stop_) return;
      stop_ = true;
    }
    wake_.Signal();
    thread_.join();
  }

  std::vector<Sample> samples() EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    return samples_;
  }

 private:
  void Loop() EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    do {
      samples_.push_back({Seconds(SteadyClock::now() - start_), coordinator_->RssKiB(), phase_});
    } while (!StoppedWithin(std::chrono::seconds(1)));
  }

  // Waits `period`, less when Stop is called meanwhile; true when it was.
  bool StoppedWithin(SteadyClock::duration period) REQUIRES(mu_) {
    const TimePoint deadline = SteadyClock::now() + period;
    bool timed_out = false;
    while (!stop_ && !timed_out) timed_out = wake_.WaitUntil(deadline);
    return stop_;
  }

  const CoordinatorProcess* const coordinator_;
  const TimePoint start_;
  Mutex mu_;
  CondVar wake_{&mu_};
  bool stop_ GUARDED_BY(mu_) = false;
  std::string phase_ GUARDED_BY(mu_) = "setup";
  std::vector<Sample> samples_ GUARDED_BY(mu_);
  std::thread thread_;
};

// A generated sweep of kJobsPerSweep jobs; they are never trained.
std::string SweepSpec(int index) {
  std::string seeds;
  for (int s = 0; s < kSeedsPerSweep; ++s) seeds += (s ? ", " : "") + std::to_string(s);
  return "name: load-" + std::to_string(index) + R"(
description: coordinator_load's generated sweep
data: {path: x}
grid:
  cell: [lstm, gru, mgu]
  layer_norm: [true, false]
  init: [xavier, variance_scaling, orthogonal]
seeds: [)" +
         seeds + "]\n";
}

Status LaunchSweeps(const std::string& address, int sweeps) {
  ClientOptions client;
  client.address = address;
  auto stub = v1::Sweeps::NewStub(MakeChannel(client));
  for (int i = 0; i < sweeps; ++i) {
    v1::LaunchRequest request;
    request.set_spec_text(SweepSpec(i));
    request.set_filename("load-" + std::to_string(i) + ".yaml");
    v1::LaunchResponse reply;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(2));
    Status status = FromGrpc(stub->Launch(&context, request, &reply));
    if (!status.ok()) return status.WithContext("launching sweep " + std::to_string(i));
  }
  return Status::OK();
}

// Runs a command, returning its stdout; exit status in `*exit_code`.
std::string Capture(const std::vector<std::string>& command, int* exit_code) {
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return "";
  SpawnOptions options;
  options.argv = command;
  options.stdout_fd = out[1];
  StatusOr<pid_t> pid = Spawn(options);
  close(out[1]);
  std::string text;
  *exit_code = 127;
  if (pid.ok()) {
    char buffer[4096];
    ssize_t n;
    while ((n = read(out[0], buffer, sizeof buffer)) > 0) text.append(buffer, n);
    StatusOr<int> code = WaitForExit(*pid);
    if (code.ok()) *exit_code = *code;
  }
  close(out[0]);
  return text;
}

std::string ExecutableDir() {
  return std::filesystem::read_symlink("/proc/self/exe").parent_path().string();
}

std::string Grouped(double value) {
  std::string digits = std::to_string(static_cast<int64_t>(std::llround(value)));
  for (int at = static_cast<int>(digits.size()) - 3; at > (digits[0] == '-' ? 1 : 0); at -= 3) {
    digits.insert(static_cast<size_t>(at), ",");
  }
  return digits;
}

struct Args {
  LoadOptions load;
  double seconds = 10;
  std::string phase = "all";
  std::string sync = "normal";
  int jobs = 0;  // 0: enough for the phases' targets
  bool keep_db = false;
  bool optuna = true;
  int optuna_processes = 2;
  std::string json_path;
  std::string coordinator_binary;
  std::string optuna_script = ABLATE_SOURCE_DIR "/bench/optuna_reference.py";
  std::string python = "/usr/bin/python3";
};

// One table row. CPU shows as cores kept busy, and as the coordinator's CPU
// microseconds per committed point or cycle, which drifts less with the load
// that others put on the machine.
void PrintRow(const std::string& phase, double seconds, int64_t committed, const char* unit,
              const Latencies::Summary& latency, double server_cpu, double client_cpu) {
  std::printf("%-22s %5.1f s %11s %-4s %9s/s  %6.1f %6.1f %6.1f %6.1f  %5.2f %5.2f %8.1f\n",
              phase.c_str(), seconds, Grouped(committed).c_str(), unit,
              Grouped(committed / seconds).c_str(), latency.p50, latency.p95, latency.p99,
              latency.max, server_cpu / seconds, client_cpu / seconds,
              committed > 0 ? 1e6 * server_cpu / committed : 0.0);
}

int Main(int argc, char** argv) {
  // The load generator shares the coordinator's two cores, so it should cost
  // little: Debian's Abseil checks lock order on every absl::Mutex inside
  // gRPC, ~15% of this process's CPU. The coordinator turns it off too.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  Args args;
  CLI::App app{"coordinator_load: N simulated workers against the real ablate-coordinator"};
  app.add_option("--workers", args.load.workers, "Simulated workers")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--batch", args.load.batch, "Points per ReportPoints call")
      ->check(CLI::Range(1, 100'000))
      ->capture_default_str();
  app.add_option("--points-per-job", args.load.points_per_job,
                 "Points a worker reports before it completes its job and leases the next")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--seconds", args.seconds, "Duration of each phase")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--rate", args.load.rate, "Points/s offered in the fixed-rate report phase")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--named-metrics", args.load.named_metrics,
                 "Report a program's N named metrics (metric/0 ...) instead of train bpc")
      ->check(CLI::Range(0, kMaxNamedMetrics))
      ->capture_default_str();
  app.add_option("--phase", args.phase,
                 "all; report (saturate and rate); saturate, rate or lease alone")
      ->check(CLI::IsMember({"all", "report", "saturate", "rate", "lease"}))
      ->capture_default_str();
  app.add_option("--sync", args.sync,
                 "The coordinator's --sync: normal (its default) or full (an fsync per commit, "
                 "as Optuna's SQLite does)")
      ->check(CLI::IsMember({"normal", "full"}))
      ->capture_default_str();
  app.add_option("--jobs", args.jobs, "Jobs to launch (default: enough for the phases)");
  app.add_flag("--keep-db", args.keep_db, "Keep the temp dir with the coordinator's database");
  app.add_option("--json", args.json_path, "Also write the results as JSON to this file");
  app.add_flag("!--no-optuna", args.optuna, "Skip the Optuna reference");
  app.add_option("--optuna-processes", args.optuna_processes, "Optuna reference processes")
      ->capture_default_str();
  app.add_option("--coordinator-bin", args.coordinator_binary,
                 "ablate-coordinator (default: ../bin/ beside this binary)");
  app.add_option("--optuna-script", args.optuna_script)->capture_default_str();
  app.add_option("--python", args.python, "Python with Debian's python3-optuna")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (args.coordinator_binary.empty()) {
    args.coordinator_binary = ExecutableDir() + "/../bin/ablate-coordinator";
  }
  const bool all = args.phase == "all", report = all || args.phase == "report";
  const bool saturate_phase = report || args.phase == "saturate";
  const bool rate_phase = report || args.phase == "rate";
  const bool report_phases = saturate_phase || rate_phase;
  const bool lease_phase = all || args.phase == "lease";
  if (args.jobs == 0) {
    // Every worker holds a job; the report phases complete one per
    // points_per_job points, at up to ~4x the target; the lease phase up to
    // ~2x its target. Launching takes time too, so not more.
    double needed = args.load.workers;
    if (report_phases) {
      needed += 2 * 4 * kTargetPointsPerSecond * args.seconds / args.load.points_per_job;
    }
    if (lease_phase) needed += 2 * kTargetCyclesPerSecond * args.seconds;
    args.jobs = static_cast<int>(needed);
  }
  const int sweeps = (args.jobs + kJobsPerSweep - 1) / kJobsPerSweep;

  RaiseDescriptorLimit();
  StatusOr<std::string> made = MakeTempDirectory("coordinator_load");
  if (!made.ok()) {
    std::fprintf(stderr, "%s\n", made.status().message().c_str());
    return 1;
  }
  const std::string dir = *made;
  const std::string load_at_start = LoadAverage();
  const auto wall_start = std::chrono::system_clock::now();

  auto coordinator = CoordinatorProcess::Start(args.coordinator_binary, dir, args.sync);
  if (!coordinator.ok()) {
    std::fprintf(stderr, "coordinator_load: %s\n", coordinator.status().ToString().c_str());
    return 1;
  }
  CoordinatorProcess& server = **coordinator;
  RssSampler rss(&server);

  std::fprintf(stderr, "coordinator pid %d on %s; launching %d sweeps of %d jobs\n", server.pid(),
               server.address().c_str(), sweeps, kJobsPerSweep);
  const TimePoint launch_start = SteadyClock::now();
  Status launched = LaunchSweeps(server.address(), sweeps);
  if (!launched.ok()) {
    std::fprintf(stderr, "coordinator_load: %s\n", launched.ToString().c_str());
    return 1;
  }
  const double launch_seconds = Seconds(SteadyClock::now() - launch_start);

  Load load(args.load, server.address());
  Status registered = load.Register();
  if (!registered.ok()) {
    std::fprintf(stderr, "coordinator_load: registering: %s\n", registered.ToString().c_str());
    return 1;
  }
  CommittedCounter counter(server.db_path());

  json results = {
      {"benchmark", "coordinator_load"},
      {"workers", args.load.workers},
      {"batch", args.load.batch},
      {"points_per_job", args.load.points_per_job},
      {"seconds_per_phase", args.seconds},
      {"sync", args.sync},
      {"jobs_launched", sweeps * kJobsPerSweep},
      {"launch_seconds", launch_seconds},
      {"cpu", CpuModel()},
      {"cores", std::thread::hardware_concurrency()},
      {"load_average_at_start", load_at_start},
      {"date",
       [&] {
         std::time_t t = std::chrono::system_clock::to_time_t(wall_start);
         char text[32];
         std::strftime(text, sizeof text, "%Y-%m-%d %H:%M", std::localtime(&t));
         return std::string(text);
       }()},
      {"phases", json::array()},
  };

  std::printf(
      "coordinator_load: %d workers (one connection each), %d points per report, %g s per "
      "phase, --sync %s\n"
      "%s, %u cores, load average %s at the start; %d jobs launched in %.1f s\n\n",
      args.load.workers, args.load.batch, args.seconds, args.sync.c_str(), CpuModel().c_str(),
      std::thread::hardware_concurrency(), load_at_start.c_str(), sweeps * kJobsPerSweep,
      launch_seconds);
  std::printf("%-22s %7s %16s %11s  %6s %6s %6s %6s  %5s %5s %8s\n", "", "", "", "", "report", "or",
              "complete", "ms", "CPU", "cores", "server");
  std::printf("%-22s %7s %16s %11s  %6s %6s %6s %6s  %5s %5s %8s\n", "phase", "time", "committed",
              "rate", "p50", "p95", "p99", "max", "srv", "gen", "us/unit");

  // Lease a job for every worker before anything is timed.
  {
    PhaseStats warmup;
    rss.SetPhase("warmup");
    load.Run(Mode::kSaturate, 1, &warmup);
  }

  struct Phase {
    Mode mode;
    std::string name, label;
  };
  std::vector<Phase> phases;
  if (saturate_phase) phases.push_back({Mode::kSaturate, "report_saturated", "report, saturated"});
  if (rate_phase) {
    phases.push_back(
        {Mode::kRate, "report_fixed_rate", "report, " + Grouped(args.load.rate) + " pts/s"});
  }
  if (lease_phase) phases.push_back({Mode::kLeaseCycle, "lease_complete", "lease+complete"});

  bool met = true;
  for (const Phase& phase : phases) {
    PhaseStats stats;
    rss.SetPhase(phase.name);
    std::fprintf(stderr, "phase %s for %g s\n", phase.name.c_str(), args.seconds);
    const int64_t points_before = counter.Points(), done_before = counter.DoneJobs();
    const double server_cpu = server.CpuSeconds(), client_cpu = ClientCpuSeconds();
    const double seconds = load.Run(phase.mode, args.seconds, &stats);
    const double server_used = server.CpuSeconds() - server_cpu;
    const double client_used = ClientCpuSeconds() - client_cpu;
    const int64_t points = counter.Points() - points_before;
    const int64_t done = counter.DoneJobs() - done_before;
    json row = {
        {"phase", phase.name},
        {"seconds", seconds},
        {"committed_points", points},
        {"committed_points_per_s", points / seconds},
        {"acked_points", stats.points.load()},
        {"committed_completions", done},
        {"committed_completions_per_s", done / seconds},
        {"acked_completions", stats.completes.load()},
        {"leases", stats.leases.load()},
        {"empty_leases", stats.empty_leases.load()},
        {"heartbeats", stats.heartbeats.load()},
        {"lost_leases", stats.lost_leases.load()},
        {"errors", stats.errors.load()},
        {"first_error", stats.first_error()},
        {"server_cpu_cores", server_used / seconds},
        {"client_cpu_cores", client_used / seconds},
        {"server_cpu_us_per_unit",
         1e6 * server_used / std::max<int64_t>(1, phase.mode == Mode::kLeaseCycle ? done : points)},
    };
    if (phase.mode == Mode::kLeaseCycle) {
      const Latencies::Summary lease = stats.lease_ms.Summarize();
      const Latencies::Summary complete = stats.complete_ms.Summarize();
      row["lease_latency"] = ToJson(lease);
      row["complete_latency"] = ToJson(complete);
      PrintRow(phase.label, seconds, done, "jobs", complete, server_used, client_used);
      std::printf("%-22s %7s %16s %11s  %6.1f %6.1f %6.1f %6.1f  (LeaseJob)\n", "", "", "", "",
                  lease.p50, lease.p95, lease.p99, lease.max);
      met = met && done / seconds >= kTargetCyclesPerSecond;
    } else {
      const Latencies::Summary report = stats.report_ms.Summarize();
      row["report_latency"] = ToJson(report);
      PrintRow(phase.label, seconds, points, "pts", report, server_used, client_used);
      if (phase.mode == Mode::kSaturate) met = met && points / seconds >= kTargetPointsPerSecond;
      if (phase.mode == Mode::kRate) met = met && report.p99 < kTargetP99Ms;
    }
    if (stats.points.load() != points && phase.mode != Mode::kLeaseCycle) {
      std::printf("  !! acked %lld points but %lld were committed\n",
                  static_cast<long long>(stats.points.load()), static_cast<long long>(points));
      met = false;
    }
    if (stats.errors > 0) {
      std::printf("  !! %lld failed calls; the first: %s\n",
                  static_cast<long long>(stats.errors.load()), stats.first_error().c_str());
    }
    if (stats.empty_leases > 0) {
      std::printf("  !! %lld leases found no pending job: raise --jobs\n",
                  static_cast<long long>(stats.empty_leases.load()));
    }
    results["phases"].push_back(row);
  }

  rss.Stop();
  const std::vector<RssSampler::Sample> samples = rss.samples();
  Status stopped = server.Stop();
  if (!stopped.ok()) {
    std::fprintf(stderr, "coordinator_load: %s\n", stopped.ToString().c_str());
    met = false;
  }
  // Flatness over the timed phases, once every worker is connected and holds
  // a job: the last half's peak against the first half's.
  std::vector<RssSampler::Sample> timed;
  for (const auto& s : samples) {
    if (s.phase != "setup" && s.phase != "warmup") timed.push_back(s);
  }
  int64_t first_half_peak = 0, second_half_peak = 0;
  for (size_t i = 0; i < timed.size(); ++i) {
    int64_t& half_peak = i < timed.size() / 2 ? first_half_peak : second_half_peak;
    half_peak = std::max(half_peak, timed[i].kib);
  }
  const int64_t peak = std::max(first_half_peak, second_half_peak);
  const double growth =
      first_half_peak > 0 ? static_cast<double>(second_half_peak) / first_half_peak - 1 : 0;
  const bool flat = growth < kFlatGrowth;
  met = met && flat;
  json memory = {{"before_workers_kib", samples.empty() ? 0 : samples.front().kib},
                 {"start_kib", timed.empty() ? 0 : timed.front().kib},
                 {"peak_kib", peak},
                 {"end_kib", timed.empty() ? 0 : timed.back().kib},
                 {"last_half_growth", growth},
                 {"flat", flat},
                 {"samples", json::array()}};
  for (const auto& s : samples) memory["samples"].push_back({s.t, s.kib, s.phase});
  results["coordinator_rss"] = memory;
  std::printf(
      "\ncoordinator RSS: %.1f MiB before the workers connected; over the phases "
      "%.1f MiB at the start, %.1f MiB peak, %.1f MiB at the end; the last half's peak is "
      "%+.1f%% of the first half's: %s\n",
      memory["before_workers_kib"].get<double>() / 1024, memory["start_kib"].get<double>() / 1024,
      peak / 1024.0, memory["end_kib"].get<double>() / 1024, 100 * growth,
      flat ? "flat" : "GROWING");

  if (args.optuna && saturate_phase) {
    std::fprintf(stderr, "running the Optuna reference for %g s\n", args.seconds);
    int exit_code = 0;
    std::string out =
        Capture({args.python, args.optuna_script, "--seconds", std::to_string(args.seconds),
                 "--processes", std::to_string(args.optuna_processes), "--dir", dir},
                &exit_code);
    json optuna = json::parse(out, nullptr, false);
    if (exit_code != 0 || optuna.is_discarded()) {
      std::printf("Optuna reference failed (exit %d); is python3-optuna installed?\n", exit_code);
      met = false;
    } else {
      const double saturated = results["phases"][0]["committed_points_per_s"].get<double>();
      const double optuna_rate = optuna["committed_points_per_s"].get<double>();
      optuna["ablate_ratio"] = optuna_rate > 0 ? saturated / optuna_rate : 0.0;
      results["optuna"] = optuna;
      std::printf(
          "Optuna %s on SQLite, %d processes, trial.report per point: %s points/s "
          "committed; ablate saturated: %.0fx that\n",
          optuna["optuna_version"].get<std::string>().c_str(), args.optuna_processes,
          Grouped(optuna_rate).c_str(), optuna["ablate_ratio"].get<double>());
    }
  }

  results["load_average_at_end"] = LoadAverage();
  results["targets_met"] = met;
  std::printf(
      "load average %s at the end; targets (>= %s pts/s saturated, >= %s cycles/s, "
      "p99 < %g ms at the fixed rate, flat memory): %s\n",
      LoadAverage().c_str(), Grouped(kTargetPointsPerSecond).c_str(),
      Grouped(kTargetCyclesPerSecond).c_str(), kTargetP99Ms, met ? "met" : "NOT MET");
  if (!args.json_path.empty()) std::ofstream(args.json_path) << results.dump(2) << "\n";
  if (args.keep_db) {
    std::printf("kept %s\n", dir.c_str());
  } else {
    std::filesystem::remove_all(dir);
  }
  return 0;
}

}  // namespace
}  // namespace ablate

int main(int argc, char** argv) { return ablate::Main(argc, argv); }
