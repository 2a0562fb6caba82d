// The bus owner and the Modbus RTU driver against a real pseudo-terminal: the test plays the
// device on the pty's master side, answering each request with the bytes a faulty device would
// send, and checks what the driver makes of them.
#include "drivers/bus/serial_bus.h"

#include <poll.h>
#include <pty.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <mutex>
#include <thread>

#include "drivers/modbus_rtu/modbus_rtu_driver.h"

using namespace gw::drivers;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// CRC-16/MODBUS written out here, independent of protocols/modbus_rtu.cpp.
uint16_t crc(const std::vector<uint8_t>& b) {
  uint16_t c = 0xFFFF;
  for (uint8_t x : b) {
    c ^= x;
    for (int i = 0; i < 8; ++i) c = (c & 1) ? (c >> 1) ^ 0xA001 : c >> 1;
  }
  return c;
}
std::vector<uint8_t> with_crc(std::vector<uint8_t> b) {
  const uint16_t c = crc(b);
  b.push_back(uint8_t(c & 0xff));
  b.push_back(uint8_t(c >> 8));
  return b;
}
// The normal answer of `unit` to "read holding registers" with these values.
std::vector<uint8_t> holding_reply(uint8_t unit, std::vector<uint16_t> values) {
  std::vector<uint8_t> b{unit, 0x03, uint8_t(values.size() * 2)};
  for (uint16_t v : values) {
    b.push_back(uint8_t(v >> 8));
    b.push_back(uint8_t(v & 0xff));
  }
  return with_crc(b);
}

// A device on the other end of a pty. Each request it reads is answered by `answer`, which may
// sleep (a slow device) and returns the bytes to send (possibly none).
class PtyDevice {
 public:
  using Answer = std::function<std::vector<uint8_t>(const std::vector<uint8_t>& request, int n)>;
  explicit PtyDevice(Answer answer) : answer_(std::move(answer)) {
    char name[128];
    REQUIRE(openpty(&master_, &slave_, name, nullptr, nullptr) == 0);
    path_ = name;
    thread_ = std::thread([this] { serve(); });
  }
  ~PtyDevice() {
    stop_ = true;
    thread_.join();
    close(master_);
    close(slave_);
  }
  const std::string& path() const { return path_; }
  std::vector<Clock::time_point> request_times() {
    std::lock_guard<std::mutex> g(mu_);
    return times_;
  }
  std::vector<int> units_asked() {
    std::lock_guard<std::mutex> g(mu_);
    return units_;
  }

 private:
  void serve() {
    std::vector<uint8_t> buf;
    int n = 0;
    while (!stop_) {
      pollfd p{master_, POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) continue;
      uint8_t chunk[256];
      const ssize_t got = read(master_, chunk, sizeof chunk);
      if (got <= 0) continue;
      buf.insert(buf.end(), chunk, chunk + got);
      if (buf.size() < 8) continue;  // every request in these tests is an 8-byte read
      std::vector<uint8_t> req(buf.begin(), buf.begin() + 8);
      buf.erase(buf.begin(), buf.begin() + 8);
      {
        std::lock_guard<std::mutex> g(mu_);
        times_.push_back(Clock::now());
        units_.push_back(req[0]);
      }
      std::vector<uint8_t> reply = answer_(req, n++);
      if (!reply.empty()) (void)!write(master_, reply.data(), reply.size());
    }
  }
  Answer answer_;
  int master_ = -1, slave_ = -1;
  std::string path_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<Clock::time_point> times_;
  std::vector<int> units_;
};

struct Rig {
  asio::io_context io;
  std::shared_ptr<SerialBus> bus;
  explicit Rig(const std::string& path, int baud = 9600) {
    BusSettings s;
    s.id = "rs485-test";
    s.device_path = path;
    s.baud = baud;
    bus = std::make_shared<SerialBus>(io.get_executor(), s);
    bus->start();
    run_until([&] { return bus->is_open(); }, 2s);
  }
  template <typename Pred>
  bool run_until(Pred done, std::chrono::milliseconds limit) {
    const auto end = Clock::now() + limit;
    while (!done() && Clock::now() < end) io.run_for(5ms);
    return done();
  }
  PollResult poll(ModbusRtuDriver& d) {
    std::optional<PollResult> out;
    d.poll([&](PollResult r) { out = std::move(r); });
    REQUIRE(run_until([&] { return out.has_value(); }, 5s));
    return *out;
  }
};

std::shared_ptr<ModbusRtuDriver> meter(Rig& rig, uint8_t unit = 7) {
  ModbusRtuSettings s;
  s.device_id = "meter-7";
  s.unit = unit;
  s.timeout = 150ms;
  gw::protocols::PointSpec energy;
  energy.name = "energy_total";
  energy.address = 0;
  energy.type = gw::protocols::ValueType::kUint32;
  energy.scale = 0.01;
  s.points.push_back(energy);
  return std::make_shared<ModbusRtuDriver>(s, rig.bus);
}

}  // namespace

TEST_CASE("a good RTU reply is decoded") {
  PtyDevice dev([](const std::vector<uint8_t>& req, int) {
    CHECK(req == with_crc({7, 0x03, 0, 0, 0, 2}));
    return holding_reply(7, {0x0001, 0xE240});  // 123456 -> 1234.56
  });
  Rig rig(dev.path());
  auto d = meter(rig);
  PollResult r = rig.poll(*d);
  REQUIRE(r.status.is_ok());
  REQUIRE(r.points.size() == 1);
  CHECK(r.points[0].good);
  CHECK(r.points[0].value == Approx(1234.56));
}

TEST_CASE("malformed replies map to clear errors and the bus keeps working") {
  struct Case {
    const char* name;
    std::vector<uint8_t> reply;
    gw::Status::Code code;
    const char* says;
  };
  auto good = holding_reply(7, {0, 100});
  auto bad_crc = good;
  bad_crc.back() ^= 0xFF;
  auto extra = good;
  extra.insert(extra.end(), {0x11, 0x22, 0x33});
  const std::vector<Case> cases = {
      {"bad CRC", bad_crc, gw::Status::Code::kProtocol, "CRC"},
      {"wrong unit", holding_reply(9, {0, 100}), gw::Status::Code::kProtocol, "unit"},
      {"wrong function", with_crc({7, 0x04, 4, 0, 0, 0, 100}), gw::Status::Code::kProtocol,
       "function"},
      {"short frame", std::vector<uint8_t>(good.begin(), good.begin() + 5),
       gw::Status::Code::kTimeout, "incomplete answer (5 bytes)"},
      {"extra bytes", extra, gw::Status::Code::kProtocol, "3 extra bytes"},
      {"no answer", {}, gw::Status::Code::kTimeout, "no answer"},
  };
  for (const Case& c : cases) {
    SECTION(c.name) {
      // The first request gets the faulty answer, the second a good one.
      PtyDevice dev([&](const std::vector<uint8_t>&, int n) {
        return n == 0 ? c.reply : holding_reply(7, {0, 200});
      });
      Rig rig(dev.path());
      auto d = meter(rig);
      PollResult r = rig.poll(*d);
      REQUIRE_FALSE(r.status.is_ok());
      CHECK(r.status.code() == c.code);
      CHECK_THAT(r.status.message(), Catch::Contains(c.says));
      PollResult next = rig.poll(*d);
      REQUIRE(next.status.is_ok());
      CHECK(next.points[0].value == Approx(2.00));
    }
  }
}

TEST_CASE("an exception reply marks the points bad but the device stays reachable") {
  PtyDevice dev([](const std::vector<uint8_t>&, int) { return with_crc({7, 0x83, 0x02}); });
  Rig rig(dev.path());
  auto d = meter(rig);
  PollResult r = rig.poll(*d);
  REQUIRE(r.status.is_ok());
  REQUIRE(r.points.size() == 1);
  CHECK_FALSE(r.points[0].good);
  CHECK_THAT(r.points[0].error, Catch::Contains("illegal data address"));
}

TEST_CASE("a reply that comes after the timeout is never taken for the next request's") {
  // Request 0 is answered 250 ms late (timeout 150 ms) with value 1; request 1 at once with 2.
  PtyDevice dev([](const std::vector<uint8_t>&, int n) {
    if (n == 0) {
      std::this_thread::sleep_for(250ms);
      return holding_reply(7, {0, 100});
    }
    return holding_reply(7, {0, 200});
  });
  Rig rig(dev.path());
  auto d = meter(rig);
  PollResult first = rig.poll(*d);
  CHECK(first.status.code() == gw::Status::Code::kTimeout);
  PollResult second = rig.poll(*d);
  REQUIRE(second.status.is_ok());
  CHECK(second.points[0].value == Approx(2.00));  // not the late 1.00
  CHECK(rig.bus->stats().discarded_bytes >= 9);
}

TEST_CASE("requests are separated by at least the silent interval, one-off requests first") {
  PtyDevice dev([&](const std::vector<uint8_t>& req, int n) {
    if (n == 0) std::this_thread::sleep_for(60ms);  // keeps the first poll on the wire a while
    return holding_reply(req[0], {0, 1});
  });
  Rig rig(dev.path(), 9600);
  auto a = meter(rig, 1), b = meter(rig, 2), c = meter(rig, 3);
  int done = 0;
  a->poll([&](PollResult) { ++done; });
  b->poll([&](PollResult) { ++done; });
  c->poll([&](PollResult) { ++done; });
  // A one-off read submitted while the first poll is on the wire goes out right after it,
  // ahead of the two polls still queued.
  REQUIRE(rig.run_until([&] { return !dev.request_times().empty(); }, 2s));
  Exchange oneoff;
  oneoff.device_id = "meter-9";
  oneoff.request = with_crc({9, 0x03, 0, 0, 0, 2});
  oneoff.timeout = 150ms;
  oneoff.urgent = true;
  oneoff.check = [](std::span<const uint8_t> rx) {
    return rx.size() >= 9 ? FrameCheck{FrameCheck::Verdict::kComplete, 9, {}} : FrameCheck{};
  };
  rig.bus->submit(oneoff, [&](ExchangeResult) { ++done; });
  REQUIRE(rig.run_until([&] { return done == 4; }, 5s));
  CHECK(dev.units_asked() == std::vector<int>{1, 9, 2, 3});
  // 3.5 characters of 10 bits at 9600 baud: 3.65 ms at least between request starts (each
  // exchange also includes the reply, so real gaps are longer).
  const auto times = dev.request_times();
  REQUIRE(times.size() == 4);
  for (std::size_t i = 1; i < times.size(); ++i) CHECK(times[i] - times[i - 1] >= 3600us);
}

TEST_CASE("a line that cannot be opened fails exchanges at once with the reason") {
  asio::io_context io;
  BusSettings s;
  s.id = "rs485-missing";
  s.device_path = "/dev/gw-no-such-tty";
  auto bus = std::make_shared<SerialBus>(io.get_executor(), s);
  bus->start();
  io.run_for(50ms);
  std::optional<ExchangeResult> got;
  bus->submit(Exchange{"x", {1, 2, 3}, {}, 100ms, false}, [&](ExchangeResult r) { got = r; });
  io.run_for(50ms);
  REQUIRE(got);
  CHECK(got->status.code() == gw::Status::Code::kUnavailable);
  CHECK_THAT(got->status.message(), Catch::Contains("/dev/gw-no-such-tty"));
  bus->stop();
}
