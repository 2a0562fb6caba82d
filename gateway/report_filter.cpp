#include "gateway/report_filter.h"

#include <cmath>

namespace gw {

ReportFilter::ReportFilter(std::vector<config::ReportPolicy> policies)
    : policies_(std::move(policies)), last_(policies_.size()) {}

std::vector<drivers::PointReading> ReportFilter::select(
    const std::vector<drivers::PointReading>& readings, TimePoint now) {
  std::vector<drivers::PointReading> out;
  for (const drivers::PointReading& r : readings) {
    if (r.index >= policies_.size()) continue;
    const config::ReportPolicy& policy = policies_[r.index];
    Last& last = last_[r.index];
    bool due = false;
    if (!last.reported || last.good != r.good) {
      due = true;  // first reading, or quality changed
    } else if (!r.good) {
      due = policy.max_interval && now - last.at >= *policy.max_interval;
    } else {
      // A good reading: every one, or with on_change only past the deadband or max_interval.
      due = !policy.on_change || std::fabs(r.value - last.value) > policy.deadband ||
            (policy.max_interval && now - last.at >= *policy.max_interval);
    }
    if (!due) continue;
    last = Last{true, r.good, r.value, now};
    out.push_back(r);
  }
  return out;
}

}  // namespace gw
