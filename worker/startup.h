// Settings that the libraries a trainer loads read only when a process
// starts, and that the trainer needs to run at the machine's speed:
//  - OPENBLAS_CORETYPE: OpenBLAS 0.3.21 does not recognise newer CPUs and
//    falls back to its generic kernels (blas.h);
//  - glibc.malloc.hugetlb=1 in GLIBC_TUNABLES: glibc (2.35 and later) then
//    asks the kernel for transparent huge pages for its heap. The recurrent
//    kernels stream every weight once per timestep, 48 MiB at the seed's size,
//    and with 4 KiB pages that is 12,288 pages, six times what the TLB holds.
#ifndef ABLATE_WORKER_STARTUP_H_
#define ABLATE_WORKER_STARTUP_H_

#include <string>

namespace ablate {

// Sets whichever of the two the environment lacks and would help, and
// re-executes the program (same pid, same arguments) so that they take
// effect; returns only when nothing needed doing. Call first thing in main().
// Settings of one's own win: OPENBLAS_CORETYPE set, or GLIBC_TUNABLES naming
// glibc.malloc.hugetlb (=0 turns huge pages off), are left as they are.
void MaybeRestartForSpeed(char** argv);

// The kernel's transparent-huge-page mode: "always", "madvise", "never", or
// "" when the kernel has none.
std::string TransparentHugePageMode();

// Whether this process's heap asks for huge pages: glibc 2.35 or later read
// glibc.malloc.hugetlb=1 at start and the kernel's mode is not "never".
bool HeapOnHugePages();

// This process's anonymous memory on transparent huge pages now, in MiB
// (AnonHugePages in /proc/self/smaps_rollup; 0 where it cannot be read).
double HugePageMib();

}  // namespace ablate

#endif  // ABLATE_WORKER_STARTUP_H_
