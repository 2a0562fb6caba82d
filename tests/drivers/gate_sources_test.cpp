// The modbus_gate and uhppote drivers against the gate simulator (tools/sim/gate_sim_core.h) over
// real loopback sockets: live passages, backfill from a persisted cursor after a restart, a log
// that wrapped while nobody read it, a log that was reset, a link that went away and came back,
// and (UHPPOTE) events pushed to a listener. Each case checks the exact entries delivered:
// every passage once, in order, with the right flags, and the one note about what was lost.
#include <catch2/catch.hpp>
#include <map>
#include <set>
#include <thread>

#include "drivers/gate/modbus_gate_source.h"
#include "drivers/gate/uhppote_source.h"
#include "tools/sim/gate_sim_core.h"

using namespace gw::drivers;
using namespace std::chrono_literals;
namespace v1 = campus::gateway::v1;

namespace {

constexpr uint32_t kSeed = 7;
constexpr uint32_t kSerial = 405419896;

struct Note {
  std::string kind;
  std::string message;
};

// Everything a source said, in order.
struct Heard {
  std::vector<SourceEvent> events;
  std::vector<Note> notes;
  std::vector<std::pair<bool, std::string>> links;
  std::string cursor;  // the last non-empty cursor, as the gateway would have committed it

  SourceCallbacks callbacks() {
    SourceCallbacks cb;
    cb.event = [this](SourceEvent e) {
      if (!e.cursor.empty()) cursor = e.cursor;
      events.push_back(std::move(e));
    };
    cb.link = [this](bool up, const std::string& error) { links.emplace_back(up, error); };
    cb.bad_input = [this](std::string_view kind, const std::string& message) {
      notes.push_back({std::string(kind), message});
    };
    return cb;
  }
  std::vector<const SourceEvent*> access() const {
    std::vector<const SourceEvent*> out;
    for (const auto& e : events) {
      if (e.event.has_access()) out.push_back(&e);
    }
    return out;
  }
  std::vector<Note> notes_of(const std::string& kind) const {
    std::vector<Note> out;
    for (const auto& n : notes) {
      if (n.kind == kind) out.push_back(n);
    }
    return out;
  }
  std::vector<double> door_values() const {
    std::vector<double> out;
    for (const auto& e : events) {
      if (!e.event.has_meter()) continue;
      for (const auto& v : e.event.meter().values()) {
        if (v.name() == "door_open") out.push_back(v.value());
      }
    }
    return out;
  }
};

// Runs the core loop until `done` or the limit; true when done.
template <typename Pred>
bool run_until(asio::io_context& io, Pred done, std::chrono::milliseconds limit = 5000ms) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    io.restart();
    io.run_for(5ms);
  }
  return true;
}

// The passage numbers delivered, from the card ids (passage() is one-to-one), checking that
// the access event says what the simulator recorded.
std::vector<uint64_t> passages_of(const Heard& h, uint64_t max_n) {
  std::map<std::string, uint64_t> by_card;
  for (uint64_t n = 1; n <= max_n; ++n) {
    by_card[std::to_string(gw::sim::passage(kSeed, n).card)] = n;
  }
  std::vector<uint64_t> out;
  for (const SourceEvent* e : h.access()) {
    const auto& a = e->event.access();
    auto it = by_card.find(a.credential());
    REQUIRE(it != by_card.end());
    const gw::sim::Passage p = gw::sim::passage(kSeed, it->second);
    CHECK(a.result() == (p.granted ? v1::GRANTED : v1::DENIED));
    CHECK(a.direction() == (p.in ? v1::IN : v1::OUT));
    CHECK(e->event.device_time_us() > 0);
    CHECK_FALSE(e->cursor.empty());
    out.push_back(it->second);
  }
  return out;
}

std::vector<uint64_t> range(uint64_t first, uint64_t last) {
  std::vector<uint64_t> out;
  for (uint64_t n = first; n <= last; ++n) out.push_back(n);
  return out;
}

std::size_t historical_count(const Heard& h) {
  std::size_t n = 0;
  for (const SourceEvent* e : h.access()) n += e->event.historical() ? 1 : 0;
  return n;
}

// One gate of either kind, started and stopped like the gateway does, on one core loop.
class Gate {
 public:
  enum class Kind { kModbus, kUhppote };
  Gate(Kind kind, gw::sim::GateSim& sim, asio::io_context& io, asio::thread_pool& pool,
       uint16_t listen_port = 0, std::chrono::milliseconds poll = 50ms)
      : kind_(kind), sim_(sim), io_(io), pool_(pool), listen_port_(listen_port), poll_(poll) {}
  ~Gate() { stop(); }

  void start(Heard& heard, const std::string& cursor) {
    if (kind_ == Kind::kModbus) {
      ModbusGateSettings s;
      s.device_id = "gate-m";
      s.host = "127.0.0.1";
      s.port = sim_.modbus_port();
      s.poll = poll_;
      s.timeout = 200ms;
      s.offline_after = 2;
      s.status_base = 10;
      s.log_base = 1000;
      s.log_size = sim_.modbus_log_size();
      source_ = std::make_shared<ModbusGateSource>(s, io_.get_executor(), pool_.get_executor());
    } else {
      UhppoteSettings s;
      s.device_id = "gate-u";
      s.host = "127.0.0.1";
      s.port = sim_.uhppote_port();
      s.serial_number = kSerial;
      s.poll = poll_;
      s.timeout = 100ms;
      s.offline_after = 2;
      s.door = "north-gate";
      if (listen_port_) {
        s.listen_host = "127.0.0.1";
        s.listen_port = listen_port_;
      }
      source_ = std::make_shared<UhppoteSource>(s, io_.get_executor());
    }
    source_->start(heard.callbacks(), cursor);
  }
  void stop() {
    if (source_) source_->stop();
    source_.reset();
  }

 private:
  Kind kind_;
  gw::sim::GateSim& sim_;
  asio::io_context& io_;
  asio::thread_pool& pool_;
  uint16_t listen_port_;
  std::chrono::milliseconds poll_;
  std::shared_ptr<EventSource> source_;
};

gw::sim::GateSimOptions sim_options(uint32_t modbus_log = 16, uint32_t uhppote_log = 16) {
  gw::sim::GateSimOptions o;
  o.seed = kSeed;
  o.serial_number = kSerial;
  o.status_base = 10;
  o.log_base = 1000;
  o.log_size = modbus_log;
  o.uhppote_log_size = uhppote_log;
  return o;
}

uint16_t free_udp_port() {
  asio::io_context io;
  asio::ip::udp::socket s(io, asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return s.local_endpoint().port();
}

}  // namespace

TEST_CASE("gate sources: first start, live passages, restart and backfill from the cursor",
          "[gate]") {
  const auto kind = GENERATE(Gate::Kind::kModbus, Gate::Kind::kUhppote);
  CAPTURE(kind == Gate::Kind::kModbus ? "modbus_gate" : "uhppote");
  gw::sim::GateSim sim(sim_options(64, 64));
  REQUIRE(sim.start().is_ok());
  sim.pass(5);  // already in the log before the gateway ever ran: not delivered
  asio::io_context io;
  asio::thread_pool pool(1);  // destroyed before io, as in gatewayd
  Gate gate(kind, sim, io, pool);

  Heard first;
  gate.start(first, "");
  // The first door state carries the starting point: the newest entry (5).
  REQUIRE(run_until(io, [&] { return !first.events.empty(); }));
  CHECK(first.events[0].event.has_meter());
  CHECK(first.door_values() == std::vector<double>{0.0});
  CHECK(first.events[0].cursor.rfind("5@", 0) == 0);
  CHECK(first.links == std::vector<std::pair<bool, std::string>>{{true, ""}});

  sim.pass(12);  // 6..17, live
  REQUIRE(run_until(io, [&] { return first.access().size() >= 12; }));
  CHECK(passages_of(first, 100) == range(6, 17));
  CHECK(historical_count(first) == 0);
  sim.set_door(true);
  REQUIRE(run_until(io, [&] { return first.door_values().size() == 2; }));
  CHECK(first.door_values() == std::vector<double>{0.0, 1.0});
  gate.stop();
  const std::string cursor = first.cursor;
  CHECK(cursor.rfind("17@", 0) == 0);

  sim.pass(40);  // 18..57 while "the gateway is down"
  Heard second;
  gate.start(second, cursor);
  REQUIRE(run_until(io, [&] { return second.access().size() >= 40; }));
  sim.pass(3);  // 58..60, live again
  REQUIRE(run_until(io, [&] { return second.access().size() >= 43; }));
  run_until(
      io, [] { return false; }, 200ms);  // nothing more may come
  CHECK(passages_of(second, 100) == range(18, 60));
  for (const SourceEvent* e : second.access()) {
    const auto n = passages_of(Heard{{*e}, {}, {}, {}}, 100).front();
    CHECK(e->event.historical() == (n <= 57));
  }
  CHECK(second.notes.empty());
  CHECK(second.cursor.rfind("60@", 0) == 0);
}

TEST_CASE("gate sources: a log that wrapped while nobody read it reports the loss once", "[gate]") {
  const auto kind = GENERATE(Gate::Kind::kModbus, Gate::Kind::kUhppote);
  CAPTURE(kind == Gate::Kind::kModbus ? "modbus_gate" : "uhppote");
  gw::sim::GateSim sim(sim_options(16, 16));  // both logs keep the newest 16
  REQUIRE(sim.start().is_ok());
  asio::io_context io;
  asio::thread_pool pool(1);  // destroyed before io, as in gatewayd
  Gate gate(kind, sim, io, pool);

  Heard first;
  gate.start(first, "");
  REQUIRE(run_until(io, [&] { return !first.events.empty(); }));  // the starting point is taken
  sim.pass(4);
  REQUIRE(run_until(io, [&] { return first.access().size() >= 4; }));
  gate.stop();
  sim.pass(46);  // 5..50; only 35..50 are still held

  Heard second;
  gate.start(second, first.cursor);
  REQUIRE(run_until(io, [&] { return second.access().size() >= 16; }));
  run_until(
      io, [] { return false; }, 200ms);
  CHECK(passages_of(second, 100) == range(35, 50));
  CHECK(historical_count(second) == 16);
  const auto gaps = second.notes_of("gap");
  REQUIRE(gaps.size() == 1);
  CHECK_THAT(gaps[0].message, Catch::Contains("30 event log entries (index 5..34)"));
}

TEST_CASE("gate sources: a controller whose log was reset is read again from index 1", "[gate]") {
  const auto kind = GENERATE(Gate::Kind::kModbus, Gate::Kind::kUhppote);
  const bool more_than_before = GENERATE(false, true);
  CAPTURE(kind == Gate::Kind::kModbus ? "modbus_gate" : "uhppote", more_than_before);
  gw::sim::GateSim sim(sim_options(64, 64));
  REQUIRE(sim.start().is_ok());
  asio::io_context io;
  asio::thread_pool pool(1);  // destroyed before io, as in gatewayd
  Gate gate(kind, sim, io, pool);

  Heard first;
  gate.start(first, "");
  REQUIRE(run_until(io, [&] { return !first.events.empty(); }));
  sim.pass(10);
  REQUIRE(run_until(io, [&] { return first.access().size() >= 10; }));
  gate.stop();
  // Replaced controller: its new log has fewer entries than the cursor (newest index below
  // it), or more (only the entry at the cursor's index, with another time, tells).
  sim.reset_logs();
  if (more_than_before) std::this_thread::sleep_for(1100ms);  // a different second at index 10
  sim.pass(more_than_before ? 14 : 4);  // passages 11..14 or 11..24, log indices 1..

  Heard second;
  gate.start(second, first.cursor);
  const std::size_t expected = more_than_before ? 14 : 4;
  REQUIRE(run_until(io, [&] { return second.access().size() >= expected; }));
  run_until(
      io, [] { return false; }, 300ms);
  CHECK(passages_of(second, 100) == range(11, 10 + expected));
  const auto resets = second.notes_of("reset");
  REQUIRE(resets.size() == 1);
  CHECK_THAT(resets[0].message, Catch::Contains("last index read 10"));
  CHECK(second.notes_of("gap").empty());
}

TEST_CASE("gate sources: entries recorded while the link was down arrive once, historical",
          "[gate]") {
  const auto kind = GENERATE(Gate::Kind::kModbus, Gate::Kind::kUhppote);
  CAPTURE(kind == Gate::Kind::kModbus ? "modbus_gate" : "uhppote");
  gw::sim::GateSim sim(sim_options(64, 64));
  REQUIRE(sim.start().is_ok());
  asio::io_context io;
  asio::thread_pool pool(1);  // destroyed before io, as in gatewayd
  Gate gate(kind, sim, io, pool);

  Heard h;
  gate.start(h, "");
  REQUIRE(run_until(io, [&] { return !h.events.empty(); }));
  sim.pass(3);
  REQUIRE(run_until(io, [&] { return h.access().size() >= 3; }));
  sim.set_mute(true);
  REQUIRE(run_until(io, [&] { return h.links.size() >= 2; }));
  CHECK_FALSE(h.links[1].first);
  CHECK_THAT(h.links[1].second, Catch::Contains("127.0.0.1"));
  sim.pass(20);  // 4..23 while the link is down
  run_until(
      io, [] { return false; }, 200ms);
  CHECK(h.access().size() == 3);
  sim.set_mute(false);
  REQUIRE(run_until(io, [&] { return h.access().size() >= 23; }));
  REQUIRE(h.links.size() == 3);
  CHECK(h.links[2].first);
  sim.pass(2);
  REQUIRE(run_until(io, [&] { return h.access().size() >= 25; }));
  run_until(
      io, [] { return false; }, 200ms);
  CHECK(passages_of(h, 100) == range(1, 25));
  std::vector<bool> flags;
  for (const SourceEvent* e : h.access()) flags.push_back(e->event.historical());
  for (std::size_t i = 0; i < flags.size(); ++i) CHECK(flags[i] == (i >= 3 && i < 23));
}

TEST_CASE("gate sources: a cursor that is not one is said once and the newest entry is the start",
          "[gate]") {
  const auto kind = GENERATE(Gate::Kind::kModbus, Gate::Kind::kUhppote);
  gw::sim::GateSim sim(sim_options(64, 64));
  REQUIRE(sim.start().is_ok());
  sim.pass(7);
  asio::io_context io;
  asio::thread_pool pool(1);  // destroyed before io, as in gatewayd
  Gate gate(kind, sim, io, pool);
  Heard h;
  gate.start(h, "seven@x");
  REQUIRE(run_until(io, [&] { return !h.events.empty(); }));
  REQUIRE(h.notes_of("cursor").size() == 1);
  CHECK_THAT(h.notes[0].message, Catch::Contains("'seven@x'"));
  CHECK(h.events[0].cursor.rfind("7@", 0) == 0);
}

TEST_CASE("uhppote: pushed events arrive before the next poll, and each entry once", "[gate]") {
  const uint16_t listen_port = free_udp_port();
  auto o = sim_options(64, 64);
  o.listener = "127.0.0.1:" + std::to_string(listen_port);
  gw::sim::GateSim sim(o);
  REQUIRE(sim.start().is_ok());
  asio::io_context io;
  asio::thread_pool pool(1);  // destroyed before io, as in gatewayd
  Gate gate(Gate::Kind::kUhppote, sim, io, pool, listen_port, 5000ms);  // polls only every 5 s

  Heard h;
  gate.start(h, "");
  REQUIRE(run_until(io, [&] { return !h.events.empty(); }));
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 5; ++i) {
    sim.pass(1);
    REQUIRE(run_until(
        io, [&] { return h.access().size() >= static_cast<std::size_t>(i + 1); }, 1000ms));
  }
  CHECK(std::chrono::steady_clock::now() - t0 < 2000ms);
  sim.pass(30);  // a burst: pushes overtake each other; the catch-up by index sorts it out
  REQUIRE(run_until(
      io, [&] { return h.access().size() >= 35; }, 3000ms));
  run_until(
      io, [] { return false; }, 200ms);
  CHECK(passages_of(h, 100) == range(1, 35));
  CHECK(historical_count(h) == 0);
}

TEST_CASE("uhppote: a controller that does not answer goes offline with the reason", "[gate]") {
  asio::io_context io;
  asio::thread_pool pool(1);  // destroyed before io, as in gatewayd
  // A bound socket that never answers: each request times out.
  asio::ip::udp::socket silent(io, asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  UhppoteSettings s;
  s.host = "127.0.0.1";
  s.port = silent.local_endpoint().port();
  s.serial_number = kSerial;
  s.poll = 50ms;
  s.timeout = 50ms;
  s.offline_after = 2;
  auto source = std::make_shared<UhppoteSource>(s, io.get_executor());
  Heard h;
  source->start(h.callbacks(), "");
  REQUIRE(run_until(io, [&] { return !h.links.empty(); }));
  CHECK_FALSE(h.links[0].first);
  CHECK_THAT(h.links[0].second,
             Catch::Contains("get-status") && Catch::Contains("no answer within 50ms"));
  source->stop();
  const std::size_t heard = h.links.size() + h.events.size() + h.notes.size();
  run_until(
      io, [] { return false; }, 200ms);
  CHECK(h.links.size() + h.events.size() + h.notes.size() == heard);  // nothing after stop()
}
