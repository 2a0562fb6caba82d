// UHPPOTE UT0311-L0x access controller UDP protocol: every request and every reply is one
// 64-byte datagram (default port 60000):
//   byte 0     start of message, 0x17 (firmware v6.62 pushes listener events with 0x19)
//   byte 1     function code (0x20 get-status, 0xB0 get-event, ...)
//   bytes 2-3  zero
//   bytes 4-7  controller serial number, little-endian
//   bytes 8-63 the function's fields: integers little-endian, dates and times BCD
// Field offsets follow the open-source uhppoted project, which reverse-engineered the
// protocol: uhppoted/uhppote-core messages/get_status.go, get_event.go, get_event_index.go,
// set_event_index.go, set_listener.go, events.go (the pushed event), with the packing rules
// of encoding/UTO311-L0x/UT0311-L0x.go and BCD dates of types/datetime.go.
//
// Event log semantics (uhppoted/uhppote-simulator entities/eventslist.go, modelled on a real
// controller): indices start at 1 and grow by one per record; asking for index 0 returns the
// oldest record kept, 0xFFFFFFFF the newest; an index older than the oldest kept returns a
// record of type 0xFF ("overwritten"); an index past the newest returns an all-zero record.
//
// Pure codec: no I/O, no clock, safe from any thread.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "protocols/status.h"

namespace gw::protocols::uhppote {

inline constexpr std::size_t kPacketSize = 64;
inline constexpr uint16_t kDefaultPort = 60000;
inline constexpr uint8_t kStartOfMessage = 0x17;
inline constexpr uint8_t kStartOfMessageV662 = 0x19;  // v6.62 listener events only

inline constexpr uint8_t kGetStatus = 0x20;  // also the function code of pushed events
inline constexpr uint8_t kSetListener = 0x90;
inline constexpr uint8_t kGetEvent = 0xB0;
inline constexpr uint8_t kSetEventIndex = 0xB2;
inline constexpr uint8_t kGetEventIndex = 0xB4;

// set-event-index is refused by the controller without this word at offset 12.
inline constexpr uint32_t kSetEventIndexMagic = 0x55AAAA55;

// get-event index values with a special meaning.
inline constexpr uint32_t kFirstEvent = 0;
inline constexpr uint32_t kLastEvent = 0xFFFFFFFF;

// Record types (messages/get_event.go).
inline constexpr uint8_t kTypeNone = 0x00;
inline constexpr uint8_t kTypeSwipe = 0x01;
inline constexpr uint8_t kTypeDoor = 0x02;   // door status, push button, reboot, remote open
inline constexpr uint8_t kTypeAlarm = 0x03;  // "warn" records
inline constexpr uint8_t kTypeOverwritten = 0xFF;

// Directions (messages/get_event.go).
inline constexpr uint8_t kDirectionIn = 0x01;
inline constexpr uint8_t kDirectionOut = 0x02;

// Reasons used by the gateway (the full table is reason_text()).
inline constexpr uint8_t kReasonSwipe = 0x01;
inline constexpr uint8_t kReasonNoPrivilege = 0x06;
inline constexpr uint8_t kReasonDoorOpen = 0x17;
inline constexpr uint8_t kReasonDoorClosed = 0x18;

using Packet = std::array<uint8_t, kPacketSize>;

// Wall-clock time as the controller keeps it: local time of its site, no zone, whole seconds.
struct DateTime {
  int year = 0;  // 2000..2099 in practice; 4 BCD digits on the wire
  int month = 0;
  int day = 0;
  int hour = 0;
  int minute = 0;
  int second = 0;
  bool operator==(const DateTime&) const = default;
  // "YYYYMMDDhhmmss", the 14 digits as they travel.
  std::string digits() const;
};

// One event log record, as get-event returns it and as get-status / a pushed event carry the
// newest one (offsets 8..27).
struct EventRecord {
  uint32_t index = 0;
  uint8_t type = kTypeNone;
  bool granted = false;
  uint8_t door = 0;       // 1..4
  uint8_t direction = 0;  // kDirectionIn / kDirectionOut
  uint32_t card = 0;
  std::optional<DateTime> timestamp;  // absent when all zero (no record) or "2000-00-00 ..."
  uint8_t reason = 0;
  bool operator==(const EventRecord&) const = default;
};

// get-status reply; a pushed listener event has the same layout (messages/events.go).
struct ControllerStatus {
  uint32_t serial = 0;
  EventRecord event;                    // the newest record; event.index = newest log index
  std::array<bool, 4> door_open{};      // offsets 28..31
  std::array<bool, 4> button{};         // offsets 32..35
  uint8_t system_error = 0;             // offset 36
  std::optional<DateTime> system_time;  // date at 51 (YYMMDD), time at 37 (hhmmss)
  uint32_t sequence = 0;                // offset 40
  uint8_t special_info = 0;             // offset 48
  uint8_t relays = 0;                   // offset 49: bit n = door n+1 unlocked
  uint8_t inputs = 0;                   // offset 50: bit 0 forced lock, bit 1 fire alarm
  bool operator==(const ControllerStatus&) const = default;
};

// ---- requests (what the gateway sends) ----
Packet get_status_request(uint32_t serial);
Packet get_event_request(uint32_t serial, uint32_t index);
Packet get_event_index_request(uint32_t serial);
Packet set_event_index_request(uint32_t serial, uint32_t index);
Packet set_listener_request(uint32_t serial, std::array<uint8_t, 4> ipv4, uint16_t port);

// ---- replies (what a controller sends; the simulator builds them with these) ----
Packet status_reply(const ControllerStatus& status);
Packet event_reply(uint32_t serial, const EventRecord& record);
Packet event_index_reply(uint32_t serial, uint32_t index);
Packet set_event_index_reply(uint32_t serial, bool changed);
Packet set_listener_reply(uint32_t serial, bool ok);
// A listener event (function 0x20, pushed unasked); `v662` uses start byte 0x19.
Packet pushed_event(const ControllerStatus& status, bool v662 = false);

// ---- decoding ----
// Checks length (64), start byte and function code, and reads the header. Every decoder below
// starts with it; a bad packet is gw::Status::protocol with a message naming what was wrong.
struct Header {
  uint8_t function = 0;
  uint32_t serial = 0;
};
Result<Header> decode_header(std::span<const uint8_t> packet);

Result<ControllerStatus> decode_status(
    std::span<const uint8_t> packet);  // get-status reply or pushed event
Result<EventRecord> decode_event(std::span<const uint8_t> packet);     // get-event reply
Result<uint32_t> decode_event_index(std::span<const uint8_t> packet);  // get-event-index reply
Result<bool> decode_set_event_index(std::span<const uint8_t> packet);  // set-event-index reply
// Requests, for the simulator: the index asked for (get-event, set-event-index) or 0.
struct Request {
  uint8_t function = 0;
  uint32_t serial = 0;
  uint32_t index = 0;
  bool magic_ok = false;             // set-event-index carried kSetEventIndexMagic
  std::array<uint8_t, 4> address{};  // set-listener
  uint16_t port = 0;                 // set-listener
};
Result<Request> decode_request(std::span<const uint8_t> packet);

// ---- BCD date and time ----
// 7 bytes YYYY MM DD hh mm ss (types/datetime.go). All zero, and 20 00 00 00 00 00 00 (what
// uninitialised controllers send), mean "no time": nullopt. A nibble above 9 or a field out of
// range is an error.
Result<std::optional<DateTime>> decode_datetime(std::span<const uint8_t> seven);
void encode_datetime(const DateTime& t, std::span<uint8_t> seven);

// Human-readable meaning of a record's reason byte (messages/get_event.go table), e.g. 0x06 ->
// "denied: no privilege"; "reason 0xNN" for codes the table marks reserved or lacks.
std::string reason_text(uint8_t reason);

}  // namespace gw::protocols::uhppote
