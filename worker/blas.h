// Keeping LibTorch's CPU matmuls at the machine's speed. Debian's LibTorch
// calls whatever libblas.so.3 is installed; two things make it slow:
//  - the reference BLAS (about 40x slower than OpenBLAS), and
//  - OpenBLAS 0.3.21 failing to recognise a newer CPU and falling back to its
//    generic "Prescott" kernels (seen on Xeons with AVX-512: 4-6x slower).
#ifndef ABLATE_WORKER_BLAS_H_
#define ABLATE_WORKER_BLAS_H_

#include <string>

namespace ablate {

// OpenBLAS's name for the kernels it chose ("SkylakeX", "Haswell",
// "Prescott", ...), or "" when the BLAS in use is not OpenBLAS.
std::string BlasCoreName();

// When OpenBLAS picked generic kernels on a CPU that supports AVX-512 or
// AVX2, the OPENBLAS_CORETYPE that selects the matching ones ("SkylakeX" or
// "Haswell"); "" when its choice is fine. OpenBLAS reads it only when it
// loads: startup.h restarts the program with it.
std::string FasterBlasCoreType();

// Measured float32 matmul rate (GFLOP/s) of an n x n x n product on the CPU
// with the current thread count: the best of `reps` runs after a warm-up.
double MeasureMatmulGflops(int n = 512, int reps = 5);

// A one-line warning when the CPU matmul rate is below what any optimised
// BLAS reaches, naming the measured rate and the fix; "" when it is fine.
std::string SlowBlasWarning(double gflops, int threads);

}  // namespace ablate

#endif  // ABLATE_WORKER_BLAS_H_
