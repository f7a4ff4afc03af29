#include "cli/commands.h"

#include <CLI/CLI.hpp>
#include <cstdio>

namespace ablate {

int ReportError(const std::string& command, const Status& status) {
  std::fprintf(stderr, "ablate %s: %s\n", command.c_str(), status.message().c_str());
  return 1;
}

void FinishCommand(int exit_code) {
  if (exit_code != 0) throw CLI::RuntimeError(exit_code);
}

}  // namespace ablate
