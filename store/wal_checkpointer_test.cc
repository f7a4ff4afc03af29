// WalCheckpointer on a real database file.
#include "store/wal_checkpointer.h"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "store/store.h"
#include "store/test_util.h"

namespace ablate {
namespace {

using testing::TempDir;

// About 2 MiB of rows, committed on the writer's connection one by one.
void CommitRows(Database& db) {
  const std::string padding(1024, 'x');
  for (int i = 0; i < 2000; ++i) {
    Status status = db.Run(
        "INSERT INTO workers (name, host, device, threads, version, registered_ms, "
        "last_seen_ms) VALUES (?, ?, 'cpu', 1, 'test', 0, 0)",
        "worker-" + std::to_string(i), padding);
    ASSERT_TRUE(status.ok()) << status.ToString();
  }
}

TEST(WalCheckpointer, CopiesTheLogIntoTheDatabaseFileWhileTheWriterNeverCheckpoints) {
  TempDir dir;
  const std::string path = dir.File("ablate.db");
  auto db = OpenStore(path);
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  auto checkpointer = WalCheckpointer::Start(
      path, db->get(), WalCheckpointer::Options{std::chrono::milliseconds(5)});
  ASSERT_TRUE(checkpointer.ok()) << checkpointer.status().ToString();
  ASSERT_NE(*checkpointer, nullptr);
  // The writer now checkpoints only past kWriterCheckpointPages, far more
  // than these rows fill: whatever reaches the file, the checkpointer copied.
  EXPECT_EQ(*(*db)->QueryInt("PRAGMA wal_autocheckpoint"), kWriterCheckpointPages);

  const auto before = std::filesystem::file_size(path);
  CommitRows(**db);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::filesystem::file_size(path) < before + (1 << 20) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_GE(std::filesystem::file_size(path), before + (1 << 20));
}

TEST(WalCheckpointer, InMemoryDatabaseNeedsNone) {
  auto db = OpenStore(":memory:");
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  auto checkpointer = WalCheckpointer::Start(":memory:", db->get());
  ASSERT_TRUE(checkpointer.ok()) << checkpointer.status().ToString();
  EXPECT_EQ(*checkpointer, nullptr);
}

}  // namespace
}  // namespace ablate
