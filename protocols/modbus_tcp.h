// Modbus TCP framing (MBAP) for the read functions: request building and the checks on an
// answer's header, with the PDU judged by the same code as RTU (modbus_rtu::parse_read_pdu).
// I/O-free. An MBAP frame: transaction id (2), protocol id (2, always 0), length (2, counts the
// unit id and the PDU), unit id (1), PDU (function code + data). Big-endian throughout.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "protocols/modbus_rtu.h"
#include "protocols/register_map.h"

namespace gw::protocols::modbus_tcp {

constexpr std::size_t kHeaderLength = 7;     // MBAP: tid, protocol, length, unit
constexpr std::size_t kMaxPduLength = 253;   // Modbus Application Protocol spec, 4.1

std::vector<uint8_t> build_read_request(uint16_t transaction, uint8_t unit, RegisterTable table,
                                        uint16_t start, uint16_t count);

struct Header {
  uint16_t transaction = 0;
  uint16_t protocol = 0;
  uint16_t length = 0;  // unit id + PDU
  uint8_t unit = 0;
  std::size_t pdu_length() const { return length > 0 ? length - 1u : 0u; }
};

// Reads the first kHeaderLength bytes. Not ok (with the reason) when the protocol id is not 0 or
// the length cannot hold a PDU (2..254): the stream cannot be trusted after that.
Result<Header> parse_header(std::span<const uint8_t> bytes);

// The whole answer (header + PDU) to build_read_request(transaction, unit, table, _, count):
// a wrong transaction id or unit is kBad like a malformed PDU.
modbus_rtu::Response parse_read_response(std::span<const uint8_t> frame, uint16_t transaction,
                                         uint8_t unit, RegisterTable table, uint16_t count);

}  // namespace gw::protocols::modbus_tcp
