#include "storage/sqlite_db.h"

#include <utility>

namespace gw::storage {

Status sqlite_status(sqlite3* db, int rc, std::string_view what) {
  if (rc == SQLITE_OK || rc == SQLITE_DONE || rc == SQLITE_ROW) return Status::ok();
  std::string msg = std::string(what) + ": " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  switch (rc & 0xff) {
    case SQLITE_FULL: return Status::full(std::move(msg));
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return Status::error(Status::Code::kBusy, std::move(msg));
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: return Status::corrupt(std::move(msg));
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
    case SQLITE_READONLY: return Status::unavailable(std::move(msg));
    default: return Status::io_error(std::move(msg));
  }
}

Statement::Statement(Statement&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)), stmt_(std::exchange(other.stmt_, nullptr)) {}

Statement& Statement::operator=(Statement&& other) noexcept {
  if (this != &other) {
    sqlite3_finalize(stmt_);
    db_ = std::exchange(other.db_, nullptr);
    stmt_ = std::exchange(other.stmt_, nullptr);
  }
  return *this;
}

Statement::~Statement() { sqlite3_finalize(stmt_); }

Statement& Statement::bind(int index, int64_t value) {
  sqlite3_bind_int64(stmt_, index, value);
  return *this;
}

Statement& Statement::bind(int index, std::string_view text) {
  sqlite3_bind_text(stmt_, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
  return *this;
}

Statement& Statement::bind_blob(int index, std::string_view bytes) {
  sqlite3_bind_blob(stmt_, index, bytes.data(), static_cast<int>(bytes.size()), SQLITE_TRANSIENT);
  return *this;
}

Statement& Statement::bind_column(int index, const Statement& from, int col) {
  sqlite3_bind_value(stmt_, index, sqlite3_column_value(from.stmt_, col));
  return *this;
}

Result<bool> Statement::step() {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  Status s = sqlite_status(db_, rc, sqlite3_sql(stmt_));
  sqlite3_reset(stmt_);
  return s;
}

Status Statement::run() {
  for (;;) {
    Result<bool> r = step();
    if (!r) return r.status();
    if (!*r) break;
  }
  reset();
  return Status::ok();
}

void Statement::reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

int64_t Statement::column_int64(int col) const { return sqlite3_column_int64(stmt_, col); }

std::string_view Statement::column_blob(int col) const {
  const void* p = sqlite3_column_blob(stmt_, col);
  const int n = sqlite3_column_bytes(stmt_, col);
  return p ? std::string_view(static_cast<const char*>(p), static_cast<std::size_t>(n))
           : std::string_view();
}

std::string_view Statement::column_text(int col) const {
  const unsigned char* p = sqlite3_column_text(stmt_, col);
  const int n = sqlite3_column_bytes(stmt_, col);
  return p ? std::string_view(reinterpret_cast<const char*>(p), static_cast<std::size_t>(n))
           : std::string_view();
}

bool Statement::column_is_null(int col) const {
  return sqlite3_column_type(stmt_, col) == SQLITE_NULL;
}

Result<std::unique_ptr<SqliteDb>> SqliteDb::open(const std::string& path, bool read_only) {
  sqlite3* db = nullptr;
  const int flags = (read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
                    SQLITE_OPEN_NOMUTEX;
  const int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    Status s = sqlite_status(db, rc, "open " + path);
    sqlite3_close(db);
    return s;
  }
  sqlite3_extended_result_codes(db, 1);
  return std::unique_ptr<SqliteDb>(new SqliteDb(db));
}

SqliteDb::~SqliteDb() { sqlite3_close_v2(db_); }

Status SqliteDb::exec(std::string_view sql) {
  char* err = nullptr;
  const int rc = sqlite3_exec(db_, std::string(sql).c_str(), nullptr, nullptr, &err);
  sqlite3_free(err);
  return sqlite_status(db_, rc, sql);
}

Result<int64_t> SqliteDb::query_int(std::string_view sql) {
  Result<Statement> st = prepare(sql);
  if (!st) return st.status();
  Result<bool> row = st.value().step();
  if (!row) return row.status();
  return *row ? st.value().column_int64(0) : int64_t{0};
}

Result<std::string> SqliteDb::query_text(std::string_view sql) {
  Result<Statement> st = prepare(sql);
  if (!st) return st.status();
  Result<bool> row = st.value().step();
  if (!row) return row.status();
  return *row ? std::string(st.value().column_text(0)) : std::string();
}

Status SqliteDb::persist_wal(bool on) {
  int value = on ? 1 : 0;
  const int rc = sqlite3_file_control(db_, "main", SQLITE_FCNTL_PERSIST_WAL, &value);
  return sqlite_status(db_, rc, "SQLITE_FCNTL_PERSIST_WAL");
}

Status SqliteDb::set_chunk_size(int bytes) {
  const int rc = sqlite3_file_control(db_, "main", SQLITE_FCNTL_CHUNK_SIZE, &bytes);
  return sqlite_status(db_, rc, "SQLITE_FCNTL_CHUNK_SIZE");
}

Result<Statement> SqliteDb::prepare(std::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  const int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                                    SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
  if (rc != SQLITE_OK) return sqlite_status(db_, rc, sql);
  return Statement(db_, stmt);
}

}  // namespace gw::storage
