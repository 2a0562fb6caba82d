// Modbus RTU responses as they arrive on a serial line: any bytes, for any request.
#include "protocols/modbus_rtu.h"
#include "tests/fuzz/fuzz_input.h"

using namespace gw::protocols;
namespace rtu = gw::protocols::modbus_rtu;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  gw::fuzz::Input in(data, size);
  const uint8_t unit = in.byte();
  const auto table = static_cast<RegisterTable>(in.byte() % 4);
  const uint16_t limit = is_bit_table(table) ? 2000 : 125;
  const uint16_t count = static_cast<uint16_t>(1 + in.u16() % limit);
  const auto bytes = in.rest();

  const rtu::Response r = rtu::parse_read_response(bytes, unit, table, count);
  GW_FUZZ_CHECK(r.frame_length <= bytes.size());
  if (r.outcome == rtu::Response::Outcome::kGood) {
    GW_FUZZ_CHECK(r.frame_length == rtu::response_length(table, count));
    GW_FUZZ_CHECK((is_bit_table(table) ? r.bits.size() : r.registers.size()) == count);
    // Every shorter prefix of a good frame is "need more", never a verdict on half a frame.
    for (std::size_t n = 0; n < r.frame_length; ++n) {
      GW_FUZZ_CHECK(rtu::parse_read_response(bytes.first(n), unit, table, count).outcome ==
                    rtu::Response::Outcome::kNeedMore);
    }
  }
  if (r.outcome == rtu::Response::Outcome::kBad) GW_FUZZ_CHECK(!r.message.empty());

  // The bare PDU parser, shared with Modbus TCP.
  const rtu::Response p = rtu::parse_read_pdu(bytes, table, count);
  GW_FUZZ_CHECK(p.outcome != rtu::Response::Outcome::kNeedMore);
  (void)rtu::crc16(bytes);
  return 0;
}
