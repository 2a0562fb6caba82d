#include "storage/event_buffer.h"

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>

#include "storage/recovery.h"
#include "storage/schema.h"
#include "storage/sqlite_db.h"

namespace gw::storage {

namespace v1 = campus::gateway::v1;

namespace {

constexpr int kBusyTimeoutMs = 200;
// Share of a page that rows really fill (cell headers, a page split now and then); page needs
// are estimated from it and checked against SQLite's own counts after every eviction.
constexpr double kUsable = 0.85;
constexpr std::size_t kRowOverhead = 48;  // record header, rowid, the events_by_class entry
constexpr int64_t kMaxRefillPages = 2048;  // per maintain() call (8 MiB of 4 KiB pages)
constexpr int64_t kPurgeBatch = 2000;
constexpr int kMaxEvictRounds = 64;
// A row can need several new pages at once (a table leaf and an index leaf splitting, a parent
// growing): room is only counted as room beyond this many pages.
constexpr double kSlackPages = 4;
// Telemetry goes first: it is the most plentiful and the least valuable per event.
constexpr v1::EventClass kEvictionOrder[] = {v1::TELEMETRY, v1::STATUS, v1::EVENT_CLASS_UNSPECIFIED,
                                             v1::ACCESS, v1::ALARM};

std::size_t index_of(EventClass c) {
  const auto i = static_cast<std::size_t>(c);
  return i < kClassCount ? i : 0;
}

uint64_t file_size_of(const std::string& path) {
  struct stat st{};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

std::optional<uint64_t> statvfs_free(const std::string& dir) {
  struct statvfs vfs{};
  if (::statvfs(dir.c_str(), &vfs) != 0) return std::nullopt;
  return static_cast<uint64_t>(vfs.f_bavail) * static_cast<uint64_t>(vfs.f_frsize);
}

int64_t wall_now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct Range {
  uint64_t first = 0, last = 0, count = 0;
  void add(uint64_t seq) {
    first = count ? std::min(first, seq) : seq;
    last = count ? std::max(last, seq) : seq;
    ++count;
  }
};

// next_seq and per-class counts; shared by the buffer and inspect_buffer().
Status load_counts(SqliteDb& db, uint64_t& next_seq, std::array<ClassStats, kClassCount>& stats) {
  Result<int64_t> meta = db.query_int("SELECT value FROM meta WHERE key='next_seq'");
  if (!meta) return meta.status();
  Result<Statement> max = db.prepare("SELECT max(seq) FROM events");
  if (!max) return max.status();
  Result<bool> row = max.value().step();
  if (!row) return row.status();
  const uint64_t from_rows =
      (*row && !max.value().column_is_null(0)) ? uint64_t(max.value().column_int64(0)) + 1 : 1;
  next_seq = std::max({static_cast<uint64_t>(std::max<int64_t>(*meta, 0)), from_rows, uint64_t{1}});

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
    if (c >= kClassCount) return Status::corrupt("events row with unknown class");
    stats[c].pending = static_cast<uint64_t>(agg.value().column_int64(1));
    stats[c].bytes = static_cast<uint64_t>(agg.value().column_int64(2));
    stats[c].oldest_time_us = agg.value().column_int64(3);
  }
  return Status::ok();
}

}  // namespace

std::array<ClassPolicy, kClassCount> BufferOptions::default_classes() {
  constexpr int64_t kDay = 24LL * 3600 * 1000000;
  std::array<ClassPolicy, kClassCount> c{};
  c[v1::ACCESS] = {180 * kDay, false, true};
  c[v1::ALARM] = {180 * kDay, false, true};
  c[v1::TELEMETRY] = {30 * kDay, true, false};
  c[v1::STATUS] = {30 * kDay, true, false};
  c[v1::EVENT_CLASS_UNSPECIFIED] = {0, false, true};
  return c;
}

struct EventBuffer::Room {
  int64_t free = 0;       // free pages inside the file
  int64_t pages = 0;      // pages in the database
  int64_t growable = 0;   // pages the file may still grow by
  bool disk_limited = false;  // growth is bounded by the filesystem rather than max_bytes
  bool disk_low = false;
  bool disk_caution = false;  // within twice the low-water mark: checkpoint after each commit
};

struct EventBuffer::Tx {
  std::array<Range, kClassCount> evicted{};  // oldest rows removed for room
  std::array<Range, kClassCount> dropped{};  // new events not stored
  std::array<ClassStats, kClassCount> removed{};
  std::array<bool, kClassCount> touched{};
  std::string reason = "buffer_full";
  std::vector<const BufferedEvent*> stored;
  std::vector<uint64_t> announced;
  std::vector<Eviction> written;
  std::vector<Eviction> merged;  // count = what was added to the record with this id
  int64_t pads_released = 0;
  std::size_t acks_deleted = 0;  // deferred acks deleted in this transaction
  int64_t stored_at_us = 0;
  uint64_t next_seq = 0;
  Room room;
};

EventBuffer::EventBuffer(std::string path, BufferOptions options, std::unique_ptr<SqliteDb> db)
    : path_(std::move(path)),
      options_(std::move(options)),
      db_(std::move(db)),
      clock_(options_.monotonic_us ? options_.monotonic_us : BufferClock::Source(boottime_us)),
      seq_floor_(path_ + ".seq") {
  if (!options_.disk_free_bytes) options_.disk_free_bytes = statvfs_free;
}

EventBuffer::~EventBuffer() {
  // Statements must be finalized before the connection closes.
  for (auto* st : {&insert_, &set_meta_, &set_cursor_, &set_state_, &delete_state_, &lease_,
                   &delete_, &oldest_, &evict_, &purge_, &insert_eviction_, &delete_eviction_,
                   &merge_eviction_,
                   &release_pads_, &add_pads_}) {
    st->reset();
  }
}

Result<std::unique_ptr<EventBuffer>> EventBuffer::open(const std::string& path,
                                                       BufferOptions options) {
  return open_db(path, std::move(options), /*quick_check=*/false);
}

Result<EventBuffer::Opened> EventBuffer::open_or_recover(const std::string& path,
                                                         BufferOptions options) {
  auto first = open_db(path, options, /*quick_check=*/true);
  if (first) return Opened{std::move(first).value(), std::nullopt};
  if (first.status().code() != Status::Code::kCorrupt) return first.status();
  Result<RecoveryReport> report = set_aside_and_salvage(path, first.status().message(), wall_now_us());
  if (!report) return report.status();
  auto second = open_db(path, std::move(options), /*quick_check=*/true);
  if (!second) {
    // Never try again in a loop: a fresh file that fails is a problem of the disk, not the file.
    return Status::error(second.status().code() == Status::Code::kCorrupt
                             ? Status::Code::kUnavailable
                             : second.status().code(),
                         "the rebuilt buffer " + path + " failed too: " + second.status().message());
  }
  return Opened{std::move(second).value(), std::move(report).value()};
}

Result<std::unique_ptr<EventBuffer>> EventBuffer::open_db(const std::string& path,
                                                          BufferOptions options,
                                                          bool quick_check) {
  Result<std::unique_ptr<SqliteDb>> db = SqliteDb::open(path);
  if (!db) return db.status();
  db.value()->set_busy_timeout(kBusyTimeoutMs);
  // The version decides whether we may touch the file at all: read it before any write.
  Result<schema::FileVersion> version = schema::read_version(*db.value());
  if (!version) return version.status();
  if (Status s = schema::check_usable(*version, path); !s) return s;
  if (quick_check && version->version > 0) {
    Result<std::string> check = db.value()->query_text("PRAGMA quick_check(1)");
    if (!check) return check.status();
    if (*check != "ok") return Status::corrupt(path + ": quick_check: " + *check);
  }
  std::unique_ptr<EventBuffer> buffer(
      new EventBuffer(path, std::move(options), std::move(db).value()));
  if (Status s = buffer->configure(); !s) return s;
  int64_t clock_us = 0;
  if (version->version >= 1) {
    Result<int64_t> c = buffer->db_->query_int("SELECT value FROM meta WHERE key='clock_us'");
    if (!c) return c.status();
    clock_us = *c;
  }
  buffer->clock_.start(clock_us);
  if (version->version < schema::kVersion) {
    auto steps = schema::migrate(*buffer->db_, *version, buffer->clock_.now_us());
    if (!steps) return steps.status();
    buffer->migrations_ = std::move(steps).value();
  }
  if (Status s = buffer->prepare(); !s) return s;
  if (Status s = buffer->load(); !s) return s;
  if (auto floor = buffer->seq_floor_.load(); !floor) return floor.status();
  (void)buffer->seq_floor_.ensure_above(buffer->next_seq_);  // retried with every commit
  // A new file gets its reserve now; an old one may have spent it.
  for (int i = 0; i < 8 && buffer->pad_pages_ < buffer->reserve_pages_; ++i) {
    const int64_t before = buffer->pad_pages_;
    if (Status s = buffer->refill_reserve(); !s || buffer->pad_pages_ == before) break;
  }
  return buffer;
}

Status EventBuffer::configure() {
  SqliteDb& d = *db_;
  // WAL: readers (gatewayctl) never block the writer; NORMAL is upgraded to FULL per batch.
  for (const char* pragma : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL"}) {
    if (Status s = d.exec(pragma); !s) return s;
  }
  Result<int64_t> ps = d.query_int("PRAGMA page_size");
  if (!ps) return ps.status();
  page_size_ = std::max<int64_t>(*ps, 512);
  const uint64_t max_bytes = std::max<uint64_t>(options_.max_bytes, 1u << 20);
  wal_budget_ = std::clamp<uint64_t>(max_bytes / 16, 256u << 10, 16u << 20);
  limit_pages_ = static_cast<int64_t>((max_bytes - wal_budget_) / uint64_t(page_size_));
  const uint64_t reserve = options_.reserve_bytes
                               ? options_.reserve_bytes
                               : std::clamp<uint64_t>(max_bytes / 64, 64u << 10, 8u << 20);
  reserve_pages_ = std::clamp<int64_t>(static_cast<int64_t>(reserve / uint64_t(page_size_)), 16,
                                       std::max<int64_t>(limit_pages_ / 4, 16));
  emergency_pages_ = std::max<int64_t>(2 * int64_t(kSlackPages), reserve_pages_ / 8);
  chunk_pages_ = std::max<int64_t>(16, limit_pages_ / 100);
  low_water_ = options_.disk_low_water_bytes ? options_.disk_low_water_bytes
                                             : wal_budget_ + (1u << 20);
  // The WAL: checkpointed at a quarter of its budget, cut back to the budget after a checkpoint
  // (it only grows past it while a reader holds an old snapshot), and kept with its allocated
  // size across restarts, so commits can reuse its space when the disk is full.
  const int64_t autockpt = std::max<int64_t>(16, int64_t(wal_budget_) / page_size_ / 4);
  if (Status s = d.exec("PRAGMA wal_autocheckpoint=" + std::to_string(autockpt)); !s) return s;
  if (Status s = d.exec("PRAGMA journal_size_limit=" + std::to_string(wal_budget_)); !s) return s;
  if (Status s = d.persist_wal(true); !s) return s;
  // The hard stop: SQLite answers SQLITE_FULL rather than grow the file past the bound. It
  // cannot go below the current size (a bound lowered in the config): evictions get there.
  Result<int64_t> pages = d.query_int("PRAGMA page_count");
  if (!pages) return pages.status();
  const int64_t cap = std::max(limit_pages_, *pages);
  return d.exec("PRAGMA max_page_count=" + std::to_string(cap));
}

Status EventBuffer::prepare() {
  auto make = [&](std::unique_ptr<Statement>& slot, std::string_view sql) -> Status {
    Result<Statement> st = db_->prepare(sql);
    if (!st) return st.status();
    slot = std::make_unique<Statement>(std::move(st).value());
    return Status::ok();
  };
  const std::pair<std::unique_ptr<Statement>*, std::string_view> all[] = {
      {&insert_,
       "INSERT INTO events(seq, class, device_id, gateway_time_us, payload, stored_at_us, pinned) "
       "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)"},
      {&set_meta_,
       "INSERT INTO meta(key, value) VALUES(?1, ?2) "
       "ON CONFLICT(key) DO UPDATE SET value=excluded.value"},
      {&set_cursor_,
       "INSERT INTO cursors(device_id, value) VALUES(?1, ?2) "
       "ON CONFLICT(device_id) DO UPDATE SET value=excluded.value"},
      {&set_state_,
       "INSERT INTO state(key, value) VALUES(?1, ?2) "
       "ON CONFLICT(key) DO UPDATE SET value=excluded.value"},
      {&delete_state_, "DELETE FROM state WHERE key=?1"},
      {&lease_,
       "SELECT seq, device_id, gateway_time_us, payload FROM events "
       "WHERE class=?1 AND seq>?2 AND seq<?4 ORDER BY seq LIMIT ?3"},
      {&delete_, "DELETE FROM events WHERE seq=?1 RETURNING class, length(payload)"},
      {&oldest_,
       "SELECT gateway_time_us, stored_at_us FROM events WHERE class=?1 ORDER BY seq LIMIT 1"},
      {&evict_,
       "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE class=?1 AND pinned=0 "
       "ORDER BY seq LIMIT ?2) RETURNING seq, length(payload)"},
      {&purge_,
       "SELECT seq, stored_at_us, length(payload) FROM events WHERE class=?1 ORDER BY seq "
       "LIMIT ?2"},
      {&insert_eviction_,
       "INSERT INTO evictions(class, first_seq, last_seq, count, reason) "
       "VALUES(?1, ?2, ?3, ?4, ?5)"},
      {&delete_eviction_, "DELETE FROM evictions WHERE id=?1"},
      {&merge_eviction_,
       "UPDATE evictions SET last_seq=max(last_seq, ?1), count=count+?2 WHERE id=?3"},
      {&release_pads_, "DELETE FROM spare WHERE id IN (SELECT id FROM spare ORDER BY id LIMIT ?1)"},
      // Random bytes, not zeros: a compressing filesystem must really allocate the pages.
      {&add_pads_,
       "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM n WHERE x<?1) "
       "INSERT INTO spare(pad) SELECT randomblob(?2) FROM n"},
  };
  for (const auto& [slot, sql] : all) {
    if (Status s = make(*slot, sql); !s) return s;
  }
  return Status::ok();
}

Status EventBuffer::load() {
  if (Status s = load_counts(*db_, next_seq_, stats_); !s) return s;
  for (std::size_t c = 0; c < kClassCount; ++c) {
    if (Status s = refresh_oldest(static_cast<EventClass>(c)); !s) return s;
  }
  Result<int64_t> pads = db_->query_int("SELECT count(*) FROM spare");
  if (!pads) return pads.status();
  pad_pages_ = *pads;
  Result<Statement> ev = db_->prepare(
      "SELECT id, class, first_seq, last_seq, count, reason FROM evictions ORDER BY id");
  if (!ev) return ev.status();
  for (;;) {
    Result<bool> row = ev.value().step();
    if (!row) return row.status();
    if (!*row) break;
    Eviction e;
    e.id = static_cast<uint64_t>(ev.value().column_int64(0));
    e.event_class = static_cast<EventClass>(index_of(static_cast<EventClass>(ev.value().column_int64(1))));
    e.first_seq = static_cast<uint64_t>(ev.value().column_int64(2));
    e.last_seq = static_cast<uint64_t>(ev.value().column_int64(3));
    e.count = static_cast<uint64_t>(ev.value().column_int64(4));
    e.reason = std::string(ev.value().column_text(5));
    evictions_.push_back(std::move(e));
  }
  Result<Room> room = measure();
  if (!room) return room.status();
  update_fill(*room);
  return Status::ok();
}

Status EventBuffer::set_synchronous(bool full) {
  if (full == synchronous_full_) return Status::ok();
  Status s = db_->exec(full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
  if (s) synchronous_full_ = full;
  return s;
}

uint64_t EventBuffer::wal_size() const {
  const uint64_t n = file_size_of(path_ + "-wal");
  wal_high_water_ = std::max(wal_high_water_, n);
  return n;
}

Result<EventBuffer::Room> EventBuffer::measure() const {
  Room r;
  Result<int64_t> pages = db_->query_int("PRAGMA page_count");
  if (!pages) return pages.status();
  Result<int64_t> free = db_->query_int("PRAGMA freelist_count");
  if (!free) return free.status();
  r.pages = *pages;
  r.free = *free;
  const int64_t by_limit = std::max<int64_t>(0, limit_pages_ - r.pages);
  int64_t by_disk = by_limit;
  const std::string dir = std::filesystem::path(path_).parent_path().string();
  if (const std::optional<uint64_t> disk = options_.disk_free_bytes(dir.empty() ? "." : dir)) {
    // Pages committed to the WAL past the file's end still need disk when checkpointed.
    const int64_t pending =
        std::max<int64_t>(0, r.pages * page_size_ - static_cast<int64_t>(file_size_of(path_)));
    const int64_t headroom = static_cast<int64_t>(*disk) - static_cast<int64_t>(low_water_) - pending;
    by_disk = std::max<int64_t>(0, headroom / page_size_);
    r.disk_low = *disk < low_water_ || headroom <= 0;
    r.disk_caution = *disk < 2 * low_water_ + uint64_t(pending);
  }
  r.growable = std::min(by_limit, by_disk);
  r.disk_limited = by_disk < by_limit;
  return r;
}

double EventBuffer::pages_for(const BufferedEvent& e) const {
  const std::size_t bytes = e.payload.size() + e.device_id.size() + e.cursor.size() +
                            e.state_key.size() + e.state_value.size() + kRowOverhead;
  return double(bytes) / (double(page_size_) * kUsable);
}

void EventBuffer::update_fill(const Room& room) {
  disk_low_ = room.disk_low;
  const int64_t deficit = std::max<int64_t>(0, reserve_pages_ - pad_pages_);
  const double avail = std::max<double>(0, double(room.free + room.growable - deficit));
  const double capacity = std::max<double>(1, double(room.pages - pad_pages_ + room.growable));
  fill_ = std::clamp(1.0 - avail / capacity, 0.0, 1.0);
}

Result<bool> EventBuffer::evict_some(double pages_wanted, const Room&, Tx& tx) {
  const double want_bytes =
      std::max(pages_wanted, double(chunk_pages_)) * double(page_size_) * kUsable;
  for (const v1::EventClass c : kEvictionOrder) {
    const std::size_t i = index_of(c);
    if (!options_.classes[i].drop_oldest || options_.classes[i].never_drop) continue;
    const uint64_t left = stats_[i].pending - std::min(stats_[i].pending, tx.removed[i].pending);
    if (left == 0) continue;
    const double avg =
        double(stats_[i].bytes - std::min(stats_[i].bytes, tx.removed[i].bytes)) / double(left) +
        double(kRowOverhead);
    const auto n = std::clamp<int64_t>(int64_t(want_bytes / std::max(avg, 1.0)) + 1, 8, 20000);
    evict_->bind(1, static_cast<int64_t>(c)).bind(2, n);
    int64_t got = 0;
    for (;;) {
      Result<bool> row = evict_->step();
      if (!row) {
        evict_->reset();
        return row.status();
      }
      if (!*row) break;
      tx.evicted[i].add(static_cast<uint64_t>(evict_->column_int64(0)));
      tx.removed[i].pending += 1;
      tx.removed[i].bytes += static_cast<uint64_t>(evict_->column_int64(1));
      ++got;
    }
    evict_->reset();
    if (got > 0) {
      tx.touched[i] = true;
      return true;
    }
  }
  return false;
}

Status EventBuffer::release_pads(int64_t pages, Tx& tx) {
  const int64_t n = std::min(pages, pad_pages_ - tx.pads_released);
  if (n <= 0) return Status::ok();
  release_pads_->bind(1, n);
  if (Status s = release_pads_->run(); !s) return s;
  tx.pads_released += n;
  return Status::ok();
}

Status EventBuffer::write_evictions(Tx& tx) {
  auto write = [&](std::size_t c, const Range& r, const std::string& reason) -> Status {
    if (r.count == 0) return Status::ok();
    // A record not handed out yet, of the same class and reason, grows instead: a full store
    // that evicts a little on every commit announces it in one gap event, not hundreds.
    if (!evictions_.empty()) {
      const Eviction& last = evictions_.back();
      if (last.id > handed_out_upto_ && last.event_class == static_cast<EventClass>(c) &&
          last.reason == reason && last.first_seq <= r.first) {
        merge_eviction_->bind(1, static_cast<int64_t>(r.last))
            .bind(2, static_cast<int64_t>(r.count))
            .bind(3, static_cast<int64_t>(last.id));
        if (Status s = merge_eviction_->run(); !s) return s;
        tx.merged.push_back({last.id, last.event_class, last.first_seq,
                             std::max(last.last_seq, r.last), r.count, reason});
        return Status::ok();
      }
    }
    insert_eviction_->bind(1, static_cast<int64_t>(c))
        .bind(2, static_cast<int64_t>(r.first))
        .bind(3, static_cast<int64_t>(r.last))
        .bind(4, static_cast<int64_t>(r.count))
        .bind(5, reason);
    if (Status s = insert_eviction_->run(); !s) return s;
    tx.written.push_back({static_cast<uint64_t>(db_->last_insert_rowid()),
                          static_cast<EventClass>(c), r.first, r.last, r.count, reason});
    return Status::ok();
  };
  for (std::size_t c = 0; c < kClassCount; ++c) {
    if (Status s = write(c, tx.evicted[c], tx.reason); !s) return s;
    if (Status s = write(c, tx.dropped[c], "rejected:" + tx.reason); !s) return s;
  }
  return Status::ok();
}

Result<AppendResult> EventBuffer::append(std::span<const BufferedEvent> events) {
  return append_impl(events, /*all_or_nothing=*/false);
}

Status EventBuffer::append_batch(std::span<const BufferedEvent> events) {
  Result<AppendResult> r = append_impl(events, /*all_or_nothing=*/true);
  if (!r) return r.status();
  return Status::ok();
}

Result<AppendResult> EventBuffer::append_impl(std::span<const BufferedEvent> events,
                                              bool all_or_nothing) {
  if (events.empty()) return AppendResult{};
  for (std::size_t i = 0; i < events.size(); ++i) {
    const uint64_t floor = i == 0 ? next_seq_ : events[i - 1].seq + 1;
    if (events[i].seq < floor) {
      return Status::invalid("append: event " + std::to_string(i) + " has seq " +
                             std::to_string(events[i].seq) + ", expected at least " +
                             std::to_string(floor));
    }
  }
  const bool needs_full = std::any_of(events.begin(), events.end(), [](const BufferedEvent& e) {
    return e.event_class == v1::ACCESS || e.event_class == v1::ALARM;
  });
  if (Status s = set_synchronous(needs_full); !s) return s;
  // The second copy of the seq high-water mark goes ahead of the rows that need it.
  // A failure (disk full) is not fatal: the floor is then only as good as its last write.
  if (Status s = seq_floor_.ensure_above(events.back().seq + 1); !s) {
    seq_floor_error_ = s.message();
  } else {
    seq_floor_error_.clear();
  }

  double safety = 1.0;
  Status last = Status::ok();
  for (int attempt = 0; attempt < 3; ++attempt) {
    Tx tx;
    AppendResult result;
    last = try_append(events, all_or_nothing, safety, result, tx);
    if (last) {
      apply(tx);
      // Near a full disk, every commit is checkpointed at once: no page then waits in the WAL
      // for room the disk may no longer have, and the next commit reuses the WAL's own space.
      if (tx.room.disk_caution) checkpoint_passive();
      if (result.blocked) ++blocked_appends_;
      if (result.used_reserve) ++reserve_uses_;
      return result;
    }
    if (db_->in_transaction()) (void)db_->exec("ROLLBACK");
    // SQLITE_FULL means the estimate was short of what SQLite needed (or the disk filled up
    // under us): measure again, evict more, and try once more.
    if (last.code() != Status::Code::kFull) return last;
    if (all_or_nothing && last.message().rfind("append:", 0) == 0) return last;
    safety *= 2;
  }
  return last;
}

Status EventBuffer::try_append(std::span<const BufferedEvent> events, bool all_or_nothing,
                               double safety, AppendResult& result, Tx& tx) {
  enum Tier { kRejectable, kDroppable, kProtected, kEmergency };
  if (Status s = db_->exec("BEGIN IMMEDIATE"); !s) return s;
  // Delivered rows go first, in this transaction: their room is measured as free.
  if (Status s = delete_rows(deferred_acks_, tx.removed, tx.touched); !s) return s;
  tx.acks_deleted = deferred_acks_.size();
  Result<Room> measured = measure();
  if (!measured) return measured.status();
  Room room = *measured;
  tx.reason = room.disk_limited ? "disk_full" : "buffer_full";
  tx.stored_at_us = clock_.now_us();
  double spent = 0;  // estimated pages used since room was measured

  auto remeasure = [&]() -> Status {
    Result<Room> r = measure();
    if (!r) return r.status();
    room = *r;
    spent = 0;
    return Status::ok();
  };

  for (const BufferedEvent& e : events) {
    const std::size_t c = index_of(e.event_class);
    const ClassPolicy& policy = options_.classes[c];
    const Tier tier = e.emergency                         ? kEmergency
                      : (e.pinned || policy.never_drop)   ? kProtected
                      : policy.drop_oldest                ? kDroppable
                                                          : kRejectable;
    const double need = pages_for(e) * safety + kSlackPages * safety;
    auto plain = [&] { return double(room.free + room.growable) - spent; };
    // Reserve pages this event may take (negative for droppable events: the pages the reserve
    // is missing are the refill's, not theirs).
    auto pads_usable = [&]() -> double {
      const int64_t pads = pad_pages_ - tx.pads_released;
      if (tier == kEmergency) return double(pads);
      if (tier == kProtected) return double(std::max<int64_t>(0, pads - emergency_pages_));
      return -double(std::max<int64_t>(0, reserve_pages_ - pads));
    };
    auto own_room = [&] { return plain() + std::min(0.0, pads_usable()); };
    // Room without the reserve first: evicting droppable rows comes before the reserve.
    bool fits = need <= own_room();
    for (int round = 0; !fits && tier != kRejectable && round < kMaxEvictRounds; ++round) {
      Result<bool> evicted = evict_some(need - own_room(), room, tx);
      if (!evicted) return evicted.status();
      if (!*evicted) break;
      if (Status s = remeasure(); !s) return s;
      fits = need <= own_room();
    }
    const bool use_reserve = !fits && tier >= kProtected && need <= plain() + pads_usable();
    fits = fits || use_reserve;
    if (!fits) {
      if (tier <= kDroppable) {
        tx.dropped[c].add(e.seq);
        result.dropped_seqs.push_back(e.seq);
        ++result.dropped;
        ++result.consumed;
        tx.next_seq = e.seq + 1;
        continue;
      }
      if (all_or_nothing) {
        return Status::full("append: no room for a " + std::to_string(int(e.event_class)) +
                            "-class event even in the reserve");
      }
      result.blocked = true;
      break;
    }
    if (use_reserve) {
      const auto n = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(need - plain())));
      if (Status s = release_pads(n, tx); !s) return s;
      if (Status s = remeasure(); !s) return s;
      result.used_reserve = true;
    }
    insert_->bind(1, static_cast<int64_t>(e.seq))
        .bind(2, static_cast<int64_t>(e.event_class))
        .bind(3, e.device_id)
        .bind(4, e.gateway_time_us)
        .bind_blob(5, e.payload)
        .bind(6, tx.stored_at_us)
        .bind(7, int64_t{e.pinned ? 1 : 0});
    if (Status s = insert_->run(); !s) return s;
    if (!e.cursor.empty()) {
      set_cursor_->bind(1, e.device_id).bind(2, e.cursor);
      if (Status s = set_cursor_->run(); !s) return s;
    }
    if (!e.state_key.empty()) {
      Statement& st = e.state_value.empty() ? *delete_state_ : *set_state_;
      st.bind(1, e.state_key);
      if (!e.state_value.empty()) st.bind_blob(2, e.state_value);
      if (Status s = st.run(); !s) return s;
    }
    if (e.announces_eviction) {
      delete_eviction_->bind(1, static_cast<int64_t>(e.announces_eviction));
      if (Status s = delete_eviction_->run(); !s) return s;
      tx.announced.push_back(e.announces_eviction);
    }
    spent += need - kSlackPages * safety;
    tx.stored.push_back(&e);
    ++result.consumed;
    tx.next_seq = e.seq + 1;
  }
  if (Status s = write_evictions(tx); !s) return s;
  if (tx.next_seq > next_seq_) {
    set_meta_->bind(1, std::string_view("next_seq")).bind(2, static_cast<int64_t>(tx.next_seq));
    if (Status s = set_meta_->run(); !s) return s;
  }
  set_meta_->bind(1, std::string_view("clock_us")).bind(2, tx.stored_at_us);
  if (Status s = set_meta_->run(); !s) return s;
  if (Status s = db_->exec("COMMIT"); !s) return s;
  tx.room = room;
  return Status::ok();
}

void EventBuffer::apply(const Tx& tx) {
  if (tx.next_seq > next_seq_) next_seq_ = tx.next_seq;
  if (tx.acks_deleted > 0) {
    deferred_acks_.erase(deferred_acks_.begin(),
                         deferred_acks_.begin() + static_cast<std::ptrdiff_t>(tx.acks_deleted));
    if (deferred_acks_.empty()) deferred_batches_ = 0;
  }
  for (const BufferedEvent* e : tx.stored) {
    ClassStats& st = stats_[index_of(e->event_class)];
    if (st.pending == 0) {
      st.oldest_time_us = e->gateway_time_us;
      st.oldest_stored_at_us = tx.stored_at_us;
    }
    ++st.pending;
    st.bytes += e->payload.size();
  }
  for (std::size_t c = 0; c < kClassCount; ++c) {
    ClassStats& st = stats_[c];
    st.pending -= std::min(st.pending, tx.removed[c].pending);
    st.bytes -= std::min(st.bytes, tx.removed[c].bytes);
    st.evicted += tx.evicted[c].count + tx.dropped[c].count;
    if (tx.touched[c]) (void)refresh_oldest(static_cast<EventClass>(c));
  }
  pad_pages_ -= tx.pads_released;
  for (uint64_t id : tx.announced) {
    std::erase_if(evictions_, [id](const Eviction& e) { return e.id == id; });
  }
  for (const Eviction& m : tx.merged) {
    for (Eviction& e : evictions_) {
      if (e.id != m.id) continue;
      e.last_seq = m.last_seq;
      e.count += m.count;
    }
  }
  evictions_.insert(evictions_.end(), tx.written.begin(), tx.written.end());
  Room after = tx.room;
  if (Result<Room> r = measure(); r) after = *r;
  update_fill(after);
}

std::vector<Eviction> EventBuffer::take_evictions() {
  std::vector<Eviction> out;
  for (const Eviction& e : evictions_) {
    if (e.id > handed_out_upto_) out.push_back(e);
  }
  if (!out.empty()) handed_out_upto_ = out.back().id;
  return out;
}

Status EventBuffer::maintain() {
  // Before retention looks at the oldest rows: a delivered row must not count as expired.
  if (Status s = flush_acks(); !s) return s;
  if (Status s = purge_expired(); !s) return s;
  if (Status s = refill_reserve(); !s) return s;
  if (Status s = checkpoint_if_oversized(); !s) return s;
  Result<Room> room = measure();
  if (!room) return room.status();
  if (room->disk_caution) checkpoint_passive();
  update_fill(*room);
  return Status::ok();
}

Status EventBuffer::purge_expired() {
  const int64_t now = clock_.now_us();
  for (std::size_t c = 0; c < kClassCount; ++c) {
    const int64_t max_age = options_.classes[c].max_age_us;
    if (max_age <= 0 || stats_[c].pending == 0) continue;
    const int64_t cutoff = now - max_age;
    if (stats_[c].oldest_stored_at_us >= cutoff) continue;  // the common case: nothing is due
    std::vector<std::pair<uint64_t, uint64_t>> due;        // seq, payload bytes
    purge_->bind(1, static_cast<int64_t>(c)).bind(2, kPurgeBatch);
    for (;;) {
      Result<bool> row = purge_->step();
      if (!row) {
        purge_->reset();
        return row.status();
      }
      // stored_at_us grows with seq, so the due rows are a prefix.
      if (!*row || purge_->column_int64(1) >= cutoff) break;
      due.emplace_back(static_cast<uint64_t>(purge_->column_int64(0)),
                       static_cast<uint64_t>(purge_->column_int64(2)));
    }
    purge_->reset();
    if (due.empty()) {
      (void)refresh_oldest(static_cast<EventClass>(c));
      continue;
    }
    if (Status s = db_->exec("BEGIN IMMEDIATE"); !s) return s;
    Tx tx;
    tx.reason = "max_age";
    for (const auto& [seq, bytes] : due) {
      delete_->bind(1, static_cast<int64_t>(seq));
      Result<bool> row = delete_->step();
      delete_->reset();
      if (!row) {
        (void)db_->exec("ROLLBACK");
        return row.status();
      }
      tx.evicted[c].add(seq);
      tx.removed[c].pending += 1;
      tx.removed[c].bytes += bytes;
    }
    tx.touched[c] = true;
    Status s = write_evictions(tx);
    if (s) s = db_->exec("COMMIT");
    if (!s) {
      if (db_->in_transaction()) (void)db_->exec("ROLLBACK");
      return s;
    }
    apply(tx);
  }
  return Status::ok();
}

Status EventBuffer::refill_reserve() {
  if (pad_pages_ >= reserve_pages_) return Status::ok();
  Result<Room> room = measure();
  if (!room) return room.status();
  // The reserve comes back before droppable events get the room: it is what lets access and
  // alarm events in when the store or the disk is full.
  const int64_t n = std::min({reserve_pages_ - pad_pages_, room->free + room->growable,
                              kMaxRefillPages});
  if (n <= 0) return Status::ok();
  if (Status s = set_synchronous(false); !s) return s;
  if (Status s = db_->exec("BEGIN IMMEDIATE"); !s) return s;
  // A pad a bit over half a page: one row per leaf page, no overflow pages.
  add_pads_->bind(1, n).bind(2, page_size_ * 3 / 4);
  Status s = add_pads_->run();
  if (s) s = db_->exec("COMMIT");
  if (!s) {
    if (db_->in_transaction()) (void)db_->exec("ROLLBACK");
    return s;
  }
  pad_pages_ += n;
  return Status::ok();
}

void EventBuffer::checkpoint_passive() {
  db_->set_busy_timeout(0);
  (void)db_->query_text("PRAGMA wal_checkpoint(PASSIVE)");
  db_->set_busy_timeout(kBusyTimeoutMs);
}

Status EventBuffer::checkpoint_if_oversized() {
  if (wal_size() <= wal_budget_) return Status::ok();
  // It grew past its budget while a reader held an old snapshot. Try now, without waiting for
  // readers (never block the core thread); a busy result just means "next time".
  // TRUNCATE gives the space back; while the disk is low the WAL keeps it for commits instead.
  db_->set_busy_timeout(0);
  Result<std::string> r = db_->query_text(disk_low_ ? "PRAGMA wal_checkpoint(PASSIVE)"
                                                    : "PRAGMA wal_checkpoint(TRUNCATE)");
  db_->set_busy_timeout(kBusyTimeoutMs);
  if (!r && r.status().code() != Status::Code::kBusy) return r.status();
  return Status::ok();
}

Status EventBuffer::refresh_oldest(EventClass event_class) {
  ClassStats& st = stats_[index_of(event_class)];
  if (st.pending == 0) {
    st.oldest_time_us = 0;
    st.oldest_stored_at_us = 0;
    return Status::ok();
  }
  oldest_->bind(1, static_cast<int64_t>(event_class));
  Result<bool> row = oldest_->step();
  if (!row) {
    oldest_->reset();
    return row.status();
  }
  st.oldest_time_us = *row ? oldest_->column_int64(0) : 0;
  st.oldest_stored_at_us = *row ? oldest_->column_int64(1) : 0;
  oldest_->reset();
  return Status::ok();
}

Result<std::string> EventBuffer::cursor(const std::string& device_id) const {
  Result<Statement> st = db_->prepare("SELECT value FROM cursors WHERE device_id=?1");
  if (!st) return st.status();
  st.value().bind(1, device_id);
  Result<bool> row = st.value().step();
  if (!row) return row.status();
  return *row ? std::string(st.value().column_text(0)) : std::string();
}

Result<std::vector<std::pair<std::string, std::string>>> EventBuffer::state_rows(
    std::string_view prefix) const {
  // substr() rather than LIKE: a key may hold '%' or '_'.
  Result<Statement> st = db_->prepare(
      "SELECT key, value FROM state WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key");
  if (!st) return st.status();
  st.value().bind(1, prefix);
  std::vector<std::pair<std::string, std::string>> rows;
  for (;;) {
    Result<bool> row = st.value().step();
    if (!row) return row.status();
    if (!*row) break;
    rows.emplace_back(std::string(st.value().column_text(0)),
                      std::string(st.value().column_blob(1)));
  }
  return rows;
}

Result<std::vector<BufferedEvent>> EventBuffer::lease(EventClass event_class,
                                                       std::size_t max_events,
                                                       std::size_t max_bytes,
                                                       uint64_t below_seq) {
  std::vector<BufferedEvent> out;
  uint64_t& cursor = leased_upto_[index_of(event_class)];
  if (max_events == 0 || stats_[index_of(event_class)].pending == 0) return out;
  const auto below = static_cast<int64_t>(
      std::min<uint64_t>(below_seq, uint64_t(std::numeric_limits<int64_t>::max())));
  lease_->bind(1, static_cast<int64_t>(event_class))
      .bind(2, static_cast<int64_t>(cursor))
      .bind(3, static_cast<int64_t>(max_events))
      .bind(4, below);
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

bool EventBuffer::has_unleased_below(EventClass event_class, uint64_t below_seq) const {
  const std::size_t c = index_of(event_class);
  if (stats_[c].pending == 0) return false;
  // Rows are leased in seq order: some remain below the mark unless the cursor reached it.
  return leased_upto_[c] + 1 < below_seq;
}

void EventBuffer::release_all() {
  // A failure leaves the rows to be sent again: duplicates, never a loss. They stay deferred.
  (void)flush_acks();
  leased_upto_.fill(0);
}

Status EventBuffer::delete_rows(std::span<const uint64_t> seqs,
                                std::array<ClassStats, kClassCount>& removed,
                                std::array<bool, kClassCount>& touched) {
  for (const uint64_t seq : seqs) {
    delete_->bind(1, static_cast<int64_t>(seq));
    Result<bool> row = delete_->step();
    if (!row) {
      delete_->reset();
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
  return Status::ok();
}

void EventBuffer::apply_removed(const std::array<ClassStats, kClassCount>& removed,
                                const std::array<bool, kClassCount>& touched) {
  for (std::size_t c = 0; c < kClassCount; ++c) {
    if (!touched[c]) continue;
    stats_[c].pending -= std::min(stats_[c].pending, removed[c].pending);
    stats_[c].bytes -= std::min(stats_[c].bytes, removed[c].bytes);
    (void)refresh_oldest(static_cast<EventClass>(c));
  }
}

Status EventBuffer::ack(std::span<const uint64_t> seqs) {
  if (seqs.empty()) return Status::ok();
  if (Status s = set_synchronous(false); !s) return s;
  if (Status s = db_->exec("BEGIN IMMEDIATE"); !s) return s;
  std::array<bool, kClassCount> touched{};
  std::array<ClassStats, kClassCount> removed{};
  Status s = delete_rows(seqs, removed, touched);
  if (s) s = db_->exec("COMMIT");
  if (!s) {
    if (db_->in_transaction()) (void)db_->exec("ROLLBACK");
    return s;
  }
  apply_removed(removed, touched);
  return Status::ok();
}

void EventBuffer::defer_ack(std::span<const uint64_t> seqs) {
  if (seqs.empty()) return;
  deferred_acks_.insert(deferred_acks_.end(), seqs.begin(), seqs.end());
  ++deferred_batches_;
}

Status EventBuffer::flush_acks() {
  if (deferred_acks_.empty()) return Status::ok();
  if (Status s = ack(deferred_acks_); !s) return s;
  deferred_acks_.clear();
  deferred_batches_ = 0;
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
    BufferedEvent e;
    e.seq = static_cast<uint64_t>(st.value().column_int64(0));
    e.event_class = event_class;
    e.device_id = std::string(st.value().column_text(1));
    e.gateway_time_us = st.value().column_int64(2);
    e.payload = std::string(st.value().column_blob(3));
    out.push_back(std::move(e));
  }
  return out;
}

const ClassPolicy& EventBuffer::policy(EventClass event_class) const {
  return options_.classes[index_of(event_class)];
}

ClassStats EventBuffer::stats(EventClass event_class) const {
  return stats_[index_of(event_class)];
}

uint64_t EventBuffer::pending_total() const {
  uint64_t n = 0;
  for (const ClassStats& s : stats_) n += s.pending;
  return n;
}

int64_t EventBuffer::oldest_age_us(EventClass event_class) const {
  const ClassStats& st = stats_[index_of(event_class)];
  if (st.pending == 0) return 0;
  return std::max<int64_t>(0, clock_.now_us() - st.oldest_stored_at_us);
}

SpaceReport EventBuffer::space() const {
  SpaceReport r;
  r.max_bytes = options_.max_bytes;
  r.file_limit_bytes = uint64_t(limit_pages_ * page_size_);
  r.reserve_bytes = uint64_t(pad_pages_ * page_size_);
  r.reserve_target_bytes = uint64_t(reserve_pages_ * page_size_);
  r.wal_bytes = wal_size();
  r.wal_budget_bytes = wal_budget_;
  r.wal_high_water_bytes = wal_high_water_;
  r.fill = fill_;
  r.disk_low = disk_low_;
  if (Result<Room> room = measure(); room) {
    r.file_bytes = uint64_t(room->pages * page_size_);
    r.free_bytes = uint64_t(room->free * page_size_);
  }
  const std::string dir = std::filesystem::path(path_).parent_path().string();
  r.disk_free_bytes = options_.disk_free_bytes(dir.empty() ? "." : dir);
  return r;
}

Result<BufferInspection> inspect_buffer(const std::string& path) {
  Result<std::unique_ptr<SqliteDb>> db = SqliteDb::open(path, /*read_only=*/true);
  if (!db) return db.status();
  BufferInspection out;
  Result<int64_t> version = db.value()->query_int("PRAGMA user_version");
  if (!version) return version.status();
  out.schema_version = static_cast<int>(*version);
  if (out.schema_version == 0) return Status::corrupt(path + " is not a gatewayd buffer");
  // Each query is its own short read: a reader never pins the WAL for long.
  if (Status s = load_counts(*db.value(), out.next_seq, out.classes); !s) return s;
  return out;
}

}  // namespace gw::storage
