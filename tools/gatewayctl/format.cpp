#include "tools/gatewayctl/format.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <ctime>

#include "campus/gateway/v1/gateway.pb.h"
#include "tools/central/event_format.h"

namespace gw::ctl {

namespace {

constexpr std::string_view kDash = "—";

std::string printf_string(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

// "5.00" -> "5", "5.10" -> "5.1"
std::string trim_decimals(std::string s) {
  if (s.find('.') == std::string::npos) return s;
  while (!s.empty() && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

bool local_tm(int64_t at_us, std::tm* out) {
  const std::time_t t = static_cast<std::time_t>(at_us / 1000000);
  return localtime_r(&t, out) != nullptr;
}

std::string or_dash(const std::string& s) { return s.empty() ? std::string("-") : s; }

// A reading for people. A value that is exactly a float (a float32 register) prints as the
// float it is: 231.9477, not 231.9476929.
std::string reading_text(const Json& v) {
  if (!v.is_number_float()) return scalar_text(v);
  const double d = v.get<double>();
  const auto f = static_cast<float>(d);
  if (std::isfinite(d) && static_cast<double>(f) == d) {
    char buf[32];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, f);
    if (ec == std::errc()) return std::string(buf, end);
  }
  return scalar_text(v);
}

// Consecutive log lines that differ only in their numbers ("retrying in 26ms (attempt 3)").
bool same_but_numbers(const std::string& a, const std::string& b) {
  auto shape = [](const std::string& s) {
    std::string out;
    for (char c : s) {
      const bool digit = std::isdigit(static_cast<unsigned char>(c)) != 0;
      if (!digit) {
        out += c;
      } else if (out.empty() || out.back() != '#') {
        out += '#';
      }
    }
    return out;
  };
  return shape(a) == shape(b);
}

uint64_t get_count(const Json& object, std::string_view key) {
  const int64_t v = get_int(object, key);
  return v < 0 ? 0 : static_cast<uint64_t>(v);
}

std::string plural(uint64_t n, std::string_view one, std::string_view many) {
  return format_count(n) + " " + std::string(n == 1 ? one : many);
}

std::string state_text(const std::string& state, const Style& style) {
  if (state == "online") return style.green(state);
  if (state == "offline") return style.red(state);
  return style.yellow(state.empty() ? std::string("unknown") : state);
}

std::string device_state(const Json& d) {
  std::string state = get_string(d, "state");
  if (state.empty()) state = get_bool(d, "online") ? "online" : "offline";
  return state;
}

// "10.0.3.21:502 #1" in the table, "10.0.3.21:502 unit 1" in the detail.
std::string device_address(const Json& d, bool verbose = false) {
  std::string address = get_string(d, "address");
  const std::string driver = get_string(d, "driver");
  if (driver.starts_with("modbus") && !field(d, "unit_id").is_null()) {
    if (!address.empty()) address += " ";
    address += (verbose ? "unit " : "#") + get_string(d, "unit_id");
  }
  return or_dash(address);
}

const std::vector<std::string_view>& class_order() {
  static const std::vector<std::string_view> order = {"access", "alarm", "telemetry", "status"};
  return order;
}

// Lines after the first in a section are indented to line up under the section's text.
constexpr std::size_t kLabelWidth = 10;
std::string label(const Style& style, std::string_view name) {
  std::string padded(name);
  if (padded.size() < kLabelWidth) padded.resize(kLabelWidth, ' ');
  return style.bold(padded);
}
const std::string kCont(kLabelWidth, ' ');

}  // namespace

std::string Style::wrap(std::string_view code, std::string_view s) const {
  if (!color || s.empty()) return std::string(s);
  return "\x1b[" + std::string(code) + "m" + std::string(s) + "\x1b[0m";
}

std::string format_count(uint64_t n) {
  const std::string digits = std::to_string(n);
  std::string out;
  int in_group = 0;
  for (std::size_t i = digits.size(); i-- > 0;) {
    out.push_back(digits[i]);
    if (++in_group == 3 && i != 0) {
      out.push_back(',');
      in_group = 0;
    }
  }
  std::reverse(out.begin(), out.end());
  return out;
}

std::string format_age(int64_t s) {
  if (s < 0) s = 0;
  if (s < 60) return std::to_string(s) + "s";
  if (s < 3600) return std::to_string(s / 60) + "m";
  if (s < 86400) {
    const int64_t m = (s % 3600) / 60;
    return std::to_string(s / 3600) + "h" + (m ? std::to_string(m) + "m" : "");
  }
  const int64_t h = (s % 86400) / 3600;
  return std::to_string(s / 86400) + "d" + (h ? std::to_string(h) + "h" : "");
}

std::string format_period_ms(double ms) {
  if (!(ms > 0)) return "-";
  if (ms < 1000) return trim_decimals(printf_string("%.1f", ms)) + "ms";
  if (ms < 60000) {
    const double s = ms / 1000.0;
    return trim_decimals(printf_string(s < 10 ? "%.2f" : "%.1f", s)) + "s";
  }
  const auto total_s = static_cast<int64_t>(std::llround(ms / 1000.0));
  if (total_s < 3600) {
    return std::to_string(total_s / 60) + "m" +
           (total_s % 60 ? std::to_string(total_s % 60) + "s" : "");
  }
  return format_age(total_s);
}

std::string format_bytes(uint64_t bytes) {
  if (bytes < 1024) return std::to_string(bytes) + " B";
  const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes) / 1024.0;
  int u = 0;
  while (v >= 1024.0 && u < 3) {
    v /= 1024.0;
    ++u;
  }
  return printf_string("%.1f", v) + " " + units[u];
}

std::string format_clock(int64_t at_us, int64_t now_us, bool seconds) {
  std::tm tm{};
  if (at_us <= 0 || !local_tm(at_us, &tm)) return "?";
  char buf[32];
  const int64_t diff = now_us - at_us;
  if (diff > -3600LL * 1000000 && diff < 86400LL * 1000000) {
    std::strftime(buf, sizeof buf, seconds ? "%H:%M:%S" : "%H:%M", &tm);
  } else {
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M", &tm);
  }
  return buf;
}

std::string format_time_ms(int64_t at_us) {
  std::tm tm{};
  if (at_us <= 0 || !local_tm(at_us, &tm)) return "--:--:--.---";
  char buf[32];
  std::strftime(buf, sizeof buf, "%H:%M:%S", &tm);
  char ms[8];
  std::snprintf(ms, sizeof ms, ".%03d", static_cast<int>((at_us / 1000) % 1000));
  return std::string(buf) + ms;
}

std::size_t display_width(std::string_view text) {
  std::size_t width = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == 0x1b && i + 1 < text.size() && text[i + 1] == '[') {
      i += 2;
      while (i < text.size() && !std::isalpha(static_cast<unsigned char>(text[i]))) ++i;
      continue;
    }
    if ((c & 0xC0) != 0x80) ++width;
  }
  return width;
}

std::string cut_to_width(std::string_view text, std::size_t width) {
  if (display_width(text) <= width) return std::string(text);
  std::string out;
  std::size_t shown = 0;
  bool coloured = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == 0x1b && i + 1 < text.size() && text[i + 1] == '[') {
      std::size_t j = i + 2;
      while (j < text.size() && !std::isalpha(static_cast<unsigned char>(text[j]))) ++j;
      out.append(text.substr(i, j + 1 - i));
      coloured = true;
      i = j;
      continue;
    }
    if ((c & 0xC0) != 0x80) {
      if (shown + 1 >= width) break;
      ++shown;
    }
    out += text[i];
  }
  if (width > 0) out += "…";
  if (coloured) out += "\x1b[0m";
  return out;
}

std::string render_table(const Table& t, std::size_t max_width) {
  const std::size_t cols = t.headers.size();
  std::vector<std::size_t> widths(cols, 0);
  for (std::size_t c = 0; c < cols; ++c) widths[c] = display_width(t.headers[c]);
  for (const auto& row : t.rows) {
    for (std::size_t c = 0; c < cols && c < row.size(); ++c) {
      widths[c] = std::max(widths[c], display_width(row[c]));
    }
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out = t.indent;
    for (std::size_t c = 0; c < cols; ++c) {
      std::string cell = c < cells.size() ? cells[c] : std::string();
      const std::size_t w = display_width(cell);
      const bool right = c < t.right_align.size() && t.right_align[c];
      const bool last = c + 1 == cols;
      if (last && max_width > 0) {
        const std::size_t used = display_width(out);
        const std::size_t room = max_width > used ? max_width - used : 0;
        if (w > room && room > 1) {
          // Cut by code points (the last column carries no colour codes).
          std::string cut;
          std::size_t n = 0;
          for (std::size_t i = 0; i < cell.size(); ++i) {
            const auto ch = static_cast<unsigned char>(cell[i]);
            if ((ch & 0xC0) != 0x80) {
              if (n == room - 1) break;
              ++n;
            }
            cut += cell[i];
          }
          cell = cut + "…";
        }
      }
      if (right) out += std::string(widths[c] - std::min(w, widths[c]), ' ');
      out += cell;
      if (!last) {
        if (!right) out += std::string(widths[c] - std::min(w, widths[c]), ' ');
        out += "  ";
      }
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return out + "\n";
  };
  std::string out = line(t.headers);
  for (const auto& row : t.rows) out += line(row);
  return out;
}

// When MQTT went down: the protocol's connected_since_us is 0 while disconnected, so this uses
// disconnected_since_us when a daemon sends it, else a non-zero connected_since_us; 0 = unknown.
int64_t mqtt_down_since(const Json& mqtt) {
  if (const int64_t t = get_int(mqtt, "disconnected_since_us"); t > 0) return t;
  return get_int(mqtt, "connected_since_us");
}

bool status_is_degraded(const Json& st) {
  const Json& mqtt = field(st, "mqtt");
  const Json& buffer = field(st, "buffer");
  return !get_bool(mqtt, "connected") || get_int(st, "devices_offline") > 0 ||
         (get_int(buffer, "pending") > 0 && get_int(buffer, "oldest_age_s") >= kStaleBacklogS);
}

std::string status_headline(const Json& st, int64_t now_us, const Style& style,
                            std::size_t max_width) {
  const Json& mqtt = field(st, "mqtt");
  const Json& buffer = field(st, "buffer");
  const bool degraded = status_is_degraded(st);
  const std::string head = style.bold(get_string(st, "gateway_id", "?")) + " " +
                           (degraded ? style.red("DEGRADED") : style.green("OK")) + " " +
                           std::string(kDash) + " ";
  std::vector<std::string> reasons;

  const int64_t since = get_int(mqtt, "connected_since_us");
  if (get_bool(mqtt, "connected")) {
    reasons.push_back("MQTT connected" +
                      (since > 0 ? " " + format_age((now_us - since) / 1000000) : std::string()));
  } else {
    const int64_t down = mqtt_down_since(mqtt);
    std::string text = style.red(down > 0 ? "MQTT down since " + format_clock(down, now_us)
                                          : std::string("MQTT down"));
    std::string error = get_string(mqtt, "last_error");
    // On a terminal a long broker error is shortened to end the first line.
    if (max_width > 0) {
      const std::size_t used = display_width(head) + display_width(text) + 4;  // " (" ")" ","
      error = cut_to_width(error, used + 12 < max_width ? max_width - used : 12);
    }
    if (!error.empty()) text += " (" + error + ")";
    reasons.push_back(text);
  }

  const auto pending = get_count(buffer, "pending");
  if (pending == 0) {
    reasons.push_back("0 pending");
  } else {
    const int64_t oldest = get_int(buffer, "oldest_age_s");
    std::string text =
        plural(pending, "event", "events") + " waiting (oldest " + format_age(oldest) + ")";
    reasons.push_back(oldest >= kStaleBacklogS ? style.yellow(text) : text);
  }

  const auto online = get_count(st, "devices_online");
  const auto offline = get_count(st, "devices_offline");
  const Json& devices = field(st, "devices");
  const uint64_t total = devices.is_array() && !devices.empty()
                             ? static_cast<uint64_t>(devices.size())
                             : online + offline;
  if (offline > 0) {
    reasons.push_back(
        style.red(format_count(offline) + "/" + format_count(total) + " devices offline"));
  } else {
    reasons.push_back(format_count(online) + "/" + format_count(total) + " devices online");
  }

  // One line; on a narrow terminal the reasons wrap whole onto indented lines.
  std::string out = head;
  std::size_t col = display_width(head);
  for (std::size_t i = 0; i < reasons.size(); ++i) {
    const std::string piece = reasons[i] + (i + 1 < reasons.size() ? "," : "");
    const std::size_t w = display_width(piece);
    if (i > 0) {
      if (max_width > 0 && col + 1 + w > max_width) {
        out += "\n  ";
        col = 2;
      } else {
        out += " ";
        ++col;
      }
    }
    out += piece;
    col += w;
  }
  return out;
}

std::string status_screen(const Json& st, int64_t now_us, const Style& style,
                          std::size_t max_width) {
  std::string out = status_headline(st, now_us, style, max_width) + "\n\n";

  // Gateway
  out += label(style, "Gateway") + "version " + get_string(st, "version", "?") + ", up " +
         format_age(get_int(st, "uptime_s"));
  if (const int64_t started = get_int(st, "started_at_us"); started > 0) {
    out += " (since " + format_clock(started, now_us) + ")";
  }
  if (const std::string boot = get_string(st, "boot_id"); !boot.empty()) out += ", boot " + boot;
  out += "\n";

  // MQTT
  const Json& mqtt = field(st, "mqtt");
  const int64_t since = get_int(mqtt, "connected_since_us");
  const std::string mqtt_error = get_string(mqtt, "last_error");
  out += label(style, "MQTT");
  if (get_bool(mqtt, "connected")) {
    out += style.green("connected");
    if (since > 0) {
      out += " since " + format_clock(since, now_us) + " (" +
             format_age((now_us - since) / 1000000) + ")";
    }
  } else {
    out += style.red("down");
    if (const int64_t down = mqtt_down_since(mqtt); down > 0) {
      out += " since " + format_clock(down, now_us) + " (" + format_age((now_us - down) / 1000000) +
             " ago)";
    }
    out += ": " + (mqtt_error.empty() ? std::string("no error reported") : mqtt_error);
  }
  out += "\n" + kCont + get_string(mqtt, "uri", "?") + ", " +
         plural(get_count(mqtt, "reconnects"), "reconnect", "reconnects") + ", " +
         format_count(get_count(mqtt, "inflight")) + " in flight\n";
  out += kCont + "published " + format_count(get_count(mqtt, "published_events")) + ", acked " +
         format_count(get_count(mqtt, "acked_events")) + ", republished " +
         format_count(get_count(mqtt, "republished_events")) + " events\n";
  if (get_bool(mqtt, "connected") && !mqtt_error.empty()) {
    out += kCont + style.dim("last error: " + mqtt_error) + "\n";
  }

  // Buffer
  const Json& buffer = field(st, "buffer");
  const auto pending = get_count(buffer, "pending");
  out += label(style, "Buffer") + plural(pending, "event", "events") + " pending";
  if (pending > 0) out += ", oldest " + format_age(get_int(buffer, "oldest_age_s"));
  out += ", next seq " + format_count(get_count(buffer, "next_seq")) + "\n";
  // Only the classes holding events: an empty table says nothing the line above does not.
  Table classes;
  classes.indent = kCont;
  classes.headers = {"class", "pending", "bytes", "oldest"};
  classes.right_align = {false, true, true, true};
  const Json& by_class = field(buffer, "classes");
  for (std::string_view name : class_order()) {
    const Json& c = field(by_class, name);
    const auto n = get_count(c, "pending");
    if (n == 0) continue;
    classes.rows.push_back({std::string(name), format_count(n), format_bytes(get_count(c, "bytes")),
                            format_age(get_int(c, "oldest_age_s"))});
  }
  if (!classes.rows.empty()) out += render_table(classes);

  // Devices
  const auto online = get_count(st, "devices_online");
  const auto offline = get_count(st, "devices_offline");
  const Json& devices = field(st, "devices");
  const uint64_t total = devices.is_array() && !devices.empty() ? devices.size() : online + offline;
  out += label(style, "Devices") + format_count(online) + " of " + format_count(total) + " online";
  std::vector<const Json*> not_online;
  if (devices.is_array()) {
    for (const Json& d : devices) {
      if (device_state(d) != "online") not_online.push_back(&d);
    }
  }
  if (not_online.empty()) {
    out += "\n";
  } else {
    out += ", " + format_count(offline) + " offline:\n";
    Table t;
    t.indent = kCont;
    t.headers = {"device", "state", "last error"};
    for (const Json* d : not_online) {
      if (max_width > 0 && t.rows.size() == kMaxOfflineShown) break;
      t.rows.push_back({get_string(*d, "id"), state_text(device_state(*d), style),
                        or_dash(get_string(*d, "last_error"))});
    }
    std::string rendered = render_table(t, max_width);
    out += rendered.substr(rendered.find('\n') + 1);  // the section label says what the rows are
    if (not_online.size() > t.rows.size()) {
      out += kCont + "... and " + format_count(not_online.size() - t.rows.size()) +
             " more: gatewayctl devices --offline\n";
    }
  }

  // Buses
  const Json& buses = field(st, "buses");
  if (buses.is_array() && !buses.empty()) {
    bool first = true;
    for (const Json& b : buses) {
      out += first ? label(style, "Buses") : kCont;
      first = false;
      out += get_string(b, "id") + " " +
             (get_bool(b, "open") ? style.green("open") : style.red("closed")) + ": " +
             plural(get_count(b, "exchanges"), "exchange", "exchanges") + ", " +
             plural(get_count(b, "timeouts"), "timeout", "timeouts") + ", " +
             plural(get_count(b, "bad_frames"), "bad frame", "bad frames") + ", " +
             format_bytes(get_count(b, "discarded_bytes")) + " discarded, " +
             format_count(get_count(b, "queued")) + " queued\n";
    }
  }

  // Recent errors
  const Json& errors = field(st, "last_errors");
  if (errors.is_array() && !errors.empty()) {
    out += style.bold("Recent errors") + " (newest first)\n";
    Table t;
    t.indent = kCont;
    t.headers = {"when", "component", "message"};
    // A reconnect loop fills the list with one error in many copies; show it once, counted.
    std::size_t i = 0;
    while (i < errors.size()) {
      const Json& e = errors[i];
      const std::string component = get_string(e, "component");
      const std::string message = get_string(e, "message");
      std::size_t j = i + 1;
      while (j < errors.size() && get_string(errors[j], "component") == component &&
             same_but_numbers(get_string(errors[j], "message"), message)) {
        ++j;
      }
      std::string text = message;
      if (j - i > 1)
        text += " (" + std::to_string(j - i) + "x since " +
                format_clock(get_int(errors[j - 1], "at_us"), now_us, true) + ")";
      t.rows.push_back({format_clock(get_int(e, "at_us"), now_us, true), component, text});
      i = j;
    }
    const std::size_t cap = max_width > 0 ? kMaxErrorsShown : t.rows.size();
    const std::size_t more = t.rows.size() > cap ? t.rows.size() - cap : 0;
    t.rows.resize(t.rows.size() - more);
    std::string rendered = render_table(t, max_width);
    out += rendered.substr(rendered.find('\n') + 1);
    if (more) {
      out += kCont + "... and " + std::to_string(more) + " older: gatewayctl status --json\n";
    }
  } else {
    out += label(style, "Errors") + "none recently\n";
  }
  if (max_width == 0) return out;
  // On a terminal every line fits its width: a wrapped line would push the verdict off screen.
  std::string fitted;
  std::size_t start = 0;
  for (std::size_t nl; (nl = out.find('\n', start)) != std::string::npos; start = nl + 1) {
    fitted += cut_to_width(std::string_view(out).substr(start, nl - start), max_width) + "\n";
  }
  return fitted;
}

std::string devices_table(const Json& result, const Style& style, bool offline_only,
                          std::size_t max_width) {
  const Json& devices = field(result, "devices");
  Table t;
  t.headers = {"ID", "STATE", "DRIVER", "ADDRESS", "POLL", "LATENCY", "ERRORS", "LAST ERROR"};
  t.right_align = {false, false, false, false, false, true, true, false};
  uint64_t online = 0, offline = 0, other = 0;
  if (devices.is_array()) {
    for (const Json& d : devices) {
      const std::string state = device_state(d);
      if (state == "online") {
        ++online;
      } else if (state == "offline") {
        ++offline;
      } else {
        ++other;
      }
      if (offline_only && state == "online") continue;
      const Json& latency = field(d, "latency_ms");
      const double last = get_double(latency, "last"), avg = get_double(latency, "avg");
      const std::string lat =
          (last > 0 || avg > 0)
              ? (last > 0 ? trim_decimals(printf_string("%.1f", last)) : std::string("-")) + "/" +
                    trim_decimals(printf_string("%.1f", avg)) + "ms"
              : std::string("-");
      const std::string poll = format_period_ms(get_double(d, "poll_ms_configured")) + "/" +
                               format_period_ms(get_double(d, "poll_ms_achieved"));
      t.rows.push_back({get_string(d, "id"), state_text(state, style),
                        or_dash(get_string(d, "driver")), device_address(d), poll, lat,
                        format_count(get_count(d, "failures")),
                        or_dash(get_string(d, "last_error"))});
    }
  }
  const uint64_t total = online + offline + other;
  std::string out;
  if (!t.rows.empty()) out = render_table(t, max_width);
  std::string summary = plural(total, "device", "devices") + ": " + format_count(online) +
                        " online, " + format_count(offline) + " offline";
  if (other) summary += ", " + format_count(other) + " not polled yet";
  if (offline_only && t.rows.empty()) summary = "all " + summary;
  return out + summary + "\n";
}

std::string device_detail(const Json& d, int64_t now_us, const Style& style) {
  std::string out = style.bold(get_string(d, "id")) + "  " + state_text(device_state(d), style);
  out += "  (" + or_dash(get_string(d, "kind")) + ", " + or_dash(get_string(d, "driver")) + " at " +
         device_address(d, true) + ")\n";
  Table t;
  t.indent = "  ";
  t.headers = {"", ""};
  auto row = [&](std::string name, std::string value) {
    t.rows.push_back({std::move(name), std::move(value)});
  };
  row("last error", or_dash(get_string(d, "last_error")));
  const int64_t good = get_int(d, "last_good_read_us");
  row("last good read", good > 0 ? format_clock(good, now_us, true) + " (" +
                                       format_age((now_us - good) / 1000000) + " ago)"
                                 : std::string("never"));
  const Json& errors = field(d, "errors");
  row("polls", format_count(get_count(d, "polls")) + ", " + format_count(get_count(d, "failures")) +
                   " failed: " + format_count(get_count(errors, "timeout")) + " timeout, " +
                   format_count(get_count(errors, "protocol")) + " protocol, " +
                   format_count(get_count(errors, "unavailable")) + " unavailable, " +
                   format_count(get_count(errors, "other")) + " other");
  row("skipped offline",
      format_count(get_count(d, "skipped_while_offline")) + " polls skipped while offline");
  row("overruns", format_count(get_count(d, "overruns")) +
                      " polls started late because the previous one was still running");
  row("poll period", format_period_ms(get_double(d, "poll_ms_configured")) + " configured, " +
                         format_period_ms(get_double(d, "poll_ms_achieved")) + " achieved");
  const Json& latency = field(d, "latency_ms");
  row("latency", "last " + trim_decimals(printf_string("%.1f", get_double(latency, "last"))) +
                     " ms, average " +
                     trim_decimals(printf_string("%.1f", get_double(latency, "avg"))) + " ms");
  std::string rendered = render_table(t);
  out += rendered.substr(rendered.find('\n') + 1);

  const Json& points = field(d, "points");
  if (points.is_array() && !points.empty()) {
    out += style.bold("Points") + " (last values)\n";
    Table p;
    p.indent = "  ";
    p.headers = {"NAME", "VALUE", "UNIT", "QUALITY", "AT"};
    p.right_align = {false, true, false, false, false};
    for (const Json& pt : points) {
      const bool is_good = get_bool(pt, "good");
      const int64_t at = get_int(pt, "at_us");
      p.rows.push_back({get_string(pt, "name"), or_dash(reading_text(field(pt, "value"))),
                        get_string(pt, "unit"), is_good ? style.green("good") : style.red("bad"),
                        at > 0 ? format_clock(at, now_us, true) : std::string("-")});
    }
    out += render_table(p);
  } else {
    out += style.dim("  no point values yet") + "\n";
  }
  return out;
}

std::string buffer_screen(const Json& b, std::string_view gateway_id, bool show_credentials) {
  // Same layout as the offline inspection, so both modes read alike.
  std::string out = "buffer " + get_string(b, "path") + "\n" + "  pending " +
                    std::to_string(get_count(b, "pending")) + " events, next seq " +
                    std::to_string(get_count(b, "next_seq")) + "\n";
  char line[160];
  std::snprintf(line, sizeof line, "  %-10s %10s %12s %14s\n", "class", "pending", "bytes",
                "oldest age");
  out += line;
  const Json& classes = field(b, "classes");
  for (std::string_view name : class_order()) {
    const Json& c = field(classes, name);
    std::snprintf(line, sizeof line, "  %-10s %10llu %12llu %13llds\n", std::string(name).c_str(),
                  static_cast<unsigned long long>(get_count(c, "pending")),
                  static_cast<unsigned long long>(get_count(c, "bytes")),
                  static_cast<long long>(get_int(c, "oldest_age_s")));
    out += line;
  }
  const Json& oldest = field(b, "oldest");
  if (oldest.is_array() && !oldest.empty()) {
    out += "oldest events of each class:\n";
    for (const Json& e : oldest) out += "  " + event_line(e, gateway_id, show_credentials) + "\n";
  }
  return out;
}

std::string event_line(const Json& event, std::string_view gateway_id, bool show_credentials) {
  campus::gateway::v1::Event e;
  google::protobuf::util::JsonParseOptions opts;
  opts.ignore_unknown_fields = true;  // a newer daemon may send fields this build lacks
  Json copy = event;
  if (!show_credentials) redact_event_credentials(copy);
  if (!google::protobuf::util::JsonStringToMessage(copy.dump(), &e, opts).ok()) {
    return format_time_ms(get_int(copy, "gateway_time_us")) + " " + std::string(gateway_id) +
           " (undecodable event) " + copy.dump();
  }
  return format_time_ms(e.gateway_time_us()) + " " +
         central::event_text_line(gateway_id, e, show_credentials);
}

std::string spaced_hex(std::string_view hex) {
  std::string digits;
  for (char c : hex) {
    if (c == ' ' || c == ':' || c == '-') continue;
    if (!std::isxdigit(static_cast<unsigned char>(c))) return std::string(hex);
    digits += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  if (digits.size() % 2 != 0) return std::string(hex);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); i += 2) {
    if (i) out += ' ';
    out += digits.substr(i, 2);
  }
  return out;
}

std::string trace_line(const Json& item, const Style& style) {
  const std::string dir = get_string(item, "dir", "??");
  std::string out = format_time_ms(get_int(item, "at_us")) + " " +
                    (dir == "tx"   ? style.cyan(dir)
                     : dir == "rx" ? style.green(dir)
                                   : dir) +
                    " " + spaced_hex(get_string(item, "hex"));
  if (const std::string note = get_string(item, "note"); !note.empty()) {
    out += "  " + style.dim(note);
  }
  return out;
}

std::string read_result_line(const Json& r, const Style& style) {
  std::string out = get_string(r, "device") + " " + get_string(r, "point");
  const std::string latency =
      trim_decimals(printf_string("%.1f", get_double(r, "latency_ms"))) + " ms";
  if (get_bool(r, "good")) {
    out += " = " + style.bold(reading_text(field(r, "value")));
    if (const std::string unit = get_string(r, "unit"); !unit.empty()) out += " " + unit;
    out += "  " + style.dim("(" + latency + ")");
  } else {
    out += ": " + style.red("BAD");
    if (const std::string err = get_string(r, "error"); !err.empty()) out += " - " + err;
    out += "  " + style.dim("(" + latency + ")");
  }
  return out;
}

namespace {

int severity_rank(const std::string& s) {
  return s == "critical" ? 0 : s == "major" ? 1 : s == "minor" ? 2 : s == "info" ? 3 : 4;
}

std::string severity_text(const std::string& s, const Style& style) {
  if (s == "critical") return style.bold(style.red(s));
  if (s == "major") return style.red(s);
  if (s == "minor") return style.yellow(s);
  return or_dash(s);
}

}  // namespace

std::string alarms_screen(const Json& r, int64_t now_us, const Style& style, std::size_t recent,
                          std::size_t max_width) {
  const int64_t rules = get_int(r, "rules");
  if (rules == 0) return "no alarm rules configured (alarms: in the config)\n";
  std::vector<Json> active;
  if (const Json& a = field(r, "active"); a.is_array()) active.assign(a.begin(), a.end());
  std::stable_sort(active.begin(), active.end(), [](const Json& x, const Json& y) {
    const int rx = severity_rank(get_string(x, "severity"));
    const int ry = severity_rank(get_string(y, "severity"));
    if (rx != ry) return rx < ry;
    return get_int(x, "raised_at_us") < get_int(y, "raised_at_us");
  });
  std::string out = active.empty() ? "no alarms active"
                                   : plural(active.size(), "alarm", "alarms") + " active";
  out += " (" + plural(static_cast<uint64_t>(std::max<int64_t>(0, rules)), "rule", "rules") + ")\n";
  if (!active.empty()) {
    Table t;
    t.headers = {"SEVERITY", "RULE", "DEVICE", "POINT", "VALUE", "THRESHOLD", "SINCE"};
    t.right_align = {false, false, false, false, true, true, false};
    for (const Json& a : active) {
      const int64_t at = get_int(a, "raised_at_us");
      t.rows.push_back({severity_text(get_string(a, "severity"), style), get_string(a, "rule"),
                        or_dash(get_string(a, "device")), or_dash(get_string(a, "point")),
                        reading_text(field(a, "value")), reading_text(field(a, "threshold")),
                        at > 0 ? format_clock(at, now_us) + " (" +
                                     format_age(std::max<int64_t>(0, now_us - at) / 1000000) + ")"
                               : std::string("-")});
    }
    out += render_table(t, max_width);
  }
  const Json& transitions = field(r, "recent");
  if (recent == 0 || !transitions.is_array() || transitions.empty()) return out;
  Table t;
  t.headers = {"TIME", "SEQ", "EVENT", "SEVERITY", "RULE", "DEVICE", "POINT", "VALUE", "THRESHOLD"};
  t.right_align = {false, true, false, false, false, false, false, true, true};
  for (const Json& e : transitions) {
    if (t.rows.size() >= recent) break;
    const bool raised = get_bool(e, "active");
    t.rows.push_back({format_clock(get_int(e, "at_us"), now_us, true),
                      std::to_string(get_int(e, "seq")),
                      raised ? style.red("raised") : style.green("cleared"),
                      severity_text(get_string(e, "severity"), style), get_string(e, "rule"),
                      or_dash(get_string(e, "device")), or_dash(get_string(e, "point")),
                      reading_text(field(e, "value")), reading_text(field(e, "threshold"))});
  }
  out += "\n" + style.bold("Recent transitions") + " (newest first)\n" + render_table(t, max_width);
  return out;
}

std::string reload_summary(const Json& r) {
  auto list = [&](std::string_view key, std::string_view verb) {
    const Json& ids = field(r, key);
    const std::size_t n = ids.is_array() ? ids.size() : 0;
    std::string s = std::to_string(n) + " " + std::string(verb);
    if (n) {
      s += " (";
      for (std::size_t i = 0; i < n; ++i) s += (i ? ", " : "") + scalar_text(ids[i]);
      s += ")";
    }
    return std::pair<std::size_t, std::string>(n, s);
  };
  auto [na, added] = list("added", "added");
  auto [nr, removed] = list("removed", "removed");
  auto [nc, changed] = list("changed", "changed");
  const int64_t unchanged = get_int(r, "unchanged");
  if (na + nr + nc == 0) {
    return "reloaded: nothing changed (" +
           plural(static_cast<uint64_t>(std::max<int64_t>(0, unchanged)), "device", "devices") +
           " unchanged)";
  }
  return "reloaded: " + added + ", " + removed + ", " + changed + ", " + std::to_string(unchanged) +
         " unchanged";
}

}  // namespace gw::ctl
