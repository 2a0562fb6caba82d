// Lenient readers over the daemon's JSON (gateway/control_protocol.h). The protocol promises every
// listed key, but a CLI must not crash on an older or newer daemon: a missing key or a value of
// another type reads as the fallback instead of throwing. ordered_json keeps the daemon's key
// order, so `--json` output is the daemon's document as sent. Pure functions.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace gw::ctl {

using Json = nlohmann::ordered_json;

// The member `key` of an object, or a null value (never throws, never inserts).
const Json& field(const Json& object, std::string_view key);

std::string get_string(const Json& object, std::string_view key, std::string_view fallback = "");
int64_t get_int(const Json& object, std::string_view key, int64_t fallback = 0);
double get_double(const Json& object, std::string_view key, double fallback = 0.0);
bool get_bool(const Json& object, std::string_view key, bool fallback = false);

// Any scalar as text: strings as they are, numbers as the shortest round-trip form, null as "".
std::string scalar_text(const Json& value);

// Parses one line; a null optional-like result (is_discarded()) when it is not JSON.
Json parse_line(std::string_view line);

// Contract ("Card ids never appear raw ... unless asked"): replaces a raw access credential (one
// not starting "h:") in a protobuf-JSON event by "[redacted]". Applied to whatever the daemon
// sends, as a second line of defence. Returns true when something was replaced.
bool redact_event_credentials(Json& event);
// Applies redact_event_credentials to every object that looks like an event, at any depth.
void redact_all_credentials(Json& document);

}  // namespace gw::ctl
