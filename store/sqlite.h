// A small RAII wrapper over SQLite's C API: one connection, a cache of
// prepared statements reused across calls, and results as Status values.
//
// Thread safety: a Database is used by one thread at a time (the coordinator's
// writer thread, or the CLI's main thread).
#ifndef ABLATE_STORE_SQLITE_H_
#define ABLATE_STORE_SQLITE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/status.h"

struct sqlite3;
struct sqlite3_stmt;

namespace ablate {

// Maps an SQLite result code to a Status. Conditions a retry may cure (disk
// full, read-only file, I/O error, a lock held by another connection) become
// Unavailable; a damaged or foreign file becomes DataLoss; anything else is
// Internal.
Status SqliteStatus(int rc, const std::string& message);

// A prepared statement borrowed from a Database's cache, with its parameters
// bound. Step through the result rows with Next(); the statement is reset when
// the Rows goes away. At most one Rows per SQL text may be alive at a time.
class Rows {
 public:
  Rows(Rows&& other) noexcept;
  Rows& operator=(Rows&&) = delete;
  Rows(const Rows&) = delete;
  ~Rows();

  // True when a row is available; false when the statement is done.
  StatusOr<bool> Next();

  // NULL reads as 0, 0.0 and "".
  int64_t Int(int column) const;
  double Double(int column) const;
  std::string Text(int column) const;

 private:
  friend class Database;
  // One cached prepared statement; in_use catches two live Rows on one text.
  struct Slot {
    sqlite3_stmt* stmt = nullptr;
    bool in_use = false;
  };
  explicit Rows(Slot* slot) : slot_(slot), stmt_(slot->stmt) { slot->in_use = true; }
  Slot* slot_;
  sqlite3_stmt* stmt_;
};

class Database {
 public:
  enum class Mode { kReadWrite, kReadOnly };

  // Opens (kReadWrite: creating) the file at `path`; ":memory:" is a private
  // in-memory database. Sets the busy timeout. Touches nothing in the file.
  static StatusOr<std::unique_ptr<Database>> Open(const std::string& path, Mode mode,
                                                  int busy_timeout_ms = 5000);
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  // Runs one or more statements without parameters (schema, pragmas).
  Status Exec(const std::string& sql);

  // Runs a statement to completion with `args` bound to its `?` parameters in
  // order. Arguments may be integers, doubles, strings, bools, std::nullopt or
  // std::optional of those.
  template <typename... Args>
  Status Run(std::string_view sql, const Args&... args) {
    ABLATE_ASSIGN_OR_RETURN(Rows rows, Query(sql, args...));
    while (true) {
      ABLATE_ASSIGN_OR_RETURN(bool row, rows.Next());
      if (!row) return Status::OK();
    }
  }

  // Prepares (once per SQL text) and binds a statement; step it with Next().
  template <typename... Args>
  StatusOr<Rows> Query(std::string_view sql, const Args&... args) {
    ABLATE_ASSIGN_OR_RETURN(Rows rows, Borrow(sql));
    if constexpr (sizeof...(Args) > 0) {
      int index = 0;
      Status status;
      ((status.ok() ? (void)(status = Bind(rows.stmt_, ++index, args)) : (void)0), ...);
      if (!status.ok()) return status;
    }
    return rows;
  }

  // Runs a query expected to yield one integer (COUNT, a pragma value).
  template <typename... Args>
  StatusOr<int64_t> QueryInt(std::string_view sql, const Args&... args) {
    ABLATE_ASSIGN_OR_RETURN(Rows rows, Query(sql, args...));
    ABLATE_ASSIGN_OR_RETURN(bool row, rows.Next());
    if (!row) return Status::NotFound(std::string("no row from: ") + std::string(sql));
    return rows.Int(0);
  }

  // Rows changed by the latest INSERT, UPDATE or DELETE.
  int64_t Changes() const;
  int64_t LastInsertRowId() const;
  // False while a transaction is open. SQLite rolls back by itself after some
  // errors (disk full, I/O); this tells whether it did.
  bool InTransaction() const;

 private:
  friend class Rows;
  explicit Database(sqlite3* db) : db_(db) {}

  StatusOr<Rows> Borrow(std::string_view sql);

  Status Bind(sqlite3_stmt* stmt, int index, int64_t value);
  Status Bind(sqlite3_stmt* stmt, int index, int value) {
    return Bind(stmt, index, int64_t{value});
  }
  Status Bind(sqlite3_stmt* stmt, int index, bool value) {
    return Bind(stmt, index, int64_t{value});
  }
  Status Bind(sqlite3_stmt* stmt, int index, double value);
  Status Bind(sqlite3_stmt* stmt, int index, std::string_view value);
  Status Bind(sqlite3_stmt* stmt, int index, const std::string& value) {
    return Bind(stmt, index, std::string_view(value));
  }
  Status Bind(sqlite3_stmt* stmt, int index, const char* value) {
    return Bind(stmt, index, std::string_view(value));
  }
  Status Bind(sqlite3_stmt* stmt, int index, std::nullopt_t);
  template <typename T>
  Status Bind(sqlite3_stmt* stmt, int index, const std::optional<T>& value) {
    return value ? Bind(stmt, index, *value) : Bind(stmt, index, std::nullopt);
  }

  sqlite3* db_;
  // Keyed by SQL text; node-based, so a Slot stays put while Rows point at it.
  std::unordered_map<std::string, Rows::Slot> cache_;
};

}  // namespace ablate

#endif  // ABLATE_STORE_SQLITE_H_
