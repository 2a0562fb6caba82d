// The camera_http driver against the simulated camera (tools/sim/camera_sim_core), in-process,
// over real loopback sockets: alert streams with digest and basic login, heartbeats, stalls and
// reconnects, and the push listener with good, bad and hostile requests.
#include <sys/socket.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "drivers/camera_http/camera_http_source.h"
#include "tools/sim/camera_sim_core.h"

using namespace gw::drivers;
using namespace std::chrono_literals;
namespace sim = gw::sim::camera;
using Clock = std::chrono::steady_clock;

namespace {

struct CameraEvent {
  std::string type;
  bool active;
  uint32_t channel;
  std::string detail;
  bool operator==(const CameraEvent& o) const {
    return type == o.type && active == o.active && channel == o.channel;
  }
};

std::ostream& operator<<(std::ostream& os, const CameraEvent& e) {
  return os << e.type << (e.active ? " active" : " inactive") << " ch" << e.channel << " ("
            << e.detail << ")";
}

// What the driver told the gateway.
struct Recorder {
  std::vector<CameraEvent> events;
  std::vector<std::pair<bool, std::string>> links;
  std::vector<std::pair<Clock::time_point, bool>> link_times;
  std::vector<std::pair<std::string, std::string>> bad;
  std::vector<std::string> traces;

  SourceCallbacks callbacks() {
    SourceCallbacks cb;
    cb.event = [this](SourceEvent e) {
      REQUIRE(e.event.has_camera());
      const auto& c = e.event.camera();
      events.push_back({c.type(), c.active(), c.channel(), c.detail()});
    };
    cb.link = [this](bool up, const std::string& why) {
      links.emplace_back(up, why);
      link_times.emplace_back(Clock::now(), up);
    };
    cb.bad_input = [this](std::string_view kind, const std::string& m) {
      bad.emplace_back(std::string(kind), m);
    };
    cb.trace = [this](bool tx, std::span<const uint8_t> bytes, const std::string& note) {
      traces.push_back(std::string(tx ? "tx " : "rx ") + note + " | " +
                       std::string(bytes.begin(), bytes.end()));
    };
    return cb;
  }
  bool saw_bad(const std::string& kind, const std::string& part) const {
    for (const auto& [k, m] : bad) {
      if (k == kind && m.find(part) != std::string::npos) return true;
    }
    return false;
  }
};

// The simulator's log lines, stamped on the test's clock.
struct SimLog {
  std::mutex mu;
  std::vector<std::pair<Clock::time_point, std::string>> lines;
  sim::StreamCamera::Log sink() {
    return [this](const std::string& line) {
      std::lock_guard lock(mu);
      lines.emplace_back(Clock::now(), line);
    };
  }
  // The last line containing any of `parts` before time `t`.
  std::optional<Clock::time_point> last_before(std::initializer_list<std::string> parts,
                                               Clock::time_point t) {
    std::lock_guard lock(mu);
    std::optional<Clock::time_point> found;
    for (const auto& [at, l] : lines) {
      if (at > t) break;
      for (const auto& p : parts) {
        if (l.find(p) != std::string::npos) found = at;
      }
    }
    return found;
  }
  std::optional<Clock::time_point> first(const std::string& part) {
    std::lock_guard lock(mu);
    for (const auto& [t, l] : lines) {
      if (l.find(part) != std::string::npos) return t;
    }
    return std::nullopt;
  }
  int count(const std::string& part) {
    std::lock_guard lock(mu);
    int n = 0;
    for (const auto& [t, l] : lines) n += l.find(part) != std::string::npos;
    return n;
  }
  std::string all() {
    std::lock_guard lock(mu);
    std::string s;
    for (const auto& [t, l] : lines) s += l + "\n";
    return s;
  }
};

template <typename Pred>
bool run_until(asio::io_context& io, Pred pred, std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    if (pred()) return true;
    io.restart();
    io.run_for(10ms);
  }
  return pred();
}

void run_for(asio::io_context& io, std::chrono::milliseconds d) {
  run_until(
      io, [] { return false; }, d);
}

CameraHttpSettings stream_settings(uint16_t port, CameraHttpSettings::Vendor vendor) {
  CameraHttpSettings s;
  s.device_id = "cam-1";
  s.mode = CameraHttpSettings::Mode::kStream;
  s.vendor = vendor;
  s.host = "127.0.0.1";
  s.port = port;
  s.username = "admin";
  s.password = "12345";
  s.heartbeat = 1s;
  s.heartbeat_timeout = 3s;
  s.timeout = 2s;
  s.inactive_after = 0ms;
  s.backoff_initial = 100ms;
  s.backoff_max = 400ms;
  return s;
}

std::vector<sim::Step> seq(const std::string& spec) {
  std::string error;
  auto steps = sim::parse_sequence(spec, error);
  INFO(error);
  REQUIRE_FALSE(steps.empty());
  return steps;
}

// One raw exchange with the push listener, the driver's io_context running here meanwhile:
// everything the server sent until it closed the connection (or 5 s passed).
std::string raw_request(uint16_t port, const std::string& bytes, asio::io_context& io,
                        bool half_close = false) {
  std::string answer;
  std::atomic<bool> done{false};
  std::thread client([&] {
    asio::io_context cio;
    asio::ip::tcp::socket s(cio);
    boost::system::error_code ec;
    s.connect({asio::ip::make_address("127.0.0.1"), port}, ec);
    // A server that never closes must not hang the test: reads give up after 5 s.
    timeval limit{5, 0};
    if (!ec) ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    if (!ec) asio::write(s, asio::buffer(bytes), ec);
    if (!ec && half_close) s.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
    std::array<char, 4096> buf{};
    while (!ec) {
      const std::size_t n = s.read_some(asio::buffer(buf), ec);
      answer.append(buf.data(), n);
    }
    done = true;
  });
  run_until(
      io, [&] { return done.load(); }, 6s);
  client.join();
  return answer;
}

}  // namespace

TEST_CASE("Hikvision alert stream with digest login: transitions once, heartbeats none",
          "[camera_http]") {
  SimLog log;
  sim::StreamOptions o;
  o.vendor = sim::Vendor::kHikvision;
  o.heartbeat_s = 0.3;
  o.interval_s = 0.05;
  o.start_delay_s = 0.2;
  o.sequence =
      seq("VMD@1=active*3,VMD@1=inactive,linedetection@2=active*2,garbage,"
          "linedetection@2=inactive,shelteralarm@1=active");
  sim::StreamCamera cam(o, log.sink());
  const uint16_t port = cam.start();

  asio::io_context io;
  auto src = std::make_shared<CameraHttpSource>(
      io.get_executor(), stream_settings(port, CameraHttpSettings::Vendor::kHikvision));
  Recorder rec;
  src->start(rec.callbacks(), "");
  REQUIRE(run_until(
      io, [&] { return cam.sequence_done() && rec.events.size() >= 5; }, 10s));
  run_for(io, 700ms);  // heartbeats keep coming; nothing else may
  src->stop();
  cam.stop();
  INFO(log.all());

  const std::vector<CameraEvent> expected = {{"motion", true, 1, ""},
                                             {"motion", false, 1, ""},
                                             {"line_crossing", true, 2, ""},
                                             {"line_crossing", false, 2, ""},
                                             {"tamper", true, 1, ""}};
  CHECK(rec.events == expected);
  CHECK(rec.events[0].detail == "VMD: VMD alarm");
  REQUIRE(rec.links.size() == 1);
  CHECK(rec.links[0].first);
  CHECK(src->stats().repeats == 3);
  CHECK(src->stats().heartbeats >= 3);
  CHECK(src->stats().connects == 1);
  CHECK(rec.saw_bad("format", "XML: end tag </eventTyp> does not match <eventType>"));
  CHECK(log.count("login 1 refused: no Authorization") == 1);  // then the digest answer
  CHECK(log.count("connection ") == 1);
  bool redacted = false;
  for (const auto& t : rec.traces) {
    if (t.find("Authorization: Digest (redacted)") != std::string::npos) redacted = true;
    CHECK(t.find("response=") == std::string::npos);
  }
  CHECK(redacted);
}

TEST_CASE("Dahua attach stream, chunked, with Pulse and heartbeats", "[camera_http]") {
  SimLog log;
  sim::StreamOptions o;
  o.vendor = sim::Vendor::kDahua;
  o.chunked = true;
  o.heartbeat_s = 0.3;
  o.interval_s = 0.05;
  o.start_delay_s = 0.2;
  o.sequence =
      seq("VideoMotion@1=active*2,VideoMotion@1=inactive,AlarmLocal@2=pulse*2,"
          "CrossRegionDetection@3=active,garbage");
  sim::StreamCamera cam(o, log.sink());
  const uint16_t port = cam.start();

  asio::io_context io;
  auto settings = stream_settings(port, CameraHttpSettings::Vendor::kDahua);
  auto src = std::make_shared<CameraHttpSource>(io.get_executor(), settings);
  Recorder rec;
  src->start(rec.callbacks(), "");
  REQUIRE(run_until(
      io, [&] { return cam.sequence_done() && !rec.bad.empty(); }, 10s));
  run_for(io, 400ms);
  src->stop();
  cam.stop();
  INFO(log.all());

  const std::vector<CameraEvent> expected = {{"motion", true, 1, ""},
                                             {"motion", false, 1, ""},
                                             {"alarm_input", true, 2, ""},
                                             {"alarm_input", true, 2, ""},
                                             {"intrusion", true, 3, ""}};
  CHECK(rec.events == expected);
  CHECK(src->stats().repeats == 1);
  CHECK(src->stats().heartbeats >= 2);
  CHECK(rec.saw_bad("format", "action 'Sideways' is not Start, Stop or Pulse"));
  CHECK(log.count("GET /cgi-bin/eventManager.cgi?action=attach&codes=[All]&heartbeat=1") >= 1);
}

TEST_CASE("A stalled stream is reconnected once its heartbeat timeout has passed",
          "[camera_http]") {
  SimLog log;
  sim::StreamOptions o;
  o.vendor = sim::Vendor::kHikvision;
  o.heartbeat_s = 0.25;
  o.interval_s = 0.05;
  o.start_delay_s = 0.1;
  o.stall_after = 4;  // heartbeat, VMD active, heartbeat, ... then silence with the socket open
  o.sequence = seq("VMD@1=active,VMD@1=inactive,VMD@2=active,VMD@2=inactive");
  sim::StreamCamera cam(o, log.sink());
  const uint16_t port = cam.start();

  asio::io_context io;
  auto settings = stream_settings(port, CameraHttpSettings::Vendor::kHikvision);
  settings.heartbeat = 250ms;
  settings.heartbeat_timeout = 1s;
  auto src = std::make_shared<CameraHttpSource>(io.get_executor(), settings);
  Recorder rec;
  src->start(rec.callbacks(), "");
  REQUIRE(run_until(
      io, [&] { return cam.streams() >= 2; }, 10s));
  REQUIRE(run_until(
      io, [&] { return rec.links.size() >= 3; }, 3s));
  REQUIRE(run_until(
      io, [&] { return cam.sequence_done() && rec.events.size() >= 4; }, 5s));
  src->stop();
  cam.stop();
  INFO(log.all());

  const auto stall = log.first("stall 1 after 4 parts");
  REQUIRE(stall);
  const auto last_byte = log.last_before({"heartbeat 1", "sent 1 "}, *stall);
  const auto reconnected = log.first("connection 2 ");
  REQUIRE(last_byte);
  REQUIRE(reconnected);
  // The stream went silent after its last part; the driver waits its heartbeat timeout for
  // another byte, then reconnects without a backoff (the stream had been healthy).
  const auto gap = std::chrono::duration_cast<std::chrono::milliseconds>(*reconnected - *last_byte);
  WARN("reconnected " << gap.count() << " ms after the stream's last byte (heartbeat timeout "
                      << "1000 ms)");
  CHECK(gap >= 990ms);
  CHECK(gap <= 1300ms);
  REQUIRE(rec.links.size() == 3);
  CHECK(rec.links[0].first);
  CHECK_FALSE(rec.links[1].first);
  CHECK(rec.links[1].second == "alert stream silent for 1s (heartbeat timeout)");
  CHECK(rec.links[2].first);
  // Every transition arrived once, across the reconnect.
  const std::vector<CameraEvent> expected = {{"motion", true, 1, ""},
                                             {"motion", false, 1, ""},
                                             {"motion", true, 2, ""},
                                             {"motion", false, 2, ""}};
  CHECK(rec.events == expected);
}

TEST_CASE("A wrong password is an auth failure, retried with backoff, reported once",
          "[camera_http]") {
  SimLog log;
  sim::StreamOptions o;
  o.heartbeat_s = 0.3;
  sim::StreamCamera cam(o, log.sink());
  const uint16_t port = cam.start();
  asio::io_context io;
  auto settings = stream_settings(port, CameraHttpSettings::Vendor::kHikvision);
  settings.password = "wrong";
  auto src = std::make_shared<CameraHttpSource>(io.get_executor(), settings);
  Recorder rec;
  src->start(rec.callbacks(), "");
  run_for(io, 1500ms);
  src->stop();
  cam.stop();
  INFO(log.all());
  REQUIRE(rec.links.size() == 1);
  CHECK_FALSE(rec.links[0].first);
  CHECK(rec.links[0].second ==
        "camera refused the digest login of user 'admin' (HTTP 401); check username: and "
        "password_file:");
  CHECK(rec.saw_bad("auth", "refused the digest login"));
  CHECK(log.count("wrong digest response") >= 2);
  // Backoff 100 ms doubling to 400 ms (jittered down to half): a handful of attempts, no storm.
  CHECK(cam.connections() >= 3);
  CHECK(cam.connections() <= 12);
  CHECK(cam.streams() == 0);
}

TEST_CASE("Basic login, and a digest client told the camera wants basic", "[camera_http]") {
  SimLog log;
  sim::StreamOptions o;
  o.auth = sim::StreamOptions::Auth::kBasic;
  o.heartbeat_s = 0.2;
  o.start_delay_s = 0.1;
  o.sequence = seq("fielddetection@1=active");
  sim::StreamCamera cam(o, log.sink());
  const uint16_t port = cam.start();

  {
    asio::io_context io;
    auto settings = stream_settings(port, CameraHttpSettings::Vendor::kHikvision);
    auto src = std::make_shared<CameraHttpSource>(io.get_executor(), settings);
    Recorder rec;
    src->start(rec.callbacks(), "");
    run_for(io, 600ms);
    src->stop();
    REQUIRE_FALSE(rec.links.empty());
    CHECK(rec.links[0].second ==
          "camera asks for a login it does not offer as digest (HTTP 401); it offers basic: set "
          "auth: basic");
  }
  asio::io_context io;
  auto settings = stream_settings(port, CameraHttpSettings::Vendor::kHikvision);
  settings.auth = CameraHttpSettings::Auth::kBasic;
  auto src = std::make_shared<CameraHttpSource>(io.get_executor(), settings);
  Recorder rec;
  src->start(rec.callbacks(), "");
  REQUIRE(run_until(
      io, [&] { return !rec.events.empty(); }, 5s));
  src->stop();
  cam.stop();
  CHECK(rec.events[0] == CameraEvent{"intrusion", true, 1, ""});
}

TEST_CASE("An unreachable camera is reported offline once, with the reason", "[camera_http]") {
  // A port nobody listens on: bind one, note it, close it.
  uint16_t port = 0;
  {
    asio::io_context tmp;
    asio::ip::tcp::acceptor a(tmp, {asio::ip::make_address("127.0.0.1"), 0});
    port = a.local_endpoint().port();
  }
  asio::io_context io;
  auto src = std::make_shared<CameraHttpSource>(
      io.get_executor(), stream_settings(port, CameraHttpSettings::Vendor::kHikvision));
  Recorder rec;
  src->start(rec.callbacks(), "");
  run_for(io, 1000ms);
  src->stop();
  REQUIRE(rec.links.size() == 1);
  CHECK_FALSE(rec.links[0].first);
  CHECK_THAT(rec.links[0].second,
             Catch::StartsWith("cannot connect to 127.0.0.1:" + std::to_string(port) + ": "));
  CHECK(rec.bad.empty());  // a camera that is down is not bad input
}

TEST_CASE("inactive_after ends an active state the camera stops posting", "[camera_http]") {
  SimLog log;
  sim::StreamOptions o;
  o.heartbeat_s = 0.2;
  o.interval_s = 0.1;
  o.start_delay_s = 0.1;
  o.sequence = seq("VMD@1=active*4");  // Hikvision posts motion as active only, about 1/s
  sim::StreamCamera cam(o, log.sink());
  const uint16_t port = cam.start();
  asio::io_context io;
  auto settings = stream_settings(port, CameraHttpSettings::Vendor::kHikvision);
  settings.inactive_after = 500ms;
  auto src = std::make_shared<CameraHttpSource>(io.get_executor(), settings);
  Recorder rec;
  src->start(rec.callbacks(), "");
  REQUIRE(run_until(
      io, [&] { return rec.events.size() >= 2; }, 5s));
  run_for(io, 300ms);
  src->stop();
  cam.stop();
  const std::vector<CameraEvent> expected = {{"motion", true, 1, ""}, {"motion", false, 1, ""}};
  CHECK(rec.events == expected);
  CHECK(rec.events[1].detail == "VMD: no active notification for 500ms");
}

// ---------------------------------------------------------------------------------------------
// Push

namespace {

CameraHttpSettings push_settings() {
  CameraHttpSettings s;
  s.device_id = "cam-push";
  s.mode = CameraHttpSettings::Mode::kPush;
  s.listen_host = "127.0.0.1";
  s.listen_port = 0;
  s.heartbeat_timeout = 0ms;
  s.timeout = 2s;
  s.inactive_after = 0ms;
  s.max_body = 1u << 20;
  s.max_connections = 4;
  return s;
}

// Runs push_all on a thread while the driver's io_context runs here.
std::vector<sim::PushResult> push(asio::io_context& io, uint16_t port, sim::PushOptions o,
                                  SimLog& log) {
  o.port = port;
  std::vector<sim::PushResult> results;
  bool done = false;
  std::mutex mu;
  std::thread t([&] {
    auto r = sim::push_all(o, log.sink());
    std::lock_guard lock(mu);
    results = std::move(r);
    done = true;
  });
  run_until(
      io,
      [&] {
        std::lock_guard lock(mu);
        return done;
      },
      20s);
  t.join();
  return results;
}

}  // namespace

TEST_CASE("Pushed alarms in every body form: 200, transitions once, pictures skipped",
          "[camera_http]") {
  asio::io_context io;
  auto src = std::make_shared<CameraHttpSource>(io.get_executor(), push_settings());
  Recorder rec;
  src->start(rec.callbacks(), "");
  REQUIRE(run_until(
      io, [&] { return src->listening_port() != 0; }, 2s));
  REQUIRE(rec.links.size() == 1);
  CHECK(rec.links[0].first);  // listening is the link when the camera sends no heartbeat

  SimLog log;
  sim::PushOptions o;
  o.interval_s = 0.01;
  o.image_bytes = 200000;
  o.sequence = seq("VMD@1=active*3,VMD@1=inactive,garbage");
  std::vector<CameraEvent> expected;
  for (auto format : {sim::PushOptions::Format::kXml, sim::PushOptions::Format::kJson,
                      sim::PushOptions::Format::kSimple, sim::PushOptions::Format::kMultipart}) {
    o.format = format;
    const auto results = push(io, src->listening_port(), o, log);
    INFO(log.all());
    REQUIRE(results.size() == 5);
    for (int i = 0; i < 4; ++i) CHECK(results[static_cast<std::size_t>(i)].status == 200);
    CHECK(results[4].status == 400);
    expected.push_back({"motion", true, 1, ""});  // the simple form's "VMD" maps too
    expected.push_back({"motion", false, 1, ""});
  }
  o.format = sim::PushOptions::Format::kDahua;
  o.sequence = seq("VideoMotion@2=active*2,VideoMotion@2=inactive,AlarmLocal@1=pulse,garbage");
  const auto dahua = push(io, src->listening_port(), o, log);
  REQUIRE(dahua.size() == 5);
  CHECK(dahua[0].status == 200);
  CHECK(dahua[4].status == 400);
  CHECK(dahua[4].reply == "Dahua event VideoMotion: action 'Sideways' is not Start, Stop or Pulse");
  expected.push_back({"motion", true, 2, ""});
  expected.push_back({"motion", false, 2, ""});
  expected.push_back({"alarm_input", true, 1, ""});
  src->stop();
  CHECK(rec.events == expected);
  CHECK(src->stats().media_parts == 5);  // the multipart round: one picture with every post
  CHECK(src->stats().repeats == 9);      // 2 per format (4 formats) + 1 Dahua
  CHECK(rec.bad.size() == 5);            // one garbage post per round
}

TEST_CASE("The push listener answers hostile requests and stays up", "[camera_http]") {
  asio::io_context io;
  auto settings = push_settings();
  settings.path = "/alarm";
  settings.max_body = 64 * 1024;
  auto src = std::make_shared<CameraHttpSource>(io.get_executor(), settings);
  Recorder rec;
  src->start(rec.callbacks(), "");
  REQUIRE(run_until(
      io, [&] { return src->listening_port() != 0; }, 2s));
  const uint16_t port = src->listening_port();
  const std::string xml = sim::hikvision_xml({{"VMD", 1, sim::Step::State::kActive, 1}, 1});
  auto post = [&](const std::string& path, const std::string& type, const std::string& body) {
    return "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: " + type +
           "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" +
           body;
  };

  CHECK_THAT(raw_request(port, "hello there\r\n\r\n", io),
             Catch::StartsWith("HTTP/1.1 400 Bad Request"));
  CHECK_THAT(raw_request(port, "GET /alarm HTTP/1.1\r\nHost: x\r\n\r\n", io),
             Catch::StartsWith("HTTP/1.1 405") && Catch::Contains("POST alarms"));
  CHECK_THAT(raw_request(port, post("/other", "application/xml", xml), io),
             Catch::StartsWith("HTTP/1.1 404") && Catch::Contains("post to /alarm"));
  CHECK_THAT(raw_request(port, post("/alarm", "application/xml", "<x"), io),
             Catch::StartsWith("HTTP/1.1 400") && Catch::Contains("XML:"));
  CHECK_THAT(raw_request(port, post("/alarm", "multipart/mixed", xml), io),
             Catch::StartsWith("HTTP/1.1 400") && Catch::Contains("names no boundary"));
  CHECK_THAT(raw_request(port, post("/alarm", "text/plain", std::string(70000, 'a')), io),
             Catch::StartsWith("HTTP/1.1 413") && Catch::Contains("max_body (64KiB)"));
  CHECK_THAT(
      raw_request(
          port, "POST /alarm HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(20000, 'h') + "\r\n\r\n",
          io),
      Catch::StartsWith("HTTP/1.1 431"));
  // A body cut short: the client gives up half-way and closes its side.
  raw_request(port,
              "POST /alarm HTTP/1.1\r\nHost: x\r\nContent-Type: application/xml\r\n"
              "Content-Length: 1000\r\n\r\n<EventNotif",
              io, true);
  // Expect: 100-continue, as curl sends for larger bodies.
  const std::string with_continue =
      "POST /alarm?x=1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/xml\r\nExpect: "
      "100-continue\r\nContent-Length: " +
      std::to_string(xml.size()) + "\r\nConnection: close\r\n\r\n" + xml;
  const std::string answer = raw_request(port, with_continue, io);
  CHECK_THAT(answer, Catch::StartsWith("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK"));
  CHECK_THAT(answer, Catch::Contains("OK: 1 alert"));
  src->stop();
  REQUIRE(rec.events.size() == 1);
  CHECK(rec.events[0] == CameraEvent{"motion", true, 1, ""});
  CHECK(rec.saw_bad("protocol", "not a valid HTTP request"));
  CHECK(rec.saw_bad("protocol", "method GET not allowed"));
  CHECK(rec.saw_bad("overflow", "request body larger than max_body (64KiB)"));
  CHECK(rec.saw_bad("protocol", "request body incomplete"));
  CHECK(rec.saw_bad("format", "XML:"));
}

TEST_CASE("allow_from, max_connections and push liveness", "[camera_http]") {
  asio::io_context io;
  auto settings = push_settings();
  settings.allow_from = {"10.9.9.9"};
  auto src = std::make_shared<CameraHttpSource>(io.get_executor(), settings);
  Recorder rec;
  src->start(rec.callbacks(), "");
  REQUIRE(run_until(
      io, [&] { return src->listening_port() != 0; }, 2s));
  const std::string answer =
      raw_request(src->listening_port(), "POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", io);
  CHECK_THAT(answer, Catch::StartsWith("HTTP/1.1 403") &&
                         Catch::Contains("127.0.0.1 may not post to this device"));
  CHECK(rec.saw_bad("auth", "push from 127.0.0.1 refused: not in allow_from"));
  src->stop();

  // Idle connections beyond max_connections are turned away with 503.
  asio::io_context io2;
  settings = push_settings();
  settings.max_connections = 2;
  auto src2 = std::make_shared<CameraHttpSource>(io2.get_executor(), settings);
  Recorder rec2;
  src2->start(rec2.callbacks(), "");
  REQUIRE(run_until(
      io2, [&] { return src2->listening_port() != 0; }, 2s));
  asio::io_context cio;
  std::vector<asio::ip::tcp::socket> idle;
  for (int i = 0; i < 2; ++i) {
    idle.emplace_back(cio);
    idle.back().connect({asio::ip::make_address("127.0.0.1"), src2->listening_port()});
  }
  run_for(io2, 100ms);
  CHECK_THAT(raw_request(src2->listening_port(), "POST / HTTP/1.1\r\n\r\n", io2),
             Catch::StartsWith("HTTP/1.1 503") && Catch::Contains("too many connections (2)"));
  src2->stop();

  // With heartbeat_timeout, a camera silent that long is offline until its next post.
  asio::io_context io3;
  settings = push_settings();
  settings.heartbeat_timeout = 300ms;
  auto src3 = std::make_shared<CameraHttpSource>(io3.get_executor(), settings);
  Recorder rec3;
  src3->start(rec3.callbacks(), "");
  REQUIRE(run_until(
      io3, [&] { return !rec3.links.empty(); }, 2s));
  CHECK_FALSE(rec3.links[0].first);
  CHECK(rec3.links[0].second == "no notification from the camera for 300ms");
  SimLog log;
  sim::PushOptions o;
  o.sequence = seq("VMD@1=active");
  CHECK(push(io3, src3->listening_port(), o, log).at(0).status == 200);
  REQUIRE(rec3.links.size() >= 2);
  CHECK(rec3.links[1].first);
  REQUIRE(run_until(
      io3, [&] { return rec3.links.size() >= 3; }, 2s));
  CHECK_FALSE(rec3.links[2].first);
  src3->stop();
}

TEST_CASE("A push listener whose port is taken says so and binds once it is free",
          "[camera_http]") {
  asio::io_context io;
  auto squatter = std::make_unique<asio::ip::tcp::acceptor>(
      io, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const uint16_t port = squatter->local_endpoint().port();
  auto settings = push_settings();
  settings.listen_port = port;
  auto src = std::make_shared<CameraHttpSource>(io.get_executor(), settings);
  Recorder rec;
  src->start(rec.callbacks(), "");
  REQUIRE(run_until(io, [&] { return !rec.links.empty(); }, 2s));
  CHECK_FALSE(rec.links[0].first);
  CHECK_THAT(rec.links[0].second,
             Catch::StartsWith("cannot listen on 127.0.0.1:" + std::to_string(port) + ": "));
  squatter.reset();  // the port is free again: the next retry (1 s) binds it
  REQUIRE(run_until(io, [&] { return rec.links.size() >= 2; }, 3s));
  CHECK(rec.links[1].first);
  CHECK(src->listening_port() == port);
  src->stop();
}
