#include "drivers/gate/event_log.h"

#include <charconv>

namespace gw::drivers::gate {

namespace {
bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}
}  // namespace

std::string format_cursor(const LogCursor& c) {
  std::string out = std::to_string(c.index);
  if (!c.stamp.empty()) out += "@" + c.stamp;
  return out;
}

Result<LogCursor> parse_cursor(std::string_view text) {
  const std::size_t at = text.find('@');
  const std::string_view index = text.substr(0, at);
  const std::string_view stamp =
      at == std::string_view::npos ? std::string_view() : text.substr(at + 1);
  LogCursor c;
  const auto [end, ec] = std::from_chars(index.data(), index.data() + index.size(), c.index);
  const bool index_ok =
      all_digits(index) && ec == std::errc() && end == index.data() + index.size();
  const bool stamp_ok = at == std::string_view::npos || (all_digits(stamp) && stamp.size() <= 20);
  if (!index_ok || !stamp_ok) {
    return Status::invalid("stored log cursor '" + std::string(text.substr(0, 64)) +
                           "' is not <index>[@<stamp>]");
  }
  c.stamp = std::string(stamp);
  return c;
}

CatchUp plan_catch_up(const LogCursor& cursor, uint64_t oldest, uint64_t newest) {
  CatchUp p;
  p.newest = newest;
  uint64_t next = cursor.index + 1;
  if (newest < cursor.index) {
    p.reset = true;
    next = 1;
  }
  if (oldest > next) {
    // Overwritten before they were read. After a reset nothing older was ever ours to lose
    // twice, but entries 1..oldest-1 of the new numbering are still gone: count them.
    p.lost = oldest - next;
    next = oldest;
  }
  p.first = next;
  p.verify = !p.reset && cursor.index >= 1 && !cursor.stamp.empty() && cursor.index <= newest &&
             (oldest == 0 || cursor.index >= oldest);
  return p;
}

std::string lost_message(uint64_t lost, uint64_t first_lost, uint64_t last_lost) {
  return std::to_string(lost) + " event log " + (lost == 1 ? "entry" : "entries") + " (index " +
         std::to_string(first_lost) + (lost == 1 ? "" : ".." + std::to_string(last_lost)) +
         ") were overwritten by the controller before they could be read; they are lost";
}

std::string reset_message(const LogCursor& cursor, uint64_t newest, std::string_view why) {
  return "event log was reset (" + std::string(why) + "; last index read " +
         std::to_string(cursor.index) + ", newest now " + std::to_string(newest) +
         "): reading it again from its oldest entry";
}

}  // namespace gw::drivers::gate
