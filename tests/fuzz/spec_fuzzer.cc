// libFuzzer target for the sweep spec reader (scripts/fuzz-spec.sh builds and
// runs it; it is not part of the CMake build). Any input must give either a
// spec or an InvalidArgument that names the file, never a crash, a hang, an
// exception or undefined behaviour; a spec that parses must expand (up to a
// small job cap) and hash; the same text as a run config likewise.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/spec.h"

namespace {

constexpr char kFile[] = "fuzz.yaml";
// Keeps each input's expansion cheap; larger grids are refused before
// anything is built, which is part of what is checked.
constexpr size_t kMaxJobs = 256;

void CheckError(const ablate::Status& status, const char* what) {
  if (status.code() != ablate::Status::kInvalidArgument ||
      status.message().rfind(kFile, 0) != 0) {
    std::fprintf(stderr, "%s: an error that is not InvalidArgument naming the file: %s\n", what,
                 status.ToString().c_str());
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto spec = ablate::ParseSpec(text, kFile);
  if (spec.ok()) {
    (void)ablate::SpecHash(*spec);
    auto jobs = ablate::ExpandGrid(*spec, kMaxJobs);
    if (jobs.ok()) {
      for (const ablate::Job& job : *jobs) {
        (void)job.ConfigJson();
        if (spec->program && job.command.empty()) {
          std::fprintf(stderr, "a program job without a command\n");
          std::abort();
        }
      }
    } else {
      CheckError(jobs.status(), "ExpandGrid");
    }
  } else {
    CheckError(spec.status(), "ParseSpec");
  }
  auto config = ablate::ParseRunConfig(text, kFile);
  if (config.ok()) {
    (void)config->ToJson().dump();
  } else {
    CheckError(config.status(), "ParseRunConfig");
  }
  return 0;
}
