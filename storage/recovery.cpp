#include "storage/recovery.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <limits>

#include "storage/schema.h"
#include "storage/seq_floor.h"
#include "storage/sqlite_db.h"

namespace gw::storage {

namespace fs = std::filesystem;

namespace {

constexpr int kMaxReadErrors = 256;       // per direction: then the rest counts as unreadable
constexpr int64_t kScanBatch = 512;
constexpr int64_t kMaxSeq = std::numeric_limits<int64_t>::max();

std::string utc_stamp(int64_t wall_us) {
  const std::time_t t = static_cast<std::time_t>(wall_us / 1000000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

bool exists(const std::string& p) {
  struct stat st{};
  return ::stat(p.c_str(), &st) == 0;
}

Status rename_file(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) {
    return Status::unavailable("cannot move " + from + " to " + to + ": " + std::strerror(errno));
  }
  return Status::ok();
}

// Copies the damaged file's rows into the fresh one, stepping over what cannot be read: first in
// ascending seq order, then descending from the top, so rows on both sides of a damaged stretch
// are found. Counts the stretches it had to step over.
class Salvager {
 public:
  Salvager(SqliteDb& from, SqliteDb& to) : from_(from), to_(to) {}

  Status run() {
    // A version-1 file has no stored_at_us/pinned columns.
    const bool v2 = from_.prepare("SELECT stored_at_us, pinned FROM events LIMIT 0").is_ok();
    const std::string cols = v2 ? "seq, class, device_id, gateway_time_us, payload, stored_at_us, pinned"
                                : "seq, class, device_id, gateway_time_us, payload, 0, 0";
    Result<Statement> ins = to_.prepare(
        "INSERT OR IGNORE INTO events(seq, class, device_id, gateway_time_us, payload, "
        "stored_at_us, pinned) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)");
    if (!ins) return ins.status();
    if (Status s = scan(ins.value(),
                        "SELECT " + cols + " FROM events WHERE seq > ?1 ORDER BY seq LIMIT " +
                            std::to_string(kScanBatch),
                        /*ascending=*/true);
        !s) {
      return s;
    }
    if (Status s = scan(ins.value(),
                        "SELECT " + cols + " FROM events WHERE seq < ?1 ORDER BY seq DESC LIMIT " +
                            std::to_string(kScanBatch),
                        /*ascending=*/false);
        !s) {
      return s;
    }
    return Status::ok();
  }

  uint64_t rows() const { return rows_; }
  uint64_t max_seq() const { return max_seq_; }
  uint64_t unreadable_spans() const { return spans_; }
  // The last good seq before the first stretch that could not be read; nullopt when all read.
  std::optional<uint64_t> first_bad_after() const { return first_bad_after_; }

 private:
  // `insert` is run()'s prepared INSERT into the fresh file, passed down rather than kept in a
  // member so that no pointer to it outlives run().
  Status scan(Statement& insert, const std::string& sql, bool ascending) {
    int64_t bound = ascending ? 0 : kMaxSeq;
    int64_t step = 1;
    int errors = 0;
    bool in_bad = false;
    while (errors < kMaxReadErrors) {
      if (!ascending && bound <= asc_reached_) break;  // the ascending pass read from here down
      Result<Statement> st = from_.prepare(sql);
      if (!st) {
        ++errors;
        note_bad(in_bad, ascending ? bound : asc_reached_);
        if (!advance(bound, step, ascending)) break;
        continue;
      }
      st.value().bind(1, bound);
      bool failed = false;
      int64_t got = 0;
      for (;;) {
        Result<bool> row = st.value().step();
        if (!row) {
          failed = true;
          break;
        }
        if (!*row) break;
        const int64_t seq = st.value().column_int64(0);
        if (ascending ? seq <= bound : seq >= bound) break;  // a damaged index may loop back
        if (Status s = copy(insert, st.value()); !s) return s;
        bound = seq;
        ++got;
      }
      if (ascending) asc_reached_ = std::max(asc_reached_, bound);
      if (failed) {
        ++errors;
        note_bad(in_bad, ascending ? bound : asc_reached_);
        if (!advance(bound, step, ascending)) break;
        continue;
      }
      if (got == 0) break;  // the end of the table
      in_bad = false;
      step = 1;
    }
    if (errors >= kMaxReadErrors) note_bad(in_bad, ascending ? bound : asc_reached_);
    return Status::ok();
  }

  void note_bad(bool& in_bad, int64_t last_good) {
    if (in_bad) return;
    in_bad = true;
    ++spans_;
    const auto at = static_cast<uint64_t>(std::max<int64_t>(last_good, 0));
    if (!first_bad_after_ || at < *first_bad_after_) first_bad_after_ = at;
  }

  // Steps over an unreadable stretch, twice as far each time in a row.
  static bool advance(int64_t& bound, int64_t& step, bool ascending) {
    if (ascending) {
      if (bound > kMaxSeq - step) return false;
      bound += step;
    } else {
      if (bound < step) return false;
      bound -= step;
    }
    step = std::min<int64_t>(step * 2, int64_t{1} << 40);
    return true;
  }

  Status copy(Statement& ins, Statement& row) {
    ins.bind(1, row.column_int64(0))
        .bind(2, row.column_int64(1))
        .bind(3, row.column_text(2))
        .bind(4, row.column_int64(3))
        .bind_blob(5, row.column_blob(4))
        .bind(6, row.column_int64(5))
        .bind(7, row.column_int64(6));
    if (Status s = ins.run(); !s) return s;
    if (sqlite3_changes(to_.handle()) > 0) {
      ++rows_;
      max_seq_ = std::max<uint64_t>(max_seq_, static_cast<uint64_t>(row.column_int64(0)));
    }
    return Status::ok();
  }

  SqliteDb& from_;
  SqliteDb& to_;
  int64_t asc_reached_ = 0;
  uint64_t rows_ = 0;
  uint64_t max_seq_ = 0;
  uint64_t spans_ = 0;
  std::optional<uint64_t> first_bad_after_;
};

// Copies a small table row by row; a table that cannot be read is skipped (best effort).
void copy_table(SqliteDb& from, SqliteDb& to, const std::string& select, const std::string& insert,
                int columns) {
  Result<Statement> src = from.prepare(select);
  Result<Statement> dst = to.prepare(insert);
  if (!src || !dst) return;
  for (;;) {
    Result<bool> row = src.value().step();
    if (!row || !*row) return;
    for (int c = 0; c < columns; ++c) dst.value().bind_column(c + 1, src.value(), c);
    (void)dst.value().run();
  }
}

}  // namespace

Result<RecoveryReport> set_aside_and_salvage(const std::string& path, const std::string& reason,
                                             int64_t wall_now_us) {
  RecoveryReport report;
  report.reason = reason;
  std::string moved = path + ".corrupt-" + utc_stamp(wall_now_us);
  for (int i = 1; exists(moved) && i < 1000; ++i) {
    moved = path + ".corrupt-" + utc_stamp(wall_now_us) + "-" + std::to_string(i);
  }
  report.moved_to = moved;
  // The WAL holds committed rows too: it moves along, under the name SQLite looks for.
  if (Status s = rename_file(path, moved); !s) return s;
  if (exists(path + "-wal")) {
    if (Status s = rename_file(path + "-wal", moved + "-wal"); !s) return s;
  }
  ::unlink((path + "-shm").c_str());

  Result<std::unique_ptr<SqliteDb>> fresh = SqliteDb::open(path);
  if (!fresh) return Status::unavailable("cannot create a new buffer at " + path + ": " +
                                         fresh.status().message());
  SqliteDb& to = *fresh.value();
  if (Status s = to.exec("PRAGMA journal_mode=WAL"); !s) return s;
  if (auto m = schema::migrate(to, schema::FileVersion{}, 0); !m) return m.status();

  uint64_t floor = 0;
  SeqFloor seq_floor(path + ".seq");
  if (auto f = seq_floor.load(); f) floor = *f;

  Result<std::unique_ptr<SqliteDb>> old = SqliteDb::open(moved);
  if (Status s = to.exec("BEGIN IMMEDIATE"); !s) return s;
  uint64_t salvaged_in_range = 0;
  std::optional<uint64_t> bad_after;
  if (old) {
    SqliteDb& from = *old.value();
    from.set_busy_timeout(200);
    if (auto n = from.query_int("SELECT value FROM meta WHERE key='next_seq'"); n && *n > 0) {
      report.old_next_seq = static_cast<uint64_t>(*n);
    }
    Salvager salvager(from, to);
    if (Status s = salvager.run(); !s) {
      (void)to.exec("ROLLBACK");
      return s;
    }
    report.salvaged_rows = salvager.rows();
    report.unreadable_spans = salvager.unreadable_spans();
    bad_after = salvager.first_bad_after();
    report.next_seq = salvager.max_seq() + 1;
    copy_table(from, to, "SELECT device_id, value FROM cursors",
               "INSERT OR IGNORE INTO cursors(device_id, value) VALUES(?1, ?2)", 2);
    copy_table(from, to, "SELECT key, value FROM state",
               "INSERT OR IGNORE INTO state(key, value) VALUES(?1, ?2)", 2);
    copy_table(from, to,
               "SELECT class, first_seq, last_seq, count, reason FROM evictions",
               "INSERT INTO evictions(class, first_seq, last_seq, count, reason) "
               "VALUES(?1, ?2, ?3, ?4, ?5)",
               5);
  } else {
    report.unreadable_spans = 1;
    bad_after = 0;
  }
  // The damaged file's own next_seq is exact when it can be read; otherwise the floor file,
  // which is ahead of every seq ever handed out, is the bound.
  report.next_seq = std::max({report.next_seq, report.old_next_seq ? report.old_next_seq : floor,
                              uint64_t{1}});

  // Seqs that may have been in the damaged file but could not be read: announce them.
  if (bad_after || report.old_next_seq == 0) {
    const uint64_t first = bad_after ? *bad_after + 1 : 1;
    const uint64_t last = report.next_seq - 1;
    if (last >= first) {
      Result<int64_t> in_range = to.query_int(
          "SELECT count(*) FROM events WHERE seq BETWEEN " + std::to_string(first) + " AND " +
          std::to_string(last));
      salvaged_in_range = in_range ? static_cast<uint64_t>(*in_range) : 0;
      const std::string sql = "INSERT INTO evictions(class, first_seq, last_seq, count, reason) "
                              "VALUES(0, " + std::to_string(first) + ", " + std::to_string(last) +
                              ", " + std::to_string(last - first + 1 - salvaged_in_range) +
                              ", 'corrupt_file')";
      if (Status s = to.exec(sql); !s) {
        (void)to.exec("ROLLBACK");
        return s;
      }
    }
  }
  if (Status s = to.exec("INSERT INTO meta(key, value) VALUES('next_seq', " +
                         std::to_string(report.next_seq) +
                         ") ON CONFLICT(key) DO UPDATE SET value=excluded.value");
      !s) {
    (void)to.exec("ROLLBACK");
    return s;
  }
  if (Status s = to.exec("COMMIT"); !s) {
    (void)to.exec("ROLLBACK");
    return Status::unavailable("cannot write the new buffer at " + path + ": " + s.message());
  }
  return report;
}

}  // namespace gw::storage
