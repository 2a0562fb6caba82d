// SqliteDb and Statement: the small RAII layer over the SQLite C API that the buffer needs.
// Every SQLite failure comes back as a Status naming the statement and SQLite's own message;
// SQLITE_FULL becomes kFull and SQLITE_BUSY kBusy so callers can tell a full disk from a bug.
// Not thread-safe: one owner thread per connection.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "protocols/status.h"

namespace gw::storage {

class Statement {
 public:
  Statement() = default;
  Statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&& other) noexcept;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement();

  Statement& bind(int index, int64_t value);
  Statement& bind(int index, std::string_view text);
  Statement& bind_blob(int index, std::string_view bytes);
  // Runs one step: true when a row is available, false when done.
  Result<bool> step();
  // Runs to completion, ignoring rows, then resets for the next use.
  Status run();
  void reset();

  int64_t column_int64(int col) const;
  std::string_view column_blob(int col) const;
  std::string_view column_text(int col) const;
  bool column_is_null(int col) const;

 private:
  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
};

class SqliteDb {
 public:
  // read_only: never creates the file and never writes (for inspecting a live buffer).
  static Result<std::unique_ptr<SqliteDb>> open(const std::string& path, bool read_only = false);
  ~SqliteDb();
  SqliteDb(const SqliteDb&) = delete;
  SqliteDb& operator=(const SqliteDb&) = delete;

  Status exec(std::string_view sql);
  Result<Statement> prepare(std::string_view sql);
  sqlite3* handle() const { return db_; }

 private:
  explicit SqliteDb(sqlite3* db) : db_(db) {}
  sqlite3* db_;
};

// Maps an SQLite result code (with the connection's message) to a Status.
Status sqlite_status(sqlite3* db, int rc, std::string_view what);

}  // namespace gw::storage
