// Results: the questions an ablation is run to answer, computed from a
// coordinator database. Which cell is best, does layer norm help averaged
// over everything else, do initializers matter: each job's metric value is
// grouped by some factors and averaged over the others (seeds included), and
// learning curves are averaged the same way on a step grid common to all
// groups.
//
// The same functions answer the Sweeps service's Results and Curves RPCs and
// the CLI's --db reads, so both give the same replies. They only read.
//
// Jobs count only when done, unless the request includes unfinished jobs
// (pending or running: then their latest value counts and is marked). Every
// job that is not counted is accounted for in the reply's LeftOut.
//
// Thread safety: as for the Database they read.
#ifndef ABLATE_STORE_RESULTS_H_
#define ABLATE_STORE_RESULTS_H_

#include <cstdint>

#include "common/status.h"
#include "proto/ablate.pb.h"
#include "store/sqlite.h"

namespace ablate {

// Curves replies hold at most this many (group, step) cells, about 4 MB on
// the wire (gRPC's default message limit); a larger request is
// InvalidArgument and suggests CurvesRequest.points.
inline constexpr int64_t kMaxCurveCells = 100'000;

// Groups the sweep's counted jobs by request.group_by and summarises each
// group's values (n, mean, sample std, min, max, 95% interval), with the
// devices and precisions its jobs ran on; the facts give the same for every
// job of the sweep that has run, and its CPU and GPU hours. Errors:
// NotFound for an unknown sweep; InvalidArgument for a bad metric name, a
// metric the sweep does not have (the message lists those it has), a
// negative step, or a factor that is not an axis of the sweep (the message
// lists the axes by their short names); DataLoss for a job row whose JSON
// does not parse; database errors as Database reports them.
//
// The metric is request.metric, else request.split's built-in metric
// ("valid_bpc"), else the sweep's own (its spec's metric.name), else
// valid_bpc; the reply names it. Best is the lowest value, or the highest
// for the sweep's own metric when its goal is maximize: a metric other than
// the sweep's own carries no goal, and most (losses, bpc) are best low.
StatusOr<v1::ResultsResponse> QueryResults(Database& db, const v1::ResultsRequest& request);

// Averages the counted jobs' curves of the metric (chosen as for
// QueryResults) by group on one step
// grid: the union of their steps, or request.points steps evenly spaced over
// them. Each curve is interpolated linearly between its own points and never
// extrapolated, so a group's n drops where its curves end. Errors as for
// QueryResults, and InvalidArgument for more than kMaxCurveCells cells.
// Time: one pass over the counted jobs' points; memory: their values.
StatusOr<v1::CurvesResponse> QueryCurves(Database& db, const v1::CurvesRequest& request);

}  // namespace ablate

#endif  // ABLATE_STORE_RESULTS_H_
