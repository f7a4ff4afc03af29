// WalCheckpointer: copies the database's write-ahead log back into the
// database file on a thread and connection of its own, so that the writer's
// commits do not wait for it.
//
// Left to itself, SQLite checkpoints inside the commit that takes the log
// past 1,000 pages: two fsyncs and ~4 MB of page copies, 20-35 ms on a VM's
// disk, during which the batch's replies and every request queued behind it
// wait. Under a thousand reporting workers that happens about once a second
// and sets the p99 report latency (bench/coordinator_load).
//
// The log starts over from its beginning only at a write that finds it
// wholly copied, which a writer committing without pause seldom gives a
// concurrent checkpoint; so the writer's connection keeps SQLite's own
// checkpoint, at kWriterCheckpointPages instead of 1,000, as the bound on
// the log's size. An idle coordinator's log is copied within a period.
#ifndef ABLATE_STORE_WAL_CHECKPOINTER_H_
#define ABLATE_STORE_WAL_CHECKPOINTER_H_

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "common/mutex.h"
#include "common/status.h"
#include "store/sqlite.h"

namespace ablate {

// The writer's own checkpoint threshold (PRAGMA wal_autocheckpoint) while a
// WalCheckpointer runs: 64 MiB of log with 4 KiB pages.
inline constexpr int kWriterCheckpointPages = 16384;

class WalCheckpointer {
 public:
  struct Options {
    // How often the log is copied; an up-to-date log costs one query.
    std::chrono::milliseconds period{250};
  };

  // Raises `writer`'s checkpoint threshold to kWriterCheckpointPages, then
  // checkpoints the database file at `path`, which `writer` has open, every
  // period on a connection of its own. Null when the database keeps no
  // write-ahead log (":memory:"): there is nothing to copy. Call before
  // `writer` is in use on another thread.
  static StatusOr<std::unique_ptr<WalCheckpointer>> Start(const std::string& path, Database* writer,
                                                          Options options);
  static StatusOr<std::unique_ptr<WalCheckpointer>> Start(const std::string& path,
                                                          Database* writer) {
    return Start(path, writer, Options());
  }
  // Stops the thread (a checkpoint under way finishes first).
  ~WalCheckpointer() EXCLUDES(mu_);
  WalCheckpointer(const WalCheckpointer&) = delete;
  WalCheckpointer& operator=(const WalCheckpointer&) = delete;

 private:
  WalCheckpointer(std::unique_ptr<Database> db, Options options);
  void Loop() EXCLUDES(mu_);
  // Waits `period`, less when the checkpointer is stopped meanwhile; true
  // when it is.
  bool StoppedWithin(std::chrono::milliseconds period) REQUIRES(mu_);

  const std::unique_ptr<Database> db_;  // used only by the thread
  const Options options_;
  Mutex mu_;
  CondVar wake_{&mu_};
  bool stopping_ GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace ablate

#endif  // ABLATE_STORE_WAL_CHECKPOINTER_H_
