// EventBuffer is the durable outbox: serialized events in one SQLite file (WAL mode), drained in
// seq order per class. An event survives a process crash once append() has returned it as
// stored, and a power loss too when its batch held an access or alarm event (those commit with
// synchronous=FULL; telemetry and status commit with NORMAL). An event leaves only through ack(),
// which the uplink calls after the broker's PUBACK — or through eviction, which is always
// recorded and announced (see below).
//
// seq is gateway-wide, strictly increasing and never reused for the life of data_dir: the next
// value is persisted in the same transaction as the rows, so it survives even when every row has
// been acked; a transaction cut short by kill -9 leaves no trace (its seqs were never published);
// and a second copy ahead of it (SeqFloor, "buffer.db.seq") survives a corrupt file.
//
// Bounds. The database file stays within max_bytes minus a WAL budget (SQLite's max_page_count
// is the hard stop), and the file does not grow while the filesystem is below its low-water mark.
// Three tiers share the room:
//   - droppable events (classes with when_full: drop_oldest, e.g. telemetry, status) get what
//     is free; when that is not enough, the oldest droppable rows are evicted (telemetry first,
//     then status), and when nothing is left to evict the new droppable event is not stored;
//   - protected events (access, alarm, and pinned gap events) may also take the reserve: spare
//     pages held in the file by padding rows (so they exist even when the disk is full) — all
//     but the last few pages, which only emergency events (the gateway's own buffer_full alarm)
//     may take. When even that is gone, append() stops at the event (blocked): it is never
//     dropped; the caller keeps it and retries.
// Every row removed undelivered (evicted, not stored, or past its class's max_age) is written to
// the evictions table in the same transaction; the caller announces it with a gap event that
// commits together with the deletion of that record (BufferedEvent::announces_eviction), so each
// eviction is announced exactly once, across crashes too.
//
// Ages (max_age, oldest age) are measured on the BufferClock, never on the wall clock.
//
// Leasing: lease() hands out the oldest rows of a class not already leased; release_all() makes
// every unacked row leasable again (after a lost connection, so they are republished).
// Not thread-safe: the core thread owns it.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "campus/gateway/v1/gateway.pb.h"
#include "protocols/status.h"
#include "storage/buffer_clock.h"
#include "storage/seq_floor.h"

namespace gw::storage {

class SqliteDb;
class Statement;

using EventClass = campus::gateway::v1::EventClass;
inline constexpr std::size_t kClassCount = 5;  // indexed by the EventClass value

struct BufferedEvent {
  uint64_t seq = 0;
  EventClass event_class = campus::gateway::v1::TELEMETRY;
  std::string device_id;
  int64_t gateway_time_us = 0;
  std::string payload;  // a serialized campus.gateway.v1.Event carrying the same seq
  // A device's read position (a gate controller's log index), written in the same transaction
  // as this event, so the event and "it was read" are durable together or not at all. Not
  // loaded back by lease(). Empty: none.
  std::string cursor;
  // A row of durable gateway state (the alarm engine's active alarms), written or — when
  // state_value is empty — deleted in the same transaction as this event, so the state and the
  // event that announces it survive together or not at all. Empty key: none.
  std::string state_key;
  std::string state_value;
  // Never evicted to make room (gap events); only max_age removes it. Also protected: it may
  // use the reserve, and is never dropped on arrival.
  bool pinned = false;
  // May use the last pages of the reserve: the gateway's own buffer_full alarm.
  bool emergency = false;
  // The eviction record (Eviction::id) this event announces; deleted in the same transaction.
  uint64_t announces_eviction = 0;
};

struct ClassStats {
  uint64_t pending = 0;              // rows stored (leased or not)
  uint64_t bytes = 0;                // payload bytes stored
  int64_t oldest_time_us = 0;        // gateway_time_us of the oldest row; 0 when empty
  int64_t oldest_stored_at_us = 0;   // BufferClock time the oldest row committed; 0 when empty
  uint64_t evicted = 0;              // rows removed undelivered since open (all reasons)
};

struct ClassPolicy {
  int64_t max_age_us = 0;    // rows older than this on the buffer clock are purged; 0: never
  bool drop_oldest = false;  // when full: evict this class's oldest rows (else: reject new)
  bool never_drop = false;   // access, alarm: a new event that does not fit waits, never dropped
};

struct BufferOptions {
  uint64_t max_bytes = 512ull << 20;  // database file + WAL budget
  std::array<ClassPolicy, kClassCount> classes = default_classes();
  uint64_t reserve_bytes = 0;         // 0: max_bytes / 64, within [64 KiB, 8 MiB]
  uint64_t disk_low_water_bytes = 0;  // 0: the WAL budget + 1 MiB
  // Injected in tests; defaults: CLOCK_BOOTTIME and statvfs() of the buffer's folder.
  BufferClock::Source monotonic_us;
  std::function<std::optional<uint64_t>(const std::string& dir)> disk_free_bytes;

  // The contract's defaults: access and alarm 180 days, never dropped; telemetry and status
  // 30 days, oldest dropped first.
  static std::array<ClassPolicy, kClassCount> default_classes();
};

// Rows removed without delivery, waiting for the gap event that announces them.
struct Eviction {
  uint64_t id = 0;
  EventClass event_class = campus::gateway::v1::TELEMETRY;
  uint64_t first_seq = 0;
  uint64_t last_seq = 0;
  uint64_t count = 0;
  // buffer_full / disk_full: oldest rows evicted for room; rejected:buffer_full /
  // rejected:disk_full: new events not stored; max_age: retention.
  std::string reason;
};

struct AppendResult {
  std::size_t consumed = 0;  // events from the front taken: stored, or dropped and recorded
  std::size_t dropped = 0;   // of those, not stored (recorded as an eviction)
  std::vector<uint64_t> dropped_seqs;
  bool blocked = false;      // events[consumed] must be kept and did not fit: retry it later
  bool used_reserve = false; // protected events took reserve pages in this commit
};

struct SpaceReport {
  uint64_t max_bytes = 0;
  uint64_t file_limit_bytes = 0;  // the database file's bound (max_bytes minus the WAL budget)
  uint64_t file_bytes = 0;        // pages in the database
  uint64_t free_bytes = 0;        // free pages inside it
  uint64_t reserve_bytes = 0;     // pages held by the reserve now
  uint64_t reserve_target_bytes = 0;
  uint64_t wal_bytes = 0;         // the -wal file now
  uint64_t wal_budget_bytes = 0;  // journal_size_limit; the WAL returns under it after a checkpoint
  uint64_t wal_high_water_bytes = 0;  // largest -wal seen since open
  std::optional<uint64_t> disk_free_bytes;
  bool disk_low = false;          // below the low-water mark: the file does not grow
  double fill = 0.0;              // 0..1: how much of the room for droppable events is used
};

struct RecoveryReport {
  std::string reason;             // why the file was set aside (quick_check's first line...)
  std::string moved_to;           // where the damaged file now is
  uint64_t salvaged_rows = 0;     // events copied into the new file, seqs kept
  uint64_t unreadable_spans = 0;  // stretches of the events table that could not be read
  uint64_t old_next_seq = 0;      // the damaged file's next_seq, when it could be read
  uint64_t next_seq = 0;          // the new file's next_seq: above everything ever handed out
};

class EventBuffer {
 public:
  static constexpr int kSchemaVersion = 2;
  static constexpr std::size_t kClassCount = storage::kClassCount;

  // Opens or creates the buffer file, migrating an older schema. Fails with kCorrupt on a
  // damaged file, kUnavailable when the file cannot be opened for writing or has a newer schema
  // this code may not use (the file is then left unchanged).
  static Result<std::unique_ptr<EventBuffer>> open(const std::string& path,
                                                   BufferOptions options = {});

  // open(), but a damaged file (quick_check fails, or SQLite says corrupt) is moved aside to
  // "<path>.corrupt-<UTC time>", what can be read from it is copied into a fresh file (seqs
  // kept, next_seq above everything ever handed out), and the fresh file is opened. `recovery`
  // is set when that happened. Never loops: a fresh file that fails too is an error.
  struct Opened {
    std::unique_ptr<EventBuffer> buffer;
    std::optional<RecoveryReport> recovery;
  };
  static Result<Opened> open_or_recover(const std::string& path, BufferOptions options = {});

  ~EventBuffer();
  EventBuffer(const EventBuffer&) = delete;
  EventBuffer& operator=(const EventBuffer&) = delete;

  // The lowest seq the next appended event may carry.
  uint64_t next_seq() const { return next_seq_; }

  // Commits from the front of `events` in one transaction, as far as the tiers allow (see the
  // header comment). Seqs must be strictly increasing and at least next_seq(); holes are allowed
  // (events dropped before they reached the buffer). On an error (I/O error, a disk that filled
  // up at once) nothing was stored and the events can be offered again.
  Result<AppendResult> append(std::span<const BufferedEvent> events);
  // All or nothing: kFull (nothing stored) when append() would block; an event dropped on
  // arrival by its class's policy still counts as taken.
  Status append_batch(std::span<const BufferedEvent> events);

  // Eviction records not yet handed out by take_evictions(); each is handed out once per
  // process (after a restart, every unannounced one again). Until it is handed out, a record
  // grows with later evictions of the same class and reason (one gap event, not hundreds).
  std::vector<Eviction> take_evictions();
  std::size_t unannounced_evictions() const { return evictions_.size(); }

  // Periodic upkeep, cheap when there is nothing to do: purges rows past their class's max_age
  // (recorded as evictions), refills the reserve, checkpoints an oversized WAL.
  Status maintain();

  // The oldest unleased rows of one class in seq order, below `below_seq`: at most max_events,
  // and at most max_bytes of payload (but always one row when any is available).
  Result<std::vector<BufferedEvent>> lease(
      EventClass event_class, std::size_t max_events, std::size_t max_bytes,
      uint64_t below_seq = std::numeric_limits<uint64_t>::max());
  // Whether rows of the class below `below_seq` remain that were not leased yet.
  bool has_unleased_below(EventClass event_class, uint64_t below_seq) const;
  // Every unacked row becomes leasable again. Deferred acks are deleted first, so that what was
  // delivered is not sent again.
  void release_all();
  // Removes delivered rows now, in a transaction of their own. Unknown seqs (already acked, or
  // evicted) are ignored.
  Status ack(std::span<const uint64_t> seqs);
  // Removes delivered rows later: with the next append (in its transaction), maintain(),
  // release_all() or flush_acks(), whichever comes first. One transaction then deletes what
  // many PUBACKs delivered. Until then the rows stay counted as pending and are not leased again;
  // a crash before the deletion sends them again (duplicates, never a loss).
  void defer_ack(std::span<const uint64_t> seqs);
  Status flush_acks();
  // defer_ack() calls whose rows are not deleted yet.
  std::size_t deferred_ack_batches() const { return deferred_batches_; }

  // The last cursor committed with an event of this device; empty when none was.
  Result<std::string> cursor(const std::string& device_id) const;
  // The state rows (BufferedEvent::state_key) whose key starts with `prefix`, sorted by key.
  Result<std::vector<std::pair<std::string, std::string>>> state_rows(
      std::string_view prefix) const;

  // The oldest stored rows of a class, without leasing them (for inspection).
  Result<std::vector<BufferedEvent>> peek_oldest(EventClass event_class, std::size_t n);

  ClassStats stats(EventClass event_class) const;
  uint64_t pending_total() const;
  // Age of the class's oldest row on the buffer clock; 0 when empty.
  int64_t oldest_age_us(EventClass event_class) const;
  const BufferClock& clock() const { return clock_; }

  SpaceReport space() const;
  // 0..1: how full the room for droppable events is (back-pressure reads it); 1 also while the
  // disk is low and nothing droppable can be stored without evicting.
  double fill() const { return fill_; }
  bool disk_low() const { return disk_low_; }
  // The reserve holds all its pages (nothing borrowed it, or it was refilled since).
  bool reserve_full() const { return pad_pages_ >= reserve_pages_; }
  const ClassPolicy& policy(EventClass event_class) const;
  // Times protected events had to take reserve pages, and commits that blocked, since open.
  uint64_t reserve_uses() const { return reserve_uses_; }
  uint64_t blocked_appends() const { return blocked_appends_; }
  const std::string& path() const { return path_; }
  // The schema steps open() applied, one line each (empty when the file was current).
  const std::vector<std::string>& migrations_applied() const { return migrations_; }
  // Why the SeqFloor file could not be written ahead at the last commit; empty when it could.
  const std::string& seq_floor_error() const { return seq_floor_error_; }

 private:
  struct Room;
  struct Tx;
  explicit EventBuffer(std::string path, BufferOptions options, std::unique_ptr<SqliteDb> db);
  static Result<std::unique_ptr<EventBuffer>> open_db(const std::string& path,
                                                      BufferOptions options, bool quick_check);
  Status configure();
  Status prepare();
  Status load();
  Status set_synchronous(bool full);
  Status refresh_oldest(EventClass event_class);
  Result<AppendResult> append_impl(std::span<const BufferedEvent> events, bool all_or_nothing);
  Status try_append(std::span<const BufferedEvent> events, bool all_or_nothing, double safety,
                    AppendResult& result, Tx& tx);
  Result<Room> measure() const;
  Result<bool> evict_some(double pages_wanted, const Room& room, Tx& tx);
  Status release_pads(int64_t pages, Tx& tx);
  // Deletes rows inside the open transaction; what they held is added to removed/touched.
  Status delete_rows(std::span<const uint64_t> seqs, std::array<ClassStats, kClassCount>& removed,
                     std::array<bool, kClassCount>& touched);
  void apply_removed(const std::array<ClassStats, kClassCount>& removed,
                     const std::array<bool, kClassCount>& touched);
  Status write_evictions(Tx& tx);
  void apply(const Tx& tx);
  Status refill_reserve();
  Status purge_expired();
  Status checkpoint_if_oversized();
  void checkpoint_passive();
  void update_fill(const Room& room);
  double pages_for(const BufferedEvent& e) const;
  uint64_t wal_size() const;

  std::string path_;
  BufferOptions options_;
  std::unique_ptr<SqliteDb> db_;
  std::unique_ptr<Statement> insert_;
  std::unique_ptr<Statement> set_meta_;
  std::unique_ptr<Statement> set_cursor_;
  std::unique_ptr<Statement> set_state_;
  std::unique_ptr<Statement> delete_state_;
  std::unique_ptr<Statement> lease_;
  std::unique_ptr<Statement> delete_;
  std::unique_ptr<Statement> oldest_;
  std::unique_ptr<Statement> evict_;
  std::unique_ptr<Statement> purge_;
  std::unique_ptr<Statement> insert_eviction_;
  std::unique_ptr<Statement> delete_eviction_;
  std::unique_ptr<Statement> merge_eviction_;
  std::unique_ptr<Statement> release_pads_;
  std::unique_ptr<Statement> add_pads_;
  BufferClock clock_;
  SeqFloor seq_floor_;
  std::string seq_floor_error_;
  std::vector<std::string> migrations_;
  uint64_t next_seq_ = 1;
  bool synchronous_full_ = false;
  std::array<ClassStats, kClassCount> stats_{};
  std::array<uint64_t, kClassCount> leased_upto_{};  // highest seq leased per class
  std::vector<uint64_t> deferred_acks_;  // delivered, not deleted yet (defer_ack)
  std::size_t deferred_batches_ = 0;
  std::vector<Eviction> evictions_;                  // unannounced, by id
  uint64_t handed_out_upto_ = 0;                     // highest eviction id handed out

  // Space, in pages.
  int64_t page_size_ = 4096;
  int64_t limit_pages_ = 0;
  int64_t reserve_pages_ = 0;
  int64_t emergency_pages_ = 0;
  int64_t chunk_pages_ = 0;
  int64_t pad_pages_ = 0;
  uint64_t wal_budget_ = 0;
  uint64_t low_water_ = 0;
  mutable uint64_t wal_high_water_ = 0;
  double fill_ = 0.0;
  bool disk_low_ = false;
  uint64_t reserve_uses_ = 0;
  uint64_t blocked_appends_ = 0;
};

// A read-only look at a buffer file that another process may be writing (gatewayctl).
struct BufferInspection {
  uint64_t next_seq = 0;
  int schema_version = 0;
  std::array<ClassStats, EventBuffer::kClassCount> classes{};
};
Result<BufferInspection> inspect_buffer(const std::string& path);

}  // namespace gw::storage
