// AlarmEngine evaluates the `alarms:` rules of the config against the events the gateway produces
// and says when an alarm is raised and when it clears. Pure logic: no I/O, no Asio, no threads;
// time comes from an injected clock so tests drive it. AlarmMonitor runs it in gatewayd.
//
// An alarm is one (rule, device, subject): the subject tells apart the doors of a denied rule and
// the event types and channels of a camera rule. It is raised once (a transition with active=true)
// and cleared once (active=false); while its condition holds nothing more is said. Each transition
// carries the state row to commit in the same transaction as its event (key, and value — empty to
// delete), so the set of active alarms survives a restart exactly when the events announcing it
// did. restore() takes those rows back after a restart: the alarms are active again without a
// second raise, are re-evaluated, and clear once when their condition does. Rows of rules (or
// devices) no longer configured are cleared by restore().
//
// Input: meter values (GOOD readings only; the door rules read a value named door_open, 1 open / 0
// closed), status events (online/offline), access events (GRANTED/DENIED) and camera events (type,
// active, channel). Events marked historical (read back from a device's own log after an outage)
// are ignored: the rules are about the present.
//
// on_event() decides what an event decides at once (a reading above `high` with no `for:`, the Nth
// denied swipe); tick(), called about once a second, everything that depends on time passing (for:,
// stale, offline, held_open, forced, denied clearing, active_for, the rate window). Not
// thread-safe: the core thread owns it.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "campus/gateway/v1/gateway.pb.h"
#include "gateway/config.h"

namespace gw {

struct AlarmTransition {
  campus::gateway::v1::Event event;  // device_id, kind, gateway_time_us and the alarm body
  std::string state_key;             // kStatePrefix + rule + "|" + device + "|" + subject
  std::string state_value;           // the active alarm (JSON); empty when it cleared
};

struct ActiveAlarm {
  std::string rule;
  std::string severity;  // info | minor | major | critical
  std::string device;    // the device the alarm event names
  campus::gateway::v1::DeviceKind kind = campus::gateway::v1::DEVICE_KIND_UNSPECIFIED;
  std::string subject;  // "" or a door (denied) or "type:channel" (active_for)
  std::string point;
  double value = 0;  // as raised
  double threshold = 0;
  int64_t raised_us = 0;
  int64_t since_us = 0;  // when the condition began (before for:/durations ran out)
};

class AlarmEngine {
 public:
  using Clock = std::function<int64_t()>;  // unix microseconds
  static constexpr const char* kStatePrefix = "alarm|";
  // forced: a GRANTED passage reported up to this long after the door opened still counts (a
  // controller may report the passage after its door contact), so forced is raised this late.
  static constexpr int64_t kForcedGraceUs = 2'000'000;
  // rate: samples kept per alarm are thinned to about this many per window.
  static constexpr int64_t kRateSamplesPerWindow = 256;

  AlarmEngine(std::vector<config::AlarmSection> rules,
              const std::vector<config::DeviceSection>& devices, Clock clock);

  // The rows committed before a restart (EventBuffer::state_rows(kStatePrefix)). Returns clears for
  // rows whose rule or device is gone, or that cannot be read.
  std::vector<AlarmTransition> restore(
      const std::vector<std::pair<std::string, std::string>>& rows);
  std::vector<AlarmTransition> on_event(const campus::gateway::v1::Event& event);
  std::vector<AlarmTransition> tick();

  std::vector<ActiveAlarm> active() const;
  // The rows of the active alarms, as restore() takes them (to carry them over a reload).
  std::vector<std::pair<std::string, std::string>> active_rows() const;
  const std::vector<config::AlarmSection>& rules() const { return rules_; }

 private:
  enum class Cond { kThreshold, kRate, kStale, kOffline, kHeldOpen, kForced, kDenied, kActiveFor };
  struct DeviceInfo {
    campus::gateway::v1::DeviceKind kind;
    std::string door;
  };
  struct Instance {
    std::size_t rule = 0;
    std::string key;
    bool active = false;
    ActiveAlarm shown;       // device, kind, subject always; the rest as raised
    int64_t since_us = 0;    // when the condition began; 0: it does not hold
    int limit = 0;           // threshold/rate: +1 high/max_delta, -1 low/min_delta
    double last_value = 0;   // threshold: the latest reading
    int door = -1;           // held_open/forced: -1 unknown, 0 closed, 1 open
    int64_t pending_us = 0;  // forced: an opening without a grant (yet)
    std::deque<std::pair<int64_t, double>> samples;  // rate
    std::deque<int64_t> denials;                     // denied
    int64_t last_us = 0;                             // denied: the latest denial
  };
  using Out = std::vector<AlarmTransition>;

  static Cond cond_of(const config::AlarmSection& rule);
  bool covers(const config::AlarmSection& rule, const std::string& device) const;
  Instance& instance(std::size_t rule, const std::string& device, const std::string& subject);
  void raise(Instance& in, double value, double threshold, int64_t now, Out& out);
  void clear(Instance& in, double value, int64_t now, Out& out);
  void raise_after_hold(Instance& in, int limit, double value,
                        const std::optional<double>& threshold, int64_t now, Out& out);
  std::string state_json(const Instance& in) const;

  void on_reading(const std::string& device, const campus::gateway::v1::MeterValue& v, int64_t now,
                  Out& out);
  void on_threshold(Instance& in, double v, int64_t now, Out& out);
  void on_rate(Instance& in, int64_t now, Out& out);
  void on_door(Instance& in, bool open, int64_t now, Out& out);
  void on_grant(const std::string& device, const std::string& door, int64_t now);
  bool granted(const Instance& in, int64_t from, int64_t to) const;
  void check_forced(Instance& in, int64_t now, Out& out);
  std::vector<std::string> door_keys(const std::string& device) const;

  std::vector<config::AlarmSection> rules_;
  std::vector<Cond> conds_;
  std::map<std::string, DeviceInfo> devices_;
  Clock clock_;
  std::map<std::string, Instance> instances_;  // by state key
  // GRANTED passages by "door:NAME" and "dev:ID", kept as long as a forced rule may ask.
  std::map<std::string, std::deque<int64_t>> grants_;
  int64_t grant_keep_us_ = 0;
};

}  // namespace gw
