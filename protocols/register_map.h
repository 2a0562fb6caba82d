// Register-map decoding: turns the raw 16-bit registers (or bits) a Modbus device returned into
// an engineering value, as the contract's point definition says (type, word order, scale, offset).
// Pure functions, no I/O, safe from any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "protocols/status.h"

namespace gw::protocols {

enum class RegisterTable { kHolding, kInput, kCoil, kDiscrete };
enum class ValueType { kInt16, kUint16, kInt32, kUint32, kInt64, kUint64, kFloat32, kFloat64, kBool };
// Order of the 16-bit registers of a multi-register value; bytes inside a register are always
// big-endian (Modbus). kBig: first register holds the most significant word ("ABCD");
// kLittle: first register holds the least significant word ("CDAB").
enum class WordOrder { kBig, kLittle };

struct PointSpec {
  std::string name;
  RegisterTable table = RegisterTable::kHolding;
  uint16_t address = 0;  // zero-based register (or bit) number
  ValueType type = ValueType::kUint16;
  WordOrder word_order = WordOrder::kBig;
  double scale = 1.0;
  double offset = 0.0;
  std::string unit;
  bool operator==(const PointSpec&) const = default;
};

// Registers (for coil/discrete tables: bits) one value of `type` occupies.
int width_of(ValueType type);
bool is_bit_table(RegisterTable table);

// Checks what can be checked without a device: the type fits the table (coil and discrete
// points are bool), and address + width stays inside the 65,536-entry address space.
Status validate_point(const PointSpec& point);

// Decodes one point from exactly width_of(point.type) registers. A float register pair holding
// NaN or infinity decodes to a kCorrupt status: a meter's "no value" must not look like a reading.
Result<double> decode_registers(const PointSpec& point, std::span<const uint16_t> registers);
// Decodes one bit point (coil or discrete, or a bool in a register table).
double decode_bit(const PointSpec& point, bool bit);

std::optional<RegisterTable> parse_register_table(std::string_view text);
std::optional<ValueType> parse_value_type(std::string_view text);
std::optional<WordOrder> parse_word_order(std::string_view text);
std::string_view to_string(RegisterTable table);
std::string_view to_string(ValueType type);
std::string_view to_string(WordOrder order);

}  // namespace gw::protocols
