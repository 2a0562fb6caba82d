// BufferClock is the clock the buffer measures row ages with (retention, oldest age): the time
// the gateway has been running, carried across restarts in the buffer file. It is built on
// CLOCK_BOOTTIME, so neither an NTP step nor an RTC that came back as 1970 moves it; what it does
// not count is time the gateway was powered off, so a row can only live longer than max_age,
// never be purged early. Not thread-safe: the buffer's owner thread.
//
// wall_clock_state() says whether the wall clock (which stamps gateway_time_us) can be trusted:
// the kernel reports it synchronised (adjtimex: an NTP client such as chrony or
// systemd-timesyncd disciplines it) and it is not before kEarliestPlausibleWallUs.
#pragma once

#include <cstdint>
#include <functional>

namespace gw::storage {

// 2025-01-01T00:00:00Z: no gateway running this code observed anything before it, so a wall
// clock reading earlier than this is an RTC that lost its time.
inline constexpr int64_t kEarliestPlausibleWallUs = 1735689600LL * 1000000;

// Microseconds of CLOCK_BOOTTIME (includes suspend; never steps).
int64_t boottime_us();

class BufferClock {
 public:
  using Source = std::function<int64_t()>;
  explicit BufferClock(Source monotonic_us = boottime_us);

  // Continues from `persisted_us`, the value last saved in the buffer file (0 for a new file).
  void start(int64_t persisted_us);
  // Never decreases, also across restarts (the saved value is the floor).
  int64_t now_us() const;

 private:
  Source source_;
  int64_t base_us_ = 0;
  int64_t source_at_start_ = 0;
  mutable int64_t last_ = 0;
};

struct WallClockState {
  bool synchronized = false;  // the kernel says an NTP client disciplines the clock
  bool plausible = false;     // not before kEarliestPlausibleWallUs
  bool trusted() const { return synchronized && plausible; }
};
WallClockState wall_clock_state(int64_t wall_now_us);

}  // namespace gw::storage
