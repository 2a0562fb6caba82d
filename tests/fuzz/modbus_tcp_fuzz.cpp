// Modbus TCP (MBAP) answers: any header and PDU, for any request.
#include "protocols/modbus_tcp.h"
#include "tests/fuzz/fuzz_input.h"

using namespace gw::protocols;
namespace tcp = gw::protocols::modbus_tcp;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  gw::fuzz::Input in(data, size);
  const uint16_t transaction = in.u16();
  const uint8_t unit = in.byte();
  const auto table = static_cast<RegisterTable>(in.byte() % 4);
  const uint16_t limit = is_bit_table(table) ? 2000 : 125;
  const uint16_t count = static_cast<uint16_t>(1 + in.u16() % limit);
  const auto bytes = in.rest();

  auto header = tcp::parse_header(bytes);
  if (header) {
    GW_FUZZ_CHECK(header->protocol == 0);
    GW_FUZZ_CHECK(header->pdu_length() >= 1 && header->pdu_length() <= tcp::kMaxPduLength);
  }
  const auto r = tcp::parse_read_response(bytes, transaction, unit, table, count);
  if (r.outcome == modbus_rtu::Response::Outcome::kGood) {
    GW_FUZZ_CHECK(header);
    GW_FUZZ_CHECK(header->transaction == transaction && header->unit == unit);
    GW_FUZZ_CHECK((is_bit_table(table) ? r.bits.size() : r.registers.size()) == count);
  }
  if (r.outcome == modbus_rtu::Response::Outcome::kBad) GW_FUZZ_CHECK(!r.message.empty());
  return 0;
}
