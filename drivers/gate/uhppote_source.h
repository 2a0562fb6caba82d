// UhppoteSource follows a UHPPOTE UT0311-L0x access controller (protocols/uhppote.h) over UDP:
// every `poll` it asks get-status (newest log index, door states), reads each log entry after
// its cursor with get-event, and turns swipes into access events; door 1's state becomes the
// `door_open` meter value on change. With `listen` set, the events the controller pushes to
// its configured listener (uhppote-cli set-listener) arrive at once instead of at the next
// poll; a pushed entry that does not follow the cursor just triggers a catch-up by index.
//
// Backfill: the cursor ("<index>@<YYYYMMDDhhmmss>") commits with each entry, so after a
// restart or an outage the driver reads exactly the entries after it (historical = true),
// reports entries the controller overwrote first (bad_input "gap") and a controller whose log
// was reset (bad_input "reset") once, then carries on. First start without a cursor: the
// newest entry is the starting point (the controller may hold 100,000 old entries).
//
// The controller's clock has no time zone; entry times are read in the gateway's local zone
// (TZ), as uhppoted does (types/datetime.go parses with time.Local).
//
// Asio on the core executor (UDP never blocks), as one coroutine per socket; every callback
// runs on the core executor and none after stop().
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "drivers/asio.h"
#include "drivers/event_source.h"
#include "drivers/gate/event_log.h"
#include "protocols/uhppote.h"

namespace gw::drivers {

struct UhppoteSettings {
  std::string device_id;
  std::string host;
  uint16_t port = protocols::uhppote::kDefaultPort;
  uint32_t serial_number = 0;
  std::chrono::milliseconds poll{1000};
  std::chrono::milliseconds timeout{500};  // per request; each request is tried twice
  int offline_after = 3;                   // consecutive failed rounds before link down
  std::string door;                        // name of door 1; doors 2-4 become "<door>-N"
  std::string listen_host;                 // empty: no listener, status polling only
  uint16_t listen_port = 0;
};

class UhppoteSource : public EventSource, public std::enable_shared_from_this<UhppoteSource> {
 public:
  UhppoteSource(UhppoteSettings settings, asio::any_io_executor core);
  ~UhppoteSource() override;

  void start(SourceCallbacks callbacks, std::string cursor) override;
  void stop() override;

 private:
  using Packet = protocols::uhppote::Packet;
  asio::awaitable<void> run();
  asio::awaitable<void> listen();
  // One round: status, then the entries after the cursor (at most 500). False on failure.
  asio::awaitable<bool> sync(bool& more);
  // Sends `request` and waits for the reply with the same function (and, for get-event, the
  // same index); nullopt after two attempts without one, with `error_` set.
  asio::awaitable<std::optional<Packet>> exchange(const Packet& request);
  asio::awaitable<std::optional<protocols::uhppote::EventRecord>> get_event(uint32_t index);
  void on_failure();
  void on_status(const protocols::uhppote::ControllerStatus& status);
  void emit_record(const protocols::uhppote::EventRecord& r, bool historical);
  void note(std::string_view kind, const std::string& message);
  void trace(bool tx, std::span<const uint8_t> bytes, const std::string& what);

  const UhppoteSettings settings_;
  asio::any_io_executor core_;
  asio::ip::udp::socket socket_;
  asio::ip::udp::socket listener_;
  asio::steady_timer poll_timer_;
  asio::steady_timer deadline_;
  bool stopped_ = false;
  SourceCallbacks cb_;

  gate::LogCursor cursor_;
  bool have_cursor_ = false;
  bool pending_baseline_ = false;
  bool busy_ = false;  // a round is reading the log; pushed entries wait for it
  bool wake_ = false;  // a pushed event asked for a round before the poll is due
  bool link_up_ = false;
  bool link_known_ = false;
  int failures_ = 0;
  uint64_t historical_until_ = 0;
  std::optional<bool> door_open_;
  uint64_t deadline_generation_ = 0;
  std::string error_;
};

}  // namespace gw::drivers
