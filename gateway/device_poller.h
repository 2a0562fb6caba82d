// DevicePoller owns the timing of one device: it asks the driver to read every `poll` period
// (fixed rate, never two reads outstanding), turns the answers into events for the router —
// telemetry through the device's report filter, and a status event whenever the device goes
// online or, after `offline_after` failed polls in a row, offline with the reason.
// An offline device is probed with backoff (twice the previous gap, up to kMaxProbeGap) instead
// of every period, so a dead meter does not take a busy line's time from the healthy ones; the
// first good reply brings it back online and back to its period. Core thread only.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "drivers/asio.h"
#include "drivers/driver.h"
#include "gateway/config.h"
#include "gateway/report_filter.h"
#include "gateway/router.h"

namespace gw {

class DevicePoller {
 public:
  enum class State { kUnknown, kOnline, kOffline };
  static constexpr std::chrono::milliseconds kMaxProbeGap{60000};

  struct LastValue {
    double value = 0.0;
    bool good = false;
    int64_t at_us = 0;
  };
  struct ErrorCounts {
    uint64_t timeout = 0, protocol = 0, unavailable = 0, other = 0;
  };

  DevicePoller(asio::any_io_executor core, config::DeviceSection device,
               std::shared_ptr<drivers::Driver> driver, Router& router);

  // Starts polling after `first_delay` (a splay, so devices do not all fire at once).
  void start(std::chrono::milliseconds first_delay);
  void stop();

  const std::string& id() const { return device_.id; }
  const config::DeviceSection& device() const { return device_; }
  // One read outside the schedule (gatewayctl read): ahead of polls on a shared line; its values
  // are returned, not reported as telemetry.
  void read_now(drivers::Driver::PollCallback done) { driver_->poll(std::move(done), true); }
  const ErrorCounts& errors() const { return errors_; }
  int64_t last_good_read_us() const { return last_good_us_; }
  // Mean time between the starts of consecutive polls; 0 before the second poll.
  std::chrono::milliseconds achieved_period() const { return achieved_; }
  std::chrono::microseconds last_latency() const { return last_latency_; }
  std::chrono::microseconds mean_latency() const {
    return polls_ ? std::chrono::microseconds(latency_sum_.count() / int64_t(polls_))
                  : std::chrono::microseconds(0);
  }
  const std::vector<LastValue>& last_values() const { return last_values_; }
  // Sees every scheduled poll's outcome (metrics).
  using PollObserver = std::function<void(const std::string& device, const drivers::PollResult&)>;
  void set_poll_observer(PollObserver observer) { poll_observer_ = std::move(observer); }
  State state() const { return state_; }
  uint64_t polls() const { return polls_; }
  uint64_t failures() const { return failures_; }
  uint64_t overruns() const { return overruns_; }
  uint64_t skipped_while_offline() const { return skipped_offline_; }
  // Polls skipped because the buffer asked for less telemetry (Router::slowdown()).
  uint64_t throttled() const { return throttled_; }
  const std::string& last_error() const { return last_error_; }

 private:
  void arm();
  void on_tick();
  void on_result(const drivers::PollResult& result);
  void emit_status(bool online, const std::string& error, int64_t at_us);

  const config::DeviceSection device_;
  std::shared_ptr<drivers::Driver> driver_;
  Router& router_;
  ReportFilter filter_;
  asio::steady_timer timer_;
  std::chrono::steady_clock::time_point next_due_{};
  bool outstanding_ = false;
  bool stopped_ = false;
  State state_ = State::kUnknown;
  int consecutive_failures_ = 0;
  uint64_t polls_ = 0;
  uint64_t failures_ = 0;
  uint64_t overruns_ = 0;
  std::chrono::milliseconds probe_gap_{0};           // while offline: time between probes
  std::chrono::steady_clock::time_point next_probe_{};
  uint64_t skipped_offline_ = 0;
  uint64_t throttle_ticks_ = 0;
  uint64_t throttled_ = 0;
  std::string last_error_;
  ErrorCounts errors_;
  int64_t last_good_us_ = 0;
  std::chrono::steady_clock::time_point last_start_{};
  std::chrono::milliseconds achieved_{0};
  std::chrono::microseconds last_latency_{0};
  std::chrono::microseconds latency_sum_{0};
  std::vector<LastValue> last_values_;
  PollObserver poll_observer_;
};

}  // namespace gw
