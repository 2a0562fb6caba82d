#include "tools/central/event_format.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cctype>
#include <vector>

#include "protocols/topics.h"
#include "tools/central/json_text.h"

namespace gw::central {

namespace v1 = campus::gateway::v1;
namespace pb = google::protobuf;

namespace {

constexpr std::string_view kRedacted = "[redacted]";

std::vector<std::string_view> split_topic(std::string_view topic) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  for (;;) {
    const std::size_t slash = topic.find('/', start);
    parts.push_back(topic.substr(start, slash - start));
    if (slash == std::string_view::npos) return parts;
    start = slash + 1;
  }
}

// Reflection walk, so a field added to any nested message later is covered without edits here.
bool has_unknown_fields(const pb::Message& m) {
  const pb::Reflection* r = m.GetReflection();
  if (!r->GetUnknownFields(m).empty()) return true;
  std::vector<const pb::FieldDescriptor*> fields;
  r->ListFields(m, &fields);
  for (const pb::FieldDescriptor* f : fields) {
    if (f->cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE) continue;
    if (f->is_repeated()) {
      for (int i = 0; i < r->FieldSize(m, f); ++i) {
        if (has_unknown_fields(r->GetRepeatedMessage(m, f, i))) return true;
      }
    } else if (has_unknown_fields(r->GetMessage(m, f))) {
      return true;
    }
  }
  return false;
}

Status parse_strict(std::string_view payload, pb::Message* m) {
  if (payload.size() > static_cast<std::size_t>(INT32_MAX) ||
      !m->ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return Status::corrupt("not a " + m->GetTypeName() + " (" + std::to_string(payload.size()) +
                           " bytes)");
  }
  if (has_unknown_fields(*m)) {
    return Status::corrupt(m->GetTypeName() + " carries fields unknown to this schema (" +
                           std::to_string(payload.size()) + " bytes)");
  }
  return Status::ok();
}

std::string to_json(const pb::Message& m) {
  pb::util::JsonPrintOptions opts;
  opts.preserve_proto_field_names = true;
  opts.always_print_primitive_fields = true;
  std::string out;
  if (!pb::util::MessageToJsonString(m, &out, opts).ok()) return "null";
  return out;
}

std::string wrap_json(std::string_view gateway_id, std::string_view topic, std::string_view key,
                      const pb::Message& m) {
  std::string out = "{\"gateway_id\":";
  append_json_string(out, gateway_id);
  out += ",\"topic\":";
  append_json_string(out, topic);
  out += ",\"";
  out += key;
  out += "\":";
  out += to_json(m);
  out += "}";
  return out;
}

bool credential_is_raw(const v1::Event& event) {
  return event.has_access() && !event.access().credential().empty() &&
         !event.access().credential().starts_with("h:");
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

void append_body_text(std::string& out, const v1::Event& e, bool show_credentials) {
  switch (e.body_case()) {
    case v1::Event::kMeter:
      for (const v1::MeterValue& v : e.meter().values()) {
        out += " " + v.name() + "=" + format_reading(v.value());
        if (!v.unit().empty()) out += " " + v.unit();
        if (v.quality() == v1::BAD) out += " (bad)";
      }
      break;
    case v1::Event::kAccess: {
      const v1::AccessBody& a = e.access();
      out += " card=";
      out += (show_credentials || !credential_is_raw(e)) ? a.credential() : std::string(kRedacted);
      out += " " + lower(v1::Direction_Name(a.direction()));
      out += " " + lower(v1::AccessResult_Name(a.result()));
      if (!a.door().empty()) out += " door=" + a.door();
      if (!a.reason().empty()) out += " reason=" + a.reason();
      break;
    }
    case v1::Event::kCamera: {
      const v1::CameraBody& c = e.camera();
      out += " " + c.type() + (c.active() ? " active" : " inactive");
      out += " ch=" + std::to_string(c.channel());
      if (!c.detail().empty()) out += " " + c.detail();
      break;
    }
    case v1::Event::kStatus:
      out += e.status().online() ? " online" : " offline";
      if (!e.status().error().empty()) out += ": " + e.status().error();
      break;
    case v1::Event::kAlarm: {
      const v1::AlarmBody& a = e.alarm();
      out += " " + a.rule() + " " + lower(v1::Severity_Name(a.severity()));
      out += a.active() ? " raised" : " cleared";
      if (!a.point().empty()) out += " " + a.point() + "=" + format_reading(a.value());
      out += " threshold=" + format_reading(a.threshold());
      break;
    }
    case v1::Event::kGap: {
      const v1::GapBody& g = e.gap();
      out += " gap " + std::string(protocols::class_name(g.event_class()));
      out += " seq " + std::to_string(g.first_seq()) + ".." + std::to_string(g.last_seq());
      out += " count=" + std::to_string(g.count());
      if (!g.reason().empty()) out += " reason=" + g.reason();
      break;
    }
    case v1::Event::BODY_NOT_SET:
      out += " (no body)";
      break;
  }
}

}  // namespace

TopicInfo classify_topic(std::string_view topic) {
  const std::vector<std::string_view> parts = split_topic(topic);
  const std::size_t n = parts.size();
  if (n >= 2 && parts[n - 1] == "state") return {TopicKind::kState, std::string(parts[n - 2])};
  if (n >= 2 && parts[n - 1] == "health") return {TopicKind::kHealth, std::string(parts[n - 2])};
  // events/# may be deeper than events/{class}; the gateway id precedes the last "events".
  for (std::size_t i = n; i-- > 1;) {
    if (parts[i] == "events" && i + 1 < n) return {TopicKind::kEvents, std::string(parts[i - 1])};
  }
  return {};
}

Status decode_event_batch(std::string_view payload, v1::EventBatch* batch) {
  if (Status s = parse_strict(payload, batch); !s) return s;
  if (batch->events_size() == 0) return Status::corrupt("EventBatch holds no events");
  return Status::ok();
}

Status decode_state(std::string_view payload, v1::GatewayState* state) {
  return parse_strict(payload, state);
}

Status decode_health(std::string_view payload, v1::GatewayHealth* health) {
  return parse_strict(payload, health);
}

std::string event_json_line(std::string_view gateway_id, std::string_view topic,
                            const v1::Event& event, bool show_credentials) {
  if (show_credentials || !credential_is_raw(event)) {
    return wrap_json(gateway_id, topic, "event", event);
  }
  v1::Event redacted = event;
  redacted.mutable_access()->set_credential(std::string(kRedacted));
  return wrap_json(gateway_id, topic, "event", redacted);
}

std::string event_text_line(std::string_view gateway_id, const v1::Event& event,
                            bool show_credentials) {
  std::string out(gateway_id);
  out += " seq=" + std::to_string(event.seq()) + " " + event.device_id() + " ";
  out += protocols::class_name(event.event_class());
  if (event.historical()) out += " [historical]";
  append_body_text(out, event, show_credentials);
  return out;
}

std::string state_json_line(std::string_view gateway_id, std::string_view topic,
                            const v1::GatewayState& state) {
  return wrap_json(gateway_id, topic, "state", state);
}

std::string state_text_line(std::string_view gateway_id, const v1::GatewayState& state) {
  std::string out(gateway_id);
  out += state.online() ? " state online" : " state offline";
  if (!state.boot_id().empty()) out += " boot=" + state.boot_id();
  if (!state.version().empty()) out += " version=" + state.version();
  return out;
}

std::string health_json_line(std::string_view gateway_id, std::string_view topic,
                             const v1::GatewayHealth& health) {
  return wrap_json(gateway_id, topic, "health", health);
}

std::string health_text_line(std::string_view gateway_id, const v1::GatewayHealth& health) {
  std::string out(gateway_id);
  out += " health uptime=" + std::to_string(health.uptime_s()) + "s";
  out += " devices online=" + std::to_string(health.devices_online());
  out += " offline=" + std::to_string(health.devices_offline());
  for (const v1::ClassHealth& c : health.buffer()) {
    out += " ";
    out += protocols::class_name(c.event_class());
    out += ":pending=" + std::to_string(c.pending()) +
           ",oldest=" + std::to_string(c.oldest_age_s()) +
           "s,dropped=" + std::to_string(c.dropped());
  }
  return out;
}

}  // namespace gw::central
