// `ablate results`, `ablate curves` and `ablate report`: the answers an
// ablation is run for, read from a database file (--db PATH, read-only, no
// coordinator needed) or from a running coordinator (--coordinator), with the
// same output either way.
//
//   results SWEEP --group-by F[,F...]|none [--metric valid_bpc|test_bpc|train_bpc]
//           [--at final|best|step:N] [--format table|csv|json] [--include-unfinished]
//   curves SWEEP --group-by F[,F...]|none [--metric M] [--points K] [--format csv|json]
//           [--include-unfinished]
//   report SWEEP -o FILE.html
//
// Factors are short names (cell, layer_norm, init, seed) or dotted keys. Only
// done jobs count unless --include-unfinished; a footer (on stderr for csv
// and json) accounts for every job that is not counted.
#ifndef ABLATE_CLI_RESULTS_COMMANDS_H_
#define ABLATE_CLI_RESULTS_COMMANDS_H_

#include <ostream>
#include <string>
#include <vector>

#include "cli/source.h"
#include "common/status.h"

namespace CLI {
class App;
}

namespace ablate {

// Registers the results, curves and report subcommands on `app`.
void AddResultsCommands(CLI::App* app);

// Prints `ablate results SWEEP --group-by G` as a table (final validation
// bpc of done jobs, with the footer) to `out`, e.g. at the end of `ablate
// local`. `sweep` is a name or an id; an empty `group_by` prints one row per
// job. Errors as Source::Results'.
Status PrintResultsTable(Source& source, const std::string& sweep,
                         const std::vector<std::string>& group_by, std::ostream& out);

}  // namespace ablate

#endif  // ABLATE_CLI_RESULTS_COMMANDS_H_
