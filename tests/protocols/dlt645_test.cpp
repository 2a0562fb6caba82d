#include "protocols/dlt645.h"

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "tools/sim/dlt645_meter.h"

using namespace gw::protocols::dlt645;
using Bytes = std::vector<uint8_t>;
using Outcome = Parsed::Outcome;

// Every frame below is written out by hand. CS is the sum of the bytes from the first 68
// through DATA, mod 256; the comment next to each frame shows the sum. A common piece: the
// header "68 56 34 12 00 00 00 68" of meter 000000123456 sums to 0x16C.
namespace {

const Address kMeter{0x56, 0x34, 0x12, 0x00, 0x00, 0x00};  // 000000123456

Frame parse_good(const Bytes& wire) {
  Parsed p = parse_frame(wire);
  INFO("parse message: " << p.message);
  REQUIRE(p.outcome == Outcome::kGood);
  CHECK(p.consumed == wire.size());
  return p.frame;
}

Parsed parse(const Bytes& wire) { return parse_frame(wire); }

// Frames `data` (plain, before +0x33) the way the standard says, for the table-driven cases
// where writing every checksum by hand adds nothing. Independent of the code under test.
Bytes test_frame(const Address& a, uint8_t control, const Bytes& data) {
  Bytes out{0x68, a[0], a[1], a[2], a[3], a[4], a[5], 0x68, control,
            static_cast<uint8_t>(data.size())};
  for (uint8_t b : data) out.push_back(static_cast<uint8_t>(b + 0x33));
  unsigned sum = 0;
  for (uint8_t b : out) sum += b;
  out.push_back(static_cast<uint8_t>(sum));
  out.push_back(0x16);
  return out;
}

// Energy reply, meter 000000123456, DI 00010000, 12345.67 kWh: BCD 01 23 45 67 sent lowest
// first as 67 45 23 01, +0x33 = 9A 78 56 34.
// CS = 0x16C + 91 + 08 + (33+33+34+33 = 0xCD) + (9A+78+56+34 = 0x19C) = 0x46E -> 6E.
const Bytes kEnergyReply{0x68, 0x56, 0x34, 0x12, 0x00, 0x00, 0x00, 0x68, 0x91, 0x08,
                         0x33, 0x33, 0x34, 0x33, 0x9A, 0x78, 0x56, 0x34, 0x6E, 0x16};

Bytes with_preamble(const Bytes& frame) {
  Bytes out{0xFE, 0xFE, 0xFE, 0xFE};
  out.insert(out.end(), frame.begin(), frame.end());
  return out;
}

double json_value(const std::string& json, const std::string& key) {
  const std::string needle = "\"" + key + "\":";
  const auto pos = json.find(needle);
  REQUIRE(pos != std::string::npos);
  return std::strtod(json.c_str() + pos + needle.size(), nullptr);
}

}  // namespace

TEST_CASE("parse_address turns the printed number into wire order and back") {
  auto a = parse_address("000000123456");
  REQUIRE(a.is_ok());
  CHECK(*a == Address{0x56, 0x34, 0x12, 0x00, 0x00, 0x00});
  CHECK(to_string(*a) == "000000123456");

  auto b = parse_address("987654321098");
  REQUIRE(b.is_ok());
  CHECK(*b == Address{0x98, 0x10, 0x32, 0x54, 0x76, 0x98});
  CHECK(to_string(kBroadcast) == "AAAAAAAAAAAA");
}

TEST_CASE("parse_address rejects wrong length and non-digits with a clear message") {
  auto short_one = parse_address("12345");
  REQUIRE_FALSE(short_one.is_ok());
  CHECK(short_one.status().code() == gw::Status::Code::kInvalidArgument);
  CHECK_THAT(short_one.status().message(), Catch::Contains("12 decimal digits"));
  CHECK_FALSE(parse_address("0000001234567").is_ok());
  CHECK_FALSE(parse_address("").is_ok());

  auto hex = parse_address("00000012345A");
  REQUIRE_FALSE(hex.is_ok());
  CHECK_THAT(hex.status().message(), Catch::Contains("non-digit at position 11"));
  CHECK_FALSE(parse_address("AAAAAAAAAAAA").is_ok());
  CHECK_FALSE(parse_address("00000012 456").is_ok());
}

TEST_CASE("parse_di reads DI3..DI0 as hex") {
  CHECK(*parse_di("00010000") == 0x00010000u);
  CHECK(*parse_di("0201ff00") == 0x0201FF00u);
  CHECK(*parse_di("02800002") == 0x02800002u);
  CHECK_FALSE(parse_di("0001000").is_ok());
  CHECK_FALSE(parse_di("000100000").is_ok());
  CHECK_FALSE(parse_di("0001000G").is_ok());
  CHECK_FALSE(parse_di("0x010000").is_ok());
  CHECK_THAT(parse_di("0001000").status().message(), Catch::Contains("8 hex digits"));
  CHECK_THAT(parse_di("00-01-00").status().message(), Catch::Contains("non-hex"));
}

TEST_CASE("build_read_data: meter 000000123456, DI 00010000, exact bytes") {
  // DI goes DI0 first: 00 00 01 00, +0x33 = 33 33 34 33.
  // CS = 0x16C + 11 + 04 + 33 + 33 + 34 + 33 = 0x24E -> 4E.
  const Bytes expected{0xFE, 0xFE, 0xFE, 0xFE, 0x68, 0x56, 0x34, 0x12, 0x00, 0x00,
                       0x00, 0x68, 0x11, 0x04, 0x33, 0x33, 0x34, 0x33, 0x4E, 0x16};
  CHECK(build_read_data(kMeter, 0x00010000) == expected);

  const Bytes no_preamble(expected.begin() + 4, expected.end());
  CHECK(build_read_data(kMeter, 0x00010000, 0) == no_preamble);
  CHECK(build_read_data(kMeter, 0x00010000, -3) == no_preamble);
  CHECK(build_read_data(kMeter, 0x00010000, 9).size() == expected.size());  // at most 4 FE
}

TEST_CASE("build_read_data matches a frame published by a third party") {
  // https://luatdoc.papapoi.com/572: read total forward active energy of meter 12345678 is
  // FEFEFEFE 68 785634120000 68 11 04 33333433 C6 16 (CS checked by hand: 0x2C6).
  auto a = parse_address("000012345678");
  REQUIRE(a.is_ok());
  const Bytes published{0xFE, 0xFE, 0xFE, 0xFE, 0x68, 0x78, 0x56, 0x34, 0x12, 0x00,
                        0x00, 0x68, 0x11, 0x04, 0x33, 0x33, 0x34, 0x33, 0xC6, 0x16};
  CHECK(build_read_data(*a, *parse_di("00010000")) == published);
}

TEST_CASE("read address: request and reply") {
  // 68 + 6 * AA (0x3FC) + 68 + 13 + 00 = 0x4DF -> DF.
  const Bytes request{0xFE, 0xFE, 0xFE, 0xFE, 0x68, 0xAA, 0xAA, 0xAA,
                      0xAA, 0xAA, 0xAA, 0x68, 0x13, 0x00, 0xDF, 0x16};
  CHECK(build_read_address() == request);

  // The meter answers 93 with its own address in the address field and, +0x33, as data:
  // 89 67 45 33 33 33. CS = 0x16C + 93 + 06 + 89 + 67 + 45 + 33 * 3 = 0x3D3 -> D3.
  const Bytes reply{0x68, 0x56, 0x34, 0x12, 0x00, 0x00, 0x00, 0x68, 0x93,
                    0x06, 0x89, 0x67, 0x45, 0x33, 0x33, 0x33, 0xD3, 0x16};
  Frame f = parse_good(reply);
  CHECK(f.address == kMeter);
  CHECK(f.control == 0x93);
  CHECK(f.data == Bytes{0x56, 0x34, 0x12, 0x00, 0x00, 0x00});
}

TEST_CASE("time sync: broadcast to 99..99, ss mm hh DD MM YY in BCD") {
  using namespace std::chrono;
  const sys_seconds t = sys_days{2024y / March / 15} + 8h + 30min + 45s;
  // Data 45 30 08 15 03 24, +0x33 = 78 63 3B 48 36 57.
  // CS = 68 + 6 * 99 (0x396) + 68 + 08 + 06 = 0x474; + 78 + 63 + 3B + 48 + 36 + 57 (0x1EB)
  //    = 0x65F -> 5F.
  const Bytes expected{0xFE, 0xFE, 0xFE, 0xFE, 0x68, 0x99, 0x99, 0x99, 0x99, 0x99, 0x99,
                       0x68, 0x08, 0x06, 0x78, 0x63, 0x3B, 0x48, 0x36, 0x57, 0x5F, 0x16};
  CHECK(build_time_sync(t) == expected);
  // Sub-second parts are dropped, not rounded.
  CHECK(build_time_sync(t + 999ms) == expected);
}

TEST_CASE("read data: energy 12345.67 kWh") {
  Frame f = parse_good(kEnergyReply);
  CHECK(f.address == kMeter);
  CHECK(f.control == 0x91);
  CHECK(f.data == Bytes{0x00, 0x00, 0x01, 0x00, 0x67, 0x45, 0x23, 0x01});
  auto r = read_data_value(f, kMeter, 0x00010000);
  REQUIRE(r.is_ok());
  // 1234567 / 100 is one correctly rounded division: exactly the double nearest 12345.67.
  CHECK(r->value == 12345.67);
}

TEST_CASE("read data: a captured exchange decodes to 0.26 kWh") {
  // Published capture ("DLT645-2007报文解析"): meter 000000000161 answers
  // 68 61 01 00 00 00 00 68 91 08 33 33 34 33 59 33 33 33 8A 16 ("000000.26 kWh").
  const Bytes wire{0x68, 0x61, 0x01, 0x00, 0x00, 0x00, 0x00, 0x68, 0x91, 0x08,
                   0x33, 0x33, 0x34, 0x33, 0x59, 0x33, 0x33, 0x33, 0x8A, 0x16};
  auto r = read_data_value(parse_good(wire), *parse_address("000000000161"), 0x00010000);
  REQUIRE(r.is_ok());
  CHECK(r->value == 0.26);
}

TEST_CASE("read data: voltage 220.1 V") {
  // DI 02010100 sent 00 01 01 02 -> 33 34 34 35; 2201 sent 01 22 -> 34 55.
  // CS = 0x16C + 91 + 06 + 33 + 34 + 34 + 35 + 34 + 55 = 0x35C -> 5C.
  const Bytes wire{0x68, 0x56, 0x34, 0x12, 0x00, 0x00, 0x00, 0x68, 0x91,
                   0x06, 0x33, 0x34, 0x34, 0x35, 0x34, 0x55, 0x5C, 0x16};
  auto r = read_data_value(parse_good(wire), kMeter, 0x02010100);
  REQUIRE(r.is_ok());
  CHECK(r->value == 220.1);
}

TEST_CASE("read data: negative current -1.234 A, sign in the top bit") {
  // DI 02020100 -> 33 34 35 35; 001234 sent 34 12 00, sign bit on the last byte: 34 12 80,
  // +0x33 = 67 45 B3. CS = 0x16C + 91 + 07 + 33 + 34 + 35 + 35 + 67 + 45 + B3 = 0x434 -> 34.
  const Bytes wire{0x68, 0x56, 0x34, 0x12, 0x00, 0x00, 0x00, 0x68, 0x91, 0x07,
                   0x33, 0x34, 0x35, 0x35, 0x67, 0x45, 0xB3, 0x34, 0x16};
  auto r = read_data_value(parse_good(wire), kMeter, 0x02020100);
  REQUIRE(r.is_ok());
  CHECK(r->value == -1.234);
  // Unsigned, the same bytes would read 801.234. Overriding decimals keeps the DI's sign rule.
  auto with_decimals = read_data_value(parse_good(wire), kMeter, 0x02020100, 2);
  REQUIRE(with_decimals.is_ok());
  CHECK(with_decimals->value == -12.34);
}

TEST_CASE("read data: 0xB1 (more frames follow) still carries the value") {
  // kEnergyReply with C = B1: CS = 0x6E + 0x20 = 0x8E.
  Bytes wire = kEnergyReply;
  wire[8] = 0xB1;
  wire[18] = 0x8E;
  auto r = read_data_value(parse_good(wire), kMeter, 0x00010000);
  REQUIRE(r.is_ok());
  CHECK(r->value == 12345.67);
}

TEST_CASE("exception reply 0xD1 names the error bits") {
  // 68 56 34 12 00 00 00 68 D1 01 ERR+33 CS 16; ERR 02: 0x16C + D1 + 01 + 35 = 0x273 -> 73.
  const Bytes no_data{0x68, 0x56, 0x34, 0x12, 0x00, 0x00, 0x00, 0x68,
                      0xD1, 0x01, 0x35, 0x73, 0x16};
  auto r = read_data_value(parse_good(no_data), kMeter, 0x00010000);
  REQUIRE_FALSE(r.is_ok());
  CHECK_THAT(r.status().message(), Catch::Contains("no requested data"));
  CHECK_THAT(r.status().message(), Catch::Contains("0x02"));
  CHECK_THAT(r.status().message(), !Catch::Contains("password"));

  // ERR 06 = bits 1 and 2: 0x16C + D1 + 01 + 39 = 0x277 -> 77.
  const Bytes two_bits{0x68, 0x56, 0x34, 0x12, 0x00, 0x00, 0x00, 0x68,
                       0xD1, 0x01, 0x39, 0x77, 0x16};
  auto r2 = read_data_value(parse_good(two_bits), kMeter, 0x00010000);
  REQUIRE_FALSE(r2.is_ok());
  CHECK_THAT(r2.status().message(), Catch::Contains("no requested data"));
  CHECK_THAT(r2.status().message(), Catch::Contains("password error / unauthorized"));

  Frame each;
  each.address = kMeter;
  each.control = 0xD1;
  const char* names[] = {"other error",
                         "no requested data",
                         "password error / unauthorized",
                         "communication rate cannot be changed",
                         "year time zone count exceeded",
                         "daily time slot count exceeded",
                         "tariff count exceeded"};
  for (int bit = 0; bit < 7; ++bit) {
    each.data = {static_cast<uint8_t>(1u << bit)};
    auto e = read_data_value(each, kMeter, 0x00010000);
    REQUIRE_FALSE(e.is_ok());
    CHECK_THAT(e.status().message(), Catch::Contains(names[bit]));
  }
  each.data.clear();
  CHECK_THAT(read_data_value(each, kMeter, 0x00010000).status().message(),
             Catch::Contains("without error byte"));
}

TEST_CASE("bad checksum is bad and resyncs past the start byte only") {
  Bytes wire = with_preamble(kEnergyReply);
  wire[22] = 0x6F;  // CS, was 6E
  Parsed p = parse(wire);
  CHECK(p.outcome == Outcome::kBad);
  CHECK_THAT(p.message, Catch::Contains("checksum"));
  CHECK(p.consumed == 5);  // four FE and the false 68

  // Any one corrupted byte from the address through DATA changes the sum.
  for (std::size_t i = 1; i < kEnergyReply.size() - 2; ++i) {
    if (i == 7 || i == 9) continue;  // the second 68 and L have their own checks
    Bytes bent = kEnergyReply;
    bent[i] ^= 0x10;
    INFO("byte " << i);
    Parsed q = parse(bent);
    CHECK(q.outcome == Outcome::kBad);
    CHECK_THAT(q.message, Catch::Contains("checksum"));
  }
}

TEST_CASE("reply from another address, another DI or with another control is an error") {
  // Meter 000000123457: A0 = 57, so CS = 0x6E + 1 = 6F.
  Bytes other = kEnergyReply;
  other[1] = 0x57;
  other[18] = 0x6F;
  auto r = read_data_value(parse_good(other), kMeter, 0x00010000);
  REQUIRE_FALSE(r.is_ok());
  CHECK_THAT(r.status().message(), Catch::Contains("000000123457"));
  CHECK_THAT(r.status().message(), Catch::Contains("expected 000000123456"));

  // A wildcard request (AA in the high bytes) accepts whatever digits the meter fills in.
  const Address wildcard{0x56, 0x34, 0x12, 0xAA, 0xAA, 0xAA};
  CHECK(read_data_value(parse_good(kEnergyReply), wildcard, 0x00010000).is_ok());

  // Echo of DI 00020000 (DI2 byte 35): CS = 0x6E + 1 = 6F.
  Bytes other_di = kEnergyReply;
  other_di[12] = 0x35;
  other_di[18] = 0x6F;
  auto d = read_data_value(parse_good(other_di), kMeter, 0x00010000);
  REQUIRE_FALSE(d.is_ok());
  CHECK_THAT(d.status().message(), Catch::Contains("echoes DI 00020000"));

  Frame f = parse_good(kEnergyReply);
  f.control = 0x93;
  CHECK_THAT(read_data_value(f, kMeter, 0x00010000).status().message(),
             Catch::Contains("unexpected control code 0x93"));
  f.control = 0x11;  // our own request echoed back by a wiring fault
  CHECK_FALSE(read_data_value(f, kMeter, 0x00010000).is_ok());
}

TEST_CASE("a frame cut at every length needs more, and never drops its start") {
  const Bytes wire = with_preamble(kEnergyReply);
  for (std::size_t len = 0; len < wire.size(); ++len) {
    Parsed p = parse_frame(std::span(wire).first(len));
    INFO("length " << len << ": " << p.message);
    CHECK(p.outcome == Outcome::kNeedMore);
    CHECK(p.consumed == std::min<std::size_t>(len, 4));
  }
  CHECK(parse(wire).outcome == Outcome::kGood);
}

TEST_CASE("garbage and any number of FE before the frame are skipped") {
  Bytes wire{0x00, 0x13, 0xFF, 0xFE, 0xFE, 0xFE, 0xFE, 0xFE, 0xFE};
  wire.insert(wire.end(), kEnergyReply.begin(), kEnergyReply.end());
  wire.push_back(0x68);  // the start of the next frame stays in the buffer
  Parsed p = parse(wire);
  REQUIRE(p.outcome == Outcome::kGood);
  CHECK(p.consumed == 9 + kEnergyReply.size());
  CHECK(read_data_value(p.frame, kMeter, 0x00010000)->value == 12345.67);

  // Only garbage: need more, and the garbage may go.
  Parsed g = parse(Bytes{0xFE, 0xFE, 0x00});
  CHECK(g.outcome == Outcome::kNeedMore);
  CHECK(g.consumed == 3);
}

TEST_CASE("a stray 0x68 in the noise costs one byte, then the real frame parses") {
  // A stray 68 whose offset 7 lands on the real frame's A3 (00), not on a second 68.
  Bytes wire{0x68, 0x01, 0x02};
  wire.insert(wire.end(), kEnergyReply.begin(), kEnergyReply.end());
  std::span<const uint8_t> rest(wire);
  int bad = 0;
  int good = 0;
  while (!rest.empty()) {
    Parsed p = parse_frame(rest);
    if (p.outcome == Outcome::kNeedMore) break;
    REQUIRE(p.consumed > 0);
    (p.outcome == Outcome::kGood ? good : bad)++;
    rest = rest.subspan(p.consumed);
  }
  CHECK(bad == 1);
  CHECK(good == 1);
  CHECK(rest.empty());
}

TEST_CASE("missing end byte is bad") {
  Bytes wire = kEnergyReply;
  wire.back() = 0x17;
  Parsed p = parse(wire);
  CHECK(p.outcome == Outcome::kBad);
  CHECK_THAT(p.message, Catch::Contains("end byte"));
  CHECK(p.consumed == 1);
}

TEST_CASE("missing second start byte is bad as soon as offset 7 arrives") {
  Bytes wire = kEnergyReply;
  wire[7] = 0x69;
  Parsed p = parse_frame(std::span(wire).first(8));
  CHECK(p.outcome == Outcome::kBad);
  CHECK_THAT(p.message, Catch::Contains("second start byte"));
  CHECK(p.consumed == 1);
}

TEST_CASE("length above 200 is bad as soon as L arrives") {
  // L = C9 (201): no need to wait for 213 bytes that will never come.
  const Bytes head{0xFE, 0x68, 0x56, 0x34, 0x12, 0x00, 0x00, 0x00, 0x68, 0x91, 0xC9};
  Parsed p = parse(head);
  CHECK(p.outcome == Outcome::kBad);
  CHECK_THAT(p.message, Catch::Contains("length 201 out of range"));
  CHECK(p.consumed == 2);

  // L = C8 (200) is legal: still waiting for DATA.
  Bytes max = head;
  max.back() = 0xC8;
  CHECK(parse(max).outcome == Outcome::kNeedMore);
}

TEST_CASE("a BCD nibble above 9 is an error, never a number") {
  // Voltage reply with value bytes 0A 22 (+33: 3D 55): the low digit is A.
  // CS = 0x16C + 91 + 06 + 33 + 34 + 34 + 35 + 3D + 55 = 0x365 -> 65.
  const Bytes low{0x68, 0x56, 0x34, 0x12, 0x00, 0x00, 0x00, 0x68, 0x91,
                  0x06, 0x33, 0x34, 0x34, 0x35, 0x3D, 0x55, 0x65, 0x16};
  auto r = read_data_value(parse_good(low), kMeter, 0x02010100);
  REQUIRE_FALSE(r.is_ok());
  CHECK(r.status().code() == gw::Status::Code::kCorrupt);
  CHECK_THAT(r.status().message(), Catch::Contains("invalid BCD byte 0x0A"));

  Frame f = parse_good(low);
  f.data = {0x00, 0x01, 0x01, 0x02, 0x01, 0xF2};  // high digit F in the top byte
  CHECK_FALSE(read_data_value(f, kMeter, 0x02010100).is_ok());
  // Signed format: the top bit is the sign, the rest must still be BCD (8A -> sign + 0A).
  f.data = {0x00, 0x01, 0x02, 0x02, 0x00, 0x00, 0x8A};
  CHECK_FALSE(read_data_value(f, kMeter, 0x02020100).is_ok());
  f.data = {0x00, 0x01, 0x02, 0x02, 0x00, 0x00, 0x89};
  CHECK(read_data_value(f, kMeter, 0x02020100)->value == -90.0);
}

TEST_CASE("standard formats of the common DIs") {
  struct Row {
    uint32_t di;
    int bytes;
    int decimals;
    bool sign;
  };
  const Row rows[] = {
      {0x00000000, 4, 2, true},  {0x00010000, 4, 2, false}, {0x00020000, 4, 2, false},
      {0x02010100, 2, 1, false}, {0x02010200, 2, 1, false}, {0x02010300, 2, 1, false},
      {0x0201FF00, 2, 1, false}, {0x02020100, 3, 3, true},  {0x02020300, 3, 3, true},
      {0x02030000, 3, 4, true},  {0x02030200, 3, 4, true},  {0x02060000, 2, 3, true},
      {0x02060100, 2, 3, true},  {0x02800002, 2, 2, false},
  };
  for (const Row& row : rows) {
    INFO("DI " << std::hex << row.di);
    auto f = standard_format(row.di);
    REQUIRE(f.has_value());
    CHECK(f->bytes == row.bytes);
    CHECK(f->decimals == row.decimals);
    CHECK(f->sign_in_msb == row.sign);
  }
  CHECK_FALSE(standard_format(0x02010000).has_value());  // no "total voltage"
  CHECK_FALSE(standard_format(0x02020000).has_value());
  CHECK_FALSE(standard_format(0x04000503).has_value());  // status word: not a number
  CHECK_FALSE(standard_format(0x02800001).has_value());
}

TEST_CASE("each standard format decodes a value written in it") {
  struct Row {
    uint32_t di;
    Bytes value;  // lowest byte first, plain
    double expected;
  };
  const Row rows[] = {
      {0x00000000, {0x01, 0x00, 0x00, 0x80}, -0.01},  // combined energy can go negative
      {0x00020000, {0x99, 0x99, 0x99, 0x99}, 999999.99},
      {0x02030000, {0x56, 0x34, 0x92}, -12.3456},
      {0x02060000, {0x87, 0x09}, 0.987},
      {0x02060000, {0x00, 0x81}, -0.1},
      {0x02800002, {0x02, 0x50}, 50.02},
  };
  for (const Row& row : rows) {
    Bytes data{static_cast<uint8_t>(row.di), static_cast<uint8_t>(row.di >> 8),
               static_cast<uint8_t>(row.di >> 16), static_cast<uint8_t>(row.di >> 24)};
    data.insert(data.end(), row.value.begin(), row.value.end());
    auto r = read_data_value(parse_good(test_frame(kMeter, 0x91, data)), kMeter, row.di);
    INFO("DI " << std::hex << row.di << ": " << r.status().message());
    REQUIRE(r.is_ok());
    CHECK(r->value == row.expected);
  }
}

TEST_CASE("decimals override, unknown DIs and wrong value sizes") {
  Frame f = parse_good(kEnergyReply);
  CHECK(read_data_value(f, kMeter, 0x00010000, 3)->value == 1234.567);
  CHECK(read_data_value(f, kMeter, 0x00010000, 0)->value == 1234567.0);
  CHECK_FALSE(read_data_value(f, kMeter, 0x00010000, -1).is_ok());

  // An unknown DI needs decimals, then decodes every value byte unsigned.
  f.data = {0x01, 0x00, 0x90, 0x04, 0x45, 0x23, 0x01};
  auto unknown = read_data_value(f, kMeter, 0x04900001);
  REQUIRE_FALSE(unknown.is_ok());
  CHECK_THAT(unknown.status().message(), Catch::Contains("configure its decimals"));
  CHECK(read_data_value(f, kMeter, 0x04900001, 1)->value == 1234.5);

  // Voltage with three value bytes instead of two.
  f.data = {0x00, 0x01, 0x01, 0x02, 0x01, 0x22, 0x00};
  CHECK_THAT(read_data_value(f, kMeter, 0x02010100).status().message(),
             Catch::Contains("expected 2"));
  f.data = {0x00, 0x00, 0x01};  // not even a DI
  CHECK_FALSE(read_data_value(f, kMeter, 0x00010000).is_ok());
}

TEST_CASE("a block DI decodes its first element") {
  Frame f;
  f.address = kMeter;
  f.control = 0x91;
  // 0201FF00: A 220.1, B 221.2, C 222.3.
  f.data = {0x00, 0xFF, 0x01, 0x02, 0x01, 0x22, 0x12, 0x22, 0x23, 0x22};
  CHECK(read_data_value(f, kMeter, 0x0201FF00)->value == 220.1);
  f.data.pop_back();  // 5 value bytes: not a whole number of 2-byte elements
  CHECK_THAT(read_data_value(f, kMeter, 0x0201FF00).status().message(),
             Catch::Contains("a multiple of 2"));
}

TEST_CASE("no single flipped bit in a frame parses as good") {
  const Bytes wire = kEnergyReply;
  for (std::size_t i = 0; i < wire.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      Bytes bent = wire;
      bent[i] ^= static_cast<uint8_t>(1u << bit);
      std::span<const uint8_t> rest(bent);
      // Drain the buffer as a reader would; no frame may come out of it.
      while (!rest.empty()) {
        Parsed p = parse_frame(rest);
        INFO("byte " << i << " bit " << bit);
        REQUIRE(p.outcome != Outcome::kGood);
        if (p.outcome == Outcome::kNeedMore) break;
        REQUIRE(p.consumed >= 1);
        REQUIRE(p.consumed <= rest.size());
        rest = rest.subspan(p.consumed);
      }
    }
  }
}

TEST_CASE("random bytes: parse_frame stays in bounds and always makes progress") {
  // Deterministic xorshift; bytes biased towards 68, 16 and FE so frames almost happen.
  uint32_t state = 0x645u;
  auto next = [&] {
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    return state;
  };
  const uint8_t interesting[] = {0x68, 0x16, 0xFE, 0x00, 0xC8, 0xC9};
  for (int round = 0; round < 20000; ++round) {
    Bytes buf(next() % 64);
    for (auto& b : buf) {
      const uint32_t r = next();
      b = (r & 3) == 0 ? interesting[(r >> 2) % 6] : static_cast<uint8_t>(r >> 8);
    }
    std::span<const uint8_t> rest(buf);
    while (true) {
      Parsed p = parse_frame(rest);
      REQUIRE(p.consumed <= rest.size());
      if (p.outcome == Outcome::kNeedMore) break;
      REQUIRE(p.consumed >= 1);
      if (p.outcome == Outcome::kGood) REQUIRE(p.frame.data.size() <= 200);
      rest = rest.subspan(p.consumed);
    }
  }
}

// ---- The simulated meter, decoded by the codec ----------------------------------------------

TEST_CASE("simulated meter: every served DI decodes to the value values_json() reports") {
  gw::sim::Dlt645Meter meter("000000123456", 3);
  const struct {
    const char* di;
    const char* name;
  } points[] = {
      {"00000000", "energy_total"}, {"00010000", "energy_total"}, {"00020000", "energy_reverse"},
      {"02010100", "voltage_a"},    {"02010200", "voltage_b"},    {"02010300", "voltage_c"},
      {"0201FF00", "voltage_a"},    {"02020100", "current_a"},    {"02030000", "active_power"},
      {"02060000", "power_factor"}, {"02800002", "frequency"},
  };
  bool saw_negative = false;
  for (int k : {0, 1, 2, 7, 1000}) {
    meter.tick(k);
    const std::string json = meter.values_json();
    for (const auto& point : points) {
      const uint32_t di = *parse_di(point.di);
      Frame request = parse_good(build_read_data(kMeter, di));
      auto reply = meter.handle(request);
      REQUIRE(reply.has_value());
      CHECK(Bytes(reply->begin(), reply->begin() + 4) == Bytes{0xFE, 0xFE, 0xFE, 0xFE});
      auto value = read_data_value(parse_good(*reply), kMeter, di);
      INFO("tick " << k << " DI " << point.di << " " << json << " " << value.status().message());
      REQUIRE(value.is_ok());
      CHECK(value->value == json_value(json, point.name));
      saw_negative = saw_negative || value->value < 0;
    }
  }
  CHECK(saw_negative);  // tick 1 with index 3 is an export tick: signs are exercised
}

TEST_CASE("simulated meter: values move with the tick and differ between meters") {
  gw::sim::Dlt645Meter a("000000000001", 0);
  gw::sim::Dlt645Meter b("000000000002", 1);
  a.tick(0);
  CHECK(json_value(a.values_json(), "energy_total") == 1000.0);
  a.tick(100);
  CHECK(json_value(a.values_json(), "energy_total") == 1037.0);
  b.tick(100);
  CHECK(json_value(b.values_json(), "energy_total") == 1137.0);
  const double f = json_value(a.values_json(), "frequency");
  CHECK(f >= 49.9);
  CHECK(f <= 50.1);
  const double v = json_value(a.values_json(), "voltage_c");
  CHECK(v >= 220.0);
  CHECK(v < 230.0);
}

TEST_CASE("simulated meter: unknown DI, other meters, broadcast time sync, read address") {
  gw::sim::Dlt645Meter meter("000000123456", 0);

  // Unknown DI: D1 with bit 1, which the codec reports by name.
  auto no_data = meter.handle(parse_good(build_read_data(kMeter, 0x04000503)));
  REQUIRE(no_data.has_value());
  Frame f = parse_good(*no_data);
  CHECK(f.control == 0xD1);
  CHECK(f.data == Bytes{0x02});
  CHECK_THAT(read_data_value(f, kMeter, 0x04000503).status().message(),
             Catch::Contains("no requested data"));

  // Another meter's address, broadcast time sync and other meters' replies: silence.
  CHECK_FALSE(meter.handle(parse_good(build_read_data(*parse_address("000000123457"),
                                                      0x00010000)))
                  .has_value());
  CHECK_FALSE(meter.handle(parse_good(build_time_sync(std::chrono::system_clock::now())))
                  .has_value());
  CHECK_FALSE(meter.handle(parse_good(kEnergyReply)).has_value());

  // Read address: 93 with our address, in the address field and in the data.
  auto who = meter.handle(parse_good(build_read_address()));
  REQUIRE(who.has_value());
  Frame w = parse_good(*who);
  CHECK(w.control == 0x93);
  CHECK(w.address == kMeter);
  CHECK(w.data == Bytes(kMeter.begin(), kMeter.end()));
  CHECK(meter.address() == kMeter);

  // Wildcard high bytes reach us and the reply carries the real address.
  const Address wildcard{0x56, 0x34, 0xAA, 0xAA, 0xAA, 0xAA};
  auto wild = meter.handle(parse_good(build_read_data(wildcard, 0x00010000)));
  REQUIRE(wild.has_value());
  CHECK(parse_good(*wild).address == kMeter);

  // A command the meter does not support: C | C0 with "other error".
  Frame write = parse_good(build_read_data(kMeter, 0x00010000));
  write.control = 0x14;
  auto refused = meter.handle(write);
  REQUIRE(refused.has_value());
  CHECK(parse_good(*refused).control == 0xD4);
  CHECK(parse_good(*refused).data == Bytes{0x01});

  CHECK_THROWS_AS(gw::sim::Dlt645Meter("12345", 0), std::invalid_argument);
}
