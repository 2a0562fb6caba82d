#include "tools/sim/dlt645_meter.h"

#include <array>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>

namespace gw::sim {
namespace {

using protocols::dlt645::Address;
using protocols::dlt645::Frame;

// The served points, in values_json() order. Each value lives as an integer count of its DI's
// last digit, so the encoder and the JSON both start from the same exact number.
enum Point { kEnergyTotal, kEnergyReverse, kVoltageA, kVoltageB, kVoltageC, kCurrentA,
             kActivePower, kPowerFactor, kFrequency, kPointCount };

struct PointFormat {
  const char* name;
  int bytes;
  int decimals;
  bool sign_in_msb;
};

// DL/T 645-2007 appendix A formats (see the table in dlt645_meter.h); written out here rather
// than taken from protocols::dlt645::standard_format() so a mistake there cannot hide.
constexpr std::array<PointFormat, kPointCount> kFormats{{
    {"energy_total", 4, 2, false},
    {"energy_reverse", 4, 2, false},
    {"voltage_a", 2, 1, false},
    {"voltage_b", 2, 1, false},
    {"voltage_c", 2, 1, false},
    {"current_a", 3, 3, true},
    {"active_power", 3, 4, true},
    {"power_factor", 2, 3, true},
    {"frequency", 2, 2, false},
}};

struct Served {
  uint32_t di;
  std::array<Point, 3> points;
  int count;
  bool combined_sign;  // 00000000 has a sign bit even though it serves energy_total
};

constexpr std::array<Served, 11> kServed{{
    {0x00000000, {kEnergyTotal}, 1, true},
    {0x00010000, {kEnergyTotal}, 1, false},
    {0x00020000, {kEnergyReverse}, 1, false},
    {0x02010100, {kVoltageA}, 1, false},
    {0x02010200, {kVoltageB}, 1, false},
    {0x02010300, {kVoltageC}, 1, false},
    {0x0201FF00, {kVoltageA, kVoltageB, kVoltageC}, 3, false},
    {0x02020100, {kCurrentA}, 1, false},
    {0x02030000, {kActivePower}, 1, false},
    {0x02060000, {kPowerFactor}, 1, false},
    {0x02800002, {kFrequency}, 1, false},
}};

constexpr uint8_t kReplyBit = 0x80;
constexpr uint8_t kExceptionBits = 0xC0;
constexpr uint8_t kErrOther = 0x01;
constexpr uint8_t kErrNoData = 0x02;

int64_t mod(int64_t a, int64_t m) { return ((a % m) + m) % m; }

int64_t raw_value(Point p, int64_t i, int64_t k) {
  const int64_t s = mod(i + k, 5) == 4 ? -1 : 1;
  // Below 800000.00 kWh: the combined-energy DI reads the top bit as its sign.
  constexpr int64_t kEnergyWrap = 80'000'000;
  switch (p) {
    case kEnergyTotal: return mod(100'000 + 10'000 * i + 37 * k, kEnergyWrap);
    case kEnergyReverse: return mod(5'000 + 300 * i + 11 * k, kEnergyWrap);
    case kVoltageA: return 2200 + mod(7 * i + 3 * k, 100);
    case kVoltageB: return 2200 + mod(7 * i + 3 * k + 33, 100);
    case kVoltageC: return 2200 + mod(7 * i + 3 * k + 66, 100);
    case kCurrentA: return s * (5000 + 250 * mod(i, 20) + 13 * mod(k, 50));
    case kActivePower: return s * (11'000 + 500 * mod(i, 10) + 37 * mod(k, 100));
    case kPowerFactor: return s * (850 + mod(3 * i + k, 150));
    case kFrequency: return 4990 + mod(i + k, 21);
    case kPointCount: break;
  }
  std::abort();  // cannot happen: every Point is handled above
}

// Appends `raw` as `bytes` BCD bytes, lowest two digits first; a negative value sets the top
// bit of the last (most significant) byte, as the standard does for signed quantities.
void append_bcd(std::vector<uint8_t>& out, int64_t raw, int bytes, bool sign_in_msb) {
  uint64_t magnitude = static_cast<uint64_t>(raw < 0 ? -raw : raw);
  for (int n = 0; n < bytes; ++n) {
    const uint8_t lo = static_cast<uint8_t>(magnitude % 10);
    magnitude /= 10;
    const uint8_t hi = static_cast<uint8_t>(magnitude % 10);
    magnitude /= 10;
    out.push_back(static_cast<uint8_t>(hi << 4 | lo));
  }
  // The formulas keep every value inside its format; a value that is not is a bug here.
  if (magnitude != 0 || (sign_in_msb && (out.back() & 0x80) != 0) ||
      (raw < 0 && !sign_in_msb)) {
    std::abort();
  }
  if (raw < 0) out.back() |= 0x80;
}

// One wire frame with the 4-byte wake-up preamble: FE*4 68 A0..A5 68 C L DATA+33 CS 16. Framed
// here, not by gw_protocols, for the same reason as the encoder.
std::vector<uint8_t> frame(const Address& address, uint8_t control,
                           const std::vector<uint8_t>& data) {
  std::vector<uint8_t> out;
  out.reserve(16 + data.size());
  for (uint8_t b : {0xFE, 0xFE, 0xFE, 0xFE, 0x68}) out.push_back(b);
  for (uint8_t b : address) out.push_back(b);
  out.push_back(0x68);
  out.push_back(control);
  out.push_back(static_cast<uint8_t>(data.size()));
  for (uint8_t b : data) out.push_back(static_cast<uint8_t>(b + 0x33));
  unsigned sum = 0;
  for (std::size_t i = 4; i < out.size(); ++i) sum += out[i];
  out.push_back(static_cast<uint8_t>(sum & 0xFF));
  out.push_back(0x16);
  return out;
}

// Prints raw / 10^decimals exactly: "-5.013", "1000.37", "220.0".
std::string decimal(int64_t raw, int decimals) {
  const bool negative = raw < 0;
  std::string digits = std::to_string(negative ? -raw : raw);
  if (digits.size() <= static_cast<std::size_t>(decimals)) {
    digits.insert(0, static_cast<std::size_t>(decimals) + 1 - digits.size(), '0');
  }
  if (decimals > 0) digits.insert(digits.size() - static_cast<std::size_t>(decimals), ".");
  return negative ? "-" + digits : digits;
}

}  // namespace

Dlt645Meter::Dlt645Meter(const std::string& printed_address, int index) : index_(index) {
  auto address = protocols::dlt645::parse_address(printed_address);
  if (!address) throw std::invalid_argument(address.status().message());
  address_ = *address;
}

std::optional<std::vector<uint8_t>> Dlt645Meter::handle(const Frame& request) {
  namespace dlt = protocols::dlt645;
  // Another meter's reply on the shared line is not addressed to us, whatever its address says.
  if (request.control & kReplyBit) return std::nullopt;
  if (request.control == dlt::kBroadcastTime) return std::nullopt;
  if (request.control == dlt::kReadAddress) {
    if (request.address != dlt::kBroadcast) return std::nullopt;
    return frame(address_, dlt::kReadAddress | kReplyBit,
                 std::vector<uint8_t>(address_.begin(), address_.end()));
  }
  for (std::size_t i = 0; i < address_.size(); ++i) {
    if (request.address[i] != address_[i] && request.address[i] != 0xAA) return std::nullopt;
  }
  const uint8_t error_control = request.control | kExceptionBits;
  if (request.control != dlt::kReadData || request.data.size() != 4) {
    return frame(address_, error_control, {kErrOther});
  }
  const uint32_t di = uint32_t{request.data[0]} | uint32_t{request.data[1]} << 8 |
                      uint32_t{request.data[2]} << 16 | uint32_t{request.data[3]} << 24;
  for (const Served& served : kServed) {
    if (served.di != di) continue;
    std::vector<uint8_t> data(request.data.begin(), request.data.end());
    for (int n = 0; n < served.count; ++n) {
      const Point p = served.points[static_cast<std::size_t>(n)];
      const PointFormat& f = kFormats[p];
      append_bcd(data, raw_value(p, index_, tick_), f.bytes,
                 f.sign_in_msb || served.combined_sign);
    }
    return frame(address_, dlt::kReadData | kReplyBit, data);
  }
  return frame(address_, error_control, {kErrNoData});
}

void Dlt645Meter::tick(int k) { tick_ = k; }

std::string Dlt645Meter::values_json() const {
  std::string out = "{";
  for (int p = 0; p < kPointCount; ++p) {
    const PointFormat& f = kFormats[static_cast<std::size_t>(p)];
    if (p > 0) out += ",";
    out += "\"";
    out += f.name;
    out += "\":";
    out += decimal(raw_value(static_cast<Point>(p), index_, tick_), f.decimals);
  }
  return out + "}";
}

const protocols::dlt645::Address& Dlt645Meter::address() const { return address_; }

}  // namespace gw::sim
