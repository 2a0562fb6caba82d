// WWW-Authenticate challenges as a camera (or anything on its address) sends them.
#include "protocols/http_auth.h"
#include "tests/fuzz/fuzz_input.h"

namespace auth = gw::protocols::http_auth;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const std::string_view header(reinterpret_cast<const char*>(data), size);
  for (const auth::Challenge& c : auth::parse_challenges(header)) {
    if (c.scheme != "digest") continue;
    auth::DigestInput in;
    in.method = "GET";
    in.uri = "/ISAPI/Event/notification/alertStream";
    in.username = "admin";
    in.password = "secret";
    in.cnonce = "0a4f113b";
    auto value = auth::digest_authorization(c, in);
    if (value) {
      GW_FUZZ_CHECK(value->find('\n') == std::string::npos);
      GW_FUZZ_CHECK(value->find('\r') == std::string::npos);
    }
  }
  (void)auth::parse_params(header);
  return 0;
}
