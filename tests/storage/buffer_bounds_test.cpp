// The buffer's bounds: max_bytes, eviction with its records, the reserve, blocked access
// events, pinned gap events, back-pressure's fill figure, the WAL under a reader, and a real
// full disk. Real SQLite files throughout.
#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <fstream>
#include <map>
#include <set>

#include "buffer_fixtures.h"

using namespace gw::storage;
using namespace gw::storage::testing;

namespace {

constexpr uint64_t kMiB = 1u << 20;

// Appends `n` events of a class one batch at a time; returns how many were consumed.
AppendResult append_all(EventBuffer& b, std::vector<BufferedEvent> events) {
  auto r = b.append(events);
  INFO(r.status().message());
  REQUIRE(r.is_ok());
  return r.value();
}

uint64_t sum_counts(const std::vector<Eviction>& ev, v1::EventClass cls, const std::string& reason) {
  uint64_t n = 0;
  for (const auto& e : ev) {
    if (e.event_class == cls && e.reason == reason) n += e.count;
  }
  return n;
}

// Fills the store with telemetry until evictions start; returns the next seq.
uint64_t fill_with_telemetry(EventBuffer& b, std::size_t batches, std::size_t per_batch = 100) {
  uint64_t seq = b.next_seq();
  for (std::size_t i = 0; i < batches; ++i) {
    auto r = append_all(b, make_batch(seq, per_batch, v1::TELEMETRY));
    REQUIRE(r.consumed == per_batch);
    seq += per_batch;
  }
  return seq;
}

}  // namespace

TEST_CASE("telemetry beyond max_bytes evicts the oldest, each eviction recorded, the file bounded") {
  TempDir dir;
  BufferOptions o;
  o.max_bytes = 1 * kMiB;
  auto buf = open_buffer(dir.db(), o);
  const SpaceReport before = buf->space();
  CHECK(before.reserve_bytes == before.reserve_target_bytes);  // the reserve exists from the start
  CHECK(before.reserve_bytes > 0);

  // ~300 bytes a row, 20000 rows: about six times what fits.
  const uint64_t next = fill_with_telemetry(*buf, 200);
  const uint64_t appended = next - 1;
  const auto seqs = stored_seqs(dir.db(), v1::TELEMETRY);
  const auto evictions = buf->take_evictions();
  const uint64_t evicted = sum_counts(evictions, v1::TELEMETRY, "buffer_full");
  INFO("stored " << seqs.size() << " evicted " << evicted);
  CHECK(seqs.size() + evicted == appended);
  CHECK(evicted > appended / 2);
  // Oldest first: what is left is the newest, dense up to the last seq.
  REQUIRE(!seqs.empty());
  CHECK(seqs.back() == appended);
  CHECK(seqs.size() == seqs.back() - seqs.front() + 1);
  // Each record names rows that are gone.
  std::set<uint64_t> left(seqs.begin(), seqs.end());
  for (const Eviction& e : evictions) {
    CHECK(e.last_seq < seqs.front());
    CHECK(left.count(e.first_seq) == 0);
  }
  // Bounded: the database file stays inside its share of max_bytes; file + WAL inside max_bytes.
  const SpaceReport sp = buf->space();
  CHECK(sp.file_bytes <= sp.file_limit_bytes);
  CHECK(file_size_or0(dir.db()) <= sp.file_limit_bytes);
  CHECK(file_size_or0(dir.db()) + file_size_or0(dir.db() + "-wal") <= o.max_bytes);
  CHECK(buf->stats(v1::TELEMETRY).pending == seqs.size());
  CHECK(buf->stats(v1::TELEMETRY).evicted == evicted);
  // The reserve was never touched by telemetry.
  CHECK(sp.reserve_bytes == sp.reserve_target_bytes);
}

TEST_CASE("access pushes telemetry out, then takes the reserve, then blocks — never dropped") {
  TempDir dir;
  BufferOptions o;
  o.max_bytes = 1 * kMiB;
  auto buf = open_buffer(dir.db(), o);
  uint64_t seq = fill_with_telemetry(*buf, 60);
  REQUIRE(buf->stats(v1::TELEMETRY).evicted > 0);
  std::vector<uint64_t> access;
  bool used_reserve = false;
  bool blocked = false;
  uint64_t telemetry_left_when_reserve_used = ~0ull;
  for (int i = 0; i < 400 && !blocked; ++i) {
    auto batch = make_batch(seq, 20, v1::ACCESS);
    auto r = append_all(*buf, batch);
    for (std::size_t k = 0; k < r.consumed; ++k) access.push_back(batch[k].seq);
    CHECK(r.dropped == 0);  // access is never dropped on arrival
    if (r.used_reserve && !used_reserve) {
      used_reserve = true;
      telemetry_left_when_reserve_used = buf->stats(v1::TELEMETRY).pending;
    }
    seq += r.consumed;
    blocked = r.blocked;
    if (r.blocked) {
      CHECK(r.consumed < batch.size());
      // The blocked event keeps its seq for the retry: next_seq did not pass it.
      CHECK(buf->next_seq() <= batch[r.consumed].seq);
    }
  }
  REQUIRE(used_reserve);
  REQUIRE(blocked);
  // Telemetry went first: none was left when the reserve was needed.
  CHECK(telemetry_left_when_reserve_used == 0);
  // Every access event that was taken is there; none evicted.
  CHECK(stored_seqs(dir.db(), v1::ACCESS) == access);
  CHECK(buf->stats(v1::ACCESS).evicted == 0);
  CHECK(sum_counts(buf->take_evictions(), v1::ACCESS, "buffer_full") == 0);

  // The gateway's own alarm still fits in the last pages of the reserve.
  BufferedEvent alarm = make_event(seq, v1::ALARM, 40, "gw");
  alarm.emergency = true;
  auto r = append_all(*buf, {alarm});
  CHECK(r.consumed == 1);
  CHECK_FALSE(r.blocked);
  ++seq;
  // The pages the alarm's room left over may take a few more access events, then they block
  // again, and the strict API says so.
  bool blocked_again = false;
  for (int i = 0; i < 200 && !blocked_again; ++i) {
    auto one = make_batch(seq, 1, v1::ACCESS);
    auto more = append_all(*buf, one);
    if (more.consumed == 1) access.push_back(seq++);
    blocked_again = more.blocked;
  }
  CHECK(blocked_again);
  CHECK(buf->append_batch(make_batch(seq, 1, v1::ACCESS)).code() == gw::Status::Code::kFull);
  CHECK(stored_seqs(dir.db(), v1::ACCESS) == access);

  // Delivery frees room: after acks the waiting event fits again, and maintain() refills the
  // reserve before anything else may use it.
  std::vector<uint64_t> half(access.begin(), access.begin() + access.size() / 2);
  REQUIRE(buf->ack(half).is_ok());
  r = append_all(*buf, make_batch(seq, 1, v1::ACCESS));
  CHECK(r.consumed == 1);
  REQUIRE(buf->maintain().is_ok());
  CHECK(buf->reserve_full());
  CHECK(buf->space().file_bytes <= buf->space().file_limit_bytes);
}

TEST_CASE("droppable events that cannot evict anything are rejected and recorded") {
  TempDir dir;
  BufferOptions o;
  o.max_bytes = 1 * kMiB;
  auto buf = open_buffer(dir.db(), o);
  uint64_t seq = 1;
  // The store full of access events (never evicted)...
  for (int i = 0; i < 400; ++i) {
    auto r = append_all(*buf, make_batch(seq, 20, v1::ACCESS));
    seq += r.consumed;
    if (r.used_reserve || r.blocked) break;
  }
  // ... leaves telemetry nowhere to go: not stored, recorded, and next_seq moves past it.
  auto batch = make_batch(seq, 5, v1::TELEMETRY);
  auto r = append_all(*buf, batch);
  CHECK(r.consumed == 5);
  CHECK(r.dropped == 5);
  CHECK(r.dropped_seqs == std::vector<uint64_t>{seq, seq + 1, seq + 2, seq + 3, seq + 4});
  CHECK(buf->next_seq() == seq + 5);
  CHECK(stored_seqs(dir.db(), v1::TELEMETRY).empty());
  const auto ev = buf->take_evictions();
  CHECK(sum_counts(ev, v1::TELEMETRY, "rejected:buffer_full") == 5);
}

TEST_CASE("an eviction stays recorded until the event announcing it commits, across restarts") {
  TempDir dir;
  BufferOptions o;
  o.max_bytes = 1 * kMiB;
  std::vector<Eviction> first;
  {
    auto buf = open_buffer(dir.db(), o);
    fill_with_telemetry(*buf, 80);
    first = buf->take_evictions();
    REQUIRE(!first.empty());
    CHECK(buf->take_evictions().empty());  // handed out once per process
  }
  {
    // Not announced before the "crash": handed out again.
    auto buf = open_buffer(dir.db(), o);
    auto again = buf->take_evictions();
    REQUIRE(again.size() == first.size());
    // Announce the first one with a pinned gap event.
    BufferedEvent gap = make_event(buf->next_seq(), v1::STATUS, 40, "gw");
    gap.pinned = true;
    gap.announces_eviction = again.front().id;
    REQUIRE(buf->append_batch(std::vector<BufferedEvent>{gap}).is_ok());
    CHECK(buf->unannounced_evictions() == first.size() - 1);
    CHECK(sql_int(dir.db(), "SELECT count(*) FROM evictions WHERE id=" +
                                std::to_string(again.front().id)) == 0);
  }
  auto buf = open_buffer(dir.db(), o);
  CHECK(buf->take_evictions().size() == first.size() - 1);
}

TEST_CASE("pinned rows (gap events) are never evicted to make room") {
  TempDir dir;
  BufferOptions o;
  o.max_bytes = 1 * kMiB;
  auto buf = open_buffer(dir.db(), o);
  std::vector<uint64_t> pinned;
  uint64_t seq = 1;
  for (int round = 0; round < 30; ++round) {
    BufferedEvent gap = make_event(seq++, v1::STATUS, 40, "gw");
    gap.pinned = true;
    pinned.push_back(gap.seq);
    std::vector<BufferedEvent> batch{gap};
    auto more = make_batch(seq, 100, v1::STATUS);  // status is droppable too
    seq += 100;
    batch.insert(batch.end(), more.begin(), more.end());
    append_all(*buf, batch);
    fill_with_telemetry(*buf, 2);
    seq = buf->next_seq();
  }
  REQUIRE(buf->stats(v1::STATUS).evicted > 0);
  const auto status = stored_seqs(dir.db(), v1::STATUS);
  const std::set<uint64_t> have(status.begin(), status.end());
  for (uint64_t p : pinned) CHECK(have.count(p) == 1);
}

TEST_CASE("fill() rises as the room for droppable events is used, for back-pressure") {
  TempDir dir;
  BufferOptions o;
  o.max_bytes = 2 * kMiB;
  auto buf = open_buffer(dir.db(), o);
  CHECK(buf->fill() < 0.2);
  uint64_t seq = 1;
  double last = buf->fill();
  bool saw_high = false;
  for (int i = 0; i < 200 && buf->stats(v1::TELEMETRY).evicted == 0; ++i) {
    auto r = append_all(*buf, make_batch(seq, 100, v1::TELEMETRY));
    seq += r.consumed;
    CHECK(buf->fill() >= last - 0.02);  // grows (page reuse makes small dips)
    last = buf->fill();
    saw_high = saw_high || last >= 0.85;
  }
  CHECK(saw_high);
  CHECK(buf->stats(v1::TELEMETRY).evicted > 0);
  // Delivery brings it down again.
  auto leased = buf->lease(v1::TELEMETRY, 100000, 1u << 30);
  REQUIRE(leased.is_ok());
  std::vector<uint64_t> seqs;
  for (const auto& e : *leased) seqs.push_back(e.seq);
  REQUIRE(buf->ack(seqs).is_ok());
  REQUIRE(buf->maintain().is_ok());
  CHECK(buf->fill() < 0.2);
}

TEST_CASE("the WAL grows only while a reader holds a snapshot and is cut back when it leaves") {
  TempDir dir;
  BufferOptions o;
  o.max_bytes = 16 * kMiB;  // WAL budget 1 MiB
  auto buf = open_buffer(dir.db(), o);
  const uint64_t budget = buf->space().wal_budget_bytes;
  uint64_t seq = 1;
  uint64_t max_free_running = 0;
  for (int i = 0; i < 60; ++i) {
    seq += append_all(*buf, make_batch(seq, 100, v1::TELEMETRY)).consumed;
    max_free_running = std::max(max_free_running, file_size_or0(dir.db() + "-wal"));
  }
  // Without readers: the budget plus at most one transaction.
  CHECK(max_free_running <= budget + 256 * 1024);

  sqlite3* reader = nullptr;
  REQUIRE(sqlite3_open_v2(dir.db().c_str(), &reader, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_exec(reader, "BEGIN; SELECT count(*) FROM events;", nullptr, nullptr, nullptr) ==
          SQLITE_OK);
  for (int i = 0; i < 120; ++i) seq += append_all(*buf, make_batch(seq, 100, v1::TELEMETRY)).consumed;
  REQUIRE(buf->maintain().is_ok());  // the reader still holds: nothing to do but try
  const uint64_t pinned = file_size_or0(dir.db() + "-wal");
  CHECK(pinned > budget);
  sqlite3_exec(reader, "COMMIT", nullptr, nullptr, nullptr);
  sqlite3_close(reader);
  REQUIRE(buf->maintain().is_ok());
  const uint64_t after = file_size_or0(dir.db() + "-wal");
  INFO("budget " << budget << " with reader " << pinned << " after " << after);
  CHECK(after <= budget);
  CHECK(buf->space().wal_high_water_bytes >= pinned);
  CHECK(sql_int(dir.db(), "SELECT count(*) FROM events") == int64_t(buf->pending_total()));
}

// A real full disk: a small tmpfs holds the buffer, another file takes the rest of it. Where
// mounting is not allowed (not root), the free-space figure is injected instead and SQLite's
// max_page_count is what stops the file: a stand-in for unit tests only, the integration fault
// suite always uses a real filesystem.
TEST_CASE("disk full: telemetry recycles its own space, access uses the reserve, recovery is automatic") {
  SmallDisk disk(8 * kMiB);
  TempDir fallback;
  const bool real = disk.mounted;
  const std::string db = real ? disk.db() : fallback.db();
  const std::string filler = (fs::path(db).parent_path() / "filler").string();
  uint64_t fake_free = 64 * kMiB;
  BufferOptions o;
  o.max_bytes = 64 * kMiB;  // more than the disk: the disk is the limit
  o.reserve_bytes = 256 * 1024;
  o.disk_low_water_bytes = 1 * kMiB;
  if (!real) {
    WARN("tmpfs mount not permitted: disk free space injected (stand-in)");
    o.disk_free_bytes = [&](const std::string&) -> std::optional<uint64_t> { return fake_free; };
  }
  auto buf = open_buffer(db, o);
  uint64_t seq = fill_with_telemetry(*buf, 10);

  // Someone else fills the disk to the last byte.
  auto fill_disk = [&](uint64_t leave) {
    if (!real) {
      fake_free = leave;
      return;
    }
    const int fd = ::open(filler.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    REQUIRE(fd >= 0);
    std::string chunk(4096, 'x');
    while (fs::space(disk.path).available > leave) {
      if (::write(fd, chunk.data(), chunk.size()) <= 0) break;
    }
    ::close(fd);
  };
  // The disk fills up (a log growing): the buffer notices at the low-water mark and from the
  // caution zone on checkpoints every commit, so nothing waits in the WAL for space...
  fill_disk(3 * kMiB / 2);
  for (int i = 0; i < 5; ++i) {
    auto t = buf->append(make_batch(seq, 50, v1::TELEMETRY));
    REQUIRE(t.is_ok());
    seq += t->consumed;
  }
  // ... then it is full to the last byte.
  fill_disk(0);
  if (real) CHECK(fs::space(disk.path).available < 4096);

  // Telemetry keeps coming: stored by evicting older telemetry, announced as disk_full.
  std::vector<uint64_t> access;
  uint64_t errors = 0, telemetry_taken = 0;
  for (int i = 0; i < 50; ++i) {
    auto t = buf->append(make_batch(seq, 50, v1::TELEMETRY));
    if (!t) {
      ++errors;
      continue;
    }
    telemetry_taken += t->consumed;
    seq += t->consumed;
    auto a = buf->append(make_batch(seq, 2, v1::ACCESS));
    if (!a) {
      ++errors;
      continue;
    }
    for (std::size_t k = 0; k < a->consumed; ++k) access.push_back(seq + k);
    CHECK_FALSE(a->blocked);
    seq += a->consumed;
  }
  INFO("errors " << errors << " telemetry " << telemetry_taken << " access " << access.size());
  CHECK(errors == 0);
  CHECK(buf->disk_low());
  CHECK(access.size() == 100);
  CHECK(stored_seqs(db, v1::ACCESS) == access);
  const auto ev = buf->take_evictions();
  CHECK(sum_counts(ev, v1::TELEMETRY, "disk_full") > 0);

  // Space returns: the file grows again and the reserve comes back by itself.
  if (real) {
    fs::remove(filler);
  } else {
    fake_free = 64 * kMiB;
  }
  REQUIRE(buf->maintain().is_ok());
  CHECK_FALSE(buf->disk_low());
  CHECK(buf->reserve_full());
  auto t = buf->append(make_batch(seq, 500, v1::TELEMETRY));
  REQUIRE(t.is_ok());
  CHECK(t->dropped == 0);
  CHECK(sql_int(db, "PRAGMA integrity_check") != -1);
}

TEST_CASE("a disk filled at once: commits fail as values and succeed again when space returns") {
  SmallDisk disk(8 * kMiB);
  if (!disk.mounted) {
    // Without a real filesystem there is no way to make SQLite's own writes fail; the integration
    // fault suite covers this on a tmpfs.
    WARN("tmpfs mount not permitted: skipping the sudden-full-disk case in unit tests");
    return;
  }
  BufferOptions o;
  o.max_bytes = 64 * kMiB;
  o.reserve_bytes = 256 * 1024;
  o.disk_low_water_bytes = 1 * kMiB;
  auto buf = open_buffer(disk.db(), o);
  uint64_t seq = fill_with_telemetry(*buf, 10);
  const std::string filler = (disk.path / "filler").string();
  {
    std::ofstream f(filler, std::ios::binary);
    std::string chunk(64 * 1024, 'x');
    while (f.write(chunk.data(), std::streamsize(chunk.size())) && f.flush()) {
    }
  }
  {
    const int fd = ::open(filler.c_str(), O_WRONLY | O_APPEND);
    std::string b(512, 'x');
    while (::write(fd, b.data(), b.size()) > 0) {
    }
    ::close(fd);
  }
  // Whatever happens to each commit, it is a value (never a crash), and nothing half-stored.
  std::vector<uint64_t> access;
  int failures = 0;
  for (int i = 0; i < 40; ++i) {
    auto batch = make_batch(seq, 20, v1::ACCESS);
    auto r = buf->append(batch);
    if (!r) {
      ++failures;
      CHECK((r.status().code() == gw::Status::Code::kFull ||
             r.status().code() == gw::Status::Code::kIoError));
      CHECK(buf->next_seq() == seq);
      continue;
    }
    for (std::size_t k = 0; k < r->consumed; ++k) access.push_back(batch[k].seq);
    seq += r->consumed;
    if (r->blocked) break;
  }
  fs::remove(filler);
  // Within a second or so of space coming back everything commits again.
  for (int i = 0; i < 10; ++i) {
    auto batch = make_batch(seq, 20, v1::ACCESS);
    auto r = buf->append(batch);
    REQUIRE(r.is_ok());
    REQUIRE(r->consumed == 20);
    for (const auto& e : batch) access.push_back(e.seq);
    seq += 20;
  }
  REQUIRE(buf->maintain().is_ok());
  INFO("failures while full: " << failures);
  CHECK(stored_seqs(disk.db(), v1::ACCESS) == access);
  CHECK(sql_int(disk.db(), "SELECT count(*) FROM events") == int64_t(buf->pending_total()));
}
