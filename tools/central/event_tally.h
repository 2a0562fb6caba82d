// EventTally is the central side's ledger of what arrived: per gateway, which seqs, how often, in
// which order and of which class. Integration tests read its report as the oracle for "nothing
// lost" (CONTRACT.md, "Delivery promises"): (gateway_id, seq) is the event id, so a seq seen twice
// is a duplicate and a seq never seen between the first and the last is a gap. Does no I/O.
// Not thread-safe; the subscriber guards it with one mutex.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "campus/gateway/v1/gateway.pb.h"
#include "tools/central/seq_set.h"

namespace gw::central {

class EventTally {
 public:
  // How many missing seq ranges the report lists per gateway; `gaps` still counts all of them.
  static constexpr std::size_t kMaxMissingRanges = 20;

  // Makes the gateway appear in the report even before (or without) any event from it, so a
  // test reads "received": 0 rather than a missing key.
  void expect_gateway(const std::string& gateway_id);
  bool knows_gateway(const std::string& gateway_id) const;

  void count_message() { ++messages_; }
  void count_decode_error() { ++decode_errors_; }
  void count_connect() { ++connects_; }

  // Records one event of gateway_id. Returns false when (gateway_id, seq) was already recorded.
  bool record(const std::string& gateway_id, const campus::gateway::v1::Event& event);
  void record_state(const std::string& gateway_id, const campus::gateway::v1::GatewayState& state);

  uint64_t messages() const { return messages_; }
  uint64_t decode_errors() const { return decode_errors_; }

  // The report as one line of JSON, no trailing newline:
  //   {"messages":M,"decode_errors":E,"connects":C,"gateways":{"<id>":{"received":R,
  //    "distinct":D,"duplicates":R-D,"gaps":G,"first_seq":F,"last_seq":L,
  //    "missing_ranges":[[a,b],...],"by_class":{"access":..,"alarm":..,"status":..,
  //    "telemetry":..},"historical":H,"out_of_order":O,"online":true|false|null}}}
  // first_seq/last_seq are null while no event arrived; gaps = L - F + 1 - D.
  std::string report_json() const;

 private:
  struct Gateway {
    uint64_t received = 0;  // every event, duplicates included
    SeqSet seqs;
    std::map<std::string, uint64_t, std::less<>> by_class;  // distinct events per class name
    uint64_t historical = 0;                                // distinct events with historical=true
    uint64_t out_of_order = 0;
    // Highest seq so far per (device_id, class): the contract orders seqs only within one
    // device and one class, so that is the only order we can hold the gateway to.
    std::unordered_map<std::string, uint64_t> max_seq_by_stream;
    std::optional<bool> online;  // from the last GatewayState, if any
  };

  Gateway& gateway(const std::string& gateway_id);

  std::map<std::string, Gateway> gateways_;
  uint64_t messages_ = 0;
  uint64_t decode_errors_ = 0;
  uint64_t connects_ = 0;
};

}  // namespace gw::central
