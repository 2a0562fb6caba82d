// The buffer file's health over its life: schema migrations (a real version-1 file written by
// the first gatewayd), a newer file refused untouched, a damaged file moved aside and salvaged,
// and seqs that never go back even when the database is lost.
#include <sqlite3.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "buffer_fixtures.h"
#include "storage/schema.h"

using namespace gw::storage;
using namespace gw::storage::testing;

namespace {

const std::string kFixtureV1 = std::string(GW_SOURCE_DIR) + "/tests/fixtures/storage/buffer-v1.db";

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void exec(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  INFO((err ? err : ""));
  sqlite3_free(err);
  sqlite3_close(db);
  REQUIRE(rc == SQLITE_OK);
}

// Overwrites one page of the file with garbage: what a failing disk or a bad write does.
void corrupt_page(const std::string& path, int64_t page, int64_t page_size = 4096) {
  std::fstream f(path, std::ios::binary | std::ios::in | std::ios::out);
  REQUIRE(f);
  f.seekp((page - 1) * page_size);
  std::string junk(std::size_t(page_size), '\0');
  for (std::size_t i = 0; i < junk.size(); ++i) junk[i] = char((i * 131 + 7) & 0xff);
  f.write(junk.data(), std::streamsize(junk.size()));
}

std::map<uint64_t, std::string> payloads(const std::string& path) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "SELECT seq, payload FROM events", -1, &st, nullptr) == SQLITE_OK);
  std::map<uint64_t, std::string> out;
  while (sqlite3_step(st) == SQLITE_ROW) {
    out[uint64_t(sqlite3_column_int64(st, 0))] =
        std::string(static_cast<const char*>(sqlite3_column_blob(st, 1)),
                    std::size_t(sqlite3_column_bytes(st, 1)));
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return out;
}

// A closed buffer holding `n` telemetry events, its WAL folded into the file.
std::map<uint64_t, std::string> write_buffer(const std::string& path, std::size_t n) {
  {
    auto buf = open_buffer(path);
    for (uint64_t seq = 1; seq <= n; seq += 100) {
      REQUIRE(buf->append_batch(make_batch(seq, std::min<std::size_t>(100, n - seq + 1),
                                           v1::TELEMETRY, 300))
                  .is_ok());
    }
  }
  exec(path, "PRAGMA wal_checkpoint(TRUNCATE)");
  return payloads(path);
}

}  // namespace

TEST_CASE("a version-1 file written by the first gatewayd opens with every pending row") {
  TempDir dir;
  fs::copy_file(kFixtureV1, dir.db());
  REQUIRE(sql_int(dir.db(), "PRAGMA user_version") == 1);
  const auto before = payloads(dir.db());
  REQUIRE(before.size() == 25);

  auto buf = open_buffer(dir.db());
  CHECK(buf->migrations_applied().size() == 1);
  CHECK(sql_int(dir.db(), "PRAGMA user_version") == schema::kVersion);
  CHECK(buf->next_seq() == 31);
  CHECK(buf->stats(v1::TELEMETRY).pending == 15);
  CHECK(buf->stats(v1::ACCESS).pending == 5);
  CHECK(buf->stats(v1::ALARM).pending == 3);
  CHECK(buf->stats(v1::STATUS).pending == 2);
  CHECK(buf->cursor("gate-1").value() == "log-index-42");
  auto state = buf->state_rows("alarm/");
  REQUIRE(state.is_ok());
  REQUIRE(state->size() == 1);
  CHECK(state->front().second == "active");
  // Rows are unchanged and lease out as before, in seq order.
  CHECK(payloads(dir.db()) == before);
  auto leased = buf->lease(v1::TELEMETRY, 100, 1u << 20);
  REQUIRE(leased.is_ok());
  REQUIRE(leased->size() == 15);
  for (const auto& e : *leased) {
    v1::Event ev;
    REQUIRE(ev.ParseFromString(e.payload));
    CHECK(ev.seq() == e.seq);
  }
  CHECK(leased->front().seq == 6);
  // New rows follow on, and a reopen runs no migration.
  REQUIRE(buf->append_batch(make_batch(31, 3, v1::ACCESS)).is_ok());
  buf.reset();
  auto again = open_buffer(dir.db());
  CHECK(again->migrations_applied().empty());
  CHECK(again->pending_total() == 28);
  CHECK(again->next_seq() == 34);
}

TEST_CASE("a version-1 file from before cursors and state existed migrates too") {
  TempDir dir;
  fs::copy_file(kFixtureV1, dir.db());
  exec(dir.db(), "DROP TABLE cursors; DROP TABLE state;");
  auto buf = open_buffer(dir.db());
  CHECK(buf->pending_total() == 25);
  CHECK(buf->cursor("gate-1").value().empty());
  CHECK(buf->state_rows("").value().empty());
}

TEST_CASE("a file from a newer gatewayd is refused and left byte for byte unchanged") {
  TempDir dir;
  fs::copy_file(kFixtureV1, dir.db());
  { auto buf = open_buffer(dir.db()); }
  exec(dir.db(), "PRAGMA user_version=7; UPDATE meta SET value=5 WHERE key='compat_version'; "
                 "PRAGMA wal_checkpoint(TRUNCATE);");
  const std::string bytes = read_bytes(dir.db());
  auto r = EventBuffer::open(dir.db());
  REQUIRE_FALSE(r.is_ok());
  CHECK(r.status().code() == gw::Status::Code::kUnavailable);
  CHECK_THAT(r.status().message(), Catch::Contains("schema version 7"));
  CHECK_THAT(r.status().message(), Catch::Contains("understands up to 2"));
  CHECK_THAT(r.status().message(), Catch::Contains("left unchanged"));
  // open_or_recover must not take it for damage either.
  auto r2 = EventBuffer::open_or_recover(dir.db());
  CHECK(r2.status().code() == gw::Status::Code::kUnavailable);
  CHECK(read_bytes(dir.db()) == bytes);
  CHECK_FALSE(fs::exists(dir.db() + ".corrupt"));
}

TEST_CASE("a newer file whose compat_version this code understands is used as it is") {
  TempDir dir;
  fs::copy_file(kFixtureV1, dir.db());
  { auto buf = open_buffer(dir.db()); }
  // A later additive version: a new table, compat_version unchanged.
  exec(dir.db(), "CREATE TABLE future(x); PRAGMA user_version=3;");
  auto buf = open_buffer(dir.db());
  CHECK(buf->pending_total() == 25);
  CHECK(buf->migrations_applied().empty());
  REQUIRE(buf->append_batch(make_batch(31, 1, v1::ALARM)).is_ok());
  buf.reset();
  CHECK(sql_int(dir.db(), "PRAGMA user_version") == 3);  // not lowered
}

TEST_CASE("a damaged file is moved aside, its readable rows salvaged with their seqs") {
  TempDir dir;
  const auto original = write_buffer(dir.db(), 3000);
  // A leaf page in the middle of the events table (dbstat lists the table's pages).
  const int64_t leaves = sql_int(
      dir.db(), "SELECT count(*) FROM dbstat WHERE name='events' AND pagetype='leaf'");
  REQUIRE(leaves > 10);
  const int64_t page = sql_int(dir.db(),
                               "SELECT pageno FROM dbstat WHERE name='events' AND pagetype='leaf' "
                               "ORDER BY path LIMIT 1 OFFSET " + std::to_string(leaves / 2));
  corrupt_page(dir.db(), page);
  auto opened = EventBuffer::open_or_recover(dir.db());
  INFO(opened.status().message());
  REQUIRE(opened.is_ok());
  REQUIRE(opened->recovery.has_value());
  const RecoveryReport& rep = *opened->recovery;
  INFO("salvaged " << rep.salvaged_rows << " spans " << rep.unreadable_spans << " reason "
                   << rep.reason);
  CHECK_THAT(rep.moved_to, Catch::StartsWith(dir.db() + ".corrupt-"));
  CHECK(fs::exists(rep.moved_to));
  CHECK(rep.salvaged_rows > 2800);
  CHECK(rep.salvaged_rows < 3000);
  CHECK(rep.unreadable_spans >= 1);
  CHECK(rep.old_next_seq == 3001);
  auto& buf = *opened->buffer;
  CHECK(buf.next_seq() >= 3001);
  // Every salvaged row is exactly what was written, under the same seq.
  const auto now = payloads(dir.db());
  CHECK(now.size() == rep.salvaged_rows);
  for (const auto& [seq, payload] : now) {
    REQUIRE(original.count(seq) == 1);
    CHECK(original.at(seq) == payload);
  }
  // What could not be read is announced.
  const auto ev = buf.take_evictions();
  uint64_t missing_announced = 0;
  for (const auto& e : ev) {
    if (e.reason == "corrupt_file") missing_announced += e.count;
  }
  CHECK(missing_announced == 3000 - rep.salvaged_rows);
  CHECK(sql_int(dir.db(), "PRAGMA integrity_check") != -1);
  opened.value().buffer.reset();
  // The next start finds a healthy file: no second recovery, no loop.
  auto second = EventBuffer::open_or_recover(dir.db());
  REQUIRE(second.is_ok());
  CHECK_FALSE(second->recovery.has_value());
  CHECK(second->buffer->pending_total() == rep.salvaged_rows);
}

TEST_CASE("a file that is not a database at all is replaced; seqs continue from the floor file") {
  TempDir dir;
  {
    auto buf = open_buffer(dir.db());
    REQUIRE(buf->append_batch(make_batch(1, 500, v1::ACCESS)).is_ok());
  }
  REQUIRE(fs::exists(dir.db() + ".seq"));
  fs::remove(dir.db() + "-wal");
  {
    std::ofstream f(dir.db(), std::ios::binary | std::ios::trunc);
    f << std::string(65536, '\x5a');
  }
  // The strict open reports it; the recovering open replaces it.
  CHECK(EventBuffer::open(dir.db()).status().code() == gw::Status::Code::kCorrupt);
  auto opened = EventBuffer::open_or_recover(dir.db());
  INFO(opened.status().message());
  REQUIRE(opened.is_ok());
  REQUIRE(opened->recovery.has_value());
  CHECK(opened->recovery->salvaged_rows == 0);
  CHECK(opened->recovery->old_next_seq == 0);
  // Nothing in the database said where seqs were; the floor file did: never back to 1.
  CHECK(opened->buffer->next_seq() > 500);
  const auto ev = opened->buffer->take_evictions();
  REQUIRE(ev.size() == 1);
  CHECK(ev.front().reason == "corrupt_file");
  CHECK(ev.front().first_seq == 1);
  CHECK(ev.front().last_seq == opened->buffer->next_seq() - 1);
}

TEST_CASE("the seq floor file stays ahead of every seq handed out") {
  TempDir dir;
  auto buf = open_buffer(dir.db());
  REQUIRE(buf->append_batch(make_batch(1, 10, v1::TELEMETRY)).is_ok());
  SeqFloor floor(dir.db() + ".seq");
  REQUIRE(floor.load().is_ok());
  CHECK(floor.value() > buf->next_seq());
  // Far ahead in one step (a seq jump after a recovery): the floor follows before the commit.
  const uint64_t far = floor.value() + 10;
  REQUIRE(buf->append_batch(make_batch(far, 1, v1::TELEMETRY)).is_ok());
  REQUIRE(floor.load().is_ok());
  CHECK(floor.value() > far + SeqFloor::kBlock / 2);
}

TEST_CASE("an unwritable location is reported as unavailable by the recovering open too") {
  auto r = EventBuffer::open_or_recover("/proc/gw-no-such-dir/buffer.db");
  REQUIRE_FALSE(r.is_ok());
  CHECK(r.status().code() == gw::Status::Code::kUnavailable);
}

TEST_CASE("every migration step is one transaction: a step that fails leaves the previous version") {
  TempDir dir;
  fs::copy_file(kFixtureV1, dir.db());
  // Make step 1 -> 2 fail half-way: a column it adds already exists.
  exec(dir.db(), "ALTER TABLE events ADD COLUMN pinned INTEGER");
  auto r = EventBuffer::open(dir.db());
  REQUIRE_FALSE(r.is_ok());
  CHECK_THAT(r.status().message(), Catch::Contains("schema migration 1 -> 2"));
  CHECK(sql_int(dir.db(), "PRAGMA user_version") == 1);
  CHECK(sql_int(dir.db(), "SELECT count(*) FROM sqlite_master WHERE name='evictions'") == 0);
  CHECK(sql_int(dir.db(), "SELECT count(*) FROM events") == 25);
}
