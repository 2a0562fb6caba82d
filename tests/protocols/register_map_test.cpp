#include "protocols/register_map.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

using namespace gw::protocols;
using gw::Result;
using gw::Status;

namespace {

PointSpec point(ValueType type, WordOrder order = WordOrder::kBig, double scale = 1.0,
                double offset = 0.0) {
  PointSpec p;
  p.name = "p";
  p.type = type;
  p.word_order = order;
  p.scale = scale;
  p.offset = offset;
  return p;
}

double decode(const PointSpec& p, std::vector<uint16_t> regs) {
  Result<double> r = decode_registers(p, regs);
  REQUIRE(r.is_ok());
  return *r;
}

// Splits a 32-bit pattern into registers, most significant word first.
std::vector<uint16_t> words32(uint32_t v) { return {uint16_t(v >> 16), uint16_t(v & 0xffff)}; }
std::vector<uint16_t> words64(uint64_t v) {
  return {uint16_t(v >> 48), uint16_t(v >> 32), uint16_t(v >> 16), uint16_t(v)};
}
template <typename T>
std::vector<uint16_t> reversed(T v) {
  return {v.rbegin(), v.rend()};
}
uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
uint64_t bits_of(double d) {
  uint64_t u;
  std::memcpy(&u, &d, 8);
  return u;
}

}  // namespace

TEST_CASE("16-bit types decode signed and unsigned") {
  CHECK(decode(point(ValueType::kUint16), {0xFFFF}) == 65535.0);
  CHECK(decode(point(ValueType::kInt16), {0xFFFF}) == -1.0);
  CHECK(decode(point(ValueType::kInt16), {0x8000}) == -32768.0);
  CHECK(decode(point(ValueType::kInt16), {0x7FFF}) == 32767.0);
  CHECK(decode(point(ValueType::kUint16), {0x0102}) == 258.0);
}

TEST_CASE("32-bit integers honour word order and sign") {
  const auto big = words32(0x00012345u);
  CHECK(decode(point(ValueType::kUint32, WordOrder::kBig), big) == 0x12345);
  CHECK(decode(point(ValueType::kUint32, WordOrder::kLittle), reversed(big)) == 0x12345);
  // The same registers read with the wrong order give a different value: the order matters.
  CHECK(decode(point(ValueType::kUint32, WordOrder::kLittle), big) == 0x23450001u);

  const auto minus_two = words32(static_cast<uint32_t>(-2));
  CHECK(decode(point(ValueType::kInt32, WordOrder::kBig), minus_two) == -2.0);
  CHECK(decode(point(ValueType::kInt32, WordOrder::kLittle), reversed(minus_two)) == -2.0);
  CHECK(decode(point(ValueType::kUint32), minus_two) == 4294967294.0);
  CHECK(decode(point(ValueType::kInt32), words32(0x80000000u)) == -2147483648.0);
}

TEST_CASE("64-bit integers honour word order and sign") {
  const uint64_t v = 0x0001000200030004ull;
  CHECK(decode(point(ValueType::kUint64, WordOrder::kBig), words64(v)) == double(v));
  CHECK(decode(point(ValueType::kUint64, WordOrder::kLittle), reversed(words64(v))) == double(v));
  const auto minus = words64(static_cast<uint64_t>(int64_t{-123456789012}));
  CHECK(decode(point(ValueType::kInt64, WordOrder::kBig), minus) == -123456789012.0);
  CHECK(decode(point(ValueType::kInt64, WordOrder::kLittle), reversed(minus)) == -123456789012.0);
  CHECK(decode(point(ValueType::kUint64), words64(~0ull)) == 18446744073709551615.0);
}

TEST_CASE("floats decode in both word orders, negative included") {
  for (float f : {230.5f, -0.125f, 1.0e-3f, 3.4e38f}) {
    const auto regs = words32(bits_of(f));
    CHECK(decode(point(ValueType::kFloat32, WordOrder::kBig), regs) == double(f));
    CHECK(decode(point(ValueType::kFloat32, WordOrder::kLittle), reversed(regs)) == double(f));
  }
  for (double d : {49.987654321, -1.0e300, 0.0}) {
    const auto regs = words64(bits_of(d));
    CHECK(decode(point(ValueType::kFloat64, WordOrder::kBig), regs) == d);
    CHECK(decode(point(ValueType::kFloat64, WordOrder::kLittle), reversed(regs)) == d);
  }
}

TEST_CASE("NaN and infinity are not readings") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  Result<double> r = decode_registers(point(ValueType::kFloat32), words32(bits_of(nan)));
  REQUIRE_FALSE(r.is_ok());
  CHECK(r.status().code() == gw::Status::Code::kCorrupt);
  CHECK_THAT(r.status().message(), Catch::Contains("NaN"));
  r = decode_registers(point(ValueType::kFloat32), words32(bits_of(-inf)));
  REQUIRE_FALSE(r.is_ok());
  CHECK_THAT(r.status().message(), Catch::Contains("infinity"));
  r = decode_registers(point(ValueType::kFloat64),
                       words64(bits_of(std::numeric_limits<double>::infinity())));
  CHECK_FALSE(r.is_ok());
}

// Found by tests/fuzz/register_map: a finite float64 near its limit, times a scale above 1.
TEST_CASE("a reading that overflows after scale and offset is not a reading") {
  const double big = std::numeric_limits<double>::max() / 2;
  Result<double> r = decode_registers(point(ValueType::kFloat64, WordOrder::kBig, 7.0),
                                      words64(bits_of(big)));
  REQUIRE_FALSE(r.is_ok());
  CHECK(r.status().code() == gw::Status::Code::kCorrupt);
  CHECK_THAT(r.status().message(), Catch::Contains("out of range after scale"));
  CHECK(decode_registers(point(ValueType::kFloat64, WordOrder::kBig, 1.0), words64(bits_of(big)))
            .is_ok());
}

TEST_CASE("scale and offset apply after decoding") {
  CHECK(decode(point(ValueType::kUint32, WordOrder::kBig, 0.01), words32(123456)) ==
        Approx(1234.56));
  CHECK(decode(point(ValueType::kInt16, WordOrder::kBig, 0.1, -40.0), {0xFFF6}) == Approx(-41.0));
  CHECK(decode_bit(point(ValueType::kBool), true) == 1.0);
  CHECK(decode_bit(point(ValueType::kBool), false) == 0.0);
  CHECK(decode(point(ValueType::kBool), {0x0100}) == 1.0);
  CHECK(decode(point(ValueType::kBool), {0x0000}) == 0.0);
}

TEST_CASE("a register count that does not fit the type is refused") {
  Result<double> r = decode_registers(point(ValueType::kUint32), std::vector<uint16_t>{1});
  REQUIRE_FALSE(r.is_ok());
  CHECK_THAT(r.status().message(), Catch::Contains("needs 2 registers, got 1"));
}

TEST_CASE("validate_point catches addresses past the end and bit tables with word types") {
  PointSpec p = point(ValueType::kUint32);
  p.address = 65534;
  CHECK(validate_point(p).is_ok());
  p.address = 65535;
  Status s = validate_point(p);
  REQUIRE_FALSE(s.is_ok());
  CHECK_THAT(s.message(), Catch::Contains("address 65535"));
  p = point(ValueType::kFloat64);
  p.address = 65533;
  CHECK_FALSE(validate_point(p).is_ok());
  p = point(ValueType::kFloat32);
  p.table = RegisterTable::kCoil;
  s = validate_point(p);
  REQUIRE_FALSE(s.is_ok());
  CHECK_THAT(s.message(), Catch::Contains("coil point must have type bool"));
  p.type = ValueType::kBool;
  p.address = 65535;
  CHECK(validate_point(p).is_ok());
}

TEST_CASE("names round-trip and unknown names are rejected") {
  for (auto t : {"int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64",
                 "bool"}) {
    auto parsed = parse_value_type(t);
    REQUIRE(parsed);
    CHECK(to_string(*parsed) == t);
  }
  CHECK_FALSE(parse_value_type("float"));
  CHECK_FALSE(parse_value_type("UINT16"));
  CHECK(parse_word_order("little") == WordOrder::kLittle);
  CHECK_FALSE(parse_word_order("middle"));
  CHECK(parse_register_table("discrete") == RegisterTable::kDiscrete);
  CHECK_FALSE(parse_register_table("holdings"));
  CHECK(width_of(ValueType::kFloat64) == 4);
  CHECK(width_of(ValueType::kInt32) == 2);
  CHECK(width_of(ValueType::kBool) == 1);
}
