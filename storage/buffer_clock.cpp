#include "storage/buffer_clock.h"

#include <sys/timex.h>

#include <algorithm>
#include <ctime>

namespace gw::storage {

int64_t boottime_us() {
  timespec ts{};
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return int64_t(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

BufferClock::BufferClock(Source monotonic_us) : source_(std::move(monotonic_us)) {
  source_at_start_ = source_();
}

void BufferClock::start(int64_t persisted_us) {
  base_us_ = std::max<int64_t>(persisted_us, 0);
  source_at_start_ = source_();
  last_ = base_us_;
}

int64_t BufferClock::now_us() const {
  // max(): a source that is not monotonic (a test's) still never moves the clock back.
  last_ = std::max(last_, base_us_ + std::max<int64_t>(source_() - source_at_start_, 0));
  return last_;
}

WallClockState wall_clock_state(int64_t wall_now_us) {
  WallClockState s;
  timex tx{};  // modes = 0: read only, allowed without privileges
  const int state = adjtimex(&tx);
  s.synchronized = state != -1 && state != TIME_ERROR && (tx.status & STA_UNSYNC) == 0;
  s.plausible = wall_now_us >= kEarliestPlausibleWallUs;
  return s;
}

}  // namespace gw::storage
