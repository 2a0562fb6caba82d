// The control protocol between gatewayd and gatewayctl, version 1. Shared by both sides.
//
// Transport: the Unix stream socket of `control.socket` (mode 0660). Every message is one line
// of JSON (UTF-8, no newline inside). A request is at most kMaxLineBytes; a longer or unparsable
// one gets a bad_request error (with id 0 when none could be read) and the connection stays
// usable. Replies are not bounded by kMaxLineBytes (a large building's `devices` is bigger): a
// client should accept up to kMaxReplyBytes. Several requests may share a connection; responses
// come in request order, except that `read` answers when its device has. A stream takes its
// connection for itself.
//
// Request:   {"v":1, "id":7, "cmd":"status", "args":{...}}        ("args" optional)
// Response:  {"v":1, "id":7, "ok":true,  "result":{...}}
//            {"v":1, "id":7, "ok":false, "error":{"code":"not_found", "message":"..."}}
// Streams (tail, trace): the response is {"ok":true,"result":{"streaming":true}}, then any number
// of {"v":1,"id":7,"item":{...}} lines until the client closes the connection, or
// {"v":1,"id":7,"end":true,"reason":"..."} when the daemon stops or the device goes away.
// A request with "v" other than 1 gets unsupported_version, naming the versions supported.
//
// Commands, their args and results (every key listed is always present):
//   hello    {} -> {protocol, gateway_id, version, commands:[...]}
//   status   {} -> {gateway_id, version, boot_id, uptime_s, started_at_us,
//              mqtt:{uri, connected, connected_since_us, reconnects, last_error, inflight,
//                    published_events, acked_events, republished_events},
//              buffer:{pending, oldest_age_s, next_seq,
//                      classes:{access|alarm|telemetry|status:{pending, bytes, oldest_age_s}}},
//              devices_online, devices_offline,
//              devices:[{id, online, state:"online"|"offline"|"unknown", last_error}],
//              buses:[{id, open, exchanges, timeouts, bad_frames, discarded_bytes, queued}],
//              last_errors:[{at_us, component, message}]}   (warnings and errors, newest first,
//                                                             at most 10)
//   devices  {device?} -> {devices:[{id, kind, driver, address, unit_id, online, state,
//              last_good_read_us, last_error, polls, failures,
//              errors:{timeout, protocol, unavailable, other}, skipped_while_offline, overruns,
//              poll_ms_configured, poll_ms_achieved, latency_ms:{last, avg},
//              points:[{name, value, unit, good, at_us}]}]}    (address: host:port or bus id)
//   buffer   {oldest?=5} -> {path, next_seq, pending,
//              classes:{<class>:{pending, bytes, oldest_age_s}}, oldest:[<event>...]}
//              (oldest: up to `oldest` events of each class, classes in the order above)
//   tail     {device?, class?, show_credentials?} -> stream of {event:<event>}
//   trace    {device, show_credentials?} -> stream of {at_us, device, dir:"tx"|"rx", hex, note}
//            (hex: lowercase byte pairs separated by one space; note: why a frame was bad, or
//            empty; bus devices only, bad_request for others)
//   read     {device, point} -> {device, point, value, unit, good, error, latency_ms}
//            (answered when the device has: other requests on the same connection may be
//            answered first; value is null when the read failed, error says why)
//   reload   {} -> {reloaded:true, added:[id], removed:[id], changed:[id], unchanged:int}
//   alarms   {} -> {rules:int,
//              active:[{rule, severity, device, subject, point, value, threshold, raised_at_us,
//                       since_us}],
//              recent:[{at_us, seq, rule, severity, device, point, value, threshold, active}]}
//            (active: the alarms raised and not cleared, including those restored after a
//            restart; recent: the raises and clears of this process, newest first, at most 50;
//            seq is the alarm event's; severity is info|minor|major|critical; subject is "" or
//            the door of a denied rule or "type:channel" of an active_for rule; since_us is when
//            the condition began, raised_at_us when the alarm event was made)
// An <event> is the protobuf JSON form of campus.gateway.v1.Event (proto field names).
//
// Error codes: bad_request, unsupported_version, unknown_command, not_found, unavailable,
// invalid_config, restart_required, internal.
#pragma once

#include <cstddef>
#include <string_view>

namespace gw::control {

inline constexpr int kProtocolVersion = 1;
inline constexpr std::size_t kMaxLineBytes = 64 * 1024;
inline constexpr std::size_t kMaxReplyBytes = 64 * 1024 * 1024;
inline constexpr const char* kDefaultSocket = "/run/gatewayd/gatewayd.sock";

namespace error_code {
inline constexpr std::string_view kBadRequest = "bad_request";
inline constexpr std::string_view kUnsupportedVersion = "unsupported_version";
inline constexpr std::string_view kUnknownCommand = "unknown_command";
inline constexpr std::string_view kNotFound = "not_found";
inline constexpr std::string_view kUnavailable = "unavailable";
inline constexpr std::string_view kInvalidConfig = "invalid_config";
inline constexpr std::string_view kRestartRequired = "restart_required";
inline constexpr std::string_view kInternal = "internal";
}  // namespace error_code

}  // namespace gw::control
