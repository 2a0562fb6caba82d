#include "gateway/metrics_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <thread>

using gw::metrics::MetricsServer;
using gw::metrics::MetricsServerOptions;
using gw::metrics::parse_request_head;
using gw::metrics::ParseState;
using gw::metrics::Registry;
using gw::metrics::RequestHead;
using namespace std::chrono_literals;

namespace {

// ------------------------------------------------------------------------------------------------
// Parser fixtures

constexpr std::string_view kGoodCrlf =
    "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9108\r\nUser-Agent: Prometheus/2.45.0\r\n"
    "Accept: text/plain;version=0.0.4;q=1,*/*;q=0.1\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n"
    "\r\n";
constexpr std::string_view kGoodLf = "HEAD / HTTP/1.0\nAccept: */*\n\n";

RequestHead parse(std::string_view bytes) { return parse_request_head(bytes); }

std::string head_with_header_of(std::size_t value_bytes) {
  return "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: " + std::string(value_bytes, 'a') + "\r\n\r\n";
}

// ------------------------------------------------------------------------------------------------
// Socket fixtures: the server runs on its own core thread; the test is a plain blocking client.

struct Reply {
  bool closed = false;  // the server closed (EOF or reset) before our deadline
  bool reset = false;   // ... and the close was a reset, not an orderly FIN
  std::string raw;
  int status = 0;
  std::map<std::string, std::string> headers;  // names lowercased
  std::string body;
};

void split_reply(Reply& r) {
  const std::size_t end = r.raw.find("\r\n\r\n");
  if (r.raw.compare(0, 9, "HTTP/1.1 ") != 0 || end == std::string::npos) return;
  r.status = std::stoi(r.raw.substr(9, 3));
  std::size_t line = r.raw.find("\r\n") + 2;
  while (line < end) {
    const std::size_t eol = r.raw.find("\r\n", line);
    const std::string field = r.raw.substr(line, eol - line);
    const std::size_t colon = field.find(':');
    std::string name = field.substr(0, colon);
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    r.headers[name] = field.substr(field.find_first_not_of(' ', colon + 1));
    line = eol + 2;
  }
  r.body = r.raw.substr(end + 4);
}

class Client {
 public:
  explicit Client(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  }
  ~Client() { close_now(); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // False once the server has closed on us (EPIPE/ECONNRESET); the test decides if that is fine.
  bool send(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  void half_close() { ::shutdown(fd_, SHUT_WR); }

  // Everything until the server closes, or until `timeout` (then closed = false).
  Reply read_all(std::chrono::milliseconds timeout = 10s) {
    Reply r;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    char buf[65536];
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left <= 0ms) break;
      pollfd p{fd_, POLLIN, 0};
      const int ready = ::poll(&p, 1, static_cast<int>(left.count()));
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0) break;
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        r.closed = true;
        r.reset = n < 0;
        break;
      }
      r.raw.append(buf, static_cast<std::size_t>(n));
    }
    split_reply(r);
    return r;
  }

  // One complete response (head and Content-Length body), without waiting for the close.
  Reply read_response(std::chrono::milliseconds timeout = 10s) {
    Reply r;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    char buf[4096];
    while (std::chrono::steady_clock::now() < deadline) {
      const std::size_t end = r.raw.find("\r\n\r\n");
      if (end != std::string::npos) {
        split_reply(r);
        if (r.headers.count("content-length") &&
            r.body.size() >= std::stoul(r.headers["content-length"])) {
          return r;
        }
      }
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      r.raw.append(buf, static_cast<std::size_t>(n));
    }
    split_reply(r);
    return r;
  }

  void close_now() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

class LoopbackServer {
 public:
  explicit LoopbackServer(MetricsServerOptions options = {}) {
    registry
        .gauge("gw_device_up", "1 when the device answered its last poll.",
               {{"device", "meter-b1-01"}})
        .set(1);
    registry.counter("gw_events_committed_total", "Events committed.", {{"class", "access"}})
        .inc(12);
    registry.histogram("gw_poll_seconds", "Poll round trip.", {0.1, 1}).observe(0.05);
    // Refreshed at scrape time from a value the "owner" keeps, as the daemon will do.
    registry.on_collect([this] { registry.gauge("gw_buffer_pending", "Pending.").set(pending); });
    server = std::make_unique<MetricsServer>(io.get_executor(), registry, "127.0.0.1:0", options);
    const gw::Status started = server->start();
    INFO(started.message());
    REQUIRE(started.is_ok());
    port = server->port();
    REQUIRE(port != 0);
    core = std::thread([this] { io.run(); });
  }

  // Runs fn on the core thread and returns its result: the server and registry belong to it.
  template <typename Fn>
  auto on_core(Fn fn) {
    // Held by pointer: Asio treats a packaged_task itself as a completion token.
    auto task = std::make_shared<std::packaged_task<decltype(fn())()>>(std::move(fn));
    auto result = task->get_future();
    asio::post(io, [task] { (*task)(); });
    return result.get();
  }

  ~LoopbackServer() {
    on_core([this] {
      server.reset();
      return 0;
    });
    // No io.stop(): run() returns only once every handler the server left has completed, so a
    // leaked socket or timer shows up as a hung test rather than going unnoticed.
    work.reset();
    core.join();
  }

  std::string render() {
    return on_core([this] { return registry.render(); });
  }
  std::size_t connections() {
    return on_core([this] { return server->connections(); });
  }
  MetricsServer::Stats stats() {
    return on_core([this] { return server->stats(); });
  }
  // Polls until the server has seen `n` open connections (accept and close are asynchronous).
  bool wait_for_connections(std::size_t n, std::chrono::milliseconds timeout = 3s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (connections() == n) return true;
      std::this_thread::sleep_for(5ms);
    }
    return connections() == n;
  }

  Reply exchange(std::string_view request) {
    Client c(port);
    c.send(request);  // the server may close before all of it is sent: that is an answer too
    return c.read_all();
  }
  Reply get(std::string_view target) {
    return exchange("GET " + std::string(target) + " HTTP/1.1\r\nHost: localhost\r\n\r\n");
  }

  Registry registry;
  double pending = 3;
  asio::io_context io{1};
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
  std::unique_ptr<MetricsServer> server;
  uint16_t port = 0;
  std::thread core;
};

// A listener on an ephemeral loopback port, held by someone else.
class PortSquatter {
 public:
  PortSquatter() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(fd_, 1) == 0);
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port = ntohs(addr.sin_port);
  }
  ~PortSquatter() { ::close(fd_); }
  uint16_t port = 0;

 private:
  int fd_ = -1;
};

}  // namespace

// ================================================================================================
// Parser

TEST_CASE("parser: a Prometheus scrape request is good") {
  const RequestHead h = parse(kGoodCrlf);
  REQUIRE(h.state == ParseState::kGood);
  CHECK(h.method == "GET");
  CHECK(h.target == "/metrics");
  CHECK(h.version_minor == 1);
  CHECK(h.head_bytes == kGoodCrlf.size());
  CHECK_FALSE(h.content_length);
  CHECK_FALSE(h.transfer_encoding);
}

TEST_CASE("parser: bare LF line ends, HTTP/1.0 without Host, leading empty lines") {
  RequestHead h = parse(kGoodLf);
  REQUIRE(h.state == ParseState::kGood);
  CHECK(h.method == "HEAD");
  CHECK(h.target == "/");
  CHECK(h.version_minor == 0);
  CHECK(h.head_bytes == kGoodLf.size());

  h = parse("\r\n\nGET /metrics HTTP/1.1\r\nHost: a\r\n\r\n");
  REQUIRE(h.state == ParseState::kGood);
  CHECK(h.target == "/metrics");
}

TEST_CASE("parser: every truncation of a good request needs more") {
  for (std::string_view good : {kGoodCrlf, kGoodLf,
                                std::string_view("POST /x HTTP/1.1\r\nHost: h\r\n"
                                                 "Content-Length: 4\r\n\r\n")}) {
    for (std::size_t len = 0; len < good.size(); ++len) {
      INFO("prefix of " << len << " bytes: " << good.substr(0, len));
      CHECK(parse(good.substr(0, len)).state == ParseState::kNeedMore);
    }
    CHECK(parse(good).state == ParseState::kGood);
  }
}

TEST_CASE("parser: bytes after the head are body, not head") {
  const std::string request =
      "GET /metrics HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello\x01\x02 and junk";
  const RequestHead h = parse(request);
  REQUIRE(h.state == ParseState::kGood);
  CHECK(h.content_length == std::optional<uint64_t>(5));
  CHECK(request.substr(h.head_bytes, 5) == "hello");
}

TEST_CASE("parser: a bad method token is refused") {
  for (std::string_view bad : {"GE(T / HTTP/1.1\r\n", " GET / HTTP/1.1\r\n", "GET\t/ HTTP/1.1\r\n",
                               "G\x80T / HTTP/1.1\r\n", "GET{", "\x16\x03\x01\x02\x00\x01"}) {
    INFO(bad);
    const RequestHead h = parse(bad);
    CHECK(h.state == ParseState::kBad);
    CHECK(h.status == 400);
    CHECK_FALSE(h.reason.empty());
  }
}

TEST_CASE("parser: a TLS ClientHello is refused at its first byte, not after 8 KiB") {
  CHECK(parse("\x16").state == ParseState::kBad);
}

TEST_CASE("parser: a bad target is refused") {
  for (std::string_view bad : {"GET  / HTTP/1.1\r\n", "GET /a\x7f HTTP/1.1\r\n",
                               "GET /\xc3\xa4 HTTP/1.1\r\n", "GET /\r\n"}) {
    INFO(bad);
    CHECK(parse(bad).state == ParseState::kBad);
  }
}

TEST_CASE("parser: a bad version is refused, another major version is 505") {
  for (std::string_view bad :
       {"GET / HTTP/1.x\r\n", "GET / HTTX/1.1\r\n", "GET / http/1.1\r\n", "GET / HTTP/11.1\r\n",
        "GET / HTTP/1.1x\r\n", "GET / HTTP/1.1 \r\n", "GET / HTTP/1\r\n", "GET / HTTP/1.1\rX"}) {
    INFO(bad);
    const RequestHead h = parse(bad);
    CHECK(h.state == ParseState::kBad);
    CHECK(h.status == 400);
  }
  for (std::string_view other : {"GET / HTTP/2.0\r\n\r\n", "GET / HTTP/0.9\r\n\r\n"}) {
    INFO(other);
    const RequestHead h = parse(other);
    CHECK(h.state == ParseState::kBad);
    CHECK(h.status == 505);
  }
}

TEST_CASE("parser: malformed header lines are refused with a reason") {
  struct Case {
    std::string_view bytes;
    std::string_view reason;
  };
  const Case cases[] = {
      {"GET / HTTP/1.1\r\nHost h\r\n\r\n", "header line without ':'"},
      {"GET / HTTP/1.1\r\nHost\r\n\r\n", "header line without ':'"},
      {"GET / HTTP/1.1\r\nHost : h\r\n\r\n", "whitespace before ':' in a header line"},
      {"GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n", "folded header line (obs-fold)"},
      {"GET / HTTP/1.1\r\n: h\r\n\r\n", "empty header name"},
      {"GET / HTTP/1.1\r\nHo(st: h\r\n\r\n", "malformed header name"},
      {"GET / HTTP/1.1\r\nHost: a\x01z\r\n\r\n", "control character in a header value"},
      {"GET / HTTP/1.1\r\nHost: a\rz\r\n\r\n", "bare CR in a header value"},
      {"GET / HTTP/1.1\r\nHost: a\r\n\rX", "bare CR in the request head"},
      {"GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 request without a Host header"},
      {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "more than one Host header"},
      {"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n", "malformed Content-Length"},
      {"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", "malformed Content-Length"},
      {"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n",
       "malformed Content-Length"},
      {"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
       "conflicting Content-Length headers"},
      {"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
       "both Content-Length and Transfer-Encoding"},
  };
  for (const Case& c : cases) {
    INFO(c.bytes);
    const RequestHead h = parse(c.bytes);
    CHECK(h.state == ParseState::kBad);
    CHECK(h.status == 400);
    CHECK(h.reason == c.reason);
  }
  // Repeating the same length is allowed, and OWS around values is not part of them.
  const RequestHead same =
      parse("GET / HTTP/1.1\r\nhost:a\r\ncontent-length:  7 \r\nContent-Length: 7\r\n\r\n");
  REQUIRE(same.state == ParseState::kGood);
  CHECK(same.content_length == std::optional<uint64_t>(7));
}

TEST_CASE("parser: the head is capped at 8 KiB") {
  using gw::metrics::kMaxHeadBytes;
  // The boundary: a head of exactly the limit is fine, one byte more is not.
  const std::string at_limit = head_with_header_of(kMaxHeadBytes - head_with_header_of(0).size());
  REQUIRE(at_limit.size() == kMaxHeadBytes);
  CHECK(parse(at_limit).state == ParseState::kGood);
  const std::string over = head_with_header_of(kMaxHeadBytes - head_with_header_of(0).size() + 1);
  RequestHead h = parse(over);
  CHECK(h.state == ParseState::kBad);
  CHECK(h.status == 431);
  // Too long while still in the request line: the target is the problem.
  h = parse("GET /" + std::string(kMaxHeadBytes, 'a'));
  CHECK(h.state == ParseState::kBad);
  CHECK(h.status == 414);
  // A good head followed by a big body is fine.
  h = parse(std::string(kGoodCrlf) + std::string(3 * kMaxHeadBytes, 'b'));
  CHECK(h.state == ParseState::kGood);
}

TEST_CASE("parser: refusal is final and acceptance is stable as bytes arrive") {
  // For any input s: if s is bad, so is every extension; if s is good, every extension is good
  // with the same head. Random mutations of good requests exercise both sides.
  const std::string_view seeds[] = {kGoodCrlf, kGoodLf,
                                    "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"};
  const std::string_view pieces[] = {
      " ",    "\r\n", "\n",       "\r",         ":", "\t", std::string_view("\0", 1),
      "\xff", "x",    "HTTP/1.1", "Host: y\r\n"};
  std::mt19937 rng(1234);
  int outcomes[3] = {0, 0, 0};
  for (int round = 0; round < 20000; ++round) {
    std::string s(seeds[rng() % std::size(seeds)]);
    for (unsigned m = rng() % 3; m > 0; --m) {
      const std::size_t at = rng() % (s.size() + 1);
      switch (rng() % 3) {
        case 0:
          s.insert(at, pieces[rng() % std::size(pieces)]);
          break;
        case 1:
          if (at < s.size()) s.erase(at, 1 + rng() % 4);
          break;
        default:
          if (at < s.size()) s[at] = static_cast<char>(rng());
          break;
      }
    }
    if (rng() % 2) s.resize(rng() % (s.size() + 1));
    const RequestHead h = parse(s);
    ++outcomes[static_cast<int>(h.state)];
    const std::string longer = s + std::string(pieces[rng() % std::size(pieces)]);
    const RequestHead l = parse(longer);
    INFO(s);
    if (h.state == ParseState::kBad) {
      CHECK(l.state == ParseState::kBad);
      CHECK(l.status == h.status);
    } else if (h.state == ParseState::kGood) {
      CHECK(l.state == ParseState::kGood);
      CHECK(l.head_bytes == h.head_bytes);
      CHECK(h.head_bytes <= s.size());
    }
  }
  // The generator must reach every outcome often, or the property above proves little.
  for (int count : outcomes) CHECK(count > 1000);
}

TEST_CASE("request_path drops the query and absolute-form scheme and authority") {
  using gw::metrics::request_path;
  CHECK(request_path("/metrics") == "/metrics");
  CHECK(request_path("/metrics?name[]=up") == "/metrics");
  CHECK(request_path("http://gw:9108/metrics") == "/metrics");
  CHECK(request_path("HTTP://gw:9108") == "/");
  CHECK(request_path("*") == "*");
}

// ================================================================================================
// Server, over real loopback sockets

TEST_CASE("server: GET /metrics answers render() as exposition text") {
  LoopbackServer s;
  const Reply r = s.get("/metrics");
  CHECK(r.closed);  // Connection: close, and the server means it
  REQUIRE(r.status == 200);
  CHECK(r.headers.at("content-type") == "text/plain; version=0.0.4; charset=utf-8");
  CHECK(r.headers.at("connection") == "close");
  CHECK(r.headers.at("content-length") == std::to_string(r.body.size()));
  CHECK(r.body == s.render());
  CHECK(r.body.find("gw_device_up{device=\"meter-b1-01\"} 1\n") != std::string::npos);
  // The collect callback ran for the scrape: the owner's latest value is what went out.
  s.on_core([&s] { return s.pending = 42; });
  CHECK(s.get("/metrics").body.find("gw_buffer_pending 42\n") != std::string::npos);
}

TEST_CASE("server: HEAD gets the headers without the body, / points at /metrics") {
  LoopbackServer s;
  Reply r = s.exchange("HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  REQUIRE(r.status == 200);
  CHECK(r.body.empty());
  CHECK(r.headers.at("content-length") == std::to_string(s.render().size()));

  r = s.get("/");
  REQUIRE(r.status == 200);
  CHECK(r.headers.at("content-type") == "text/plain; charset=utf-8");
  CHECK(r.body.find("/metrics") != std::string::npos);

  r = s.exchange("HEAD /nope HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(r.status == 404);
  CHECK(r.body.empty());
  CHECK(r.headers.at("content-length") != "0");  // what a GET would have carried

  CHECK(s.get("/metrics?x=1").status == 200);
  CHECK(s.get("http://gw.example:9108/metrics").status == 200);
  CHECK(s.exchange("GET /metrics HTTP/1.0\r\n\r\n").status == 200);
}

TEST_CASE("server: unknown paths are 404, other methods 405 with Allow") {
  LoopbackServer s;
  CHECK(s.get("/nope").status == 404);
  CHECK(s.get("/metrics/").status == 404);
  CHECK(s.get("/metricsx").status == 404);
  for (std::string_view method : {"POST", "PUT", "DELETE", "OPTIONS", "get", "BREW"}) {
    INFO(method);
    Reply r = s.exchange(std::string(method) + " /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(r.status == 405);
    CHECK(r.headers["allow"] == "GET, HEAD");
  }
}

TEST_CASE("server: malformed requests get 400 with a one-line reason") {
  LoopbackServer s;
  Reply r = s.exchange("GET / HTTP/1.1\r\nHost: x\r\nBroken header\r\n\r\n");
  CHECK(r.status == 400);
  CHECK(r.body == "header line without ':'\n");
  CHECK(r.closed);

  r = s.exchange(std::string("\x00\x01\x02garbage\r\n\r\n", 14));
  CHECK(r.status == 400);
  CHECK(r.body.find('\n') == r.body.size() - 1);

  CHECK(s.exchange("GET / HTTP/2.0\r\n\r\n").status == 505);
}

TEST_CASE("server: a 10 KiB header gets 431") {
  LoopbackServer s;
  const Reply r = s.exchange(head_with_header_of(10 * 1024));
  CHECK(r.status == 431);
  CHECK(r.closed);
}

TEST_CASE("server: a small body is ignored, a large one refused with 413") {
  LoopbackServer s;
  Reply r = s.exchange("GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
  CHECK(r.status == 200);
  r = s.exchange("GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n" +
                 std::string(100 * 1024, 'z'));
  CHECK(r.status == 413);
}

TEST_CASE("server: a body that arrives after the answer is drained, and the close is clean") {
  // Closing with unread input makes the kernel send a reset, which can destroy the response
  // before a client reads it; the server reads and discards instead, then closes in order.
  LoopbackServer s;
  Client c(s.port);
  c.send("GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n");
  const Reply answer = c.read_response();
  REQUIRE(answer.status == 200);
  CHECK(c.send(std::string(4000, 'b')));
  // Had the server closed already, this pause lets its reset arrive and the next send fail.
  std::this_thread::sleep_for(100ms);
  CHECK(c.send(std::string(1000, 'b')));
  c.half_close();
  const Reply after = c.read_all(3s);
  CHECK(after.closed);
  CHECK_FALSE(after.reset);
  CHECK(after.raw.empty());
}

TEST_CASE("server: a client that half-closes mid-head is told so") {
  LoopbackServer s;
  Client c(s.port);
  c.send("GET /metrics HTTP/1.1\r\nHost: x\r\n");
  c.half_close();
  const Reply r = c.read_all();
  CHECK(r.status == 400);
  CHECK(r.body == "connection closed before the end of the request head\n");
}

TEST_CASE("server: silent and trickling clients are closed at the deadline") {
  MetricsServerOptions options;
  options.timeout = 300ms;
  LoopbackServer s(options);

  const auto started = std::chrono::steady_clock::now();
  Client silent(s.port);
  Reply r = silent.read_all(5s);
  const auto waited = std::chrono::steady_clock::now() - started;
  CHECK(r.closed);
  CHECK(r.raw.empty());
  CHECK(waited >= 250ms);
  CHECK(waited < 2s);

  // Slowloris proper: a byte every 50 ms keeps the line busy but does not move the deadline.
  const auto trickle_start = std::chrono::steady_clock::now();
  Client trickler(s.port);
  const std::string request = head_with_header_of(200);
  bool cut_off = false;
  for (char c : request) {
    if (!trickler.send(std::string_view(&c, 1))) {
      cut_off = true;
      break;
    }
    std::this_thread::sleep_for(50ms);
    if (std::chrono::steady_clock::now() - trickle_start > 3s) break;
  }
  r = trickler.read_all(1s);
  CHECK((cut_off || r.closed));
  CHECK(r.status == 0);  // never answered
  CHECK(std::chrono::steady_clock::now() - trickle_start < 2s);
  CHECK(s.stats().timed_out == 2);
  CHECK(s.wait_for_connections(0));
  CHECK(s.get("/metrics").status == 200);
}

TEST_CASE("server: the default idle timeout closes a silent client after about 5 s", "[.slow]") {
  LoopbackServer s;
  const auto started = std::chrono::steady_clock::now();
  Client silent(s.port);
  const Reply r = silent.read_all(8s);
  const auto waited = std::chrono::steady_clock::now() - started;
  CHECK(r.closed);
  CHECK(waited >= 4900ms);
  CHECK(waited < 5500ms);
}

TEST_CASE("server: at most 32 connections; more are closed at once") {
  MetricsServerOptions options;
  options.timeout = 20s;  // the 32 idle clients must outlive the test's checks
  REQUIRE(options.max_connections == 32);
  LoopbackServer s(options);
  std::vector<std::unique_ptr<Client>> idle;
  for (int i = 0; i < 32; ++i) idle.push_back(std::make_unique<Client>(s.port));
  REQUIRE(s.wait_for_connections(32));

  const auto started = std::chrono::steady_clock::now();
  Client extra(s.port);
  const Reply refused = extra.read_all(3s);
  CHECK(refused.closed);
  CHECK(refused.raw.empty());
  CHECK(std::chrono::steady_clock::now() - started < 1s);
  CHECK(s.stats().refused == 1);
  CHECK(s.connections() == 32);

  // A freed slot is usable again.
  idle.front()->close_now();
  REQUIRE(s.wait_for_connections(31));
  const Reply served = s.get("/metrics");
  CHECK(served.status == 200);

  // Closing the rest frees everything.
  idle.clear();
  CHECK(s.wait_for_connections(0));
}

TEST_CASE("server: keeps serving after every kind of bad request") {
  LoopbackServer s;
  const std::string bad_requests[] = {
      "GARBAGE\x01\r\n\r\n",
      "GET / HTTP/1.1\r\nno colon\r\n\r\n",
      "GET / HTTP/9.9\r\n\r\n",
      "GET /" + std::string(9000, 'a') + " HTTP/1.1\r\n\r\n",
      head_with_header_of(10 * 1024),
      "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n",
      "DELETE /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
      "GET /missing HTTP/1.1\r\nHost: x\r\n\r\n",
      std::string("\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", 11),
      std::string(20000, '\0'),
      "GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
          std::string(200 * 1024, 'c'),
  };
  for (const std::string& bad : bad_requests) {
    INFO(bad.substr(0, 40));
    const Reply r = s.exchange(bad);
    CHECK(r.closed);
    CHECK((r.status >= 400 || bad.find("chunked") != std::string::npos));
    const Reply good = s.get("/metrics");
    CHECK(good.status == 200);
    CHECK(good.body == s.render());
  }
  CHECK(s.wait_for_connections(0));
  CHECK(s.stats().bad_requests >= 7);
}

TEST_CASE("server: random bytes never break it") {
  LoopbackServer s;
  std::mt19937 rng(99);
  for (int i = 0; i < 200; ++i) {
    std::string junk(1 + rng() % 3000, '\0');
    for (char& c : junk) c = static_cast<char>(rng());
    if (i % 3 == 0) junk = "GET /metrics HTTP/1.1\r\n" + junk;  // get past the request line
    Client c(s.port);
    c.send(junk);
    c.half_close();
    const Reply r = c.read_all(3s);
    CHECK(r.closed);
  }
  CHECK(s.get("/metrics").status == 200);
  CHECK(s.wait_for_connections(0));
}

TEST_CASE("server: stop closes open connections and the listener") {
  MetricsServerOptions options;
  options.timeout = 20s;
  LoopbackServer s(options);
  Client waiting(s.port);
  REQUIRE(s.wait_for_connections(1));
  s.on_core([&s] {
    s.server->stop();
    return 0;
  });
  CHECK(waiting.read_all(2s).closed);
  CHECK(s.connections() == 0);
  // The port no longer accepts.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(s.port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0);
  ::close(fd);
}

TEST_CASE("server: start reports an address it cannot use as unavailable") {
  asio::io_context io;
  Registry registry;
  PortSquatter squatter;
  const std::string taken = "127.0.0.1:" + std::to_string(squatter.port);
  MetricsServer busy(io.get_executor(), registry, taken);
  gw::Status st = busy.start();
  CHECK(st.code() == gw::Status::Code::kUnavailable);
  CHECK(st.message().find(taken) != std::string::npos);
  CHECK(st.message().find("in use") != std::string::npos);

  MetricsServer foreign(io.get_executor(), registry, "192.0.2.1:0");  // TEST-NET, not ours
  st = foreign.start();
  CHECK(st.code() == gw::Status::Code::kUnavailable);
  CHECK(st.message().find("192.0.2.1:0") != std::string::npos);

  MetricsServer nonsense(io.get_executor(), registry, "no-port-here");
  CHECK(nonsense.start().code() == gw::Status::Code::kInvalidArgument);

  MetricsServer by_name(io.get_executor(), registry, "localhost:0");
  CHECK(by_name.start().is_ok());
  CHECK(by_name.port() != 0);
}
