#include "worker/train_command.h"

#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "common/spec.h"
#include "data/fetch.h"
#include "worker/blas.h"
#include "worker/cuda_support.h"
#include "worker/startup.h"
#include "worker/trainer.h"
#include "worker/vector_isa.h"

namespace ablate {

namespace {

std::atomic<bool> g_interrupted{false};

void OnSignal(int) { g_interrupted = true; }

std::string FormatDuration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e7) return "--:--";
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
  return fmt::format("{}:{:02}", s / 60, s % 60);
}

std::string FormatRate(double bytes_per_s) {
  if (bytes_per_s >= 1e6) return fmt::format("{:.2f}M", bytes_per_s / 1e6);
  if (bytes_per_s >= 1e3) return fmt::format("{:.1f}k", bytes_per_s / 1e3);
  return fmt::format("{:.0f}", bytes_per_s);
}

// Prints the curve as a table (with a progress bar on a terminal) or JSON lines.
class PrintingListener : public TrainerListener {
 public:
  PrintingListener(bool json, int64_t stop_at)
      : json_(json), stop_at_(stop_at), bar_(!json && isatty(STDERR_FILENO)) {}

  void OnPoint(const CurvePoint& p) override {
    if (json_) {
      nlohmann::json line = {{"step", p.step},
                             {std::string(SplitName(p.split)) + "_bpc", p.bpc},
                             {"bytes_seen", p.bytes_seen},
                             {"wall_time", p.wall_time},
                             {"bytes_per_s", last_.bytes_per_s}};
      std::printf("%s\n", line.dump().c_str());
    } else {
      ClearBar();
      if (!header_printed_) {
        std::printf("%8s  %-5s  %8s  %10s  %9s\n", "step", "split", "bpc", "bytes/s", "time");
        header_printed_ = true;
      }
      std::printf("%8lld  %-5s  %8.4f  %10s  %9s\n", static_cast<long long>(p.step),
                  SplitName(p.split), p.bpc, FormatRate(last_.bytes_per_s).c_str(),
                  FormatDuration(p.wall_time).c_str());
    }
    std::fflush(stdout);
  }

  void OnProgress(const Progress& progress) override {
    last_ = progress;
    if (!bar_) return;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_draw_ < std::chrono::milliseconds(100) &&
        progress.step != progress.steps_total) {
      return;
    }
    last_draw_ = now;
    constexpr int kWidth = 30;
    const int filled =
        static_cast<int>(kWidth * progress.step / std::max<int64_t>(1, progress.steps_total));
    std::string bar(filled, '#');
    bar.resize(kWidth, '.');
    std::fprintf(stderr, "\r[%s] %lld/%lld steps  %s B/s  ETA %s  bpc %.3f\033[K", bar.c_str(),
                 static_cast<long long>(progress.step),
                 static_cast<long long>(progress.steps_total),
                 FormatRate(progress.bytes_per_s).c_str(),
                 FormatDuration(progress.eta_seconds).c_str(), progress.train_bpc);
    drawn_ = true;
  }

  bool ShouldStop() override { return g_interrupted || (stop_at_ > 0 && last_.step >= stop_at_); }

  void ClearBar() {
    if (drawn_) std::fprintf(stderr, "\r\033[K");
    drawn_ = false;
  }

  const Progress& last() const { return last_; }

 private:
  const bool json_;
  const int64_t stop_at_;
  const bool bar_;
  bool drawn_ = false;
  bool header_printed_ = false;
  Progress last_;
  std::chrono::steady_clock::time_point last_draw_;
};

int Fail(const Status& status) {
  std::fprintf(stderr, "ablate-worker train: %s\n", status.message().c_str());
  return 1;
}

StatusOr<TrainerOptions::KernelChoice> ParseKernel(const std::string& kernel) {
  if (kernel == "auto") return TrainerOptions::KernelChoice::kAuto;
  if (kernel == "fused") return TrainerOptions::KernelChoice::kFused;
  if (kernel == "reference") return TrainerOptions::KernelChoice::kReference;
  return Status::InvalidArgument("--kernel: \"" + kernel + "\" is not auto, fused or reference");
}

// The line on stderr that says what trains: model, size, device, kernel.
std::string DescribeRun(const RunConfig& config, const Trainer& t, int threads) {
  const ModelConfig& m = config.model;
  std::string kernel = KernelName(t.kernel());
  if (t.kernel() == Kernel::kFused) {
    kernel = fmt::format("fused ({})", VectorIsaName(VectorIsaInUse()));
  } else if (t.device().is_cuda()) {
    kernel += fmt::format(" ({})", PrecisionName(config.train.precision));
  }
  const std::string blas = BlasCoreName();
  return fmt::format("{}{} {} H={} V={}: {} parameters; {}, {} threads, {} kernel{}{}{}",
                     CellName(m.cell), m.layer_norm ? "+ln" : "", InitName(m.init), m.hidden,
                     m.vocab, t.model()->parameter_count(), DescribeDevice(t.device()), threads,
                     kernel, t.step() > 0 ? fmt::format(", resumed at step {}", t.step()) : "",
                     blas.empty() ? "" : ", OpenBLAS " + blas,
                     HeapOnHugePages() ? ", heap on huge pages" : "");
}

// The run's end: one JSON line, or a sentence when it finished. Returns the
// exit code.
int PrintSummary(const TrainSummary& summary, const PrintingListener& listener, const Trainer& t,
                 bool json) {
  const char* outcome = summary.outcome == TrainSummary::Outcome::kFinished  ? "finished"
                        : summary.outcome == TrainSummary::Outcome::kStopped ? "stopped"
                                                                             : "diverged";
  if (json) {
    nlohmann::json final = {{"final", true},
                            {"outcome", outcome},
                            {"step", summary.step},
                            {"train_bpc", summary.final_train_bpc},
                            {"valid_bpc", summary.final_valid_bpc},
                            {"wall_time", summary.wall_time},
                            {"bytes_per_s", listener.last().bytes_per_s},
                            {"parameters", t.model()->parameter_count()}};
    if (summary.outcome == TrainSummary::Outcome::kFinished) final["test_bpc"] = summary.test_bpc;
    if (summary.outcome == TrainSummary::Outcome::kDiverged) final["error"] = summary.message;
    std::printf("%s\n", final.dump().c_str());
  } else if (summary.outcome == TrainSummary::Outcome::kFinished) {
    std::printf("finished %lld steps in %s: train %.4f, valid %.4f, test %.4f bpc\n",
                static_cast<long long>(summary.step), FormatDuration(summary.wall_time).c_str(),
                summary.final_train_bpc, summary.final_valid_bpc, summary.test_bpc);
  }
  if (summary.outcome == TrainSummary::Outcome::kDiverged) {
    std::fprintf(stderr, "ablate-worker train: %s\n", summary.message.c_str());
    return 3;
  }
  return 0;
}

}  // namespace

int RunTrainCommand(const TrainCommandOptions& options) {
  if (options.format != "table" && options.format != "json") {
    return Fail(
        Status::InvalidArgument("--format: \"" + options.format + "\" is not table or json"));
  }
  TrainerOptions trainer_options;
  trainer_options.device = options.device;
  auto kernel = ParseKernel(options.kernel);
  if (!kernel.ok()) return Fail(kernel.status());
  trainer_options.kernel = *kernel;
  trainer_options.checkpoint_path = options.checkpoint_path;

  auto config = LoadRunConfigFile(options.config_path);
  if (!config.ok()) return Fail(config.status());
  const int threads = ConfigureThreads(options.threads);
  auto corpus = ResolveCorpus(config->data, options.data_dir);
  if (!corpus.ok()) return Fail(corpus.status());
  trainer_options.corpus_path = *corpus;
  auto trainer = Trainer::Create(*config, trainer_options);
  if (!trainer.ok()) return Fail(trainer.status());
  Trainer& t = **trainer;
  if (!options.resume_path.empty()) {
    Status restored = t.RestoreCheckpoint(options.resume_path);
    if (!restored.ok()) return Fail(restored);
  }

  std::fprintf(stderr, "%s\n", DescribeRun(*config, t, threads).c_str());
  if (t.device().is_cpu()) {
    const std::string warning = SlowBlasWarning(MeasureMatmulGflops(), threads);
    if (!warning.empty()) std::fprintf(stderr, "%s\n", warning.c_str());
  }

  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  PrintingListener listener(options.format == "json", options.stop_at);
  auto summary = t.Run(&listener);
  listener.ClearBar();
  if (!summary.ok()) return Fail(summary.status());
  if (summary->outcome == TrainSummary::Outcome::kStopped && !options.checkpoint_path.empty()) {
    Status saved = t.SaveCheckpoint(options.checkpoint_path);
    if (!saved.ok()) return Fail(saved);
    std::fprintf(stderr, "stopped at step %lld; checkpoint in %s\n",
                 static_cast<long long>(summary->step), options.checkpoint_path.c_str());
  }
  return PrintSummary(*summary, listener, t, options.format == "json");
}

}  // namespace ablate
