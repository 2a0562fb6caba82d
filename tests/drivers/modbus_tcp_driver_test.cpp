// The Modbus TCP driver against a real loopback socket: the test plays the device, answering
// each request as a healthy or faulty device would, and checks what the driver makes of it.
#include "drivers/modbus_tcp/modbus_tcp_driver.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <thread>

using namespace gw::drivers;
using namespace std::chrono_literals;
namespace proto = gw::protocols;

namespace {

enum class Mode { kGood, kWrongTransaction, kSilent, kException, kGarbageHeader };

// One listening socket on 127.0.0.1; answers holding-register reads with register i = 100 + i.
class FakeDevice {
 public:
  FakeDevice() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    socklen_t len = sizeof a;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    REQUIRE(::listen(listen_fd_, 8) == 0);
    thread_ = std::thread([this] { run(); });
  }
  ~FakeDevice() {
    stop_ = true;
    ::shutdown(listen_fd_, SHUT_RDWR);
    ::close(listen_fd_);
    thread_.join();
  }
  uint16_t port() const { return port_; }
  std::atomic<Mode> mode{Mode::kGood};
  std::atomic<int> connections{0};
  std::atomic<int> requests{0};

 private:
  void run() {
    while (!stop_) {
      const int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) return;
      ++connections;
      serve(fd);
      ::close(fd);
    }
  }
  static bool read_all(int fd, uint8_t* p, std::size_t n) {
    while (n > 0) {
      const ssize_t got = ::read(fd, p, n);
      if (got <= 0) return false;
      p += got;
      n -= static_cast<std::size_t>(got);
    }
    return true;
  }
  void serve(int fd) {
    uint8_t req[12];
    while (!stop_ && read_all(fd, req, sizeof req)) {
      ++requests;
      const uint16_t count = static_cast<uint16_t>((req[10] << 8) | req[11]);
      const uint16_t start = static_cast<uint16_t>((req[8] << 8) | req[9]);
      std::vector<uint8_t> out{req[0], req[1], 0, 0, 0, 0, req[6], req[7]};
      switch (mode.load()) {
        case Mode::kSilent: continue;
        case Mode::kWrongTransaction: out[1] = static_cast<uint8_t>(out[1] + 1); [[fallthrough]];
        case Mode::kGood:
          out.push_back(static_cast<uint8_t>(count * 2));
          for (uint16_t i = 0; i < count; ++i) {
            const uint16_t v = static_cast<uint16_t>(100 + start + i);
            out.push_back(static_cast<uint8_t>(v >> 8));
            out.push_back(static_cast<uint8_t>(v));
          }
          break;
        case Mode::kException:
          out[7] = static_cast<uint8_t>(out[7] | 0x80);
          out.push_back(2);
          break;
        case Mode::kGarbageHeader:
          out[2] = 0x47;  // "GET ..." from something that is not a Modbus device
          out.push_back(0);
          break;
      }
      const std::size_t len = out.size() - 6;
      out[4] = static_cast<uint8_t>(len >> 8);
      out[5] = static_cast<uint8_t>(len);
      if (::write(fd, out.data(), out.size()) != static_cast<ssize_t>(out.size())) return;
    }
  }
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

ModbusTcpSettings settings_for(uint16_t port) {
  ModbusTcpSettings s;
  s.device_id = "meter-1";
  s.host = "127.0.0.1";
  s.port = port;
  s.unit_id = 5;
  s.timeout = 300ms;
  proto::PointSpec a;
  a.name = "voltage";
  a.address = 0;
  a.scale = 0.1;
  a.unit = "V";
  proto::PointSpec b;
  b.name = "current";
  b.address = 10;
  s.points = {a, b};
  s.limits.max_gap = 0;  // two requests: 0+1 and 10+1
  return s;
}

// Runs the io_context until the poll answered (or 5 s passed).
PollResult poll_once(asio::io_context& io, ModbusTcpDriver& d, bool urgent = false) {
  std::optional<PollResult> got;
  d.poll([&](PollResult r) { got = std::move(r); }, urgent);
  io.restart();
  const auto until = std::chrono::steady_clock::now() + 5s;
  while (!got && std::chrono::steady_clock::now() < until) io.run_for(10ms);
  REQUIRE(got);
  return std::move(*got);
}

}  // namespace

TEST_CASE("reads every point in planned requests and traces both directions with readings") {
  FakeDevice dev;
  asio::io_context io;
  auto d = std::make_shared<ModbusTcpDriver>(settings_for(dev.port()), io.get_executor());
  std::vector<std::pair<bool, std::string>> frames;
  d->set_tracer([&](const std::string& id, bool tx, bool bad, std::span<const uint8_t>,
                    const std::string& note) {
    CHECK(id == "meter-1");
    CHECK_FALSE(bad);
    frames.emplace_back(tx, note);
  }, [](const std::string&) { return true; });
  PollResult r = poll_once(io, *d);
  REQUIRE(r.status);
  REQUIRE(r.points.size() == 2);
  CHECK(r.points[0].good);
  CHECK(r.points[0].value == Approx(10.0));  // register 100 * 0.1
  CHECK(r.points[1].value == Approx(110.0));
  REQUIRE(frames.size() == 4);
  CHECK(frames[0].first);
  CHECK(frames[0].second == "tid 1 unit 5 read holding 0+1");
  CHECK_FALSE(frames[1].first);
  CHECK(frames[1].second == "tid 1: voltage=10V");
  CHECK(dev.connections == 1);
  (void)poll_once(io, *d);
  CHECK(dev.connections == 1);  // the connection is kept between polls
}

TEST_CASE("an answer to another transaction closes the connection; the next poll reconnects") {
  FakeDevice dev;
  asio::io_context io;
  auto d = std::make_shared<ModbusTcpDriver>(settings_for(dev.port()), io.get_executor());
  dev.mode = Mode::kWrongTransaction;
  PollResult r = poll_once(io, *d);
  REQUIRE_FALSE(r.status);
  CHECK(r.status.code() == gw::Status::Code::kProtocol);
  CHECK(r.status.message().find("transaction id 2 (expected 1)") != std::string::npos);
  CHECK(r.points.empty());
  dev.mode = Mode::kGood;
  REQUIRE(poll_once(io, *d).status);
  CHECK(dev.connections == 2);
}

TEST_CASE("a silent device times out within its timeout, and a late answer is never used") {
  FakeDevice dev;
  asio::io_context io;
  auto d = std::make_shared<ModbusTcpDriver>(settings_for(dev.port()), io.get_executor());
  dev.mode = Mode::kSilent;
  const auto t0 = std::chrono::steady_clock::now();
  PollResult r = poll_once(io, *d);
  const auto took = std::chrono::steady_clock::now() - t0;
  REQUIRE(r.status.code() == gw::Status::Code::kTimeout);
  CHECK(took >= 290ms);
  CHECK(took < 1s);
  dev.mode = Mode::kGood;
  PollResult ok = poll_once(io, *d);
  REQUIRE(ok.status);
  CHECK(ok.points[0].value == Approx(10.0));
  CHECK(dev.connections == 2);
}

TEST_CASE("an exception marks the points bad but the device stays reachable") {
  FakeDevice dev;
  asio::io_context io;
  auto d = std::make_shared<ModbusTcpDriver>(settings_for(dev.port()), io.get_executor());
  dev.mode = Mode::kException;
  PollResult r = poll_once(io, *d);
  REQUIRE(r.status);
  REQUIRE(r.points.size() == 2);
  CHECK_FALSE(r.points[0].good);
  CHECK(r.points[0].error == "device answered exception 2 (illegal data address)");
}

TEST_CASE("a peer that is not a Modbus device is named as such") {
  FakeDevice dev;
  asio::io_context io;
  auto d = std::make_shared<ModbusTcpDriver>(settings_for(dev.port()), io.get_executor());
  dev.mode = Mode::kGarbageHeader;
  PollResult r = poll_once(io, *d);
  CHECK(r.status.code() == gw::Status::Code::kProtocol);
  CHECK(r.status.message().find("not a Modbus TCP answer") != std::string::npos);
}

TEST_CASE("a refused connection is unavailable, and polls queue one at a time with urgent first") {
  uint16_t closed_port = 0;
  {
    FakeDevice gone;
    closed_port = gone.port();
  }
  asio::io_context io;
  auto d = std::make_shared<ModbusTcpDriver>(settings_for(closed_port), io.get_executor());
  CHECK(poll_once(io, *d).status.code() == gw::Status::Code::kUnavailable);

  FakeDevice dev;
  auto q = std::make_shared<ModbusTcpDriver>(settings_for(dev.port()), io.get_executor());
  std::vector<std::string> order;
  q->poll([&](PollResult) { order.push_back("first"); });
  q->poll([&](PollResult) { order.push_back("second"); });
  q->poll([&](PollResult) { order.push_back("urgent"); }, true);
  io.restart();
  const auto until = std::chrono::steady_clock::now() + 5s;
  while (order.size() < 3 && std::chrono::steady_clock::now() < until) io.run_for(10ms);
  // None had started when the urgent one was queued: it goes ahead of both, the rest keep order.
  CHECK(order == std::vector<std::string>{"urgent", "first", "second"});
}
