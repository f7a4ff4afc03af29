#include "store/writer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "store/store.h"
#include "store/test_util.h"

namespace ablate {
namespace {

using testing::Await;
using testing::TempDir;

Status InsertWorker(Database& db, const std::string& name) {
  return db.Run(
      "INSERT INTO workers (name, host, device, threads, version, registered_ms, last_seen_ms) "
      "VALUES (?, 'h', 'cpu', 1, 'v', 0, 0)",
      name);
}

int64_t CountWorkers(Database& db) { return *db.QueryInt("SELECT COUNT(*) FROM workers"); }

class WriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = OpenStore(path_);
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    db_ = std::move(db).value();
  }

  Status Write(Writer& writer, const std::string& name) {
    return Await([&](Writer::Done done) {
      writer.Submit([name](Database& db) { return InsertWorker(db, name); }, std::move(done));
    });
  }

  TempDir dir_;
  std::string path_ = dir_.File("ablate.db");
  std::unique_ptr<Database> db_;
};

TEST_F(WriterTest, ConcurrentWritesAreAckedOnlyAfterCommitInFewTransactions) {
  constexpr int kThreads = 16;
  constexpr int kWritesPerThread = 100;
  Writer writer(db_.get());
  // A second connection sees only what is committed.
  auto observer = OpenStoreReadOnly(path_);
  ASSERT_TRUE(observer.ok()) << observer.status().ToString();
  std::atomic<int> acked{0};
  std::atomic<int> acked_uncommitted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<std::shared_ptr<std::promise<void>>> waits;
      for (int i = 0; i < kWritesPerThread; ++i) {
        auto acked_promise = std::make_shared<std::promise<void>>();
        waits.push_back(acked_promise);
        std::string name = std::to_string(t) + "/" + std::to_string(i);
        writer.Submit([name](Database& db) { return InsertWorker(db, name); },
                      [&, name, acked_promise](Status status) {
                        EXPECT_TRUE(status.ok()) << status.ToString();
                        // Runs on the writer thread, the only user of `observer`.
                        auto seen = (*observer)->QueryInt(
                            "SELECT COUNT(*) FROM workers WHERE name = ?", name);
                        if (!seen.ok() || *seen != 1) ++acked_uncommitted;
                        ++acked;
                        acked_promise->set_value();
                      });
      }
      for (auto& w : waits) w->get_future().wait();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(acked.load(), kThreads * kWritesPerThread);
  EXPECT_EQ(acked_uncommitted.load(), 0);
  EXPECT_EQ(CountWorkers(**observer), kThreads * kWritesPerThread);
  Writer::Stats stats = writer.stats();
  EXPECT_EQ(stats.ops, uint64_t{kThreads * kWritesPerThread});
  EXPECT_LT(stats.batches, stats.ops / 4) << "writes were not grouped into transactions";
}

TEST_F(WriterTest, FailedOperationUndoesOnlyItsOwnChanges) {
  Writer writer(db_.get());
  std::promise<void> gate;
  auto opened = gate.get_future().share();
  // Holds the writer so that the next three land in one batch.
  writer.Submit(
      [opened](Database&) {
        opened.wait();
        return Status::OK();
      },
      [](Status) {});
  std::vector<std::shared_ptr<std::promise<Status>>> results;
  auto submit = [&](Writer::Op op) {
    auto result = std::make_shared<std::promise<Status>>();
    results.push_back(result);
    writer.Submit(std::move(op), [result](Status s) { result->set_value(s); });
  };
  submit([](Database& db) { return InsertWorker(db, "kept-1"); });
  submit([](Database& db) {
    Status inserted = InsertWorker(db, "undone");
    if (!inserted.ok()) return inserted;
    return Status::InvalidArgument("changed my mind");
  });
  submit([](Database& db) { return InsertWorker(db, "kept-2"); });
  gate.set_value();
  EXPECT_TRUE(results[0]->get_future().get().ok());
  EXPECT_EQ(results[1]->get_future().get().code(), Status::kInvalidArgument);
  EXPECT_TRUE(results[2]->get_future().get().ok());
  writer.Stop();
  EXPECT_EQ(CountWorkers(*db_), 2);
  EXPECT_EQ(*db_->QueryInt("SELECT COUNT(*) FROM workers WHERE name = 'undone'"), 0);
}

TEST_F(WriterTest, FullDiskIsUnavailableAndTheWriterRecovers) {
  Writer writer(db_.get());
  ASSERT_TRUE(Write(writer, "before").ok());
  // Caps the file at its current size: the next growth fails with SQLITE_FULL,
  // as on a full disk.
  ASSERT_TRUE(Await([&](Writer::Done done) {
                writer.Submit(
                    [](Database& db) {
                      return db.Exec("PRAGMA max_page_count = " +
                                     std::to_string(*db.QueryInt("PRAGMA page_count")));
                    },
                    std::move(done));
              }).ok());
  Status full;
  for (int i = 0; i < 1000 && full.ok(); ++i)
    full = Write(writer, std::string(2000, 'a' + i % 26) + std::to_string(i));
  EXPECT_EQ(full.code(), Status::kUnavailable) << full.ToString();

  ASSERT_TRUE(Await([&](Writer::Done done) {
                writer.Submit(
                    [](Database& db) { return db.Exec("PRAGMA max_page_count = 1000000"); },
                    std::move(done));
              }).ok());
  EXPECT_TRUE(Write(writer, "after").ok());
  writer.Stop();
  EXPECT_EQ(*db_->QueryInt("SELECT COUNT(*) FROM workers WHERE name IN ('before', 'after')"), 2);
}

TEST_F(WriterTest, LockedDatabaseIsUnavailableAndTheWriterRecovers) {
  db_.reset();
  auto db = Database::Open(path_, Database::Mode::kReadWrite, /*busy_timeout_ms=*/50);
  ASSERT_TRUE(db.ok());
  Writer writer(db->get());
  // Another process holding the write lock, e.g. a sqlite3 shell mid-transaction.
  auto other = Database::Open(path_, Database::Mode::kReadWrite);
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE((*other)->Exec("BEGIN IMMEDIATE").ok());
  Status locked = Write(writer, "while locked");
  EXPECT_EQ(locked.code(), Status::kUnavailable) << locked.ToString();
  ASSERT_TRUE((*other)->Exec("COMMIT").ok());
  EXPECT_TRUE(Write(writer, "after").ok());
  writer.Stop();
  EXPECT_EQ(CountWorkers(**db), 1);
}

TEST_F(WriterTest, ReadOnlyDatabaseIsUnavailable) {
  db_.reset();
  auto db = OpenStoreReadOnly(path_);
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  Writer writer(db->get());
  Status status = Write(writer, "w");
  EXPECT_EQ(status.code(), Status::kUnavailable) << status.ToString();
}

TEST_F(WriterTest, StopCommitsWhatIsQueued) {
  constexpr int kWrites = 500;
  std::atomic<int> ok{0};
  {
    Writer writer(db_.get());
    for (int i = 0; i < kWrites; ++i) {
      writer.Submit([i](Database& db) { return InsertWorker(db, std::to_string(i)); },
                    [&ok](Status s) { ok += s.ok(); });
    }
  }
  EXPECT_EQ(ok.load(), kWrites);
  EXPECT_EQ(CountWorkers(*db_), kWrites);
}

TEST_F(WriterTest, SubmitAfterStopIsUnavailable) {
  Writer writer(db_.get());
  writer.Stop();
  EXPECT_EQ(Write(writer, "late").code(), Status::kUnavailable);
}

}  // namespace
}  // namespace ablate
