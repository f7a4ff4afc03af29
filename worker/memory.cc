#include "worker/memory.h"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <fstream>
#include <sstream>

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
  size_t begin = text.find_first_not_of(" \t\n");
  size_t end = text.find_last_not_of(" \t\n");
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

int64_t CgroupHeadroomBytes(const std::string& limit, const std::string& usage) {
  const int64_t most = ParseCount(limit), used = ParseCount(usage);
  if (most < 0 || used < 0) return -1;
  return std::max<int64_t>(0, most - used);
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

namespace {

// The headroom of the cgroup at `path` under the hierarchy mounted at
// `mount`, or of the mount's root where the path is not there (a container
// sees its own cgroup as the root, while /proc may name it as the host does).
int64_t Headroom(const std::string& mount, const std::string& path, const char* limit_file,
                 const char* usage_file) {
  for (const std::string& dir : {mount + (path == "/" ? std::string() : path), mount}) {
    const int64_t headroom =
        CgroupHeadroomBytes(ReadFile(dir + "/" + limit_file), ReadFile(dir + "/" + usage_file));
    if (headroom >= 0) return headroom;
  }
  return -1;
}

}  // namespace

int64_t AvailableMemoryBytes() {
  int64_t available = MemAvailableBytes(ReadFile("/proc/meminfo"));
  const CgroupPaths cgroups = ParseCgroupPaths(ReadFile("/proc/self/cgroup"));
  int64_t headrooms[2] = {-1, -1};
  if (!cgroups.unified.empty()) {
    headrooms[0] = Headroom("/sys/fs/cgroup", cgroups.unified, "memory.max", "memory.current");
  }
  if (!cgroups.memory.empty()) {
    headrooms[1] = Headroom("/sys/fs/cgroup/memory", cgroups.memory, "memory.limit_in_bytes",
                            "memory.usage_in_bytes");
  }
  for (int64_t headroom : headrooms) {
    if (headroom >= 0 && (available < 0 || headroom < available)) available = headroom;
  }
  return available;
}

}  // namespace ablate
