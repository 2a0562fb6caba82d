#include "storage/event_buffer.h"

#include <algorithm>

#include "storage/sqlite_db.h"

namespace gw::storage {
namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events(
  seq INTEGER PRIMARY KEY,
  class INTEGER NOT NULL,
  device_id TEXT NOT NULL,
  gateway_time_us INTEGER NOT NULL,
  payload BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_class ON events(class, seq);
)sql";

std::size_t index_of(EventClass c) {
  const auto i = static_cast<std::size_t>(c);
  return i < EventBuffer::kClassCount ? i : 0;
}

// Reads next_seq and per-class counts; shared by open() and inspect_buffer().
Status load_state(SqliteDb& db, uint64_t& next_seq,
                  std::array<ClassStats, EventBuffer::kClassCount>& stats) {
  Result<Statement> meta = db.prepare("SELECT value FROM meta WHERE key='next_seq'");
  if (!meta) return meta.status();
  Result<bool> row = meta.value().step();
  if (!row) return row.status();
  uint64_t from_meta = *row ? static_cast<uint64_t>(meta.value().column_int64(0)) : 1;

  Result<Statement> max = db.prepare("SELECT max(seq) FROM events");
  if (!max) return max.status();
  row = max.value().step();
  if (!row) return row.status();
  const uint64_t from_rows =
      (*row && !max.value().column_is_null(0)) ? uint64_t(max.value().column_int64(0)) + 1 : 1;
  next_seq = std::max({from_meta, from_rows, uint64_t{1}});

  Result<Statement> agg = db.prepare(
      "SELECT class, count(*), sum(length(payload)), "
      "(SELECT gateway_time_us FROM events e2 WHERE e2.class=e.class ORDER BY seq LIMIT 1) "
      "FROM events e GROUP BY class");
  if (!agg) return agg.status();
  for (;;) {
    row = agg.value().step();
    if (!row) return row.status();
    if (!*row) break;
    const auto c = static_cast<std::size_t>(agg.value().column_int64(0));
    if (c >= EventBuffer::kClassCount) return Status::corrupt("events row with unknown class");
    stats[c].pending = static_cast<uint64_t>(agg.value().column_int64(1));
    stats[c].bytes = static_cast<uint64_t>(agg.value().column_int64(2));
    stats[c].oldest_time_us = agg.value().column_int64(3);
  }
  return Status::ok();
}

}  // namespace

EventBuffer::EventBuffer(std::unique_ptr<SqliteDb> db) : db_(std::move(db)) {}
EventBuffer::~EventBuffer() {
  // Statements must be finalized before the connection closes.
  insert_.reset();
  set_next_seq_.reset();
  lease_.reset();
  delete_.reset();
  oldest_.reset();
}

Result<std::unique_ptr<EventBuffer>> EventBuffer::open(const std::string& path) {
  Result<std::unique_ptr<SqliteDb>> db = SqliteDb::open(path);
  if (!db) return db.status();
  std::unique_ptr<EventBuffer> buffer(new EventBuffer(std::move(db).value()));
  SqliteDb& d = *buffer->db_;
  // WAL: readers (gatewayctl) never block the writer; NORMAL is upgraded to FULL per batch.
  for (const char* pragma : {"PRAGMA busy_timeout=200", "PRAGMA journal_mode=WAL",
                             "PRAGMA synchronous=NORMAL"}) {
    if (Status s = d.exec(pragma); !s) return s;
  }
  Result<Statement> version = d.prepare("PRAGMA user_version");
  if (!version) return version.status();
  Result<bool> row = version.value().step();
  if (!row) return row.status();
  const int64_t found = version.value().column_int64(0);
  if (found > kSchemaVersion) {
    return Status::unavailable("buffer " + path + " has schema version " + std::to_string(found) +
                               ", newer than this gatewayd understands (" +
                               std::to_string(kSchemaVersion) + ")");
  }
  if (Status s = d.exec(kSchema); !s) return s;
  if (Status s = d.exec("PRAGMA user_version=" + std::to_string(kSchemaVersion)); !s) return s;
  if (Status s = load_state(d, buffer->next_seq_, buffer->stats_); !s) return s;
  if (Status s = buffer->prepare(); !s) return s;
  return buffer;
}

Status EventBuffer::prepare() {
  auto make = [&](std::unique_ptr<Statement>& slot, std::string_view sql) -> Status {
    Result<Statement> st = db_->prepare(sql);
    if (!st) return st.status();
    slot = std::make_unique<Statement>(std::move(st).value());
    return Status::ok();
  };
  if (Status s = make(insert_,
                      "INSERT INTO events(seq, class, device_id, gateway_time_us, payload) "
                      "VALUES(?1, ?2, ?3, ?4, ?5)");
      !s)
    return s;
  if (Status s = make(set_next_seq_,
                      "INSERT INTO meta(key, value) VALUES('next_seq', ?1) "
                      "ON CONFLICT(key) DO UPDATE SET value=excluded.value");
      !s)
    return s;
  if (Status s = make(lease_,
                      "SELECT seq, device_id, gateway_time_us, payload FROM events "
                      "WHERE class=?1 AND seq>?2 ORDER BY seq LIMIT ?3");
      !s)
    return s;
  if (Status s = make(delete_, "DELETE FROM events WHERE seq=?1 RETURNING class, length(payload)");
      !s)
    return s;
  return make(oldest_,
              "SELECT gateway_time_us FROM events WHERE class=?1 ORDER BY seq LIMIT 1");
}

Status EventBuffer::set_synchronous(bool full) {
  if (full == synchronous_full_) return Status::ok();
  Status s = db_->exec(full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
  if (s) synchronous_full_ = full;
  return s;
}

Status EventBuffer::append_batch(std::span<const BufferedEvent> events) {
  if (events.empty()) return Status::ok();
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (events[i].seq != next_seq_ + i) {
      return Status::invalid("append_batch: event " + std::to_string(i) + " has seq " +
                             std::to_string(events[i].seq) + ", expected " +
                             std::to_string(next_seq_ + i));
    }
  }
  const bool needs_full = std::any_of(events.begin(), events.end(), [](const BufferedEvent& e) {
    return e.event_class == campus::gateway::v1::ACCESS ||
           e.event_class == campus::gateway::v1::ALARM;
  });
  if (Status s = set_synchronous(needs_full); !s) return s;
  if (Status s = db_->exec("BEGIN IMMEDIATE"); !s) return s;

  auto fail = [&](Status s) {
    (void)db_->exec("ROLLBACK");
    return s;
  };
  for (const BufferedEvent& e : events) {
    insert_->bind(1, static_cast<int64_t>(e.seq))
        .bind(2, static_cast<int64_t>(e.event_class))
        .bind(3, e.device_id)
        .bind(4, e.gateway_time_us)
        .bind_blob(5, e.payload);
    if (Status s = insert_->run(); !s) return fail(s);
  }
  const uint64_t new_next = next_seq_ + events.size();
  set_next_seq_->bind(1, static_cast<int64_t>(new_next));
  if (Status s = set_next_seq_->run(); !s) return fail(s);
  if (Status s = db_->exec("COMMIT"); !s) return fail(s);

  next_seq_ = new_next;
  for (const BufferedEvent& e : events) {
    ClassStats& st = stats_[index_of(e.event_class)];
    if (st.pending == 0) st.oldest_time_us = e.gateway_time_us;
    ++st.pending;
    st.bytes += e.payload.size();
  }
  return Status::ok();
}

Result<std::vector<BufferedEvent>> EventBuffer::lease(EventClass event_class,
                                                       std::size_t max_events,
                                                       std::size_t max_bytes) {
  std::vector<BufferedEvent> out;
  uint64_t& cursor = leased_upto_[index_of(event_class)];
  if (max_events == 0 || stats_[index_of(event_class)].pending == 0) return out;
  lease_->bind(1, static_cast<int64_t>(event_class))
      .bind(2, static_cast<int64_t>(cursor))
      .bind(3, static_cast<int64_t>(max_events));
  std::size_t bytes = 0;
  for (;;) {
    Result<bool> row = lease_->step();
    if (!row) {
      lease_->reset();
      return row.status();
    }
    if (!*row) break;
    const std::string_view payload = lease_->column_blob(3);
    if (!out.empty() && bytes + payload.size() > max_bytes) break;
    BufferedEvent e;
    e.seq = static_cast<uint64_t>(lease_->column_int64(0));
    e.event_class = event_class;
    e.device_id = std::string(lease_->column_text(1));
    e.gateway_time_us = lease_->column_int64(2);
    e.payload = std::string(payload);
    bytes += payload.size();
    out.push_back(std::move(e));
  }
  lease_->reset();
  if (!out.empty()) cursor = out.back().seq;
  return out;
}

void EventBuffer::release_all() { leased_upto_.fill(0); }

Status EventBuffer::ack(std::span<const uint64_t> seqs) {
  if (seqs.empty()) return Status::ok();
  if (Status s = set_synchronous(false); !s) return s;
  if (Status s = db_->exec("BEGIN IMMEDIATE"); !s) return s;
  std::array<bool, kClassCount> touched{};
  std::array<ClassStats, kClassCount> removed{};
  for (const uint64_t seq : seqs) {
    delete_->bind(1, static_cast<int64_t>(seq));
    Result<bool> row = delete_->step();
    if (!row) {
      delete_->reset();
      (void)db_->exec("ROLLBACK");
      return row.status();
    }
    if (*row) {
      const std::size_t c = index_of(static_cast<EventClass>(delete_->column_int64(0)));
      removed[c].pending += 1;
      removed[c].bytes += static_cast<uint64_t>(delete_->column_int64(1));
      touched[c] = true;
      (void)delete_->step();  // finish the statement (RETURNING yields one row)
    }
    delete_->reset();
  }
  if (Status s = db_->exec("COMMIT"); !s) {
    (void)db_->exec("ROLLBACK");
    return s;
  }
  for (std::size_t c = 0; c < kClassCount; ++c) {
    if (!touched[c]) continue;
    stats_[c].pending -= std::min(stats_[c].pending, removed[c].pending);
    stats_[c].bytes -= std::min(stats_[c].bytes, removed[c].bytes);
    if (Status s = refresh_oldest(static_cast<EventClass>(c)); !s) return s;
  }
  return Status::ok();
}

Status EventBuffer::refresh_oldest(EventClass event_class) {
  ClassStats& st = stats_[index_of(event_class)];
  if (st.pending == 0) {
    st.oldest_time_us = 0;
    return Status::ok();
  }
  oldest_->bind(1, static_cast<int64_t>(event_class));
  Result<bool> row = oldest_->step();
  if (!row) {
    oldest_->reset();
    return row.status();
  }
  st.oldest_time_us = *row ? oldest_->column_int64(0) : 0;
  oldest_->reset();
  return Status::ok();
}

Result<std::vector<BufferedEvent>> EventBuffer::peek_oldest(EventClass event_class,
                                                             std::size_t n) {
  Result<Statement> st = db_->prepare(
      "SELECT seq, device_id, gateway_time_us, payload FROM events WHERE class=?1 "
      "ORDER BY seq LIMIT ?2");
  if (!st) return st.status();
  st.value().bind(1, static_cast<int64_t>(event_class)).bind(2, static_cast<int64_t>(n));
  std::vector<BufferedEvent> out;
  for (;;) {
    Result<bool> row = st.value().step();
    if (!row) return row.status();
    if (!*row) break;
    out.push_back({static_cast<uint64_t>(st.value().column_int64(0)), event_class,
                   std::string(st.value().column_text(1)), st.value().column_int64(2),
                   std::string(st.value().column_blob(3))});
  }
  return out;
}

ClassStats EventBuffer::stats(EventClass event_class) const {
  return stats_[index_of(event_class)];
}

uint64_t EventBuffer::pending_total() const {
  uint64_t n = 0;
  for (const ClassStats& s : stats_) n += s.pending;
  return n;
}

Result<BufferInspection> inspect_buffer(const std::string& path) {
  Result<std::unique_ptr<SqliteDb>> db = SqliteDb::open(path, /*read_only=*/true);
  if (!db) return db.status();
  BufferInspection out;
  Result<Statement> version = db.value()->prepare("PRAGMA user_version");
  if (!version) return version.status();
  Result<bool> row = version.value().step();
  if (!row) return row.status();
  out.schema_version = static_cast<int>(version.value().column_int64(0));
  if (out.schema_version == 0) return Status::corrupt(path + " is not a gatewayd buffer");
  if (Status s = load_state(*db.value(), out.next_seq, out.classes); !s) return s;
  return out;
}

}  // namespace gw::storage
