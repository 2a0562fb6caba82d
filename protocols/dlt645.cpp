#include "protocols/dlt645.h"

#include <algorithm>
#include <cstdio>

// Where the details come from (all public, read through code search):
// - Frame layout, CS = sum mod 256 from the first 68 through DATA, FE count before the first 68:
//   icprog/dlt698.45 libDlt645/dlt645.c (getCS645, getFECount, composeProtocol07).
// - Control codes 0x11/0x91/0xB1/0xD1, 0x13/0x93, 0x08 and the exception reply's error byte,
//   bit by bit: 600888/dlt645 python/src/model/types/dlt645_type.py (ErrorCode) and
//   python/src/protocol/frame.py.
// - Value formats (XXX.X V, XXX.XXX A, XX.XXXX kW, X.XXX, XXXXXX.XX kWh), BCD lowest byte first
//   with the sign in the top bit of the most significant byte: 600888/dlt645
//   go/config/variable_types.json and python/src/common/transform.py (bcd_to_float).
// - Broadcast time sync goes to 99..99 with its six data bytes +0x33 like any DATA: the
//   "645-07广播校时 68 99 99 99 99 99 99 68 08 06 ..." vectors in several collector firmwares and
//   the time-sync wire vector in 600888/dlt645 cpp/tests.
// - Frequency 02800002 is XX.XX Hz, 2 bytes (DI_FREQENCY = "02800002" in a Java constants file
//   and 0.01 Hz resolution in a TypeScript register table, both found by code search).
// - Combined active energy 00000000 carrying a sign bit: the standard's note to table A.1 as
//   remembered, not confirmed in stored material; it changes nothing below 800000 kWh.

namespace gw::protocols::dlt645 {
namespace {

constexpr uint8_t kStart = 0x68;
constexpr uint8_t kEnd = 0x16;
constexpr uint8_t kWake = 0xFE;
constexpr uint8_t kOffset = 0x33;
// 68, A0..A5, 68, C, L: the bytes before DATA.
constexpr std::size_t kHeaderSize = 10;
// The standard caps DATA at 200 bytes for reads (50 for writes); anything longer is a
// misframed length byte, and rejecting it early stops us waiting for 255 bytes that never come.
constexpr std::size_t kMaxDataLength = 200;

constexpr uint8_t kReplyNormal = 0x91;
constexpr uint8_t kReplyMore = 0xB1;
constexpr uint8_t kReplyError = 0xD1;

uint8_t checksum(std::span<const uint8_t> bytes) {
  unsigned sum = 0;
  for (uint8_t b : bytes) sum += b;
  return static_cast<uint8_t>(sum & 0xFF);
}

std::string hex_byte(uint8_t b) {
  char buf[5];
  std::snprintf(buf, sizeof buf, "0x%02X", b);
  return buf;
}

std::string hex_di(uint32_t di) {
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08X", di);
  return buf;
}

uint8_t to_bcd(int v) { return static_cast<uint8_t>(((v / 10) << 4) | (v % 10)); }

std::vector<uint8_t> build_frame(const Address& address, uint8_t control,
                                 std::span<const uint8_t> data, int preamble) {
  // The standard allows 0-4 wake-up bytes; more only costs bus time.
  const int wake = std::clamp(preamble, 0, 4);
  std::vector<uint8_t> out(static_cast<std::size_t>(wake), kWake);
  const std::size_t start = out.size();
  out.push_back(kStart);
  out.insert(out.end(), address.begin(), address.end());
  out.push_back(kStart);
  out.push_back(control);
  out.push_back(static_cast<uint8_t>(data.size()));
  for (uint8_t b : data) out.push_back(static_cast<uint8_t>(b + kOffset));
  out.push_back(checksum(std::span(out).subspan(start)));
  out.push_back(kEnd);
  return out;
}

// Names as in the standard's error information word (Appendix C); bit 7 is reserved.
constexpr const char* kErrorBits[8] = {
    "other error",
    "no requested data",
    "password error / unauthorized",
    "communication rate cannot be changed",
    "year time zone count exceeded",
    "daily time slot count exceeded",
    "tariff count exceeded",
    "reserved bit 7",
};

std::string describe_error_byte(uint8_t err) {
  std::string text;
  for (int bit = 0; bit < 8; ++bit) {
    if ((err & (1u << bit)) == 0) continue;
    if (!text.empty()) text += ", ";
    text += kErrorBits[bit];
  }
  return text.empty() ? "no error bit set" : text;
}

bool address_matches(const Address& reply, const Address& expected) {
  for (std::size_t i = 0; i < reply.size(); ++i) {
    // A wildcard byte in the request is answered with the meter's real digits.
    if (expected[i] != 0xAA && expected[i] != reply[i]) return false;
  }
  return true;
}

// Decodes `bytes` (lowest byte first) as BCD; with `sign_in_msb` the top bit of the last byte
// is the sign and not a digit.
Result<double> decode_bcd(std::span<const uint8_t> bytes, int decimals, bool sign_in_msb) {
  uint64_t raw = 0;
  bool negative = false;
  for (std::size_t n = bytes.size(); n-- > 0;) {
    uint8_t b = bytes[n];
    if (sign_in_msb && n + 1 == bytes.size()) {
      negative = (b & 0x80) != 0;
      b &= 0x7F;
    }
    const unsigned hi = b >> 4;
    const unsigned lo = b & 0x0F;
    if (hi > 9 || lo > 9) {
      return Status::corrupt("invalid BCD byte " + hex_byte(bytes[n]) + " at value byte " +
                             std::to_string(n) + " (lowest first)");
    }
    raw = raw * 100 + hi * 10 + lo;
  }
  // raw has at most 16 digits and 10^decimals is exact in a double, so one division gives the
  // double nearest to the printed decimal value.
  double scale = 1.0;
  for (int i = 0; i < decimals; ++i) scale *= 10.0;
  const double value = static_cast<double>(raw) / scale;
  return negative ? -value : value;
}

}  // namespace

Result<Address> parse_address(std::string_view printed) {
  if (printed.size() != 12) {
    return Status::invalid("DL/T 645 address must be 12 decimal digits, got " +
                           std::to_string(printed.size()) + " characters: \"" +
                           std::string(printed) + "\"");
  }
  for (std::size_t i = 0; i < printed.size(); ++i) {
    if (printed[i] < '0' || printed[i] > '9') {
      return Status::invalid("DL/T 645 address \"" + std::string(printed) +
                             "\" has a non-digit at position " + std::to_string(i));
    }
  }
  Address a{};
  for (std::size_t byte = 0; byte < 6; ++byte) {
    // The printed form is most significant first; the wire starts with the last two digits.
    const std::size_t pos = 10 - 2 * byte;
    a[byte] = static_cast<uint8_t>(((printed[pos] - '0') << 4) | (printed[pos + 1] - '0'));
  }
  return a;
}

std::string to_string(const Address& address) {
  // Hex, not decimal: wildcard AA bytes and corrupt addresses print as what is on the wire.
  std::string out;
  char buf[3];
  for (std::size_t i = address.size(); i-- > 0;) {
    std::snprintf(buf, sizeof buf, "%02X", address[i]);
    out += buf;
  }
  return out;
}

Result<uint32_t> parse_di(std::string_view hex) {
  if (hex.size() != 8) {
    return Status::invalid("DL/T 645 data identifier must be 8 hex digits DI3..DI0, got \"" +
                           std::string(hex) + "\"");
  }
  uint32_t di = 0;
  for (char c : hex) {
    unsigned v;
    if (c >= '0' && c <= '9') {
      v = static_cast<unsigned>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      v = static_cast<unsigned>(c - 'a' + 10);
    } else if (c >= 'A' && c <= 'F') {
      v = static_cast<unsigned>(c - 'A' + 10);
    } else {
      return Status::invalid("DL/T 645 data identifier \"" + std::string(hex) +
                             "\" has a non-hex character");
    }
    di = (di << 4) | v;
  }
  return di;
}

std::vector<uint8_t> build_read_data(const Address& address, uint32_t di, int preamble) {
  const uint8_t data[4] = {static_cast<uint8_t>(di), static_cast<uint8_t>(di >> 8),
                           static_cast<uint8_t>(di >> 16), static_cast<uint8_t>(di >> 24)};
  return build_frame(address, kReadData, data, preamble);
}

std::vector<uint8_t> build_read_address(int preamble) {
  return build_frame(kBroadcast, kReadAddress, {}, preamble);
}

std::vector<uint8_t> build_time_sync(std::chrono::system_clock::time_point local_time,
                                     int preamble) {
  using namespace std::chrono;
  const auto secs = floor<seconds>(local_time);
  const auto day = floor<days>(secs);
  const year_month_day ymd{day};
  const hh_mm_ss hms{secs - day};
  const uint8_t data[6] = {
      to_bcd(static_cast<int>(hms.seconds().count())),
      to_bcd(static_cast<int>(hms.minutes().count())),
      to_bcd(static_cast<int>(hms.hours().count())),
      to_bcd(static_cast<int>(static_cast<unsigned>(ymd.day()))),
      to_bcd(static_cast<int>(static_cast<unsigned>(ymd.month()))),
      // Two digits only; ((y % 100) + 100) % 100 keeps years before 0 in range too.
      to_bcd(((static_cast<int>(ymd.year()) % 100) + 100) % 100),
  };
  return build_frame(kBroadcastTimeSync, kBroadcastTime, data, preamble);
}

Parsed parse_frame(std::span<const uint8_t> bytes) {
  Parsed p;
  const std::size_t n = bytes.size();
  std::size_t s = 0;
  // FE wake-up bytes and line noise alike: nothing before a start byte can belong to a frame.
  while (s < n && bytes[s] != kStart) ++s;
  p.consumed = s;
  if (s == n) return p;

  auto bad = [&](std::string message) {
    p.outcome = Parsed::Outcome::kBad;
    // Drop only the false start byte: a real frame may begin inside what we just rejected.
    p.consumed = s + 1;
    p.message = std::move(message);
    return p;
  };

  if (n - s <= 7) return p;
  if (bytes[s + 7] != kStart) return bad("missing second start byte 0x68 at offset 7");
  if (n - s < kHeaderSize) return p;
  const std::size_t length = bytes[s + 9];
  if (length > kMaxDataLength) {
    return bad("data length " + std::to_string(length) + " out of range (max " +
               std::to_string(kMaxDataLength) + ")");
  }
  const std::size_t total = kHeaderSize + length + 2;
  if (n - s < total) return p;

  const auto frame = bytes.subspan(s, total);
  if (frame[total - 1] != kEnd) {
    return bad("missing end byte 0x16 (got " + hex_byte(frame[total - 1]) + ")");
  }
  const uint8_t expected_cs = checksum(frame.first(kHeaderSize + length));
  if (frame[total - 2] != expected_cs) {
    return bad("bad checksum: frame says " + hex_byte(frame[total - 2]) + ", bytes sum to " +
               hex_byte(expected_cs));
  }

  p.outcome = Parsed::Outcome::kGood;
  p.consumed = s + total;
  std::copy_n(frame.begin() + 1, 6, p.frame.address.begin());
  p.frame.control = frame[8];
  p.frame.data.reserve(length);
  for (uint8_t b : frame.subspan(kHeaderSize, length)) {
    p.frame.data.push_back(static_cast<uint8_t>(b - kOffset));
  }
  return p;
}

Result<Reading> read_data_value(const Frame& reply, const Address& expected, uint32_t di,
                                std::optional<int> decimals) {
  if (!address_matches(reply.address, expected)) {
    return Status::protocol("reply from meter " + to_string(reply.address) + ", expected " +
                            to_string(expected));
  }
  if (reply.control == kReplyError) {
    if (reply.data.empty()) return Status::protocol("exception reply 0xD1 without error byte");
    const uint8_t err = reply.data[0];
    return Status::protocol("meter " + to_string(reply.address) + " refused DI " + hex_di(di) +
                            ": exception reply, error byte " + hex_byte(err) + " (" +
                            describe_error_byte(err) + ")");
  }
  if (reply.control != kReplyNormal && reply.control != kReplyMore) {
    return Status::protocol("unexpected control code " + hex_byte(reply.control) +
                            " in reply to read data (want 0x91, 0xB1 or 0xD1)");
  }
  if (reply.data.size() < 4) {
    return Status::protocol("read-data reply has " + std::to_string(reply.data.size()) +
                            " data bytes, too short for the echoed DI");
  }
  const uint32_t echoed = uint32_t{reply.data[0]} | uint32_t{reply.data[1]} << 8 |
                          uint32_t{reply.data[2]} << 16 | uint32_t{reply.data[3]} << 24;
  if (echoed != di) {
    return Status::protocol("reply echoes DI " + hex_di(echoed) + ", asked for " + hex_di(di));
  }
  if (decimals && (*decimals < 0 || *decimals > 15)) {
    return Status::invalid("decimals must be 0..15, got " + std::to_string(*decimals));
  }

  const auto value_bytes = std::span(reply.data).subspan(4);
  const std::optional<DiFormat> standard = standard_format(di);
  DiFormat format;
  if (standard) {
    format = *standard;
    if (decimals) format.decimals = *decimals;
    // Blocks are DI1 = FF in the energy (00) and variable (02) tables: N values back to back.
    const bool block = (di & 0x0000FF00u) == 0x0000FF00u;
    const std::size_t each = static_cast<std::size_t>(format.bytes);
    const bool size_ok = block ? (!value_bytes.empty() && value_bytes.size() % each == 0)
                               : value_bytes.size() == each;
    if (!size_ok) {
      return Status::protocol("DI " + hex_di(di) + " carries " +
                              std::to_string(value_bytes.size()) + " value bytes, expected " +
                              (block ? "a multiple of " : "") + std::to_string(each));
    }
  } else {
    if (!decimals) {
      return Status::invalid("DI " + hex_di(di) +
                             " has no built-in format; configure its decimals");
    }
    if (value_bytes.empty() || value_bytes.size() > 8) {
      return Status::protocol("DI " + hex_di(di) + " carries " +
                              std::to_string(value_bytes.size()) +
                              " value bytes; 1..8 can be decoded");
    }
    format = DiFormat{static_cast<int>(value_bytes.size()), *decimals, false};
  }

  Result<double> value = decode_bcd(value_bytes.first(static_cast<std::size_t>(format.bytes)),
                                    format.decimals, format.sign_in_msb);
  if (!value) {
    return Status::corrupt("DI " + hex_di(di) + ": " + value.status().message());
  }
  return Reading{*value};
}

std::optional<DiFormat> standard_format(uint32_t di) {
  const unsigned di3 = di >> 24;
  const unsigned di2 = (di >> 16) & 0xFF;
  const unsigned di1 = (di >> 8) & 0xFF;
  const unsigned di0 = di & 0xFF;

  // Table A.1: 00 kk tt 00 with kk = 00 combined, 01 forward, 02 reverse active energy and
  // tt = 00 total, 01..3F tariff 1..63, FF block; XXXXXX.XX kWh. Combined active energy is a
  // signed sum (forward and reverse as the combination mode word says), so its top bit is the
  // sign; forward and reverse never are negative.
  if (di3 == 0x00 && di2 <= 0x02 && di0 == 0x00 && (di1 <= 0x3F || di1 == 0xFF)) {
    return DiFormat{4, 2, di2 == 0x00};
  }
  // Table A.3, variables: 02 vv pp 00 with pp = 01..03 phase A..C (00 total where the standard
  // has one) and FF the block of all of them.
  if (di3 == 0x02 && di0 == 0x00) {
    const bool phase = di1 >= 0x01 && di1 <= 0x03;
    const bool total_or_phase = di1 <= 0x03;
    switch (di2) {
      case 0x01:  // voltage, XXX.X V
        if (phase || di1 == 0xFF) return DiFormat{2, 1, false};
        break;
      case 0x02:  // current, XXX.XXX A, sign bit
        if (phase || di1 == 0xFF) return DiFormat{3, 3, true};
        break;
      case 0x03:  // active power, XX.XXXX kW, sign bit
        if (total_or_phase || di1 == 0xFF) return DiFormat{3, 4, true};
        break;
      case 0x06:  // power factor, X.XXX, sign bit
        if (total_or_phase || di1 == 0xFF) return DiFormat{2, 3, true};
        break;
      default:
        break;
    }
  }
  if (di == 0x02800002) return DiFormat{2, 2, false};  // grid frequency, XX.XX Hz
  return std::nullopt;
}

}  // namespace gw::protocols::dlt645
