// results_bench: how fast `ablate results` and `ablate curves` answer on a
// large sweep. Builds (once, then reuses) a database with the coordinator's
// real schema holding one finished sweep of the seed's grid with ~556 seeds:
// 3 cells x 2 layer norm x 3 inits x seeds = 10,008 jobs of 1,000 curve
// points each (799 train, 200 valid, 1 test), about 10 million rows, with
// decaying curves plus noise. Then times QueryResults and QueryCurves (the
// code behind the CLI and the RPCs, on a read-only connection as `--db`
// uses) beside the obvious SQL GROUP BY over curve_points, and prints the
// median of several warm runs of each.
//
//   results_bench [--db PATH] [--jobs N] [--runs R] [--rebuild] [--only TEXT]
#include <fmt/format.h>
#include <sqlite3.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "common/run_config.h"
#include "store/results.h"
#include "store/store.h"

namespace ablate {
namespace {

// The curve schedule of every job.
constexpr int64_t kSteps = 8000;
constexpr int64_t kTrainEvery = 10;  // 799 train points: 10 .. 7990
constexpr int64_t kValidEvery = 40;  // 200 valid points: 40 .. 8000
constexpr const char* kSweepName = "bench";
// Bumped whenever the generated data changes, so a cached file is rebuilt.
constexpr int kGeneratorVersion = 1;

std::string Fingerprint(int64_t jobs) {
  return fmt::format("results_bench v{}: {} jobs x 1000 points", kGeneratorVersion, jobs);
}

Status Check(int rc, sqlite3* db, const char* what) {
  if (rc == SQLITE_OK || rc == SQLITE_DONE || rc == SQLITE_ROW) return Status::OK();
  return SqliteStatus(rc, fmt::format("{}: {}", what, sqlite3_errmsg(db)));
}

// One prepared statement for the bulk load.
class Insert {
 public:
  Insert(sqlite3* db, const char* sql) : db_(db) {
    sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr);
  }
  ~Insert() { sqlite3_finalize(stmt_); }
  sqlite3_stmt* get() { return stmt_; }
  Status Run() {
    const int rc = sqlite3_step(stmt_);
    sqlite3_reset(stmt_);
    return Check(rc, db_, "insert");
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

// The final validation bpc of a configuration: the seed post's ordering
// (GRU best, layer norm helps, initializers barely matter) plus seed noise.
double FinalBpc(Cell cell, bool layer_norm, Init init, std::mt19937_64& rng) {
  const double cell_bpc = cell == Cell::kGru ? 1.30 : cell == Cell::kLstm ? 1.34 : 1.40;
  const double init_bpc = init == Init::kXavier ? 0.0 : init == Init::kOrthogonal ? 0.005 : 0.01;
  std::normal_distribution<double> seed_noise(0.0, init == Init::kVarianceScaling ? 0.02 : 0.01);
  return cell_bpc + (layer_norm ? 0.0 : 0.06) + init_bpc + seed_noise(rng);
}

Status Build(const std::string& path, int64_t wanted_jobs) {
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
  {
    // The real schema, through the coordinator's own OpenStore.
    ABLATE_ASSIGN_OR_RETURN(auto store, OpenStore(path));
  }
  sqlite3* db = nullptr;
  ABLATE_RETURN_IF_ERROR(Check(sqlite3_open(path.c_str(), &db), db, "open"));
  std::unique_ptr<sqlite3, int (*)(sqlite3*)> closer(db, sqlite3_close);
  // A throwaway load: no journal, no syncs, one transaction.
  ABLATE_RETURN_IF_ERROR(Check(sqlite3_exec(db,
                                            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;"
                                            "PRAGMA cache_size = -262144; BEGIN",
                                            nullptr, nullptr, nullptr),
                               db, "pragmas"));
  const int64_t now_ms = 1'790'000'000'000;
  const int64_t seeds = (wanted_jobs + 17) / 18;
  std::string seed_list;
  for (int64_t seed = 0; seed < seeds; ++seed)
    seed_list += fmt::format("{}{}", seed ? ", " : "", seed);
  const std::string insert_sweep = fmt::format(
      "INSERT INTO sweeps (id, name, description, spec_text, spec_hash, max_attempts, lease_ms, "
      "retry_on_nan, created_ms, state) VALUES (1, '{}', '{}', 'name: bench\ndata: {{corpus: "
      "text8}}\ntrain: {{steps: {}}}\ngrid:\n  cell: [lstm, gru, mgu]\n  layer_norm: [true, "
      "false]\n  init: [xavier, variance_scaling, orthogonal]\nseeds: [{}]\n', 'bench', 3, "
      "60000, 0, {}, 'active');"
      "INSERT INTO workers (id, name, host, device, threads, version, registered_ms, "
      "last_seen_ms) VALUES (1, 'gpu-0', 'bench', 'cuda:0', 1, 'bench', {}, {})",
      kSweepName, Fingerprint(wanted_jobs), kSteps, seed_list, now_ms, now_ms, now_ms);
  ABLATE_RETURN_IF_ERROR(
      Check(sqlite3_exec(db, insert_sweep.c_str(), nullptr, nullptr, nullptr), db, "sweep"));

  Insert job(db, R"sql(
      INSERT INTO jobs (id, sweep_id, ord, config_json, config_hash, factors_json, state,
                        attempts, lease_owner, lease_token, step, steps_total, final_train_bpc,
                        final_valid_bpc, final_test_bpc, final_steps, final_wall_time,
                        created_ms, started_ms, finished_ms)
      VALUES (?1, 1, ?1, ?2, ?3, ?4, 'done', 1, 1, 1, ?5, ?5, ?6, ?7, ?8, ?5, ?9, ?10, ?10, ?11))sql");
  Insert point(db, R"sql(
      INSERT INTO curve_points (job_id, metric, step, value, bytes_seen, wall_time, attempt)
      VALUES (?, ?, ?, ?, ?, ?, 1))sql");
  std::mt19937_64 rng(20170101);
  std::normal_distribution<double> train_noise(0.0, 0.03), valid_noise(0.0, 0.004);
  const double start_bpc = std::log2(256.0);
  int64_t id = 0;
  for (int64_t seed = 0; seed < seeds; ++seed) {
    for (Cell cell : {Cell::kLstm, Cell::kGru, Cell::kMgu}) {
      for (bool layer_norm : {true, false}) {
        for (Init init : {Init::kXavier, Init::kVarianceScaling, Init::kOrthogonal}) {
          ++id;
          RunConfig config;
          config.data.corpus = "text8";
          config.model.cell = cell;
          config.model.layer_norm = layer_norm;
          config.model.init = init;
          config.train.steps = kSteps;
          config.train.seed = static_cast<uint64_t>(seed);
          const nlohmann::json factors = {{"model.cell", CellName(cell)},
                                          {"model.layer_norm", layer_norm},
                                          {"model.init", InitName(init)},
                                          {"train.seed", seed}};
          const double final_bpc = FinalBpc(cell, layer_norm, init, rng);
          // Layer norm trains faster: a shorter time constant.
          const double tau = layer_norm ? 500 : 800;
          auto curve = [&](int64_t step) {
            return final_bpc + (start_bpc - final_bpc) * std::exp(-static_cast<double>(step) / tau);
          };
          const double seconds_per_step = cell == Cell::kLstm ? 0.09 : 0.07;
          auto add = [&](const char* metric, int64_t step, double bpc) {
            sqlite3_stmt* s = point.get();
            sqlite3_bind_int64(s, 1, id);
            sqlite3_bind_text(s, 2, metric, -1, SQLITE_STATIC);
            sqlite3_bind_int64(s, 3, step);
            sqlite3_bind_double(s, 4, bpc);
            sqlite3_bind_int64(s, 5, step * 100 * 200);
            sqlite3_bind_double(s, 6, static_cast<double>(step) * seconds_per_step);
            return point.Run();
          };
          // Inserted in primary-key order (job, metric, step): appends to the b-tree.
          const double test_bpc = final_bpc + 0.01 + valid_noise(rng);
          ABLATE_RETURN_IF_ERROR(add("test_bpc", kSteps, test_bpc));
          double train_bpc = 0;
          for (int64_t step = kTrainEvery; step < kSteps; step += kTrainEvery) {
            train_bpc = curve(step) - 0.02 + train_noise(rng);
            ABLATE_RETURN_IF_ERROR(add("train_bpc", step, train_bpc));
          }
          double valid_bpc = 0;
          for (int64_t step = kValidEvery; step <= kSteps; step += kValidEvery) {
            valid_bpc = curve(step) + valid_noise(rng);
            ABLATE_RETURN_IF_ERROR(add("valid_bpc", step, valid_bpc));
          }
          const std::string config_json = config.ToJson().dump();
          const std::string factors_json = factors.dump();
          const std::string hash = fmt::format("{:016x}", id);
          sqlite3_stmt* s = job.get();
          sqlite3_bind_int64(s, 1, id);
          sqlite3_bind_text(s, 2, config_json.c_str(), -1, SQLITE_TRANSIENT);
          sqlite3_bind_text(s, 3, hash.c_str(), -1, SQLITE_TRANSIENT);
          sqlite3_bind_text(s, 4, factors_json.c_str(), -1, SQLITE_TRANSIENT);
          sqlite3_bind_int64(s, 5, kSteps);
          sqlite3_bind_double(s, 6, train_bpc);
          sqlite3_bind_double(s, 7, valid_bpc);
          sqlite3_bind_double(s, 8, test_bpc);
          sqlite3_bind_double(s, 9, static_cast<double>(kSteps) * seconds_per_step);
          sqlite3_bind_int64(s, 10, now_ms + id * 1000);
          sqlite3_bind_int64(s, 11, now_ms + id * 1000 + 600'000);
          ABLATE_RETURN_IF_ERROR(job.Run());
        }
      }
    }
  }
  // Back to the coordinator's journal mode once the load is in.
  return Check(sqlite3_exec(db, "COMMIT; PRAGMA journal_mode = WAL", nullptr, nullptr, nullptr), db,
               "commit");
}

// True when `path` holds this generator's database of `jobs` jobs.
bool Cached(const std::string& path, int64_t jobs) {
  if (!std::filesystem::exists(path)) return false;
  auto db = OpenStoreReadOnly(path);
  if (!db.ok()) return false;
  auto rows = (*db)->Query("SELECT description FROM sweeps WHERE name = ?", kSweepName);
  if (!rows.ok()) return false;
  auto row = rows->Next();
  return row.ok() && *row && rows->Text(0) == Fingerprint(jobs);
}

struct Timing {
  std::string name;
  std::vector<double> ms;
  std::string check;  // a number from the answer, so runs can be compared
};

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

// Runs `query` once to warm the page cache, then `runs` times.
Timing Time(const std::string& name, int runs, const std::function<std::string()>& query) {
  Timing timing{name, {}, query()};
  for (int i = 0; i < runs; ++i) {
    const auto start = std::chrono::steady_clock::now();
    timing.check = query();
    timing.ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
            .count());
  }
  return timing;
}

std::string Describe(const StatusOr<v1::ResultsResponse>& r) {
  if (!r.ok()) return "error: " + r.status().ToString();
  int64_t n = 0;
  for (const auto& row : r->rows()) n += row.n();
  return fmt::format("{} groups, {} jobs, first mean {:.4f}", r->rows_size(), n,
                     r->rows_size() ? r->rows(0).mean() : NAN);
}

std::string Describe(const StatusOr<v1::CurvesResponse>& r) {
  if (!r.ok()) return "error: " + r.status().ToString();
  return fmt::format("{} groups x {} steps, first group's last mean {:.4f}", r->groups_size(),
                     r->steps_size(),
                     r->groups_size() ? r->groups(0).mean(r->steps_size() - 1) : NAN);
}

// Steps a statement with its one parameter to the end; describes the first row.
std::string RunSql(Database& db, const std::string& sql, const char* parameter) {
  auto rows = db.Query(sql, parameter);
  if (!rows.ok()) return "error: " + rows.status().ToString();
  std::string first;
  int64_t count = 0;
  while (true) {
    auto row = rows->Next();
    if (!row.ok()) return "error: " + row.status().ToString();
    if (!*row) break;
    if (count++ == 0) first = fmt::format("first row {} {:.4f}", rows->Text(0), rows->Double(2));
  }
  return fmt::format("{} rows, {}", count, first);
}

std::string CpuModel() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown CPU";
}

int Main(int argc, char** argv) {
  CLI::App app{"Times ablate's results and curves queries on a 10-million-point sweep"};
  std::string path = (std::filesystem::temp_directory_path() / "ablate_results_bench.db").string();
  int64_t jobs = 10'000;
  int runs = 5;
  bool rebuild = false;
  std::string only;
  app.add_option("--db", path, "Where the benchmark database is built and kept between runs")
      ->capture_default_str();
  app.add_option("--jobs", jobs, "Jobs in the sweep (rounded up to whole grids of 18)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{18}, int64_t{1'000'000}));
  app.add_option("--runs", runs, "Timed runs of each query, after one warm-up run")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  app.add_flag("--rebuild", rebuild, "Build the database even if a matching one is cached");
  app.add_option("--only", only, "Time only the queries whose name contains this text");
  CLI11_PARSE(app, argc, argv);

  if (rebuild || !Cached(path, jobs)) {
    std::fprintf(stderr, "building %s ...\n", path.c_str());
    const auto start = std::chrono::steady_clock::now();
    Status built = Build(path, jobs);
    if (!built.ok()) {
      std::fprintf(stderr, "results_bench: %s\n", built.ToString().c_str());
      return 1;
    }
    std::fprintf(stderr, "built in %.1f s\n",
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  auto opened = OpenStoreReadOnly(path);
  if (!opened.ok()) {
    std::fprintf(stderr, "results_bench: %s\n", opened.status().ToString().c_str());
    return 1;
  }
  Database& db = **opened;
  const int64_t job_count = *db.QueryInt("SELECT count(*) FROM jobs");
  const int64_t point_count = *db.QueryInt("SELECT count(*) FROM curve_points");

  auto results = [&](std::vector<std::string> group_by, v1::Split split, v1::ValueAt at,
                     int64_t step) {
    v1::ResultsRequest request;
    request.mutable_sweep()->set_name(kSweepName);
    for (const auto& g : group_by) request.add_group_by(g);
    request.set_split(split);
    request.set_at(at);
    request.set_step(step);
    return Describe(QueryResults(db, request));
  };
  auto curves = [&](std::vector<std::string> group_by, v1::Split split) {
    v1::CurvesRequest request;
    request.mutable_sweep()->set_name(kSweepName);
    for (const auto& g : group_by) request.add_group_by(g);
    request.set_split(split);
    return Describe(QueryCurves(db, request));
  };
  // The obvious SQL: each job's final value is its last valid point, found by
  // a correlated subquery; statistics by GROUP BY.
  const std::string naive_results = R"sql(
      SELECT json_extract(j.factors_json, '$."model.layer_norm"') AS g, count(*), avg(p.value),
             sqrt((sum(p.value * p.value) - sum(p.value) * sum(p.value) / count(*)) / (count(*) - 1)),
             min(p.value), max(p.value)
      FROM curve_points p JOIN jobs j ON j.id = p.job_id
      WHERE j.sweep_id = 1 AND p.metric = ?
        AND p.step = (SELECT max(q.step) FROM curve_points q
                      WHERE q.job_id = p.job_id AND q.metric = p.metric)
      GROUP BY g)sql";
  // The obvious SQL for curves: GROUP BY factor and step (which is right
  // only when every job evaluates at the same steps: no interpolation).
  const std::string naive_curves = R"sql(
      SELECT json_extract(j.factors_json, '$."model.cell"') AS g, p.step, avg(p.value), count(*),
             sqrt((sum(p.value * p.value) - sum(p.value) * sum(p.value) / count(*)) / (count(*) - 1)),
             min(p.value), max(p.value)
      FROM curve_points p JOIN jobs j ON j.id = p.job_id
      WHERE j.sweep_id = 1 AND p.metric = ?
      GROUP BY g, p.step ORDER BY g, p.step)sql";
  const std::string view_results = R"sql(
      SELECT layer_norm, count(*), avg(final_valid_bpc) FROM job_results
      WHERE sweep = ? AND state = 'done' GROUP BY layer_norm)sql";

  // Each query, and the naive SQL it stands beside (indented).
  const std::vector<std::pair<std::string, std::function<std::string()>>> queries = {
      {"results --group-by layer_norm (final valid)",
       [&] { return results({"layer_norm"}, v1::SPLIT_VALID, v1::VALUE_AT_FINAL, 0); }},
      {"results --group-by cell,layer_norm,init",
       [&] {
         return results({"cell", "layer_norm", "init"}, v1::SPLIT_VALID, v1::VALUE_AT_FINAL, 0);
       }},
      {"results --group-by none (10k rows)",
       [&] { return results({}, v1::SPLIT_VALID, v1::VALUE_AT_FINAL, 0); }},
      {"results --group-by cell --at best",
       [&] { return results({"cell"}, v1::SPLIT_VALID, v1::VALUE_AT_BEST, 0); }},
      {"results --group-by cell --at step:4020",
       [&] { return results({"cell"}, v1::SPLIT_VALID, v1::VALUE_AT_STEP, 4020); }},
      {"  naive SQL: last valid point per job, GROUP BY",
       [&] { return RunSql(db, naive_results, "valid_bpc"); }},
      {"  SQL over the job_results view", [&] { return RunSql(db, view_results, kSweepName); }},
      {"curves --group-by cell (valid, 2M points)",
       [&] { return curves({"cell"}, v1::SPLIT_VALID); }},
      {"curves --group-by layer_norm --metric train_bpc (8M points)",
       [&] { return curves({"layer_norm"}, v1::SPLIT_TRAIN); }},
      {"  naive SQL: GROUP BY cell, step (valid)",
       [&] { return RunSql(db, naive_curves, "valid_bpc"); }},
      {"  naive SQL: GROUP BY cell, step (train)",
       [&] { return RunSql(db, naive_curves, "train_bpc"); }},
  };
  std::vector<Timing> timings;
  for (const auto& [name, query] : queries) {
    if (name.find(only) != std::string::npos) timings.push_back(Time(name, runs, query));
  }

  utsname host{};
  uname(&host);
  const std::time_t now = std::time(nullptr);
  char date[32];
  std::strftime(date, sizeof date, "%Y-%m-%d", std::gmtime(&now));
  std::printf(
      "results_bench %s: %lld jobs, %lld curve points, %.0f MB; %s, %ld cores, %s %s, "
      "SQLite %s\n",
      date, static_cast<long long>(job_count), static_cast<long long>(point_count),
      static_cast<double>(std::filesystem::file_size(path)) / 1e6, CpuModel().c_str(),
      sysconf(_SC_NPROCESSORS_ONLN), host.sysname, host.release, sqlite3_libversion());
  std::printf("median of %d warm runs (after one warm-up run)\n\n", runs);
  std::printf("%-62s %10s %10s  %s\n", "query", "median ms", "min ms", "answer");
  for (const Timing& t : timings) {
    std::printf("%-62s %10.1f %10.1f  %s\n", t.name.c_str(), Median(t.ms),
                *std::min_element(t.ms.begin(), t.ms.end()), t.check.c_str());
  }
  return 0;
}

}  // namespace
}  // namespace ablate

int main(int argc, char** argv) { return ablate::Main(argc, argv); }
