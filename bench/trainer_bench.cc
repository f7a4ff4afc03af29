// trainer_bench: speed of one training step of the seed's model, against the
// machine's own float32 matmul rate measured in the same run.
//
//   trainer_bench --cell gru --layer-norm --hidden 2000 --batch 100 --seq 200
//
// With --gemm blas,packed it times the recurrent matmuls on LibTorch's BLAS
// and then on PackedGemm in the same process, one result each; --row-groups
// always,never likewise the time loop split by rows among the threads or
// shared; --isa avx512,avx2,baseline the trainer's own kernels capped at each
// vector width; --schedule old,default PackedGemm's kernels walking w the
// old way (slices 256 deep, the whole next slice prefetched by the first
// tile) and as they do now. With --alternate the
// choices switch step by step instead, for an A/B comparison on a machine
// whose speed drifts.
//
// Prints step time, bytes/s, achieved GFLOP/s (6 flops per multiply-add of the
// recurrent and output matmuls per symbol: 2 forward, 4 backward) and that
// rate's share of the measured matmul rate, and peak memory.
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "data/text8.h"
#include "worker/blas.h"
#include "worker/packed_gemm.h"
#include "worker/recurrence_fused.h"
#include "worker/startup.h"
#include "worker/trainer.h"
#include "worker/vector_isa.h"

namespace {

// Real English for the corpus: speed does not depend on the text, but the
// project never trains on random bytes.
constexpr const char* kText =
    "all experiments use a single recurrent layer of two thousand units a batch size of one "
    "hundred sequences of length two hundred bytes and the adam optimizer with a fixed learning "
    "rate layer norm both speeds up training and results in significantly better final "
    "performance ";

double PeakMemoryMiB() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024.0;
}

// The mean float32 matmul rate (n x n products, GFLOP/s) over at least
// `seconds` of back-to-back products: a rate over as long as a training step,
// not the best of a few bursts.
double MatmulRateOver(int n, double seconds) {
  torch::NoGradGuard no_grad;
  const torch::Tensor a = torch::randn({n, n}), b = torch::randn({n, n});
  torch::Tensor c = torch::empty({n, n});
  at::mm_out(c, a, b);
  const auto start = std::chrono::steady_clock::now();
  int64_t products = 0;
  double elapsed = 0;
  do {
    at::mm_out(c, a, b);
    ++products;
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  } while (elapsed < seconds);
  return 2.0 * n * n * n * products / elapsed / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  ablate::MaybeRestartForSpeed(argv);
  CLI::App app{"trainer_bench: training step speed vs the machine's matmul rate"};
  std::string cell = "gru", init = "xavier", device = "cpu", kernel = "auto", format = "table";
  bool layer_norm = false;
  int64_t hidden = 128, batch = 32, seq = 100, vocab = 256;
  int steps = 10, warmup = 2, threads = 0, matmul_n = 2000;
  bool paired = false;
  app.add_option("--cell", cell, "lstm, gru or mgu");
  app.add_flag("--layer-norm", layer_norm, "Layer norm on");
  app.add_option("--hidden", hidden);
  app.add_option("--batch", batch);
  app.add_option("--seq", seq);
  app.add_option("--vocab", vocab, "256 or 27");
  app.add_option("--steps", steps, "Timed steps")->check(CLI::PositiveNumber);
  app.add_option("--warmup", warmup, "Untimed steps first");
  app.add_option("--threads", threads, "Intra-op threads (default: all cores)");
  app.add_option("--device", device, "cpu, cuda, cuda:N");
  app.add_option("--kernel", kernel, "auto, fused, reference, cuda or cuda-on-cpu")
      ->check(CLI::IsMember({"auto", "fused", "reference", "cuda", "cuda-on-cpu"}));
  std::string precision = "tf32";
  app.add_option("--precision", precision, "Recurrent products on a GPU: fp32, tf32 or bf16")
      ->check(CLI::IsMember({"fp32", "tf32", "bf16"}));
  bool no_graphs = false;
  app.add_flag("--no-graphs", no_graphs, "With the cuda kernel, launch every step's work eagerly");
  app.add_option("--matmul-n", matmul_n, "Size of the square matmul that measures the BLAS rate");
  app.add_flag("--paired", paired,
               "Also measure the mean matmul rate for as long as a step before every timed step "
               "and after the last (doubles the run; for steps of seconds: the measurement "
               "leaves the caches cold for a short step)");
  app.add_option("--format", format, "table or json");
  std::vector<std::string> gemms = {"auto"};
  app.add_option("--gemm", gemms,
                 "Recurrent matmuls on packed (PackedGemm), blas or auto (ABLATE_GEMM decides); "
                 "a list runs each in turn")
      ->delimiter(',')
      ->check(CLI::IsMember({"auto", "packed", "blas"}));
  std::vector<std::string> row_groups = {"auto"};
  app.add_option("--row-groups", row_groups,
                 "Time loops with a group of batch rows per thread (always), shared among the "
                 "threads (never) or as the trainer decides (auto); a list runs each in turn, "
                 "after every --gemm choice")
      ->delimiter(',')
      ->check(CLI::IsMember({"auto", "always", "never"}));
  std::vector<std::string> isas = {"auto"};
  app.add_option("--isa", isas,
                 "Cap the vector instructions of the trainer's own kernels at avx512, avx2 or "
                 "baseline, or not (auto: ABLATE_ISA decides); with OPENBLAS_CORETYPE=Haswell an "
                 "AVX-512 machine then runs what an AVX2 machine runs. A list runs each in turn, "
                 "after every --row-groups choice")
      ->delimiter(',')
      ->check(CLI::IsMember({"auto", "avx512", "avx2", "baseline"}));
  std::vector<std::string> schedules = {"default"};
  app.add_option("--schedule", schedules,
                 "How PackedGemm's kernels walk w: default, or old (slices 256 deep, the whole "
                 "next slice prefetched by the first tile). A list runs each in turn, after "
                 "every --isa choice")
      ->delimiter(',')
      ->check(CLI::IsMember({"default", "old"}));
  bool alternate = false;
  app.add_flag(
      "--alternate", alternate,
      "With several --gemm, --row-groups, --isa or --schedule choices: switch between them "
      "step by step on one trainer (A B B A A B ...; --steps each) and print each one's "
      "median step time and its ratio to the first's, so that a machine's drift falls on all "
      "of them alike");
  CLI11_PARSE(app, argc, argv);
  struct Variant {
    std::string gemm, groups, isa, schedule;
  };
  std::vector<Variant> variants;
  for (const std::string& gemm : gemms) {
    for (const std::string& groups : row_groups) {
      for (const std::string& isa : isas) {
        for (const std::string& schedule : schedules) {
          variants.push_back({gemm, groups, isa, schedule});
        }
      }
    }
  }
  const int64_t rounds = static_cast<int64_t>(variants.size());
  const ablate::VectorIsa isa_in_use = ablate::VectorIsaInUse();  // ABLATE_ISA's cap, if any
  auto apply = [&](const Variant& variant) {
    if (variant.gemm != "auto") ablate::SetPackedGemmEnabled(variant.gemm == "packed");
    ablate::SetRowGroups(variant.groups == "always"  ? ablate::RowGroups::kAlways
                         : variant.groups == "never" ? ablate::RowGroups::kNever
                                                     : ablate::RowGroups::kAuto);
    ablate::VectorIsa cap = isa_in_use;
    if (variant.isa != "auto") ablate::ParseVectorIsa(variant.isa, &cap);
    ablate::SetVectorIsaCap(cap);
    ablate::packed_gemm::Schedule schedule;
    if (variant.schedule == "old") {
      schedule.depth_block = 256;
      schedule.prefetch = ablate::packed_gemm::Prefetch::kFirstTile;
    }
    ablate::SetPackedGemmSchedule(schedule);
  };

  const int used_threads = ablate::ConfigureThreads(threads);
  ablate::RunConfig config;
  auto parsed_cell = ablate::ParseCell(cell);
  auto parsed_init = ablate::ParseInit(init);
  if (!parsed_cell.ok()) {
    std::fprintf(stderr, "%s\n", parsed_cell.status().message().c_str());
    return 1;
  }
  config.model.cell = *parsed_cell;
  config.model.init = *parsed_init;
  config.model.layer_norm = layer_norm;
  config.model.hidden = hidden;
  config.model.vocab = vocab;
  config.train.batch = batch;
  config.train.seq = seq;
  config.train.steps = (warmup + steps) * rounds;
  config.train.log_every = 1'000'000'000;
  config.train.precision = *ablate::ParsePrecision(precision);

  // A corpus a little longer than the steps need.
  const std::string corpus = (std::filesystem::temp_directory_path() /
                              ("ablate-bench-" + std::to_string(getpid()) + ".txt"))
                                 .string();
  {
    const std::string clean = ablate::text8::Clean(kText);
    const int64_t needed = (batch * (seq + 1) * ((warmup + steps) * rounds + 1)) * 10 / 9 + 1000;
    std::ofstream out(corpus, std::ios::binary);
    for (int64_t written = 0; written < needed; written += clean.size()) out << clean;
  }
  config.data.path = corpus;
  ablate::TrainerOptions options;
  options.device = device;
  using KernelChoice = ablate::TrainerOptions::KernelChoice;
  if (kernel == "fused") options.kernel = KernelChoice::kFused;
  if (kernel == "reference") options.kernel = KernelChoice::kReference;
  if (kernel == "cuda") options.kernel = KernelChoice::kCuda;
  if (kernel == "cuda-on-cpu") options.kernel = KernelChoice::kCudaOnCpu;
  options.cuda_graphs = !no_graphs;
  auto trainer = ablate::Trainer::Create(config, options);
  std::filesystem::remove(corpus);
  if (!trainer.ok()) {
    std::fprintf(stderr, "%s\n", trainer.status().message().c_str());
    return 1;
  }
  ablate::Trainer& t = **trainer;
  const bool cuda = t.device().is_cuda();
  auto sync = [&] {
    if (cuda) t.model()->flat_params().sum().item<float>();  // waits for the queue
  };

  if (alternate) {
    // Warm-up steps for every variant, then rounds of all variants, in
    // reverse order every other round, so none always runs first.
    for (const auto& variant : variants) {
      apply(variant);
      for (int i = 0; i < warmup; ++i) t.TrainStep(), sync();
    }
    std::vector<std::vector<double>> times(variants.size());
    for (int i = 0; i < steps; ++i) {
      for (size_t j = 0; j < variants.size(); ++j) {
        const size_t v = i % 2 == 0 ? j : variants.size() - 1 - j;
        apply(variants[v]);
        const auto start = std::chrono::steady_clock::now();
        t.TrainStep();
        sync();
        times[v].push_back(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      }
    }
    nlohmann::json rows = nlohmann::json::array();
    double first = 0;
    for (size_t v = 0; v < variants.size(); ++v) {
      std::vector<double> sorted = times[v];
      std::sort(sorted.begin(), sorted.end());
      const double median = sorted[sorted.size() / 2];
      if (v == 0) first = median;
      rows.push_back({{"gemm", variants[v].gemm},
                      {"row_groups", variants[v].groups},
                      {"isa", variants[v].isa},
                      {"schedule", variants[v].schedule},
                      {"step_seconds", median},
                      {"step_seconds_min", sorted.front()},
                      {"step_seconds_each", times[v]},
                      {"relative_to_first", median / first}});
    }
    if (format == "json") {
      std::printf("%s\n", nlohmann::json{{"cell", cell},
                                         {"layer_norm", layer_norm},
                                         {"hidden", hidden},
                                         {"batch", batch},
                                         {"seq", seq},
                                         {"threads", used_threads},
                                         {"variants", rows}}
                              .dump()
                              .c_str());
      return 0;
    }
    std::printf("%s%s H=%lld B=%lld T=%lld, %d threads, %d steps each, alternating\n", cell.c_str(),
                layer_norm ? "+ln" : "", (long long)hidden, (long long)batch, (long long)seq,
                used_threads, steps);
    for (const auto& row : rows) {
      std::printf(
          "  gemm %-6s row groups %-6s isa %-8s schedule %-7s  median %.4f s (min %.4f)  %.3fx the "
          "first\n",
          row["gemm"].get<std::string>().c_str(), row["row_groups"].get<std::string>().c_str(),
          row["isa"].get<std::string>().c_str(), row["schedule"].get<std::string>().c_str(),
          row["step_seconds"].get<double>(), row["step_seconds_min"].get<double>(),
          row["relative_to_first"].get<double>());
    }
    return 0;
  }

  // The machine's rate drifts on a shared VM (110 to 324 GFLOP/s in one
  // day, minutes apart), so on the CPU the best of a few products is
  // measured before and after the timed steps: the best rate seen gives a
  // conservative share that errs low. With --paired the mean rate over as
  // long as a step is also measured before every timed step and after the
  // last, and each step's share is taken against the mean of the two rates
  // around it (paired).
  double matmul_gflops = 0;
  for (const auto& variant : variants) {
    const std::string& groups = variant.groups;
    apply(variant);
    const char* gemm_used = ablate::PackedGemmEnabled() ? "packed" : "blas";
    double last_seconds = 0;
    for (int i = 0; i < warmup; ++i) {
      const auto start = std::chrono::steady_clock::now();
      t.TrainStep();
      sync();
      last_seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
    std::vector<double> times, matmul_rates, paired_rates;
    torch::Tensor last;
    for (int i = 0; i < steps; ++i) {
      if (!cuda && i == 0) matmul_rates.push_back(ablate::MeasureMatmulGflops(matmul_n, 3));
      if (!cuda && paired) paired_rates.push_back(MatmulRateOver(matmul_n, last_seconds));
      const auto start = std::chrono::steady_clock::now();
      last = t.TrainStep();
      sync();
      last_seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      times.push_back(last_seconds);
    }
    if (!cuda && paired) paired_rates.push_back(MatmulRateOver(matmul_n, last_seconds));
    if (!cuda) matmul_rates.push_back(ablate::MeasureMatmulGflops(matmul_n, 3));
    const double bytes_per_step = double(batch) * seq;
    const double flops = 6.0 * t.model()->ForwardMacsPerSymbol() * bytes_per_step;
    std::vector<double> paired_shares;
    for (size_t i = 0; i + 1 < paired_rates.size(); ++i) {
      paired_shares.push_back(flops / times[i] / 1e9 /
                              ((paired_rates[i] + paired_rates[i + 1]) / 2));
    }
    for (double rate : matmul_rates) matmul_gflops = std::max(matmul_gflops, rate);
    std::sort(paired_shares.begin(), paired_shares.end());
    const double paired_share = paired_shares.empty() ? 0 : paired_shares[paired_shares.size() / 2];
    std::sort(times.begin(), times.end());
    const double median = times[times.size() / 2];
    const double gflops = flops / median / 1e9;
    nlohmann::json result = {
        {"cell", cell},
        {"layer_norm", layer_norm},
        {"hidden", hidden},
        {"batch", batch},
        {"seq", seq},
        {"vocab", vocab},
        {"device", ablate::DescribeDevice(t.device())},
        {"threads", used_threads},
        {"kernel", ablate::KernelName(t.kernel())},
        {"precision", cuda ? precision : "fp32"},
        {"graphs", cuda && t.kernel() == ablate::Kernel::kCuda && !no_graphs},
        {"peak_gpu_mib", cuda ? t.PeakDeviceBytes() / 1048576.0 : 0.0},
        {"blas", ablate::BlasCoreName()},
        {"gemm", gemm_used},
        {"isa", ablate::VectorIsaName(ablate::VectorIsaInUse())},
        {"row_groups", groups},
        {"schedule", variant.schedule},
        {"parameters", t.model()->parameter_count()},
        {"step_seconds", median},
        {"step_seconds_min", times.front()},
        {"bytes_per_s", bytes_per_step / median},
        {"gflops", gflops},
        {"matmul_gflops", matmul_gflops},
        {"matmul_share", matmul_gflops > 0 ? gflops / matmul_gflops : 0},
        {"matmul_gflops_each", matmul_rates},
        {"paired_matmul_gflops", paired_rates},
        {"paired_share", paired_share},
        {"paired_share_min", paired_shares.empty() ? 0 : paired_shares.front()},
        {"paired_share_max", paired_shares.empty() ? 0 : paired_shares.back()},
        {"peak_memory_mib", PeakMemoryMiB()},
        {"heap_on_huge_pages", ablate::HeapOnHugePages()},
        {"huge_page_mib", ablate::HugePageMib()},
        {"thp_mode", ablate::TransparentHugePageMode()},
        {"last_loss", last.item<double>()},
    };
    if (format == "json") {
      std::printf("%s\n", result.dump().c_str());
      continue;
    }
    std::printf(
        "%s%s H=%lld B=%lld T=%lld V=%lld on %s (%d threads, %s kernel, BLAS %s, %s GEMM, "
        "%s vectors, row groups %s, schedule %s)\n",
        cell.c_str(), layer_norm ? "+ln" : "", (long long)hidden, (long long)batch, (long long)seq,
        (long long)vocab, t.device().str().c_str(), used_threads,
        result["kernel"].get<std::string>().c_str(), ablate::BlasCoreName().c_str(), gemm_used,
        ablate::VectorIsaName(ablate::VectorIsaInUse()), groups.c_str(), variant.schedule.c_str());
    std::printf("  step      %.4f s (median of %d, min %.4f)\n", median, steps, times.front());
    std::printf("  bytes/s   %.0f\n", bytes_per_step / median);
    std::printf("  achieved  %.1f GFLOP/s\n", gflops);
    if (matmul_gflops > 0) {
      std::printf(
          "  matmul    %.1f GFLOP/s best (%dx%d float32 on the same threads): %.0f%% of it\n",
          matmul_gflops, matmul_n, matmul_n, 100 * gflops / matmul_gflops);
    }
    if (!paired_shares.empty()) {
      std::printf(
          "  paired    %.0f%% median share of the mean matmul rate over as long as a step, "
          "before and after it (%.0f%% to %.0f%%)\n",
          100 * paired_share, 100 * paired_shares.front(), 100 * paired_shares.back());
    }
    std::printf("  memory    %.0f MiB peak RSS, %.0f MiB on huge pages now (heap %s them)\n",
                PeakMemoryMiB(), ablate::HugePageMib(),
                ablate::HeapOnHugePages() ? "asks for" : "does not ask for");
    if (cuda) {
      std::printf("  GPU       %s, %s, %s; %.0f MiB peak in tensors\n",
                  ablate::DescribeDevice(t.device()).c_str(), precision.c_str(),
                  result["graphs"].get<bool>() ? "CUDA graphs" : "eager launches",
                  result["peak_gpu_mib"].get<double>());
    }
  }
  return 0;
}
