// Settings that the libraries a trainer loads read only when a process
// starts, and that the trainer needs to run at the machine's speed:
//  - OPENBLAS_CORETYPE: OpenBLAS 0.3.21 does not recognise newer CPUs and
//    falls back to its generic kernels (blas.h);
//  - glibc.malloc.hugetlb=1 in GLIBC_TUNABLES: where the kernel hands out
//    transparent huge pages only on request ("madvise" mode), glibc (2.35
//    and later) then requests them for its heap. The recurrent kernels stream
//    every weight once per timestep, 48 MiB at the seed's size, and on 4 KiB
//    pages that is about six times what the TLB covers. In "always" mode the
//    kernel backs the heap with huge pages without being asked.
#ifndef ABLATE_WORKER_STARTUP_H_
#define ABLATE_WORKER_STARTUP_H_

#include <string>

namespace ablate {

// Sets whichever of the two the environment lacks and would help, and
// re-executes the program (same pid, same arguments) so that they take
// effect; returns only when nothing needed doing, or when the re-exec failed
// (with a warning on stderr and the environment as it was). Call it before
// any work, in the commands that train. Settings of one's own win:
// OPENBLAS_CORETYPE set, or GLIBC_TUNABLES naming glibc.malloc.hugetlb
// (=0 keeps the heap on 4 KiB pages in "madvise" mode), are left as they are.
void MaybeRestartForSpeed(char** argv);

// The kernel's transparent-huge-page mode: "always", "madvise", "never", or
// "" when the kernel has none.
std::string TransparentHugePageMode();

// Whether this process's heap is backed by huge pages: the kernel's mode is
// "always", or it is "madvise" and glibc 2.35 or later read
// glibc.malloc.hugetlb=1 when the process started. (An allocator other than
// glibc's, preloaded, is not seen.)
bool HeapOnHugePages();

// This process's anonymous memory on transparent huge pages now, in MiB
// (AnonHugePages in /proc/self/smaps_rollup; 0 where it cannot be read).
double HugePageMib();

// The value a GLIBC_TUNABLES string (null: unset) gives
// glibc.malloc.hugetlb, or "" when it names none; the last one counts, as in
// glibc.
std::string HugetlbTunable(const char* tunables);

// GLIBC_TUNABLES (null: unset) with glibc.malloc.hugetlb=1 added after what
// is there.
std::string TunablesWithHugetlb(const char* tunables);

}  // namespace ablate

#endif  // ABLATE_WORKER_STARTUP_H_
