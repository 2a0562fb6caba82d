#include "gateway/alarm_engine.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>

#include "storage/event_buffer.h"

namespace v1 = campus::gateway::v1;
namespace fs = std::filesystem;
using gw::AlarmEngine;
using gw::AlarmTransition;
using gw::config::AlarmSection;
using gw::config::DeviceSection;
using namespace std::chrono_literals;

namespace {

constexpr int64_t kStart = 1'700'000'000'000'000;  // unix µs

DeviceSection device(const std::string& id, v1::DeviceKind kind, const std::string& door = "") {
  DeviceSection d;
  d.id = id;
  d.kind = kind;
  d.door = door;
  return d;
}

AlarmSection rule_for(const std::string& name, const std::vector<std::string>& devices) {
  AlarmSection r;
  r.name = name;
  r.devices = devices;
  return r;
}

AlarmSection rule_for_kind(const std::string& name, v1::DeviceKind kind) {
  AlarmSection r;
  r.name = name;
  r.kind = kind;
  return r;
}

v1::Event reading(const std::string& id, const std::string& point, double value,
                  v1::Quality q = v1::GOOD) {
  v1::Event e;
  e.set_device_id(id);
  v1::MeterValue* v = e.mutable_meter()->add_values();
  v->set_name(point);
  v->set_value(value);
  v->set_quality(q);
  return e;
}

v1::Event status(const std::string& id, bool online) {
  v1::Event e;
  e.set_device_id(id);
  e.mutable_status()->set_online(online);
  if (!online) e.mutable_status()->set_error("no answer within 200ms");
  return e;
}

v1::Event swipe(const std::string& id, v1::AccessResult result, const std::string& door) {
  v1::Event e;
  e.set_device_id(id);
  e.mutable_access()->set_credential("h:00");
  e.mutable_access()->set_result(result);
  e.mutable_access()->set_door(door);
  return e;
}

v1::Event camera(const std::string& id, const std::string& type, bool active,
                 uint32_t channel = 1) {
  v1::Event e;
  e.set_device_id(id);
  e.mutable_camera()->set_type(type);
  e.mutable_camera()->set_active(active);
  e.mutable_camera()->set_channel(channel);
  return e;
}

// An engine with a clock the test moves; every transition it produced is kept in `log`.
struct Bench {
  int64_t now = kStart;
  std::vector<AlarmTransition> log;
  AlarmEngine engine;

  Bench(std::vector<AlarmSection> rules, std::vector<DeviceSection> devices)
      : engine(std::move(rules), devices, [this] { return now; }) {}

  // Returns how many transitions this call added.
  std::size_t feed(const v1::Event& e) { return keep(engine.on_event(e)); }
  // Moves the clock in one-second ticks (as AlarmMonitor does) up to `by` from now.
  std::size_t wait(std::chrono::milliseconds by) {
    const int64_t until = now + int64_t(by.count()) * 1000;
    std::size_t n = 0;
    while (now < until) {
      now = std::min(until, now + 1'000'000);
      n += keep(engine.tick());
    }
    return n;
  }
  std::size_t keep(std::vector<AlarmTransition> ts) {
    for (auto& t : ts) log.push_back(std::move(t));
    return ts.size();
  }
  const v1::AlarmBody& last() const { return log.back().event.alarm(); }
  int raises() const {
    int n = 0;
    for (const auto& t : log) n += t.event.alarm().active();
    return n;
  }
  int clears() const { return int(log.size()) - raises(); }
};

}  // namespace

TEST_CASE(
    "threshold: raised above high, cleared only below high - hysteresis, "
    "once each",
    "[alarm]") {
  AlarmSection r = rule_for("over-voltage", {"meter-1"});
  r.point = "voltage";
  r.high = 250;
  r.hysteresis = 5;
  r.severity = "critical";
  Bench b({r}, {device("meter-1", v1::ENERGY_METER), device("meter-2", v1::ENERGY_METER)});

  CHECK(b.feed(reading("meter-1", "voltage", 240)) == 0);
  CHECK(b.feed(reading("meter-1", "voltage", 250)) == 0);  // at the limit is not above it
  CHECK(b.feed(reading("meter-2", "voltage", 300)) == 0);  // not a device of the rule
  CHECK(b.feed(reading("meter-1", "current", 300)) == 0);  // not the rule's point
  REQUIRE(b.feed(reading("meter-1", "voltage", 251.5)) == 1);
  const AlarmTransition& t = b.log.back();
  CHECK(t.event.device_id() == "meter-1");
  CHECK(t.event.kind() == v1::ENERGY_METER);
  CHECK(t.event.gateway_time_us() == kStart);
  CHECK(t.event.alarm().rule() == "over-voltage");
  CHECK(t.event.alarm().severity() == v1::CRITICAL);
  CHECK(t.event.alarm().point() == "voltage");
  CHECK(t.event.alarm().value() == 251.5);
  CHECK(t.event.alarm().threshold() == 250);
  CHECK(t.event.alarm().active());
  CHECK(t.state_key == "alarm|over-voltage|meter-1|");
  CHECK_FALSE(t.state_value.empty());

  // No flood while it holds, and none inside the hysteresis band.
  CHECK(b.feed(reading("meter-1", "voltage", 262)) == 0);
  CHECK(b.wait(30s) == 0);
  CHECK(b.feed(reading("meter-1", "voltage", 249)) == 0);
  CHECK(b.feed(reading("meter-1", "voltage", 245)) == 0);         // exactly high - hysteresis
  CHECK(b.feed(reading("meter-1", "voltage", 0, v1::BAD)) == 0);  // a bad reading says nothing
  REQUIRE(b.feed(reading("meter-1", "voltage", 244.9)) == 1);
  CHECK_FALSE(b.last().active());
  CHECK(b.last().value() == 244.9);
  CHECK(b.last().threshold() == 250);
  CHECK(b.log.back().state_value.empty());  // the row goes with the clear
  CHECK(b.engine.active().empty());

  CHECK(b.feed(reading("meter-1", "voltage", 251)) == 1);  // a new excursion, a new alarm
  CHECK(b.raises() == 2);
  CHECK(b.clears() == 1);
}

TEST_CASE("threshold: low with hysteresis, and one rule with both limits", "[alarm]") {
  AlarmSection r = rule_for_kind("voltage-band", v1::ENERGY_METER);
  r.point = "voltage";
  r.high = 250;
  r.low = 200;
  r.hysteresis = 5;
  Bench b({r}, {device("meter-1", v1::ENERGY_METER)});
  REQUIRE(b.feed(reading("meter-1", "voltage", 199)) == 1);
  CHECK(b.last().threshold() == 200);
  CHECK(b.feed(reading("meter-1", "voltage", 204.5)) == 0);  // inside low + hysteresis
  REQUIRE(b.feed(reading("meter-1", "voltage", 205.5)) == 1);
  CHECK_FALSE(b.last().active());
  CHECK(b.last().threshold() == 200);
  // Straight from below low to above high: the low alarm clears and the high one is raised.
  REQUIRE(b.feed(reading("meter-1", "voltage", 190)) == 1);
  REQUIRE(b.feed(reading("meter-1", "voltage", 260)) == 2);
  CHECK_FALSE(b.log[b.log.size() - 2].event.alarm().active());
  CHECK(b.last().active());
  CHECK(b.last().threshold() == 250);
}

TEST_CASE("threshold: for: the condition must hold that long, without a break", "[alarm]") {
  AlarmSection r = rule_for("over-voltage", {"meter-1"});
  r.point = "voltage";
  r.high = 250;
  r.hold_for = 10s;
  Bench b({r}, {device("meter-1", v1::ENERGY_METER)});

  CHECK(b.feed(reading("meter-1", "voltage", 251)) == 0);
  CHECK(b.wait(5s) == 0);
  CHECK(b.feed(reading("meter-1", "voltage", 249)) == 0);  // a dip starts the wait over
  CHECK(b.wait(1s) == 0);
  CHECK(b.feed(reading("meter-1", "voltage", 252)) == 0);
  const int64_t began = b.now;
  CHECK(b.wait(9s) == 0);
  // Raised by the clock (on_change reporting may send nothing more), with the latest reading.
  CHECK(b.feed(reading("meter-1", "voltage", 253)) == 0);
  REQUIRE(b.wait(1s) == 1);
  CHECK(b.last().value() == 253);
  CHECK(b.now - began == 10'000'000);
  CHECK(b.engine.active().at(0).since_us == began);
  CHECK(b.wait(60s) == 0);
  // Clearing does not wait for `for:`.
  CHECK(b.feed(reading("meter-1", "voltage", 240)) == 1);
  CHECK(b.raises() == 1);
}

TEST_CASE(
    "rate: a jump within the window raises, and clears once the window "
    "has passed it",
    "[alarm]") {
  AlarmSection r = rule_for_kind("energy-jump", v1::ENERGY_METER);
  r.point = "energy_total";
  r.rate_max_delta = 50;
  r.rate_window = 15min;
  Bench b({r}, {device("meter-1", v1::ENERGY_METER)});

  double kwh = 1000;
  auto minute = [&](double step) {
    kwh += step;
    std::size_t n = b.feed(reading("meter-1", "energy_total", kwh));
    return n + b.wait(1min);
  };
  for (int i = 0; i < 20; ++i) REQUIRE(minute(2) == 0);  // 30 kWh per 15 min: normal
  REQUIRE(minute(100) == 1);
  CHECK(b.last().active());
  CHECK(b.last().point() == "energy_total");
  CHECK(b.last().value() == Approx(2 * 15 + 100).margin(2.1));  // the change over ~15 min
  CHECK(b.last().threshold() == 50);
  int cleared_after = 0;
  for (int i = 1; i <= 20 && b.clears() == 0; ++i) {
    minute(2);
    cleared_after = i;
  }
  CHECK(b.clears() == 1);
  CHECK(cleared_after >= 14);  // not before the jump left the 15-minute window
  CHECK(cleared_after <= 16);
  CHECK(b.raises() == 1);
}

TEST_CASE("rate: min_delta catches a meter running backwards", "[alarm]") {
  AlarmSection r = rule_for("meter-backwards", {"meter-1"});
  r.point = "energy_total";
  r.rate_min_delta = 0;
  r.rate_window = 10min;
  Bench b({r}, {device("meter-1", v1::ENERGY_METER)});
  CHECK(b.feed(reading("meter-1", "energy_total", 500)) == 0);
  b.wait(1min);
  CHECK(b.feed(reading("meter-1", "energy_total", 500)) == 0);  // standing still is fine
  b.wait(1min);
  REQUIRE(b.feed(reading("meter-1", "energy_total", 499.5)) == 1);
  CHECK(b.last().value() == Approx(-0.5));
  CHECK(b.last().threshold() == 0);
}

TEST_CASE("rate: a fast poll over a long window is thinned, not forgotten", "[alarm]") {
  AlarmSection r = rule_for("energy-jump", {"meter-1"});
  r.point = "energy_total";
  r.rate_max_delta = 50;
  r.rate_window = 1h;
  Bench b({r}, {device("meter-1", v1::ENERGY_METER)});
  double kwh = 0;
  // 2 hours at one reading a second, 40 kWh an hour: never 50 within an hour.
  for (int i = 0; i < 7200; ++i) {
    kwh += 40.0 / 3600;
    b.feed(reading("meter-1", "energy_total", kwh));
    b.wait(1s);
  }
  CHECK(b.log.empty());
  // 20 kWh more within a minute: raised as the hour's change passes 50 (40 + 10 of them).
  int raised_at = -1;
  for (int i = 0; i < 60; ++i) {
    kwh += 20.0 / 60;
    if (b.feed(reading("meter-1", "energy_total", kwh)) == 1) raised_at = i;
    b.wait(1s);
  }
  REQUIRE(b.raises() == 1);
  CHECK(b.last().value() > 50);
  CHECK(b.last().value() < 50.5);
  CHECK(raised_at >= 28);  // 10 kWh at 1/3 kWh a second, give or take the thinning
  CHECK(raised_at <= 32);
}

TEST_CASE("stale: no good reading for the duration, from the start too", "[alarm]") {
  AlarmSection r = rule_for_kind("meter-stale", v1::ENERGY_METER);
  r.stale = 5min;
  r.point = "voltage";
  r.severity = "minor";
  Bench b({r}, {device("meter-1", v1::ENERGY_METER), device("gate-1", v1::ACCESS_GATE)});

  CHECK(b.wait(4min) == 0);
  CHECK(b.feed(reading("meter-1", "voltage", 230)) == 0);
  CHECK(b.wait(4min) == 0);
  CHECK(b.feed(reading("meter-1", "voltage", 0, v1::BAD)) == 0);  // bad is not a reading
  CHECK(b.feed(reading("meter-1", "current", 5)) == 0);           // another point
  REQUIRE(b.wait(1min) == 1);
  CHECK(b.last().active());
  CHECK(b.last().severity() == v1::MINOR);
  CHECK(b.last().value() == 300);
  CHECK(b.last().threshold() == 300);
  CHECK(b.log.back().event.device_id() == "meter-1");
  CHECK(b.wait(10min) == 0);
  REQUIRE(b.feed(reading("meter-1", "voltage", 231)) == 1);
  CHECK_FALSE(b.last().active());
  CHECK(b.last().value() == 900);  // how long it was stale

  SECTION("a meter never heard from is stale after the duration") {
    Bench fresh({r}, {device("meter-9", v1::ENERGY_METER)});
    CHECK(fresh.wait(299s) == 0);
    CHECK(fresh.wait(1s) == 1);
  }
}

TEST_CASE("offline: raised when a device stays offline longer than the duration", "[alarm]") {
  AlarmSection r = rule_for("reader-offline", {"reader-1"});
  r.offline = 2min;
  Bench b({r}, {device("reader-1", v1::CARD_READER)});
  CHECK(b.feed(status("reader-1", false)) == 0);
  CHECK(b.wait(1min) == 0);
  CHECK(b.feed(status("reader-1", true)) == 0);  // back in time: nothing to say
  CHECK(b.feed(status("reader-1", false)) == 0);
  CHECK(b.wait(119s) == 0);
  REQUIRE(b.wait(1s) == 1);
  CHECK(b.last().value() == 120);
  CHECK(b.last().threshold() == 120);
  CHECK(b.last().point().empty());
  CHECK(b.feed(status("reader-1", false)) == 0);  // still offline: no second raise
  CHECK(b.wait(10min) == 0);
  REQUIRE(b.feed(status("reader-1", true)) == 1);
  CHECK_FALSE(b.last().active());
  CHECK(b.last().value() == 720);
}

TEST_CASE("held_open: a door open longer than N seconds", "[alarm]") {
  AlarmSection r = rule_for_kind("door-held", v1::ACCESS_GATE);
  r.held_open = 30s;
  Bench b({r}, {device("gate-1", v1::ACCESS_GATE, "north-1")});
  CHECK(b.feed(reading("gate-1", "door_open", 1)) == 0);
  CHECK(b.wait(10s) == 0);
  CHECK(b.feed(reading("gate-1", "door_open", 0)) == 0);
  CHECK(b.feed(reading("gate-1", "door_open", 1)) == 0);  // the count starts again
  CHECK(b.wait(29s) == 0);
  CHECK(b.feed(reading("gate-1", "door_open", 1)) == 0);  // repeated "open" changes nothing
  REQUIRE(b.wait(1s) == 1);
  CHECK(b.last().point() == "door_open");
  CHECK(b.last().value() == 30);
  CHECK(b.last().threshold() == 30);
  CHECK(b.wait(1min) == 0);
  REQUIRE(b.feed(reading("gate-1", "door_open", 0)) == 1);
  CHECK_FALSE(b.last().active());
  CHECK(b.last().value() == 90);
}

TEST_CASE(
    "forced: a door opened without a granted passage at that door "
    "shortly before",
    "[alarm]") {
  AlarmSection r = rule_for_kind("door-forced", v1::ACCESS_GATE);
  r.forced = true;
  r.severity = "critical";
  Bench b({r}, {device("gate-1", v1::ACCESS_GATE, "north-1"),
                device("reader-1", v1::CARD_READER, "north-1"),
                device("reader-2", v1::CARD_READER, "south-1")});
  auto open_door = [&] { return b.feed(reading("gate-1", "door_open", 1)); };
  auto close_door = [&] { return b.feed(reading("gate-1", "door_open", 0)); };

  // Found open at the first reading (a restart): the opening was not seen, so it is no incident.
  CHECK(open_door() == 0);
  CHECK(b.wait(5s) == 0);
  CHECK(close_door() == 0);

  SECTION("granted at a reader of the same door a few seconds before: fine") {
    CHECK(b.feed(swipe("reader-1", v1::GRANTED, "north-1")) == 0);
    b.wait(4s);
    CHECK(open_door() == 0);
    CHECK(b.wait(10s) == 0);
    CHECK(close_door() == 0);
    CHECK(b.log.empty());
  }
  SECTION("granted by the gate itself: fine") {
    CHECK(b.feed(swipe("gate-1", v1::GRANTED, "")) == 0);
    CHECK(open_door() == 0);
    CHECK(b.wait(10s) == 0);
    CHECK(b.log.empty());
  }
  SECTION("the passage reported a second after the door contact: fine") {
    CHECK(open_door() == 0);
    b.wait(1s);
    CHECK(b.feed(swipe("reader-1", v1::GRANTED, "north-1")) == 0);
    CHECK(b.wait(10s) == 0);
    CHECK(b.log.empty());
  }
  SECTION("no passage: raised after the grace, cleared when the door closes") {
    CHECK(b.feed(swipe("reader-1", v1::DENIED, "north-1")) == 0);
    CHECK(b.feed(swipe("reader-2", v1::GRANTED, "south-1")) == 0);  // another door
    CHECK(open_door() == 0);
    CHECK(b.wait(1s) == 0);
    REQUIRE(b.wait(1s) == 1);  // AlarmEngine::kForcedGraceUs
    CHECK(b.last().active());
    CHECK(b.last().severity() == v1::CRITICAL);
    CHECK(b.last().point() == "door_open");
    CHECK(b.last().threshold() == 10);  // the grant window, seconds
    CHECK(b.log.back().event.device_id() == "gate-1");
    CHECK(b.wait(1min) == 0);
    REQUIRE(close_door() == 1);
    CHECK_FALSE(b.last().active());
  }
  SECTION("a grant older than the window does not count") {
    CHECK(b.feed(swipe("reader-1", v1::GRANTED, "north-1")) == 0);
    b.wait(11s);
    CHECK(open_door() == 0);
    CHECK(b.wait(2s) == 1);
  }
  SECTION("opened and closed within the grace: raised and cleared at once") {
    CHECK(open_door() == 0);
    CHECK(close_door() == 0);
    CHECK(b.wait(2s) == 2);
    CHECK(b.raises() == 1);
    CHECK(b.clears() == 1);
  }
}

TEST_CASE("denied: N denied swipes at one door within a window", "[alarm]") {
  AlarmSection r = rule_for_kind("denied-burst", v1::CARD_READER);
  r.denied_count = 3;
  r.denied_window = 1min;
  Bench b({r}, {device("reader-in", v1::CARD_READER, "north-1"),
                device("reader-out", v1::CARD_READER, "north-1"),
                device("reader-s", v1::CARD_READER, "south-1")});

  // Spread wider than the window: never three within a minute.
  CHECK(b.feed(swipe("reader-in", v1::DENIED, "north-1")) == 0);
  b.wait(35s);
  CHECK(b.feed(swipe("reader-in", v1::DENIED, "north-1")) == 0);
  b.wait(35s);
  CHECK(b.feed(swipe("reader-in", v1::DENIED, "north-1")) == 0);
  CHECK(b.feed(swipe("reader-s", v1::DENIED, "south-1")) == 0);  // another door
  CHECK(b.feed(swipe("reader-in", v1::GRANTED, "north-1")) == 0);
  // Both readers of the door count together.
  REQUIRE(b.feed(swipe("reader-out", v1::DENIED, "north-1")) == 1);
  CHECK(b.last().active());
  CHECK(b.last().point() == "north-1");
  CHECK(b.last().value() == 3);
  CHECK(b.last().threshold() == 3);
  CHECK(b.log.back().event.device_id() == "reader-out");
  CHECK(b.log.back().event.kind() == v1::CARD_READER);
  // A steady trickle keeps the one alarm; it clears after a whole window without a denial.
  for (int i = 0; i < 5; ++i) {
    CHECK(b.wait(40s) == 0);
    CHECK(b.feed(swipe("reader-in", v1::DENIED, "north-1")) == 0);
  }
  CHECK(b.wait(59s) == 0);
  REQUIRE(b.wait(1s) == 1);
  CHECK_FALSE(b.last().active());
  CHECK(b.log.back().event.device_id() == "reader-out");  // the same alarm as raised
  CHECK(b.raises() == 1);
}

TEST_CASE("active_for: camera tamper or video loss active longer than N seconds", "[alarm]") {
  AlarmSection tamper = rule_for_kind("camera-tamper", v1::CAMERA);
  tamper.active_type = "tamper";
  tamper.active_duration = 5s;
  AlarmSection loss = rule_for_kind("camera-video-loss", v1::CAMERA);
  loss.active_type = "video_loss";
  loss.active_duration = 30s;
  Bench b({tamper, loss}, {device("cam-1", v1::CAMERA)});

  CHECK(b.feed(camera("cam-1", "tamper", true)) == 0);
  CHECK(b.wait(3s) == 0);
  CHECK(b.feed(camera("cam-1", "tamper", false)) == 0);  // a short one is no alarm
  CHECK(b.feed(camera("cam-1", "motion", true)) == 0);   // not a type any rule watches
  CHECK(b.feed(camera("cam-1", "tamper", true, 1)) == 0);
  CHECK(b.feed(camera("cam-1", "tamper", true, 2)) == 0);
  CHECK(b.wait(4s) == 0);
  CHECK(b.feed(camera("cam-1", "tamper", true, 1)) == 0);  // repeated while active
  CHECK(b.feed(camera("cam-1", "tamper", false, 2)) == 0);
  REQUIRE(b.wait(1s) == 1);  // channel 1 only
  CHECK(b.last().rule() == "camera-tamper");
  CHECK(b.last().point() == "tamper:1");
  CHECK(b.last().value() == 5);
  CHECK(b.last().threshold() == 5);
  CHECK(b.feed(camera("cam-1", "video_loss", true, 1)) == 0);
  CHECK(b.wait(29s) == 0);
  REQUIRE(b.wait(1s) == 1);
  CHECK(b.last().rule() == "camera-video-loss");
  REQUIRE(b.feed(camera("cam-1", "tamper", false, 1)) == 1);
  CHECK_FALSE(b.last().active());
  CHECK(b.last().rule() == "camera-tamper");
  CHECK(b.engine.active().size() == 1);
}

TEST_CASE("historical events and unknown devices are ignored", "[alarm]") {
  AlarmSection r = rule_for_kind("over-voltage", v1::ENERGY_METER);
  r.point = "voltage";
  r.high = 250;
  Bench b({r}, {device("meter-1", v1::ENERGY_METER)});
  v1::Event old = reading("meter-1", "voltage", 300);
  old.set_historical(true);
  CHECK(b.feed(old) == 0);
  CHECK(b.feed(reading("meter-x", "voltage", 300)) == 0);
  CHECK(b.feed(reading("meter-1", "voltage", std::nan(""))) == 0);
}

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/gw-alarm-test-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string db() const { return (path / "buffer.db").string(); }
};

// Commits transitions the way Router does: each alarm event with its state row, in one transaction.
void commit(gw::storage::EventBuffer& buffer, const std::vector<AlarmTransition>& ts) {
  std::vector<gw::storage::BufferedEvent> rows;
  for (const AlarmTransition& t : ts) {
    gw::storage::BufferedEvent e;
    e.seq = buffer.next_seq() + rows.size();
    e.event_class = v1::ALARM;
    e.device_id = t.event.device_id();
    e.gateway_time_us = t.event.gateway_time_us();
    e.payload = t.event.SerializeAsString();
    e.state_key = t.state_key;
    e.state_value = t.state_value;
    rows.push_back(std::move(e));
  }
  REQUIRE(buffer.append_batch(rows).is_ok());
}

std::unique_ptr<gw::storage::EventBuffer> reopen(const TempDir& dir) {
  auto b = gw::storage::EventBuffer::open(dir.db());
  REQUIRE(b.is_ok());
  return std::move(b).value();
}

std::vector<std::pair<std::string, std::string>> committed_rows(const TempDir& dir) {
  auto buffer = reopen(dir);
  auto rows = buffer->state_rows(AlarmEngine::kStatePrefix);
  REQUIRE(rows.is_ok());
  return *rows;
}

}  // namespace

TEST_CASE(
    "restart: active alarms come back from the buffer, not raised twice, "
    "cleared once",
    "[alarm]") {
  TempDir dir;
  AlarmSection volts = rule_for("over-voltage", {"meter-1"});
  volts.point = "voltage";
  volts.high = 250;
  volts.hysteresis = 5;
  AlarmSection held = rule_for_kind("door-held", v1::ACCESS_GATE);
  held.held_open = 30s;
  AlarmSection denied = rule_for_kind("denied-burst", v1::CARD_READER);
  denied.denied_count = 2;
  denied.denied_window = 1min;
  const std::vector<AlarmSection> rules{volts, held, denied};
  const std::vector<DeviceSection> devices{device("meter-1", v1::ENERGY_METER),
                                           device("gate-1", v1::ACCESS_GATE, "north-1"),
                                           device("reader-1", v1::CARD_READER, "north-1")};
  {
    Bench before(rules, devices);
    before.feed(reading("meter-1", "voltage", 260));
    before.feed(reading("gate-1", "door_open", 1));
    before.wait(30s);
    before.feed(swipe("reader-1", v1::DENIED, "north-1"));
    before.feed(swipe("reader-1", v1::DENIED, "north-1"));
    REQUIRE(before.raises() == 3);
    auto buffer = reopen(dir);
    commit(*buffer, before.log);
  }  // the daemon stops (or dies) here

  auto rows = committed_rows(dir);
  REQUIRE(rows.size() == 3);

  Bench after(rules, devices);
  after.now = kStart + 40'000'000;
  CHECK(after.keep(after.engine.restore(rows)) == 0);
  REQUIRE(after.engine.active().size() == 3);
  for (const auto& a : after.engine.active()) CHECK(a.raised_us >= kStart);

  // Re-evaluated: still over the limit, still open: no second raise.
  CHECK(after.feed(reading("meter-1", "voltage", 262)) == 0);
  CHECK(after.feed(reading("gate-1", "door_open", 1)) == 0);
  CHECK(after.wait(10s) == 0);
  // Each clears once when its condition ends; the denied burst after a quiet window.
  REQUIRE(after.feed(reading("meter-1", "voltage", 240)) == 1);
  CHECK(after.last().rule() == "over-voltage");
  CHECK(after.last().threshold() == 250);
  REQUIRE(after.feed(reading("gate-1", "door_open", 0)) == 1);
  CHECK(after.last().rule() == "door-held");
  CHECK(after.last().value() == 50);  // open since before the restart
  CHECK(after.wait(1min) == 1);
  CHECK(after.last().rule() == "denied-burst");
  CHECK(after.log.back().event.device_id() == "reader-1");
  CHECK(after.raises() == 0);
  CHECK(after.clears() == 3);
  {
    auto buffer = reopen(dir);
    commit(*buffer, after.log);
  }
  CHECK(committed_rows(dir).empty());
}

TEST_CASE("restart: alarms of rules or devices no longer configured are cleared", "[alarm]") {
  AlarmSection volts = rule_for("over-voltage", {"meter-1"});
  volts.point = "voltage";
  volts.high = 250;
  Bench before({volts}, {device("meter-1", v1::ENERGY_METER)});
  before.feed(reading("meter-1", "voltage", 260));
  REQUIRE(before.raises() == 1);
  const auto rows = before.engine.active_rows();

  AlarmSection renamed = volts;
  renamed.name = "over-voltage-l1";
  Bench after({renamed}, {device("meter-1", v1::ENERGY_METER)});
  REQUIRE(after.keep(after.engine.restore(rows)) == 1);
  CHECK_FALSE(after.last().active());
  CHECK(after.last().rule() == "over-voltage");
  CHECK(after.last().value() == 260);
  CHECK(after.log.back().state_key == rows[0].first);
  CHECK(after.log.back().state_value.empty());
  CHECK(after.engine.active().empty());

  Bench gone({volts}, {device("meter-2", v1::ENERGY_METER)});
  CHECK(gone.keep(gone.engine.restore(rows)) == 1);
  Bench garbage({volts}, {device("meter-1", v1::ENERGY_METER)});
  CHECK(garbage.keep(garbage.engine.restore({{"alarm|x|y|", "{not json"}})) == 1);
  CHECK(garbage.last().rule() == "x|y|");
}
