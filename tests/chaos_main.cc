// ablate-chaos: runs a small sweep on loopback while killing workers
// (SIGKILL, SIGTERM), freezing them past their lease (SIGSTOP, SIGCONT) and
// killing and restarting the coordinator, then checks that nothing was lost:
// every job done once, every curve its schedule exactly once, and every
// point and final result equal to an undisturbed run of the same config.
// Prints a summary; exits 0 when every invariant holds, 1 otherwise.
//
// `make test` runs a short round (see tests/CMakeLists.txt); scripts/chaos.sh
// runs longer ones by hand.
#include <fmt/format.h>
#include <signal.h>
#include <stdlib.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <thread>

#include "common/temp_dir.h"
#include "tests/support/sweep_harness.h"

namespace ablate {
namespace {

using testing::CoordinatorProcess;
using testing::Process;
using Clock = std::chrono::steady_clock;

struct ChaosOptions {
  double duration_seconds = 60;  // how long disruptions go on
  int workers = 3;
  int kills = 0;  // disruptions at most; 0: as many as the duration allows
  int seeds = 2;  // jobs = 3 cells x seeds
  int steps = 300;
  double lease_seconds = 2;
  double min_gap_seconds = 1, max_gap_seconds = 3;  // between disruptions
  uint64_t seed = 0;                                // 0: random
  std::string bin_dir;
  bool keep = false;
};

enum Disruption { kWorkerKill, kWorkerTerm, kWorkerStop, kCoordinatorKill, kDisruptions };
constexpr const char* kDisruptionNames[] = {"worker SIGKILL", "worker SIGTERM",
                                            "worker SIGSTOP past its lease, then SIGCONT",
                                            "coordinator SIGKILL and restart"};

std::string Spec(const std::string& corpus, const ChaosOptions& o) {
  std::string seeds;
  for (int s = 1; s <= o.seeds; ++s) seeds += (s > 1 ? ", " : "") + std::to_string(s);
  return fmt::format(
      "name: chaos\n"
      "data: {{path: {}}}\n"
      "model: {{hidden: 96, vocab: 27}}\n"
      "train: {{batch: 8, seq: 48, steps: {}, log_every: 10, eval_every: 50, eval_bytes: 2000, "
      "checkpoint_every: 50}}\n"
      "schedule: {{lease_seconds: {}, max_attempts: 1000}}\n"
      "grid:\n  cell: [gru, lstm, mgu]\n"
      "seeds: [{}]\n",
      corpus, o.steps, o.lease_seconds, seeds);
}

class Chaos {
 public:
  Chaos(const ChaosOptions& options, const std::string& dir)
      : o_(options), dir_(dir), rng_(options.seed) {}

  int Run() {
    const std::string corpus = dir_ + "/corpus.txt";
    testing::WriteFile(corpus, testing::EnglishText8(60));
    db_ = dir_ + "/chaos.db";
    coordinator_ = std::make_unique<CoordinatorProcess>(dir_, db_, testing::FreePort());
    if (!coordinator_->serving()) return Fail("the coordinator did not start");
    auto launched = testing::Launch(coordinator_->Channel(), Spec(corpus, o_), "chaos.yaml");
    if (!launched.ok()) return Fail("launch: " + launched.status().ToString());
    std::printf("chaos: %lld jobs, %d workers, seed %llu, work dir %s\n",
                static_cast<long long>(launched->jobs_created()), o_.workers,
                static_cast<unsigned long long>(o_.seed), dir_.c_str());
    std::fflush(stdout);
    for (int i = 0; i < o_.workers; ++i) workers_.push_back(StartWorker(i));

    const auto chaos_end = Clock::now() + Seconds(o_.duration_seconds);
    std::uniform_real_distribution<double> gap(o_.min_gap_seconds, o_.max_gap_seconds);
    while (Clock::now() < chaos_end && (o_.kills == 0 || Total() < o_.kills) && !SweepOver()) {
      std::this_thread::sleep_for(Seconds(gap(rng_)));
      ReviveWorkers();
      Disrupt();
    }
    const double chaos_seconds = Elapsed();

    // Left alone, the sweep must finish.
    const auto deadline = Clock::now() + std::chrono::minutes(10);
    while (!SweepOver() && Clock::now() < deadline) {
      ReviveWorkers();
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    for (auto& w : workers_) w->Wait(std::chrono::seconds(60));
    coordinator_->Stop(SIGTERM);

    std::printf("chaos: %.0f s of chaos, %d disruptions survived:", chaos_seconds, Total());
    for (int d = 0; d < kDisruptions; ++d) std::printf(" %d %s;", counts_[d], kDisruptionNames[d]);
    std::printf(" %.0f s in all\n", Elapsed());
    std::fflush(stdout);
    testing::References references(dir_, 1);
    testing::SweepCheck check = testing::CheckSweep(db_, &references);
    std::printf("chaos: %s\n", check.Summary().c_str());
    for (const std::string& problem : check.problems)
      std::printf("chaos: FAIL %s\n", problem.c_str());
    if (check.compared_jobs != check.jobs) {
      std::printf("chaos: FAIL only %lld of %lld jobs compared with an undisturbed run\n",
                  static_cast<long long>(check.compared_jobs), static_cast<long long>(check.jobs));
    }
    const bool ok = check.ok() && check.compared_jobs == check.jobs && check.jobs > 0;
    std::printf("chaos: %s\n", ok ? "OK" : "FAILED");
    if (!ok) DumpLogs();
    return ok ? 0 : 1;
  }

 private:
  static std::chrono::duration<double> Seconds(double s) {
    return std::chrono::duration<double>(s);
  }
  double Elapsed() const { return std::chrono::duration<double>(Clock::now() - started_).count(); }
  int Total() const {
    int total = 0;
    for (int c : counts_) total += c;
    return total;
  }

  int Fail(const std::string& why) {
    std::printf("chaos: FAILED: %s\n", why.c_str());
    DumpLogs();
    return 1;
  }

  std::unique_ptr<Process> StartWorker(int i) {
    testing::WorkerFlags flags;
    flags.name = "w" + std::to_string(i);
    return testing::StartWorker(dir_, fmt::format("w{}-{}", i, ++incarnations_),
                                coordinator_->address(), flags);
  }

  // Every job done or failed (read while the coordinator may be down).
  bool SweepOver() {
    auto open =
        testing::QueryInt64(db_, "SELECT count(*) FROM jobs WHERE state IN ('pending', 'running')");
    return open.ok() && *open == 0;
  }

  // Workers that exited (killed, terminated) are replaced under the same
  // name, as a supervisor would; an idle exit at the end is left be.
  void ReviveWorkers() {
    if (SweepOver()) return;
    for (size_t i = 0; i < workers_.size(); ++i) {
      if (!workers_[i]->running()) workers_[i] = StartWorker(static_cast<int>(i));
    }
  }

  // Disruptions come in shuffled rounds of one of each, so that even a short
  // run has every kind.
  Disruption Next() {
    if (round_.empty()) {
      for (int d = 0; d < kDisruptions; ++d) round_.push_back(static_cast<Disruption>(d));
      std::shuffle(round_.begin(), round_.end(), rng_);
    }
    Disruption d = round_.back();
    round_.pop_back();
    return d;
  }

  void Disrupt() {
    std::uniform_int_distribution<size_t> pick_worker(0, workers_.size() - 1);
    const Disruption d = Next();
    Process& worker = *workers_[pick_worker(rng_)];
    std::printf("chaos: %5.1f s %s%s\n", Elapsed(), kDisruptionNames[d],
                d == kCoordinatorKill ? "" : (" " + worker.name()).c_str());
    std::fflush(stdout);
    switch (d) {
      case kWorkerKill:
        worker.Signal(SIGKILL);
        worker.Wait(std::chrono::seconds(10));
        break;
      case kWorkerTerm:
        // It checkpoints, uploads and releases before it exits.
        worker.Signal(SIGTERM);
        worker.Wait(std::chrono::seconds(60));
        break;
      case kWorkerStop:
        worker.Signal(SIGSTOP);
        std::this_thread::sleep_for(Seconds(o_.lease_seconds + 1.5));
        worker.Signal(SIGCONT);
        break;
      case kCoordinatorKill: {
        coordinator_->Stop(SIGKILL);
        std::uniform_real_distribution<double> down(0.2, o_.lease_seconds + 1);
        std::this_thread::sleep_for(Seconds(down(rng_)));
        if (!coordinator_->Restart()) {
          std::printf("chaos: FAIL the coordinator did not come back\n");
          return;
        }
        break;
      }
      case kDisruptions:
        return;
    }
    ++counts_[d];
  }

  void DumpLogs() {
    std::printf("chaos: logs are in %s%s\n", dir_.c_str(),
                o_.keep ? "" : " (removed on exit; pass --keep to keep them)");
    std::string log = coordinator_ ? coordinator_->Logs() : "";
    if (log.size() > 20000) log = "..." + log.substr(log.size() - 20000);
    std::printf("---- coordinator\n%s", log.c_str());
  }

  const ChaosOptions o_;
  const std::string dir_;
  std::mt19937_64 rng_;
  const Clock::time_point started_ = Clock::now();
  std::string db_;
  std::unique_ptr<CoordinatorProcess> coordinator_;
  std::vector<std::unique_ptr<Process>> workers_;
  int incarnations_ = 0;
  int counts_[kDisruptions] = {};
  std::vector<Disruption> round_;
};

}  // namespace
}  // namespace ablate

int main(int argc, char** argv) {
  ablate::ChaosOptions o;
  CLI::App app{"ablate-chaos: a sweep on loopback under random kills; checks nothing was lost"};
  app.add_option("--duration", o.duration_seconds, "seconds of disruptions")->capture_default_str();
  app.add_option("--workers", o.workers, "worker processes")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app.add_option("--kills", o.kills, "disruptions at most (0: as many as the duration allows)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--seeds", o.seeds, "seeds per cell: jobs = 3 x seeds")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  app.add_option("--steps", o.steps, "training steps per job")
      ->check(CLI::Range(10, 1000000))
      ->capture_default_str();
  app.add_option("--lease-seconds", o.lease_seconds, "the sweep's lease")
      ->check(CLI::Range(0.5, 60.0))
      ->capture_default_str();
  app.add_option("--min-gap", o.min_gap_seconds, "least seconds between disruptions")
      ->capture_default_str();
  app.add_option("--max-gap", o.max_gap_seconds, "most seconds between disruptions")
      ->capture_default_str();
  app.add_option("--seed", o.seed, "seed of the disruption schedule (0: random)");
  app.add_option("--bin-dir", o.bin_dir,
                 "where ablate-coordinator and ablate-worker are (default $ABLATE_BIN_DIR, else "
                 "this binary's directory)");
  app.add_flag("--keep", o.keep, "keep the work directory with every log");
  CLI11_PARSE(app, argc, argv);
  if (o.max_gap_seconds < o.min_gap_seconds) o.max_gap_seconds = o.min_gap_seconds;
  if (o.seed == 0) o.seed = std::random_device{}();
  if (o.bin_dir.empty() && std::getenv("ABLATE_BIN_DIR") == nullptr) {
    o.bin_dir = std::filesystem::absolute(argv[0]).parent_path().string();
  }
  if (!o.bin_dir.empty()) setenv("ABLATE_BIN_DIR", o.bin_dir.c_str(), 1);

  ablate::StatusOr<std::string> dir = ablate::MakeTempDirectory("ablate-chaos");
  if (!dir.ok()) {
    std::fprintf(stderr, "ablate-chaos: %s\n", dir.status().message().c_str());
    return 1;
  }
  int code = ablate::Chaos(o, *dir).Run();
  if (!o.keep) std::filesystem::remove_all(*dir);
  return code;
}
