#include "worker/startup.h"

#if defined(__GLIBC__)
#include <gnu/libc-version.h>
#endif
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <vector>

#include "worker/blas.h"

namespace ablate {

namespace {

// Set while re-executing, so that a second start never loops.
constexpr const char* kRestartMarker = "ABLATE_RESTARTED";

constexpr const char* kHugetlb = "glibc.malloc.hugetlb";

// glibc.malloc.hugetlb arrived in glibc 2.35; older ones, and other C
// libraries, ignore it.
bool LibcReadsHugetlb() {
#if defined(__GLIBC__)
  int major = 0, minor = 0;
  if (std::sscanf(gnu_get_libc_version(), "%d.%d", &major, &minor) != 2) return false;
  return major > 2 || (major == 2 && minor >= 35);
#else
  return false;
#endif
}

// Whether glibc.malloc.hugetlb=1 would make glibc ask for huge pages: only
// in the kernel's "madvise" mode (in "always" the kernel backs the heap
// anyway, in "never" nothing can).
bool GlibcAsksForHugePagesIfTold() {
  return TransparentHugePageMode() == "madvise" && LibcReadsHugetlb();
}

// An environment variable's value, or nullopt when it is unset.
std::optional<std::string> GetEnv(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr) return std::nullopt;
  return std::string(value);
}

void RestoreEnv(const char* name, const std::optional<std::string>& value) {
  if (value.has_value()) {
    setenv(name, value->c_str(), 1);
  } else {
    unsetenv(name);
  }
}

}  // namespace

std::string HugetlbTunable(const char* tunables) {
  if (tunables == nullptr) return "";
  const std::string prefix = std::string(kHugetlb) + "=";
  std::string value;
  std::stringstream items(tunables);
  for (std::string item; std::getline(items, item, ':');) {
    if (item.compare(0, prefix.size(), prefix) == 0) value = item.substr(prefix.size());
  }
  return value;
}

std::string TunablesWithHugetlb(const char* tunables) {
  const std::string setting = std::string(kHugetlb) + "=1";
  if (tunables == nullptr || *tunables == '\0') return setting;
  std::string out = tunables;
  if (out.back() != ':') out += ':';
  return out + setting;
}

std::string TransparentHugePageMode() {
  std::ifstream in("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string line;
  if (!std::getline(in, line)) return "";
  const size_t open = line.find('['), close = line.find(']');
  if (open == std::string::npos || close == std::string::npos || close < open) return "";
  return line.substr(open + 1, close - open - 1);
}

bool HeapOnHugePages() {
  if (TransparentHugePageMode() == "always") return true;
  return GlibcAsksForHugePagesIfTold() && HugetlbTunable(std::getenv("GLIBC_TUNABLES")) == "1";
}

double HugePageMib() {
  std::ifstream in("/proc/self/smaps_rollup");
  for (std::string line; std::getline(in, line);) {
    long long kib = 0;
    if (std::sscanf(line.c_str(), "AnonHugePages: %lld kB", &kib) == 1) return kib / 1024.0;
  }
  return 0;
}

void MaybeRestartForSpeed(char** argv) {
  const char* marker = std::getenv(kRestartMarker);
  if (marker != nullptr && *marker != '\0') return;
  const std::optional<std::string> old_core = GetEnv("OPENBLAS_CORETYPE");
  const std::optional<std::string> old_tunables = GetEnv("GLIBC_TUNABLES");
  std::vector<std::string> changes;
  if (!old_core.has_value()) {
    const std::string core = FasterBlasCoreType();
    if (!core.empty()) {
      setenv("OPENBLAS_CORETYPE", core.c_str(), 1);
      changes.push_back("OPENBLAS_CORETYPE=" + core);
    }
  }
  const char* tunables = old_tunables.has_value() ? old_tunables->c_str() : nullptr;
  if (GlibcAsksForHugePagesIfTold() && HugetlbTunable(tunables).empty()) {
    const std::string value = TunablesWithHugetlb(tunables);
    setenv("GLIBC_TUNABLES", value.c_str(), 1);
    changes.push_back("GLIBC_TUNABLES=" + value);
  }
  if (changes.empty()) return;
  setenv(kRestartMarker, "1", 1);
  execv("/proc/self/exe", argv);
  // execv failed: carry on as started, and say so, rather than not at all.
  const int error = errno;
  RestoreEnv("OPENBLAS_CORETYPE", old_core);
  RestoreEnv("GLIBC_TUNABLES", old_tunables);
  unsetenv(kRestartMarker);
  std::string names;
  for (const std::string& change : changes) names += (names.empty() ? "" : " ") + change;
  std::fprintf(stderr, "warning: could not restart with %s: %s\n", names.c_str(),
               std::strerror(error));
}

}  // namespace ablate
