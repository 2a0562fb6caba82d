// EventSource is the other shape of driver: a device that speaks when it has something to say —
// a card reader's swipe, a gate controller's passage, a camera's alarm — instead of answering
// polls. Like Driver it owns its device I/O and nothing else: it never touches SQLite or MQTT,
// never blocks the core thread, and hands what it heard to the gateway through SourceCallbacks,
// always on the core executor. The gateway stamps device id, kind, seq, class and gateway time,
// applies privacy.card_id to access credentials (so drivers deliver card ids as read, and must
// never log them), and commits.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "campus/gateway/v1/gateway.pb.h"

namespace gw::drivers {

struct SourceEvent {
  // Body set (access, camera, meter); device_time_us when the device said when; historical for
  // entries read back from a device's own log after an outage (gate backfill).
  campus::gateway::v1::Event event;
  // The device's read position after this event (a gate's log index), committed in the same
  // transaction as the event and handed back to start() after a restart. Empty: unchanged.
  std::string cursor;
};

struct SourceCallbacks {
  std::function<void(SourceEvent)> event;
  // The link to the device came up (error empty) or went down (error says why). Becomes a
  // status event and the device's online state.
  std::function<void(bool up, const std::string& error)> link;
  // Input that was dropped, by kind ("framing", "checksum", "parity", "overflow", "format",
  // "protocol", "auth", ...) and a message that must not contain a card number. Counted per
  // device and logged rate-limited by the gateway.
  std::function<void(std::string_view kind, const std::string& message)> bad_input;
  // Raw bytes both ways for `gatewayctl trace` (tx = sent to the device), with the decoder's
  // reading; may be null. The gateway masks card numbers in what it shows.
  std::function<void(bool tx, std::span<const uint8_t> bytes, const std::string& note)> trace;
};

class EventSource {
 public:
  virtual ~EventSource() = default;
  // Starts I/O. `cursor` is the last cursor committed for this device, empty when none.
  virtual void start(SourceCallbacks callbacks, std::string cursor) = 0;
  // Ends I/O; no callback runs after it returns. Safe to call more than once.
  virtual void stop() = 0;
};

}  // namespace gw::drivers
