#include "protocols/modbus_read_plan.h"

#include <algorithm>
#include <numeric>

namespace gw::protocols {

std::vector<ReadRequest> plan_reads(const std::vector<PointSpec>& points, ReadPlanLimits limits) {
  std::vector<std::size_t> order(points.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    if (points[a].table != points[b].table) return points[a].table < points[b].table;
    return points[a].address < points[b].address;
  });

  std::vector<ReadRequest> plan;
  for (const std::size_t i : order) {
    const PointSpec& p = points[i];
    const uint32_t begin = p.address;
    const uint32_t end = begin + static_cast<uint32_t>(width_of(p.type));
    const int spec_limit = is_bit_table(p.table) ? kMaxBitsPerRead : kMaxRegistersPerRead;
    const uint32_t limit = static_cast<uint32_t>(
        std::clamp(is_bit_table(p.table) ? spec_limit : limits.max_registers, 1, spec_limit));

    if (!plan.empty()) {
      ReadRequest& last = plan.back();
      const uint32_t last_end = uint32_t{last.start} + last.count;
      const bool same_table = last.table == p.table;
      const bool close = begin <= last_end + static_cast<uint32_t>(std::max(limits.max_gap, 0));
      const uint32_t merged_end = std::max(last_end, end);
      if (same_table && close && merged_end - last.start <= limit) {
        last.count = static_cast<uint16_t>(merged_end - last.start);
        last.points.push_back(i);
        continue;
      }
    }
    plan.push_back(ReadRequest{p.table, p.address, static_cast<uint16_t>(end - begin), {i}});
  }
  return plan;
}

}  // namespace gw::protocols
