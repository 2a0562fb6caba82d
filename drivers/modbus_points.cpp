#include "drivers/modbus_points.h"

namespace gw::drivers {

void decode_request_points(const protocols::ReadRequest& request,
                           const std::vector<protocols::PointSpec>& points,
                           std::span<const uint16_t> regs, std::span<const uint8_t> bits,
                           std::vector<PointReading>& out) {
  for (std::size_t i : request.points) {
    const protocols::PointSpec& p = points[i];
    const std::size_t off = p.address - request.start;
    if (protocols::is_bit_table(request.table)) {
      out.push_back({i, protocols::decode_bit(p, bits[off] != 0), true, {}});
      continue;
    }
    const auto width = static_cast<std::size_t>(protocols::width_of(p.type));
    Result<double> v = protocols::decode_registers(p, regs.subspan(off, width));
    if (v) {
      out.push_back({i, *v, true, {}});
    } else {
      out.push_back({i, 0.0, false, v.status().message()});
    }
  }
}

void mark_request_bad(const protocols::ReadRequest& request, const std::string& why,
                      std::vector<PointReading>& out) {
  for (std::size_t i : request.points) out.push_back({i, 0.0, false, why});
}

}  // namespace gw::drivers
