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

// When OpenBLAS picked generic kernels on a CPU that supports AVX-512 or AVX2
// and OPENBLAS_CORETYPE is unset, sets it to the matching kernels and
// re-executes the program (same pid, same arguments), because OpenBLAS reads it
// only when it loads. Returns only when nothing needed doing. Call first thing
// in main(); setting OPENBLAS_CORETYPE yourself turns it off.
void MaybeReexecForFasterBlas(char** argv);

// Measured float32 matmul rate (GFLOP/s) of an n x n x n product on the CPU
// with the current thread count: the best of `reps` runs after a warm-up.
double MeasureMatmulGflops(int n = 512, int reps = 5);

// A one-line warning when the CPU matmul rate is below what any optimised
// BLAS reaches, naming the measured rate and the fix; "" when it is fine.
std::string SlowBlasWarning(double gflops, int threads);

}  // namespace ablate

#endif  // ABLATE_WORKER_BLAS_H_
