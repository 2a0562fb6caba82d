// UHPPOTE controller datagrams: any bytes a UDP peer sends, through every decoder; whatever
// decodes must encode back to a packet that decodes the same.
#include <algorithm>

#include "protocols/uhppote.h"
#include "tests/fuzz/fuzz_input.h"

namespace uh = gw::protocols::uhppote;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const std::span<const uint8_t> packet(data, size);
  if (auto h = uh::decode_header(packet)) GW_FUZZ_CHECK(size == uh::kPacketSize);
  if (auto s = uh::decode_status(packet)) {
    const uh::Packet again = uh::status_reply(*s);
    auto s2 = uh::decode_status(again);
    GW_FUZZ_CHECK(s2);
    GW_FUZZ_CHECK(*s2 == *s);
  }
  if (auto e = uh::decode_event(packet)) {
    auto header = uh::decode_header(packet);
    GW_FUZZ_CHECK(header);
    auto e2 = uh::decode_event(uh::event_reply(header->serial, *e));
    GW_FUZZ_CHECK(e2);
    GW_FUZZ_CHECK(*e2 == *e);
    (void)uh::reason_text(e->reason);
  }
  (void)uh::decode_event_index(packet);
  (void)uh::decode_set_event_index(packet);
  (void)uh::decode_request(packet);
  if (size >= 7) {
    if (auto t = uh::decode_datetime(packet.first(7)); t && t->has_value()) {
      uint8_t seven[7];
      uh::encode_datetime(**t, seven);
      auto t2 = uh::decode_datetime(seven);
      GW_FUZZ_CHECK(t2 && t2->has_value() && **t2 == **t);
    }
  }
  return 0;
}
