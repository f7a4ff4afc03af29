#include "worker/vector_isa.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>

namespace ablate {

namespace {

// The cap ABLATE_ISA asks for; an unknown value is named on stderr and ignored.
VectorIsa CapFromEnvironment() {
  const char* env = std::getenv("ABLATE_ISA");
  VectorIsa cap = VectorIsa::kAvx512;
  if (env != nullptr && *env != '\0' && !ParseVectorIsa(env, &cap)) {
    std::fprintf(stderr, "warning: ignoring ABLATE_ISA=%s (expected avx512, avx2 or baseline)\n",
                 env);
  }
  return cap;
}

std::atomic<VectorIsa>& Cap() {
  static std::atomic<VectorIsa> cap{CapFromEnvironment()};
  return cap;
}

}  // namespace

VectorIsa CpuVectorIsa() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const VectorIsa isa = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return VectorIsa::kAvx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return VectorIsa::kAvx2;
    return VectorIsa::kBaseline;
  }();
  return isa;
#else
  return VectorIsa::kBaseline;
#endif
}

VectorIsa VectorIsaInUse() { return std::min(CpuVectorIsa(), Cap().load()); }

void SetVectorIsaCap(VectorIsa cap) { Cap().store(cap); }

const char* VectorIsaName(VectorIsa isa) {
  switch (isa) {
    case VectorIsa::kAvx512:
      return "avx512";
    case VectorIsa::kAvx2:
      return "avx2";
    case VectorIsa::kBaseline:
      break;
  }
  return "baseline";
}

bool ParseVectorIsa(const std::string& name, VectorIsa* isa) {
  for (VectorIsa candidate : {VectorIsa::kAvx512, VectorIsa::kAvx2, VectorIsa::kBaseline}) {
    if (name == VectorIsaName(candidate)) {
      *isa = candidate;
      return true;
    }
  }
  return false;
}

}  // namespace ablate
