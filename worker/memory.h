// How much memory this process may still take: what the trainer checks a
// configuration against before it allocates anything, so that a model far
// too large for the machine is refused with the settings that make it so
// rather than dying in the allocator.
#ifndef ABLATE_WORKER_MEMORY_H_
#define ABLATE_WORKER_MEMORY_H_

#include <cstdint>
#include <string>

namespace ablate {

// Bytes this process can still allocate without swapping: the kernel's
// MemAvailable, or less where the process's memory cgroup (as under Docker,
// Kubernetes or Slurm; v2 memory.max or v1 memory.limit_in_bytes) leaves
// less room. -1 when none of them can be read.
int64_t AvailableMemoryBytes();

// MemAvailable in bytes from the text of /proc/meminfo; -1 when absent.
int64_t MemAvailableBytes(const std::string& meminfo);

// The room a cgroup's limit leaves above its usage (the text of v2's
// memory.max and memory.current, or v1's memory.limit_in_bytes and
// memory.usage_in_bytes), at least 0; -1 when the limit is "max" or either is
// not a number.
int64_t CgroupHeadroomBytes(const std::string& limit, const std::string& usage);

// A process's cgroups from the text of /proc/PID/cgroup: the unified (v2)
// hierarchy's path ("0::PATH") and the v1 memory controller's; "" for none.
struct CgroupPaths {
  std::string unified;
  std::string memory;
};
CgroupPaths ParseCgroupPaths(const std::string& proc_cgroup);

}  // namespace ablate

#endif  // ABLATE_WORKER_MEMORY_H_
