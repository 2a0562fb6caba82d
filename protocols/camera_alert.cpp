#include "protocols/camera_alert.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <nlohmann/json.hpp>

#include "protocols/xml_reader.h"

namespace gw::protocols::camera {

namespace {

using nlohmann::json;

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool iequals(std::string_view a, std::string_view b) { return lower(a) == lower(b); }

// Printable text only, cut at `max` bytes without splitting a UTF-8 sequence.
std::string clean_text(std::string_view s, std::size_t max = kMaxDetailBytes) {
  std::string out;
  for (char c : trim(s)) {
    const auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u == 0x7F) ? ' ' : c;
  }
  if (out.size() > max) {
    std::size_t cut = max;
    while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) --cut;
    out.resize(cut);
  }
  return out;
}

// A short excerpt of untrusted text for an error message.
std::string excerpt(std::string_view s) {
  std::string e = clean_text(s, 40);
  return s.size() > 40 ? e + "..." : e;
}

std::optional<uint32_t> parse_channel(std::string_view s) {
  s = trim(s);
  uint32_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v > 1000000) return std::nullopt;
  return v;
}

std::optional<int64_t> parse_int64(std::string_view s) {
  s = trim(s);
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

struct TypeName {
  std::string_view vendor;  // lower-cased
  std::string_view type;
};
// Hikvision ISAPI eventType values and Dahua eventManager codes, lower-cased.
constexpr std::array<TypeName, 40> kTypes{{
    // Hikvision
    {"vmd", "motion"},
    {"motiondetection", "motion"},
    {"linedetection", "line_crossing"},
    {"fielddetection", "intrusion"},
    {"regionentrance", "region_entrance"},
    {"regionexiting", "region_exiting"},
    {"tamperdetection", "tamper"},
    {"shelteralarm", "tamper"},
    {"videoloss", "video_loss"},
    {"io", "alarm_input"},
    {"scenechangedetection", "scene_change"},
    {"defocus", "defocus"},
    {"facedetection", "face"},
    {"audioexception", "audio_exception"},
    {"pir", "pir"},
    {"unattendedbaggage", "object_left"},
    {"attendedbaggage", "object_removed"},
    {"loitering", "loitering"},
    {"group", "crowd"},
    {"parking", "parking"},
    {"rapidmove", "fast_moving"},
    {"diskfull", "storage_full"},
    {"diskerror", "storage_error"},
    {"nicbroken", "network_down"},
    {"ipconflict", "ip_conflict"},
    {"illaccess", "illegal_access"},
    // Dahua
    {"videomotion", "motion"},
    {"crosslinedetection", "line_crossing"},
    {"crossregiondetection", "intrusion"},
    {"videoblind", "tamper"},
    {"alarmlocal", "alarm_input"},
    {"videoabnormaldetection", "scene_change"},
    {"videounfocus", "defocus"},
    {"leftdetection", "object_left"},
    {"takenawaydetection", "object_removed"},
    {"audiomutation", "audio_exception"},
    {"audioanomaly", "audio_exception"},
    {"wanderdetection", "loitering"},
    {"rioterdetection", "crowd"},
    {"parkingdetection", "parking"},
}};

State parse_state(std::string_view s, bool& ok) {
  ok = true;
  const std::string v = lower(trim(s));
  if (v == "active") return State::kActive;
  if (v == "inactive") return State::kInactive;
  ok = false;
  return State::kInactive;
}

// Fields shared by the XML and JSON forms of Hikvision's EventNotificationAlert.
struct HikFields {
  std::string event_type, event_state, channel, dyn_channel, io_port, date_time, post_count,
      description;
};

Result<Alert> hikvision_alert(const HikFields& f, const char* form) {
  const std::string where = std::string("Hikvision ") + form + " EventNotificationAlert";
  if (trim(f.event_type).empty()) return Status::invalid(where + ": no eventType");
  if (trim(f.event_state).empty()) return Status::invalid(where + ": no eventState");
  Alert a;
  a.vendor_type = clean_text(f.event_type, 64);
  a.type = normalize_type(a.vendor_type);
  bool ok = false;
  a.state = parse_state(f.event_state, ok);
  if (!ok) {
    return Status::invalid(where + ": eventState '" + excerpt(f.event_state) +
                           "' is neither active nor inactive");
  }
  for (const std::string* c : {&f.channel, &f.dyn_channel, &f.io_port}) {
    if (trim(*c).empty()) continue;
    auto ch = parse_channel(*c);
    if (!ch) return Status::invalid(where + ": channel '" + excerpt(*c) + "' is not a number");
    a.channel = *ch;
    break;
  }
  if (!trim(f.post_count).empty()) {
    auto n = parse_int64(f.post_count);
    if (!n) {
      return Status::invalid(where + ": activePostCount '" + excerpt(f.post_count) +
                             "' is not a number");
    }
    a.active_post_count = *n;
  }
  if (!trim(f.date_time).empty()) a.device_time_us = parse_iso8601_us(f.date_time).value_or(0);
  const std::string desc = clean_text(f.description);
  a.detail = clean_text(desc.empty() ? a.vendor_type : a.vendor_type + ": " + desc);
  const std::string t = lower(a.vendor_type);
  a.heartbeat = t == "heartbeat";
  a.heartbeat_unless_active = t == "videoloss" && a.state == State::kInactive;
  return a;
}

// Deepest nesting of arrays/objects, so a hostile document cannot make the parser recurse deep.
std::size_t json_depth(std::string_view s) {
  std::size_t depth = 0, max = 0;
  bool in_string = false, escaped = false;
  for (char c : s) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      max = std::max(max, ++depth);
    } else if ((c == '}' || c == ']') && depth > 0) {
      --depth;
    }
  }
  return max;
}

// A JSON member as text: strings as they are, numbers and booleans printed.
std::string member_text(const json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) return {};
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number_integer()) return std::to_string(it->get<int64_t>());
  if (it->is_number_unsigned()) return std::to_string(it->get<uint64_t>());
  if (it->is_boolean()) return it->get<bool>() ? "true" : "false";
  return "?";  // an object or array where a value belongs: fails the field's own check
}

Result<Alert> simple_json(const json& j) {
  Alert a;
  auto type = j.find("type");
  if (!type->is_string() || trim(type->get<std::string>()).empty()) {
    return Status::invalid("JSON event: \"type\" must be a non-empty string");
  }
  a.vendor_type = clean_text(type->get<std::string>(), 64);
  a.type = normalize_type(a.vendor_type);
  auto active = j.find("active");
  if (!active->is_boolean()) return Status::invalid("JSON event: \"active\" must be true or false");
  a.state = active->get<bool>() ? State::kActive : State::kInactive;
  if (auto ch = j.find("channel"); ch != j.end()) {
    if (!ch->is_number_unsigned() || ch->get<uint64_t>() > 1000000) {
      return Status::invalid("JSON event: \"channel\" must be a whole number from 0 to 1000000");
    }
    a.channel = static_cast<uint32_t>(ch->get<uint64_t>());
  }
  if (auto d = j.find("detail"); d != j.end()) {
    if (!d->is_string()) return Status::invalid("JSON event: \"detail\" must be a string");
    a.detail = clean_text(d->get<std::string>());
  }
  if (auto t = j.find("time"); t != j.end()) {
    if (!t->is_string()) return Status::invalid("JSON event: \"time\" must be an ISO 8601 string");
    auto us = parse_iso8601_us(t->get<std::string>());
    if (!us) {
      return Status::invalid("JSON event: \"time\" '" + excerpt(t->get<std::string>()) +
                             "' is not an ISO 8601 time with a zone");
    }
    a.device_time_us = *us;
  }
  return a;
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

}  // namespace

std::string normalize_type(std::string_view vendor_type) {
  const std::string key = lower(trim(vendor_type));
  for (const TypeName& t : kTypes) {
    if (t.vendor == key) return std::string(t.type);
  }
  std::string out;
  for (char c : key) {
    if (out.size() >= 64) break;
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    out += ok ? c : '_';
  }
  return out.empty() ? "unknown" : out;
}

Result<Alert> parse_hikvision_xml(std::string_view body) {
  xml::Limits limits;
  limits.max_bytes = kMaxAlertBytes;
  auto doc = xml::parse(body, limits);
  if (!doc) return doc.status();
  const xml::Element& root = *doc;
  if (root.name != "EventNotificationAlert") {
    return Status::invalid("XML root element is <" + clean_text(root.name, 64) +
                           ">, expected <EventNotificationAlert>");
  }
  HikFields f;
  f.event_type = root.child_text("eventType");
  f.event_state = root.child_text("eventState");
  f.channel = root.child_text("channelID");
  f.dyn_channel = root.child_text("dynChannelID");
  f.io_port = root.child_text("inputIOPortID");
  f.date_time = root.child_text("dateTime");
  f.post_count = root.child_text("activePostCount");
  f.description = root.child_text("eventDescription");
  return hikvision_alert(f, "XML");
}

Result<Alert> parse_json(std::string_view body) {
  if (body.size() > kMaxAlertBytes) {
    return Status::invalid("JSON document of " + std::to_string(body.size()) +
                           " bytes is larger than the limit of " + std::to_string(kMaxAlertBytes));
  }
  if (json_depth(body) > 16) return Status::invalid("JSON nested deeper than 16 levels");
  json j = json::parse(body.begin(), body.end(), nullptr, false);
  if (j.is_discarded()) return Status::invalid("JSON: not a valid JSON document");
  if (!j.is_object()) return Status::invalid("JSON: expected an object at the top level");
  if (auto inner = j.find("EventNotificationAlert"); inner != j.end() && inner->is_object()) {
    j = json(*inner);
  }
  if (j.contains("eventType") || j.contains("eventState")) {
    HikFields f;
    f.event_type = member_text(j, "eventType");
    f.event_state = member_text(j, "eventState");
    f.channel = member_text(j, "channelID");
    f.dyn_channel = member_text(j, "dynChannelID");
    f.io_port = member_text(j, "inputIOPortID");
    f.date_time = member_text(j, "dateTime");
    f.post_count = member_text(j, "activePostCount");
    f.description = member_text(j, "eventDescription");
    return hikvision_alert(f, "JSON");
  }
  if (j.contains("type") && j.contains("active")) return simple_json(j);
  return Status::invalid(
      "JSON has neither eventType/eventState (Hikvision) nor type/active (simple form)");
}

Result<std::vector<Alert>> parse_dahua(std::string_view body) {
  const std::string_view all = trim(body);
  std::vector<Alert> out;
  if (iequals(all, "Heartbeat")) {
    Alert a;
    a.vendor_type = "Heartbeat";
    a.type = "heartbeat";
    a.heartbeat = true;
    out.push_back(std::move(a));
    return out;
  }
  // Records start at "Code=" at the beginning of a line; a record's data= may span lines.
  std::vector<std::string_view> records;
  std::size_t pos = 0;
  while (pos < all.size()) {
    std::size_t next = pos;
    do {
      next = all.find('\n', next);
      if (next == std::string_view::npos) break;
      ++next;
    } while (next < all.size() && all.substr(next, 5) != "Code=");
    const std::size_t end = next == std::string_view::npos ? all.size() : next;
    records.push_back(all.substr(pos, end - pos));
    pos = end;
  }
  for (std::string_view rec : records) {
    rec = trim(rec);
    if (rec.substr(0, 5) != "Code=") {
      return Status::invalid("not a Dahua event line (expected Code=...;action=...): '" +
                             excerpt(rec) + "'");
    }
    std::string code, action, index;
    std::string_view rest = rec;
    while (!rest.empty()) {
      const std::size_t semi = rest.find(';');
      std::string_view field = trim(rest.substr(0, semi));
      const std::size_t eq = field.find('=');
      const std::string key = lower(trim(field.substr(0, eq)));
      if (key == "data") break;  // JSON that may hold ';': the rest of the record
      const std::string_view value =
          eq == std::string_view::npos ? std::string_view{} : trim(field.substr(eq + 1));
      if (key == "code") code = std::string(value);
      if (key == "action") action = std::string(value);
      if (key == "index") index = std::string(value);
      if (semi == std::string_view::npos) break;
      rest.remove_prefix(semi + 1);
    }
    if (code.empty()) return Status::invalid("Dahua event without a Code");
    Alert a;
    a.vendor_type = clean_text(code, 64);
    a.type = normalize_type(code);
    a.detail = a.vendor_type;
    if (iequals(code, "Heartbeat")) {
      a.heartbeat = true;
      out.push_back(std::move(a));
      continue;
    }
    const std::string act = lower(action);
    if (act == "start") {
      a.state = State::kActive;
    } else if (act == "stop") {
      a.state = State::kInactive;
    } else if (act == "pulse") {
      a.state = State::kPulse;
    } else {
      return Status::invalid("Dahua event " + a.vendor_type + ": action '" + excerpt(action) +
                             "' is not Start, Stop or Pulse");
    }
    if (!index.empty()) {
      auto i = parse_channel(index);
      if (!i) {
        return Status::invalid("Dahua event " + a.vendor_type + ": index '" + excerpt(index) +
                               "' is not a number");
      }
      a.channel = *i + 1;
    } else {
      a.channel = 1;
    }
    out.push_back(std::move(a));
  }
  if (out.empty()) return Status::invalid("empty body: no alert in it");
  return out;
}

Result<std::vector<Alert>> parse_body(std::string_view body) {
  const std::string_view t = trim(body);
  if (t.empty()) return Status::invalid("empty body: no alert in it");
  if (t.front() == '<' || body.substr(0, 3) == "\xEF\xBB\xBF") {
    auto a = parse_hikvision_xml(body);
    if (!a) return a.status();
    return std::vector<Alert>{std::move(a).value()};
  }
  if (t.front() == '{' || t.front() == '[') {
    auto a = parse_json(body);
    if (!a) return a.status();
    return std::vector<Alert>{std::move(a).value()};
  }
  return parse_dahua(body);
}

std::optional<int64_t> parse_iso8601_us(std::string_view text) {
  const std::string_view s = trim(text);
  auto num = [&](std::size_t at, std::size_t n, int& out) {
    if (at + n > s.size()) return false;
    out = 0;
    for (std::size_t i = at; i < at + n; ++i) {
      if (s[i] < '0' || s[i] > '9') return false;
      out = out * 10 + (s[i] - '0');
    }
    return true;
  };
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0;
  if (!num(0, 4, y) || s.size() < 19 || s[4] != '-' || !num(5, 2, mo) || s[7] != '-' ||
      !num(8, 2, d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || !num(11, 2, h) ||
      s[13] != ':' || !num(14, 2, mi) || s[16] != ':' || !num(17, 2, sec)) {
    return std::nullopt;
  }
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) return std::nullopt;
  std::size_t pos = 19;
  int64_t frac_us = 0;
  if (pos < s.size() && (s[pos] == '.' || s[pos] == ',')) {
    ++pos;
    int64_t scale = 100000;
    const std::size_t start = pos;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      frac_us += (s[pos] - '0') * scale;
      scale /= 10;
      ++pos;
    }
    if (pos == start) return std::nullopt;
  }
  if (pos >= s.size()) return std::nullopt;  // no zone: camera-local time, meaning unknown
  int64_t offset_s = 0;
  if (s[pos] == 'Z' || s[pos] == 'z') {
    ++pos;
  } else if (s[pos] == '+' || s[pos] == '-') {
    const int sign = s[pos] == '-' ? -1 : 1;
    int oh = 0, om = 0;
    if (!num(pos + 1, 2, oh)) return std::nullopt;
    std::size_t at = pos + 3;
    if (at < s.size() && s[at] == ':') ++at;
    if (!num(at, 2, om)) return std::nullopt;
    if (oh > 23 || om > 59) return std::nullopt;
    offset_s = sign * (oh * 3600 + om * 60);
    pos = at + 2;
  } else {
    return std::nullopt;
  }
  if (pos != s.size()) return std::nullopt;
  const int64_t days = days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d));
  const int64_t secs = days * 86400 + h * 3600 + mi * 60 + sec - offset_s;
  return secs * 1000000 + frac_us;
}

std::string MediaType::param(const std::string& name) const {
  auto it = params.find(name);
  return it == params.end() ? std::string() : it->second;
}

MediaType parse_media_type(std::string_view content_type) {
  MediaType m;
  const std::string_view ct = content_type;
  std::size_t pos = ct.find(';');
  m.type = lower(trim(ct.substr(0, pos)));
  while (pos != std::string_view::npos && pos < ct.size()) {
    ++pos;  // past ';'
    const std::size_t eq = ct.find('=', pos);
    if (eq == std::string_view::npos) break;
    const std::string name = lower(trim(ct.substr(pos, eq - pos)));
    pos = eq + 1;
    while (pos < ct.size() && is_blank(ct[pos])) ++pos;
    std::string value;
    if (pos < ct.size() && ct[pos] == '"') {
      for (++pos; pos < ct.size() && ct[pos] != '"'; ++pos) {
        if (ct[pos] == '\\' && pos + 1 < ct.size()) ++pos;
        value += ct[pos];
      }
      pos = ct.find(';', pos);
    } else {
      const std::size_t semi = ct.find(';', pos);
      value = std::string(trim(ct.substr(pos, semi == std::string_view::npos ? semi : semi - pos)));
      pos = semi;
    }
    if (!name.empty()) m.params[name] = value;
  }
  return m;
}

bool is_media(std::string_view media_type) {
  const std::string t = lower(trim(media_type));
  return t.rfind("image/", 0) == 0 || t.rfind("video/", 0) == 0 || t.rfind("audio/", 0) == 0 ||
         t == "application/octet-stream";
}

// ---------------------------------------------------------------------------------------------
// MultipartSplitter

namespace {
// A line longer than the boundary plus this cannot be a boundary line (transport padding is
// allowed after the boundary, and some cameras put a space after the dashes).
constexpr std::size_t kLineSlack = 64;

uint64_t non_blank(std::string_view s) {
  return static_cast<uint64_t>(
      std::count_if(s.begin(), s.end(), [](char c) { return !is_blank(c); }));
}
}  // namespace

MultipartSplitter::MultipartSplitter(std::string_view boundary, SplitterLimits limits)
    : limits_(limits) {
  std::string_view b = trim(boundary);
  while (!b.empty() && b.front() == '-') b.remove_prefix(1);
  while (!b.empty() && b.front() == ' ') b.remove_prefix(1);
  boundary_ = std::string(b);
}

bool MultipartSplitter::delimiter_line(std::string_view line, bool& close) const {
  // Longer lines are never boundaries, whether they arrive whole or in pieces (a piece that
  // grows past this is let go before its end is seen).
  if (line.size() > boundary_.size() + kLineSlack) return false;
  while (!line.empty() && is_blank(line.back())) line.remove_suffix(1);
  if (line.substr(0, 2) != "--") return false;
  while (!line.empty() && line.front() == '-') line.remove_prefix(1);
  while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
  if (line.substr(0, boundary_.size()) != boundary_) return false;
  const std::string_view after = line.substr(boundary_.size());
  close = after == "--";
  return after.empty() || close;
}

void MultipartSplitter::start_part() {
  part_ = Part{};
  content_length_ = 0;
  body_at_line_start_ = true;
}

void MultipartSplitter::emit(std::vector<Part>& out, State next) {
  ++stats_.parts;
  if (!part_.error.empty()) {
    ++stats_.bad_parts;
    part_.body.clear();
  } else if (part_.skipped == Part::Skipped::kMedia) {
    ++stats_.media_skipped;
  } else if (part_.skipped == Part::Skipped::kOversize) {
    ++stats_.oversize;
  }
  out.push_back(std::move(part_));
  part_ = Part{};
  state_ = next;
}

void MultipartSplitter::take_body(std::string_view bytes) {
  part_.size += bytes.size();
  if (part_.skipped != Part::Skipped::kNo) return;
  if (part_.body.size() + bytes.size() > limits_.max_part_bytes) {
    part_.skipped = Part::Skipped::kOversize;
    std::string().swap(part_.body);
    return;
  }
  part_.body.append(bytes);
}

void MultipartSplitter::feed(std::string_view bytes, std::vector<Part>& out) {
  if (state_ == State::kEpilogue) return;
  buf_.append(bytes);
  while (step(out)) {
  }
}

bool MultipartSplitter::step(std::vector<Part>& out) {
  switch (state_) {
    case State::kPreamble:
    case State::kSeek:
      return seek_line(out);
    case State::kHeaders:
      return header_line(out);
    case State::kBodyLength:
      return body_length(out);
    case State::kBodyDelimited:
      return body_delimited(out);
    case State::kEpilogue:
      buf_.clear();
      return false;
  }
  return false;
}

bool MultipartSplitter::seek_line(std::vector<Part>& out) {
  (void)out;
  const std::size_t nl = buf_.find('\n');
  if (nl == std::string::npos) {
    if (dropping_line_ || buf_.size() > boundary_.size() + kLineSlack) {
      if (state_ == State::kSeek) stats_.stray_bytes += non_blank(buf_);
      buf_.clear();
      dropping_line_ = true;
    }
    return false;
  }
  const std::string_view line(buf_.data(), nl);
  bool close = false;
  const bool delimiter = !dropping_line_ && delimiter_line(line, close);
  if (!delimiter && state_ == State::kSeek) stats_.stray_bytes += non_blank(line);
  dropping_line_ = false;
  buf_.erase(0, nl + 1);
  if (delimiter) {
    if (close) {
      state_ = State::kEpilogue;
      buf_.clear();
      return false;
    }
    start_part();
    state_ = State::kHeaders;
  }
  return true;
}

bool MultipartSplitter::header_line(std::vector<Part>& out) {
  const std::size_t nl = buf_.find('\n');
  if (nl == std::string::npos) {
    // A line that may still turn out to be a boundary is waited for (it is short); any other
    // line that would overflow the header section ends the part now.
    const bool maybe_boundary = (buf_.compare(0, 2, "--") == 0 || buf_ == "-") &&
                                buf_.size() <= boundary_.size() + kLineSlack;
    if (!maybe_boundary && part_.head.size() + buf_.size() > limits_.max_header_bytes) {
      part_.error =
          "part header section larger than " + std::to_string(limits_.max_header_bytes) + " bytes";
      buf_.clear();
      dropping_line_ = true;
      emit(out, State::kSeek);
    }
    return false;
  }
  std::string_view line(buf_.data(), nl);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  bool close = false;
  if (delimiter_line(line, close)) {
    // A boundary before the blank line that ends the headers: a part without a body. The
    // boundary line stays in the buffer and starts the next part.
    part_.error = "part headers not ended by an empty line";
    emit(out, State::kSeek);
    return true;
  }
  if (part_.head.size() + nl + 1 > limits_.max_header_bytes) {
    part_.error =
        "part header section larger than " + std::to_string(limits_.max_header_bytes) + " bytes";
    buf_.erase(0, nl + 1);
    emit(out, State::kSeek);
    return true;
  }
  part_.head.append(buf_, 0, nl + 1);
  if (line.empty()) {
    buf_.erase(0, nl + 1);
    for (const auto& [name, value] : part_.headers) {
      if (name == "content-type") part_.content_type = parse_media_type(value).type;
    }
    if (is_media(part_.content_type)) part_.skipped = Part::Skipped::kMedia;
    std::optional<uint64_t> length;
    for (const auto& [name, value] : part_.headers) {
      if (name != "content-length") continue;
      const std::string_view v = trim(value);
      uint64_t n = 0;
      auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
      // A length we cannot read is ignored: the boundary still ends the part.
      if (ec == std::errc() && p == v.data() + v.size()) length = n;
    }
    if (length) {
      content_length_ = static_cast<std::size_t>(*length);
      if (part_.skipped == Part::Skipped::kNo && *length > limits_.max_part_bytes) {
        part_.skipped = Part::Skipped::kOversize;
      }
      state_ = State::kBodyLength;
    } else {
      state_ = State::kBodyDelimited;
      body_at_line_start_ = true;
    }
    return true;
  }
  if ((line.front() == ' ' || line.front() == '\t') && !part_.headers.empty()) {
    part_.headers.back().second += " " + std::string(trim(line));  // folded header line
  } else {
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      part_.error = "malformed part header line '" + excerpt(line) + "'";
      buf_.erase(0, nl + 1);
      emit(out, State::kSeek);
      return true;
    }
    part_.headers.emplace_back(lower(trim(line.substr(0, colon))),
                               std::string(trim(line.substr(colon + 1))));
  }
  buf_.erase(0, nl + 1);
  return true;
}

bool MultipartSplitter::body_length(std::vector<Part>& out) {
  const std::size_t need = content_length_ - part_.size;
  const std::size_t take = std::min(need, buf_.size());
  take_body(std::string_view(buf_.data(), take));
  buf_.erase(0, take);
  if (part_.size == content_length_) {
    emit(out, State::kSeek);
    return true;
  }
  return false;
}

bool MultipartSplitter::body_delimited(std::vector<Part>& out) {
  // Line starts in buf_ where a boundary line could begin; bytes before a boundary line (minus
  // the line break that belongs to the boundary) are body.
  std::size_t keep_from = buf_.size();
  std::size_t ls = body_at_line_start_ ? 0 : std::string::npos;
  if (ls == std::string::npos) {
    const std::size_t nl = buf_.find('\n');
    ls = nl == std::string::npos ? std::string::npos : nl + 1;
  }
  while (ls != std::string::npos) {
    const std::size_t nl = buf_.find('\n', ls);
    const bool dashes = buf_.compare(ls, 2, "--") == 0 ||
                        (buf_.size() - ls == 1 && buf_[ls] == '-') || ls == buf_.size();
    if (dashes) {
      if (nl == std::string::npos) {
        if (buf_.size() - ls <= boundary_.size() + kLineSlack) {
          keep_from = ls;  // may still become a boundary line
        }
        break;
      }
      bool close = false;
      if (delimiter_line(std::string_view(buf_).substr(ls, nl - ls), close)) {
        std::size_t end = ls;
        if (end > 0 && buf_[end - 1] == '\n') --end;
        if (end > 0 && buf_[end - 1] == '\r') --end;
        take_body(std::string_view(buf_.data(), end));
        buf_.erase(0, ls);  // the boundary line stays for kSeek
        emit(out, State::kSeek);
        return true;
      }
    }
    ls = nl == std::string::npos ? std::string::npos : nl + 1;
  }
  // The line break before a possible boundary line belongs to the boundary, not the body; so
  // does a trailing '\r' that may be followed by '\n' and a boundary.
  if (keep_from == buf_.size() && !buf_.empty() && buf_.back() == '\r') keep_from = buf_.size() - 1;
  if (keep_from > 0 && keep_from <= buf_.size() && buf_[keep_from - 1] == '\n') --keep_from;
  if (keep_from > 0 && buf_[keep_from - 1] == '\r') --keep_from;
  if (keep_from > 0) {
    take_body(std::string_view(buf_.data(), keep_from));
    buf_.erase(0, keep_from);
    body_at_line_start_ = false;
  }
  return false;
}

void MultipartSplitter::finish(std::vector<Part>& out) {
  switch (state_) {
    case State::kBodyDelimited: {
      // A boundary line at the very end, without its line break, still ends the body.
      std::size_t end = buf_.size();
      std::size_t ls = buf_.rfind('\n');
      ls = ls != std::string::npos ? ls + 1 : (body_at_line_start_ ? 0 : std::string::npos);
      bool close = false;
      if (ls != std::string::npos && delimiter_line(std::string_view(buf_).substr(ls), close)) {
        end = ls;
        if (end > 0 && buf_[end - 1] == '\n') --end;
        if (end > 0 && buf_[end - 1] == '\r') --end;
      }
      take_body(std::string_view(buf_.data(), end));
      emit(out, State::kEpilogue);
      break;
    }
    case State::kBodyLength:
      part_.error = "body ended after " + std::to_string(part_.size) + " of " +
                    std::to_string(content_length_) + " bytes of a part";
      emit(out, State::kEpilogue);
      break;
    case State::kHeaders:
      part_.error = "body ended inside a part's headers";
      emit(out, State::kEpilogue);
      break;
    default:
      break;
  }
  if (state_ == State::kSeek) stats_.stray_bytes += non_blank(buf_);
  buf_.clear();
  state_ = State::kEpilogue;
}

// ---------------------------------------------------------------------------------------------
// AlertTracker

AlertTracker::AlertTracker(std::chrono::milliseconds inactive_after, std::size_t max_keys)
    : inactive_after_(inactive_after), max_keys_(max_keys) {}

AlertTracker::Verdict AlertTracker::on_alert(const Alert& alert, Clock::time_point now,
                                             Transition& out) {
  if (alert.heartbeat) {
    ++stats_.heartbeats;
    return Verdict::kHeartbeat;
  }
  const Key key{alert.type, alert.channel};
  auto it = states_.find(key);
  if (alert.heartbeat_unless_active && (it == states_.end() || !it->second.active)) {
    ++stats_.heartbeats;
    return Verdict::kHeartbeat;
  }
  out = Transition{alert.type, alert.state != State::kInactive, alert.channel, alert.detail,
                   alert.device_time_us};
  if (alert.state == State::kPulse) {
    ++stats_.transitions;
    return Verdict::kTransition;
  }
  const bool active = alert.state == State::kActive;
  if (it != states_.end() && it->second.active == active) {
    it->second.last_post = now;
    ++stats_.repeats;
    return Verdict::kRepeat;
  }
  if (it == states_.end()) {
    if (states_.size() >= max_keys_) {
      // Make room by forgetting an inactive state; when every one is active, this one is
      // reported but not remembered.
      auto idle = std::find_if(states_.begin(), states_.end(),
                               [](const auto& kv) { return !kv.second.active; });
      if (idle != states_.end()) states_.erase(idle);
    }
    if (states_.size() < max_keys_) it = states_.emplace(key, Entry{}).first;
  }
  if (it != states_.end()) {
    it->second.active = active;
    it->second.last_post = now;
    it->second.vendor_type = alert.vendor_type;
  }
  ++stats_.transitions;
  return Verdict::kTransition;
}

std::vector<Transition> AlertTracker::expire(Clock::time_point now) {
  std::vector<Transition> ended;
  if (inactive_after_.count() <= 0) return ended;
  std::vector<std::pair<Clock::time_point, Key>> due;
  for (const auto& [key, entry] : states_) {
    if (entry.active && now - entry.last_post >= inactive_after_)
      due.emplace_back(entry.last_post, key);
  }
  std::sort(due.begin(), due.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (const auto& [last, key] : due) {
    Entry& e = states_[key];
    e.active = false;
    e.last_post = now;
    ++stats_.expired;
    ++stats_.transitions;
    const auto ms = inactive_after_.count();
    const std::string after =
        ms % 1000 == 0 ? std::to_string(ms / 1000) + "s" : std::to_string(ms) + "ms";
    ended.push_back(Transition{key.type, false, key.channel,
                               e.vendor_type + ": no active notification for " + after, 0});
  }
  return ended;
}

std::optional<AlertTracker::Clock::time_point> AlertTracker::next_expiry() const {
  if (inactive_after_.count() <= 0) return std::nullopt;
  std::optional<Clock::time_point> next;
  for (const auto& [key, entry] : states_) {
    if (!entry.active) continue;
    const auto at = entry.last_post + inactive_after_;
    if (!next || at < *next) next = at;
  }
  return next;
}

}  // namespace gw::protocols::camera
