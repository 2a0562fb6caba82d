// Register-map decoding: any type, word order, scale and register values a device can return.
#include <cmath>
#include <vector>

#include "protocols/modbus_read_plan.h"
#include "protocols/register_map.h"
#include "tests/fuzz/fuzz_input.h"

using namespace gw::protocols;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  gw::fuzz::Input in(data, size);
  PointSpec p;
  p.name = "p";
  p.table = static_cast<RegisterTable>(in.byte() % 4);
  p.type = static_cast<ValueType>(in.byte() % 9);
  p.word_order = in.flag() ? WordOrder::kBig : WordOrder::kLittle;
  p.address = in.u16();
  const uint8_t scale_pick = in.byte();
  p.scale = scale_pick == 0 ? 1.0 : static_cast<double>(static_cast<int8_t>(scale_pick)) / 7.0;
  p.offset = static_cast<double>(static_cast<int16_t>(in.u16()));
  (void)validate_point(p);
  std::vector<uint16_t> regs;
  const std::size_t n = in.byte() % 6;  // 0..5: wrong widths must be refused, not read past
  for (std::size_t i = 0; i < n; ++i) regs.push_back(in.u16());
  auto v = decode_registers(p, regs);
  if (v) GW_FUZZ_CHECK(std::isfinite(*v));
  if (regs.size() != static_cast<std::size_t>(width_of(p.type))) GW_FUZZ_CHECK(!v);
  (void)decode_bit(p, in.flag());

  // The names a config file gives, as text.
  const std::string_view text = in.rest_text();
  (void)parse_register_table(text);
  (void)parse_value_type(text);
  (void)parse_word_order(text);

  // Read planning over points built from the remaining bytes.
  std::vector<PointSpec> points;
  gw::fuzz::Input rest(in.rest().data(), in.rest().size());
  for (int i = 0; i < 64 && !rest.rest().empty(); ++i) {
    PointSpec q;
    q.table = static_cast<RegisterTable>(rest.byte() % 4);
    q.type = is_bit_table(q.table) ? ValueType::kBool : static_cast<ValueType>(rest.byte() % 9);
    q.address = rest.u16();
    if (validate_point(q)) points.push_back(q);
  }
  ReadPlanLimits limits;
  limits.max_registers = 1 + size % 125;
  limits.max_gap = static_cast<int>(size % 17);
  std::vector<int> served(points.size(), 0);
  for (const ReadRequest& r : plan_reads(points, limits)) {
    GW_FUZZ_CHECK(r.count >= 1);
    for (std::size_t i : r.points) {
      GW_FUZZ_CHECK(i < points.size());
      ++served[i];
    }
  }
  for (int s : served) GW_FUZZ_CHECK(s == 1);  // every point in exactly one request
  return 0;
}
