// The coordinator's database: opening it, recognising it, and bringing its
// schema up to date. Everything else reads and writes it through a Database.
//
// Durability: the database runs in WAL mode. With Sync::kNormal (the default)
// a commit is not fsynced: a crash of the process loses nothing, a power loss
// or kernel crash may lose the last commits (the file stays consistent).
// Sync::kFull fsyncs the WAL on every commit, so an acknowledged write also
// survives a power loss, at a few milliseconds per group commit.
#ifndef ABLATE_STORE_STORE_H_
#define ABLATE_STORE_STORE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "common/status.h"
#include "store/sqlite.h"

namespace ablate {

// Written to the file header (PRAGMA application_id): "ABLT".
inline constexpr int32_t kStoreApplicationId = 0x41424c54;
// PRAGMA user_version of the newest schema this binary knows.
inline constexpr int kStoreSchemaVersion = 4;

struct StoreOptions {
  enum class Sync { kNormal, kFull };
  Sync sync = Sync::kNormal;
  // How long a statement waits for a lock held by another connection before
  // failing with Unavailable.
  int busy_timeout_ms = 5000;
};

// Opens the database at `path` (":memory:" for a private in-memory one) for
// the coordinator, creating it or migrating its schema forward as needed.
// A file that is not an ablate database, or whose schema is newer than this
// binary knows, is refused (FailedPrecondition, DataLoss for a non-SQLite
// file) and left exactly as it was.
StatusOr<std::unique_ptr<Database>> OpenStore(const std::string& path,
                                              const StoreOptions& options = {});

// Opens an existing database at `path` read-only, e.g. for `ablate status`
// while no coordinator runs. Refuses the same files as OpenStore, and also a
// schema older than this binary's (it cannot be migrated without writing).
StatusOr<std::unique_ptr<Database>> OpenStoreReadOnly(const std::string& path);

}  // namespace ablate

#endif  // ABLATE_STORE_STORE_H_
