#include "storage/schema.h"

#include "storage/sqlite_db.h"

namespace gw::storage::schema {

namespace {

// Version 1, as the first gatewayd wrote it (frozen). The cursors and state tables came later
// within version 1, so a version-1 file may lack them; step 1 -> 2 creates them if missing.
Status to_v1(SqliteDb& db, int64_t) {
  return db.exec(R"sql(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events(
  seq INTEGER PRIMARY KEY,
  class INTEGER NOT NULL,
  device_id TEXT NOT NULL,
  gateway_time_us INTEGER NOT NULL,
  payload BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_class ON events(class, seq);
CREATE TABLE IF NOT EXISTS cursors(device_id TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS state(key TEXT PRIMARY KEY, value BLOB NOT NULL);
)sql");
}

// Version 2: store-and-forward bounds.
//   events.stored_at_us  buffer-clock time of the commit (retention ages, immune to wall steps)
//   events.pinned        1 for rows never evicted to make room (gap events)
//   evictions            rows removed undelivered, until a gap event announcing them commits
//                        (AUTOINCREMENT: an id is never reused, even right after a delete)
//   spare                padding rows holding the reserve's pages (one row per page)
Status to_v2(SqliteDb& db, int64_t now_us) {
  if (Status s = db.exec(R"sql(
CREATE TABLE IF NOT EXISTS cursors(device_id TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS state(key TEXT PRIMARY KEY, value BLOB NOT NULL);
ALTER TABLE events ADD COLUMN stored_at_us INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0;
CREATE TABLE evictions(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  class INTEGER NOT NULL,
  first_seq INTEGER NOT NULL,
  last_seq INTEGER NOT NULL,
  count INTEGER NOT NULL,
  reason TEXT NOT NULL);
CREATE TABLE spare(id INTEGER PRIMARY KEY, pad BLOB NOT NULL);
)sql");
      !s) {
    return s;
  }
  // Rows of an older file start ageing at the upgrade: their commit time is not known.
  if (Status s = db.exec("UPDATE events SET stored_at_us=" + std::to_string(now_us)); !s) return s;
  return db.exec("INSERT INTO meta(key, value) VALUES('compat_version', 2) "
                 "ON CONFLICT(key) DO UPDATE SET value=excluded.value");
}

}  // namespace

const std::vector<Migration>& migrations() {
  static const std::vector<Migration> kSteps = {
      {0, 1, "create the version-1 tables", &to_v1},
      {1, 2, "add stored_at_us, pinned, evictions and the reserve (spare)", &to_v2},
  };
  return kSteps;
}

Result<FileVersion> read_version(SqliteDb& db) {
  FileVersion v;
  Result<int64_t> version = db.query_int("PRAGMA user_version");
  if (!version) return version.status();
  v.version = static_cast<int>(*version);
  Result<int64_t> has_meta =
      db.query_int("SELECT count(*) FROM sqlite_master WHERE type='table' AND name='meta'");
  if (!has_meta) return has_meta.status();
  if (*has_meta) {
    Result<int64_t> compat = db.query_int("SELECT value FROM meta WHERE key='compat_version'");
    if (!compat) return compat.status();
    v.compat_version = static_cast<int>(*compat);
  }
  return v;
}

Status check_usable(const FileVersion& v, const std::string& path) {
  if (v.version < 0) {
    return Status::corrupt(path + " has schema version " + std::to_string(v.version));
  }
  if (v.version <= kVersion) return Status::ok();
  if (v.compat_version != 0 && v.compat_version <= kVersion) return Status::ok();
  return Status::unavailable(
      "buffer " + path + " has schema version " + std::to_string(v.version) +
      " and needs a gatewayd that understands version " +
      std::to_string(v.compat_version ? v.compat_version : v.version) +
      "; this gatewayd understands up to " + std::to_string(kVersion) +
      ". The file was left unchanged: run the newer gatewayd again, or move the file aside to "
      "start with an empty buffer (its events are then not sent)");
}

Result<std::vector<std::string>> migrate(SqliteDb& db, const FileVersion& v, int64_t now_us) {
  std::vector<std::string> done;
  int at = v.version;
  for (const Migration& m : migrations()) {
    if (m.from != at || at >= kVersion) continue;
    if (Status s = db.exec("BEGIN IMMEDIATE"); !s) return s;
    Status s = m.apply(db, now_us);
    if (s) s = db.exec("PRAGMA user_version=" + std::to_string(m.to));
    if (s) s = db.exec("COMMIT");
    if (!s) {
      if (db.in_transaction()) (void)db.exec("ROLLBACK");
      return Status::error(s.code(), "schema migration " + std::to_string(m.from) + " -> " +
                                         std::to_string(m.to) + " (" + m.what +
                                         ") failed: " + s.message());
    }
    done.push_back("schema " + std::to_string(m.from) + " -> " + std::to_string(m.to) + ": " +
                   m.what);
    at = m.to;
  }
  if (at < kVersion) {
    return Status::corrupt("no migration from schema version " + std::to_string(at));
  }
  return done;
}

}  // namespace gw::storage::schema
