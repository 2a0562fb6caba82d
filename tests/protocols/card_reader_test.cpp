// Card reader framing and card ids: every framing fed whole and byte by byte, garbage between
// frames, overflow and resync with bounded memory, every card format with its failures.
#include "protocols/card_reader.h"

#include <catch2/catch.hpp>
#include <map>
#include <random>
#include <string>
#include <vector>

using namespace gw::protocols::card_reader;

namespace {

std::vector<uint8_t> bytes(std::string_view s) { return {s.begin(), s.end()}; }
std::string text(std::span<const uint8_t> s) { return {s.begin(), s.end()}; }

// What a splitter handed out, collected for checking.
struct Collected {
  std::vector<std::string> frames;     // payloads
  std::vector<std::string> frame_raw;  // frames' raw bytes
  std::vector<Rejection> rejections;
  std::string dropped;  // all dropped bytes, in order
  std::size_t max_buffered = 0;
};

FrameSplitter::Sink collector(Collected& c) {
  return [&c](const Piece& p) {
    if (p.kind == Piece::Kind::kFrame) {
      c.frames.push_back(text(p.payload));
      c.frame_raw.push_back(text(p.raw));
    } else {
      c.dropped += text(p.raw);
      if (p.rejection) c.rejections.push_back(*p.rejection);
    }
  };
}

Collected split_whole(const Framing& f, std::string_view input) {
  FrameSplitter s(f);
  Collected c;
  s.feed(bytes(input), collector(c));
  c.max_buffered = s.buffered();
  return c;
}

Collected split_bytewise(const Framing& f, std::string_view input) {
  FrameSplitter s(f);
  Collected c;
  for (char ch : input) {
    const uint8_t b = static_cast<uint8_t>(ch);
    s.feed(std::span<const uint8_t>(&b, 1), collector(c));
    c.max_buffered = std::max(c.max_buffered, s.buffered());
  }
  return c;
}

std::vector<std::string> kinds(const Collected& c) {
  std::vector<std::string> out;
  for (const auto& r : c.rejections) out.push_back(r.kind);
  return out;
}

// Both ways of feeding must agree on frames, rejections and dropped bytes.
Collected split(const Framing& f, std::string_view input) {
  Collected whole = split_whole(f, input);
  Collected bytewise = split_bytewise(f, input);
  CHECK(whole.frames == bytewise.frames);
  CHECK(whole.frame_raw == bytewise.frame_raw);
  CHECK(kinds(whole) == kinds(bytewise));
  CHECK(whole.dropped == bytewise.dropped);
  return whole;
}

Framing line(std::string delimiter = "\r\n", std::size_t max_length = 256) {
  Framing f;
  f.type = FramingType::kLine;
  f.delimiter = std::move(delimiter);
  f.max_length = max_length;
  return f;
}
Framing stx(std::size_t max_length = 256) {
  Framing f;
  f.type = FramingType::kStxEtx;
  f.max_length = max_length;
  return f;
}
Framing fixed(std::size_t length) {
  Framing f;
  f.type = FramingType::kFixed;
  f.length = length;
  f.max_length = length;
  return f;
}

// An EM4100 frame as RDM6300 readers send it, checksum computed here.
std::string em_frame(std::string_view hex10, bool crlf = false, int checksum_delta = 0) {
  unsigned x = 0;
  for (std::size_t i = 0; i < hex10.size(); i += 2) {
    x ^= static_cast<unsigned>(std::stoul(std::string(hex10.substr(i, 2)), nullptr, 16));
  }
  char cs[3];
  std::snprintf(cs, sizeof cs, "%02X", (x + static_cast<unsigned>(checksum_delta)) & 0xFF);
  return "\x02" + std::string(hex10) + cs + (crlf ? "\r\n" : "") + "\x03";
}

// Wiegand frame as a '0'/'1' string, built bit by bit here (independent of the decoder): even
// parity over the first half, odd over the second.
std::string wiegand_bits(uint32_t facility, uint32_t card, int n) {
  const int fac_bits = n - 2 - 16;
  std::string data;
  for (int i = fac_bits - 1; i >= 0; --i) data += ((facility >> i) & 1) ? '1' : '0';
  for (int i = 15; i >= 0; --i) data += ((card >> i) & 1) ? '1' : '0';
  const int half = (n - 2) / 2;
  const auto ones = [](std::string_view s) { return std::count(s.begin(), s.end(), '1'); };
  const char even = ones(std::string_view(data).substr(0, half)) % 2 ? '1' : '0';
  const char odd = ones(std::string_view(data).substr(half)) % 2 ? '0' : '1';
  return even + data + odd;
}

uint64_t bits_value(std::string_view bits) {
  uint64_t v = 0;
  for (char c : bits) v = (v << 1) | static_cast<uint64_t>(c - '0');
  return v;
}

std::string flip(std::string bits, std::size_t i) {
  bits[i] = bits[i] == '0' ? '1' : '0';
  return bits;
}

std::string decoded_id(FramingType f, CardFormat fmt, std::string_view payload) {
  const auto b = bytes(payload);
  Decoded d = decode_card(f, fmt, b);
  INFO((d.error ? d.error->kind + ": " + d.error->message : std::string()));
  REQUIRE(d.ok());
  return d.card_id;
}

Rejection decode_error(FramingType f, CardFormat fmt, std::string_view payload) {
  const auto b = bytes(payload);
  Decoded d = decode_card(f, fmt, b);
  REQUIRE_FALSE(d.ok());
  // A rejection never quotes what was read.
  const std::string digits(payload.begin(), payload.end());
  if (digits.size() >= 4) CHECK(d.error->message.find(digits) == std::string::npos);
  return *d.error;
}

}  // namespace

TEST_CASE("line framing: CR LF lines, split anywhere", "[card_reader]") {
  const auto c = split(line(), "0012345678\r\n0012345679\r\n");
  CHECK(c.frames == std::vector<std::string>{"0012345678", "0012345679"});
  CHECK(c.frame_raw[0] == "0012345678\r\n");
  CHECK(c.rejections.empty());
  CHECK(c.dropped.empty());
}

TEST_CASE("line framing: any delimiter, a partial delimiter stays in the line", "[card_reader]") {
  const auto c = split(line("\r\r\n"), "12\r34\r\r\n56\r\r\r\n");
  CHECK(c.frames == std::vector<std::string>{"12\r34", "56\r"});
  const auto lf = split(line("\n"), "111\n\n\r\n222\n");
  // Empty and whitespace-only lines are skipped without a rejection.
  CHECK(lf.frames == std::vector<std::string>{"111", "222"});
  CHECK(lf.rejections.empty());
  CHECK(lf.dropped == "\n\r\n");
}

TEST_CASE("line framing: an endless line is dropped once, memory stays bounded, resync",
          "[card_reader]") {
  const std::string garbage(100000, 'x');
  const std::string input = "1111\r\n" + garbage + "\r\n2222\r\n";
  const auto c = split(line("\r\n", 16), input);
  CHECK(c.frames == std::vector<std::string>{"1111", "2222"});
  REQUIRE(c.rejections.size() == 1);
  CHECK(c.rejections[0].kind == "overflow");
  CHECK_THAT(c.rejections[0].message, Catch::Contains("16 bytes"));
  CHECK(c.dropped == garbage + "\r\n");
  // max_length + delimiter + one skipped piece at most.
  CHECK(split_bytewise(line("\r\n", 16), input).max_buffered <= 16 + 2 + kMaxSkipPiece);

  FrameSplitter s(line("\r\n", 16));
  Collected seen;
  for (int i = 0; i < 100; ++i) {
    s.feed(bytes(std::string(4096, 'y')), collector(seen));
    CHECK(s.buffered() <= 16 + 2 + kMaxSkipPiece);
  }
  CHECK(seen.rejections.size() == 1);
  CHECK(s.stats().overflows == 1);
  CHECK(s.stats().dropped_bytes == 409600);
  s.feed(bytes("\r\n3333\r\n"), collector(seen));
  CHECK(seen.frames == std::vector<std::string>{"3333"});
}

TEST_CASE("line framing: a line of exactly max_length is kept, one more byte overflows",
          "[card_reader]") {
  CHECK(split(line("\r\n", 4), "1234\r\n").frames == std::vector<std::string>{"1234"});
  const auto c = split(line("\r\n", 4), "12345\r\n6789\r\n");
  CHECK(c.frames == std::vector<std::string>{"6789"});
  CHECK(kinds(c) == std::vector<std::string>{"overflow"});
  // The delimiter may straddle the point where the line overflowed.
  const auto d = split(line("\r\n", 4), "123456\r\n77\r\n");
  CHECK(d.frames == std::vector<std::string>{"77"});
}

TEST_CASE("stx_etx: RDM6300 and ID-12 frames, checksum checked", "[card_reader]") {
  // The example of Seeed's 125 kHz RFID module manual: card 62E3086CED, checksum 08.
  const std::string seeed =
      "\x02"
      "62E3086CED08"
      "\x03";
  CHECK(em_frame("62E3086CED") == seeed);
  const auto c = split(stx(), seeed + em_frame("0F00A1B2C3", true) + "\r\n");
  REQUIRE(c.frames.size() == 2);
  CHECK(c.frames[0] == std::string("\x62\xE3\x08\x6C\xED", 5));
  CHECK(c.frame_raw[0] == seeed);
  CHECK(c.frames[1] == std::string("\x0F\x00\xA1\xB2\xC3", 5));
  CHECK(c.rejections.empty());  // CR LF between frames is not garbage

  const auto bad = split(stx(), em_frame("62E3086CED", false, 1) + seeed);
  CHECK(bad.frames.size() == 1);
  REQUIRE(kinds(bad) == std::vector<std::string>{"checksum"});
  CHECK(bad.rejections[0].message.find("62E3") == std::string::npos);

  const auto lower = split(stx(),
                           "\x02"
                           "62e3086ced08"
                           "\x03");
  CHECK(lower.frames.size() == 1);
}

TEST_CASE("stx_etx: garbage between frames is skipped and counted once per run", "[card_reader]") {
  const std::string a = em_frame("0100000001");
  const std::string b = em_frame("0100000002");
  const auto c = split(stx(), "\xff\x10zz" + a + "noise" + b + "\x03\x03" + a);
  CHECK(c.frames.size() == 3);
  CHECK(kinds(c) == std::vector<std::string>{"framing", "framing", "framing"});
  CHECK(c.dropped == "\xff\x10zznoise\x03\x03");
}

TEST_CASE("stx_etx: a frame cut short, bad content, overflow and resync", "[card_reader]") {
  const std::string good = em_frame("0100000003");
  // STX again before ETX: the first frame is lost, the second is fine.
  auto c = split(stx(),
                 "\x02"
                 "0100" +
                     good);
  CHECK(c.frames.size() == 1);
  CHECK(kinds(c) == std::vector<std::string>{"framing"});
  // Not hex, odd length, too short.
  c = split(stx(),
            "\x02"
            "01000000GG00"
            "\x03"
            "\x02"
            "0100000"
            "\x03"
            "\x02"
            "01"
            "\x03" +
                good);
  CHECK(c.frames.size() == 1);
  CHECK(kinds(c) == std::vector<std::string>{"format", "format", "format"});
  // No ETX within max_length: dropped once, everything up to the next STX skipped.
  const std::string endless = "\x02" + std::string(5000, 'A');
  c = split(stx(32), endless + "\x03\x03 junk" + good);
  CHECK(c.frames.size() == 1);
  CHECK(kinds(c) == std::vector<std::string>{"overflow"});
  CHECK(split_bytewise(stx(32), endless).max_buffered <= 32 + kMaxSkipPiece);
}

TEST_CASE("fixed framing: back-to-back frames; a pause drops a partial frame", "[card_reader]") {
  const std::string two("\x00\x11\x22\x33\x44\x55\x66\x77", 8);
  auto c = split(fixed(4), two);
  CHECK(c.frames == std::vector<std::string>{two.substr(0, 4), two.substr(4)});

  FrameSplitter s(fixed(4));
  Collected seen;
  s.feed(bytes(std::string("\x01\x02", 2)), collector(seen));
  s.idle(collector(seen));
  REQUIRE(kinds(seen) == std::vector<std::string>{"framing"});
  CHECK_THAT(seen.rejections[0].message, Catch::Contains("2 of 4"));
  s.feed(bytes(two.substr(0, 4)), collector(seen));
  s.idle(collector(seen));  // nothing pending: no rejection
  CHECK(seen.frames == std::vector<std::string>{two.substr(0, 4)});
  CHECK(seen.rejections.size() == 1);
}

TEST_CASE("reset forgets a partial frame", "[card_reader]") {
  FrameSplitter s(line());
  Collected seen;
  s.feed(bytes("12"), collector(seen));
  s.reset();
  s.feed(bytes("34\r\n"), collector(seen));
  CHECK(seen.frames == std::vector<std::string>{"34"});
}

TEST_CASE("random bytes never crash the splitter and never exceed its bound", "[card_reader]") {
  std::mt19937 rng(7);
  for (Framing f : {line("\r\n", 64), stx(64), fixed(5)}) {
    FrameSplitter s(f);
    Collected seen;
    std::vector<uint8_t> chunk;
    for (int round = 0; round < 200; ++round) {
      chunk.resize(rng() % 700);
      for (auto& b : chunk) b = static_cast<uint8_t>(rng() % 8 == 0 ? 0x02 + rng() % 2 : rng());
      s.feed(chunk, collector(seen));
      CHECK(s.buffered() <= 64 + kMaxDelimiter + kMaxSkipPiece);
    }
  }
}

TEST_CASE("decimal card ids", "[card_reader]") {
  CHECK(decoded_id(FramingType::kLine, CardFormat::kDecimal, " 0012345678\r") == "0012345678");
  CHECK(decode_error(FramingType::kLine, CardFormat::kDecimal, "12a45678").kind == "format");
  CHECK(decode_error(FramingType::kLine, CardFormat::kDecimal, std::string(33, '1')).kind ==
        "format");
  // EM4100: the last four data bytes, 10 digits — 0xE3086CED = 3808980205.
  CHECK(decoded_id(FramingType::kStxEtx, CardFormat::kDecimal,
                   std::string("\x62\xE3\x08\x6C\xED", 5)) == "3808980205");
  CHECK(decoded_id(FramingType::kStxEtx, CardFormat::kDecimal,
                   std::string("\x0F\x00\xA1\xB2\xC3", 5)) == "0010597059");
  CHECK(decode_error(FramingType::kStxEtx, CardFormat::kDecimal, "\x01\x02").kind == "format");
  CHECK(decoded_id(FramingType::kFixed, CardFormat::kDecimal, std::string("\x00\x01\x00", 3)) ==
        "256");
  CHECK(decoded_id(FramingType::kFixed, CardFormat::kDecimal, std::string(8, '\xff')) ==
        "18446744073709551615");
}

TEST_CASE("hex card ids", "[card_reader]") {
  CHECK(decoded_id(FramingType::kLine, CardFormat::kHex, "04a2b3c4d5e6f7\r") == "04A2B3C4D5E6F7");
  CHECK(decode_error(FramingType::kLine, CardFormat::kHex, "04:A2:B3").kind == "format");
  CHECK(decoded_id(FramingType::kStxEtx, CardFormat::kHex,
                   std::string("\x62\xE3\x08\x6C\xED", 5)) == "62E3086CED");
  CHECK(decoded_id(FramingType::kFixed, CardFormat::kHex, std::string("\x00\xAB", 2)) == "00AB");
}

TEST_CASE("wiegand26: facility:card, both parity bits checked", "[card_reader]") {
  // wiegand-encoder's README example: facility 90, card 324.
  const std::string published = "00101101000000001010001000";
  CHECK(wiegand_bits(90, 324, 26) == published);
  CHECK(decoded_id(FramingType::kLine, CardFormat::kWiegand26, published) == "90:324");
  CHECK(decode_wiegand(bits_value(published), 26).card_id == "90:324");
  // The same bits as hex, and as a 4-byte fixed frame.
  char hex[16];
  std::snprintf(hex, sizeof hex, "%07llX", static_cast<unsigned long long>(bits_value(published)));
  CHECK(decoded_id(FramingType::kLine, CardFormat::kWiegand26, hex) == "90:324");
  const uint64_t v = bits_value(published);
  const std::string frame{char(v >> 24), char(v >> 16), char(v >> 8), char(v)};
  CHECK(decoded_id(FramingType::kFixed, CardFormat::kWiegand26, frame) == "90:324");
  CHECK(decoded_id(FramingType::kFixed, CardFormat::kWiegand26, std::string(4, '\0') + frame) ==
        "90:324");

  CHECK(decoded_id(FramingType::kLine, CardFormat::kWiegand26, wiegand_bits(255, 65535, 26)) ==
        "255:65535");
  CHECK(decoded_id(FramingType::kLine, CardFormat::kWiegand26, wiegand_bits(0, 0, 26)) == "0:0");

  // Each parity bit, and a data bit in each half, flipped.
  auto e = decode_error(FramingType::kLine, CardFormat::kWiegand26, flip(published, 0));
  CHECK(e.kind == "parity");
  CHECK_THAT(e.message, Catch::Contains("leading even parity"));
  e = decode_error(FramingType::kLine, CardFormat::kWiegand26, flip(published, 25));
  CHECK(e.kind == "parity");
  CHECK_THAT(e.message, Catch::Contains("trailing odd parity"));
  CHECK(decode_error(FramingType::kLine, CardFormat::kWiegand26, flip(published, 5)).kind ==
        "parity");
  CHECK(decode_error(FramingType::kLine, CardFormat::kWiegand26, flip(published, 20)).kind ==
        "parity");
  // Two flips in the same half cancel out: parity cannot see that (Wiegand's known weakness).
  CHECK(decode_card(FramingType::kLine, CardFormat::kWiegand26, bytes(flip(flip(published, 3), 4)))
            .ok());

  CHECK(
      decode_error(FramingType::kLine, CardFormat::kWiegand26, "0010110100000000101000100").kind ==
      "format");  // 25 bits
  CHECK(decode_error(FramingType::kLine, CardFormat::kWiegand26, "FFFFFFF").kind == "format");
  CHECK(decode_error(FramingType::kFixed, CardFormat::kWiegand26, std::string("\x80\0\0\0", 4))
            .kind == "format");  // bit 31 set
  CHECK(decode_error(FramingType::kStxEtx, CardFormat::kWiegand26, "\x01\x02\x03\x04\x05").kind ==
        "format");
}

TEST_CASE("wiegand34: 16-bit facility:card, both parity bits checked", "[card_reader]") {
  const std::string bits = wiegand_bits(1234, 56789, 34);
  REQUIRE(bits.size() == 34);
  CHECK(decoded_id(FramingType::kLine, CardFormat::kWiegand34, bits) == "1234:56789");
  const uint64_t v = bits_value(bits);
  const std::string frame{char(v >> 32), char(v >> 24), char(v >> 16), char(v >> 8), char(v)};
  CHECK(decoded_id(FramingType::kFixed, CardFormat::kWiegand34, frame) == "1234:56789");
  CHECK(decoded_id(FramingType::kLine, CardFormat::kWiegand34, wiegand_bits(65535, 65535, 34)) ==
        "65535:65535");
  for (std::size_t i : {0u, 1u, 16u, 17u, 32u, 33u}) {
    INFO("bit " << i);
    CHECK(decode_error(FramingType::kLine, CardFormat::kWiegand34, flip(bits, i)).kind == "parity");
  }
  // A 26-bit frame is not a 34-bit one.
  CHECK(decode_error(FramingType::kLine, CardFormat::kWiegand34, wiegand_bits(1, 1, 26)).kind ==
        "format");
}

TEST_CASE("framing and card format combinations", "[card_reader]") {
  CHECK(check_combination(line(), CardFormat::kWiegand26));
  CHECK_FALSE(check_combination(stx(), CardFormat::kWiegand26));
  CHECK(check_combination(stx(), CardFormat::kDecimal));
  CHECK_FALSE(check_combination(fixed(3), CardFormat::kWiegand26));
  CHECK(check_combination(fixed(4), CardFormat::kWiegand26));
  CHECK_FALSE(check_combination(fixed(4), CardFormat::kWiegand34));
  CHECK(check_combination(fixed(8), CardFormat::kDecimal));
  const gw::Status s = check_combination(fixed(9), CardFormat::kDecimal);
  CHECK_FALSE(s);
  CHECK_THAT(s.message(), Catch::Contains("use hex"));
  CHECK(parse_card_format("wiegand34") == CardFormat::kWiegand34);
  CHECK_FALSE(parse_card_format("wiegand37").has_value());
}

TEST_CASE("a whole stream: frames, garbage, bad parity, in order", "[card_reader]") {
  std::string input;
  std::vector<std::string> expected;
  std::mt19937 rng(42);
  for (uint32_t i = 0; i < 500; ++i) {
    const uint32_t facility = i % 256, card = 1000 + i;
    std::string bits = wiegand_bits(facility, card, 26);
    if (i % 7 == 3)
      bits = flip(bits, 1 + rng() % 24);  // bad parity: rejected
    else
      expected.push_back(std::to_string(facility) + ":" + std::to_string(card));
    input += bits + "\r\n";
    if (i % 11 == 5) {
      for (int k = 0; k < 20; ++k) input += static_cast<char>('0' + rng() % 2);  // junk line
      input += "\r\n";
    }
  }
  FrameSplitter s(line("\r\n", 64));
  std::vector<std::string> ids;
  std::map<std::string, int> rejected;
  s.feed(bytes(input), [&](const Piece& p) {
    if (p.kind != Piece::Kind::kFrame) return;
    Decoded d = decode_card(FramingType::kLine, CardFormat::kWiegand26, p.payload);
    if (d.ok())
      ids.push_back(d.card_id);
    else
      ++rejected[d.error->kind];
  });
  CHECK(ids == expected);
  CHECK(rejected["parity"] == 71);  // i % 7 == 3 for i < 500
  CHECK(rejected["format"] == 45);  // 20-bit lines, i % 11 == 5
}
