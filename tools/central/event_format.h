// What the central subscriber makes of one MQTT message: which contract topic it arrived on, the
// strict decoding of its payload, and the line printed for it (JSON for tests, text for humans).
// Pure functions, no I/O; any thread.
#pragma once

#include <string>
#include <string_view>

#include "campus/gateway/v1/gateway.pb.h"
#include "protocols/status.h"

namespace gw::central {

enum class TopicKind { kEvents, kState, kHealth, kOther };

// {prefix}/{site}/{building}/{gateway_id}/events/{class}, .../state, .../health (CONTRACT.md,
// "MQTT"). The prefix may itself contain '/', so the kind is read from the end of the topic.
struct TopicInfo {
  TopicKind kind = TopicKind::kOther;
  std::string gateway_id;  // the segment before "events", "state" or "health"
};
TopicInfo classify_topic(std::string_view topic);

// Strict: besides bytes that do not parse, a batch with no events (the contract promises one or
// more) or with fields this schema does not know (a mismatched schema, or garbage that happens to
// parse as unknown fields) is rejected, because the subscriber is a test oracle.
Status decode_event_batch(std::string_view payload, campus::gateway::v1::EventBatch* batch);
Status decode_state(std::string_view payload, campus::gateway::v1::GatewayState* state);
Status decode_health(std::string_view payload, campus::gateway::v1::GatewayHealth* health);

// Output lines, without the trailing newline. Raw card ids are replaced by "[redacted]" unless
// show_credentials (CONTRACT.md: card ids never appear raw in CLI output unless asked for);
// HMAC'd ids ("h:...") are shown as they are.
//   {"gateway_id":"gw","topic":"...","event":{protobuf JSON, proto field names, all fields}}
std::string event_json_line(std::string_view gateway_id, std::string_view topic,
                            const campus::gateway::v1::Event& event, bool show_credentials);
//   gw seq=12 meter-b1-01 telemetry energy_total=1234.56 kWh voltage=230.1 V
std::string event_text_line(std::string_view gateway_id, const campus::gateway::v1::Event& event,
                            bool show_credentials);
//   {"gateway_id":"gw","topic":"...","state":{...}} / gw state online boot=... version=...
std::string state_json_line(std::string_view gateway_id, std::string_view topic,
                            const campus::gateway::v1::GatewayState& state);
std::string state_text_line(std::string_view gateway_id,
                            const campus::gateway::v1::GatewayState& state);
//   {"gateway_id":"gw","topic":"...","health":{...}} / gw health uptime=...s ...
std::string health_json_line(std::string_view gateway_id, std::string_view topic,
                             const campus::gateway::v1::GatewayHealth& health);
std::string health_text_line(std::string_view gateway_id,
                             const campus::gateway::v1::GatewayHealth& health);

}  // namespace gw::central
