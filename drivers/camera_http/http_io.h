// What the two HTTP peers of the camera driver (AlertStreamClient, PushServer) share: the read
// limits and a message head as written to traces, with credentials blanked. Included only by
// their .cpp files: it also silences a GCC false positive for the rest of the file (below).
#pragma once

#include <cstddef>
#include <sstream>
#include <string>

// GCC 12 takes Asio 1.18's coroutine frame allocator (awaitable_frame_base's operator delete
// releasing what thread_info_base::allocate got from ::operator new) for a mismatched pair when
// it inlines a large coroutine. It is Asio's own matched pair; the warning is a false positive.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace gw::drivers::camera_http {

inline constexpr std::size_t kHeaderLimit = 16 * 1024;
inline constexpr std::size_t kReadChunk = 16 * 1024;

// A message head (request or response) for traces, with Authorization values blanked: the
// scheme name stays, the credentials become " (redacted)".
template <typename Fields>
std::string head_text(const Fields& head) {
  std::ostringstream os;
  os << head;
  std::string text = os.str();
  const std::string key = "Authorization: ";
  for (std::size_t at = text.find(key); at != std::string::npos; at = text.find(key, at + 1)) {
    const std::size_t end = text.find("\r\n", at);
    const std::size_t value = at + key.size();
    const std::size_t space = text.find(' ', value);  // keep the scheme name
    const std::size_t keep = space != std::string::npos && space < end ? space : value;
    text.replace(keep, end - keep, " (redacted)");
  }
  return text;
}

}  // namespace gw::drivers::camera_http
