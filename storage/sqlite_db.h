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
  // Binds column `col` of the current row of `from`, keeping its type (text stays text).
  Statement& bind_column(int index, const Statement& from, int col);
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
  // The first column of the first row of `sql` as an integer (PRAGMA page_count, count(*)...);
  // 0 when there is no row or the value is NULL.
  Result<int64_t> query_int(std::string_view sql);
  // The first column of the first row as text ("ok" from PRAGMA quick_check).
  Result<std::string> query_text(std::string_view sql);
  // Whether a transaction is open on this connection (SQLite may have rolled one back by
  // itself after SQLITE_FULL or an I/O error).
  bool in_transaction() const { return sqlite3_get_autocommit(db_) == 0; }
  void set_busy_timeout(int ms) { sqlite3_busy_timeout(db_, ms); }
  int64_t last_insert_rowid() const { return sqlite3_last_insert_rowid(db_); }
  // Keeps the -wal file (and its allocated size) when the last connection closes.
  Status persist_wal(bool on);
  // Grows the database file in chunks of this many bytes (SQLITE_FCNTL_CHUNK_SIZE), so space
  // is allocated ahead of need rather than one page at a time.
  Status set_chunk_size(int bytes);
  sqlite3* handle() const { return db_; }

 private:
  explicit SqliteDb(sqlite3* db) : db_(db) {}
  sqlite3* db_;
};

// Maps an SQLite result code (with the connection's message) to a Status.
Status sqlite_status(sqlite3* db, int rc, std::string_view what);

}  // namespace gw::storage
