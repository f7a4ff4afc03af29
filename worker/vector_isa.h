// Which vector instructions the trainer's own CPU kernels use (PackedGemm's
// products and the fused pointwise passes): the widest the CPU has, or
// narrower when a test, a benchmark or the ABLATE_ISA environment variable
// caps them. A cap lets a machine with AVX-512 run, test and time exactly the
// code an AVX2-only machine runs.
#ifndef ABLATE_WORKER_VECTOR_ISA_H_
#define ABLATE_WORKER_VECTOR_ISA_H_

#include <string>

namespace ablate {

// In order of width. kAvx2 means AVX2 with FMA (Haswell and Zen onwards);
// kAvx512 means AVX-512F.
enum class VectorIsa { kBaseline = 0, kAvx2 = 1, kAvx512 = 2 };

// What this CPU supports.
VectorIsa CpuVectorIsa();

// The kernels' ISA: the CPU's, capped by SetVectorIsaCap (default: the value
// of ABLATE_ISA, or no cap). Read whenever a kernel is chosen.
VectorIsa VectorIsaInUse();

// Caps the ISA (kAvx512: no cap). Tests and benchmarks set it between passes.
void SetVectorIsaCap(VectorIsa cap);

// "avx512", "avx2", "baseline".
const char* VectorIsaName(VectorIsa isa);

// Parses VectorIsaName's names; false for anything else.
bool ParseVectorIsa(const std::string& name, VectorIsa* isa);

}  // namespace ablate

#endif  // ABLATE_WORKER_VECTOR_ISA_H_
