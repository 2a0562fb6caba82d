// DL/T 645-2007 frames as a meter line delivers them: garbage, preambles, partial and corrupt
// frames, in one buffer, consumed the way the driver consumes them.
#include <vector>

#include "protocols/dlt645.h"
#include "tests/fuzz/fuzz_input.h"

namespace dlt = gw::protocols::dlt645;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  gw::fuzz::Input in(data, size);
  const uint32_t di = in.u32();
  const uint8_t decimals_pick = in.byte();
  std::optional<int> decimals;
  if (decimals_pick < 16) decimals = decimals_pick % 9;
  dlt::Address expected{};
  for (auto& b : expected) b = in.byte();

  std::span<const uint8_t> bytes = in.rest();
  for (int frames = 0; !bytes.empty() && frames < 4096; ++frames) {
    const dlt::Parsed p = dlt::parse_frame(bytes);
    GW_FUZZ_CHECK(p.consumed <= bytes.size());
    if (p.outcome == dlt::Parsed::Outcome::kGood) {
      GW_FUZZ_CHECK(p.consumed > 0);
      auto v = dlt::read_data_value(p.frame, expected, di, decimals);
      (void)v;
      auto own = dlt::read_data_value(p.frame, p.frame.address, di, decimals);
      (void)own;
    } else if (p.outcome == dlt::Parsed::Outcome::kBad) {
      GW_FUZZ_CHECK(p.consumed > 0);  // the caller must always make progress
      GW_FUZZ_CHECK(!p.message.empty());
    } else if (p.consumed == 0) {
      break;  // needs more bytes than there are
    }
    bytes = bytes.subspan(p.consumed);
  }

  // The printed forms a config file gives.
  const std::string_view text = in.rest_text();
  if (auto a = dlt::parse_address(text.substr(0, 16))) {
    GW_FUZZ_CHECK(dlt::parse_address(dlt::to_string(*a)).value() == *a);
  }
  (void)dlt::parse_di(text.substr(0, 10));
  (void)dlt::standard_format(di);
  return 0;
}
