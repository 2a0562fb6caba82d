#include "gateway/sd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace gw::sd {

namespace {

std::optional<uint64_t> parse_u64(std::string_view text) {
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return v;
}

}  // namespace

NotifyEnv read_notify_env(long own_pid) {
  NotifyEnv env;
  const char* socket = std::getenv("NOTIFY_SOCKET");
  if (socket && *socket) {
    const std::string_view s(socket);
    // Only what systemd hands out: an absolute path or an abstract name; the path must fit.
    if ((s.front() != '/' && s.front() != '@') || s.size() >= sizeof(sockaddr_un{}.sun_path)) {
      env.problem = "NOTIFY_SOCKET '" + std::string(s) + "' is not an absolute path or @name";
    } else {
      env.socket_path = std::string(s);
    }
  }
  const char* usec = std::getenv("WATCHDOG_USEC");
  if (usec && *usec && !env.socket_path.empty()) {
    const auto value = parse_u64(usec);
    const char* pid = std::getenv("WATCHDOG_PID");
    const auto for_pid = pid && *pid ? parse_u64(pid) : std::optional<uint64_t>();
    if (!value || *value == 0) {
      env.problem = "WATCHDOG_USEC '" + std::string(usec) + "' is not a positive number";
    } else if (pid && *pid && !for_pid) {
      env.problem = "WATCHDOG_PID '" + std::string(pid) + "' is not a number";
    } else if (!for_pid || *for_pid == static_cast<uint64_t>(own_pid)) {
      env.watchdog = std::chrono::microseconds(static_cast<int64_t>(*value));
    }
  }
  return env;
}

SdNotifier::SdNotifier(NotifyEnv env) : env_(std::move(env)) {
  if (!enabled()) return;
  fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
}

SdNotifier::~SdNotifier() {
  if (fd_ >= 0) ::close(fd_);
}

std::optional<std::chrono::microseconds> SdNotifier::watchdog_interval() const {
  if (!enabled() || !env_.watchdog) return std::nullopt;
  return std::max(std::chrono::microseconds(1000), *env_.watchdog / 2);
}

Status SdNotifier::notify(std::string_view state) {
  if (!enabled()) return Status::ok();
  if (fd_ < 0) return Status::io_error(std::string("notify socket: ") + std::strerror(errno));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, env_.socket_path.data(), env_.socket_path.size());
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace
  const auto len =
      static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + env_.socket_path.size());
  const ssize_t sent = ::sendto(fd_, state.data(), state.size(), MSG_DONTWAIT | MSG_NOSIGNAL,
                                reinterpret_cast<const sockaddr*>(&addr), len);
  if (sent < 0) {
    return Status::io_error("notify " + env_.socket_path + ": " + std::strerror(errno));
  }
  return Status::ok();
}

Status SdNotifier::reloading() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  const uint64_t usec = uint64_t(ts.tv_sec) * 1000000 + uint64_t(ts.tv_nsec) / 1000;
  return notify("RELOADING=1\nSTATUS=reloading\nMONOTONIC_USEC=" + std::to_string(usec));
}

}  // namespace gw::sd
