// EventBuffer is the durable outbox: serialized events in one SQLite file (WAL mode), drained in
// seq order per class. An event survives a process crash once append_batch() returns OK, and a
// power loss too when its batch held an access or alarm event (those commit with
// synchronous=FULL; telemetry and status commit with NORMAL). An event leaves only through ack(),
// which the uplink calls after the broker's PUBACK.
//
// seq is gateway-wide, strictly increasing and never reused for the life of the file: the next
// value is persisted in the same transaction as the rows, so it survives even when every row has
// been acked, and a transaction cut short by kill -9 leaves no trace (its seqs were never
// published, so handing them out again reuses nothing anyone has seen).
//
// Leasing: lease() hands out the oldest rows of a class not already leased; release_all() makes
// every unacked row leasable again (after a lost connection, so they are republished).
// Not thread-safe: the core thread owns it.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "campus/gateway/v1/gateway.pb.h"
#include "protocols/status.h"

namespace gw::storage {

class SqliteDb;
class Statement;

using EventClass = campus::gateway::v1::EventClass;

struct BufferedEvent {
  uint64_t seq = 0;
  EventClass event_class = campus::gateway::v1::TELEMETRY;
  std::string device_id;
  int64_t gateway_time_us = 0;
  std::string payload;  // a serialized campus.gateway.v1.Event carrying the same seq
};

struct ClassStats {
  uint64_t pending = 0;           // rows stored (leased or not)
  uint64_t bytes = 0;             // payload bytes stored
  int64_t oldest_time_us = 0;     // gateway_time_us of the oldest row; 0 when empty
};

class EventBuffer {
 public:
  static constexpr int kSchemaVersion = 1;
  static constexpr std::size_t kClassCount = 5;  // indexed by the EventClass value

  // Opens or creates the buffer file. Fails with kCorrupt on a damaged file and kUnavailable
  // when the file cannot be opened for writing.
  static Result<std::unique_ptr<EventBuffer>> open(const std::string& path);
  ~EventBuffer();
  EventBuffer(const EventBuffer&) = delete;
  EventBuffer& operator=(const EventBuffer&) = delete;

  // The seq the next appended event must carry.
  uint64_t next_seq() const { return next_seq_; }

  // Commits the events in one transaction. Their seqs must be next_seq(), next_seq()+1, ...
  // On failure (disk full, I/O error) nothing was stored and next_seq() is unchanged, so the
  // same events can be offered again.
  Status append_batch(std::span<const BufferedEvent> events);

  // The oldest unleased rows of one class in seq order: at most max_events, and at most
  // max_bytes of payload (but always one row when any is available).
  Result<std::vector<BufferedEvent>> lease(EventClass event_class, std::size_t max_events,
                                           std::size_t max_bytes);
  // Every unacked row becomes leasable again.
  void release_all();
  // Removes delivered rows. Unknown seqs (already acked) are ignored.
  Status ack(std::span<const uint64_t> seqs);

  // The oldest stored rows of a class, without leasing them (for inspection).
  Result<std::vector<BufferedEvent>> peek_oldest(EventClass event_class, std::size_t n);

  ClassStats stats(EventClass event_class) const;
  uint64_t pending_total() const;

 private:
  explicit EventBuffer(std::unique_ptr<SqliteDb> db);
  Status prepare();
  Status set_synchronous(bool full);
  Status refresh_oldest(EventClass event_class);

  std::unique_ptr<SqliteDb> db_;
  std::unique_ptr<Statement> insert_;
  std::unique_ptr<Statement> set_next_seq_;
  std::unique_ptr<Statement> lease_;
  std::unique_ptr<Statement> delete_;
  std::unique_ptr<Statement> oldest_;
  uint64_t next_seq_ = 1;
  bool synchronous_full_ = false;
  std::array<ClassStats, kClassCount> stats_{};
  std::array<uint64_t, kClassCount> leased_upto_{};  // highest seq leased per class
};

// A read-only look at a buffer file that another process may be writing (gatewayctl).
struct BufferInspection {
  uint64_t next_seq = 0;
  int schema_version = 0;
  std::array<ClassStats, EventBuffer::kClassCount> classes{};
};
Result<BufferInspection> inspect_buffer(const std::string& path);

}  // namespace gw::storage
