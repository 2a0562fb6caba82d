// SerialBus owns one RS-485/RS-232 line — a serial port, or a serial server's raw TCP port
// carrying the line's frames — and is the only way to talk on it. Requests ("exchanges") from
// every device on the line go out one at a time: one-off requests (a read an operator asked
// for, a write) before periodic polls, polls first come first served (each device has at most
// one poll queued, so this is round robin). Before each request the line must have been quiet
// for the silent interval (3.5 character times) plus the configured turnaround; bytes that
// arrive outside an exchange (a late reply after a timeout, noise) are discarded, never read as
// the answer to the next request; a reply followed by more bytes is reported as a bad frame.
//
// The line is opened on start and reopened with backoff after it fails (a USB adapter pulled
// out, a serial server rebooting); exchanges queued meanwhile fail fast with the reason.
// Core thread only: all I/O is asynchronous on the core executor, no thread per bus.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "drivers/asio.h"
#include "protocols/status.h"

namespace gw::drivers {

struct BusSettings {
  std::string id;
  std::string device_path;  // /dev/ttyS1 (empty when tcp_host is set)
  std::string tcp_host;     // a serial server's raw TCP port
  uint16_t tcp_port = 0;
  int baud = 9600;
  char parity = 'N';
  int data_bits = 8;
  int stop_bits = 1;
  std::chrono::microseconds turnaround{0};
};

// What a reply checker says about the bytes received so far in an exchange.
struct FrameCheck {
  enum class Verdict { kNeedMore, kComplete, kBad };
  Verdict verdict = Verdict::kNeedMore;
  std::size_t length = 0;  // kComplete/kBad: bytes the frame took
  std::string message;     // kBad: what was wrong
};
using FrameChecker = std::function<FrameCheck(std::span<const uint8_t>)>;

struct Exchange {
  std::string device_id;
  std::vector<uint8_t> request;
  FrameChecker check;  // empty: no reply expected (a broadcast)
  std::chrono::milliseconds timeout{1000};
  bool urgent = false;  // one-off read or write: ahead of periodic polls
};

struct ExchangeResult {
  // ok, kTimeout (no complete reply in time), kProtocol (bad frame), kUnavailable (line down).
  Status status;
  std::vector<uint8_t> reply;  // the whole reply frame when ok (and the bad bytes otherwise)
  std::chrono::microseconds latency{0};
};

struct BusStats {
  uint64_t exchanges = 0;
  uint64_t timeouts = 0;
  uint64_t bad_frames = 0;
  uint64_t discarded_bytes = 0;  // stale bytes dropped between exchanges
  uint64_t reopens = 0;
  std::size_t queued = 0;
  std::chrono::microseconds busy{0};  // time spent in exchanges and silent intervals
  std::chrono::microseconds max_wait{0};  // longest a periodic request waited in the queue
};

class SerialBus : public std::enable_shared_from_this<SerialBus> {
 public:
  using Done = std::function<void(ExchangeResult)>;

  SerialBus(asio::any_io_executor core, BusSettings settings);
  ~SerialBus();

  void start();
  void stop();
  // `done` runs on the core executor exactly once, unless the bus was stopped first.
  void submit(Exchange exchange, Done done);

  const BusSettings& settings() const { return settings_; }
  const BusStats& stats() const { return stats_; }
  // Sees every frame on the line: tx requests, rx replies (good or bad, with what was wrong) and
  // discarded stray bytes (device_id empty). For `gatewayctl trace`; empty = off.
  using Tracer = std::function<void(const std::string& device_id, bool tx,
                                    std::span<const uint8_t> bytes, const std::string& note)>;
  void set_tracer(Tracer tracer) { tracer_ = std::move(tracer); }
  // Returns the stats and starts a new window for max_wait.
  BusStats take_window_stats();
  bool is_open() const;

 private:
  class Transport;
  struct Job {
    Exchange exchange;
    Done done;
    std::chrono::steady_clock::time_point queued_at;
  };

  asio::awaitable<void> run();
  asio::awaitable<bool> open_line();
  asio::awaitable<ExchangeResult> execute(Job& job);
  asio::awaitable<void> sleep_until(std::chrono::steady_clock::time_point t);
  asio::awaitable<bool> wait_rx_until(std::chrono::steady_clock::time_point deadline);
  void start_reading();
  void fail_queued(const std::string& why);

  asio::any_io_executor core_;
  BusSettings settings_;
  std::chrono::microseconds silent_;
  std::unique_ptr<Transport> transport_;
  asio::steady_timer wake_;      // the run loop sleeps on it; submit() and the reader cancel it
  asio::steady_timer sleep_;
  std::deque<Job> urgent_;
  std::deque<Job> normal_;
  std::vector<uint8_t> rx_;
  std::array<uint8_t, 512> read_chunk_{};
  bool reading_ = false;
  bool line_failed_ = false;
  std::string line_error_;
  bool stopped_ = false;
  std::chrono::steady_clock::time_point last_activity_{};
  std::chrono::steady_clock::time_point quiet_until_{};  // extra quiet after a timeout
  BusStats stats_;
  Tracer tracer_;
};

}  // namespace gw::drivers
