// `ablate effects`: what matters in a sweep. One per-job Results query (over
// gRPC or from the database file, through Source) and an analysis of
// variance of the factorial design (store/effects.h): each factor's main
// effects with 95% intervals, its share of the variance and an F-test
// p-value, interactions likewise (two-factor ones with each cell's
// interaction effect and its 95% interval), ranked by share.
//
//   effects SWEEP [--metric valid_bpc|test_bpc|train_bpc] [--at final|best|step:N]
//           [--interactions N] [--format table|json|csv]
//
// Seeds are replicates, not a factor. Only done jobs count; the footer
// accounts for the others as `ablate results` does.
#ifndef ABLATE_CLI_EFFECTS_H_
#define ABLATE_CLI_EFFECTS_H_

#include <cstdint>
#include <string>

#include "cli/source.h"
#include "common/status.h"
#include "proto/ablate.pb.h"
#include "store/effects.h"

namespace CLI {
class App;
}

namespace ablate {

// Registers the effects subcommand on `app`.
void AddEffectsCommand(CLI::App* app);

struct EffectsAnswer {
  v1::ResultsResponse jobs;  // the per-job reply the analysis read
  Anova anova;               // levels are the factors' values as JSON text ("true", "\"gru\"")
  int64_t seeds = 0;         // distinct seeds among the counted jobs; 0 without a seed axis
};

// Asks `source` for request's value of every done job (request.group_by is
// ignored; the sweep must be resolved) and analyses it with interactions of
// up to `order` factors (0: 2 where the grid leaves an error term, else 1).
// Errors: the query's, and FailedPrecondition naming the sweep and the value
// when the jobs do not allow the analysis.
StatusOr<EffectsAnswer> ComputeEffects(Source& source, v1::ResultsRequest request, int order);

// Which sums of squares the analysis used and why, in a sentence.
std::string SumsOfSquaresText(const Anova& anova);
// What the error term is made of: "the replicates (3 seeds)", or with one
// job per cell "one seed: the highest-order interaction, a:b:c".
std::string ErrorTermText(const EffectsAnswer& answer);

// A title line, how the analysis was done, the ranked terms (df, share,
// F, p), the main effects per level, the two-factor interactions' effects
// per cell ("gru × true"), then the footer of left-out jobs and factors.
std::string EffectsTable(const v1::ResultsRequest& request, const EffectsAnswer& answer);
// One object: the sweep, the value, the error term and the ranked terms with
// their levels (main effects) or cells and count of empty cells (two-factor
// interactions). NaN is null.
std::string EffectsJson(const v1::ResultsRequest& request, const EffectsAnswer& answer);
// One line per main-effect level, per two-factor interaction cell (level
// "gru × true") and per interaction without cell effects (level empty):
// term,level,n,mean,effect,ci95,df,sum_sq,share,f,p.
std::string EffectsCsv(const EffectsAnswer& answer);

}  // namespace ablate

#endif  // ABLATE_CLI_EFFECTS_H_
