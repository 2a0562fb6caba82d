// LineReader is the event source of card readers that stream what they read (`serial_line`: a
// serial port of its own or a bus it owns outright; `tcp_line`: a reader or serial-to-Ethernet
// converter the gateway connects to). Each frame from protocols/card_reader becomes an `access`
// event {credential = card id as read, door and direction from the config, result
// RESULT_UNKNOWN: a bare reader does not decide}; rejected input becomes bad_input(); every byte
// read goes to trace(), cut into frames and skipped runs.
//
// The line is kept open: a serial port that fails (USB adapter unplugged: read error, the device
// path vanishes) is reopened when it comes back, polling the path with backoff; a TCP connection
// that drops is reconnected with jittered exponential backoff. A TCP reader that goes silent is
// caught two ways: TCP keepalive (the peer host is gone) and `idle_timeout` (no byte for that
// long: reconnect; only when reconnecting fails is the link reported down, since an idle reader
// is normal when nobody swipes). link(true) once the line is open, link(false, why) once per
// outage.
//
// Memory per reader is bounded by the framing's max_length whatever the device sends.
// Core thread only: all I/O is asynchronous on the core executor, every callback runs there, and
// none runs after stop() returns.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "campus/gateway/v1/gateway.pb.h"
#include "drivers/asio.h"
#include "drivers/event_source.h"
#include "protocols/card_reader.h"
#include "protocols/status.h"

namespace gw::drivers {

struct LineReaderSettings {
  std::string device_id;
  // A serial port (device_path and its line settings) or a TCP endpoint (host and port).
  std::string device_path;
  int baud = 9600;
  char parity = 'N';  // 'N', 'E', 'O'
  int data_bits = 8;
  int stop_bits = 1;
  std::string host;
  uint16_t port = 0;

  protocols::card_reader::Framing framing;
  protocols::card_reader::CardFormat format = protocols::card_reader::CardFormat::kDecimal;
  std::string door;
  campus::gateway::v1::Direction direction = campus::gateway::v1::UNKNOWN;

  // TCP only: no byte for this long -> reconnect (0 = never). Readers are silent while nobody
  // swipes, so this is long; keepalive finds a vanished host sooner.
  std::chrono::milliseconds idle_timeout{std::chrono::minutes(5)};
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(5)};
  // TCP keepalive: first probe after keepalive_idle of silence, then every keepalive_interval;
  // keepalive_count unanswered probes end the connection.
  std::chrono::seconds keepalive_idle{15};
  std::chrono::seconds keepalive_interval{5};
  int keepalive_count = 3;
  // Reopen / reconnect backoff: doubles from min to max after each failure.
  std::chrono::milliseconds reopen_min{250};
  std::chrono::milliseconds reopen_max{std::chrono::seconds(5)};
  // fixed framing: a pause this long ends a partial frame (nothing else marks frame starts).
  std::chrono::milliseconds fixed_frame_gap{100};

  bool is_tcp() const { return !host.empty(); }
};

// Checks what the constructor relies on: an endpoint, a valid framing and a card format it can
// carry. The message names what is wrong.
Status validate(const LineReaderSettings& settings);

struct LineReaderStats {
  uint64_t opens = 0;  // successful opens / connects
  uint64_t open_failures = 0;
  uint64_t idle_reconnects = 0;  // idle_timeout expiries
  uint64_t bytes = 0;
  uint64_t swipes = 0;    // events emitted
  uint64_t rejected = 0;  // bad_input() calls
};

class LineReader : public EventSource, public std::enable_shared_from_this<LineReader> {
 public:
  // `settings` must pass validate().
  LineReader(asio::any_io_executor core, LineReaderSettings settings);
  ~LineReader() override;

  void start(SourceCallbacks callbacks, std::string cursor) override;
  void stop() override;

  const LineReaderSettings& settings() const { return settings_; }
  const LineReaderStats& stats() const { return stats_; }
  // Bytes held by the frame splitter (bounded by max_length), for tests and diagnostics.
  std::size_t buffered() const { return splitter_.buffered(); }

 private:
  class Transport;
  enum class LinkState { kUnknown, kUp, kDown };
  enum class ReadEnd { kStopped, kFailed, kIdle };

  asio::awaitable<void> run();
  asio::awaitable<ReadEnd> read_until_failure(std::string& why);
  asio::awaitable<void> sleep_for(std::chrono::milliseconds d);
  void arm_idle_watch();
  void arm_frame_gap();
  void on_bytes(std::span<const uint8_t> bytes);
  void on_piece(const protocols::card_reader::Piece& piece);
  void report_link(bool up, const std::string& why);
  std::string where() const;

  asio::any_io_executor core_;
  LineReaderSettings settings_;
  std::unique_ptr<Transport> transport_;
  protocols::card_reader::FrameSplitter splitter_;
  protocols::card_reader::FrameSplitter::Sink sink_;
  SourceCallbacks callbacks_;
  asio::steady_timer sleep_;
  asio::steady_timer idle_watch_;
  asio::steady_timer frame_gap_;
  std::array<uint8_t, 4096> read_buf_{};
  std::chrono::steady_clock::time_point last_rx_{};
  bool idle_expired_ = false;
  bool started_ = false;
  bool stopped_ = false;
  LinkState link_ = LinkState::kUnknown;
  LineReaderStats stats_;
};

}  // namespace gw::drivers
