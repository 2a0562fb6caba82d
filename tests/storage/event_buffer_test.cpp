#include "storage/event_buffer.h"

#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <thread>

namespace fs = std::filesystem;
namespace v1 = campus::gateway::v1;
using gw::storage::BufferedEvent;
using gw::storage::EventBuffer;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/gw-buffer-test-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string db() const { return (path / "buffer.db").string(); }
};

std::unique_ptr<EventBuffer> open_buffer(const std::string& path) {
  auto r = EventBuffer::open(path);
  INFO(r.status().message());
  REQUIRE(r.is_ok());
  return std::move(r).value();
}

std::vector<BufferedEvent> make_events(uint64_t first_seq, std::size_t n,
                                       v1::EventClass cls = v1::TELEMETRY) {
  std::vector<BufferedEvent> out;
  for (std::size_t i = 0; i < n; ++i) {
    v1::Event e;
    e.set_seq(first_seq + i);
    e.set_device_id("meter-1");
    e.set_event_class(cls);
    e.set_gateway_time_us(int64_t(1000 + first_seq + i));
    BufferedEvent b;
    b.seq = first_seq + i;
    b.event_class = cls;
    b.device_id = "meter-1";
    b.gateway_time_us = int64_t(1000 + first_seq + i);
    b.payload = e.SerializeAsString();
    out.push_back(std::move(b));
  }
  return out;
}

std::vector<uint64_t> seqs_of(const std::vector<BufferedEvent>& events) {
  std::vector<uint64_t> s;
  for (const auto& e : events) s.push_back(e.seq);
  return s;
}

// Every seq stored in the file, read with plain SQLite (not through the code under test).
std::vector<uint64_t> stored_seqs(const std::string& path) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "SELECT seq FROM events ORDER BY seq", -1, &st, nullptr) ==
          SQLITE_OK);
  std::vector<uint64_t> out;
  while (sqlite3_step(st) == SQLITE_ROW) out.push_back(uint64_t(sqlite3_column_int64(st, 0)));
  sqlite3_finalize(st);
  sqlite3_close(db);
  return out;
}

}  // namespace

TEST_CASE("a new buffer starts at seq 1 and appends in order") {
  TempDir dir;
  auto buf = open_buffer(dir.db());
  CHECK(buf->next_seq() == 1);
  REQUIRE(buf->append_batch(make_events(1, 10)).is_ok());
  CHECK(buf->next_seq() == 11);
  CHECK(buf->stats(v1::TELEMETRY).pending == 10);
  CHECK(buf->stats(v1::TELEMETRY).oldest_time_us == 1001);
  CHECK(buf->stats(v1::ACCESS).pending == 0);
}

TEST_CASE("append_batch refuses seqs below next_seq or out of order; holes are allowed") {
  TempDir dir;
  auto buf = open_buffer(dir.db());
  REQUIRE(buf->append_batch(make_events(1, 3)).is_ok());
  gw::Status s = buf->append_batch(make_events(3, 2));
  REQUIRE_FALSE(s.is_ok());
  CHECK_THAT(s.message(), Catch::Contains("expected at least 4"));
  auto backwards = make_events(10, 2);
  std::swap(backwards[0], backwards[1]);
  s = buf->append_batch(backwards);
  REQUIRE_FALSE(s.is_ok());
  CHECK_THAT(s.message(), Catch::Contains("expected at least 12"));
  CHECK(buf->next_seq() == 4);
  // A hole (events dropped before they reached the buffer, announced by a gap) is fine.
  REQUIRE(buf->append_batch(make_events(7, 2)).is_ok());
  CHECK(buf->next_seq() == 9);
  CHECK(stored_seqs(dir.db()) == std::vector<uint64_t>{1, 2, 3, 7, 8});
}

TEST_CASE("lease hands out each class in seq order, ack removes, release re-offers") {
  TempDir dir;
  auto buf = open_buffer(dir.db());
  REQUIRE(buf->append_batch(make_events(1, 5, v1::TELEMETRY)).is_ok());
  REQUIRE(buf->append_batch(make_events(6, 3, v1::ACCESS)).is_ok());
  REQUIRE(buf->append_batch(make_events(9, 5, v1::TELEMETRY)).is_ok());

  auto a = buf->lease(v1::TELEMETRY, 4, 1 << 20);
  REQUIRE(a.is_ok());
  CHECK(seqs_of(*a) == std::vector<uint64_t>{1, 2, 3, 4});
  auto b = buf->lease(v1::TELEMETRY, 100, 1 << 20);
  REQUIRE(b.is_ok());
  CHECK(seqs_of(*b) == std::vector<uint64_t>{5, 9, 10, 11, 12, 13});
  CHECK(buf->lease(v1::TELEMETRY, 100, 1 << 20)->empty());
  auto acc = buf->lease(v1::ACCESS, 100, 1 << 20);
  CHECK(seqs_of(*acc) == std::vector<uint64_t>{6, 7, 8});

  // Only b is acknowledged; the connection drops; a must come again, b must not.
  REQUIRE(buf->ack(seqs_of(*b)).is_ok());
  CHECK(buf->stats(v1::TELEMETRY).pending == 4);
  buf->release_all();
  auto again = buf->lease(v1::TELEMETRY, 100, 1 << 20);
  CHECK(seqs_of(*again) == std::vector<uint64_t>{1, 2, 3, 4});
  CHECK(seqs_of(*buf->lease(v1::ACCESS, 100, 1 << 20)) == std::vector<uint64_t>{6, 7, 8});
  // Acking twice is harmless.
  REQUIRE(buf->ack(seqs_of(*b)).is_ok());
  CHECK(buf->stats(v1::TELEMETRY).pending == 4);
  CHECK(stored_seqs(dir.db()) == std::vector<uint64_t>{1, 2, 3, 4, 6, 7, 8});
}

TEST_CASE("deferred acks are deleted with the next append, and never leased again") {
  TempDir dir;
  auto buf = open_buffer(dir.db());
  REQUIRE(buf->append_batch(make_events(1, 6, v1::TELEMETRY)).is_ok());
  auto a = buf->lease(v1::TELEMETRY, 3, 1 << 20);
  auto b = buf->lease(v1::TELEMETRY, 3, 1 << 20);
  REQUIRE(seqs_of(*a) == std::vector<uint64_t>{1, 2, 3});
  buf->defer_ack(seqs_of(*a));
  CHECK(buf->deferred_ack_batches() == 1);
  // Not deleted yet: still in the file and counted.
  CHECK(stored_seqs(dir.db()) == std::vector<uint64_t>{1, 2, 3, 4, 5, 6});
  CHECK(buf->stats(v1::TELEMETRY).pending == 6);

  // The next append deletes them in its own transaction.
  REQUIRE(buf->append_batch(make_events(7, 1, v1::ACCESS)).is_ok());
  CHECK(buf->deferred_ack_batches() == 0);
  CHECK(stored_seqs(dir.db()) == std::vector<uint64_t>{4, 5, 6, 7});
  CHECK(buf->stats(v1::TELEMETRY).pending == 3);

  // A lost connection: what was delivered is deleted before anything is offered again.
  buf->defer_ack(seqs_of(*b));
  buf->release_all();
  CHECK(buf->lease(v1::TELEMETRY, 100, 1 << 20)->empty());
  CHECK(stored_seqs(dir.db()) == std::vector<uint64_t>{7});

  // flush_acks() and maintain() delete what waits; a reopen sees the same.
  auto acc = buf->lease(v1::ACCESS, 100, 1 << 20);
  buf->defer_ack(seqs_of(*acc));
  REQUIRE(buf->maintain().is_ok());
  CHECK(stored_seqs(dir.db()).empty());
  CHECK(buf->pending_total() == 0);
  REQUIRE(buf->flush_acks().is_ok());  // nothing left: harmless
}

TEST_CASE("lease respects the byte budget but always returns one row") {
  TempDir dir;
  auto buf = open_buffer(dir.db());
  auto events = make_events(1, 10);
  REQUIRE(buf->append_batch(events).is_ok());
  const std::size_t one = events[0].payload.size();
  auto r = buf->lease(v1::TELEMETRY, 100, one * 3);
  CHECK(r->size() == 3);
  r = buf->lease(v1::TELEMETRY, 100, 1);
  CHECK(r->size() == 1);
}

TEST_CASE("the next seq survives a reopen even when every row was acked") {
  TempDir dir;
  {
    auto buf = open_buffer(dir.db());
    REQUIRE(buf->append_batch(make_events(1, 50)).is_ok());
    auto all = buf->lease(v1::TELEMETRY, 100, 1 << 20);
    REQUIRE(buf->ack(seqs_of(*all)).is_ok());
    CHECK(buf->pending_total() == 0);
  }
  auto buf = open_buffer(dir.db());
  CHECK(buf->next_seq() == 51);
  CHECK(buf->pending_total() == 0);
  CHECK(stored_seqs(dir.db()).empty());
}

TEST_CASE("stats are rebuilt from the file on reopen") {
  TempDir dir;
  {
    auto buf = open_buffer(dir.db());
    REQUIRE(buf->append_batch(make_events(1, 7, v1::ACCESS)).is_ok());
    REQUIRE(buf->append_batch(make_events(8, 3, v1::TELEMETRY)).is_ok());
    auto first = buf->lease(v1::ACCESS, 2, 1 << 20);
    REQUIRE(buf->ack(seqs_of(*first)).is_ok());
    CHECK(buf->stats(v1::ACCESS).oldest_time_us == 1003);
  }
  auto buf = open_buffer(dir.db());
  CHECK(buf->stats(v1::ACCESS).pending == 5);
  CHECK(buf->stats(v1::ACCESS).oldest_time_us == 1003);
  CHECK(buf->stats(v1::TELEMETRY).pending == 3);
  auto insp = gw::storage::inspect_buffer(dir.db());
  REQUIRE(insp.is_ok());
  CHECK(insp->next_seq == 11);
  CHECK(insp->classes[v1::ACCESS].pending == 5);
  CHECK(insp->schema_version == EventBuffer::kSchemaVersion);
}

TEST_CASE("a writer killed inside a transaction leaves committed rows and no trace of the rest") {
  TempDir dir;
  {
    auto buf = open_buffer(dir.db());
    REQUIRE(buf->append_batch(make_events(1, 100)).is_ok());
  }
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // The child writes half a batch by hand, as append_batch would, then dies before COMMIT.
    sqlite3* db = nullptr;
    sqlite3_open(dir.db().c_str(), &db);
    // A tiny page cache makes SQLite spill the uncommitted pages into the WAL file, so the
    // reader must really skip frames that no commit record covers.
    sqlite3_exec(db, "PRAGMA cache_size=2; BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
    for (int seq = 101; seq <= 2100; ++seq) {
      const std::string sql =
          "INSERT INTO events(seq, class, device_id, gateway_time_us, payload) VALUES(" +
          std::to_string(seq) + ", 3, 'meter-1', 0, zeroblob(1000))";
      sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
    }
    sqlite3_exec(db, "UPDATE meta SET value=2101 WHERE key='next_seq'", nullptr, nullptr,
                 nullptr);
    raise(SIGKILL);
  }
  int status = 0;
  waitpid(child, &status, 0);
  REQUIRE(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
  CHECK(fs::file_size(dir.db() + "-wal") > 1000 * 1000);  // the half transaction reached disk

  auto buf = open_buffer(dir.db());
  CHECK(buf->next_seq() == 101);
  CHECK(buf->pending_total() == 100);
  CHECK(stored_seqs(dir.db()).back() == 100);
}

TEST_CASE("kill -9 at random moments under load loses no committed event and reuses no seq") {
  TempDir dir;
  std::mt19937 rng(12345);
  uint64_t highest_committed = 0;
  for (int cycle = 0; cycle < 8; ++cycle) {
    int pipe_fd[2];
    REQUIRE(pipe(pipe_fd) == 0);
    const pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      close(pipe_fd[0]);
      auto r = EventBuffer::open(dir.db());
      if (!r) _exit(3);
      auto& b = *r.value();
      for (;;) {
        const uint64_t first = b.next_seq();
        if (!b.append_batch(make_events(first, 64)).is_ok()) _exit(4);
        const uint64_t last = b.next_seq() - 1;  // committed: report it
        if (write(pipe_fd[1], &last, sizeof last) != sizeof last) _exit(5);
      }
    }
    close(pipe_fd[1]);
    // The first commit is the start of the load; the kill lands somewhere in what follows.
    uint64_t reported = 0;
    REQUIRE(read(pipe_fd[0], &reported, sizeof reported) == sizeof reported);
    highest_committed = std::max(highest_committed, reported);
    std::this_thread::sleep_for(std::chrono::milliseconds(5 + rng() % 60));
    kill(child, SIGKILL);
    while (read(pipe_fd[0], &reported, sizeof reported) == sizeof reported) {
      highest_committed = std::max(highest_committed, reported);
    }
    close(pipe_fd[0]);
    int status = 0;
    waitpid(child, &status, 0);
    REQUIRE(WIFSIGNALED(status));

    auto buf = open_buffer(dir.db());
    const auto seqs = stored_seqs(dir.db());
    REQUIRE(!seqs.empty());
    // Everything reported committed is there, dense from 1, and the next seq follows it.
    CHECK(seqs.back() >= highest_committed);
    CHECK(seqs.size() == seqs.back());
    CHECK(buf->next_seq() == seqs.back() + 1);
    highest_committed = seqs.back();
  }
  CHECK(highest_committed > 64);
}

TEST_CASE("a file that is not a database is reported as corrupt, not crashed on") {
  TempDir dir;
  {
    std::ofstream f(dir.db(), std::ios::binary);
    f << std::string(8192, '\x5a');
  }
  auto r = EventBuffer::open(dir.db());
  REQUIRE_FALSE(r.is_ok());
  CHECK(r.status().code() == gw::Status::Code::kCorrupt);
}

TEST_CASE("an unwritable location is reported as unavailable") {
  auto r = EventBuffer::open("/proc/gw-no-such-dir/buffer.db");
  REQUIRE_FALSE(r.is_ok());
  CHECK(r.status().code() == gw::Status::Code::kUnavailable);
}
