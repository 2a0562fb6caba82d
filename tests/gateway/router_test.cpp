// Router over a real buffer file: evictions become pinned gap events exactly once, an access
// event with no room stays queued behind a buffer_full alarm that goes first, the queue in
// memory is bounded for droppable events only, and events are flagged while the clock is not
// trusted.
#include "gateway/router.h"

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <map>
#include <set>

namespace fs = std::filesystem;
namespace v1 = campus::gateway::v1;
using gw::Router;
using gw::RouterOptions;
using gw::storage::BufferOptions;
using gw::storage::EventBuffer;

namespace {

constexpr uint64_t kMiB = 1u << 20;

struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/gw-router-test-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string db() const { return (path / "buffer.db").string(); }
};

v1::Event meter(const std::string& device, double value, std::size_t name_bytes = 200) {
  v1::Event e;
  e.set_device_id(device);
  e.set_gateway_time_us(1760000000000000);
  auto* v = e.mutable_meter()->add_values();
  v->set_name(std::string(name_bytes, 'n'));
  v->set_value(value);
  return e;
}

v1::Event swipe(const std::string& device, int n) {
  v1::Event e;
  e.set_device_id(device);
  e.set_gateway_time_us(1760000000000000);
  e.mutable_access()->set_credential("h:" + std::to_string(n));
  e.mutable_access()->set_door(std::string(150, 'd'));
  return e;
}

// Every stored event, decoded, by seq.
std::map<uint64_t, v1::Event> stored(EventBuffer& buf) {
  std::map<uint64_t, v1::Event> out;
  for (auto cls : {v1::ACCESS, v1::ALARM, v1::TELEMETRY, v1::STATUS}) {
    auto rows = buf.peek_oldest(cls, 1000000);
    REQUIRE(rows.is_ok());
    for (const auto& r : *rows) {
      v1::Event e;
      REQUIRE(e.ParseFromString(r.payload));
      REQUIRE(e.seq() == r.seq);
      out[r.seq] = e;
    }
  }
  return out;
}

void run_until_idle(asio::io_context& io, Router& router) {
  for (int i = 0; i < 200 && router.queued() > 0; ++i) {
    io.run_for(std::chrono::milliseconds(20));
    io.restart();
  }
  io.run_for(std::chrono::milliseconds(50));
  io.restart();
}

RouterOptions options() {
  RouterOptions o;
  o.gateway_id = "gw-test";
  o.wall_clock_trusted = [] { return true; };
  o.maintenance_interval = std::chrono::milliseconds(50);  // evictions announced every 50 ms
  return o;
}

}  // namespace

TEST_CASE("every eviction becomes one pinned gap event, committed with its record's deletion") {
  TempDir dir;
  BufferOptions bo;
  bo.max_bytes = 1 * kMiB;
  auto buf = EventBuffer::open(dir.db(), bo).value();
  asio::io_context io;
  Router router(io.get_executor(), *buf, [] {}, options());
  router.start();
  for (int i = 0; i < 12000; ++i) {
    router.submit(meter("meter-" + std::to_string(i % 3), i));
    if (i % 500 == 499) run_until_idle(io, router);
  }
  run_until_idle(io, router);
  REQUIRE(buf->stats(v1::TELEMETRY).evicted > 0);
  // The last commit's evictions are announced by the upkeep, then committed.
  io.run_for(std::chrono::milliseconds(200));
  io.restart();
  run_until_idle(io, router);
  const auto events = stored(*buf);
  uint64_t announced = 0;
  std::set<uint64_t> gap_seqs;
  for (const auto& [seq, e] : events) {
    if (!e.has_gap()) continue;
    CHECK(e.device_id() == "gw-test");
    CHECK(e.event_class() == v1::STATUS);
    CHECK(e.gap().event_class() == v1::TELEMETRY);
    CHECK(e.gap().reason() == "buffer_full");
    CHECK(e.gap().first_seq() <= e.gap().last_seq());
    CHECK(e.gap().last_seq() < seq);
    announced += e.gap().count();
    gap_seqs.insert(seq);
  }
  CHECK(announced == buf->stats(v1::TELEMETRY).evicted);
  CHECK(buf->unannounced_evictions() == 0);
  // Every telemetry seq ever handed out is either stored or inside an announced gap.
  uint64_t telemetry_stored = 0;
  for (const auto& [seq, e] : events) telemetry_stored += e.has_meter();
  CHECK(telemetry_stored + announced == 12000);
  CHECK(router.stats().committed == 12000 + gap_seqs.size());
}

TEST_CASE("an access event with no room waits behind a buffer_full alarm; nothing is dropped") {
  TempDir dir;
  BufferOptions bo;
  bo.max_bytes = 1 * kMiB;
  auto buf = EventBuffer::open(dir.db(), bo).value();
  asio::io_context io;
  Router router(io.get_executor(), *buf, [] {}, options());
  router.start();
  std::size_t swipes = 0;
  for (int i = 0; i < 6000 && !router.stats().failing; ++i) {
    router.submit(swipe("reader-1", i));
    ++swipes;
    if (i % 100 == 99) run_until_idle(io, router);
  }
  REQUIRE(router.stats().failing);
  REQUIRE(router.stats().alarm_active);
  CHECK(router.stats().buffer_alarms == 1);
  CHECK(router.queued() > 0);
  CHECK(router.slowdown() == 8);
  // The alarm is stored, raised before the access events that wait.
  auto events = stored(*buf);
  uint64_t alarm_seq = 0;
  for (const auto& [seq, e] : events) {
    if (e.has_alarm() && e.alarm().rule() == "buffer_full" && e.alarm().active()) alarm_seq = seq;
  }
  REQUIRE(alarm_seq != 0);
  // Delivery frees the room: every access event arrives, in order, none twice.
  std::vector<uint64_t> acked;
  for (int round = 0; round < 50 && router.queued() > 0; ++round) {
    auto leased = buf->lease(v1::ACCESS, 1000, 1u << 30);
    REQUIRE(leased.is_ok());
    std::vector<uint64_t> seqs;
    for (const auto& e : *leased) seqs.push_back(e.seq);
    REQUIRE(buf->ack(seqs).is_ok());
    acked.insert(acked.end(), seqs.begin(), seqs.end());
    REQUIRE(buf->maintain().is_ok());
    run_until_idle(io, router);
  }
  CHECK(router.queued() == 0);
  CHECK_FALSE(router.stats().failing);
  auto rest = buf->lease(v1::ACCESS, 100000, 1u << 30);
  for (const auto& e : *rest) acked.push_back(e.seq);
  CHECK(std::is_sorted(acked.begin(), acked.end()));
  CHECK(std::set<uint64_t>(acked.begin(), acked.end()).size() == acked.size());
  CHECK(acked.size() == swipes);  // every swipe stored once, none dropped
  CHECK(alarm_seq < acked.back());
  // Room again, queue drained, reserve refilled: the alarm clears.
  REQUIRE(buf->maintain().is_ok());
  run_until_idle(io, router);
  CHECK_FALSE(router.stats().alarm_active);
}

TEST_CASE("the queue in memory drops only droppable events beyond its bound, announced") {
  TempDir dir;
  BufferOptions bo;
  bo.max_bytes = 1 * kMiB;
  auto buf = EventBuffer::open(dir.db(), bo).value();
  asio::io_context io;
  RouterOptions ro = options();
  ro.max_queued_events = 200;
  Router router(io.get_executor(), *buf, [] {}, ro);
  router.start();
  // Block the buffer with access events.
  for (int i = 0; i < 6000 && !router.stats().failing; ++i) {
    router.submit(swipe("reader-1", i));
    if (i % 100 == 99) run_until_idle(io, router);
  }
  REQUIRE(router.stats().failing);
  const std::size_t access_waiting = router.queued();
  for (int i = 0; i < 500; ++i) router.submit(meter("meter-1", i));
  CHECK(router.stats().dropped_in_memory > 0);
  CHECK(router.queued() <= 200 + access_waiting);
  // Access events are never dropped from memory.
  CHECK(router.queued() >= access_waiting);
}

TEST_CASE("events observed while the wall clock is not trusted carry clock_unsynced") {
  TempDir dir;
  auto buf = EventBuffer::open(dir.db()).value();
  asio::io_context io;
  bool trusted = false;
  RouterOptions ro = options();
  ro.wall_clock_trusted = [&] { return trusted; };
  ro.maintenance_interval = std::chrono::milliseconds(10);
  Router router(io.get_executor(), *buf, [] {}, ro);
  router.start();
  router.submit(meter("meter-1", 1));
  run_until_idle(io, router);
  trusted = true;
  io.run_for(std::chrono::milliseconds(50));  // the upkeep notices the clock
  io.restart();
  router.submit(meter("meter-1", 2));
  run_until_idle(io, router);
  auto events = stored(*buf);
  REQUIRE(events.size() == 2);
  CHECK(events.begin()->second.clock_unsynced());
  CHECK_FALSE(events.rbegin()->second.clock_unsynced());
  router.stop();
}

TEST_CASE("telemetry lingers to share a commit; any other event commits at once and takes it") {
  TempDir dir;
  auto buf = EventBuffer::open(dir.db()).value();
  asio::io_context io;
  int commits = 0;
  RouterOptions ro = options();
  ro.telemetry_linger = std::chrono::milliseconds(200);
  ro.maintenance_interval = std::chrono::seconds(60);
  Router router(io.get_executor(), *buf, [&] { ++commits; }, ro);
  router.start();

  // Readings spread over 50 ms wait, then go in one transaction once the linger is over.
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 5; ++i) {
    router.submit(meter("meter-1", i));
    io.run_for(std::chrono::milliseconds(10));
    io.restart();
  }
  CHECK(router.queued() == 5);
  CHECK(commits == 0);
  while (router.queued() > 0 && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5)) {
    io.run_one_for(std::chrono::milliseconds(20));
    io.restart();
  }
  const auto waited = std::chrono::steady_clock::now() - t0;
  CHECK(waited >= std::chrono::milliseconds(200));
  CHECK(waited < std::chrono::seconds(2));
  CHECK(commits == 1);
  CHECK(stored(*buf).size() == 5);

  // An access event does not wait, and the telemetry queued before it goes in the same commit,
  // in seq order.
  router.submit(meter("meter-1", 10));
  const uint64_t access_seq = router.submit(swipe("reader-1", 1));
  io.run_for(std::chrono::milliseconds(20));
  io.restart();
  CHECK(router.queued() == 0);
  CHECK(commits == 2);
  const auto events = stored(*buf);
  REQUIRE(events.size() == 7);
  CHECK(events.rbegin()->first == access_seq);
  CHECK(events.rbegin()->second.has_access());
  router.stop();
}
