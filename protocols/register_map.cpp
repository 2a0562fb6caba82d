#include "protocols/register_map.h"

#include <array>
#include <bit>
#include <cmath>

namespace gw::protocols {
namespace {

constexpr std::array<std::pair<std::string_view, RegisterTable>, 4> kTables{{
    {"holding", RegisterTable::kHolding},
    {"input", RegisterTable::kInput},
    {"coil", RegisterTable::kCoil},
    {"discrete", RegisterTable::kDiscrete},
}};
constexpr std::array<std::pair<std::string_view, ValueType>, 9> kTypes{{
    {"int16", ValueType::kInt16},
    {"uint16", ValueType::kUint16},
    {"int32", ValueType::kInt32},
    {"uint32", ValueType::kUint32},
    {"int64", ValueType::kInt64},
    {"uint64", ValueType::kUint64},
    {"float32", ValueType::kFloat32},
    {"float64", ValueType::kFloat64},
    {"bool", ValueType::kBool},
}};
constexpr std::array<std::pair<std::string_view, WordOrder>, 2> kOrders{{
    {"big", WordOrder::kBig},
    {"little", WordOrder::kLittle},
}};

template <typename E, std::size_t N>
std::optional<E> lookup(const std::array<std::pair<std::string_view, E>, N>& table,
                        std::string_view text) {
  for (const auto& [name, value] : table) {
    if (name == text) return value;
  }
  return std::nullopt;
}

template <typename E, std::size_t N>
std::string_view name_of(const std::array<std::pair<std::string_view, E>, N>& table, E value) {
  for (const auto& [name, v] : table) {
    if (v == value) return name;
  }
  return "?";
}

// Assembles the registers into one unsigned integer, most significant word first.
uint64_t assemble(std::span<const uint16_t> regs, WordOrder order) {
  uint64_t raw = 0;
  const std::size_t n = regs.size();
  for (std::size_t i = 0; i < n; ++i) {
    const uint16_t word = order == WordOrder::kBig ? regs[i] : regs[n - 1 - i];
    raw = (raw << 16) | word;
  }
  return raw;
}

}  // namespace

int width_of(ValueType type) {
  switch (type) {
    case ValueType::kInt16:
    case ValueType::kUint16:
    case ValueType::kBool:
      return 1;
    case ValueType::kInt32:
    case ValueType::kUint32:
    case ValueType::kFloat32:
      return 2;
    case ValueType::kInt64:
    case ValueType::kUint64:
    case ValueType::kFloat64:
      return 4;
  }
  return 1;
}

bool is_bit_table(RegisterTable table) {
  return table == RegisterTable::kCoil || table == RegisterTable::kDiscrete;
}

Status validate_point(const PointSpec& point) {
  if (is_bit_table(point.table) && point.type != ValueType::kBool) {
    return Status::invalid("a " + std::string(to_string(point.table)) +
                           " point must have type bool, not " +
                           std::string(to_string(point.type)));
  }
  const uint32_t end = uint32_t{point.address} + static_cast<uint32_t>(width_of(point.type));
  if (end > 65536) {
    return Status::invalid("address " + std::to_string(point.address) + " with type " +
                           std::string(to_string(point.type)) +
                           " runs past the last register (65535)");
  }
  if (!std::isfinite(point.scale) || !std::isfinite(point.offset)) {
    return Status::invalid("scale and offset must be finite numbers");
  }
  return Status::ok();
}

Result<double> decode_registers(const PointSpec& point, std::span<const uint16_t> registers) {
  const int width = width_of(point.type);
  if (registers.size() != static_cast<std::size_t>(width)) {
    return Status::invalid("point '" + point.name + "' needs " + std::to_string(width) +
                           " registers, got " + std::to_string(registers.size()));
  }
  const uint64_t raw = assemble(registers, point.word_order);
  double value = 0;
  switch (point.type) {
    case ValueType::kInt16:
      value = static_cast<int16_t>(raw);
      break;
    case ValueType::kUint16:
      value = static_cast<uint16_t>(raw);
      break;
    case ValueType::kInt32:
      value = static_cast<int32_t>(raw);
      break;
    case ValueType::kUint32:
      value = static_cast<uint32_t>(raw);
      break;
    case ValueType::kInt64:
      value = static_cast<double>(static_cast<int64_t>(raw));
      break;
    case ValueType::kUint64:
      value = static_cast<double>(raw);
      break;
    case ValueType::kFloat32:
      value = std::bit_cast<float>(static_cast<uint32_t>(raw));
      break;
    case ValueType::kFloat64:
      value = std::bit_cast<double>(raw);
      break;
    case ValueType::kBool:
      return decode_bit(point, raw != 0);
  }
  if (!std::isfinite(value)) {
    return Status::corrupt("point '" + point.name + "' holds " +
                           (std::isnan(value) ? "NaN" : "infinity"));
  }
  // A float64 near its limit times a scale above 1 overflows: not a reading either.
  const double scaled = value * point.scale + point.offset;
  if (!std::isfinite(scaled)) {
    return Status::corrupt("point '" + point.name + "' is out of range after scale and offset (" +
                           std::to_string(value) + ")");
  }
  return scaled;
}

double decode_bit(const PointSpec& point, bool bit) {
  return (bit ? 1.0 : 0.0) * point.scale + point.offset;
}

std::optional<RegisterTable> parse_register_table(std::string_view t) { return lookup(kTables, t); }
std::optional<ValueType> parse_value_type(std::string_view t) { return lookup(kTypes, t); }
std::optional<WordOrder> parse_word_order(std::string_view t) { return lookup(kOrders, t); }
std::string_view to_string(RegisterTable table) { return name_of(kTables, table); }
std::string_view to_string(ValueType type) { return name_of(kTypes, type); }
std::string_view to_string(WordOrder order) { return name_of(kOrders, order); }

}  // namespace gw::protocols
