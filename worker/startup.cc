#include "worker/startup.h"

#include <gnu/libc-version.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "worker/blas.h"

namespace ablate {

namespace {

// Set while re-executing, so that a second start never loops.
constexpr const char* kRestartMarker = "ABLATE_RESTARTED";

constexpr const char* kHugetlb = "glibc.malloc.hugetlb";

// The value GLIBC_TUNABLES gives glibc.malloc.hugetlb, or "" when it names
// none. glibc applies the list in order, so the last one counts.
std::string HugetlbTunable() {
  const char* env = std::getenv("GLIBC_TUNABLES");
  if (env == nullptr) return "";
  const std::string prefix = std::string(kHugetlb) + "=";
  std::string value;
  std::stringstream items(env);
  for (std::string item; std::getline(items, item, ':');) {
    if (item.compare(0, prefix.size(), prefix) == 0) value = item.substr(prefix.size());
  }
  return value;
}

// glibc.malloc.hugetlb arrived in glibc 2.35; older ones ignore it.
bool GlibcReadsHugetlb() {
  int major = 0, minor = 0;
  if (std::sscanf(gnu_get_libc_version(), "%d.%d", &major, &minor) != 2) return false;
  return major > 2 || (major == 2 && minor >= 35);
}

}  // namespace

std::string TransparentHugePageMode() {
  std::ifstream in("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string line;
  if (!std::getline(in, line)) return "";
  const size_t open = line.find('['), close = line.find(']');
  if (open == std::string::npos || close == std::string::npos || close < open) return "";
  return line.substr(open + 1, close - open - 1);
}

bool HeapOnHugePages() {
  const std::string mode = TransparentHugePageMode();
  return HugetlbTunable() == "1" && GlibcReadsHugetlb() && (mode == "always" || mode == "madvise");
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
  if (std::getenv(kRestartMarker) != nullptr) return;
  std::vector<std::string> changes;
  if (std::getenv("OPENBLAS_CORETYPE") == nullptr) {
    const std::string core = FasterBlasCoreType();
    if (!core.empty()) {
      setenv("OPENBLAS_CORETYPE", core.c_str(), 1);
      changes.push_back("OPENBLAS_CORETYPE=" + core);
    }
  }
  const std::string mode = TransparentHugePageMode();
  if (HugetlbTunable().empty() && GlibcReadsHugetlb() && (mode == "always" || mode == "madvise")) {
    const char* old = std::getenv("GLIBC_TUNABLES");
    std::string tunables = std::string(kHugetlb) + "=1";
    if (old != nullptr && *old != '\0') tunables = std::string(old) + ":" + tunables;
    setenv("GLIBC_TUNABLES", tunables.c_str(), 1);
    changes.push_back("GLIBC_TUNABLES=" + tunables);
  }
  if (changes.empty()) return;
  setenv(kRestartMarker, "1", 1);
  execv("/proc/self/exe", argv);
  // execv failed: carry on without them rather than not at all.
  std::string names;
  for (const std::string& change : changes) names += (names.empty() ? "" : " ") + change;
  std::fprintf(stderr, "warning: could not restart with %s: %s\n", names.c_str(),
               std::strerror(errno));
}

}  // namespace ablate
