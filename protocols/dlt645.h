// DL/T 645-2007 framing (Chinese electricity meters on RS-485): building read-data, read-address
// and broadcast time-sync requests, and parsing replies, normal and exception. A frame is
//   [FE FE FE FE] 68 A0..A5 68 C L DATA CS 16
// with the address as 6 BCD bytes lowest first, every DATA byte sent +0x33, and CS the sum of
// all bytes from the first 68 through DATA, mod 256. I/O-free; safe from any thread.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "protocols/status.h"

namespace gw::protocols::dlt645 {

// Wire order (A0 first, i.e. the last two printed digits first).
using Address = std::array<uint8_t, 6>;
// AA..AA is what the standard calls the wildcard address: every meter answers read-address
// (0x13) sent to it, and an AA byte in a read-data address matches any digit pair.
inline constexpr Address kBroadcast{0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA};
// 99..99 is the standard's broadcast address proper, for commands no meter answers, such as
// broadcast time sync (0x08); build_time_sync() sends to it.
inline constexpr Address kBroadcastTimeSync{0x99, 0x99, 0x99, 0x99, 0x99, 0x99};

inline constexpr uint8_t kReadData = 0x11;       // reply 0x91 (0xB1 with more frames), 0xD1 error
inline constexpr uint8_t kReadAddress = 0x13;    // reply 0x93
inline constexpr uint8_t kBroadcastTime = 0x08;  // no reply

// "000000123456" (12 digits, as printed on the meter) -> wire order.
Result<Address> parse_address(std::string_view printed);
std::string to_string(const Address& address);  // back to the printed form

// DI written as 8 hex digits DI3..DI0 ("00010000") -> 0x00010000.
Result<uint32_t> parse_di(std::string_view hex);

std::vector<uint8_t> build_read_data(const Address& address, uint32_t di, int preamble = 4);
std::vector<uint8_t> build_read_address(int preamble = 4);
// Broadcast time sync to kBroadcastTimeSync; data is ss mm hh DD MM YY (BCD) of `local_time`.
// `local_time` carries the meters' wall-clock time in its UTC fields (the caller adds the zone
// offset), so the result does not depend on the TZ setting of the machine.
std::vector<uint8_t> build_time_sync(std::chrono::system_clock::time_point local_time,
                                     int preamble = 4);

struct Frame {
  Address address{};
  uint8_t control = 0;
  std::vector<uint8_t> data;  // with the 0x33 offset already removed
};

struct Parsed {
  enum class Outcome { kNeedMore, kGood, kBad };
  Outcome outcome = Outcome::kNeedMore;
  std::size_t consumed = 0;  // bytes to drop from the front (preamble, garbage, the frame)
  Frame frame;               // kGood
  std::string message;       // kBad: bad checksum, missing end byte, length out of range, ...
};

// Finds and checks one frame at the front of `bytes`, skipping wake-up bytes and garbage
// before the start byte. kNeedMore may report consumed > 0 (bytes before any 0x68, which can be
// dropped now or rescanned later); kBad consumes only up to the false start byte, so a frame
// beginning inside the rejected bytes is still found. Never reads outside `bytes`.
Parsed parse_frame(std::span<const uint8_t> bytes);

struct Reading {
  double value = 0.0;
};

// Interprets a reply frame to build_read_data(expected, di): checks the address, the control
// code (an exception reply 0xD1 becomes an error naming the error bits), the echoed DI, and
// decodes the BCD value with the standard's format for that DI (or `decimals` when given).
// For a block DI (DI1 = FF, e.g. 0201FF00) the value is the block's first element. A DI with
// no standard format needs `decimals`; its value is then all data bytes after the DI, unsigned.
Result<Reading> read_data_value(const Frame& reply, const Address& expected, uint32_t di,
                                std::optional<int> decimals = std::nullopt);

// The standard's format of common DIs: data bytes and decimals (e.g. 00010000 total forward
// active energy: 4 bytes, 2 decimals; 02010100 phase A voltage: 2 bytes, 1 decimal).
struct DiFormat {
  int bytes = 4;
  int decimals = 2;
  bool sign_in_msb = false;  // current and power carry their sign in the top bit
};
std::optional<DiFormat> standard_format(uint32_t di);

}  // namespace gw::protocols::dlt645
