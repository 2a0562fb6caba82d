// The small XML reader devices' documents go through: any bytes, within and beyond its limits.
#include "protocols/xml_reader.h"
#include "tests/fuzz/fuzz_input.h"

namespace xml = gw::protocols::xml;

namespace {

int depth(const xml::Element& e) {
  int d = 0;
  for (const auto& c : e.children) d = std::max(d, depth(c));
  return d + 1;
}

std::size_t count(const xml::Element& e) {
  std::size_t n = 1;
  for (const auto& c : e.children) n += count(c);
  return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  gw::fuzz::Input in(data, size);
  xml::Limits limits;
  limits.max_depth = 1 + in.byte() % 20;
  limits.max_elements = 1 + in.byte() % 64;
  limits.max_bytes = 1 + in.u16();
  const std::string_view doc = in.rest_text();
  auto r = xml::parse(doc, limits);
  if (r) {
    GW_FUZZ_CHECK(doc.size() <= limits.max_bytes);
    GW_FUZZ_CHECK(depth(*r) <= limits.max_depth + 1);
    GW_FUZZ_CHECK(count(*r) <= limits.max_elements + 1);
    (void)r->child_text("eventType");
  } else {
    GW_FUZZ_CHECK(!r.status().message().empty());
  }
  return 0;
}
