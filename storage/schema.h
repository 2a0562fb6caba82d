// The layout of the buffer file and the migrations between its versions.
//
// PRAGMA user_version holds the file's schema version; the meta row 'compat_version' holds the
// oldest schema version a gatewayd must understand to use the file safely. Opening:
//   - an older file is migrated step by step, each step one transaction (a crash mid-way
//     leaves the file at the previous step, and the next start continues);
//   - a newer file is used as it is, without any write to its layout, when its compat_version is
//     one this code understands (an additive change: new columns with defaults, new tables);
//   - otherwise it is refused with a message saying which versions are involved, and nothing in
//     it is changed (a downgraded package must not damage the buffer a newer one left).
//
// Changing the layout: append a Migration step and raise kVersion; never edit a step that has
// shipped. Raise kCompatVersion only when older code would misuse the new layout.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "protocols/status.h"

namespace gw::storage {

class SqliteDb;

namespace schema {

inline constexpr int kVersion = 2;
inline constexpr int kCompatVersion = 2;

struct Migration {
  int from;
  int to;
  const char* what;  // one line for the log
  // `now_us` is the buffer clock, for columns that need a starting value.
  Status (*apply)(SqliteDb& db, int64_t now_us);
};

// Every step, in order: 0 (empty file) -> 1 -> 2 ...
const std::vector<Migration>& migrations();

struct FileVersion {
  int version = 0;         // PRAGMA user_version
  int compat_version = 0;  // meta 'compat_version'; 0 when the file does not say
};
// Reads the versions without writing anything.
Result<FileVersion> read_version(SqliteDb& db);

// Whether this code may use a file at `v`; when not, the message says why and what to do.
Status check_usable(const FileVersion& v, const std::string& path);

// Runs the steps from v.version to kVersion. Returns the log lines of the steps applied.
Result<std::vector<std::string>> migrate(SqliteDb& db, const FileVersion& v, int64_t now_us);

}  // namespace schema
}  // namespace gw::storage
