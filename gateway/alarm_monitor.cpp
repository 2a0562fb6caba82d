#include "gateway/alarm_monitor.h"

#include <map>

#include "gateway/log.h"

namespace gw {

namespace v1 = campus::gateway::v1;
using Json = nlohmann::json;

namespace {

std::vector<std::tuple<std::string, int, std::string>> device_keys(const config::Config& c) {
  std::vector<std::tuple<std::string, int, std::string>> out;
  for (const config::DeviceSection& d : c.devices) out.emplace_back(d.id, int(d.kind), d.door);
  return out;
}

// Where a rule stands in the file does not change what it means.
std::vector<config::AlarmSection> comparable(std::vector<config::AlarmSection> rules) {
  for (auto& r : rules) r.line = 0;
  return rules;
}

std::string lower_severity(v1::Severity s) {
  switch (s) {
    case v1::INFO:
      return "info";
    case v1::MINOR:
      return "minor";
    case v1::CRITICAL:
      return "critical";
    default:
      return "major";
  }
}

}  // namespace

AlarmMonitor::AlarmMonitor(asio::any_io_executor core, Router& router, storage::EventBuffer& buffer,
                           AlarmEngine::Clock clock)
    : core_(core), router_(router), buffer_(buffer), clock_(std::move(clock)), timer_(core) {}

Status AlarmMonitor::start(const config::Config& config) {
  auto rows = buffer_.state_rows(AlarmEngine::kStatePrefix);
  if (!rows) return rows.status();
  rules_ = comparable(config.alarms);
  devices_ = device_keys(config);
  engine_ = std::make_unique<AlarmEngine>(config.alarms, config.devices, clock_);
  if (!rows->empty()) {
    log::notice("alarm", "restored ", rows->size(), " active alarm(s) from the buffer");
  }
  submit(engine_->restore(*rows));
  if (!config.alarms.empty()) arm();
  return Status::ok();
}

void AlarmMonitor::reconfigure(const config::Config& config) {
  if (!engine_ || (comparable(config.alarms) == rules_ && device_keys(config) == devices_)) return;
  const auto carried = engine_->active_rows();
  rules_ = comparable(config.alarms);
  devices_ = device_keys(config);
  engine_ = std::make_unique<AlarmEngine>(config.alarms, config.devices, clock_);
  submit(engine_->restore(carried));
  log::notice("alarm", "rules reloaded: ", config.alarms.size(), " rule(s), ", carried.size(),
              " active alarm(s) carried over");
  timer_.cancel();
  if (!config.alarms.empty() && !stopped_) arm();
}

void AlarmMonitor::stop() {
  stopped_ = true;
  timer_.cancel();
}

void AlarmMonitor::arm() {
  timer_.expires_after(kTick);
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec || stopped_) return;
    submit(engine_->tick());
    arm();
  });
}

void AlarmMonitor::on_event(const v1::Event& event) {
  if (engine_ && !stopped_) submit(engine_->on_event(event));
}

void AlarmMonitor::submit(std::vector<AlarmTransition> transitions) {
  for (AlarmTransition& t : transitions) {
    const v1::AlarmBody& a = t.event.alarm();
    const std::string severity = lower_severity(a.severity());
    const std::string device = t.event.device_id();
    const int64_t at = t.event.gateway_time_us();
    Json item{{"at_us", at},
              {"rule", a.rule()},
              {"severity", severity},
              {"device", device},
              {"point", a.point()},
              {"value", a.value()},
              {"threshold", a.threshold()},
              {"active", a.active()},
              {"seq", 0}};
    if (a.active()) {
      const bool loud = a.severity() == v1::MAJOR || a.severity() == v1::CRITICAL;
      log::emit(loud ? log::Level::kWarning : log::Level::kNotice, "alarm",
                "raised rule=", a.rule(), " severity=", severity, " device=", device,
                " point=", a.point(), " value=", a.value(), " threshold=", a.threshold());
    } else {
      log::notice("alarm", "cleared rule=", a.rule(), " severity=", severity, " device=", device,
                  " point=", a.point(), " value=", a.value(), " threshold=", a.threshold());
    }
    std::string key = t.state_key;
    item["seq"] = router_.submit_with_state(std::move(t.event), std::move(t.state_key),
                                            std::move(t.state_value));
    recent_.push_front({std::move(item), std::move(key), false});
    if (recent_.size() > kRecent) recent_.pop_back();
  }
}

void AlarmMonitor::on_committed(std::span<const storage::BufferedEvent> group) {
  for (const storage::BufferedEvent& e : group) {
    if (e.state_key.empty()) continue;
    // One key's transitions commit in the order they were submitted: the oldest pending one.
    for (auto it = recent_.rbegin(); it != recent_.rend(); ++it) {
      if (it->committed || it->state_key != e.state_key) continue;
      it->item["seq"] = e.seq;
      it->committed = true;
      break;
    }
  }
}

Json AlarmMonitor::to_json() const {
  Json active = Json::array();
  if (engine_) {
    for (const ActiveAlarm& a : engine_->active()) {
      active.push_back(Json{{"rule", a.rule},
                            {"severity", a.severity},
                            {"device", a.device},
                            {"subject", a.subject},
                            {"point", a.point},
                            {"value", a.value},
                            {"threshold", a.threshold},
                            {"raised_at_us", a.raised_us},
                            {"since_us", a.since_us}});
    }
  }
  Json recent = Json::array();
  for (const Recent& r : recent_) recent.push_back(r.item);
  return Json{
      {"rules", engine_ ? engine_->rules().size() : 0}, {"active", active}, {"recent", recent}};
}

void AlarmMonitor::collect(metrics::Registry& registry) {
  if (!engine_) return;
  std::map<metrics::Labels, int> counts;
  for (const config::AlarmSection& r : engine_->rules()) {
    counts[{{"rule", r.name}, {"severity", r.severity}}] = 0;
  }
  for (const ActiveAlarm& a : engine_->active())
    ++counts[{{"rule", a.rule}, {"severity", a.severity}}];
  // Rules gone after a reload disappear from the scrape instead of reading 0 forever.
  for (const metrics::Labels& l : exported_) {
    if (!counts.count(l)) registry.remove("gateway_alarms_active", l);
  }
  exported_.clear();
  for (const auto& [labels, n] : counts) {
    registry.gauge("gateway_alarms_active", "Alarms active now, by rule and severity.", labels)
        .set(double(n));
    exported_.push_back(labels);
  }
}

}  // namespace gw
