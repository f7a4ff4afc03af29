#include "store/wal_checkpointer.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <utility>

namespace ablate {

StatusOr<std::unique_ptr<WalCheckpointer>> WalCheckpointer::Start(const std::string& path,
                                                                  Database* writer,
                                                                  Options options) {
  ABLATE_ASSIGN_OR_RETURN(Rows mode, writer->Query("PRAGMA journal_mode"));
  ABLATE_ASSIGN_OR_RETURN(bool row, mode.Next());
  if (!row || mode.Text(0) != "wal") return std::unique_ptr<WalCheckpointer>();
  ABLATE_RETURN_IF_ERROR(
      writer->Exec(fmt::format("PRAGMA wal_autocheckpoint = {}", kWriterCheckpointPages)));
  ABLATE_ASSIGN_OR_RETURN(auto db, Database::Open(path, Database::Mode::kReadWrite));
  return std::unique_ptr<WalCheckpointer>(new WalCheckpointer(std::move(db), options));
}

WalCheckpointer::WalCheckpointer(std::unique_ptr<Database> db, Options options)
    : db_(std::move(db)), options_(options), thread_([this] { Loop(); }) {}

WalCheckpointer::~WalCheckpointer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

void WalCheckpointer::Loop() {
  std::string last_error;
  std::unique_lock<std::mutex> lock(mu_);
  while (!wake_.wait_for(lock, options_.period, [this] { return stopping_; })) {
    lock.unlock();
    // PASSIVE copies what no reader still needs and never waits for a lock,
    // so it holds up neither the writer nor a reader.
    StatusOr<int64_t> busy = db_->QueryInt("PRAGMA wal_checkpoint(PASSIVE)");
    // A failing disk fails the writer's commits too; say it once, not 4 times a second.
    std::string error = busy.ok() ? "" : busy.status().ToString();
    if (error != last_error && !error.empty()) spdlog::warn("checkpointing the log: {}", error);
    last_error = std::move(error);
    lock.lock();
  }
}

}  // namespace ablate
