// The control socket's requests: lines of (mostly) JSON from any local client, framed the way
// the server frames them, and the replies built from what they carried.
#include <string>

#include "gateway/control_protocol.h"
#include "gateway/control_server.h"
#include "tests/fuzz/fuzz_input.h"

namespace control = gw::control;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  std::size_t start = 0;
  while (start <= bytes.size()) {
    std::size_t nl = bytes.find('\n', start);
    if (nl == std::string_view::npos) nl = bytes.size();
    const std::string_view line = bytes.substr(start, nl - start);
    start = nl + 1;
    if (line.empty() || line.size() > control::kMaxLineBytes) continue;
    auto req = control::parse_request_line(line);
    std::string reply;
    if (!req) {
      reply = control::encode_reply(0, control::Reply::error(control::error_code::kBadRequest,
                                                             req.status().message()));
    } else {
      // Echo what the client sent back inside a reply: any string it carried must encode.
      reply = control::encode_reply(
          req->id, control::Reply::success(control::Json{{"cmd", req->cmd}, {"args", req->args}}));
    }
    GW_FUZZ_CHECK(!reply.empty() && reply.back() == '\n');
    GW_FUZZ_CHECK(reply.find('\n') == reply.size() - 1);  // one line, whatever was inside
  }
  return 0;
}
