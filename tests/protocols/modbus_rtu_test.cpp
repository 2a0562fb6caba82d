#include "protocols/modbus_rtu.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

using gw::protocols::RegisterTable;
using namespace gw::protocols::modbus_rtu;
using Bytes = std::vector<uint8_t>;
using Outcome = Response::Outcome;

namespace {

Bytes hex(const std::string& text) {
  Bytes out;
  for (std::size_t i = 0; i + 1 < text.size();) {
    if (text[i] == ' ') {
      ++i;
      continue;
    }
    out.push_back(static_cast<uint8_t>(std::stoul(text.substr(i, 2), nullptr, 16)));
    i += 2;
  }
  return out;
}

// Appends the CRC, low byte first. Only used after crc16 itself is pinned by published vectors.
Bytes with_crc(Bytes frame) {
  const uint16_t crc = crc16(frame);
  frame.push_back(static_cast<uint8_t>(crc));
  frame.push_back(static_cast<uint8_t>(crc >> 8));
  return frame;
}

Bytes truncate(const Bytes& frame, std::size_t length) {
  return Bytes(frame.begin(), frame.begin() + static_cast<std::ptrdiff_t>(length));
}

Bytes flip_bit(Bytes frame, std::size_t byte, int bit) {
  frame[byte] = static_cast<uint8_t>(frame[byte] ^ (1u << bit));
  return frame;
}

Bytes corrupt_crc_low(Bytes frame) {
  frame[frame.size() - 2] ^= 0x01;
  return frame;
}

Bytes corrupt_crc_high(Bytes frame) {
  frame[frame.size() - 1] ^= 0x80;
  return frame;
}

struct Answer {
  const char* what;
  uint8_t unit;
  RegisterTable table;
  uint16_t count;
  Bytes frame;
};

// One well-formed answer per read function, plus an exception frame. The first three are the
// Modbus over Serial Line examples, with the CRCs that documentation publishes.
std::vector<Answer> valid_answers() {
  return {
      {"FC1 19-byte example", 0x11, RegisterTable::kCoil, 37, hex("11 01 05 CD 6B B2 0E 1B 45 E6")},
      {"FC3 example", 0x11, RegisterTable::kHolding, 3, hex("11 03 06 AE 41 56 52 43 40 49 AD")},
      {"FC4 example", 0x11, RegisterTable::kInput, 1, hex("11 04 02 00 0A F8 F4")},
      {"FC2 two bytes", 0x01, RegisterTable::kDiscrete, 10, hex("01 02 02 05 03 FA E9")},
      {"FC3 exception", 0x01, RegisterTable::kHolding, 10, hex("01 83 02 C0 F1")},
  };
}

}  // namespace

TEST_CASE("crc16 matches published CRC-16/MODBUS values") {
  struct Vector {
    Bytes bytes;
    uint16_t crc;
  };
  const std::vector<Vector> vectors = {
      {Bytes{'1', '2', '3', '4', '5', '6', '7', '8', '9'}, 0x4B37},  // the catalogue check value
      {hex("01 03 00 00 00 0A"), 0xCDC5},
      {hex("11 03 00 6B 00 03"), 0x8776},
      {hex("01 03 00 00 00 01"), 0x0A84},
      {hex("01 03 00 05 00 01"), 0x0B94},
      {hex("07 10 00 02 00 01 02 00 08"), 0xD48D},
      {hex("11 01 05 CD 6B B2 0E 1B"), 0xE645},
      {hex("11 03 06 AE 41 56 52 43 40"), 0xAD49},
      {hex("11 04 02 00 0A"), 0xF4F8},
      {hex("01 83 02"), 0xF1C0},
      {hex("01 01 05 10 00 01"), 0xC3FC},
      {hex("01 01 01 48"), 0xBE51},
  };
  for (const Vector& v : vectors) {
    INFO("vector of " << v.bytes.size() << " bytes");
    CHECK(crc16(v.bytes) == v.crc);
    // With its CRC appended low byte first, a frame's CRC is 0: what a receiver can rely on.
    Bytes framed = v.bytes;
    framed.push_back(static_cast<uint8_t>(v.crc));
    framed.push_back(static_cast<uint8_t>(v.crc >> 8));
    CHECK(crc16(framed) == 0);
  }
  CHECK(crc16(Bytes{}) == 0xFFFF);  // the initial value, untouched
}

TEST_CASE("read_function maps tables to function codes 1-4") {
  CHECK(read_function(RegisterTable::kCoil) == 1);
  CHECK(read_function(RegisterTable::kDiscrete) == 2);
  CHECK(read_function(RegisterTable::kHolding) == 3);
  CHECK(read_function(RegisterTable::kInput) == 4);
}

TEST_CASE("build_read_request produces the exact wire bytes") {
  CHECK(build_read_request(1, RegisterTable::kHolding, 0, 10) == hex("01 03 00 00 00 0A C5 CD"));
  CHECK(build_read_request(0x11, RegisterTable::kHolding, 0x6B, 3) ==
        hex("11 03 00 6B 00 03 76 87"));
  CHECK(build_read_request(0x11, RegisterTable::kCoil, 0x13, 0x25) ==
        hex("11 01 00 13 00 25 0E 84"));
  CHECK(build_read_request(0x11, RegisterTable::kDiscrete, 0xC4, 0x16) ==
        hex("11 02 00 C4 00 16 BA A9"));
  CHECK(build_read_request(0x11, RegisterTable::kInput, 8, 1) == hex("11 04 00 08 00 01 B2 98"));
  CHECK(build_read_request(1, RegisterTable::kCoil, 0x0510, 1) == hex("01 01 05 10 00 01 FC C3"));
  // High bytes of start and count, highest unit id and the largest counts.
  CHECK(build_read_request(247, RegisterTable::kHolding, 0xFFFF, 125) ==
        hex("F7 03 FF FF 00 7D 91 59"));
  CHECK(build_read_request(247, RegisterTable::kCoil, 0, 2000) == hex("F7 01 00 00 07 D0 2B 30"));
}

TEST_CASE("response_length counts header, data and CRC") {
  CHECK(response_length(RegisterTable::kHolding, 10) == 25);
  CHECK(response_length(RegisterTable::kInput, 1) == 7);
  CHECK(response_length(RegisterTable::kHolding, 125) == 255);
  CHECK(response_length(RegisterTable::kCoil, 8) == 6);
  CHECK(response_length(RegisterTable::kCoil, 9) == 7);
  CHECK(response_length(RegisterTable::kDiscrete, 37) == 10);
  CHECK(response_length(RegisterTable::kCoil, 2000) == 255);
}

TEST_CASE("register answers decode big-endian registers") {
  const Response fc3 = parse_read_response(hex("11 03 06 AE 41 56 52 43 40 49 AD"), 0x11,
                                           RegisterTable::kHolding, 3);
  REQUIRE(fc3.outcome == Outcome::kGood);
  CHECK(fc3.error == Error::kNone);
  CHECK(fc3.frame_length == 11);
  CHECK(fc3.registers == std::vector<uint16_t>{0xAE41, 0x5652, 0x4340});
  CHECK(fc3.bits.empty());

  const Response fc4 =
      parse_read_response(hex("11 04 02 00 0A F8 F4"), 0x11, RegisterTable::kInput, 1);
  REQUIRE(fc4.outcome == Outcome::kGood);
  CHECK(fc4.frame_length == 7);
  CHECK(fc4.registers == std::vector<uint16_t>{0x000A});

  // A register table answer built here: 0x8001 checks that the high byte comes first.
  const Response built =
      parse_read_response(with_crc(hex("05 04 04 80 01 00 FF")), 5, RegisterTable::kInput, 2);
  REQUIRE(built.outcome == Outcome::kGood);
  CHECK(built.registers == std::vector<uint16_t>{0x8001, 0x00FF});
}

TEST_CASE("bit answers unpack least significant bit first") {
  const Response coils =
      parse_read_response(hex("11 01 05 CD 6B B2 0E 1B 45 E6"), 0x11, RegisterTable::kCoil, 37);
  REQUIRE(coils.outcome == Outcome::kGood);
  CHECK(coils.frame_length == 10);
  CHECK(coils.registers.empty());
  // CD = 1100 1101, 6B = 0110 1011, B2 = 1011 0010, 0E = 0000 1110, 1B = ...1 1011 (5 bits).
  const std::vector<uint8_t> expected = {1, 0, 1, 1, 0, 0, 1, 1,  //
                                         1, 1, 0, 1, 0, 1, 1, 0,  //
                                         0, 1, 0, 0, 1, 1, 0, 1,  //
                                         0, 1, 1, 1, 0, 0, 0, 0,  //
                                         1, 1, 0, 1, 1};
  CHECK(coils.bits == expected);

  // A device manual's example: 0x48 answers one coil, whose state is the lowest bit (0).
  const Response one = parse_read_response(hex("01 01 01 48 51 BE"), 1, RegisterTable::kCoil, 1);
  REQUIRE(one.outcome == Outcome::kGood);
  CHECK(one.bits == std::vector<uint8_t>{0});
  const Response eight = parse_read_response(hex("01 01 01 48 51 BE"), 1, RegisterTable::kCoil, 8);
  REQUIRE(eight.outcome == Outcome::kGood);
  CHECK(eight.bits == std::vector<uint8_t>{0, 0, 0, 1, 0, 0, 1, 0});

  // Discrete inputs, ten bits over two bytes; the padding bits of the last byte do not appear.
  const Response discrete =
      parse_read_response(hex("01 02 02 05 03 FA E9"), 1, RegisterTable::kDiscrete, 10);
  REQUIRE(discrete.outcome == Outcome::kGood);
  CHECK(discrete.bits == std::vector<uint8_t>{1, 0, 1, 0, 0, 0, 0, 0, 1, 1});
  const Response padded =
      parse_read_response(with_crc(hex("01 02 02 80 FE")), 1, RegisterTable::kDiscrete, 10);
  REQUIRE(padded.outcome == Outcome::kGood);
  CHECK(padded.bits == std::vector<uint8_t>{0, 0, 0, 0, 0, 0, 0, 1, 0, 1});
}

TEST_CASE("bytes after the frame are left to the caller") {
  Bytes line = hex("11 04 02 00 0A F8 F4");
  const Bytes extra = hex("00 AA 55");
  line.insert(line.end(), extra.begin(), extra.end());
  const Response r = parse_read_response(line, 0x11, RegisterTable::kInput, 1);
  REQUIRE(r.outcome == Outcome::kGood);
  CHECK(r.frame_length == 7);  // the caller sees 3 more bytes and reports kExtraBytes
  CHECK(r.registers == std::vector<uint16_t>{0x000A});
}

TEST_CASE("every truncation of a valid answer needs more bytes") {
  for (const Answer& answer : valid_answers()) {
    for (std::size_t length = 0; length < answer.frame.size(); ++length) {
      INFO(answer.what << ", first " << length << " of " << answer.frame.size() << " bytes");
      const Response r = parse_read_response(truncate(answer.frame, length), answer.unit,
                                             answer.table, answer.count);
      CHECK(r.outcome == Outcome::kNeedMore);
      CHECK(r.error == Error::kNone);
      CHECK(r.frame_length == 0);
    }
    INFO(answer.what << ", whole frame");
    const Response whole =
        parse_read_response(answer.frame, answer.unit, answer.table, answer.count);
    CHECK(whole.outcome != Outcome::kNeedMore);
    CHECK(whole.frame_length == answer.frame.size());
  }
}

TEST_CASE("a corrupted CRC is reported as such, whichever byte of it") {
  for (const Answer& answer : valid_answers()) {
    for (const Bytes& frame : {corrupt_crc_low(answer.frame), corrupt_crc_high(answer.frame)}) {
      INFO(answer.what);
      const Response r = parse_read_response(frame, answer.unit, answer.table, answer.count);
      CHECK(r.outcome == Outcome::kBad);
      CHECK(r.error == Error::kBadCrc);
      CHECK(r.frame_length == answer.frame.size());
      CHECK(r.registers.empty());
      CHECK(r.bits.empty());
      CHECK(r.message.find("CRC") != std::string::npos);
    }
  }
}

TEST_CASE("no single flipped bit yields a good answer") {
  // CRC-16 catches every single-bit error; the parser must not let one through by judging the
  // header before the CRC.
  const Answer answer = valid_answers()[1];  // FC3, 11 bytes
  for (std::size_t byte = 0; byte < answer.frame.size(); ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      INFO("byte " << byte << " bit " << bit);
      const Bytes frame = flip_bit(answer.frame, byte, bit);
      const Response r = parse_read_response(frame, answer.unit, answer.table, answer.count);
      CHECK(r.outcome != Outcome::kGood);
      if (byte == 1) {
        CHECK(r.outcome == Outcome::kBad);  // another function code: delimited otherwise
      } else if (byte == 2 && frame[2] > answer.frame[2]) {
        CHECK(r.outcome == Outcome::kNeedMore);  // the byte count now claims more data
      } else {
        CHECK(r.outcome == Outcome::kBad);
        CHECK(r.error == Error::kBadCrc);
      }
    }
  }
}

TEST_CASE("an answer from another unit is kWrongUnit") {
  const Response fc3 = parse_read_response(hex("11 03 06 AE 41 56 52 43 40 49 AD"), 0x12,
                                           RegisterTable::kHolding, 3);
  CHECK(fc3.outcome == Outcome::kBad);
  CHECK(fc3.error == Error::kWrongUnit);
  CHECK(fc3.frame_length == 11);
  CHECK(fc3.registers.empty());

  for (const Answer& answer : valid_answers()) {
    INFO(answer.what);
    const Response r = parse_read_response(answer.frame, static_cast<uint8_t>(answer.unit + 1),
                                           answer.table, answer.count);
    CHECK(r.outcome == Outcome::kBad);
    CHECK(r.error == Error::kWrongUnit);
  }
}

TEST_CASE("an answer with another function code is kWrongFunction") {
  // Holding asked, input answered (same shape, valid CRC).
  const Response swapped =
      parse_read_response(with_crc(hex("01 04 02 00 07")), 1, RegisterTable::kHolding, 1);
  CHECK(swapped.outcome == Outcome::kBad);
  CHECK(swapped.error == Error::kWrongFunction);
  CHECK(swapped.frame_length == 7);

  // Coils asked, a register answer of the right byte count.
  const Response registers_for_bits =
      parse_read_response(with_crc(hex("01 03 02 00 07")), 1, RegisterTable::kCoil, 16);
  CHECK(registers_for_bits.error == Error::kWrongFunction);

  // An exception, but for another function.
  const Response other_exception =
      parse_read_response(with_crc(hex("01 84 02")), 1, RegisterTable::kHolding, 1);
  CHECK(other_exception.outcome == Outcome::kBad);
  CHECK(other_exception.error == Error::kWrongFunction);
  CHECK(other_exception.exception_code == 0);

  // A write echo (FC 6) is delimited as 8 bytes, then judged.
  const Bytes echo = with_crc(hex("01 06 00 01 00 03"));
  CHECK(parse_read_response(truncate(echo, 7), 1, RegisterTable::kHolding, 1).outcome ==
        Outcome::kNeedMore);
  CHECK(parse_read_response(echo, 1, RegisterTable::kHolding, 1).error == Error::kWrongFunction);

  // A function code that cannot be delimited is bad as soon as it is seen.
  const Response odd = parse_read_response(hex("01 2B"), 1, RegisterTable::kHolding, 1);
  CHECK(odd.outcome == Outcome::kBad);
  CHECK(odd.error == Error::kWrongFunction);
  CHECK(odd.frame_length == 2);
  const Response odd_other_unit = parse_read_response(hex("09 2B 0E"), 1, RegisterTable::kInput, 1);
  CHECK(odd_other_unit.outcome == Outcome::kBad);
  CHECK(odd_other_unit.error == Error::kWrongUnit);
  CHECK(odd_other_unit.frame_length == 3);
}

TEST_CASE("an exception answer for each table is kException with its code") {
  struct Case {
    RegisterTable table;
    uint8_t function;
  };
  for (const Case c : {Case{RegisterTable::kCoil, 0x81}, Case{RegisterTable::kDiscrete, 0x82},
                       Case{RegisterTable::kHolding, 0x83}, Case{RegisterTable::kInput, 0x84}}) {
    for (const uint8_t code : {uint8_t{1}, uint8_t{2}, uint8_t{3}, uint8_t{4}, uint8_t{11}}) {
      INFO("function " << int(c.function) << " code " << int(code));
      const Bytes frame = with_crc(Bytes{7, c.function, code});
      const Response r = parse_read_response(frame, 7, c.table, 5);
      CHECK(r.outcome == Outcome::kBad);
      CHECK(r.error == Error::kException);
      CHECK(r.exception_code == code);
      CHECK(r.frame_length == 5);
      CHECK(r.message.find("exception " + std::to_string(code)) != std::string::npos);
    }
  }
  // The published frame: unit 1, illegal data address for function 3.
  const Response published =
      parse_read_response(hex("01 83 02 C0 F1"), 1, RegisterTable::kHolding, 10);
  CHECK(published.error == Error::kException);
  CHECK(published.exception_code == 2);
}

TEST_CASE("a corrupted exception frame is a bad CRC, not an exception") {
  for (const Bytes& frame : {corrupt_crc_low(hex("01 83 02 C0 F1")),
                             corrupt_crc_high(hex("01 83 02 C0 F1")), hex("01 83 03 C0 F1")}) {
    const Response r = parse_read_response(frame, 1, RegisterTable::kHolding, 10);
    CHECK(r.outcome == Outcome::kBad);
    CHECK(r.error == Error::kBadCrc);
    CHECK(r.exception_code == 0);
    CHECK(r.frame_length == 5);
  }
  // From another unit, with a valid CRC: the unit is what is wrong.
  const Response other =
      parse_read_response(with_crc(hex("02 83 02")), 1, RegisterTable::kHolding, 10);
  CHECK(other.error == Error::kWrongUnit);
  CHECK(other.exception_code == 0);
}

TEST_CASE("a byte count that does not match the request is kBadByteCount") {
  // Three registers asked (6 bytes): two registers answered, with a valid CRC.
  const Bytes shorter = with_crc(hex("11 03 04 AE 41 56 52"));
  Response r = parse_read_response(shorter, 0x11, RegisterTable::kHolding, 3);
  CHECK(r.outcome == Outcome::kBad);
  CHECK(r.error == Error::kBadByteCount);
  CHECK(r.frame_length == shorter.size());
  CHECK(r.registers.empty());

  // Four registers answered: the frame is delimited by its own byte count first.
  const Bytes longer = with_crc(hex("11 03 08 AE 41 56 52 43 40 00 01"));
  for (std::size_t length = 0; length < longer.size(); ++length) {
    CHECK(parse_read_response(truncate(longer, length), 0x11, RegisterTable::kHolding, 3).outcome ==
          Outcome::kNeedMore);
  }
  r = parse_read_response(longer, 0x11, RegisterTable::kHolding, 3);
  CHECK(r.error == Error::kBadByteCount);
  CHECK(r.frame_length == 13);

  // An odd byte count for registers, and a bit answer one byte short.
  CHECK(
      parse_read_response(with_crc(hex("01 04 03 00 01 02")), 1, RegisterTable::kInput, 2).error ==
      Error::kBadByteCount);
  CHECK(parse_read_response(with_crc(hex("01 01 01 FF")), 1, RegisterTable::kCoil, 9).error ==
        Error::kBadByteCount);
  // More registers than a byte count can express: it can never match, and nothing is read.
  CHECK(
      parse_read_response(with_crc(hex("01 03 02 00 01")), 1, RegisterTable::kHolding, 200).error ==
      Error::kBadByteCount);
}

TEST_CASE("silent_interval is 3.5 characters of 11 bits, 1750 us above 19200 baud") {
  CHECK(silent_interval(9600) == std::chrono::microseconds(4011));   // 4010.4 rounded up
  CHECK(silent_interval(19200) == std::chrono::microseconds(2006));  // 2005.2 rounded up
  CHECK(silent_interval(1200) == std::chrono::microseconds(32084));
  CHECK(silent_interval(4800) == std::chrono::microseconds(8021));
  CHECK(silent_interval(19201) == std::chrono::microseconds(1750));
  CHECK(silent_interval(38400) == std::chrono::microseconds(1750));
  CHECK(silent_interval(115200) == std::chrono::microseconds(1750));
  CHECK(silent_interval(0) == std::chrono::microseconds(38'500'000));
  CHECK(silent_interval(-9600) == std::chrono::microseconds(38'500'000));
}

TEST_CASE("random and mangled input is answered without reading past it") {
  // Meant to run under ASan/UBSan as well: any out-of-bounds read shows there. The invariants
  // hold for every input whatever the build.
  std::mt19937 rng(20240601);
  const RegisterTable tables[] = {RegisterTable::kCoil, RegisterTable::kDiscrete,
                                  RegisterTable::kHolding, RegisterTable::kInput};
  const uint16_t counts[] = {0, 1, 2, 7, 8, 9, 125, 126, 127, 128, 2000, 2048, 65535};
  std::size_t good = 0;
  for (int round = 0; round < 200000; ++round) {
    const RegisterTable table = tables[rng() % 4];
    const uint16_t count = counts[rng() % std::size(counts)];
    const uint8_t unit = static_cast<uint8_t>(rng() % 4);
    Bytes bytes(rng() % 270);
    for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng());
    // Plausible headers make the parser go deeper than pure noise would.
    if (bytes.size() > 0 && rng() % 2) bytes[0] = unit;
    if (bytes.size() > 1 && rng() % 2) {
      bytes[1] = static_cast<uint8_t>(read_function(table) | (rng() % 3 == 0 ? 0x80 : 0));
    }
    if (bytes.size() > 2 && rng() % 2) bytes[2] = static_cast<uint8_t>(rng() % 16);
    if (bytes.size() > 4 && rng() % 2) {
      const std::size_t end = std::min<std::size_t>(bytes.size(), 3 + bytes[2] + 2);
      if (end >= 4) {
        Bytes body(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(end - 2));
        body = with_crc(body);
        std::copy(body.begin(), body.end(), bytes.begin());
      }
    }
    const Response r = parse_read_response(bytes, unit, table, count);
    if (r.outcome == Outcome::kNeedMore) {
      REQUIRE(r.frame_length == 0);
      continue;
    }
    REQUIRE(r.frame_length <= bytes.size());
    REQUIRE(r.frame_length >= 2);
    if (r.outcome == Outcome::kGood) {
      ++good;
      REQUIRE(crc16(truncate(bytes, r.frame_length)) == 0);
      REQUIRE(r.frame_length == response_length(table, count));
      REQUIRE((gw::protocols::is_bit_table(table) ? r.bits.size() : r.registers.size()) == count);
      for (uint8_t bit : r.bits) REQUIRE(bit <= 1);
    } else {
      REQUIRE(r.error != Error::kNone);
      REQUIRE(!r.message.empty());
    }
    // The verdict depends on the frame only, not on what follows it (except for a function
    // code that cannot be delimited, where everything received so far is the bad frame).
    Bytes longer = bytes;
    longer.push_back(static_cast<uint8_t>(rng()));
    const Response again = parse_read_response(longer, unit, table, count);
    REQUIRE(again.outcome == r.outcome);
    REQUIRE(again.error == r.error);
    const uint8_t function = bytes[1];
    const bool delimited =
        (function & 0x80) || (function >= 1 && function <= 6) || function == 15 || function == 16;
    REQUIRE(again.frame_length == (delimited ? r.frame_length : longer.size()));
  }
  CHECK(good > 100);  // the generator does reach the decoding paths
}
