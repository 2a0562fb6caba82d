#include "gateway/alarm_engine.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

namespace gw {

namespace v1 = campus::gateway::v1;
using Json = nlohmann::json;

namespace {

constexpr const char* kDoorPoint = "door_open";
constexpr std::size_t kMaxGrantsPerDoor = 1000;

int64_t us(config::Duration d) { return int64_t(d.count()) * 1000; }
double seconds(int64_t micros) { return double(micros) / 1e6; }

v1::Severity severity_of(const std::string& s) {
  if (s == "info") return v1::INFO;
  if (s == "minor") return v1::MINOR;
  if (s == "critical") return v1::CRITICAL;
  return v1::MAJOR;
}

}  // namespace

AlarmEngine::AlarmEngine(std::vector<config::AlarmSection> rules,
                         const std::vector<config::DeviceSection>& devices, Clock clock)
    : rules_(std::move(rules)), clock_(std::move(clock)) {
  for (const config::DeviceSection& d : devices) devices_[d.id] = {d.kind, d.door};
  const int64_t now = clock_();
  for (std::size_t r = 0; r < rules_.size(); ++r) {
    conds_.push_back(cond_of(rules_[r]));
    if (conds_[r] == Cond::kForced) {
      grant_keep_us_ = std::max(grant_keep_us_, us(rules_[r].grant_window) + kForcedGraceUs);
    }
  }
  // Rules about silence need their instances before anything is heard: a meter that never answers
  // is stale from the start.
  for (std::size_t r = 0; r < rules_.size(); ++r) {
    if (conds_[r] != Cond::kStale) continue;
    for (const auto& [id, info] : devices_) {
      if (covers(rules_[r], id)) instance(r, id, "").since_us = now;
    }
  }
}

AlarmEngine::Cond AlarmEngine::cond_of(const config::AlarmSection& r) {
  if (r.stale) return Cond::kStale;
  if (r.offline) return Cond::kOffline;
  if (r.rate_window) return Cond::kRate;
  if (r.held_open) return Cond::kHeldOpen;
  if (r.forced) return Cond::kForced;
  if (r.denied_count) return Cond::kDenied;
  if (r.active_duration) return Cond::kActiveFor;
  return Cond::kThreshold;
}

bool AlarmEngine::covers(const config::AlarmSection& rule, const std::string& device) const {
  auto it = devices_.find(device);
  if (it == devices_.end()) return false;
  if (rule.kind) return *rule.kind == it->second.kind;
  return std::find(rule.devices.begin(), rule.devices.end(), device) != rule.devices.end();
}

AlarmEngine::Instance& AlarmEngine::instance(std::size_t rule, const std::string& device,
                                             const std::string& subject) {
  std::string key = std::string(kStatePrefix) + rules_[rule].name + "|" + device + "|" + subject;
  auto it = instances_.find(key);
  if (it != instances_.end()) return it->second;
  Instance& in = instances_[key];
  in.rule = rule;
  in.key = std::move(key);
  in.shown.rule = rules_[rule].name;
  in.shown.severity = rules_[rule].severity;
  in.shown.device = device;
  if (auto d = devices_.find(device); d != devices_.end()) in.shown.kind = d->second.kind;
  in.shown.subject = subject;
  return in;
}

std::string AlarmEngine::state_json(const Instance& in) const {
  const ActiveAlarm& a = in.shown;
  return Json{{"rule", a.rule},         {"severity", a.severity},   {"device", a.device},
              {"kind", int(a.kind)},    {"subject", a.subject},     {"point", a.point},
              {"value", a.value},       {"threshold", a.threshold}, {"raised_us", a.raised_us},
              {"since_us", a.since_us}, {"limit", in.limit},        {"last_us", in.last_us}}
      .dump();
}

void AlarmEngine::raise(Instance& in, double value, double threshold, int64_t now, Out& out) {
  const config::AlarmSection& rule = rules_[in.rule];
  in.active = true;
  ActiveAlarm& a = in.shown;
  a.severity = rule.severity;
  a.value = value;
  a.threshold = threshold;
  a.raised_us = now;
  a.since_us = in.since_us ? in.since_us : now;
  switch (conds_[in.rule]) {
    case Cond::kThreshold:
    case Cond::kRate:
    case Cond::kStale:
      a.point = rule.point;
      break;
    case Cond::kOffline:
      a.point.clear();
      break;
    case Cond::kHeldOpen:
    case Cond::kForced:
      a.point = kDoorPoint;
      break;
    case Cond::kDenied:
    case Cond::kActiveFor:
      a.point = a.subject;
      break;
  }
  AlarmTransition t;
  t.event.set_device_id(a.device);
  t.event.set_kind(a.kind);
  t.event.set_gateway_time_us(now);
  v1::AlarmBody* body = t.event.mutable_alarm();
  body->set_rule(a.rule);
  body->set_severity(severity_of(a.severity));
  body->set_point(a.point);
  body->set_value(value);
  body->set_threshold(threshold);
  body->set_active(true);
  t.state_key = in.key;
  t.state_value = state_json(in);
  out.push_back(std::move(t));
}

void AlarmEngine::clear(Instance& in, double value, int64_t now, Out& out) {
  in.active = false;
  const ActiveAlarm& a = in.shown;
  AlarmTransition t;
  t.event.set_device_id(a.device);
  t.event.set_kind(a.kind);
  t.event.set_gateway_time_us(now);
  v1::AlarmBody* body = t.event.mutable_alarm();
  body->set_rule(a.rule);
  body->set_severity(severity_of(a.severity));  // as raised, so the pair matches at the central
  body->set_point(a.point);
  body->set_value(value);
  body->set_threshold(a.threshold);
  body->set_active(false);
  t.state_key = in.key;
  out.push_back(std::move(t));
}

std::vector<AlarmTransition> AlarmEngine::restore(
    const std::vector<std::pair<std::string, std::string>>& rows) {
  Out out;
  const int64_t now = clock_();
  for (const auto& [key, value] : rows) {
    Json j = Json::parse(value, nullptr, false);
    if (!j.is_object()) j = Json::object();
    auto text = [&](const char* k) {
      auto it = j.find(k);
      return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    auto number = [&](const char* k) {
      auto it = j.find(k);
      return it != j.end() && it->is_number() ? it->get<double>() : 0.0;
    };
    auto integer = [&](const char* k) {
      auto it = j.find(k);
      return it != j.end() && it->is_number_integer() ? it->get<int64_t>() : int64_t{0};
    };
    ActiveAlarm a;
    a.rule = text("rule");
    a.severity = text("severity");
    a.device = text("device");
    a.kind = v1::DeviceKind_IsValid(int(integer("kind"))) ? v1::DeviceKind(integer("kind"))
                                                          : v1::DEVICE_KIND_UNSPECIFIED;
    a.subject = text("subject");
    a.point = text("point");
    a.value = number("value");
    a.threshold = number("threshold");
    a.raised_us = integer("raised_us");
    a.since_us = integer("since_us");

    auto rule = std::find_if(rules_.begin(), rules_.end(),
                             [&](const config::AlarmSection& r) { return r.name == a.rule; });
    const std::size_t r = static_cast<std::size_t>(rule - rules_.begin());
    // The key as this engine would build it: denied alarms belong to a door, not a device.
    const bool usable = rule != rules_.end() && covers(*rule, a.device);
    const std::string device_part = usable && conds_[r] == Cond::kDenied ? "" : a.device;
    if (!usable ||
        key != std::string(kStatePrefix) + a.rule + "|" + device_part + "|" + a.subject) {
      // Its rule or device is gone (or the row is unreadable): nothing will ever clear it, so clear
      // it now rather than leave it active at the central for good.
      Instance gone;
      gone.key = key;
      gone.shown = a;
      if (a.rule.empty()) gone.shown.rule = key.substr(std::string(kStatePrefix).size());
      if (gone.shown.severity.empty()) gone.shown.severity = "major";
      Out cleared;
      clear(gone, a.value, now, cleared);
      for (auto& t : cleared) out.push_back(std::move(t));
      continue;
    }
    Instance& in = instance(r, device_part, a.subject);
    in.active = true;
    in.shown = a;
    in.since_us = a.since_us;
    in.limit = int(integer("limit"));
    in.last_us = integer("last_us");
    if (conds_[r] == Cond::kThreshold || conds_[r] == Cond::kRate) in.since_us = 0;
  }
  return out;
}

std::vector<AlarmTransition> AlarmEngine::on_event(const v1::Event& event) {
  Out out;
  if (event.historical() || !devices_.count(event.device_id())) return out;
  const int64_t now = clock_();
  const std::string& device = event.device_id();
  switch (event.body_case()) {
    case v1::Event::kMeter:
      for (const v1::MeterValue& v : event.meter().values()) on_reading(device, v, now, out);
      break;
    case v1::Event::kStatus:
      for (std::size_t r = 0; r < rules_.size(); ++r) {
        if (conds_[r] != Cond::kOffline || !covers(rules_[r], device)) continue;
        Instance& in = instance(r, device, "");
        if (!event.status().online()) {
          if (!in.since_us) in.since_us = now;
        } else {
          if (in.active) clear(in, seconds(now - (in.since_us ? in.since_us : now)), now, out);
          in.since_us = 0;
        }
      }
      break;
    case v1::Event::kAccess: {
      const v1::AccessBody& a = event.access();
      if (a.result() == v1::GRANTED) {
        on_grant(device, a.door(), now);
        for (auto& [key, in] : instances_) {
          if (conds_[in.rule] == Cond::kForced) check_forced(in, now, out);
        }
      } else if (a.result() == v1::DENIED) {
        const std::string door = !a.door().empty() ? a.door() : device;
        for (std::size_t r = 0; r < rules_.size(); ++r) {
          if (conds_[r] != Cond::kDenied || !covers(rules_[r], device)) continue;
          Instance& in = instance(r, "", door);
          const int64_t window = us(*rules_[r].denied_window);
          while (!in.denials.empty() && in.denials.front() <= now - window) in.denials.pop_front();
          in.denials.push_back(now);
          in.last_us = now;
          if (!in.since_us) in.since_us = in.denials.front();
          if (!in.active && int64_t(in.denials.size()) >= *rules_[r].denied_count) {
            in.shown.device = device;  // the reader that saw the last swipe of the burst
            if (auto d = devices_.find(device); d != devices_.end()) in.shown.kind = d->second.kind;
            in.since_us = in.denials.front();
            raise(in, double(in.denials.size()), double(*rules_[r].denied_count), now, out);
          }
        }
      }
      break;
    }
    case v1::Event::kCamera: {
      const v1::CameraBody& c = event.camera();
      const std::string subject = c.type() + ":" + std::to_string(c.channel());
      for (std::size_t r = 0; r < rules_.size(); ++r) {
        if (conds_[r] != Cond::kActiveFor || rules_[r].active_type != c.type() ||
            !covers(rules_[r], device)) {
          continue;
        }
        Instance& in = instance(r, device, subject);
        if (c.active()) {
          if (!in.since_us) in.since_us = now;
        } else {
          if (in.active) clear(in, seconds(now - (in.since_us ? in.since_us : now)), now, out);
          in.since_us = 0;
        }
      }
      break;
    }
    default:
      break;
  }
  return out;
}

void AlarmEngine::on_reading(const std::string& device, const v1::MeterValue& v, int64_t now,
                             Out& out) {
  if (v.quality() != v1::GOOD || !std::isfinite(v.value())) return;
  for (std::size_t r = 0; r < rules_.size(); ++r) {
    const config::AlarmSection& rule = rules_[r];
    const Cond cond = conds_[r];
    if (!covers(rule, device)) continue;
    switch (cond) {
      case Cond::kThreshold:
        if (v.name() == rule.point) on_threshold(instance(r, device, ""), v.value(), now, out);
        break;
      case Cond::kRate:
        if (v.name() == rule.point) {
          Instance& in = instance(r, device, "");
          // Thinned so a long window with a fast poll stays small: a new sample replaces the newest
          // when the one before it is closer than window / kRateSamplesPerWindow.
          const int64_t spacing = us(*rule.rate_window) / kRateSamplesPerWindow;
          if (in.samples.size() >= 2 && now - in.samples[in.samples.size() - 2].first < spacing) {
            in.samples.back() = {now, v.value()};
          } else {
            in.samples.emplace_back(now, v.value());
          }
          on_rate(in, now, out);
        }
        break;
      case Cond::kStale:
        if (rule.point.empty() || v.name() == rule.point) {
          Instance& in = instance(r, device, "");
          if (in.active) clear(in, seconds(now - (in.since_us ? in.since_us : now)), now, out);
          in.since_us = now;  // the last good reading
        }
        break;
      case Cond::kHeldOpen:
      case Cond::kForced:
        if (v.name() == kDoorPoint) on_door(instance(r, device, ""), v.value() >= 0.5, now, out);
        break;
      default:
        break;
    }
  }
}

void AlarmEngine::on_threshold(Instance& in, double v, int64_t now, Out& out) {
  const config::AlarmSection& rule = rules_[in.rule];
  in.last_value = v;
  if (in.active) {
    const bool back =
        in.limit > 0 ? v < *rule.high - rule.hysteresis : v > *rule.low + rule.hysteresis;
    if (!back) return;
    clear(in, v, now, out);
    in.limit = 0;
    in.since_us = 0;
    // The same reading may be beyond the other limit: evaluated below.
  }
  const int limit = rule.high && v > *rule.high ? 1 : rule.low && v < *rule.low ? -1 : 0;
  raise_after_hold(in, limit, v, limit > 0 ? rule.high : rule.low, now, out);
}

// A limit crossed (1 above, -1 below, 0 none) raises once it has held for `for:` without a break.
void AlarmEngine::raise_after_hold(Instance& in, int limit, double value,
                                   const std::optional<double>& threshold, int64_t now, Out& out) {
  if (limit == 0) {
    in.limit = 0;
    in.since_us = 0;
    return;
  }
  if (limit != in.limit || !in.since_us) {
    in.limit = limit;
    in.since_us = now;
  }
  if (now - in.since_us >= us(rules_[in.rule].hold_for)) raise(in, value, *threshold, now, out);
}

// The change over the window: the newest reading minus the newest one at least `window` old (or the
// oldest there is, before a window has passed). Clearing waits until a whole window of readings
// shows no anomaly — after a restart too, when the history is gone.
void AlarmEngine::on_rate(Instance& in, int64_t now, Out& out) {
  const config::AlarmSection& rule = rules_[in.rule];
  if (in.samples.empty()) return;
  const int64_t start = now - us(*rule.rate_window);
  while (in.samples.size() >= 2 && in.samples[1].first <= start) in.samples.pop_front();
  const bool covered = in.samples.front().first <= start;
  const double delta = in.samples.back().second - in.samples.front().second;
  const int limit = rule.rate_max_delta && delta > *rule.rate_max_delta   ? 1
                    : rule.rate_min_delta && delta < *rule.rate_min_delta ? -1
                                                                          : 0;
  if (in.active) {
    if (limit == 0 && covered) {
      clear(in, delta, now, out);
      in.limit = 0;
      in.since_us = 0;
    }
    return;
  }
  raise_after_hold(in, limit, delta, limit > 0 ? rule.rate_max_delta : rule.rate_min_delta, now,
                   out);
}

void AlarmEngine::on_door(Instance& in, bool open, int64_t now, Out& out) {
  const Cond cond = conds_[in.rule];
  const int before = in.door;
  in.door = open ? 1 : 0;
  if (open) {
    if (before == 1) return;
    if (cond == Cond::kHeldOpen) {
      if (!(in.active && in.since_us)) in.since_us = now;
      return;
    }
    // forced: only an opening seen happen counts (after a restart the door may be found open).
    in.since_us = now;
    if (before == 0 && !in.active && !granted(in, now - us(rules_[in.rule].grant_window), now)) {
      in.pending_us = now;
    }
    return;
  }
  if (in.active) clear(in, seconds(now - (in.since_us ? in.since_us : now)), now, out);
  if (cond == Cond::kHeldOpen) in.since_us = 0;
}

std::vector<std::string> AlarmEngine::door_keys(const std::string& device) const {
  std::vector<std::string> keys{"dev:" + device};
  auto it = devices_.find(device);
  if (it != devices_.end() && !it->second.door.empty()) keys.push_back("door:" + it->second.door);
  return keys;
}

void AlarmEngine::on_grant(const std::string& device, const std::string& door, int64_t now) {
  if (grant_keep_us_ == 0) return;  // no forced rule asks
  std::vector<std::string> keys{"dev:" + device};
  if (!door.empty()) keys.push_back("door:" + door);
  for (const std::string& k : keys) {
    std::deque<int64_t>& q = grants_[k];
    q.push_back(now);
    while (!q.empty() && (q.front() < now - grant_keep_us_ || q.size() > kMaxGrantsPerDoor)) {
      q.pop_front();
    }
  }
}

bool AlarmEngine::granted(const Instance& in, int64_t from, int64_t to) const {
  for (const std::string& k : door_keys(in.shown.device)) {
    auto it = grants_.find(k);
    if (it == grants_.end()) continue;
    for (int64_t t : it->second) {
      if (t >= from && t <= to) return true;
    }
  }
  return false;
}

void AlarmEngine::check_forced(Instance& in, int64_t now, Out& out) {
  if (!in.pending_us) return;
  const int64_t opened = in.pending_us;
  if (granted(in, opened - us(rules_[in.rule].grant_window), opened + kForcedGraceUs)) {
    in.pending_us = 0;
    return;
  }
  if (now < opened + kForcedGraceUs) return;
  in.pending_us = 0;
  in.since_us = opened;
  raise(in, 1.0, seconds(us(rules_[in.rule].grant_window)), now, out);
  // Opened and closed again within the grace: still an incident, and already over.
  if (in.door == 0) clear(in, 0.0, now, out);
}

std::vector<AlarmTransition> AlarmEngine::tick() {
  Out out;
  const int64_t now = clock_();
  for (auto it = instances_.begin(); it != instances_.end();) {
    Instance& in = it->second;
    const config::AlarmSection& rule = rules_[in.rule];
    switch (conds_[in.rule]) {
      case Cond::kThreshold:
        if (!in.active && in.limit != 0 && in.since_us && now - in.since_us >= us(rule.hold_for)) {
          raise(in, in.last_value, in.limit > 0 ? *rule.high : *rule.low, now, out);
        }
        break;
      case Cond::kRate:
        on_rate(in, now, out);
        break;
      case Cond::kStale:
        if (!in.active && in.since_us && now - in.since_us >= us(*rule.stale)) {
          raise(in, seconds(now - in.since_us), seconds(us(*rule.stale)), now, out);
        }
        break;
      case Cond::kOffline:
        if (!in.active && in.since_us && now - in.since_us >= us(*rule.offline)) {
          raise(in, seconds(now - in.since_us), seconds(us(*rule.offline)), now, out);
        }
        break;
      case Cond::kHeldOpen:
        if (!in.active && in.door == 1 && in.since_us && now - in.since_us >= us(*rule.held_open)) {
          raise(in, seconds(now - in.since_us), seconds(us(*rule.held_open)), now, out);
        }
        break;
      case Cond::kForced:
        check_forced(in, now, out);
        break;
      case Cond::kDenied: {
        const int64_t window = us(*rule.denied_window);
        while (!in.denials.empty() && in.denials.front() <= now - window) in.denials.pop_front();
        // Clears after a whole window without a denied swipe, so a steady trickle of attempts keeps
        // one alarm rather than raising and clearing it over and over.
        if (in.active && now - in.last_us >= window) {
          clear(in, double(in.denials.size()), now, out);
          in.since_us = 0;
        }
        if (!in.active && in.denials.empty()) {
          it = instances_.erase(it);  // a door that has been quiet: nothing to remember
          continue;
        }
        break;
      }
      case Cond::kActiveFor:
        if (!in.active && in.since_us && now - in.since_us >= us(*rule.active_duration)) {
          raise(in, seconds(now - in.since_us), seconds(us(*rule.active_duration)), now, out);
        }
        if (!in.active && !in.since_us) {
          it = instances_.erase(it);
          continue;
        }
        break;
    }
    ++it;
  }
  return out;
}

std::vector<ActiveAlarm> AlarmEngine::active() const {
  std::vector<ActiveAlarm> out;
  for (const auto& [key, in] : instances_) {
    if (in.active) out.push_back(in.shown);
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> AlarmEngine::active_rows() const {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [key, in] : instances_) {
    if (in.active) out.emplace_back(key, state_json(in));
  }
  return out;
}

}  // namespace gw
