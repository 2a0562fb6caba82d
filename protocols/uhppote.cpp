#include "protocols/uhppote.h"

#include <cstdio>

namespace gw::protocols::uhppote {

namespace {

// Field offsets (uhppoted/uhppote-core messages/*.go, `uhppote:"offset:N"` tags).
constexpr std::size_t kOffSerial = 4;
constexpr std::size_t kOffIndex = 8;
constexpr std::size_t kOffType = 12;
constexpr std::size_t kOffGranted = 13;
constexpr std::size_t kOffDoor = 14;
constexpr std::size_t kOffDirection = 15;
constexpr std::size_t kOffCard = 16;
constexpr std::size_t kOffTimestamp = 20;  // 7 BCD bytes
constexpr std::size_t kOffReason = 27;
constexpr std::size_t kOffDoorState = 28;  // 4 bools
constexpr std::size_t kOffButton = 32;     // 4 bools
constexpr std::size_t kOffSystemError = 36;
constexpr std::size_t kOffSystemTime = 37;  // 3 BCD bytes hhmmss
constexpr std::size_t kOffSequence = 40;
constexpr std::size_t kOffSpecialInfo = 48;
constexpr std::size_t kOffRelays = 49;
constexpr std::size_t kOffInputs = 50;
constexpr std::size_t kOffSystemDate = 51;  // 3 BCD bytes YYMMDD
constexpr std::size_t kOffMagic = 12;       // set-event-index
constexpr std::size_t kOffListenPort = 12;  // set-listener (address at 8)

void put_u32(Packet& p, std::size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[at + i] = static_cast<uint8_t>(v >> (8 * i));
}
void put_u16(Packet& p, std::size_t at, uint16_t v) {
  p[at] = static_cast<uint8_t>(v);
  p[at + 1] = static_cast<uint8_t>(v >> 8);
}
uint32_t get_u32(std::span<const uint8_t> p, std::size_t at) {
  return static_cast<uint32_t>(p[at]) | static_cast<uint32_t>(p[at + 1]) << 8 |
         static_cast<uint32_t>(p[at + 2]) << 16 | static_cast<uint32_t>(p[at + 3]) << 24;
}
uint16_t get_u16(std::span<const uint8_t> p, std::size_t at) {
  return static_cast<uint16_t>(p[at] | p[at + 1] << 8);
}

std::string hex2(uint8_t b) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02X", b);
  return buf;
}

Packet header(uint8_t function, uint32_t serial) {
  Packet p{};
  p[0] = kStartOfMessage;
  p[1] = function;
  put_u32(p, kOffSerial, serial);
  return p;
}

// uhppote-core accepts only 0 and 1 for a bool field (UT0311-L0x.go, "invalid boolean value").
Result<bool> get_bool(std::span<const uint8_t> p, std::size_t at, const char* what) {
  if (p[at] > 1) {
    return gw::Status::protocol(std::string(what) + " at offset " + std::to_string(at) + " is " +
                                hex2(p[at]) + ", not 0x00 or 0x01");
  }
  return p[at] == 1;
}

Result<int> bcd_byte(uint8_t b) {
  if ((b >> 4) > 9 || (b & 0x0F) > 9)
    return gw::Status::protocol("byte " + hex2(b) + " is not BCD");
  return (b >> 4) * 10 + (b & 0x0F);
}
uint8_t to_bcd(int v) { return static_cast<uint8_t>(((v / 10) % 10) << 4 | (v % 10)); }

bool valid_date(int y, int mo, int d) {
  static constexpr int kDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (mo < 1 || mo > 12 || d < 1 || d > kDays[mo - 1]) return false;
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return !(mo == 2 && d == 29 && !leap);
}

void put_record(Packet& p, const EventRecord& r) {
  put_u32(p, kOffIndex, r.index);
  p[kOffType] = r.type;
  p[kOffGranted] = r.granted ? 1 : 0;
  p[kOffDoor] = r.door;
  p[kOffDirection] = r.direction;
  put_u32(p, kOffCard, r.card);
  if (r.timestamp) encode_datetime(*r.timestamp, std::span<uint8_t>(p).subspan(kOffTimestamp, 7));
  p[kOffReason] = r.reason;
}

Result<EventRecord> get_record(std::span<const uint8_t> p) {
  EventRecord r;
  r.index = get_u32(p, kOffIndex);
  r.type = p[kOffType];
  auto granted = get_bool(p, kOffGranted, "granted");
  if (!granted) return granted.status();
  r.granted = *granted;
  r.door = p[kOffDoor];
  r.direction = p[kOffDirection];
  r.card = get_u32(p, kOffCard);
  auto ts = decode_datetime(p.subspan(kOffTimestamp, 7));
  if (!ts) return gw::Status::protocol("event timestamp: " + ts.status().message());
  r.timestamp = *ts;
  r.reason = p[kOffReason];
  return r;
}

Result<Header> expect(std::span<const uint8_t> packet, uint8_t function) {
  auto h = decode_header(packet);
  if (!h) return h;
  if (h->function != function) {
    return gw::Status::protocol("function code " + hex2(h->function) + ", expected " +
                                hex2(function));
  }
  return h;
}

}  // namespace

std::string DateTime::digits() const {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04d%02d%02d%02d%02d%02d", year, month, day, hour, minute,
                second);
  return buf;
}

// ---- requests ----

Packet get_status_request(uint32_t serial) { return header(kGetStatus, serial); }

Packet get_event_request(uint32_t serial, uint32_t index) {
  Packet p = header(kGetEvent, serial);
  put_u32(p, kOffIndex, index);
  return p;
}

Packet get_event_index_request(uint32_t serial) { return header(kGetEventIndex, serial); }

Packet set_event_index_request(uint32_t serial, uint32_t index) {
  Packet p = header(kSetEventIndex, serial);
  put_u32(p, kOffIndex, index);
  put_u32(p, kOffMagic, kSetEventIndexMagic);
  return p;
}

Packet set_listener_request(uint32_t serial, std::array<uint8_t, 4> ipv4, uint16_t port) {
  Packet p = header(kSetListener, serial);
  for (std::size_t i = 0; i < 4; ++i) p[kOffIndex + i] = ipv4[i];
  put_u16(p, kOffListenPort, port);
  return p;
}

// ---- replies ----

Packet status_reply(const ControllerStatus& s) {
  Packet p = header(kGetStatus, s.serial);
  put_record(p, s.event);
  for (std::size_t i = 0; i < 4; ++i) {
    p[kOffDoorState + i] = s.door_open[i] ? 1 : 0;
    p[kOffButton + i] = s.button[i] ? 1 : 0;
  }
  p[kOffSystemError] = s.system_error;
  if (s.system_time) {
    const DateTime& t = *s.system_time;
    p[kOffSystemTime] = to_bcd(t.hour);
    p[kOffSystemTime + 1] = to_bcd(t.minute);
    p[kOffSystemTime + 2] = to_bcd(t.second);
    p[kOffSystemDate] = to_bcd(t.year % 100);
    p[kOffSystemDate + 1] = to_bcd(t.month);
    p[kOffSystemDate + 2] = to_bcd(t.day);
  }
  put_u32(p, kOffSequence, s.sequence);
  p[kOffSpecialInfo] = s.special_info;
  p[kOffRelays] = s.relays;
  p[kOffInputs] = s.inputs;
  return p;
}

Packet pushed_event(const ControllerStatus& s, bool v662) {
  Packet p = status_reply(s);
  if (v662) p[0] = kStartOfMessageV662;
  return p;
}

Packet event_reply(uint32_t serial, const EventRecord& record) {
  Packet p = header(kGetEvent, serial);
  put_record(p, record);
  return p;
}

Packet event_index_reply(uint32_t serial, uint32_t index) {
  Packet p = header(kGetEventIndex, serial);
  put_u32(p, kOffIndex, index);
  return p;
}

Packet set_event_index_reply(uint32_t serial, bool changed) {
  Packet p = header(kSetEventIndex, serial);
  p[kOffIndex] = changed ? 1 : 0;
  return p;
}

Packet set_listener_reply(uint32_t serial, bool ok) {
  Packet p = header(kSetListener, serial);
  p[kOffIndex] = ok ? 1 : 0;
  return p;
}

// ---- decoding ----

Result<Header> decode_header(std::span<const uint8_t> packet) {
  if (packet.size() != kPacketSize) {
    return gw::Status::protocol("packet of " + std::to_string(packet.size()) +
                                " bytes, expected 64");
  }
  // v6.62 firmware sends listener events (and only those) with start byte 0x19
  // (UT0311-L0x.go, "PATCH: v6.62 firmware sends 'listen' events with SOM 0x19").
  const bool v662_event = packet[0] == kStartOfMessageV662 && packet[1] == kGetStatus;
  if (packet[0] != kStartOfMessage && !v662_event) {
    return gw::Status::protocol("start byte " + hex2(packet[0]) + ", expected 0x17");
  }
  return Header{packet[1], get_u32(packet, kOffSerial)};
}

Result<ControllerStatus> decode_status(std::span<const uint8_t> packet) {
  auto h = expect(packet, kGetStatus);
  if (!h) return h.status();
  ControllerStatus s;
  s.serial = h->serial;
  auto record = get_record(packet);
  if (!record) return record.status();
  s.event = *record;
  for (std::size_t i = 0; i < 4; ++i) {
    auto door = get_bool(packet, kOffDoorState + i, "door state");
    if (!door) return door.status();
    s.door_open[i] = *door;
    auto button = get_bool(packet, kOffButton + i, "door button");
    if (!button) return button.status();
    s.button[i] = *button;
  }
  s.system_error = packet[kOffSystemError];
  // System date YYMMDD at 51 and time hhmmss at 37 (types/systemdate.go, systemtime.go).
  int f[6];
  const std::size_t at[6] = {kOffSystemDate, kOffSystemDate + 1, kOffSystemDate + 2,
                             kOffSystemTime, kOffSystemTime + 1, kOffSystemTime + 2};
  bool all_zero = true;
  for (int i = 0; i < 6; ++i) {
    auto v = bcd_byte(packet[at[i]]);
    if (!v) return gw::Status::protocol("system time: " + v.status().message());
    f[i] = *v;
    all_zero = all_zero && *v == 0;
  }
  if (!all_zero) {
    DateTime t{2000 + f[0], f[1], f[2], f[3], f[4], f[5]};
    if (!valid_date(t.year, t.month, t.day) || t.hour > 23 || t.minute > 59 || t.second > 59) {
      return gw::Status::protocol("system time " + t.digits() + " is not a valid date and time");
    }
    s.system_time = t;
  }
  s.sequence = get_u32(packet, kOffSequence);
  s.special_info = packet[kOffSpecialInfo];
  s.relays = packet[kOffRelays];
  s.inputs = packet[kOffInputs];
  return s;
}

Result<EventRecord> decode_event(std::span<const uint8_t> packet) {
  auto h = expect(packet, kGetEvent);
  if (!h) return h.status();
  // An overwritten record carries only its type; its other bytes are not a valid record.
  if (packet[kOffType] == kTypeOverwritten) {
    EventRecord r;
    r.index = get_u32(packet, kOffIndex);
    r.type = kTypeOverwritten;
    return r;
  }
  return get_record(packet);
}

Result<uint32_t> decode_event_index(std::span<const uint8_t> packet) {
  auto h = expect(packet, kGetEventIndex);
  if (!h) return h.status();
  return get_u32(packet, kOffIndex);
}

Result<bool> decode_set_event_index(std::span<const uint8_t> packet) {
  auto h = expect(packet, kSetEventIndex);
  if (!h) return h.status();
  return get_bool(packet, kOffIndex, "changed");
}

Result<Request> decode_request(std::span<const uint8_t> packet) {
  auto h = decode_header(packet);
  if (!h) return h.status();
  Request r;
  r.function = h->function;
  r.serial = h->serial;
  switch (h->function) {
    case kGetEvent:
      r.index = get_u32(packet, kOffIndex);
      break;
    case kSetEventIndex:
      r.index = get_u32(packet, kOffIndex);
      r.magic_ok = get_u32(packet, kOffMagic) == kSetEventIndexMagic;
      break;
    case kSetListener:
      for (std::size_t i = 0; i < 4; ++i) r.address[i] = packet[kOffIndex + i];
      r.port = get_u16(packet, kOffListenPort);
      break;
    default:
      break;
  }
  return r;
}

// ---- BCD date and time ----

Result<std::optional<DateTime>> decode_datetime(std::span<const uint8_t> seven) {
  if (seven.size() < 7) return gw::Status::protocol("date and time needs 7 bytes");
  bool zero_tail = true;
  for (std::size_t i = 1; i < 7; ++i) zero_tail = zero_tail && seven[i] == 0;
  // types/datetime.go: all zero = no record; 0x20 then zeros = an uninitialised controller.
  if (zero_tail && (seven[0] == 0 || seven[0] == 0x20)) return std::optional<DateTime>();
  int v[7];
  for (std::size_t i = 0; i < 7; ++i) {
    auto d = bcd_byte(seven[i]);
    if (!d) return d.status();
    v[i] = *d;
  }
  DateTime t{v[0] * 100 + v[1], v[2], v[3], v[4], v[5], v[6]};
  if (!valid_date(t.year, t.month, t.day) || t.hour > 23 || t.minute > 59 || t.second > 59) {
    return gw::Status::protocol(t.digits() + " is not a valid date and time");
  }
  return std::optional<DateTime>(t);
}

void encode_datetime(const DateTime& t, std::span<uint8_t> seven) {
  seven[0] = to_bcd(t.year / 100);
  seven[1] = to_bcd(t.year % 100);
  seven[2] = to_bcd(t.month);
  seven[3] = to_bcd(t.day);
  seven[4] = to_bcd(t.hour);
  seven[5] = to_bcd(t.minute);
  seven[6] = to_bcd(t.second);
}

std::string reason_text(uint8_t reason) {
  // messages/get_event.go and messages/events.go, "Reason" tables.
  switch (reason) {
    case 0x01:
      return "swipe";
    case 0x05:
      return "denied: PC control";
    case 0x06:
      return "denied: no privilege";
    case 0x07:
      return "denied: wrong password";
    case 0x08:
      return "denied: anti-passback";
    case 0x09:
      return "denied: more cards";
    case 0x0A:
      return "denied: first card open";
    case 0x0B:
      return "denied: door set NC";
    case 0x0C:
      return "denied: interlock";
    case 0x0D:
      return "denied: limited times";
    case 0x0F:
      return "denied: invalid timezone";
    case 0x12:
      return "denied";
    case 0x14:
      return "push button";
    case 0x17:
      return "door open";
    case 0x18:
      return "door closed";
    case 0x19:
      return "super password open door";
    case 0x1C:
      return "controller power on";
    case 0x1D:
      return "controller reset";
    case 0x1E:
      return "push button disabled by task";
    case 0x1F:
      return "push button invalid: forced lock";
    case 0x20:
      return "push button invalid: not on line";
    case 0x21:
      return "push button invalid: interlock";
    case 0x22:
      return "threat";
    case 0x25:
      return "open too long";
    case 0x26:
      return "forced open";
    case 0x27:
      return "fire";
    case 0x28:
      return "forced close";
    case 0x29:
      return "guard against theft";
    case 0x2A:
      return "7x24 hour zone";
    case 0x2B:
      return "emergency call";
    case 0x2C:
      return "remote open door";
    case 0x2D:
      return "remote open door by USB reader";
    default:
      return "reason " + hex2(reason);
  }
}

}  // namespace gw::protocols::uhppote
