#include "store/store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "store/reader.h"
#include "store/results.h"
#include "store/test_util.h"

namespace ablate {
namespace {

using testing::TempDir;

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Writes a database with the raw C API, as another program would.
void WriteForeignDatabase(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
}

// Each test runs against a database file and against ":memory:".
class StoreTest : public ::testing::TestWithParam<bool> {
 protected:
  bool in_memory() const { return GetParam(); }
  std::string path() const { return in_memory() ? ":memory:" : dir_.File("ablate.db"); }

  // Creates the store at path() with one worker, named "w", and closes it.
  void CreateWithOneWorker() {
    auto db = OpenStore(path());
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    ASSERT_TRUE((*db)
                    ->Run("INSERT INTO workers (name, host, device, threads, version, "
                          "registered_ms, last_seen_ms) VALUES ('w', 'h', 'cpu', 2, 'v', 1, 1)")
                    .ok());
  }

  TempDir dir_;
};

INSTANTIATE_TEST_SUITE_P(Backends, StoreTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Memory" : "File"; });

// What only a file can show: reopening, files written by others, read-only opens.
using StoreFileTest = StoreTest;
INSTANTIATE_TEST_SUITE_P(Backends, StoreFileTest, ::testing::Values(false),
                         [](const auto&) { return "File"; });

TEST_P(StoreTest, NewDatabaseGetsSchemaAndIdentity) {
  auto db = OpenStore(path());
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  EXPECT_EQ(*(*db)->QueryInt("PRAGMA application_id"), kStoreApplicationId);
  EXPECT_EQ(*(*db)->QueryInt("PRAGMA user_version"), kStoreSchemaVersion);
  for (const char* table : {"sweeps", "jobs", "workers", "curve_points", "events", "job_counts"}) {
    EXPECT_EQ(*(*db)->QueryInt("SELECT COUNT(*) FROM sqlite_schema WHERE name = ?", table), 1)
        << table;
  }
  if (!in_memory()) {
    auto mode = (*db)->Query("PRAGMA journal_mode");
    ASSERT_TRUE(mode.ok());
    ASSERT_TRUE(*mode->Next());
    EXPECT_EQ(mode->Text(0), "wal");
  }
}

TEST_P(StoreTest, JobCountsFollowJobStates) {
  auto db = OpenStore(path());
  ASSERT_TRUE(db.ok());
  Database& d = **db;
  ASSERT_TRUE(d.Exec("INSERT INTO sweeps (name, description, spec_text, spec_hash, max_attempts, "
                     "lease_ms, retry_on_nan, created_ms, state) "
                     "VALUES ('s', '', '', 'h', 1, 1000, 0, 0, 'active')")
                  .ok());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(d.Run("INSERT INTO jobs (sweep_id, ord, config_json, config_hash, factors_json, "
                      "state, created_ms) VALUES (1, ?, '{}', ?, '{}', 'pending', 0)",
                      i, std::to_string(i))
                    .ok());
  }
  ASSERT_TRUE(d.Exec("UPDATE jobs SET state = 'running' WHERE ord = 0").ok());
  v1::ListSweepsResponse sweeps;
  ASSERT_TRUE(StoreReader(&d).ListSweeps(&sweeps).ok());
  ASSERT_EQ(sweeps.sweeps_size(), 1);
  EXPECT_EQ(sweeps.sweeps(0).counts().pending(), 2);
  EXPECT_EQ(sweeps.sweeps(0).counts().running(), 1);
  EXPECT_EQ(sweeps.sweeps(0).counts().total(), 3);
}

TEST_P(StoreFileTest, ReopenKeepsData) {
  CreateWithOneWorker();
  auto db = OpenStore(path());
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  EXPECT_EQ(*(*db)->QueryInt("SELECT COUNT(*) FROM workers WHERE name = 'w'"), 1);
}

TEST_P(StoreFileTest, ForeignDatabaseIsRefusedUntouched) {
  WriteForeignDatabase(path(),
                       "CREATE TABLE photos (id INTEGER PRIMARY KEY); "
                       "INSERT INTO photos VALUES (1)");
  std::string before = ReadBytes(path());
  auto db = OpenStore(path());
  ASSERT_FALSE(db.ok());
  EXPECT_EQ(db.status().code(), Status::kFailedPrecondition);
  EXPECT_NE(db.status().message().find("not an ablate database"), std::string::npos);
  EXPECT_EQ(ReadBytes(path()), before);
  EXPECT_FALSE(std::filesystem::exists(path() + "-wal"));
}

TEST_P(StoreFileTest, NonSqliteFileIsRefusedUntouched) {
  std::string text(4096, 'x');
  std::ofstream(path(), std::ios::binary) << text;
  auto db = OpenStore(path());
  ASSERT_FALSE(db.ok());
  EXPECT_EQ(db.status().code(), Status::kDataLoss) << db.status().ToString();
  EXPECT_EQ(ReadBytes(path()), text);
}

TEST_P(StoreFileTest, NewerSchemaIsRefusedUntouched) {
  ASSERT_TRUE(OpenStore(path()).ok());
  WriteForeignDatabase(path(), "PRAGMA user_version = " + std::to_string(kStoreSchemaVersion + 1));
  std::string before = ReadBytes(path());
  auto db = OpenStore(path());
  ASSERT_FALSE(db.ok());
  EXPECT_EQ(db.status().code(), Status::kFailedPrecondition);
  EXPECT_NE(db.status().message().find("newer"), std::string::npos) << db.status().ToString();
  EXPECT_EQ(ReadBytes(path()), before);
  EXPECT_EQ(OpenStoreReadOnly(path()).status().code(), Status::kFailedPrecondition);
}

// store/testdata/schema-v2: a sweep of 4 jobs run to the end by ablate
// 0.1.0 (schema version 2), each with a checkpoint at step 10 in v2.db.ckpt.
TEST(Migration, AVersionTwoFileFromThePreviousReleaseIsUpgradedInPlaceLosingNothing) {
  TempDir dir;
  const std::string path = dir.File("v2.db");
  std::filesystem::copy_file(std::string(ABLATE_STORE_TESTDATA) + "/schema-v2/v2.db", path);
  // Read-only opens never upgrade: the coordinator does, on its next start.
  EXPECT_EQ(OpenStoreReadOnly(path).status().code(), Status::kFailedPrecondition);
  {
    auto db = OpenStore(path);
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    EXPECT_EQ(*(*db)->QueryInt("PRAGMA user_version"), kStoreSchemaVersion);
  }
  auto db = OpenStoreReadOnly(path);
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  // Sweeps from before keep_checkpoints kept their checkpoints: 'final'.
  EXPECT_EQ(*(*db)->QueryInt("SELECT count(*) FROM sweeps WHERE keep_checkpoints = 'final'"), 1);
  EXPECT_EQ(*(*db)->QueryInt("SELECT count(*) FROM jobs WHERE state = 'done'"), 4);
  EXPECT_EQ(*(*db)->QueryInt("SELECT count(*) FROM curve_points"), 28);
  EXPECT_EQ(*(*db)->QueryInt("SELECT count(*) FROM job_results WHERE final_valid_bpc > 0"), 4);
  StoreReader reader(db->get());
  auto checkpoint = reader.JobCheckpoint(1);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status().ToString();
  EXPECT_EQ(checkpoint->second.step(), 10);
  const std::string file =
      std::string(ABLATE_STORE_TESTDATA) + "/schema-v2/v2.db.ckpt/" + checkpoint->first;
  EXPECT_EQ(static_cast<int64_t>(ReadBytes(file).size()), checkpoint->second.total_bytes());
  v1::GetStatusResponse status;
  ASSERT_TRUE(reader.GetStatus(v1::GetStatusRequest(), &status).ok());
  ASSERT_EQ(status.sweeps_size(), 1);
  EXPECT_EQ(status.sweeps(0).checkpoint_bytes(), 41670 + 48134 + 39366 + 51526);
  EXPECT_EQ(reader.JobCheckpoint(99).status().code(), Status::kNotFound);
}

// Rows of `sql` as text, through the raw C API: readable at any schema version.
std::vector<std::vector<std::string>> RawRows(const std::string& path, const std::string& sql) {
  std::vector<std::vector<std::string>> rows;
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK)
      << sqlite3_errmsg(db);
  while (stmt && sqlite3_step(stmt) == SQLITE_ROW) {
    auto& row = rows.emplace_back();
    for (int i = 0; i < sqlite3_column_count(stmt); ++i) {
      const unsigned char* text = sqlite3_column_text(stmt, i);
      row.push_back(text ? reinterpret_cast<const char*>(text) : "NULL");
    }
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return rows;
}

// One value per job, by job id, of a results query on a schema version 4 file.
std::map<int64_t, double> ResultsByJob(Database& db, const std::string& metric, v1::ValueAt at) {
  v1::ResultsRequest request;
  request.mutable_sweep()->set_name("v3-fixture");
  request.set_metric(metric);
  request.set_at(at);
  auto response = QueryResults(db, request);
  EXPECT_TRUE(response.ok()) << response.status().ToString();
  std::map<int64_t, double> values;
  if (!response.ok()) return values;
  EXPECT_EQ(response->metric(), metric);
  for (const v1::ResultRow& row : response->rows()) values[row.job_ids(0)] = row.mean();
  return values;
}

void ExpectSameValues(const std::map<int64_t, double>& got,
                      const std::map<int64_t, double>& expected) {
  ASSERT_EQ(got.size(), expected.size());
  for (const auto& [job, value] : expected) {
    ASSERT_EQ(got.count(job), 1u) << "job " << job;
    // The expected values went through SQLite's text form.
    EXPECT_NEAR(got.at(job), value, 1e-12) << "job " << job;
  }
}

std::map<int64_t, double> ValuesByJob(const std::vector<std::vector<std::string>>& rows) {
  std::map<int64_t, double> values;
  for (const auto& row : rows) values[std::stoll(row[0])] = std::stod(row[1]);
  return values;
}

// store/testdata/schema-v3: a sweep of 4 jobs run to the end by the release
// before named metrics (schema version 3; its fixture.yaml says how).
TEST(Migration, AVersionThreeFileIsUpgradedInPlaceWithEveryPointUnderItsMetricName) {
  TempDir dir;
  const std::string path = dir.File("v3.db");
  std::filesystem::copy_file(std::string(ABLATE_STORE_TESTDATA) + "/schema-v3/v3.db", path);
  ASSERT_EQ(RawRows(path, "PRAGMA user_version")[0][0], "3");
  // Before: every point by split, and what results are made of.
  const auto points_before =
      RawRows(path,
              "SELECT job_id, split || '_bpc', step, bpc, bytes_seen, wall_time, attempt "
              "FROM curve_points ORDER BY 1, 2, 3");
  const auto jobs_before = RawRows(
      path,
      "SELECT id, state, config_json, factors_json, final_train_bpc, final_valid_bpc, "
      "final_test_bpc, final_steps, checkpoint_file, checkpoint_sha256 FROM jobs ORDER BY id");
  const auto final_valid = ValuesByJob(RawRows(path, "SELECT id, final_valid_bpc FROM jobs"));
  const auto best_train = ValuesByJob(RawRows(
      path, "SELECT job_id, min(bpc) FROM curve_points WHERE split = 'train' GROUP BY job_id"));
  const auto last_valid =
      ValuesByJob(RawRows(path,
                          "SELECT job_id, bpc FROM curve_points p WHERE split = 'valid' AND step = "
                          "(SELECT max(step) FROM curve_points q WHERE q.job_id = p.job_id AND "
                          "q.split = 'valid')"));
  const auto curve_view_before =
      RawRows(path, "SELECT sweep, job_id, cell, split, step, bpc FROM curve ORDER BY 2, 4, 5");
  ASSERT_EQ(points_before.size(), 28u);
  ASSERT_EQ(final_valid.size(), 4u);

  EXPECT_EQ(OpenStoreReadOnly(path).status().code(), Status::kFailedPrecondition);
  {
    auto db = OpenStore(path);
    ASSERT_TRUE(db.ok()) << db.status().ToString();
  }
  EXPECT_EQ(RawRows(path, "PRAGMA user_version")[0][0], std::to_string(kStoreSchemaVersion));
  EXPECT_EQ(RawRows(path,
                    "SELECT job_id, metric, step, value, bytes_seen, wall_time, attempt "
                    "FROM curve_points ORDER BY 1, 2, 3"),
            points_before);
  EXPECT_EQ(
      RawRows(path, "SELECT metric, count(*) FROM curve_points GROUP BY metric ORDER BY metric"),
      (std::vector<std::vector<std::string>>{
          {"test_bpc", "4"}, {"train_bpc", "16"}, {"valid_bpc", "8"}}));
  EXPECT_EQ(RawRows(path,
                    "SELECT id, state, config_json, factors_json, final_train_bpc, "
                    "final_valid_bpc, final_test_bpc, final_steps, checkpoint_file, "
                    "checkpoint_sha256 FROM jobs ORDER BY id"),
            jobs_before);
  // The README's view queries read as before, and the view gains metric and value.
  EXPECT_EQ(
      RawRows(path, "SELECT sweep, job_id, cell, split, step, bpc FROM curve ORDER BY 2, 4, 5"),
      curve_view_before);
  EXPECT_EQ(RawRows(path, "SELECT count(*) FROM curve WHERE metric = 'valid_bpc' AND value = bpc"),
            (std::vector<std::vector<std::string>>{{"8"}}));
  EXPECT_EQ(RawRows(path, "SELECT metric_name, metric_goal FROM sweeps"),
            (std::vector<std::vector<std::string>>{{"", "minimize"}}));

  auto db = OpenStoreReadOnly(path);
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  ExpectSameValues(ResultsByJob(**db, "valid_bpc", v1::VALUE_AT_FINAL), final_valid);
  ExpectSameValues(ResultsByJob(**db, "train_bpc", v1::VALUE_AT_BEST), best_train);
  // Without the worker's final values, final is the curve's last point.
  {
    auto writable = OpenStore(path);
    ASSERT_TRUE(writable.ok());
    ASSERT_TRUE((*writable)->Exec("UPDATE jobs SET final_valid_bpc = NULL").ok());
  }
  ExpectSameValues(ResultsByJob(**db, "valid_bpc", v1::VALUE_AT_FINAL), last_valid);
}

TEST(Migration, UpgradedJobsRunTheBuiltInTrainerAndSweepsAreNeverSilenced) {
  TempDir dir;
  const std::string path = dir.File("v2.db");
  std::filesystem::copy_file(std::string(ABLATE_STORE_TESTDATA) + "/schema-v2/v2.db", path);
  auto db = OpenStore(path);
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  EXPECT_EQ(*(*db)->QueryInt("SELECT count(*) FROM jobs WHERE command_json = '[]'"), 4);
  EXPECT_EQ(*(*db)->QueryInt("SELECT count(*) FROM sweeps WHERE silence_ms = 0"), 1);
}

TEST_P(StoreFileTest, ReadOnlyOpenReadsButCannotWrite) {
  CreateWithOneWorker();
  auto db = OpenStoreReadOnly(path());
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  v1::ListWorkersResponse workers;
  ASSERT_TRUE(StoreReader(db->get()).ListWorkers(&workers).ok());
  ASSERT_EQ(workers.workers_size(), 1);
  EXPECT_EQ(workers.workers(0).name(), "w");
  Status write = (*db)->Run("DELETE FROM workers");
  EXPECT_EQ(write.code(), Status::kUnavailable) << write.ToString();
  EXPECT_EQ(*(*db)->QueryInt("SELECT COUNT(*) FROM workers"), 1);
}

TEST_P(StoreFileTest, ReadOnlyOpenOfMissingFileIsNotFound) {
  EXPECT_EQ(OpenStoreReadOnly(path()).status().code(), Status::kNotFound);
  EXPECT_FALSE(std::filesystem::exists(path()));
}

}  // namespace
}  // namespace ablate
