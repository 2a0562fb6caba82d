#include "protocols/topics.h"

namespace gw::protocols {

namespace v1 = campus::gateway::v1;

namespace {
std::string base(const TopicRoot& r) {
  return r.prefix + "/" + r.site + "/" + r.building + "/" + r.gateway_id;
}
}  // namespace

std::string events_topic(const TopicRoot& root, v1::EventClass event_class) {
  return base(root) + "/events/" + std::string(class_name(event_class));
}
std::string state_topic(const TopicRoot& root) { return base(root) + "/state"; }
std::string health_topic(const TopicRoot& root) { return base(root) + "/health"; }

std::string_view class_name(v1::EventClass event_class) {
  switch (event_class) {
    case v1::ACCESS: return "access";
    case v1::ALARM: return "alarm";
    case v1::TELEMETRY: return "telemetry";
    case v1::STATUS: return "status";
    default: return "unspecified";
  }
}

std::optional<v1::EventClass> parse_class_name(std::string_view name) {
  for (auto c : {v1::ACCESS, v1::ALARM, v1::TELEMETRY, v1::STATUS}) {
    if (class_name(c) == name) return c;
  }
  return std::nullopt;
}

}  // namespace gw::protocols
