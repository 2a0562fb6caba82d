// Turning the registers or bits one Modbus read request returned into point readings; shared by
// the Modbus TCP and RTU drivers. Pure functions.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "drivers/driver.h"
#include "protocols/modbus_read_plan.h"
#include "protocols/register_map.h"

namespace gw::drivers {

// Appends one reading per point the request served. `regs` (register tables) or `bits` (bit
// tables) holds exactly request.count entries.
void decode_request_points(const protocols::ReadRequest& request,
                           const std::vector<protocols::PointSpec>& points,
                           std::span<const uint16_t> regs, std::span<const uint8_t> bits,
                           std::vector<PointReading>& out);

// Appends a bad reading, with the reason, for every point the request served.
void mark_request_bad(const protocols::ReadRequest& request, const std::string& why,
                      std::vector<PointReading>& out);

}  // namespace gw::drivers
