// SdNotifier tells systemd what the daemon is doing, in the notification protocol of
// sd_notify(3): one datagram "KEY=VALUE\n..." per state change to the AF_UNIX socket named by
// $NOTIFY_SOCKET ("/path" or "@abstract"). Spoken directly (a dozen lines) rather than through
// libsystemd, so the daemon has no systemd library dependency and runs unchanged without systemd:
// with no $NOTIFY_SOCKET every call is a no-op.
//
// The watchdog: with WatchdogSec= set, systemd passes $WATCHDOG_USEC (and $WATCHDOG_PID) and
// restarts the service when no "WATCHDOG=1" arrives within that interval. watchdog_interval() is
// half of it, the cadence sd_watchdog_enabled(3) recommends; the core loop sends the keep-alives,
// so a frozen loop stops them.
//
// Sends never block (MSG_DONTWAIT) and never raise SIGPIPE. Not thread-safe: core thread only.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "protocols/status.h"

namespace gw::sd {

// What the environment said. Kept apart from the socket so tests can build one directly.
struct NotifyEnv {
  std::string socket_path;                            // empty: not run by systemd (or disabled)
  std::optional<std::chrono::microseconds> watchdog;  // WATCHDOG_USEC, when meant for us
  std::string problem;  // why a variable was ignored (bad value), for one log line at start
};

// Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID. A WATCHDOG_PID naming another process
// means the watchdog is not ours (systemd sets it for the main PID only).
NotifyEnv read_notify_env(long own_pid);

class SdNotifier {
 public:
  SdNotifier() = default;
  explicit SdNotifier(NotifyEnv env);
  ~SdNotifier();
  SdNotifier(const SdNotifier&) = delete;
  SdNotifier& operator=(const SdNotifier&) = delete;

  bool enabled() const { return !env_.socket_path.empty(); }
  // Why an environment variable was ignored; empty when all was well.
  const std::string& env_problem() const { return env_.problem; }
  // Half of WATCHDOG_USEC; nullopt when systemd expects no keep-alives.
  std::optional<std::chrono::microseconds> watchdog_interval() const;

  // Sends `state` ("READY=1", "WATCHDOG=1", "STOPPING=1", "STATUS=...", several joined by '\n').
  // OK without doing anything when not enabled.
  Status notify(std::string_view state);

  // The messages the daemon sends, in one place.
  Status ready(std::string_view status) { return notify("READY=1\nSTATUS=" + std::string(status)); }
  Status watchdog() { return notify("WATCHDOG=1"); }
  Status stopping() { return notify("STOPPING=1\nSTATUS=stopping"); }
  // RELOADING=1 carries the CLOCK_MONOTONIC time systemd 253+ wants with it (harmless before).
  Status reloading();

 private:
  NotifyEnv env_;
  int fd_ = -1;
};

}  // namespace gw::sd
