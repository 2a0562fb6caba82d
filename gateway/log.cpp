#include "gateway/log.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <mutex>

namespace gw::log {
namespace {

std::atomic<int> g_min_level{static_cast<int>(Level::kInfo)};
const bool g_journal = std::getenv("JOURNAL_STREAM") != nullptr;
std::mutex g_observer_mu;
std::function<void(Level, std::string_view, std::string_view)> g_observer;

std::string_view level_name(Level l) {
  switch (l) {
    case Level::kError: return "ERROR";
    case Level::kWarning: return "WARN";
    case Level::kNotice: return "NOTICE";
    case Level::kInfo: return "INFO";
    case Level::kDebug: return "DEBUG";
  }
  return "?";
}

}  // namespace

void set_min_level(Level level) { g_min_level = static_cast<int>(level); }

void set_observer(std::function<void(Level, std::string_view, std::string_view)> observer) {
  std::lock_guard<std::mutex> g(g_observer_mu);
  g_observer = std::move(observer);
}
bool enabled(Level level) { return static_cast<int>(level) <= g_min_level.load(); }

void write(Level level, std::string_view component, std::string_view message) {
  std::string line;
  line.reserve(message.size() + component.size() + 48);
  if (g_journal) {
    line += '<';
    line += static_cast<char>('0' + static_cast<int>(level));
    line += '>';
  } else {
    const auto now = std::chrono::system_clock::now();
    const std::time_t secs = std::chrono::system_clock::to_time_t(now);
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        now.time_since_epoch()).count() % 1000;
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char stamp[64];
    std::snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, int(ms));
    line += stamp;
    line += level_name(level);
    line += ' ';
  }
  line += component;
  line += ": ";
  // One event, one line: a newline inside a message (from a device or a library) is escaped.
  for (char c : message) {
    if (c == '\n') {
      line += "\\n";
    } else {
      line += c;
    }
  }
  line += '\n';
  (void)!::write(STDERR_FILENO, line.data(), line.size());
  if (static_cast<int>(level) <= static_cast<int>(Level::kWarning)) {
    std::lock_guard<std::mutex> g(g_observer_mu);
    if (g_observer) g_observer(level, component, message);
  }
}

bool LogLimiter::allow(const std::string& key, uint64_t& suppressed_before) {
  const auto now = std::chrono::steady_clock::now();
  Entry& e = entries_[key];
  if (e.last != std::chrono::steady_clock::time_point{} && now - e.last < interval_) {
    ++e.suppressed;
    return false;
  }
  suppressed_before = e.suppressed;
  e.suppressed = 0;
  e.last = now;
  return true;
}

std::vector<std::pair<std::string, uint64_t>> LogLimiter::take_suppressed() {
  std::vector<std::pair<std::string, uint64_t>> out;
  for (auto& [key, e] : entries_) {
    if (e.suppressed == 0) continue;
    out.emplace_back(key, e.suppressed);
    e.suppressed = 0;
  }
  return out;
}

}  // namespace gw::log
