#include "tools/gatewayctl/client.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <catch2/catch.hpp>

#include "tests/tools/gatewayctl/fake_daemon.h"

namespace gw::ctl {
namespace {

using testing::FakeDaemon;

TEST_CASE("LineReader splits lines across reads and drops a CR") {
  LineReader r(100);
  r.feed("{\"a\":1}\n{\"b\"");
  CHECK(r.next() == "{\"a\":1}");
  CHECK_FALSE(r.next());
  r.feed(":2}\r\n\n");
  CHECK(r.next() == "{\"b\":2}");
  CHECK(r.next() == "");
  CHECK_FALSE(r.next());
  CHECK_FALSE(r.overflow());
}

TEST_CASE("LineReader refuses a line longer than its limit, with or without its newline") {
  LineReader a(8);
  a.feed("123456789");
  CHECK_FALSE(a.next());
  CHECK(a.overflow());
  LineReader b(8);
  b.feed("123456789\nok\n");
  CHECK_FALSE(b.next());
  CHECK(b.overflow());
}

TEST_CASE("connect failures say where and what to do") {
  CHECK(connect_error_message("/run/gatewayd/gatewayd.sock", ENOENT) ==
        "cannot connect to gatewayd at /run/gatewayd/gatewayd.sock: no such socket - is gatewayd "
        "running? (systemctl status gatewayd); if it uses another socket, give --socket PATH or "
        "--config FILE");
  CHECK(connect_error_message("/s", EACCES) ==
        "cannot connect to gatewayd at /s: permission denied - add yourself to the gatewayd group "
        "(sudo usermod -aG gatewayd $USER, then log in again) or run gatewayctl with sudo");
  CHECK_THAT(connect_error_message("/s", ECONNREFUSED),
             Catch::Contains("connection refused - the socket exists but nobody listens"));
}

TEST_CASE("connect to a path with no socket") {
  testing::TempDir dir;
  auto c = ControlClient::connect(dir.file("nope.sock"));
  REQUIRE_FALSE(c);
  CHECK(c.status().code() == Status::Code::kUnavailable);
  CHECK_THAT(c.status().message(), Catch::Contains("no such socket"));
}

TEST_CASE("connect to a socket nobody listens on") {
  testing::TempDir dir;
  const std::string path = dir.file("stale.sock");
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  ::close(fd);  // the file stays, as after a daemon crash
  auto c = ControlClient::connect(path);
  REQUIRE_FALSE(c);
  CHECK_THAT(c.status().message(), Catch::Contains("connection refused"));
}

TEST_CASE("a path too long for a Unix socket is a bad argument") {
  auto c = ControlClient::connect("/tmp/" + std::string(200, 'x'));
  REQUIRE_FALSE(c);
  CHECK(c.status().code() == Status::Code::kInvalidArgument);
}

TEST_CASE("requests carry v, id, cmd and args; answers match by id") {
  FakeDaemon d;
  d.answer("hello", Json{{"protocol", 1},
                         {"gateway_id", "lib-gw-01"},
                         {"version", "0.1.0"},
                         {"commands", Json::array({"status"})}});
  d.fail("devices", "not_found", "no device 'x'");
  auto c = ControlClient::connect(d.socket_path());
  REQUIRE(c);
  Result<Reply> hello = c.value()->call("hello", Json::object(), 2000);
  REQUIRE(hello);
  CHECK(hello->ok);
  CHECK(get_string(hello->result, "gateway_id") == "lib-gw-01");
  // A second request on the same connection.
  Result<Reply> dev = c.value()->call("devices", Json{{"device", "x"}}, 2000);
  REQUIRE(dev);
  CHECK_FALSE(dev->ok);
  CHECK(dev->code == "not_found");
  CHECK(dev->message == "no device 'x'");

  const std::vector<Json> seen = d.requests();
  REQUIRE(seen.size() == 2);
  CHECK(seen[0].dump() == R"({"v":1,"id":1,"cmd":"hello","args":{}})");
  CHECK(seen[1].dump() == R"({"v":1,"id":2,"cmd":"devices","args":{"device":"x"}})");
}

TEST_CASE("a stuck daemon times out, a dying one is reported, garbage is refused") {
  FakeDaemon d;
  d.on("status", {.lines = {}, .close_after = false, .silent = true});
  d.on("reload", {.lines = {}, .close_after = true});
  d.on("devices", {.lines = {"HTTP/1.1 400 Bad Request"}});
  {
    auto c = ControlClient::connect(d.socket_path());
    REQUIRE(c);
    Result<Reply> r = c.value()->call("status", Json::object(), 100);
    REQUIRE_FALSE(r);
    CHECK(r.status().code() == Status::Code::kTimeout);
  }
  {
    auto c = ControlClient::connect(d.socket_path());
    REQUIRE(c);
    Result<Reply> r = c.value()->call("reload", Json::object(), 2000);
    REQUIRE_FALSE(r);
    CHECK(r.status().code() == Status::Code::kUnavailable);
    CHECK_THAT(r.status().message(), Catch::Contains("closed the connection without answering"));
  }
  {
    auto c = ControlClient::connect(d.socket_path());
    REQUIRE(c);
    Result<Reply> r = c.value()->call("devices", Json::object(), 2000);
    REQUIRE_FALSE(r);
    CHECK(r.status().code() == Status::Code::kProtocol);
    CHECK_THAT(r.status().message(),
               Catch::Contains("does not speak gatewayd's control protocol (sent 'HTTP/1.1 400"));
  }
}

TEST_CASE("stream items arrive one by one after the streaming answer") {
  FakeDaemon d;
  d.on("tail", {.lines = {R"({"v":1,"id":@ID@,"ok":true,"result":{"streaming":true}})",
                          R"({"v":1,"id":@ID@,"item":{"event":{"seq":"1"}}})",
                          R"({"v":1,"id":@ID@,"end":true,"reason":"gatewayd is stopping"})"}});
  auto c = ControlClient::connect(d.socket_path());
  REQUIRE(c);
  Result<Reply> r = c.value()->call("tail", Json::object(), 2000);
  REQUIRE(r);
  CHECK(get_bool(r->result, "streaming"));
  Incoming item = c.value()->next(2000);
  REQUIRE(item.kind == Incoming::Kind::kMessage);
  CHECK(get_string(field(field(item.message, "item"), "event"), "seq") == "1");
  Incoming end = c.value()->next(2000);
  REQUIRE(end.kind == Incoming::Kind::kMessage);
  CHECK(get_bool(end.message, "end"));
}

TEST_CASE("an interrupt descriptor ends a wait") {
  FakeDaemon d;
  d.on("tail", {.lines = {R"({"v":1,"id":@ID@,"ok":true,"result":{"streaming":true}})"}});
  auto c = ControlClient::connect(d.socket_path());
  REQUIRE(c);
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  c.value()->set_interrupt_fd(fds[0]);
  REQUIRE(c.value()->call("tail", Json::object(), 2000));
  REQUIRE(::write(fds[1], "x", 1) == 1);
  CHECK(c.value()->next(-1).kind == Incoming::Kind::kInterrupted);
  ::close(fds[0]);
  ::close(fds[1]);
}

}  // namespace
}  // namespace gw::ctl
