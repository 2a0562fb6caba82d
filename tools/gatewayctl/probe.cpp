#include "tools/gatewayctl/probe.h"

#include "protocols/modbus_rtu.h"

#include <modbus/modbus.h>
#include <netdb.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>

#include "gateway/config.h"
#include "protocols/modbus_read_plan.h"
#include "tools/central/json_text.h"

namespace gw::ctl {

namespace {

using protocols::RegisterTable;
using protocols::ValueType;

std::optional<long> parse_integer(std::string_view text) {
  if (text.empty()) return std::nullopt;
  int base = 10;
  if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
    base = 16;
    text.remove_prefix(2);
  }
  long v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v, base);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return v;
}

std::optional<double> parse_number(const std::string& text) {
  if (text.empty()) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(text.c_str(), &end);
  if (errno != 0 || end != text.c_str() + text.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}


std::string range_text(const ProbeRequest& r) {
  return std::string(protocols::to_string(r.table)) + " " + std::to_string(r.address) + ".." +
         std::to_string(r.address + r.count - 1);
}

std::string seconds_text(int ms) {
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

struct ModbusContext {
  modbus_t* ctx = nullptr;
  bool connected = false;
  ~ModbusContext() {
    if (ctx) {
      if (connected) modbus_close(ctx);
      modbus_free(ctx);
    }
  }
};

std::string hex4(uint16_t v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%04x", v);
  return buf;
}

// The decoded value starting at register/bit index i, when --type is given.
struct Decoded {
  std::size_t index = 0;
  uint16_t address = 0;
  bool ok = false;
  double value = 0;
  std::string error;
};

std::vector<Decoded> decode_all(const ProbeRequest& r, const ProbeResult& result) {
  std::vector<Decoded> out;
  if (!r.type) return out;
  const int width = protocols::width_of(*r.type);
  protocols::PointSpec spec;
  spec.table = r.table;
  spec.type = *r.type;
  spec.word_order = r.word_order;
  spec.scale = r.scale;
  spec.offset = r.offset;
  if (protocols::is_bit_table(r.table)) {
    for (std::size_t i = 0; i < result.bits.size(); ++i) {
      spec.address = static_cast<uint16_t>(r.address + i);
      out.push_back({i, spec.address, true, protocols::decode_bit(spec, result.bits[i] != 0), {}});
    }
    return out;
  }
  for (std::size_t i = 0; i + static_cast<std::size_t>(width) <= result.registers.size();
       i += static_cast<std::size_t>(width)) {
    spec.address = static_cast<uint16_t>(r.address + i);
    Result<double> v = protocols::decode_registers(
        spec,
        std::span<const uint16_t>(result.registers.data() + i, static_cast<std::size_t>(width)));
    Decoded d{i, spec.address, v.is_ok(), v.is_ok() ? *v : 0.0, {}};
    if (!v) {
      // "point '' holds NaN" -> "NaN (not a reading)": the point has no name here.
      const std::string m = v.status().message();
      const std::size_t holds = m.find("holds ");
      d.error = holds == std::string::npos ? m : m.substr(holds + 6) + " (not a reading)";
    }
    out.push_back(std::move(d));
  }
  return out;
}

// A float32 carries about 7 significant digits: 231.48, not 231.4799957.
std::string value_text(const ProbeRequest& r, double v) {
  if (r.type != ValueType::kFloat32) return central::format_reading(v);
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::general, 7);
  return ec == std::errc() ? std::string(buf, end) : central::format_reading(v);
}

}  // namespace

std::string ProbeTarget::text() const {
  if (kind == Kind::kTcp) {
    const bool v6 = host.find(':') != std::string::npos;
    return "tcp://" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
  }
  return "rtu:" + device + ":" + std::to_string(baud) + ":" + std::to_string(data_bits) + parity +
         std::to_string(stop_bits);
}

Result<ProbeTarget> parse_probe_target(std::string_view text) {
  ProbeTarget t;
  const std::string shown(text);
  if (text.starts_with("tcp://")) {
    std::string_view rest = text.substr(6);
    while (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
    std::string_view host = rest, port;
    if (rest.starts_with("[")) {
      const std::size_t close = rest.find(']');
      if (close == std::string_view::npos) {
        return Status::invalid("probe: target '" + shown + "': missing ']' after the IPv6 address");
      }
      host = rest.substr(1, close - 1);
      std::string_view after = rest.substr(close + 1);
      if (!after.empty()) {
        if (after[0] != ':')
          return Status::invalid("probe: target '" + shown + "': expected :PORT after ']'");
        port = after.substr(1);
      }
    } else if (const std::size_t colon = rest.rfind(':'); colon != std::string_view::npos) {
      if (rest.find(':') != colon) {
        return Status::invalid("probe: target '" + shown +
                               "': write an IPv6 address in brackets, e.g. tcp://[fe80::1]:502");
      }
      host = rest.substr(0, colon);
      port = rest.substr(colon + 1);
    }
    if (host.empty())
      return Status::invalid("probe: target '" + shown + "' has no host (tcp://HOST:PORT)");
    t.host = std::string(host);
    if (!port.empty()) {
      auto p = parse_integer(port);
      if (!p || *p < 1 || *p > 65535) {
        return Status::invalid("probe: target '" + shown + "': port must be 1..65535 (got '" +
                               std::string(port) + "')");
      }
      t.port = static_cast<int>(*p);
    }
    return t;
  }
  if (text.starts_with("rtu:")) {
    t.kind = ProbeTarget::Kind::kRtu;
    std::string_view rest = text.substr(4);
    if (rest.starts_with("//")) rest.remove_prefix(2);
    std::vector<std::string_view> parts;
    for (;;) {
      const std::size_t colon = rest.find(':');
      parts.push_back(rest.substr(0, colon));
      if (colon == std::string_view::npos) break;
      rest.remove_prefix(colon + 1);
    }
    if (parts[0].empty()) {
      return Status::invalid("probe: target '" + shown + "' has no serial port (rtu:/dev/ttyUSB0)");
    }
    if (parts.size() > 3) {
      return Status::invalid(
          "probe: target '" + shown +
          "': expected rtu:DEVICE[:BAUD[:FRAME]], e.g. rtu:/dev/ttyUSB0:9600:8N1");
    }
    t.device = std::string(parts[0]);
    if (parts.size() >= 2 && !parts[1].empty()) {
      auto b = parse_integer(parts[1]);
      if (!b || *b < 50 || *b > 4000000) {
        return Status::invalid("probe: target '" + shown +
                               "': baud rate must be a number like 9600 (got '" +
                               std::string(parts[1]) + "')");
      }
      t.baud = static_cast<int>(*b);
    }
    if (parts.size() == 3 && !parts[2].empty()) {
      const std::string_view f = parts[2];
      const char parity =
          f.size() == 3 ? static_cast<char>(std::toupper(static_cast<unsigned char>(f[1]))) : '?';
      if (f.size() != 3 || f[0] < '5' || f[0] > '8' ||
          (parity != 'N' && parity != 'E' && parity != 'O') || (f[2] != '1' && f[2] != '2')) {
        return Status::invalid(
            "probe: target '" + shown +
            "': frame must be data bits (5-8), parity (N, E or O) and stop bits (1 or 2), "
            "e.g. 8N1 or 8E1 (got '" +
            std::string(f) + "')");
      }
      t.data_bits = f[0] - '0';
      t.parity = parity;
      t.stop_bits = f[2] - '0';
    }
    return t;
  }
  return Status::invalid("probe: target '" + shown +
                         "' must be tcp://HOST[:PORT] or rtu:DEVICE[:BAUD[:FRAME]] "
                         "(e.g. tcp://10.0.3.21:502, rtu:/dev/ttyUSB0:9600:8N1)");
}

Result<ProbeRequest> parse_probe_request(const Invocation& inv) {
  ProbeRequest r;
  Result<ProbeTarget> target = parse_probe_target(inv.args.at(0));
  if (!target) return target.status();
  r.target = *target;
  const bool rtu = r.target.kind == ProbeTarget::Kind::kRtu;

  if (auto v = inv.get("--unit")) {
    auto n = parse_integer(*v);
    const long max = rtu ? 247 : 255;
    if (!n || *n < 0 || *n > max) {
      return Status::invalid("probe: --unit must be 0.." + std::to_string(max) +
                             (rtu ? " on a serial line" : std::string(" (255 for TCP gateways)")) +
                             " (got '" + *v + "')");
    }
    if (rtu && *n == 0) {
      return Status::invalid(
          "probe: --unit 0 is the RTU broadcast address; no device answers a read sent to it");
    }
    r.unit = static_cast<int>(*n);
  }
  if (auto v = inv.get("--table")) {
    auto t = protocols::parse_register_table(*v);
    if (!t)
      return Status::invalid("probe: --table must be holding, input, coil or discrete (got '" + *v +
                             "')");
    r.table = *t;
  }
  if (auto v = inv.get("--type")) {
    auto t = protocols::parse_value_type(*v);
    if (!t) {
      return Status::invalid(
          "probe: --type must be int16, uint16, int32, uint32, int64, uint64, "
          "float32, float64 or bool (got '" +
          *v + "')");
    }
    r.type = *t;
  }
  if (auto v = inv.get("--word-order")) {
    auto o = protocols::parse_word_order(*v);
    if (!o) return Status::invalid("probe: --word-order must be big or little (got '" + *v + "')");
    r.word_order = *o;
  }
  if (auto v = inv.get("--scale")) {
    auto x = parse_number(*v);
    if (!x) return Status::invalid("probe: --scale must be a number like 0.01 (got '" + *v + "')");
    r.scale = *x;
  }
  if (auto v = inv.get("--offset")) {
    auto x = parse_number(*v);
    if (!x) return Status::invalid("probe: --offset must be a number (got '" + *v + "')");
    r.offset = *x;
  }
  if (auto v = inv.get("--address")) {
    auto n = parse_integer(*v);
    if (!n || *n < 0 || *n > 65535) {
      return Status::invalid("probe: --address must be 0..65535, decimal or 0x hex (got '" + *v +
                             "')");
    }
    r.address = static_cast<uint16_t>(*n);
  }
  const bool bits = protocols::is_bit_table(r.table);
  const int width = r.type ? protocols::width_of(*r.type) : 1;
  const int limit = bits ? protocols::kMaxBitsPerRead : protocols::kMaxRegistersPerRead;
  r.count = width;
  if (auto v = inv.get("--count")) {
    auto n = parse_integer(*v);
    if (!n || *n < 1 || *n > limit) {
      return Status::invalid("probe: --count must be 1.." + std::to_string(limit) + " for the " +
                             std::string(protocols::to_string(r.table)) + " table (got '" + *v +
                             "')");
    }
    r.count = static_cast<int>(*n);
  }
  if (r.type) {
    protocols::PointSpec spec;
    spec.table = r.table;
    spec.type = *r.type;
    spec.address = r.address;
    if (Status s = protocols::validate_point(spec); !s) {
      return Status::invalid("probe: --type " + std::string(protocols::to_string(*r.type)) + ": " +
                             s.message());
    }
    if (r.count % width != 0) {
      return Status::invalid("probe: --count " + std::to_string(r.count) +
                             " is not a whole number of " +
                             std::string(protocols::to_string(*r.type)) + " values (" +
                             std::to_string(width) + " registers each)");
    }
  } else if (inv.has("--word-order") || inv.has("--scale") || inv.has("--offset")) {
    return Status::invalid("probe: --word-order, --scale and --offset need --type");
  }
  if (static_cast<long>(r.address) + r.count > 65536) {
    return Status::invalid("probe: --address " + std::to_string(r.address) + " with --count " +
                           std::to_string(r.count) + " runs past the last address (65535)");
  }
  if (auto v = inv.get("--timeout")) {
    auto d = config::parse_duration(*v);
    if (!d || d->count() < 1 || d->count() > 60000) {
      return Status::invalid(
          "probe: --timeout must be a duration from 1ms to 60s, like 500ms or 2s (got '" + *v +
          "')");
    }
    r.timeout_ms = static_cast<int>(d->count());
  }
  r.debug = inv.has("--debug");
  return r;
}

std::string modbus_exception_text(int code, const ProbeRequest& r) {
  const std::string unit = "unit " + std::to_string(r.unit);
  const std::string prefix = "Modbus exception " + std::to_string(code) + " ";
  switch (code) {
    case 1:
      return prefix + "(illegal function): " + unit + " does not serve the " +
             std::string(protocols::to_string(r.table)) + " table (function " +
             std::to_string(gw::protocols::modbus_rtu::read_function(r.table)) + "); try another --table (holding or input)";
    case 2:
      return prefix + "(illegal data address): " + unit + " has no " + range_text(r) +
             "; check --address and --count (addresses are zero-based: a manual's 40001 is "
             "--address 0)";
    case 3:
      return prefix + "(illegal data value): " + unit +
             " rejected the request; some devices "
             "allow fewer registers per read or only whole values: try a smaller --count";
    case 4:
      return prefix + "(server device failure): " + unit + " failed while answering";
    case 5:
      return prefix + "(acknowledge): " + unit + " needs longer to answer; try again later";
    case 6:
      return prefix + "(server device busy): " + unit + " is busy; try again";
    case 8:
      return prefix + "(memory parity error) in " + unit;
    case 10:
      return prefix + "(gateway path unavailable): the Modbus gateway at " + r.target.text() +
             " has no path to " + unit + "; check the unit id";
    case 11:
      return prefix + "(gateway target device failed to respond): the Modbus gateway at " +
             r.target.text() + " got no answer from " + unit + " behind it";
    default:
      return prefix + "from " + unit;
  }
}

Result<ProbeResult> run_probe(const ProbeRequest& r, ProbeFailure* failure) {
  auto fail = [&](bool unreachable, const std::string& message) -> Status {
    if (failure) *failure = {unreachable, message};
    return unreachable ? Status::unavailable(message) : Status::protocol(message);
  };
  const std::string where = r.target.text();
  ModbusContext m;
  if (r.target.kind == ProbeTarget::Kind::kTcp) {
    // libmodbus reports an unknown host as "connection refused"; say what it is.
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    const int gai =
        getaddrinfo(r.target.host.c_str(), std::to_string(r.target.port).c_str(), &hints, &found);
    if (gai != 0) {
      return fail(true, "cannot resolve '" + r.target.host + "': " + gai_strerror(gai));
    }
    freeaddrinfo(found);
    m.ctx = modbus_new_tcp_pi(r.target.host.c_str(), std::to_string(r.target.port).c_str());
  } else {
    m.ctx = modbus_new_rtu(r.target.device.c_str(), r.target.baud, r.target.parity,
                           r.target.data_bits, r.target.stop_bits);
  }
  if (!m.ctx) return fail(false, "cannot use " + where + ": " + modbus_strerror(errno));
  if (modbus_set_slave(m.ctx, r.unit) != 0) {
    return fail(false,
                "unit " + std::to_string(r.unit) + " is not valid here: " + modbus_strerror(errno));
  }
  modbus_set_response_timeout(m.ctx, static_cast<uint32_t>(r.timeout_ms / 1000),
                              static_cast<uint32_t>((r.timeout_ms % 1000) * 1000));
  if (r.debug) modbus_set_debug(m.ctx, TRUE);
  if (modbus_connect(m.ctx) != 0) {
    const int err = errno;
    if (r.target.kind == ProbeTarget::Kind::kRtu) {
      if (err == ENOENT)
        return fail(true, "no serial port " + r.target.device + " (ls /dev/ttyUSB* /dev/ttyS*)");
      if (err == EACCES) {
        return fail(true,
                    "permission denied on " + r.target.device +
                        " - add yourself to the dialout group (sudo usermod -aG dialout $USER, "
                        "then log in again) or use sudo");
      }
      if (err == EBUSY)
        return fail(true, r.target.device + " is in use by another program (gatewayd?)");
      return fail(true, "cannot open " + r.target.device + ": " + modbus_strerror(err));
    }
    if (err == ECONNREFUSED) {
      return fail(true, "connection refused by " + where +
                            " - nothing listens on that port (Modbus TCP is usually 502)");
    }
    if (err == ETIMEDOUT || err == EINPROGRESS) {
      return fail(true, "no connection to " + where + " within " + seconds_text(r.timeout_ms) +
                            " - wrong address, unplugged cable or a firewall?");
    }
    if (err == EHOSTUNREACH || err == ENETUNREACH) {
      return fail(true, r.target.host + " is unreachable (" + modbus_strerror(err) +
                            ") - check the IP address and this machine's network");
    }
    return fail(true, "cannot connect to " + where + ": " + modbus_strerror(err));
  }
  m.connected = true;

  ProbeResult result;
  const auto start = std::chrono::steady_clock::now();
  int rc = -1;
  switch (r.table) {
    case RegisterTable::kHolding:
      result.registers.resize(static_cast<std::size_t>(r.count));
      rc = modbus_read_registers(m.ctx, r.address, r.count, result.registers.data());
      break;
    case RegisterTable::kInput:
      result.registers.resize(static_cast<std::size_t>(r.count));
      rc = modbus_read_input_registers(m.ctx, r.address, r.count, result.registers.data());
      break;
    case RegisterTable::kCoil:
      result.bits.resize(static_cast<std::size_t>(r.count));
      rc = modbus_read_bits(m.ctx, r.address, r.count, result.bits.data());
      break;
    case RegisterTable::kDiscrete:
      result.bits.resize(static_cast<std::size_t>(r.count));
      rc = modbus_read_input_bits(m.ctx, r.address, r.count, result.bits.data());
      break;
  }
  result.latency_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  if (rc == -1) {
    const int err = errno;
    if (err > MODBUS_ENOBASE && err <= EMBXGTAR) {
      return fail(false, modbus_exception_text(err - MODBUS_ENOBASE, r));
    }
    if (err == ETIMEDOUT) {
      return fail(true,
                  "no answer from unit " + std::to_string(r.unit) + " at " + where + " within " +
                      seconds_text(r.timeout_ms) +
                      (r.target.kind == ProbeTarget::Kind::kRtu
                           ? " - check the unit id, wiring (A/B swapped?), baud rate and parity"
                           : " - check the unit id (some devices answer only 1 or 255)"));
    }
    if (err == EMBBADCRC) {
      return fail(
          false,
          "answer with a bad CRC - check baud rate and parity, termination and noise on the line");
    }
    if (err == EMBBADSLAVE) {
      return fail(false, "the answer came from another unit than " + std::to_string(r.unit) +
                             " - two devices with the same unit id on the line?");
    }
    if (err == ECONNRESET || err == EPIPE) {
      return fail(true, where + " closed the connection instead of answering");
    }
    return fail(false,
                "bad answer from unit " + std::to_string(r.unit) + ": " + modbus_strerror(err));
  }
  if (rc != r.count) {
    return fail(false, "unit " + std::to_string(r.unit) + " answered " + std::to_string(rc) +
                           " values instead of " + std::to_string(r.count));
  }
  return result;
}

std::string format_probe(const ProbeRequest& r, const ProbeResult& result, const Style& style) {
  const bool bits = protocols::is_bit_table(r.table);
  char latency[32];
  std::snprintf(latency, sizeof latency, "%.1f ms", result.latency_ms);
  std::string out =
      style.bold(r.target.text()) + " unit " + std::to_string(r.unit) + ", " + range_text(r) +
      ": " + std::to_string(r.count) +
      (bits ? (r.count == 1 ? " bit" : " bits") : (r.count == 1 ? " register" : " registers")) +
      " in " + latency + "\n";
  const std::vector<Decoded> decoded = decode_all(r, result);
  if (r.type) {
    std::string how = "decoded as " + std::string(protocols::to_string(*r.type));
    if (protocols::width_of(*r.type) > 1) {
      how += ", word order " + std::string(protocols::to_string(r.word_order));
    }
    if (r.scale != 1.0 || r.offset != 0.0) {
      how += ", value = raw * " + central::format_reading(r.scale) + " + " +
             central::format_reading(r.offset);
    }
    out += style.dim(how) + "\n";
  }
  Table t;
  t.indent = "  ";
  if (bits) {
    t.headers = {"ADDRESS", "", "BIT"};
    t.right_align = {true, false, true};
  } else {
    t.headers = {"ADDRESS", "", "DEC", "HEX"};
    t.right_align = {true, false, true, true};
  }
  if (r.type) {
    t.headers.push_back(std::string(protocols::to_string(*r.type)));
    t.right_align.push_back(true);
  }
  std::size_t next = 0;
  const std::size_t n = bits ? result.bits.size() : result.registers.size();
  for (std::size_t i = 0; i < n; ++i) {
    const auto address = static_cast<uint16_t>(r.address + i);
    std::vector<std::string> row = {std::to_string(address), style.dim("(" + hex4(address) + ")")};
    if (bits) {
      row.push_back(result.bits[i] ? "1" : "0");
    } else {
      row.push_back(std::to_string(result.registers[i]));
      row.push_back(hex4(result.registers[i]));
    }
    if (r.type) {
      std::string cell;
      if (next < decoded.size() && decoded[next].index == i) {
        cell = decoded[next].ok ? style.bold(value_text(r, decoded[next].value))
                                : style.red(decoded[next].error);
        ++next;
      }
      row.push_back(cell);
    }
    t.rows.push_back(std::move(row));
  }
  out += render_table(t);
  return out;
}

Json probe_json(const ProbeRequest& r, const ProbeResult& result) {
  Json j;
  j["target"] = r.target.text();
  j["unit"] = r.unit;
  j["table"] = std::string(protocols::to_string(r.table));
  j["address"] = r.address;
  j["count"] = r.count;
  j["latency_ms"] = result.latency_ms;
  if (protocols::is_bit_table(r.table)) {
    Json bits = Json::array();
    for (uint8_t b : result.bits) bits.push_back(b ? 1 : 0);
    j["bits"] = std::move(bits);
  } else {
    j["registers"] = result.registers;
  }
  if (r.type) {
    j["type"] = std::string(protocols::to_string(*r.type));
    j["word_order"] = std::string(protocols::to_string(r.word_order));
    j["scale"] = r.scale;
    j["offset"] = r.offset;
    Json values = Json::array();
    for (const Decoded& d : decode_all(r, result)) {
      Json v;
      v["address"] = d.address;
      if (d.ok) {
        v["value"] = d.value;
      } else {
        v["value"] = nullptr;
        v["error"] = d.error;
      }
      values.push_back(std::move(v));
    }
    j["values"] = std::move(values);
  }
  return j;
}

}  // namespace gw::ctl
