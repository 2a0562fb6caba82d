// SdNotifier against a real AF_UNIX datagram socket standing in for systemd's notify socket.
#include "gateway/sd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

namespace {

using gw::sd::NotifyEnv;
using gw::sd::SdNotifier;

// A bound datagram socket, as systemd has: a path, or an abstract name when path starts with '@'.
class FakeSystemd {
 public:
  explicit FakeSystemd(std::string name) : name_(std::move(name)) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, name_.data(), name_.size());
    if (name_[0] == '@')
      addr.sun_path[0] = '\0';
    else
      ::unlink(name_.c_str());
    const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name_.size());
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) == 0);
    timeval tv{1, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~FakeSystemd() {
    ::close(fd_);
    if (name_[0] != '@') ::unlink(name_.c_str());
  }
  // The next datagram, or "" after a second without one.
  std::string receive() {
    char buf[4096];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
  }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  int fd_ = -1;
};

std::string temp_socket_path() {
  return (std::filesystem::temp_directory_path() /
          ("gw-notify-" + std::to_string(::getpid()) + ".sock"))
      .string();
}

struct EnvGuard {
  EnvGuard() {
    for (const char* v : {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"}) ::unsetenv(v);
  }
  ~EnvGuard() {
    for (const char* v : {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"}) ::unsetenv(v);
  }
};

}  // namespace

TEST_CASE("without NOTIFY_SOCKET every notification is a quiet no-op") {
  EnvGuard env;
  ::setenv("WATCHDOG_USEC", "1000000", 1);  // ignored without a socket to send to
  SdNotifier n(gw::sd::read_notify_env(::getpid()));
  CHECK_FALSE(n.enabled());
  CHECK_FALSE(n.watchdog_interval());
  CHECK(n.ready("up").is_ok());
  CHECK(n.watchdog().is_ok());
}

TEST_CASE("READY, WATCHDOG, RELOADING and STOPPING reach a socket given by path") {
  EnvGuard env;
  FakeSystemd systemd(temp_socket_path());
  ::setenv("NOTIFY_SOCKET", systemd.name().c_str(), 1);
  ::setenv("WATCHDOG_USEC", "3000000", 1);
  ::setenv("WATCHDOG_PID", std::to_string(::getpid()).c_str(), 1);
  SdNotifier n(gw::sd::read_notify_env(::getpid()));
  REQUIRE(n.enabled());
  REQUIRE(n.watchdog_interval());
  CHECK(*n.watchdog_interval() == std::chrono::milliseconds(1500));

  REQUIRE(n.ready("gateway lib-gw-01, 3 devices").is_ok());
  CHECK(systemd.receive() == "READY=1\nSTATUS=gateway lib-gw-01, 3 devices");
  REQUIRE(n.watchdog().is_ok());
  CHECK(systemd.receive() == "WATCHDOG=1");
  REQUIRE(n.reloading().is_ok());
  const std::string reloading = systemd.receive();
  CHECK(reloading.rfind("RELOADING=1\n", 0) == 0);
  CHECK(reloading.find("\nMONOTONIC_USEC=") != std::string::npos);
  REQUIRE(n.stopping().is_ok());
  CHECK(systemd.receive() == "STOPPING=1\nSTATUS=stopping");
}

TEST_CASE("an abstract socket name (@...) is used as such") {
  EnvGuard env;
  FakeSystemd systemd("@gw-notify-test-" + std::to_string(::getpid()));
  ::setenv("NOTIFY_SOCKET", systemd.name().c_str(), 1);
  SdNotifier n(gw::sd::read_notify_env(::getpid()));
  REQUIRE(n.ready("x").is_ok());
  CHECK(systemd.receive() == "READY=1\nSTATUS=x");
  CHECK_FALSE(n.watchdog_interval());  // no WATCHDOG_USEC: no keep-alives expected
}

TEST_CASE("a watchdog meant for another process is not ours") {
  EnvGuard env;
  ::setenv("NOTIFY_SOCKET", "/run/systemd/notify", 1);
  ::setenv("WATCHDOG_USEC", "1000000", 1);
  ::setenv("WATCHDOG_PID", "1", 1);
  const NotifyEnv e = gw::sd::read_notify_env(4242);
  CHECK_FALSE(e.watchdog);
  CHECK(e.problem.empty());
}

TEST_CASE("bad values are ignored with a reason") {
  EnvGuard env;
  SECTION("a relative socket path") {
    ::setenv("NOTIFY_SOCKET", "notify.sock", 1);
    const NotifyEnv e = gw::sd::read_notify_env(::getpid());
    CHECK(e.socket_path.empty());
    CHECK(e.problem.find("NOTIFY_SOCKET 'notify.sock'") != std::string::npos);
  }
  SECTION("a watchdog interval that is not a number") {
    ::setenv("NOTIFY_SOCKET", "/run/systemd/notify", 1);
    ::setenv("WATCHDOG_USEC", "30s", 1);
    const NotifyEnv e = gw::sd::read_notify_env(::getpid());
    CHECK_FALSE(e.watchdog);
    CHECK(e.problem.find("WATCHDOG_USEC '30s'") != std::string::npos);
  }
  SECTION("a zero watchdog interval") {
    ::setenv("NOTIFY_SOCKET", "/run/systemd/notify", 1);
    ::setenv("WATCHDOG_USEC", "0", 1);
    CHECK_FALSE(gw::sd::read_notify_env(::getpid()).watchdog);
  }
}

TEST_CASE("a socket nobody listens on is an error value, not a crash") {
  EnvGuard env;
  const std::string path = temp_socket_path() + ".gone";
  ::setenv("NOTIFY_SOCKET", path.c_str(), 1);
  SdNotifier n(gw::sd::read_notify_env(::getpid()));
  const gw::Status s = n.watchdog();
  CHECK_FALSE(s.is_ok());
  CHECK(s.message().find(path) != std::string::npos);
}
