// ReportFilter decides which of a device's good readings become telemetry, per point, by the
// point's report policy: every reading; or on change beyond a deadband, and at least every
// max_interval. A point whose quality turns bad is reported once, then again when it recovers.
// Pure state machine with the time passed in; core thread only.
#pragma once

#include <chrono>
#include <optional>
#include <vector>

#include "drivers/driver.h"
#include "gateway/config.h"

namespace gw {

class ReportFilter {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  explicit ReportFilter(std::vector<config::ReportPolicy> policies);

  // Returns the readings to report now, in input order, and remembers them as reported.
  std::vector<drivers::PointReading> select(const std::vector<drivers::PointReading>& readings,
                                            TimePoint now);

 private:
  struct Last {
    bool reported = false;
    bool good = false;
    double value = 0.0;
    TimePoint at{};
  };
  std::vector<config::ReportPolicy> policies_;
  std::vector<Last> last_;
};

}  // namespace gw
