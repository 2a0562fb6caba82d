// EventStore is the central side's table of events, one row per event id (gateway_id, seq)
// (CONTRACT.md, "Event schema"). Several consumers may write to one store at once: every insert
// is "insert unless that id is already there", in one transaction per call, so a duplicate
// delivery — a gateway's republish after a reconnect, or the same event reaching two consumers —
// lands once and nothing a consumer stored is lost to another's write.
//
// Two backends behind one interface:
// - SQLite file (any target that is not a URL): WAL, a 10 s busy_timeout and BEGIN IMMEDIATE, so
//   writers queue for the lock instead of failing; INSERT OR IGNORE on the primary key.
// - PostgreSQL (a postgresql:// or postgres:// URL, via libpq): INSERT ... ON CONFLICT DO
//   NOTHING; a transaction that meets a deadlock or serialization failure is retried.
// Both keep a per-gateway summary (count, first and last seq) in the same transaction, so
// summarize() costs one row per gateway plus a scan of the gateways that actually have holes.
//
// Gaps the gateway announced itself (a `gap` event: telemetry it had to evict) are recorded and
// not reported as missing. Not thread-safe: one owner thread per store object; any number of
// processes per store.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "campus/gateway/v1/gateway.pb.h"
#include "protocols/status.h"
#include "tools/central/seq_set.h"

namespace gw::central {

struct EventRow {
  std::string gateway_id;
  uint64_t seq = 0;
  std::string device_id;
  std::string event_class;  // access | alarm | telemetry | status
  int64_t gateway_time_us = 0;
  int64_t device_time_us = 0;
  bool historical = false;
  std::string body_json;  // the event as protobuf JSON (proto field names), for SQL queries
  std::string payload;    // the event's protobuf bytes, as received
  std::optional<SeqRange> announced_gap;  // for a gap event: the seqs the gateway dropped
};

// Builds the row of one received event. Raw card ids are stored as the gateway sent them: the
// gateway's privacy.card_id decides what leaves the building; the store is not a log.
EventRow make_row(const std::string& gateway_id, const campus::gateway::v1::Event& event);

struct InsertOutcome {
  uint64_t inserted = 0;    // rows that were new
  uint64_t duplicates = 0;  // rows whose id was already stored (by anyone)
};

struct GatewaySummary {
  std::string gateway_id;
  uint64_t events = 0;
  uint64_t first_seq = 0;
  uint64_t last_seq = 0;
  uint64_t announced_dropped = 0;        // seqs inside the gateway's own gap announcements
  uint64_t missing = 0;                  // seqs between first and last neither stored nor announced
  std::vector<SeqRange> missing_ranges;  // the first max_ranges of them
};

class EventStore {
 public:
  virtual ~EventStore() = default;
  // Stores rows (any gateways, any order) in one transaction; `consumer` is recorded on the
  // rows it inserted. On error nothing of this call is stored and the caller may retry.
  virtual Result<InsertOutcome> insert(std::span<const EventRow> rows) = 0;
  // Every gateway in the store, by id.
  virtual Result<std::vector<GatewaySummary>> summarize(std::size_t max_ranges) = 0;
  // "sqlite:/path" or "postgresql://host/db" (without the password), for logs.
  virtual std::string describe() const = 0;
};

// Opens (and creates the tables of) the store named by target: a postgresql:// or postgres://
// URL, else a SQLite file path. consumer_id is written on the rows this process inserts.
Result<std::unique_ptr<EventStore>> open_event_store(const std::string& target,
                                                     const std::string& consumer_id);

// The missing seqs of [first, last] given the stored holes and the announced ranges: holes minus
// announcements, as a count and the first `limit` ranges. Pure; used by both backends.
struct MissingSeqs {
  uint64_t count = 0;
  uint64_t announced = 0;
  std::vector<SeqRange> ranges;
};
MissingSeqs subtract_announced(std::vector<SeqRange> holes, std::vector<SeqRange> announced,
                               std::size_t limit);

}  // namespace gw::central
