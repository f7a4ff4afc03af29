#include "store/writer.h"

#include <spdlog/spdlog.h>

#include <utility>

namespace ablate {

namespace {

bool IsDatabaseFailure(const Status& status) {
  return status.code() == Status::kUnavailable || status.code() == Status::kInternal ||
         status.code() == Status::kDataLoss;
}

}  // namespace

Writer::Writer(Database* db, Options options)
    : db_(db), options_(options), thread_([this] { Loop(); }) {}

Writer::~Writer() { Stop(); }

void Writer::Submit(Op op, Done done) {
  {
    MutexLock lock(&mu_);
    if (!stopping_ && queue_.size() < options_.max_queue) {
      queue_.push_back(Pending{std::move(op), std::move(done), Status()});
      if (queue_.size() == 1) wake_.Signal();
      return;
    }
  }
  done(Status::Unavailable("coordinator is overloaded or shutting down; retry"));
}

void Writer::Stop() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
  }
  wake_.Signal();
  if (thread_.joinable()) thread_.join();
}

Writer::Stats Writer::stats() const {
  MutexLock lock(&mu_);
  return stats_;
}

void Writer::Loop() {
  std::deque<Pending> batch;
  while (true) {
    {
      MutexLock lock(&mu_);
      while (!stopping_ && queue_.empty()) wake_.Wait();
      if (queue_.empty()) return;  // stopping, and everything is done
      size_t n = std::min(queue_.size(), options_.max_batch);
      for (size_t i = 0; i < n; ++i) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    RunBatch(batch);
    batch.clear();
  }
}

void Writer::RunBatch(std::deque<Pending>& batch) {
  Status failure = db_->Run("BEGIN IMMEDIATE");
  for (size_t i = 0; i < batch.size() && failure.ok(); ++i) {
    Pending& p = batch[i];
    failure = db_->Run("SAVEPOINT op");
    if (!failure.ok()) break;
    p.status = p.op(*db_);
    if (IsDatabaseFailure(p.status)) {
      failure = p.status;
      break;
    }
    if (!p.status.ok()) failure = db_->Run("ROLLBACK TO op");
    if (failure.ok()) failure = db_->Run("RELEASE op");
  }
  if (failure.ok()) failure = db_->Run("COMMIT");
  if (!failure.ok()) {
    // SQLite may already have rolled back by itself (disk full, I/O error).
    if (db_->InTransaction()) db_->Run("ROLLBACK");
    spdlog::warn("rolled back a batch of {} operations: {}", batch.size(), failure.ToString());
    Status retry = Status::Unavailable("not committed, retry: " + failure.message());
    for (Pending& p : batch) {
      if (!IsDatabaseFailure(p.status)) p.status = retry;
    }
  }
  {
    MutexLock lock(&mu_);
    ++stats_.batches;
    stats_.ops += batch.size();
    if (!failure.ok()) ++stats_.failed_batches;
  }
  for (Pending& p : batch) p.done(std::move(p.status));
}

}  // namespace ablate
