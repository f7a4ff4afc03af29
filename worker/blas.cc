#include "worker/blas.h"

#include <dlfcn.h>

#include <chrono>
#include <cstdio>

#include <torch/torch.h>

namespace ablate {

namespace {

// A rate per thread below this is not an optimised BLAS: the reference BLAS
// reaches ~1.6 GFLOP/s per core, OpenBLAS 20-100.
constexpr double kSlowGflopsPerThread = 5.0;

}  // namespace

std::string BlasCoreName() {
  using CoreNameFn = char* (*)();
  auto fn = reinterpret_cast<CoreNameFn>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  if (fn == nullptr) return "";
  const char* name = fn();
  return name ? name : "";
}

std::string FasterBlasCoreType() {
#if defined(__x86_64__)
  const std::string core = BlasCoreName();
  if (core != "Prescott" && core != "Core2" && core != "Nehalem" && core != "Sandybridge") return "";
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
    return "SkylakeX";
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
  return "";
}

double MeasureMatmulGflops(int n, int reps) {
  torch::NoGradGuard no_grad;
  torch::Tensor a = torch::randn({n, n});
  torch::Tensor b = torch::randn({n, n});
  torch::Tensor c = torch::empty({n, n});
  at::mm_out(c, a, b);
  double best = 1e30;
  for (int i = 0; i < reps; ++i) {
    const auto start = std::chrono::steady_clock::now();
    at::mm_out(c, a, b);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return 2.0 * n * n * n / best / 1e9;
}

std::string SlowBlasWarning(double gflops, int threads) {
  if (gflops >= kSlowGflopsPerThread * std::max(1, threads)) return "";
  char line[512];
  std::snprintf(line, sizeof(line),
                "warning: float32 matmul runs at %.1f GFLOP/s on %d thread(s), far below an "
                "optimised BLAS; LibTorch is calling a slow libblas.so.3 (BLAS core: %s). Install "
                "libopenblas0-openmp (scripts/setup.sh does) or select it with "
                "update-alternatives --config libblas.so.3-x86_64-linux-gnu",
                gflops, threads, BlasCoreName().empty() ? "not OpenBLAS" : BlasCoreName().c_str());
  return line;
}

}  // namespace ablate
