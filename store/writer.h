// The coordinator's single writer: every database operation of a running
// coordinator goes through one thread that takes whatever operations are
// queued, runs them in one transaction (each inside its own savepoint),
// commits once, and only then completes each operation. A thousand workers
// reporting at once thus cost a handful of commits per second, and a reply
// never acknowledges a write that is not committed.
#ifndef ABLATE_STORE_WRITER_H_
#define ABLATE_STORE_WRITER_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <thread>

#include "common/mutex.h"
#include "common/status.h"
#include "store/sqlite.h"

namespace ablate {

class Writer {
 public:
  // Runs inside the batch's transaction, on the writer thread. An error with
  // a code from the database (Unavailable, Internal, DataLoss) fails the whole
  // batch: it is rolled back and every operation in it gets the error. Any
  // other error undoes only this operation's changes.
  using Op = std::function<Status(Database& db)>;
  // Called on the writer thread after the batch committed (with the op's
  // status) or failed. Must not block: it runs before the next batch starts.
  using Done = std::function<void(Status status)>;

  struct Options {
    // Operations per transaction at most: bounds the wait of the last one.
    size_t max_batch = 1024;
    // Queued operations at most; beyond it Submit answers Unavailable at once
    // so an overloaded coordinator sheds load instead of growing.
    size_t max_queue = 100'000;
  };

  struct Stats {
    uint64_t batches = 0;  // transactions committed or rolled back
    uint64_t ops = 0;      // operations run
    uint64_t failed_batches = 0;
  };

  // `db` must outlive the Writer and is used by nothing else meanwhile.
  Writer(Database* db, Options options);
  explicit Writer(Database* db) : Writer(db, Options()) {}
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  // Queues `op`. Thread-safe. When the queue is full or the writer stopped,
  // `done` is called at once, on the caller's thread, with Unavailable.
  void Submit(Op op, Done done) EXCLUDES(mu_);

  // Runs what is queued, then stops the thread. Idempotent.
  void Stop() EXCLUDES(mu_);

  Stats stats() const EXCLUDES(mu_);

 private:
  struct Pending {
    Op op;
    Done done;
    Status status;
  };

  void Loop() EXCLUDES(mu_);
  void RunBatch(std::deque<Pending>& batch) EXCLUDES(mu_);

  Database* const db_;
  const Options options_;

  mutable Mutex mu_;
  CondVar wake_{&mu_};
  std::deque<Pending> queue_ GUARDED_BY(mu_);
  bool stopping_ GUARDED_BY(mu_) = false;
  Stats stats_ GUARDED_BY(mu_);

  std::thread thread_;
};

}  // namespace ablate

#endif  // ABLATE_STORE_WRITER_H_
