#include "worker/memory.h"

#include <malloc.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

namespace ablate {

namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return in ? text.str() : std::string();
}

// A whole non-negative decimal number, surrounding whitespace allowed; -1
// otherwise.
int64_t ParseCount(const std::string& text) {
  const size_t begin = text.find_first_not_of(" \t\n");
  const size_t end = text.find_last_not_of(" \t\n");
  if (begin == std::string::npos) return -1;
  int64_t value = 0;
  for (size_t i = begin; i <= end; ++i) {
    if (!std::isdigit(static_cast<unsigned char>(text[i]))) return -1;
    if (value > (INT64_MAX - 9) / 10) return -1;
    value = value * 10 + (text[i] - '0');
  }
  return value;
}

}  // namespace

int64_t FreeHeapBytes() {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  return static_cast<int64_t>(mallinfo2().fordblks);
#else
  return 0;
#endif
}

int64_t CombineAvailable(int64_t mem_available, const std::vector<int64_t>& headrooms,
                         int64_t free_heap) {
  int64_t available = mem_available;
  for (int64_t headroom : headrooms) {
    if (headroom >= 0 && (available < 0 || headroom < available)) available = headroom;
  }
  if (available < 0) return available;
  const int64_t extra = std::max<int64_t>(0, free_heap);
  return available > INT64_MAX - extra ? INT64_MAX : available + extra;
}

int64_t MemAvailableBytes(const std::string& meminfo) {
  std::istringstream lines(meminfo);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("MemAvailable:", 0) != 0) continue;
    std::istringstream fields(line.substr(13));
    int64_t kib = -1;
    std::string unit;
    if (!(fields >> kib >> unit) || kib < 0 || unit != "kB") return -1;
    return kib * 1024;
  }
  return -1;
}

int64_t MemoryStatValue(const std::string& memory_stat, const std::string& key) {
  std::istringstream lines(memory_stat);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.size() > key.size() && line.compare(0, key.size(), key) == 0 &&
        line[key.size()] == ' ') {
      return ParseCount(line.substr(key.size() + 1));
    }
  }
  return -1;
}

int64_t CgroupHeadroomBytes(const std::string& limit, const std::string& usage,
                            int64_t inactive_file) {
  const int64_t most = ParseCount(limit), used = ParseCount(usage);
  if (most < 0 || used < 0) return -1;
  const int64_t working_set = std::max<int64_t>(0, used - std::max<int64_t>(0, inactive_file));
  return std::max<int64_t>(0, most - working_set);
}

int64_t CgroupHeadroom(const std::string& mount_dir, const std::string& path,
                       CgroupVersion version) {
  const bool v2 = version == CgroupVersion::kV2;
  std::filesystem::path mount = std::filesystem::path(mount_dir).lexically_normal();
  if (!mount.has_filename()) mount = mount.parent_path();  // "a/b/" -> "a/b"
  // The cgroups from the mount's root down to `path`; only the root where the
  // path is not there or leaves the mount ("..").
  std::vector<std::filesystem::path> dirs = {mount};
  bool inside = true;
  for (const std::filesystem::path& part : std::filesystem::path(path).relative_path()) {
    if (part == ".." || part == ".") inside = false;
  }
  std::error_code error;
  const std::filesystem::path own = mount / std::filesystem::path(path).relative_path();
  if (inside && std::filesystem::is_directory(own, error)) {
    std::filesystem::path dir = mount;
    for (const std::filesystem::path& part : std::filesystem::path(path).relative_path()) {
      if (part.empty()) continue;
      dir /= part;
      dirs.push_back(dir);
    }
  }
  int64_t least = -1;
  for (const std::filesystem::path& dir : dirs) {
    const std::string stat = ReadFile((dir / "memory.stat").string());
    std::string limit = ReadFile((dir / (v2 ? "memory.max" : "memory.limit_in_bytes")).string());
    if (!v2 && dir == dirs.back()) {
      // v1's own cgroup also gives the limits above it, in case those are
      // not visible.
      const int64_t hierarchical = MemoryStatValue(stat, "hierarchical_memory_limit");
      const int64_t own_limit = ParseCount(limit);
      if (hierarchical >= 0 && (own_limit < 0 || hierarchical < own_limit)) {
        limit = std::to_string(hierarchical);
      }
    }
    const int64_t headroom = CgroupHeadroomBytes(
        limit, ReadFile((dir / (v2 ? "memory.current" : "memory.usage_in_bytes")).string()),
        MemoryStatValue(stat, v2 ? "inactive_file" : "total_inactive_file"));
    if (headroom >= 0 && (least < 0 || headroom < least)) least = headroom;
  }
  return least;
}

CgroupPaths ParseCgroupPaths(const std::string& proc_cgroup) {
  CgroupPaths paths;
  std::istringstream lines(proc_cgroup);
  std::string line;
  while (std::getline(lines, line)) {
    // ID:CONTROLLERS:PATH, where the path may itself hold colons.
    const size_t first = line.find(':');
    const size_t second = first == std::string::npos ? first : line.find(':', first + 1);
    if (second == std::string::npos) continue;
    const std::string id = line.substr(0, first);
    const std::string controllers = line.substr(first + 1, second - first - 1);
    const std::string path = line.substr(second + 1);
    if (id == "0" && controllers.empty()) {
      paths.unified = path;
      continue;
    }
    std::istringstream names(controllers);
    std::string name;
    while (std::getline(names, name, ',')) {
      if (name == "memory") paths.memory = path;
    }
  }
  return paths;
}

int64_t AvailableMemoryBytes() {
  int64_t available = MemAvailableBytes(ReadFile("/proc/meminfo"));
  const CgroupPaths cgroups = ParseCgroupPaths(ReadFile("/proc/self/cgroup"));
  std::vector<int64_t> headrooms;
  if (!cgroups.unified.empty()) {
    headrooms.push_back(CgroupHeadroom("/sys/fs/cgroup", cgroups.unified, CgroupVersion::kV2));
  }
  if (!cgroups.memory.empty()) {
    headrooms.push_back(
        CgroupHeadroom("/sys/fs/cgroup/memory", cgroups.memory, CgroupVersion::kV1));
  }
  return CombineAvailable(available, headrooms, FreeHeapBytes());
}

}  // namespace ablate
