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
    MutexLock lock(&mu_);
    stopping_ = true;
  }
  wake_.Signal();
  thread_.join();
}

void WalCheckpointer::Loop() {
  std::string last_error;
  MutexLock lock(&mu_);
  while (!StoppedWithin(options_.period)) {
    mu_.Unlock();
    // PASSIVE copies what no reader still needs and never waits for a lock,
    // so it holds up neither the writer nor a reader.
    StatusOr<int64_t> busy = db_->QueryInt("PRAGMA wal_checkpoint(PASSIVE)");
    // A failing disk fails the writer's commits too; say it once, not 4 times a second.
    std::string error = busy.ok() ? "" : busy.status().ToString();
    if (error != last_error && !error.empty()) spdlog::warn("checkpointing the log: {}", error);
    last_error = std::move(error);
    mu_.Lock();
  }
}

bool WalCheckpointer::StoppedWithin(std::chrono::milliseconds period) {
  const auto deadline = std::chrono::steady_clock::now() + period;
  bool timed_out = false;
  while (!stopping_ && !timed_out) timed_out = wake_.WaitUntil(deadline);
  return stopping_;
}

}  // namespace ablate
