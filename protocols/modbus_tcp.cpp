#include "protocols/modbus_tcp.h"

namespace gw::protocols::modbus_tcp {

namespace rtu = modbus_rtu;

std::vector<uint8_t> build_read_request(uint16_t transaction, uint8_t unit, RegisterTable table,
                                        uint16_t start, uint16_t count) {
  return {static_cast<uint8_t>(transaction >> 8), static_cast<uint8_t>(transaction),
          0, 0,      // protocol id: Modbus
          0, 6,      // unit + function + start + count
          unit,      rtu::read_function(table),
          static_cast<uint8_t>(start >> 8),       static_cast<uint8_t>(start),
          static_cast<uint8_t>(count >> 8),       static_cast<uint8_t>(count)};
}

Result<Header> parse_header(std::span<const uint8_t> bytes) {
  if (bytes.size() < kHeaderLength) return Status::protocol("MBAP header cut short");
  Header h;
  h.transaction = static_cast<uint16_t>((bytes[0] << 8) | bytes[1]);
  h.protocol = static_cast<uint16_t>((bytes[2] << 8) | bytes[3]);
  h.length = static_cast<uint16_t>((bytes[4] << 8) | bytes[5]);
  h.unit = bytes[6];
  if (h.protocol != 0) {
    return Status::protocol("MBAP protocol id " + std::to_string(h.protocol) +
                            " (Modbus is 0): not a Modbus TCP answer");
  }
  if (h.length < 2 || h.length > kMaxPduLength + 1) {
    return Status::protocol("MBAP length " + std::to_string(h.length) +
                            " (a unit id and a PDU take 2 to 254)");
  }
  return h;
}

rtu::Response parse_read_response(std::span<const uint8_t> frame, uint16_t transaction,
                                  uint8_t unit, RegisterTable table, uint16_t count) {
  auto bad = [&](rtu::Error error, std::string message) {
    rtu::Response r;
    r.outcome = rtu::Response::Outcome::kBad;
    r.error = error;
    r.frame_length = frame.size();
    r.message = std::move(message);
    return r;
  };
  Result<Header> h = parse_header(frame);
  if (!h) return bad(rtu::Error::kBadHeader, h.status().message());
  if (frame.size() != kHeaderLength + h->pdu_length()) {
    return bad(rtu::Error::kBadByteCount, "MBAP length says " + std::to_string(h->pdu_length()) +
                                              " PDU bytes, frame holds " +
                                              std::to_string(frame.size() - kHeaderLength));
  }
  if (h->transaction != transaction) {
    return bad(rtu::Error::kWrongTransaction, "transaction id " + std::to_string(h->transaction) +
                                               " (expected " + std::to_string(transaction) + ")");
  }
  if (h->unit != unit) {
    return bad(rtu::Error::kWrongUnit, "answer from unit " + std::to_string(h->unit) +
                                           " (expected " + std::to_string(unit) + ")");
  }
  rtu::Response r = rtu::parse_read_pdu(frame.subspan(kHeaderLength), table, count);
  r.frame_length = frame.size();
  return r;
}

}  // namespace gw::protocols::modbus_tcp
