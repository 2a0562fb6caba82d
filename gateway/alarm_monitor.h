// AlarmMonitor runs the AlarmEngine inside gatewayd. It is fed every event the Router is given
// (Router::set_submit_observer; alarm events themselves are not fed back), ticks the engine once a
// second for the rules that depend on time passing, and submits each raise and clear through the
// Router together with the engine's state row: the alarm event and the set of active alarms commit
// in one transaction (class alarm, so synchronous=FULL). That is why active alarms live in the
// buffer's SQLite file and not in a file of their own: a file written before the commit could
// claim an alarm nobody was told about; one written after could miss an alarm that was announced,
// which would then be raised a second time after a crash. start() loads the committed rows, so an
// alarm active at a restart (or a crash) stays active without a second raise and clears once.
//
// Also answers the control socket's `alarms` request and feeds gateway_alarms_active.
// Core thread only.
#pragma once

#include <deque>
#include <memory>
#include <span>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "drivers/asio.h"
#include "gateway/alarm_engine.h"
#include "gateway/config.h"
#include "gateway/metrics.h"
#include "gateway/router.h"
#include "storage/event_buffer.h"

namespace gw {

class AlarmMonitor {
 public:
  static constexpr std::chrono::milliseconds kTick{1000};
  static constexpr std::size_t kRecent = 50;  // transitions kept for `gatewayctl alarms`

  AlarmMonitor(asio::any_io_executor core, Router& router, storage::EventBuffer& buffer,
               AlarmEngine::Clock clock);

  // Builds the engine for `config`, restores the committed active alarms and starts ticking. Fails
  // only when the buffer cannot be read.
  Status start(const config::Config& config);
  // After a reload: when alarms: or the devices changed, a new engine takes over the active alarms
  // (still active, not raised again; pending for:/duration timers start over).
  void reconfigure(const config::Config& config);
  void stop();

  // Every event the gateway submits (not alarms).
  void on_event(const campus::gateway::v1::Event& event);
  // Every committed group (Router::set_observer): fixes the seqs shown for recent transitions,
  // since the router may still renumber an event after submit (an emergency alarm put in front).
  void on_committed(std::span<const storage::BufferedEvent> group);

  // The `alarms` control reply: {rules, active:[...], recent:[...]} (control_protocol.h).
  nlohmann::json to_json() const;
  // gateway_alarms_active{rule,severity}: every configured rule, 0 when nothing is active.
  void collect(metrics::Registry& registry);

 private:
  void arm();
  void submit(std::vector<AlarmTransition> transitions);

  asio::any_io_executor core_;
  Router& router_;
  storage::EventBuffer& buffer_;
  AlarmEngine::Clock clock_;
  asio::steady_timer timer_;
  std::unique_ptr<AlarmEngine> engine_;
  std::vector<config::AlarmSection> rules_;  // what engine_ was built from, to compare
  std::vector<std::tuple<std::string, int, std::string>> devices_;  // id, kind, door
  struct Recent {
    nlohmann::json item;  // as shown by to_json()
    std::string state_key;
    bool committed = false;
  };
  std::deque<Recent> recent_;  // newest first
  std::vector<metrics::Labels> exported_;  // series collect() set last time
  bool stopped_ = false;
};

}  // namespace gw
