// The simulated energy meter both simulators serve (modbus_tcp_sim over TCP, rs485_sim per RTU
// unit): its values at each tick, the registers 0..20 that carry them (README.md has the map), and
// the "values" object of the values log that tests compare the gateway's readings with.
// Deliberately written apart from protocols/register_map.cpp: the tests decode what this encodes
// with the gateway's decoder, and a shared helper would hide a mistake made in both directions.
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace gw::sim {

inline constexpr int kMeterRegisters = 21;  // 0..20
inline constexpr int kDeviceTagRegister = 20;

// The meter's state at one tick, in the raw integer units the registers carry where the register
// is an integer, so the log and the registers cannot disagree by rounding.
struct MeterValues {
  uint32_t energy_total_raw;  // kWh * 100
  float voltage_l1;
  float current_l1;
  int16_t active_power_raw;  // W / 10
  uint16_t frequency_raw;    // Hz * 100
  int64_t energy_export_wh;
  double runtime_hours;
  uint16_t device_tag;
  bool relay;
};

// index feeds the formulas; device_tag is what register 20 carries.
MeterValues compute_meter_values(int index, uint16_t device_tag, int64_t tick);

// Writes registers 0..20 (registers 16..19 are zero); `regs` holds at least kMeterRegisters.
void encode_meter_registers(const MeterValues& v, std::span<uint16_t> regs);

// {"energy_total":..,...,"relay":0|1}: the exact engineering values the registers encode.
// float32 values are printed as the double they widen to with 17 digits, which parses back to
// exactly what a decoder gets, so tests can compare with ==.
std::string meter_values_json(const MeterValues& v);

}  // namespace gw::sim
