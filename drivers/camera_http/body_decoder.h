// BodyDecoder turns one HTTP body from a camera — a pushed alarm, or an alert stream that never
// ends — into alerts, fed in pieces as they arrive. A multipart body is split part by part
// (pictures and other media parts are counted and dropped as they stream past, never held); any
// other body is one alert document of at most 64 KiB. Each body or part becomes one Decoded: its
// alerts, or the reason it was refused, plus a truncated copy of its bytes for traces.
// No I/O; one owner.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocols/camera_alert.h"
#include "protocols/status.h"

namespace gw::drivers::camera_http {

// Bytes of a body or part kept for `gatewayctl trace`.
inline constexpr std::size_t kTraceBytes = 1024;

struct Decoded {
  std::vector<protocols::camera::Alert> alerts;
  std::string error;       // non-empty: refused, and why (no alerts then)
  std::string error_kind;  // bad_input kind: "format" or "overflow"
  std::string raw;         // the part's head and body, or the body, cut at kTraceBytes
  std::string note;        // what it was: "application/xml part, 512 bytes", "image/jpeg ..."
  bool media = false;      // a picture (or other media) part, skipped
};

class BodyDecoder {
 public:
  // From the body's Content-Type. Fails for a multipart type without a boundary.
  static Result<BodyDecoder> make(std::string_view content_type,
                                  protocols::camera::SplitterLimits limits = {});

  void feed(std::string_view bytes, std::vector<Decoded>& out);
  // The body is complete (a push): emits what is still open. Not called for a stream.
  void finish(std::vector<Decoded>& out);

  bool multipart() const { return splitter_.has_value(); }
  const protocols::camera::SplitterStats* splitter_stats() const {
    return splitter_ ? &splitter_->stats() : nullptr;
  }

 private:
  BodyDecoder() = default;
  void decode_parts(std::vector<protocols::camera::Part>& parts, std::vector<Decoded>& out);

  std::optional<protocols::camera::MultipartSplitter> splitter_;
  std::vector<protocols::camera::Part> parts_;
  std::string body_;      // not multipart: the body so far (up to kMaxAlertBytes)
  std::size_t size_ = 0;  // not multipart: bytes seen
};

}  // namespace gw::drivers::camera_http
