// Following a gate controller's own event log by index, shared by the modbus_gate and uhppote
// drivers. A controller numbers its log entries 1, 2, 3, ... and keeps the newest N of them; the
// driver remembers the last index it emitted (its cursor, committed by the gateway in the same
// transaction as the entry) and after an outage reads everything after it. What can go wrong:
// - the log wrapped: entries were overwritten before they were read -> they are lost, and the
//   driver says how many, once;
// - the log was reset (cleared, controller replaced, firmware reload): the newest index is
//   below the cursor, or the entry at the cursor's index is not the one read before (its time
//   differs) -> the driver starts over from the oldest entry kept, and says so, once.
// Pure functions, no I/O; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "protocols/status.h"

namespace gw::drivers::gate {

// The persisted read position: "<index>" or "<index>@<stamp>", where stamp is the device's
// time of that entry exactly as the device wrote it (unix seconds, or UHPPOTE's 14 BCD digits).
struct LogCursor {
  uint64_t index = 0;  // last index emitted; 0 = nothing read from this log yet
  std::string stamp;   // empty when unknown
  bool operator==(const LogCursor&) const = default;
};

std::string format_cursor(const LogCursor& cursor);
// Bad text is an error naming it; callers treat it like no cursor (and say so).
Result<LogCursor> parse_cursor(std::string_view text);

// What to read next, given the cursor and the entries the device holds now: oldest..newest
// (newest = 0: empty log; oldest = 0: not known yet, e.g. UHPPOTE before asking).
struct CatchUp {
  uint64_t first = 0;  // first index to read; nothing to read when first > newest
  uint64_t newest = 0;
  uint64_t lost = 0;   // entries after the cursor that the device no longer holds
  bool reset = false;  // newest < cursor: the log was reset; reading it from its start
  // The cursor's own entry is still held and has a stamp to compare: read it first (index
  // cursor.index) and treat a different stamp as a reset.
  bool verify = false;
};
CatchUp plan_catch_up(const LogCursor& cursor, uint64_t oldest, uint64_t newest);

// The messages the drivers report through bad_input ("gap" and "reset"), worded once here.
std::string lost_message(uint64_t lost, uint64_t first_lost, uint64_t last_lost);
std::string reset_message(const LogCursor& cursor, uint64_t newest, std::string_view why);

}  // namespace gw::drivers::gate
