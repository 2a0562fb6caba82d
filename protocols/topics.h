// MQTT topic names of the contract: {prefix}/{site}/{building}/{gateway_id}/events/{class},
// .../state and .../health. Pure functions.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "campus/gateway/v1/gateway.pb.h"

namespace gw::protocols {

struct TopicRoot {
  std::string prefix = "campus";
  std::string site;
  std::string building;
  std::string gateway_id;
};

std::string events_topic(const TopicRoot& root, campus::gateway::v1::EventClass event_class);
std::string state_topic(const TopicRoot& root);
std::string health_topic(const TopicRoot& root);

// "access", "alarm", "telemetry", "status" (lowercase, as in topics and config).
std::string_view class_name(campus::gateway::v1::EventClass event_class);
std::optional<campus::gateway::v1::EventClass> parse_class_name(std::string_view name);

}  // namespace gw::protocols
