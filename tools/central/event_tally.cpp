#include "tools/central/event_tally.h"

#include <string_view>

#include "protocols/topics.h"
#include "tools/central/json_text.h"

namespace gw::central {

namespace v1 = campus::gateway::v1;

EventTally::Gateway& EventTally::gateway(const std::string& gateway_id) {
  auto [it, created] = gateways_.try_emplace(gateway_id);
  if (created) {
    // Every contract class is listed, so a test can read by_class["access"] == 0.
    for (auto c : {v1::ACCESS, v1::ALARM, v1::TELEMETRY, v1::STATUS}) {
      it->second.by_class.emplace(protocols::class_name(c), 0);
    }
  }
  return it->second;
}

void EventTally::expect_gateway(const std::string& gateway_id) { gateway(gateway_id); }

bool EventTally::knows_gateway(const std::string& gateway_id) const {
  return gateways_.contains(gateway_id);
}

bool EventTally::record(const std::string& gateway_id, const v1::Event& event) {
  Gateway& gw = gateway(gateway_id);
  ++gw.received;
  if (!gw.seqs.insert(event.seq())) return false;

  ++gw.by_class[std::string(protocols::class_name(event.event_class()))];
  if (event.historical()) ++gw.historical;

  std::string stream = event.device_id();
  stream.push_back('\0');
  stream += std::to_string(static_cast<int>(event.event_class()));
  auto [it, first] = gw.max_seq_by_stream.try_emplace(std::move(stream), event.seq());
  if (!first) {
    if (event.seq() < it->second) {
      ++gw.out_of_order;
    } else {
      it->second = event.seq();
    }
  }
  return true;
}

void EventTally::record_state(const std::string& gateway_id, const v1::GatewayState& state) {
  gateway(gateway_id).online = state.online();
}

std::string EventTally::report_json() const {
  std::string out;
  out.reserve(256 + gateways_.size() * 512);
  out += "{\"messages\":" + std::to_string(messages_);
  out += ",\"decode_errors\":" + std::to_string(decode_errors_);
  out += ",\"connects\":" + std::to_string(connects_);
  out += ",\"gateways\":{";
  bool first_gw = true;
  for (const auto& [id, gw] : gateways_) {
    if (!first_gw) out.push_back(',');
    first_gw = false;
    append_json_string(out, id);
    const uint64_t distinct = gw.seqs.size();
    out += ":{\"received\":" + std::to_string(gw.received);
    out += ",\"distinct\":" + std::to_string(distinct);
    out += ",\"duplicates\":" + std::to_string(gw.received - distinct);
    if (gw.seqs.empty()) {
      out += ",\"gaps\":0,\"first_seq\":null,\"last_seq\":null,\"missing_ranges\":[]";
    } else {
      const uint64_t lo = gw.seqs.min();
      const uint64_t hi = gw.seqs.max();
      out += ",\"gaps\":" + std::to_string(hi - lo + 1 - distinct);
      out += ",\"first_seq\":" + std::to_string(lo);
      out += ",\"last_seq\":" + std::to_string(hi);
      out += ",\"missing_ranges\":[";
      bool first_range = true;
      for (const SeqRange& r : gw.seqs.missing_ranges(lo, hi, kMaxMissingRanges)) {
        if (!first_range) out.push_back(',');
        first_range = false;
        out += "[" + std::to_string(r.first) + "," + std::to_string(r.last) + "]";
      }
      out += "]";
    }
    out += ",\"by_class\":{";
    bool first_class = true;
    for (const auto& [name, count] : gw.by_class) {
      if (!first_class) out.push_back(',');
      first_class = false;
      append_json_string(out, name);
      out += ":" + std::to_string(count);
    }
    out += "},\"historical\":" + std::to_string(gw.historical);
    out += ",\"out_of_order\":" + std::to_string(gw.out_of_order);
    out += ",\"online\":";
    out += gw.online ? (*gw.online ? "true" : "false") : "null";
    out += "}";
  }
  out += "}}";
  return out;
}

}  // namespace gw::central
