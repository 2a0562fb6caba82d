// `gatewayctl probe`: one Modbus read without a daemon, for commissioning. The argument parsing
// and the output are pure (tested); run_probe() does the blocking libmodbus I/O. Every count is
// bounded by the protocol's limits (125 registers, 2000 bits, the 65,536-entry address space)
// before libmodbus sees it. Values are decoded with gw::protocols::decode_registers, so what probe
// shows is what a point with the same settings reports.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "protocols/register_map.h"
#include "protocols/status.h"
#include "tools/gatewayctl/args.h"
#include "tools/gatewayctl/format.h"
#include "tools/gatewayctl/json_util.h"

namespace gw::ctl {

struct ProbeTarget {
  enum class Kind { kTcp, kRtu };
  Kind kind = Kind::kTcp;
  std::string host;  // kTcp
  int port = 502;
  std::string device;  // kRtu: /dev/ttyUSB0
  int baud = 9600;
  char parity = 'N';  // N, E, O
  int data_bits = 8;
  int stop_bits = 1;
  // Canonical form: "tcp://10.0.3.21:502", "rtu:/dev/ttyUSB0:9600:8N1".
  std::string text() const;
};

// tcp://HOST[:PORT] (IPv6 as [::1]), rtu:DEVICE[:BAUD[:FRAME]] with FRAME like 8N1, 8E1, 7O2.
Result<ProbeTarget> parse_probe_target(std::string_view text);

struct ProbeRequest {
  ProbeTarget target;
  int unit = 1;
  protocols::RegisterTable table = protocols::RegisterTable::kHolding;
  uint16_t address = 0;
  int count = 1;
  std::optional<protocols::ValueType> type;
  protocols::WordOrder word_order = protocols::WordOrder::kBig;
  double scale = 1.0;
  double offset = 0.0;
  int timeout_ms = 1000;
  bool debug = false;
};

// From a parsed `probe` invocation; messages name the offending option and its limits.
Result<ProbeRequest> parse_probe_request(const Invocation& inv);

struct ProbeResult {
  std::vector<uint16_t> registers;  // holding / input
  std::vector<uint8_t> bits;        // coil / discrete
  double latency_ms = 0;
};

// How a failed probe ended: the device could not be reached or did not answer (exit 69), or it
// answered with a Modbus exception or a bad frame (exit 1).
struct ProbeFailure {
  bool unreachable = false;
  std::string message;
};

// Blocking: connects, reads once, closes.
Result<ProbeResult> run_probe(const ProbeRequest& request, ProbeFailure* failure);

// A Modbus exception code (1..11) in words, with what it usually means at commissioning time.
std::string modbus_exception_text(int code, const ProbeRequest& request);

std::string format_probe(const ProbeRequest& request, const ProbeResult& result,
                         const Style& style);
Json probe_json(const ProbeRequest& request, const ProbeResult& result);

}  // namespace gw::ctl
