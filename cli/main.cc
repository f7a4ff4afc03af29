// ablate: launches, watches and queries ablation sweeps. See cli/commands.h.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstring>

#include "cli/commands.h"
#include "cli/results_commands.h"
#include "worker/blas.h"

int main(int argc, char** argv) {
  // Before anything uses BLAS: `launch --dry-run` times real training steps.
  // Only it does, and re-executing would cost every other command a second
  // start-up (loading LibTorch), so only it may re-execute.
  if (std::any_of(argv + 1, argv + argc,
                  [](const char* arg) { return std::strcmp(arg, "--dry-run") == 0; })) {
    ablate::MaybeReexecForFasterBlas(argv);
  }

  CLI::App app{"ablate: ablation sweeps of character-level RNN language models"};
  app.require_subcommand(1);
  ablate::AddLaunchCommand(&app);
  ablate::AddStatusCommand(&app);
  ablate::AddListCommand(&app);
  ablate::AddWorkersCommand(&app);
  ablate::AddCancelCommand(&app);
  ablate::AddRetryCommand(&app);
  ablate::AddLocalCommand(&app);
  ablate::AddResultsCommands(&app);
  CLI11_PARSE(app, argc, argv);
  return 0;
}
