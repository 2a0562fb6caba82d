// Camera alarm notifications, decoded: Hikvision's EventNotificationAlert (XML and JSON), a
// simple JSON form of our own, and Dahua's eventManager text; the multipart framing both vendors
// wrap them in (alert streams and pushes with a snapshot attached); and the state tracker that
// turns a camera's chatter into active/inactive transitions. I/O-free; the splitter and the
// tracker are single-owner objects (no locking), everything else is a pure function.
//
// What the parsers accept (parse_body() picks one by the body's first non-blank character, not
// by the Content-Type, which cameras get wrong often enough):
//   '<'  Hikvision XML: root <EventNotificationAlert> in any namespace (ver10, ver20, isapi.org,
//        or a prefix); needs <eventType> and <eventState> (active | inactive); reads
//        <channelID> (else <dynChannelID>, else <inputIOPortID> for IO alarms), <dateTime>,
//        <activePostCount>, <eventDescription>.
//   '{'  JSON ('[' too, refused: the top level must be an object), either Hikvision's
//        EventNotificationAlert (the same fields as JSON members, at the top level or under
//        "EventNotificationAlert"), or the simple form
//        {"type": "motion", "active": true, "channel": 1, "detail": "...", "time": "ISO 8601"}
//        where type and active are required and the rest optional.
//   else Dahua: one or more records `Code=VideoMotion;action=Start;index=0[;data={json}]`, each
//        starting a line; action Start | Stop | Pulse; `Heartbeat` (or Code=Heartbeat) is a
//        heartbeat.
// Channels are 1-based as the camera's own UI shows them: Hikvision channelID as sent, Dahua
// index + 1. Vendor event names map to the contract's types (normalize_type()); unknown names are
// kept lower-cased.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "protocols/status.h"

namespace gw::protocols::camera {

// Alert documents larger than this are refused (a real one is well under 4 KiB).
inline constexpr std::size_t kMaxAlertBytes = 64 * 1024;
// `detail` is cut to this many bytes.
inline constexpr std::size_t kMaxDetailBytes = 256;

enum class State { kActive, kInactive, kPulse };

struct Alert {
  std::string vendor_type;  // as the camera named it: "VMD", "linedetection", "VideoMotion"
  std::string type;         // the contract's name: "motion", "line_crossing", ...
  State state = State::kActive;
  uint32_t channel = 0;  // 0 when the notification names none
  std::string detail;
  int64_t device_time_us = 0;      // 0 when the camera gave no time with a zone
  int64_t active_post_count = -1;  // Hikvision's per-event counter; -1 when absent
  bool heartbeat = false;          // only says "still connected" (Dahua Heartbeat, Hik heartBeat)
  // Hikvision's stream heartbeat is `videoloss` + `inactive`: a heartbeat unless video loss is
  // currently active on that channel, in which case it is the real end of the video loss.
  bool heartbeat_unless_active = false;
};

// "VMD" -> "motion", "linedetection" -> "line_crossing", "VideoBlind" -> "tamper", ...; an
// unknown name is lower-cased with characters outside [a-z0-9_] replaced by '_' (max 64).
std::string normalize_type(std::string_view vendor_type);

Result<Alert> parse_hikvision_xml(std::string_view body);
Result<Alert> parse_json(std::string_view body);
Result<std::vector<Alert>> parse_dahua(std::string_view body);
// One body (or one multipart part) of any of the accepted forms; at least one alert when ok.
Result<std::vector<Alert>> parse_body(std::string_view body);

// "2017-05-04T11:20:02+08:00", "...Z", "...+0800", fractions of a second allowed -> unix µs.
// Without a zone the time is the camera's local time, unknown to us: nullopt.
std::optional<int64_t> parse_iso8601_us(std::string_view text);

// "multipart/mixed; boundary=\"abc\"; charset=utf-8" -> {"multipart/mixed", params}.
struct MediaType {
  std::string type;                           // lower-cased, no parameters
  std::map<std::string, std::string> params;  // names lower-cased, values unquoted
  std::string param(const std::string& name) const;
};
MediaType parse_media_type(std::string_view content_type);
// Pictures, video, audio and opaque blobs: never kept, only counted.
bool is_media(std::string_view media_type);

// ---------------------------------------------------------------------------------------------
// Multipart

struct SplitterLimits {
  std::size_t max_part_bytes = kMaxAlertBytes;  // larger non-media parts are skipped and counted
  std::size_t max_header_bytes = 8 * 1024;      // one part's header section
};

struct Part {
  enum class Skipped { kNo, kMedia, kOversize };
  std::string head;  // the header section as received (for traces)
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string content_type;  // media type, lower-cased, no parameters; empty when absent
  std::string body;          // empty when skipped or bad
  std::size_t size = 0;      // body bytes seen, kept or not
  Skipped skipped = Skipped::kNo;
  std::string error;  // non-empty: the part was malformed and its body dropped
};

struct SplitterStats {
  uint64_t parts = 0;  // every part emitted, whatever its fate
  uint64_t media_skipped = 0;
  uint64_t oversize = 0;
  uint64_t bad_parts = 0;
  uint64_t stray_bytes = 0;  // non-blank bytes outside any part (dropped)
};

// Splits a multipart body (multipart/mixed, multipart/x-mixed-replace, multipart/form-data) fed
// in pieces of any size, down to one byte at a time. A part ends after its Content-Length bytes
// when it gives one (so a stream's part is complete without waiting for the next boundary) and at
// the next boundary line otherwise. Boundary lines are matched leniently, as cameras write them:
// "--B", "-- B", and a boundary declared with leading dashes. Memory held is bounded by
// max_part_bytes + max_header_bytes + the size of one feed(): media parts are dropped as they
// arrive, never buffered.
class MultipartSplitter {
 public:
  explicit MultipartSplitter(std::string_view boundary, SplitterLimits limits = {});

  // Appends every part completed by `bytes` to `out`.
  void feed(std::string_view bytes, std::vector<Part>& out);
  // The input ended (a pushed body is complete): a part still open is emitted, marked with an
  // error when it was cut short of its Content-Length.
  void finish(std::vector<Part>& out);
  bool closed() const { return state_ == State::kEpilogue; }  // the close delimiter was seen
  const SplitterStats& stats() const { return stats_; }
  std::size_t buffered_bytes() const { return buf_.size() + part_.body.size() + part_.head.size(); }

 private:
  enum class State { kPreamble, kHeaders, kBodyLength, kBodyDelimited, kSeek, kEpilogue };
  bool delimiter_line(std::string_view line, bool& close) const;
  bool step(std::vector<Part>& out);  // false: needs more input
  bool seek_line(std::vector<Part>& out);
  bool header_line(std::vector<Part>& out);
  bool body_length(std::vector<Part>& out);
  bool body_delimited(std::vector<Part>& out);
  void take_body(std::string_view bytes);
  void emit(std::vector<Part>& out, State next);
  void start_part();

  std::string boundary_;  // leading dashes and spaces removed
  SplitterLimits limits_;
  State state_ = State::kPreamble;
  std::string buf_;
  bool dropping_line_ = false;  // kPreamble/kSeek: inside a long line that cannot be a delimiter
  bool body_at_line_start_ = true;
  Part part_;
  std::size_t content_length_ = 0;
  SplitterStats stats_;
};

// ---------------------------------------------------------------------------------------------
// Active/inactive tracking

struct Transition {
  std::string type;
  bool active = false;
  uint32_t channel = 0;
  std::string detail;
  int64_t device_time_us = 0;
};

// Remembers, per (type, channel), whether the camera last said active or inactive, so that a
// camera's repeated "still active" posts (Hikvision posts about once a second while motion lasts)
// become one active event, and a heartbeat never becomes an event. A pulse (Dahua) is one active
// event and changes no state. Optionally an active state ends on its own after `inactive_after`
// without a post: some Hikvision events are only ever posted as active. Holds at most `max_keys`
// states. Time is passed in, for tests.
class AlertTracker {
 public:
  using Clock = std::chrono::steady_clock;
  enum class Verdict { kTransition, kRepeat, kHeartbeat };
  struct Stats {
    uint64_t transitions = 0;
    uint64_t repeats = 0;
    uint64_t heartbeats = 0;
    uint64_t expired = 0;
  };

  explicit AlertTracker(std::chrono::milliseconds inactive_after = {}, std::size_t max_keys = 1024);

  // kTransition fills `out`.
  Verdict on_alert(const Alert& alert, Clock::time_point now, Transition& out);
  // Active states whose last post is older than inactive_after, ended (oldest first).
  std::vector<Transition> expire(Clock::time_point now);
  // When the next expire() has something to do; nullopt when nothing can expire.
  std::optional<Clock::time_point> next_expiry() const;
  const Stats& stats() const { return stats_; }

 private:
  struct Key {
    std::string type;
    uint32_t channel;
    bool operator<(const Key& o) const {
      return type != o.type ? type < o.type : channel < o.channel;
    }
  };
  struct Entry {
    bool active = false;
    Clock::time_point last_post{};
    std::string vendor_type;
  };
  std::chrono::milliseconds inactive_after_;
  std::size_t max_keys_;
  std::map<Key, Entry> states_;
  Stats stats_;
};

}  // namespace gw::protocols::camera
