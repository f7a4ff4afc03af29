// gemm_bench: the recurrent matmul shapes alone, PackedGemm's kernels (AVX-512
// and AVX2, those the CPU has) against LibTorch's BLAS (at::mm_out) on the same
// inputs, alternating so that all see the same machine load.
//
//   gemm_bench --reps 20
//
// Shapes are the seed's (H 2000, B 100: GRU w_h [H, 2H], w_hc [H, H], and
// their transposes for the backward pass), the small test config's (H 128,
// B 32), and the 2000x2000x2000 product whose rate trainer_bench divides by,
// so that the kernel's rate on the seed's shapes can be read against it.
// Prints the median GFLOP/s of each and PackedGemm's one-off packing time.
// To compare with OpenBLAS's AVX2 kernels on an AVX-512 machine, run it
// with OPENBLAS_CORETYPE=Haswell.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "worker/blas.h"
#include "worker/packed_gemm.h"
#include "worker/startup.h"
#include "worker/trainer.h"
#include "worker/vector_isa.h"

namespace {

struct Shape {
  int64_t m, k, n;
  bool transposed;  // w is a transposed view, as in the backward pass
};

double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  ablate::MaybeRestartForSpeed(argv);
  CLI::App app{"gemm_bench: recurrent matmul shapes, PackedGemm vs BLAS"};
  int reps = 20, threads = 0;
  std::string format = "table";
  // Fewer calls than PackedGemm::kMinCallsToPack would time LibTorch on both sides.
  app.add_option("--reps", reps, "Timed calls per shape and path")
      ->check(CLI::Range(ablate::PackedGemm::kMinCallsToPack, int64_t{1} << 20));
  app.add_option("--threads", threads, "Intra-op threads (default: all cores)");
  app.add_option("--format", format, "table or json");
  CLI11_PARSE(app, argc, argv);
  const int used_threads = ablate::ConfigureThreads(threads);
  torch::NoGradGuard no_grad;

  const std::vector<Shape> shapes = {{100, 2000, 4000, false}, {100, 2000, 2000, false},
                                     {100, 4000, 2000, true},  {100, 2000, 2000, true},
                                     {32, 128, 384, false},    {32, 128, 128, false},
                                     {32, 384, 128, true},     {2000, 2000, 2000, false}};
  nlohmann::json results = nlohmann::json::array();
  for (const Shape& s : shapes) {
    torch::manual_seed(1);
    const torch::Tensor a = torch::randn({s.m, s.k});
    const torch::Tensor w = s.transposed ? torch::randn({s.n, s.k}).t() : torch::randn({s.k, s.n});
    torch::Tensor c = torch::empty({s.m, s.n});
    // PackedGemm's kernels, widest first.
    std::vector<ablate::VectorIsa> isas;
    for (ablate::VectorIsa isa : {ablate::VectorIsa::kAvx512, ablate::VectorIsa::kAvx2}) {
      if (ablate::CpuVectorIsa() >= isa) isas.push_back(isa);
    }
    const ablate::VectorIsa isa_in_use = ablate::VectorIsaInUse();  // ABLATE_ISA's cap, if any
    std::vector<std::unique_ptr<ablate::PackedGemm>> gemms;
    std::vector<double> pack_seconds;
    for (ablate::VectorIsa isa : isas) {
      ablate::SetVectorIsaCap(isa);
      const auto start = std::chrono::steady_clock::now();
      gemms.push_back(std::make_unique<ablate::PackedGemm>(w, reps));
      pack_seconds.push_back(Seconds(start));
    }
    ablate::SetVectorIsaCap(isa_in_use);
    // Small shapes take microseconds: time batches of calls.
    const int64_t batch = std::max<int64_t>(1, 20'000'000 / (s.m * s.k * s.n));
    std::vector<double> blas;
    std::vector<std::vector<double>> packed(gemms.size());
    for (int i = 0; i < reps + 1; ++i) {
      auto start = std::chrono::steady_clock::now();
      for (int64_t j = 0; j < batch; ++j) at::mm_out(c, a, w);
      const double blas_s = Seconds(start) / batch;
      if (i > 0) blas.push_back(blas_s);  // the first round warms up
      for (size_t g = 0; g < gemms.size(); ++g) {
        start = std::chrono::steady_clock::now();
        for (int64_t j = 0; j < batch; ++j) gemms[g]->Run(a, 0.0, &c);
        const double packed_s = Seconds(start) / batch;
        if (i > 0) packed[g].push_back(packed_s);
      }
    }
    const double flops = 2.0 * s.m * s.k * s.n;
    nlohmann::json kernels = nlohmann::json::object();
    for (size_t g = 0; g < gemms.size(); ++g) {
      kernels[ablate::VectorIsaName(isas[g])] = {{"gflops", flops / Median(packed[g]) / 1e9},
                                                 {"ran", ablate::VectorIsaName(gemms[g]->isa())},
                                                 {"pack_ms", pack_seconds[g] * 1e3}};
    }
    results.push_back({{"m", s.m},
                       {"k", s.k},
                       {"n", s.n},
                       {"transposed", s.transposed},
                       {"blas_gflops", flops / Median(blas) / 1e9},
                       {"kernels", kernels}});
  }
  if (format == "json") {
    std::printf("%s\n", nlohmann::json{{"threads", used_threads},
                                       {"blas", ablate::BlasCoreName()},
                                       {"shapes", results}}
                            .dump()
                            .c_str());
    return 0;
  }
  std::printf("%d threads, BLAS %s; median GFLOP/s of %d calls (pack ms)\n", used_threads,
              ablate::BlasCoreName().c_str(), reps);
  std::printf("  %-22s %10s", "m x k x n", "BLAS");
  for (const auto& [isa, unused] : results[0]["kernels"].items()) std::printf(" %18s", isa.c_str());
  std::printf("\n");
  for (const auto& r : results) {
    char name[64];
    std::snprintf(name, sizeof(name), "%lldx%lldx%lld%s", (long long)r["m"].get<int64_t>(),
                  (long long)r["k"].get<int64_t>(), (long long)r["n"].get<int64_t>(),
                  r["transposed"].get<bool>() ? " (w^T)" : "");
    std::printf("  %-22s %10.1f", name, r["blas_gflops"].get<double>());
    for (const auto& [isa, k] : r["kernels"].items()) {
      std::printf(" %10.1f (%5.2f)", k["gflops"].get<double>(), k["pack_ms"].get<double>());
    }
    std::printf("\n");
  }
  return 0;
}
