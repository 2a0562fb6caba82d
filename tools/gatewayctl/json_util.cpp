#include "tools/gatewayctl/json_util.h"

#include <charconv>

namespace gw::ctl {

namespace {
const Json kNull;
}  // namespace

const Json& field(const Json& object, std::string_view key) {
  if (!object.is_object()) return kNull;
  auto it = object.find(std::string(key));
  return it == object.end() ? kNull : *it;
}

std::string get_string(const Json& object, std::string_view key, std::string_view fallback) {
  const Json& v = field(object, key);
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number() || v.is_boolean()) return scalar_text(v);
  return std::string(fallback);
}

int64_t get_int(const Json& object, std::string_view key, int64_t fallback) {
  const Json& v = field(object, key);
  if (v.is_number_integer()) {
    if (v.is_number_unsigned()) {
      const auto u = v.get<uint64_t>();
      return u > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(u);
    }
    return v.get<int64_t>();
  }
  if (v.is_number_float()) return static_cast<int64_t>(v.get<double>());
  // protobuf's JSON form writes 64-bit integers as strings.
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    int64_t out = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    if (ec == std::errc() && end == s.data() + s.size()) return out;
  }
  return fallback;
}

double get_double(const Json& object, std::string_view key, double fallback) {
  const Json& v = field(object, key);
  if (v.is_number()) return v.get<double>();
  return fallback;
}

bool get_bool(const Json& object, std::string_view key, bool fallback) {
  const Json& v = field(object, key);
  return v.is_boolean() ? v.get<bool>() : fallback;
}

std::string scalar_text(const Json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_null()) return "";
  if (value.is_number_float()) {
    char buf[32];
    auto [end, ec] =
        std::to_chars(buf, buf + sizeof buf, value.get<double>(), std::chars_format::general, 10);
    return ec == std::errc() ? std::string(buf, end) : value.dump();
  }
  return value.dump();
}

Json parse_line(std::string_view line) {
  return Json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
}

bool redact_event_credentials(Json& event) {
  if (!event.is_object()) return false;
  auto access = event.find("access");
  if (access == event.end() || !access->is_object()) return false;
  auto cred = access->find("credential");
  if (cred == access->end() || !cred->is_string()) return false;
  const std::string value = cred->get<std::string>();
  if (value.empty() || value.starts_with("h:") || value == "[redacted]") return false;
  *cred = "[redacted]";
  return true;
}

void redact_all_credentials(Json& document) {
  if (document.is_object()) {
    redact_event_credentials(document);
    for (auto& [key, value] : document.items()) redact_all_credentials(value);
  } else if (document.is_array()) {
    for (auto& value : document) redact_all_credentials(value);
  }
}

}  // namespace gw::ctl
