#include "tools/sim/sim_meter.h"

#include <algorithm>
#include <bit>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace gw::sim {
namespace {

void put_u32(uint32_t value, bool big, uint16_t* dest) {
  dest[big ? 0 : 1] = static_cast<uint16_t>(value >> 16);
  dest[big ? 1 : 0] = static_cast<uint16_t>(value);
}

void put_u64_big(uint64_t value, uint16_t* dest) {
  for (int n = 0; n < 4; ++n) dest[n] = static_cast<uint16_t>(value >> (48 - 16 * n));
}

}  // namespace

MeterValues compute_meter_values(int index, uint16_t device_tag, int64_t tick) {
  const int64_t i = index;
  const int64_t k = tick;
  MeterValues v{};
  const uint64_t energy_base = (i % 2 == 0) ? 100000 : 3000000000;
  v.energy_total_raw = static_cast<uint32_t>(energy_base + 10000 * i + 37 * k);
  v.voltage_l1 = 230.0f + 2.0f * std::sin(static_cast<float>(k) / 5.0f + static_cast<float>(i));
  v.current_l1 =
      static_cast<float>(5.0 + 0.5 * static_cast<double>(i % 20) +
                         0.25 * static_cast<double>(k % 7) + 0.013 * static_cast<double>(k % 11));
  const int64_t power = 150 + 7 * (i % 50) + 3 * (k % 13);
  v.active_power_raw = static_cast<int16_t>((k + i) % 4 == 3 ? -power : power);
  v.frequency_raw = static_cast<uint16_t>(4995 + (k + 3 * i) % 11);
  const int64_t exported = 5000000000 + 1000000 * i + 123 * k;
  v.energy_export_wh = (i % 2 == 0) ? -exported : exported;
  v.runtime_hours = 8760.0 * static_cast<double>(1 + i % 5) + 0.1 * static_cast<double>(i) +
                    static_cast<double>(k) / 3600.0;
  v.device_tag = device_tag;
  v.relay = (k / 10 + i) % 2 == 1;
  return v;
}

void encode_meter_registers(const MeterValues& v, std::span<uint16_t> regs) {
  if (regs.size() < kMeterRegisters) std::abort();  // a caller's array is too small: a bug
  std::fill(regs.begin(), regs.begin() + kMeterRegisters, uint16_t{0});
  put_u32(v.energy_total_raw, true, regs.data());
  put_u32(std::bit_cast<uint32_t>(v.voltage_l1), true, &regs[2]);
  put_u32(std::bit_cast<uint32_t>(v.current_l1), false, &regs[4]);
  regs[6] = static_cast<uint16_t>(v.active_power_raw);
  regs[7] = v.frequency_raw;
  put_u64_big(static_cast<uint64_t>(v.energy_export_wh), &regs[8]);
  put_u64_big(std::bit_cast<uint64_t>(v.runtime_hours), &regs[12]);
  regs[kDeviceTagRegister] = v.device_tag;
}

std::string meter_values_json(const MeterValues& v) {
  char out[384];
  const int n = std::snprintf(
      out, sizeof out,
      "{\"energy_total\":%" PRIu32 ".%02" PRIu32
      ",\"voltage_l1\":%.17g,\"current_l1\":%.17g,\"active_power\":%d,\"frequency\":%u.%02u"
      ",\"energy_export\":%" PRId64 ",\"runtime_hours\":%.17g,\"device_tag\":%u,\"relay\":%d}",
      v.energy_total_raw / 100, v.energy_total_raw % 100, static_cast<double>(v.voltage_l1),
      static_cast<double>(v.current_l1), static_cast<int>(v.active_power_raw) * 10,
      v.frequency_raw / 100u, v.frequency_raw % 100u, v.energy_export_wh, v.runtime_hours,
      static_cast<unsigned>(v.device_tag), v.relay ? 1 : 0);
  if (n < 0 || static_cast<size_t>(n) >= sizeof out) std::abort();  // the format bounds it
  return std::string(out, static_cast<size_t>(n));
}

}  // namespace gw::sim
