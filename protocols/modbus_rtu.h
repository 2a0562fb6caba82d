// Modbus RTU framing for the read functions (1-4): request building, CRC-16, and a response
// parser that answers need-more / good / bad for the bytes received so far, naming exactly what
// was wrong with a bad frame. I/O-free and allocation-light; used for RTU on a serial bus and
// for RTU frames tunnelled through a serial server's TCP port. Safe from any thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "protocols/register_map.h"
#include "protocols/status.h"

namespace gw::protocols::modbus_rtu {

// CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF). On the wire: low byte first.
uint16_t crc16(std::span<const uint8_t> bytes);

uint8_t read_function(RegisterTable table);  // 1 coils, 2 discrete, 3 holding, 4 input

// unit, function, start hi/lo, count hi/lo, CRC lo/hi: 8 bytes. count must be 1..125 for
// registers and 1..2000 for bits (the caller's read plan guarantees it).
std::vector<uint8_t> build_read_request(uint8_t unit, RegisterTable table, uint16_t start,
                                        uint16_t count);

// Length of the normal response to such a request: unit, function, byte count, data, CRC.
std::size_t response_length(RegisterTable table, uint16_t count);

enum class Error {
  kNone,
  kBadCrc,          // frame complete, CRC does not match
  kWrongUnit,       // answer from another unit id
  kWrongFunction,   // function code is neither the request's nor its exception form
  kException,       // a well-formed exception response (exception_code says which)
  kBadByteCount,    // byte count does not match what was asked for
  kExtraBytes,      // more bytes than one response (checked by the caller after silence)
  kBadHeader,       // Modbus TCP: MBAP protocol id or length impossible
  kWrongTransaction,  // Modbus TCP: answer to another request
};

struct Response {
  enum class Outcome { kNeedMore, kGood, kBad };
  Outcome outcome = Outcome::kNeedMore;
  Error error = Error::kNone;
  uint8_t exception_code = 0;     // kException: 1 illegal function, 2 illegal address, ...
  std::size_t frame_length = 0;   // kGood/kBad: bytes the frame occupied
  std::vector<uint16_t> registers;  // kGood, register tables
  std::vector<uint8_t> bits;        // kGood, bit tables: one 0/1 per bit asked for
  std::string message;              // kBad: for logs and status events
};

// Parses the answer to build_read_request(unit, table, start, count) from the bytes received
// so far. kNeedMore until a whole frame (normal or exception) is there. A frame is delimited by
// its own header (exception: 5 bytes; FC 1-4: by its byte count; FC 5/6/15/16: 8 bytes) and its
// CRC is checked before its unit, function and byte count, so a corrupted byte reads as kBadCrc.
// A function code that cannot be delimited is kBad at once (frame_length = bytes.size()). Bytes
// after frame_length are not looked at. Never reads outside `bytes`, whatever they hold.
Response parse_read_response(std::span<const uint8_t> bytes, uint8_t unit, RegisterTable table,
                             uint16_t count);

// Judges a read answer's PDU — function code onward, without unit id and CRC (RTU) or MBAP
// header (TCP) — against the request: exception, function, byte count, then the data. Returns
// kGood or kBad, never kNeedMore; frame_length is pdu.size(). Shared by RTU and TCP.
Response parse_read_pdu(std::span<const uint8_t> pdu, RegisterTable table, uint16_t count);

// Time the line must stay silent between frames: 3.5 character times at this baud rate (11 bits
// a character), and a fixed 1750 µs above 19200 baud, as the Modbus serial line spec says.
// Rounded up to whole µs (9600 → 4011, 19200 → 2006); baud < 1 is treated as 1.
std::chrono::microseconds silent_interval(int baud);

}  // namespace gw::protocols::modbus_rtu
