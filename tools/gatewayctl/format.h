// What gatewayctl prints for people: the status screen (verdict first), the device table and
// detail, the buffer, stream lines (tail, trace), read and reload results. Pure functions of the
// daemon's JSON (gateway/control_protocol.h), the current time and a Style, so tests pin the
// exact text. Times are shown in local time (localtime_r; tests set TZ). Any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tools/gatewayctl/json_util.h"

namespace gw::ctl {

// ANSI colours, or plain text when off (not a terminal, NO_COLOR set, --no-color).
struct Style {
  bool color = false;
  std::string bold(std::string_view s) const { return wrap("1", s); }
  std::string dim(std::string_view s) const { return wrap("2", s); }
  std::string red(std::string_view s) const { return wrap("31", s); }
  std::string green(std::string_view s) const { return wrap("32", s); }
  std::string yellow(std::string_view s) const { return wrap("33", s); }
  std::string cyan(std::string_view s) const { return wrap("36", s); }
  std::string wrap(std::string_view code, std::string_view s) const;
};

// "1,204,033"
std::string format_count(uint64_t n);
// Compact ages and durations: "0s", "45s", "14m", "2h13m", "3d4h".
std::string format_age(int64_t seconds);
// Periods from milliseconds: "500ms", "5s", "5.01s", "1m", "1m30s"; "-" for 0 or less.
std::string format_period_ms(double ms);
// "0 B", "980 B", "1.2 KiB", "410.0 KiB", "3.4 MiB", "1.0 GiB"
std::string format_bytes(uint64_t bytes);
// A wall-clock time: "03:12" (with seconds: "03:12:04") within 24 h of now, else
// "2024-05-01 03:12".
std::string format_clock(int64_t at_us, int64_t now_us, bool seconds = false);
// "14:03:12.345" (stream lines).
std::string format_time_ms(int64_t at_us);
// Visible width of text: UTF-8 code points, ANSI colour sequences excluded.
std::size_t display_width(std::string_view text);
// Cuts text to `width` visible characters, the last being "…"; colour sequences are kept and
// closed. Text that fits is returned unchanged.
std::string cut_to_width(std::string_view text, std::size_t width);

// A plain text table: columns padded to the widest cell (cells may carry colours), numbers
// right-aligned where asked. With max_width > 0 the last column is cut to fit, ending in "…".
struct Table {
  std::vector<std::string> headers;
  std::vector<bool> right_align;  // per column; missing entries are left-aligned
  std::vector<std::vector<std::string>> rows;
  std::string indent;
};
std::string render_table(const Table& table, std::size_t max_width = 0);

// The first line of `status`: "lib-gw-01 OK — MQTT connected 2h13m, 0 pending, 12/12 devices
// online" or "lib-gw-01 DEGRADED — MQTT down since 03:12 (connection refused), 1,204 events
// waiting (oldest 14m), 2/12 devices offline". Degraded: MQTT not connected, a device offline, or
// the oldest buffered event older than kStaleBacklogS.
inline constexpr int64_t kStaleBacklogS = 300;
// With max_width > 0 (a terminal) the MQTT error is shortened and the reasons wrap onto indented
// lines instead of running past the edge.
bool status_is_degraded(const Json& status);
std::string status_headline(const Json& status, int64_t now_us, const Style& style,
                            std::size_t max_width = 0);
// The whole screen: headline, then MQTT, buffer per class, offline devices, buses, recent errors.
// With max_width > 0 (a terminal) every line is cut to fit and the lists of offline devices and
// recent errors are capped (with a pointer to the full list), so the screen fits 80x24.
inline constexpr std::size_t kMaxOfflineShown = 3;
inline constexpr std::size_t kMaxErrorsShown = 4;
std::string status_screen(const Json& status, int64_t now_us, const Style& style,
                          std::size_t max_width = 0);

// `devices`: one row per device, then a one-line summary.
std::string devices_table(const Json& devices_result, const Style& style, bool offline_only,
                          std::size_t max_width);
// `devices DEVICE`: every field of one device object, then its points.
std::string device_detail(const Json& device, int64_t now_us, const Style& style);

// `buffer`: the same layout as the offline inspection, then the oldest events when given.
std::string buffer_screen(const Json& buffer, std::string_view gateway_id, bool show_credentials);

// One event (protobuf JSON form) as the central subscriber's text line, prefixed with the time:
// "14:03:12.345 lib-gw-01 seq=12 meter-b1-01 telemetry energy_total=1234.56 kWh".
std::string event_line(const Json& event, std::string_view gateway_id, bool show_credentials);
// One trace item: "14:03:12.345 tx 01 03 00 00 00 0a c5 cd  read holding 0..9".
std::string trace_line(const Json& item, const Style& style);
// "01 03 00 00" from "0103 0000", "01:03:00:00" or "01030000"; anything else unchanged.
std::string spaced_hex(std::string_view hex);

std::string read_result_line(const Json& result, const Style& style);
// `alarms`: the active alarms (most severe first) and up to `recent` transitions, newest first.
std::string alarms_screen(const Json& result, int64_t now_us, const Style& style,
                          std::size_t recent, std::size_t max_width = 0);
std::string reload_summary(const Json& result);

}  // namespace gw::ctl
