#include "store/sqlite.h"

#include <sqlite3.h>

#include <cstdio>
#include <cstdlib>

namespace ablate {

Status SqliteStatus(int rc, const std::string& message) {
  switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
      return Status::OK();
    case SQLITE_FULL:
    case SQLITE_READONLY:
    case SQLITE_IOERR:
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_CANTOPEN:
    case SQLITE_NOMEM:
    case SQLITE_PROTOCOL:
      return Status::Unavailable("database: " + message);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return Status::DataLoss("database: " + message);
    default:
      return Status::Internal("database: " + message);
  }
}

namespace {

Status StatementError(sqlite3_stmt* stmt, int rc) {
  sqlite3* db = sqlite3_db_handle(stmt);
  return SqliteStatus(rc, std::string(sqlite3_errmsg(db)) + " in: " + sqlite3_sql(stmt));
}

}  // namespace

Rows::Rows(Rows&& other) noexcept : slot_(other.slot_), stmt_(other.stmt_) {
  other.slot_ = nullptr;
  other.stmt_ = nullptr;
}

Rows::~Rows() {
  if (slot_ == nullptr) return;
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
  slot_->in_use = false;
}

StatusOr<bool> Rows::Next() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return StatementError(stmt_, rc);
}

int64_t Rows::Int(int column) const { return sqlite3_column_int64(stmt_, column); }

double Rows::Double(int column) const { return sqlite3_column_double(stmt_, column); }

std::string Rows::Text(int column) const {
  const unsigned char* text = sqlite3_column_text(stmt_, column);
  if (text == nullptr) return {};
  return std::string(reinterpret_cast<const char*>(text), sqlite3_column_bytes(stmt_, column));
}

StatusOr<std::unique_ptr<Database>> Database::Open(const std::string& path, Mode mode,
                                                   int busy_timeout_ms) {
  int flags =
      mode == Mode::kReadOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
  // The writer and the gRPC threads never share a connection; no SQLite mutex needed.
  flags |= SQLITE_OPEN_NOMUTEX;
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    std::string message = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close(db);
    if ((rc & 0xff) == SQLITE_CANTOPEN) {
      return Status::NotFound("cannot open database " + path + ": " + message);
    }
    return SqliteStatus(rc, "cannot open " + path + ": " + message);
  }
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, busy_timeout_ms);
  return std::unique_ptr<Database>(new Database(db));
}

Database::~Database() {
  for (auto& [sql, slot] : cache_) {
    if (slot.in_use) {
      std::fprintf(stderr, "Database closed while a statement is in use: %s\n", sql.c_str());
      std::abort();
    }
    sqlite3_finalize(slot.stmt);
  }
  sqlite3_close(db_);
}

Status Database::Exec(const std::string& sql) {
  char* error = nullptr;
  int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error);
  if (rc == SQLITE_OK) return Status::OK();
  std::string message = error ? error : sqlite3_errstr(rc);
  sqlite3_free(error);
  return SqliteStatus(rc, message);
}

StatusOr<Rows> Database::Borrow(std::string_view sql) {
  auto it = cache_.find(std::string(sql));
  if (it == cache_.end()) {
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                                SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
    if (rc != SQLITE_OK) {
      return SqliteStatus(rc, std::string(sqlite3_errmsg(db_)) + " in: " + std::string(sql));
    }
    it = cache_.emplace(std::string(sql), Rows::Slot{stmt, false}).first;
  }
  if (it->second.in_use) {
    std::fprintf(stderr, "statement used twice at once: %s\n", it->first.c_str());
    std::abort();
  }
  return Rows(&it->second);
}

Status Database::Bind(sqlite3_stmt* stmt, int index, int64_t value) {
  int rc = sqlite3_bind_int64(stmt, index, value);
  return rc == SQLITE_OK ? Status::OK() : StatementError(stmt, rc);
}

Status Database::Bind(sqlite3_stmt* stmt, int index, double value) {
  int rc = sqlite3_bind_double(stmt, index, value);
  return rc == SQLITE_OK ? Status::OK() : StatementError(stmt, rc);
}

Status Database::Bind(sqlite3_stmt* stmt, int index, std::string_view value) {
  int rc =
      sqlite3_bind_text64(stmt, index, value.data(), value.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
  return rc == SQLITE_OK ? Status::OK() : StatementError(stmt, rc);
}

Status Database::Bind(sqlite3_stmt* stmt, int index, std::nullopt_t) {
  int rc = sqlite3_bind_null(stmt, index);
  return rc == SQLITE_OK ? Status::OK() : StatementError(stmt, rc);
}

int64_t Database::Changes() const { return sqlite3_changes64(db_); }

int64_t Database::LastInsertRowId() const { return sqlite3_last_insert_rowid(db_); }

bool Database::InTransaction() const { return sqlite3_get_autocommit(db_) == 0; }

}  // namespace ablate
