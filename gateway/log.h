// Logging to stderr in a form journald keeps well: under systemd (JOURNAL_STREAM is set) each
// line starts with a "<N>" syslog priority that journald turns into the entry's priority and
// strips; on a terminal each line starts with a UTC timestamp and the level instead. The rest of
// the line is "component: message key=value ...", one event per line. Thread-safe (one write(2)
// per line). Never pass a secret or a raw card number.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <vector>
#include <sstream>
#include <string>
#include <string_view>

namespace gw::log {

enum class Level { kError = 3, kWarning = 4, kNotice = 5, kInfo = 6, kDebug = 7 };

void set_min_level(Level level);
// Sees every line written at warning level or worse (for gatewayctl status). Thread-safe.
void set_observer(std::function<void(Level, std::string_view component, std::string_view message)>);
bool enabled(Level level);
void write(Level level, std::string_view component, std::string_view message);

template <typename... Parts>
void emit(Level level, std::string_view component, const Parts&... parts) {
  if (!enabled(level)) return;
  std::ostringstream out;
  (out << ... << parts);
  write(level, component, out.str());
}

// LogLimiter keeps a flood (a device sending garbage ten times a second) to one line per key per
// interval: allow() says whether this line may go out and how many like it were held back since
// the last one; take_suppressed() hands over the counts of keys that went quiet, for a periodic
// summary. Core thread only.
class LogLimiter {
 public:
  explicit LogLimiter(std::chrono::milliseconds interval = std::chrono::seconds(1))
      : interval_(interval) {}
  bool allow(const std::string& key, uint64_t& suppressed_before);
  std::vector<std::pair<std::string, uint64_t>> take_suppressed();

 private:
  struct Entry {
    std::chrono::steady_clock::time_point last{};
    uint64_t suppressed = 0;
  };
  std::chrono::milliseconds interval_;
  std::map<std::string, Entry> entries_;
};

template <typename... P> void error(std::string_view c, const P&... p) { emit(Level::kError, c, p...); }
template <typename... P> void warn(std::string_view c, const P&... p) { emit(Level::kWarning, c, p...); }
template <typename... P> void notice(std::string_view c, const P&... p) { emit(Level::kNotice, c, p...); }
template <typename... P> void info(std::string_view c, const P&... p) { emit(Level::kInfo, c, p...); }
template <typename... P> void debug(std::string_view c, const P&... p) { emit(Level::kDebug, c, p...); }

}  // namespace gw::log
