// ReadPlan groups a device's points into as few Modbus read requests as the protocol allows:
// points of one table whose registers are adjacent (or closer than `max_gap`) share a request,
// as long as a request stays within the function's limit (125 registers, 2000 bits) and the
// device's own `max_registers`. Pure computation, no I/O.
#pragma once

#include <cstdint>
#include <vector>

#include "protocols/register_map.h"

namespace gw::protocols {

inline constexpr int kMaxRegistersPerRead = 125;  // Modbus spec, functions 3 and 4
inline constexpr int kMaxBitsPerRead = 2000;      // Modbus spec, functions 1 and 2

struct ReadRequest {
  RegisterTable table = RegisterTable::kHolding;
  uint16_t start = 0;
  uint16_t count = 0;                 // registers or bits, at least 1
  std::vector<std::size_t> points;    // indices into the point list this request serves
};

struct ReadPlanLimits {
  int max_registers = kMaxRegistersPerRead;  // per request; clamped to the spec's limit
  int max_gap = 0;                           // unused registers allowed inside one request
};

// Every point appears in exactly one request; requests come sorted by table and start.
std::vector<ReadRequest> plan_reads(const std::vector<PointSpec>& points,
                                    ReadPlanLimits limits = {});

}  // namespace gw::protocols
