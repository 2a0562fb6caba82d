// What the central command-line tools (central_subscriber, central_consumer) share: stderr lines
// named after the program, the strict "--flag S" seconds parser, Paho's failure text, the report
// file written atomically, SIGINT/SIGTERM taken synchronously by the main thread, and the
// connection state the Paho callbacks set and the main thread waits on.
#pragma once

#include <mqtt/async_client.h>

#include <chrono>
#include <csignal>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "protocols/status.h"

namespace gw::central {

using Clock = std::chrono::steady_clock;

// One stderr line "program: msg" per call, in one write, so lines from different threads do not
// interleave. Any thread.
void log_line(std::string_view program, std::string_view msg);

// A positive, finite number of seconds; the error names `flag` and the text.
Result<double> parse_seconds(std::string_view flag, std::string_view text);

// "--flag=value": cuts `arg` down to "--flag" and returns "value"; nullopt (arg untouched) when
// there is no '=' or arg is not a long option.
std::optional<std::string_view> split_inline_value(std::string_view& arg);

// Paho reports a refused CONNACK as its MQTT 3.1.1 return code; say what it means.
std::string describe_failure(const mqtt::token& tok);

// Writes path.tmp and renames it over path, so a reader never sees half a file. False (errno
// set) when any step failed.
bool write_file_atomically(const std::string& path, const std::string& text);

// `start` + `seconds` on the steady clock.
Clock::time_point after(Clock::time_point start, double seconds);

// Blocks SIGINT and SIGTERM for the calling thread and for every thread it starts afterwards
// (construct it before Paho and the workers start theirs), then takes them synchronously.
// Main thread only.
class StopSignals {
 public:
  StopSignals();
  // Waits up to `timeout` (zero: only looks) for SIGINT/SIGTERM; true once one has arrived.
  bool wait(Clock::duration timeout);
  bool received() const { return received_; }

 private:
  sigset_t signals_;
  bool received_ = false;
};

// The connection state Paho's callbacks report (on Paho's thread) and the main thread waits on.
class ConnectionState {
 public:
  explicit ConnectionState(std::string_view program) : program_(program) {}

  void connected();
  // Logs the loss; Paho reconnects on its own.
  void lost(const std::string& cause);
  void failed(std::string why);

  // Waits until connected, `deadline` passed or `stop_requested` says so.
  bool wait_connected(Clock::time_point deadline, const std::function<bool()>& stop_requested);
  // The last connect failure, or a generic text when there was none.
  std::string last_error() const;

 private:
  const std::string program_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool connected_ = false;
  std::string last_error_;
};

}  // namespace gw::central
