// ablate: launches, watches and queries ablation sweeps. See cli/commands.h.
#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "cli/effects.h"
#include "cli/results_commands.h"
#include "cli/serve.h"

// No LibTorch here: loading it would cost every command half a second. What
// needs it (`launch --dry-run`'s step timing) runs in ablate-worker.
int main(int argc, char** argv) {
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
  ablate::AddEffectsCommand(&app);
  ablate::AddServeCommand(&app);
  ablate::AddCheckpointCommand(&app);
  CLI11_PARSE(app, argc, argv);
  return 0;
}
