// Camera notifications: Hikvision XML and JSON, our JSON, Dahua text, and the multipart streams
// that carry them, fed in pieces of any size; then the active/inactive tracker on the result.
#include <chrono>
#include <string>
#include <vector>

#include "protocols/camera_alert.h"
#include "tests/fuzz/fuzz_input.h"

namespace cam = gw::protocols::camera;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  gw::fuzz::Input in(data, size);
  const std::size_t piece = 1 + in.byte() % 64;
  const uint8_t boundary_len = 1 + in.byte() % 12;
  std::string boundary;
  for (int i = 0; i < boundary_len; ++i) boundary.push_back(static_cast<char>('a' + in.byte() % 26));
  const std::string_view text = in.rest_text();

  // One document on its own.
  cam::AlertTracker tracker(std::chrono::milliseconds(500), 8);
  auto now = cam::AlertTracker::Clock::time_point{};
  auto track = [&](const cam::Alert& a) {
    GW_FUZZ_CHECK(!a.type.empty() || a.heartbeat);
    GW_FUZZ_CHECK(a.detail.size() <= cam::kMaxDetailBytes);
    cam::Transition t;
    (void)tracker.on_alert(a, now, t);
    now += std::chrono::milliseconds(300);
    (void)tracker.expire(now);
  };
  if (auto alerts = cam::parse_body(text)) {
    GW_FUZZ_CHECK(!alerts->empty());
    for (const auto& a : *alerts) track(a);
  }

  // The same bytes as a multipart stream, whole and in pieces: the same parts either way.
  cam::SplitterLimits limits;
  limits.max_part_bytes = 512;
  limits.max_header_bytes = 256;
  cam::MultipartSplitter whole(boundary, limits);
  cam::MultipartSplitter cut(boundary, limits);
  std::vector<cam::Part> a, b;
  whole.feed(text, a);
  whole.finish(a);
  for (std::size_t at = 0; at < text.size(); at += piece) {
    cut.feed(text.substr(at, piece), b);
    GW_FUZZ_CHECK(cut.buffered_bytes() <= limits.max_part_bytes + limits.max_header_bytes + piece + 128);
  }
  cut.finish(b);
  GW_FUZZ_CHECK(a.size() == b.size());
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) {
    GW_FUZZ_CHECK(a[i].body == b[i].body);
    GW_FUZZ_CHECK(a[i].skipped == b[i].skipped);
    if (a[i].skipped == cam::Part::Skipped::kNo && a[i].error.empty()) {
      if (auto alerts = cam::parse_body(a[i].body)) {
        for (const auto& al : *alerts) track(al);
      }
    }
  }

  const auto media = cam::parse_media_type(text.substr(0, 256));
  (void)media.param("boundary");
  (void)cam::is_media(media.type);
  (void)cam::parse_iso8601_us(text.substr(0, 40));
  (void)cam::normalize_type(text.substr(0, 80));
  return 0;
}
