// How much memory this process may still take: what the trainer checks a
// configuration against before it allocates anything, so that a model far
// too large for the machine is refused with the settings that make it so
// rather than dying in the allocator.
#ifndef ABLATE_WORKER_MEMORY_H_
#define ABLATE_WORKER_MEMORY_H_

#include <cstdint>
#include <string>
#include <vector>

namespace ablate {

// Bytes this process can still allocate without swapping:
//  - the kernel's MemAvailable, or less where a memory cgroup (as under
//    Docker, Kubernetes or Slurm) leaves less room: the process's own and
//    every enclosing one (v2 memory.max; v1's hierarchical limit), each
//    counting what it holds as Kubernetes does, less its inactive file cache;
//  - plus what this process's heap holds free: blocks a previous job freed
//    and KeepFreedMemory keeps for reuse (trainer.h).
// -1 when none of it can be read.
int64_t AvailableMemoryBytes();

// AvailableMemoryBytes from its parts: MemAvailable, the headroom of each
// memory cgroup hierarchy (-1: no limit or unreadable) and the heap's free
// bytes. -1 when neither MemAvailable nor any headroom is known.
int64_t CombineAvailable(int64_t mem_available, const std::vector<int64_t>& headrooms,
                         int64_t free_heap);

// Bytes free inside this process's malloc arenas (glibc's mallinfo2; 0
// elsewhere).
int64_t FreeHeapBytes();

// MemAvailable in bytes from the text of /proc/meminfo; -1 when absent.
int64_t MemAvailableBytes(const std::string& meminfo);

// The value of `key` in the text of a cgroup's memory.stat ("key value"
// lines); -1 when absent.
int64_t MemoryStatValue(const std::string& memory_stat, const std::string& key);

// The room a cgroup's limit leaves above its working set: the usage less its
// inactive file cache, which the kernel reclaims before it refuses memory.
// `limit` and `usage` are the files' text (v2's memory.max and
// memory.current, or v1's limit and memory.usage_in_bytes), inactive_file
// bytes (or -1, taken as 0). At least 0; -1 when the limit is "max" or either
// text is not a number.
int64_t CgroupHeadroomBytes(const std::string& limit, const std::string& usage,
                            int64_t inactive_file);

// The least headroom (CgroupHeadroomBytes) of the memory cgroup at `path`
// under a hierarchy mounted at `mount` and of every cgroup above it up to the
// mount's root (for v1 also the hierarchical limit its memory.stat gives).
// Where `path` is not there (a container sees its own cgroup as the root,
// while /proc names it by the host's path or "/../.."), only the mount's
// root is read. -1 when none has a limit that can be read; a v1 cgroup with
// none reads as a limit near INT64_MAX.
enum class CgroupVersion { kV1, kV2 };
int64_t CgroupHeadroom(const std::string& mount, const std::string& path, CgroupVersion version);

// A process's cgroups from the text of /proc/PID/cgroup: the unified (v2)
// hierarchy's path ("0::PATH") and the v1 memory controller's; "" for none.
struct CgroupPaths {
  std::string unified;
  std::string memory;
};
CgroupPaths ParseCgroupPaths(const std::string& proc_cgroup);

}  // namespace ablate

#endif  // ABLATE_WORKER_MEMORY_H_
