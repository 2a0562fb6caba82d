#include "protocols/modbus_rtu.h"

#include <cstdio>
#include <cstdlib>

namespace gw::protocols::modbus_rtu {
namespace {

constexpr std::size_t kCrcLength = 2;
// unit, function, code, CRC lo/hi
constexpr std::size_t kExceptionLength = 5;
// unit, function, byte count: the part of a read response that tells its length
constexpr std::size_t kReadHeaderLength = 3;
// Write responses (FC 5, 6, 15, 16) echo unit, function, address and value/quantity, then CRC.
constexpr std::size_t kWriteEchoLength = 8;
constexpr uint8_t kExceptionFlag = 0x80;
constexpr int kFastBaud = 19200;
constexpr std::chrono::microseconds kFastSilence{1750};

std::string hex2(unsigned value) {
  char text[8];
  std::snprintf(text, sizeof text, "0x%02X", value & 0xFFu);
  return text;
}

std::string hex4(unsigned value) {
  char text[8];
  std::snprintf(text, sizeof text, "0x%04X", value & 0xFFFFu);
  return text;
}

bool is_read_function(uint8_t function) { return function >= 1 && function <= 4; }

bool is_write_function(uint8_t function) {
  return function == 5 || function == 6 || function == 15 || function == 16;
}

std::size_t data_bytes(RegisterTable table, uint16_t count) {
  return is_bit_table(table) ? (static_cast<std::size_t>(count) + 7) / 8
                             : 2 * static_cast<std::size_t>(count);
}

Response need_more() { return Response{}; }

Response bad(Error error, std::size_t frame_length, std::string message) {
  Response response;
  response.outcome = Response::Outcome::kBad;
  response.error = error;
  response.frame_length = frame_length;
  response.message = std::move(message);
  return response;
}

// The CRC travels low byte first; a frame's CRC is over everything before it.
bool crc_matches(std::span<const uint8_t> frame, uint16_t* received, uint16_t* computed) {
  const std::size_t body = frame.size() - kCrcLength;
  *computed = crc16(frame.first(body));
  *received = static_cast<uint16_t>(frame[body] | (frame[body + 1] << 8));
  return *received == *computed;
}

}  // namespace

uint16_t crc16(std::span<const uint8_t> bytes) {
  uint16_t crc = 0xFFFF;
  for (const uint8_t byte : bytes) {
    crc ^= byte;
    for (int bit = 0; bit < 8; ++bit) {
      crc =
          (crc & 1) ? static_cast<uint16_t>((crc >> 1) ^ 0xA001) : static_cast<uint16_t>(crc >> 1);
    }
  }
  return crc;
}

uint8_t read_function(RegisterTable table) {
  switch (table) {
    case RegisterTable::kCoil:
      return 1;
    case RegisterTable::kDiscrete:
      return 2;
    case RegisterTable::kHolding:
      return 3;
    case RegisterTable::kInput:
      return 4;
  }
  std::abort();  // every enumerator is handled above
}

std::vector<uint8_t> build_read_request(uint8_t unit, RegisterTable table, uint16_t start,
                                        uint16_t count) {
  std::vector<uint8_t> frame = {unit,
                                read_function(table),
                                static_cast<uint8_t>(start >> 8),
                                static_cast<uint8_t>(start),
                                static_cast<uint8_t>(count >> 8),
                                static_cast<uint8_t>(count)};
  const uint16_t crc = crc16(frame);
  frame.push_back(static_cast<uint8_t>(crc));
  frame.push_back(static_cast<uint8_t>(crc >> 8));
  return frame;
}

std::size_t response_length(RegisterTable table, uint16_t count) {
  return kReadHeaderLength + data_bytes(table, count) + kCrcLength;
}

Response parse_read_response(std::span<const uint8_t> bytes, uint8_t unit, RegisterTable table,
                             uint16_t count) {
  // Like libmodbus, the frame is first delimited by its own header (whatever it claims to be),
  // then its CRC is checked, and only a frame with a good CRC is judged on its content: a
  // corrupted byte must read as "bad CRC", not as a wrong unit or function.
  if (bytes.size() < 2) return need_more();
  const uint8_t expected_function = read_function(table);
  const uint8_t got_unit = bytes[0];
  const uint8_t function = bytes[1];

  std::size_t frame_length = 0;
  if (function & kExceptionFlag) {
    frame_length = kExceptionLength;
  } else if (is_read_function(function)) {
    if (bytes.size() < kReadHeaderLength) return need_more();
    frame_length = kReadHeaderLength + bytes[2] + kCrcLength;
  } else if (is_write_function(function)) {
    frame_length = kWriteEchoLength;
  } else {
    // A function we cannot delimit: waiting would only end in a timeout, so say what it is now
    // and let the caller discard the rest of the line after silence.
    std::string message = "unexpected function code " + hex2(function) + " (expected " +
                          hex2(expected_function) + ")";
    if (got_unit != unit) {
      return bad(Error::kWrongUnit, bytes.size(),
                 "answer from unit " + std::to_string(got_unit) + " (expected " +
                     std::to_string(unit) + "), " + message);
    }
    return bad(Error::kWrongFunction, bytes.size(), std::move(message));
  }
  if (bytes.size() < frame_length) return need_more();

  const std::span<const uint8_t> frame = bytes.first(frame_length);
  uint16_t received = 0;
  uint16_t computed = 0;
  if (!crc_matches(frame, &received, &computed)) {
    return bad(Error::kBadCrc, frame_length,
               "bad CRC: frame carries " + hex4(received) + ", computed " + hex4(computed) +
                   " over " + std::to_string(frame_length - kCrcLength) + " bytes");
  }
  if (got_unit != unit) {
    return bad(Error::kWrongUnit, frame_length,
               "answer from unit " + std::to_string(got_unit) + " (expected " +
                   std::to_string(unit) + ")");
  }
  Response response = parse_read_pdu(frame.subspan(1, frame_length - 1 - kCrcLength), table, count);
  response.frame_length = frame_length;
  return response;
}

Response parse_read_pdu(std::span<const uint8_t> pdu, RegisterTable table, uint16_t count) {
  const uint8_t expected_function = read_function(table);
  if (pdu.empty()) return bad(Error::kWrongFunction, 0, "empty answer");
  const uint8_t function = pdu[0];
  if (function == (expected_function | kExceptionFlag)) {
    if (pdu.size() < 2) return bad(Error::kBadByteCount, pdu.size(), "exception without a code");
    Response response =
        bad(Error::kException, pdu.size(),
            "exception " + std::to_string(pdu[1]) + " for function " +
                std::to_string(expected_function));
    response.exception_code = pdu[1];
    return response;
  }
  if (function != expected_function) {
    return bad(Error::kWrongFunction, pdu.size(),
               "function code " + hex2(function) + " in the answer to function " +
                   hex2(expected_function));
  }
  const std::size_t expected_bytes = data_bytes(table, count);
  if (pdu.size() < 2 || pdu[1] != expected_bytes || pdu.size() != 2 + expected_bytes) {
    return bad(Error::kBadByteCount, pdu.size(),
               "byte count " + std::to_string(pdu.size() < 2 ? 0 : pdu[1]) + " with " +
                   std::to_string(pdu.size() < 2 ? 0 : pdu.size() - 2) + " data bytes, expected " +
                   std::to_string(expected_bytes) + " for " + std::to_string(count) +
                   (is_bit_table(table) ? " bits" : " registers"));
  }

  Response response;
  response.outcome = Response::Outcome::kGood;
  response.frame_length = pdu.size();
  const std::span<const uint8_t> data = pdu.subspan(2, expected_bytes);
  if (is_bit_table(table)) {
    // Bit i of the answer is bit (i % 8) of data byte i / 8: the first bit asked for is the
    // least significant bit of the first byte. Padding bits of the last byte are ignored.
    response.bits.resize(count);
    for (std::size_t i = 0; i < count; ++i) {
      response.bits[i] = static_cast<uint8_t>((data[i / 8] >> (i % 8)) & 1);
    }
  } else {
    response.registers.resize(count);
    for (std::size_t i = 0; i < count; ++i) {
      response.registers[i] = static_cast<uint16_t>((data[2 * i] << 8) | data[2 * i + 1]);
    }
  }
  return response;
}

std::chrono::microseconds silent_interval(int baud) {
  if (baud > kFastBaud) return kFastSilence;
  // 3.5 characters of 11 bits (start, 8 data, parity or second stop, stop) = 38.5e6 / baud µs,
  // rounded up: ending a frame a fraction of a microsecond early could split it, waiting that
  // much longer cannot. A non-positive baud (a caller bug) counts as 1 baud instead of dividing
  // by zero.
  const int64_t rate = baud < 1 ? 1 : baud;
  constexpr int64_t kBitsTimesMicros = 38'500'000;  // 3.5 * 11 * 1e6
  return std::chrono::microseconds((kBitsTimesMicros + rate - 1) / rate);
}

}  // namespace gw::protocols::modbus_rtu
