// Minimal JSON text helpers for the subscriber's own output (report, line wrappers). Protobuf
// messages are rendered by protobuf's JSON printer; this only quotes strings and formats numbers.
// Pure functions.
#pragma once

#include <charconv>
#include <cstdio>
#include <string>
#include <string_view>

namespace gw::central {

// Appends s as a quoted JSON string. Bytes >= 0x80 pass through: topics and protobuf strings are
// already valid UTF-8 (the MQTT and proto3 decoders reject anything else).
inline void append_json_string(std::string& out, std::string_view s) {
  out.push_back('"');
  for (const char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
          out += buf;
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
}

// Shortest text that reads back as the same double ("1234.56", not "1234.5600000000001").
inline std::string format_double(double v) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc() ? std::string(buf, end) : std::string("nan");
}

// For people: ten significant digits hide float32 and scale artefacts (49.98, not
// 49.980000000000004); the JSON output keeps the exact value.
// A value that is exactly a float32 (most meter registers) prints as that float's shortest form.
inline std::string format_reading(double v) {
  char buf[32];
  const float f = static_cast<float>(v);
  auto [end, ec] = static_cast<double>(f) == v
                       ? std::to_chars(buf, buf + sizeof buf, f)
                       : std::to_chars(buf, buf + sizeof buf, v, std::chars_format::general, 10);
  return ec == std::errc() ? std::string(buf, end) : std::string("nan");
}

}  // namespace gw::central
