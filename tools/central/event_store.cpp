#include "tools/central/event_store.h"

#include <google/protobuf/util/json_util.h>
#include <libpq-fe.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <thread>

#include "protocols/topics.h"
#include "storage/sqlite_db.h"

namespace gw::central {

namespace v1 = campus::gateway::v1;

namespace {

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Seqs are uint64 on the wire and BIGINT / INTEGER (signed 64-bit) in both databases. A gateway
// would need 292 000 years at a million events a second to pass 2^63.
int64_t as_db(uint64_t seq) { return static_cast<int64_t>(seq); }

// Rows sorted by id: every transaction takes its row locks in the same order, so two consumers
// inserting overlapping batches cannot deadlock (PostgreSQL), and the summary per gateway is one
// pass.
std::vector<const EventRow*> sorted(std::span<const EventRow> rows) {
  std::vector<const EventRow*> out;
  out.reserve(rows.size());
  for (const EventRow& r : rows) out.push_back(&r);
  std::sort(out.begin(), out.end(), [](const EventRow* a, const EventRow* b) {
    return std::tie(a->gateway_id, a->seq) < std::tie(b->gateway_id, b->seq);
  });
  return out;
}

// What one transaction adds to a gateway's summary row.
struct SummaryDelta {
  uint64_t inserted = 0;
  uint64_t first = UINT64_MAX;
  uint64_t last = 0;
};

// ---------------------------------------------------------------------------------------------
// SQLite

constexpr char kSqliteSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS events (
  gateway_id      TEXT    NOT NULL,
  seq             INTEGER NOT NULL,
  device_id       TEXT    NOT NULL,
  event_class     TEXT    NOT NULL,
  gateway_time_us INTEGER NOT NULL,
  device_time_us  INTEGER NOT NULL,
  historical      INTEGER NOT NULL,
  body            TEXT    NOT NULL,
  payload         BLOB    NOT NULL,
  consumer        TEXT    NOT NULL,
  stored_at_us    INTEGER NOT NULL,
  PRIMARY KEY (gateway_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS gateways (
  gateway_id TEXT    PRIMARY KEY,
  events     INTEGER NOT NULL,
  first_seq  INTEGER NOT NULL,
  last_seq   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS announced_gaps (
  gateway_id TEXT    NOT NULL,
  first_seq  INTEGER NOT NULL,
  last_seq   INTEGER NOT NULL,
  PRIMARY KEY (gateway_id, first_seq, last_seq)
) WITHOUT ROWID;
)sql";

constexpr char kHolesSql[] =
    "SELECT prev + 1, seq - 1 FROM (SELECT seq, LAG(seq) OVER (ORDER BY seq) AS prev FROM events "
    "WHERE gateway_id = ?1) WHERE seq > prev + 1 ORDER BY seq";

class SqliteStore : public EventStore {
 public:
  static Result<std::unique_ptr<EventStore>> open(const std::string& path,
                                                  const std::string& consumer) {
    auto db = storage::SqliteDb::open(path);
    if (!db) return db.status();
    std::unique_ptr<SqliteStore> store(new SqliteStore(std::move(db).value(), path, consumer));
    storage::SqliteDb& d = *store->db_;
    // Writers wait for each other up to 10 s instead of failing with SQLITE_BUSY.
    d.set_busy_timeout(10000);
    for (const char* sql : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL"}) {
      if (Status s = d.exec(sql); !s) return s;
    }
    if (Status s = store->in_transaction([&] { return d.exec(kSqliteSchema); }); !s) return s;
    if (Status s = store->prepare(); !s) return s;
    return std::unique_ptr<EventStore>(std::move(store));
  }

  Result<InsertOutcome> insert(std::span<const EventRow> rows) override {
    InsertOutcome out;
    std::map<std::string, SummaryDelta> deltas;
    const int64_t stored_at = now_us();
    Status s = in_transaction([&]() -> Status {
      out = {};
      deltas.clear();
      for (const EventRow* r : sorted(rows)) {
        insert_->bind(1, r->gateway_id).bind(2, as_db(r->seq)).bind(3, r->device_id);
        insert_->bind(4, r->event_class).bind(5, r->gateway_time_us).bind(6, r->device_time_us);
        insert_->bind(7, int64_t{r->historical}).bind(8, r->body_json).bind_blob(9, r->payload);
        insert_->bind(10, consumer_).bind(11, stored_at);
        if (Status st = insert_->run(); !st) return st;
        if (sqlite3_changes(db_->handle()) == 0) {
          ++out.duplicates;
          continue;
        }
        ++out.inserted;
        SummaryDelta& d = deltas[r->gateway_id];
        ++d.inserted;
        d.first = std::min(d.first, r->seq);
        d.last = std::max(d.last, r->seq);
        if (r->announced_gap) {
          announce_->bind(1, r->gateway_id).bind(2, as_db(r->announced_gap->first));
          announce_->bind(3, as_db(r->announced_gap->last));
          if (Status st = announce_->run(); !st) return st;
        }
      }
      for (const auto& [gateway, d] : deltas) {
        summary_->bind(1, gateway).bind(2, int64_t(d.inserted)).bind(3, as_db(d.first));
        summary_->bind(4, as_db(d.last));
        if (Status st = summary_->run(); !st) return st;
      }
      return Status::ok();
    });
    if (!s) return s;
    return out;
  }

  Result<std::vector<GatewaySummary>> summarize(std::size_t max_ranges) override {
    std::vector<GatewaySummary> out;
    // One read transaction: the summary and the holes come from the same snapshot.
    if (Status s = db_->exec("BEGIN"); !s) return s;
    Status s = [&]() -> Status {
      auto gateways = db_->prepare(
          "SELECT gateway_id, events, first_seq, last_seq FROM gateways ORDER BY gateway_id");
      if (!gateways) return gateways.status();
      for (;;) {
        Result<bool> row = gateways.value().step();
        if (!row) return row.status();
        if (!*row) break;
        GatewaySummary g;
        g.gateway_id = std::string(gateways.value().column_text(0));
        g.events = uint64_t(gateways.value().column_int64(1));
        g.first_seq = uint64_t(gateways.value().column_int64(2));
        g.last_seq = uint64_t(gateways.value().column_int64(3));
        out.push_back(std::move(g));
      }
      for (GatewaySummary& g : out) {
        if (g.last_seq - g.first_seq + 1 == g.events) continue;
        std::vector<SeqRange> holes, announced;
        if (Status st = ranges(kHolesSql, g.gateway_id, holes); !st) return st;
        if (Status st =
                ranges("SELECT first_seq, last_seq FROM announced_gaps WHERE gateway_id = ?1",
                       g.gateway_id, announced);
            !st)
          return st;
        MissingSeqs m = subtract_announced(std::move(holes), std::move(announced), max_ranges);
        g.missing = m.count;
        g.announced_dropped = m.announced;
        g.missing_ranges = std::move(m.ranges);
      }
      return Status::ok();
    }();
    (void)db_->exec(s ? "COMMIT" : "ROLLBACK");
    if (!s) return s;
    return out;
  }

  std::string describe() const override { return "sqlite:" + path_; }

 private:
  SqliteStore(std::unique_ptr<storage::SqliteDb> db, std::string path, std::string consumer)
      : db_(std::move(db)), path_(std::move(path)), consumer_(std::move(consumer)) {}

  Status prepare() {
    auto make = [&](std::unique_ptr<storage::Statement>& slot, const char* sql) -> Status {
      auto st = db_->prepare(sql);
      if (!st) return st.status();
      slot = std::make_unique<storage::Statement>(std::move(st).value());
      return Status::ok();
    };
    if (Status s = make(insert_,
                        "INSERT OR IGNORE INTO events(gateway_id, seq, device_id, event_class, "
                        "gateway_time_us, device_time_us, historical, body, payload, consumer, "
                        "stored_at_us) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)");
        !s)
      return s;
    if (Status s = make(summary_,
                        "INSERT INTO gateways(gateway_id, events, first_seq, last_seq) "
                        "VALUES(?1, ?2, ?3, ?4) ON CONFLICT(gateway_id) DO UPDATE SET "
                        "events = events + excluded.events, "
                        "first_seq = min(first_seq, excluded.first_seq), "
                        "last_seq = max(last_seq, excluded.last_seq)");
        !s)
      return s;
    return make(announce_,
                "INSERT OR IGNORE INTO announced_gaps(gateway_id, first_seq, last_seq) "
                "VALUES(?1, ?2, ?3)");
  }

  // BEGIN IMMEDIATE takes the write lock up front (waiting up to busy_timeout), so a transaction
  // never has to upgrade a read lock, which SQLite would refuse with SQLITE_BUSY at once.
  template <typename F>
  Status in_transaction(F&& body) {
    if (Status s = db_->exec("BEGIN IMMEDIATE"); !s) return s;
    Status s = body();
    if (s) s = db_->exec("COMMIT");
    if (!s && db_->in_transaction()) (void)db_->exec("ROLLBACK");
    for (auto* st : {insert_.get(), summary_.get(), announce_.get()}) {
      if (st) st->reset();
    }
    return s;
  }

  Status ranges(const char* sql, const std::string& gateway, std::vector<SeqRange>& out) {
    auto st = db_->prepare(sql);
    if (!st) return st.status();
    st.value().bind(1, gateway);
    for (;;) {
      Result<bool> row = st.value().step();
      if (!row) return row.status();
      if (!*row) return Status::ok();
      out.push_back({uint64_t(st.value().column_int64(0)), uint64_t(st.value().column_int64(1))});
    }
  }

  std::unique_ptr<storage::SqliteDb> db_;
  std::string path_;
  std::string consumer_;
  std::unique_ptr<storage::Statement> insert_;
  std::unique_ptr<storage::Statement> summary_;
  std::unique_ptr<storage::Statement> announce_;
};

// ---------------------------------------------------------------------------------------------
// PostgreSQL

constexpr char kPgSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS events (
  gateway_id      TEXT    NOT NULL,
  seq             BIGINT  NOT NULL,
  device_id       TEXT    NOT NULL,
  event_class     TEXT    NOT NULL,
  gateway_time_us BIGINT  NOT NULL,
  device_time_us  BIGINT  NOT NULL,
  historical      BOOLEAN NOT NULL,
  body            JSONB   NOT NULL,
  payload         BYTEA   NOT NULL,
  consumer        TEXT    NOT NULL,
  stored_at_us    BIGINT  NOT NULL,
  PRIMARY KEY (gateway_id, seq)
);
CREATE TABLE IF NOT EXISTS gateways (
  gateway_id TEXT   PRIMARY KEY,
  events     BIGINT NOT NULL,
  first_seq  BIGINT NOT NULL,
  last_seq   BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS announced_gaps (
  gateway_id TEXT   NOT NULL,
  first_seq  BIGINT NOT NULL,
  last_seq   BIGINT NOT NULL,
  PRIMARY KEY (gateway_id, first_seq, last_seq)
);
)sql";

struct PgResult {
  PGresult* r = nullptr;
  explicit PgResult(PGresult* result) : r(result) {}
  PgResult(const PgResult&) = delete;
  PgResult& operator=(const PgResult&) = delete;
  ~PgResult() { PQclear(r); }
};

class PgStore : public EventStore {
 public:
  static Result<std::unique_ptr<EventStore>> open(const std::string& url,
                                                  const std::string& consumer) {
    PGconn* conn = PQconnectdb(url.c_str());
    std::unique_ptr<PgStore> store(new PgStore(conn, url, consumer));
    if (!conn || PQstatus(conn) != CONNECTION_OK) {
      return Status::unavailable("cannot connect to " + store->describe() + ": " +
                                 store->error_text());
    }
    // Concurrent CREATE TABLE IF NOT EXISTS can collide on the catalog; an advisory lock makes
    // the consumers that start together create the tables one at a time.
    if (Status s = store->exec("SELECT pg_advisory_lock(4711004)"); !s) return s;
    Status created = store->exec(kPgSchema);
    (void)store->exec("SELECT pg_advisory_unlock(4711004)");
    if (!created) return created;
    return std::unique_ptr<EventStore>(std::move(store));
  }

  ~PgStore() override { PQfinish(conn_); }

  Result<InsertOutcome> insert(std::span<const EventRow> rows) override {
    const auto ordered = sorted(rows);
    const std::string stored_at = std::to_string(now_us());
    // A deadlock or serialization failure only means "try again"; other errors are returned.
    for (int attempt = 1;; ++attempt) {
      InsertOutcome out;
      bool retry = false;
      Status s = insert_once(ordered, stored_at, out, retry);
      if (s) return out;
      (void)exec("ROLLBACK");
      if (!retry || attempt >= 5) return s;
      std::this_thread::sleep_for(std::chrono::milliseconds(20 * attempt));
    }
  }

  Result<std::vector<GatewaySummary>> summarize(std::size_t max_ranges) override {
    std::vector<GatewaySummary> out;
    if (Status s = exec("BEGIN ISOLATION LEVEL REPEATABLE READ"); !s) return s;
    Status s = [&]() -> Status {
      PgResult g(PQexec(conn_,
                        "SELECT gateway_id, events, first_seq, last_seq FROM gateways ORDER BY "
                        "gateway_id"));
      if (PQresultStatus(g.r) != PGRES_TUPLES_OK) return failure("summary");
      for (int i = 0; i < PQntuples(g.r); ++i) {
        GatewaySummary row;
        row.gateway_id = PQgetvalue(g.r, i, 0);
        row.events = std::stoull(PQgetvalue(g.r, i, 1));
        row.first_seq = std::stoull(PQgetvalue(g.r, i, 2));
        row.last_seq = std::stoull(PQgetvalue(g.r, i, 3));
        out.push_back(std::move(row));
      }
      for (GatewaySummary& row : out) {
        if (row.last_seq - row.first_seq + 1 == row.events) continue;
        std::vector<SeqRange> holes, announced;
        if (Status st = ranges("SELECT prev + 1, seq - 1 FROM (SELECT seq, LAG(seq) OVER (ORDER BY "
                               "seq) AS prev FROM events WHERE gateway_id = $1) h WHERE seq > "
                               "prev + 1 ORDER BY seq",
                               row.gateway_id, holes);
            !st)
          return st;
        if (Status st =
                ranges("SELECT first_seq, last_seq FROM announced_gaps WHERE gateway_id = $1",
                       row.gateway_id, announced);
            !st)
          return st;
        MissingSeqs m = subtract_announced(std::move(holes), std::move(announced), max_ranges);
        row.missing = m.count;
        row.announced_dropped = m.announced;
        row.missing_ranges = std::move(m.ranges);
      }
      return Status::ok();
    }();
    (void)exec(s ? "COMMIT" : "ROLLBACK");
    if (!s) return s;
    return out;
  }

  // The URL without its password (postgresql://user:secret@host/db -> postgresql://user@host/db).
  std::string describe() const override {
    std::string shown = url_;
    const auto scheme = shown.find("://");
    const auto at = shown.find('@');
    if (scheme != std::string::npos && at != std::string::npos && at > scheme) {
      const auto colon = shown.find(':', scheme + 3);
      if (colon != std::string::npos && colon < at) shown.erase(colon, at - colon);
    }
    return shown;
  }

 private:
  PgStore(PGconn* conn, std::string url, std::string consumer)
      : conn_(conn), url_(std::move(url)), consumer_(std::move(consumer)) {}

  std::string error_text() const {
    std::string e = conn_ ? PQerrorMessage(conn_) : "out of memory";
    while (!e.empty() && (e.back() == '\n' || e.back() == ' ')) e.pop_back();
    return e;
  }
  Status failure(const std::string& what) const {
    // A lost connection is "unavailable" (the caller retries after PQreset); the rest are bugs
    // or schema trouble.
    if (PQstatus(conn_) != CONNECTION_OK) {
      PQreset(conn_);
      return Status::unavailable(what + ": " + error_text());
    }
    return Status::io_error(what + ": " + error_text());
  }
  Status exec(const char* sql) {
    PgResult r(PQexec(conn_, sql));
    const auto st = PQresultStatus(r.r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) return failure(sql);
    return Status::ok();
  }

  Status insert_once(const std::vector<const EventRow*>& rows, const std::string& stored_at,
                     InsertOutcome& out, bool& retry) {
    if (Status s = exec("BEGIN"); !s) return s;
    std::map<std::string, SummaryDelta> deltas;
    auto run = [&](const char* sql, std::vector<std::string> values,
                   std::vector<int> binary = {}) -> Result<uint64_t> {
      std::vector<const char*> v;
      std::vector<int> lengths, formats;
      for (std::size_t i = 0; i < values.size(); ++i) {
        v.push_back(values[i].data());
        lengths.push_back(int(values[i].size()));
        formats.push_back(std::find(binary.begin(), binary.end(), int(i)) != binary.end());
      }
      PgResult r(PQexecParams(conn_, sql, int(v.size()), nullptr, v.data(), lengths.data(),
                              formats.data(), 0));
      if (PQresultStatus(r.r) != PGRES_COMMAND_OK) {
        const char* state = PQresultErrorField(r.r, PG_DIAG_SQLSTATE);
        // 40P01 deadlock_detected, 40001 serialization_failure.
        retry = state && (std::string_view(state) == "40P01" || std::string_view(state) == "40001");
        return failure("insert");
      }
      return uint64_t(std::strtoull(PQcmdTuples(r.r), nullptr, 10));
    };
    for (const EventRow* r : rows) {
      auto n =
          run("INSERT INTO events(gateway_id, seq, device_id, event_class, gateway_time_us, "
              "device_time_us, historical, body, payload, consumer, stored_at_us) "
              "VALUES($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10, $11) "
              "ON CONFLICT (gateway_id, seq) DO NOTHING",
              {r->gateway_id, std::to_string(as_db(r->seq)), r->device_id, r->event_class,
               std::to_string(r->gateway_time_us), std::to_string(r->device_time_us),
               r->historical ? "true" : "false", r->body_json, r->payload, consumer_, stored_at},
              {8});
      if (!n) return n.status();
      if (*n == 0) {
        ++out.duplicates;
        continue;
      }
      ++out.inserted;
      SummaryDelta& d = deltas[r->gateway_id];
      ++d.inserted;
      d.first = std::min(d.first, r->seq);
      d.last = std::max(d.last, r->seq);
      if (r->announced_gap) {
        auto a =
            run("INSERT INTO announced_gaps(gateway_id, first_seq, last_seq) "
                "VALUES($1, $2, $3) ON CONFLICT DO NOTHING",
                {r->gateway_id, std::to_string(as_db(r->announced_gap->first)),
                 std::to_string(as_db(r->announced_gap->last))});
        if (!a) return a.status();
      }
    }
    for (const auto& [gateway, d] : deltas) {
      auto u =
          run("INSERT INTO gateways(gateway_id, events, first_seq, last_seq) "
              "VALUES($1, $2, $3, $4) ON CONFLICT (gateway_id) DO UPDATE SET "
              "events = gateways.events + excluded.events, "
              "first_seq = LEAST(gateways.first_seq, excluded.first_seq), "
              "last_seq = GREATEST(gateways.last_seq, excluded.last_seq)",
              {gateway, std::to_string(d.inserted), std::to_string(as_db(d.first)),
               std::to_string(as_db(d.last))});
      if (!u) return u.status();
    }
    return exec("COMMIT");
  }

  Status ranges(const char* sql, const std::string& gateway, std::vector<SeqRange>& out) {
    const char* values[] = {gateway.c_str()};
    PgResult r(PQexecParams(conn_, sql, 1, nullptr, values, nullptr, nullptr, 0));
    if (PQresultStatus(r.r) != PGRES_TUPLES_OK) return failure("gap query");
    for (int i = 0; i < PQntuples(r.r); ++i) {
      out.push_back({std::stoull(PQgetvalue(r.r, i, 0)), std::stoull(PQgetvalue(r.r, i, 1))});
    }
    return Status::ok();
  }

  PGconn* conn_;
  std::string url_;
  std::string consumer_;
};

}  // namespace

EventRow make_row(const std::string& gateway_id, const v1::Event& event) {
  EventRow r;
  r.gateway_id = gateway_id;
  r.seq = event.seq();
  r.device_id = event.device_id();
  r.event_class = std::string(protocols::class_name(event.event_class()));
  r.gateway_time_us = event.gateway_time_us();
  r.device_time_us = event.device_time_us();
  r.historical = event.historical();
  google::protobuf::util::JsonPrintOptions opts;
  opts.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(event, &r.body_json, opts);
  event.SerializeToString(&r.payload);
  if (event.has_gap() && event.gap().first_seq() <= event.gap().last_seq() &&
      event.gap().first_seq() > 0) {
    r.announced_gap = SeqRange{event.gap().first_seq(), event.gap().last_seq()};
  }
  return r;
}

MissingSeqs subtract_announced(std::vector<SeqRange> holes, std::vector<SeqRange> announced,
                               std::size_t limit) {
  auto by_first = [](const SeqRange& a, const SeqRange& b) { return a.first < b.first; };
  std::sort(holes.begin(), holes.end(), by_first);
  std::sort(announced.begin(), announced.end(), by_first);
  // Announcements may overlap (a gateway announcing again after a restart): merge them, so both
  // ends ascend below.
  std::vector<SeqRange> merged;
  for (const SeqRange& a : announced) {
    if (!merged.empty() &&
        (merged.back().last == UINT64_MAX || a.first <= merged.back().last + 1)) {
      merged.back().last = std::max(merged.back().last, a.last);
    } else {
      merged.push_back(a);
    }
  }
  MissingSeqs out;
  auto missing = [&](uint64_t first, uint64_t last) {
    out.count += last - first + 1;
    if (out.ranges.size() < limit) out.ranges.push_back({first, last});
  };
  std::size_t j = 0;
  for (const SeqRange& hole : holes) {
    uint64_t at = hole.first;  // the first seq of this hole not yet accounted for
    bool done = false;
    while (j < merged.size() && merged[j].last < at) ++j;
    for (std::size_t k = j; !done && k < merged.size() && merged[k].first <= hole.last; ++k) {
      const SeqRange& a = merged[k];
      if (a.first > at) missing(at, a.first - 1);
      const uint64_t lo = std::max(a.first, at);
      const uint64_t hi = std::min(a.last, hole.last);
      out.announced += hi - lo + 1;
      if (hi == hole.last)
        done = true;
      else
        at = hi + 1;
    }
    if (!done) missing(at, hole.last);
  }
  return out;
}

Result<std::unique_ptr<EventStore>> open_event_store(const std::string& target,
                                                     const std::string& consumer_id) {
  if (target.empty()) return Status::invalid("--store: give a SQLite file or a postgresql:// URL");
  if (target.rfind("postgresql://", 0) == 0 || target.rfind("postgres://", 0) == 0) {
    return PgStore::open(target, consumer_id);
  }
  if (target.find("://") != std::string::npos) {
    return Status::invalid("--store: '" + target.substr(0, target.find("://") + 3) +
                           "' is not a store this consumer knows (a SQLite file path, or "
                           "postgresql://)");
  }
  return SqliteStore::open(target, consumer_id);
}

}  // namespace gw::central
