#include "gateway/driver_registry.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "drivers/camera_http/camera_http_source.h"
#include "drivers/dlt645/dlt645_driver.h"
#include "drivers/gate/modbus_gate_source.h"
#include "drivers/gate/uhppote_source.h"
#include "drivers/line_reader/line_reader.h"
#include "drivers/modbus_rtu/modbus_rtu_driver.h"
#include "drivers/modbus_tcp/modbus_tcp_driver.h"
#include "protocols/card_reader.h"
#include "protocols/dlt645.h"

namespace gw {

namespace {
std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

std::shared_ptr<drivers::Driver> make_modbus_tcp(const config::DeviceSection& d,
                                                 const DriverContext& ctx) {
  drivers::ModbusTcpSettings s;
  s.device_id = d.id;
  s.host = d.host;
  s.port = d.port;
  s.unit_id = d.unit_id;
  s.timeout = d.timeout;
  for (const auto& p : d.points) s.points.push_back(p.spec);
  s.limits = {d.max_registers, d.max_gap};
  auto driver = std::make_shared<drivers::ModbusTcpDriver>(std::move(s), ctx.core);
  if (ctx.trace) driver->set_tracer(ctx.trace, ctx.tracing);
  return driver;
}
Result<std::shared_ptr<drivers::SerialBus>> bus_of(const config::DeviceSection& d,
                                                   const DriverContext& ctx) {
  std::shared_ptr<drivers::SerialBus> bus = ctx.bus ? ctx.bus(d.bus) : nullptr;
  if (!bus) return Status::invalid("device " + d.id + ": no bus '" + d.bus + "'");
  return bus;
}

Result<std::shared_ptr<drivers::Driver>> make_modbus_rtu(const config::DeviceSection& d,
                                                        const DriverContext& ctx) {
  auto bus = bus_of(d, ctx);
  if (!bus) return bus.status();
  drivers::ModbusRtuSettings s;
  s.device_id = d.id;
  s.unit = static_cast<uint8_t>(d.unit_id);
  s.timeout = d.timeout;
  for (const auto& p : d.points) s.points.push_back(p.spec);
  s.limits = {d.max_registers, d.max_gap};
  return std::shared_ptr<drivers::Driver>(
      std::make_shared<drivers::ModbusRtuDriver>(std::move(s), std::move(bus).value()));
}

Result<std::shared_ptr<drivers::Driver>> make_dlt645(const config::DeviceSection& d,
                                                    const DriverContext& ctx) {
  auto bus = bus_of(d, ctx);
  if (!bus) return bus.status();
  drivers::Dlt645Settings s;
  s.device_id = d.id;
  s.timeout = d.timeout;
  auto address = protocols::dlt645::parse_address(d.meter_address);
  if (!address) return address.status();
  s.address = *address;
  for (const auto& p : d.points) {
    auto di = protocols::dlt645::parse_di(p.di);
    if (!di) return di.status();
    s.points.push_back({*di, p.decimals});
  }
  return std::shared_ptr<drivers::Driver>(
      std::make_shared<drivers::Dlt645Driver>(std::move(s), std::move(bus).value()));
}

// serial_line (its own port:, or a bus: it owns outright) and tcp_line: card readers.
Result<std::shared_ptr<drivers::EventSource>> make_line_reader(const config::DeviceSection& d,
                                                              const DriverContext& ctx) {
  namespace cr = protocols::card_reader;
  drivers::LineReaderSettings s;
  s.device_id = d.id;
  if (d.driver == "tcp_line") {
    s.host = d.host;
    s.port = d.port;
  } else {
    const config::BusSection* line = d.line_settings ? &*d.line_settings : nullptr;
    if (!line && ctx.bus_section) line = ctx.bus_section(d.bus);
    if (!line) return Status::invalid("device " + d.id + ": no bus '" + d.bus + "'");
    if (!line->tcp_host.empty()) {  // a serial server's raw TCP port
      s.host = line->tcp_host;
      s.port = line->tcp_port;
    } else {
      s.device_path = line->port;
    }
    s.baud = line->baud;
    s.parity = line->parity;
    s.data_bits = line->data_bits;
    s.stop_bits = line->stop_bits;
  }
  s.idle_timeout = d.idle_timeout;
  const config::FramingSection f = d.framing.value_or(config::FramingSection{});
  s.framing.type = f.type == config::FramingSection::Type::kLine     ? cr::FramingType::kLine
                   : f.type == config::FramingSection::Type::kStxEtx ? cr::FramingType::kStxEtx
                                                                     : cr::FramingType::kFixed;
  s.framing.delimiter = f.delimiter;
  s.framing.max_length = static_cast<std::size_t>(f.max_length);
  s.framing.length = static_cast<std::size_t>(f.length);
  const auto format = cr::parse_card_format(d.card_format);
  if (!format) return Status::invalid("device " + d.id + ": unknown card_format '" + d.card_format + "'");
  s.format = *format;
  s.door = d.door;
  s.direction = d.direction == "in"    ? campus::gateway::v1::IN
                : d.direction == "out" ? campus::gateway::v1::OUT
                                       : campus::gateway::v1::UNKNOWN;
  if (Status ok = drivers::validate(s); !ok) return ok;
  return std::shared_ptr<drivers::EventSource>(
      std::make_shared<drivers::LineReader>(ctx.core, std::move(s)));
}

// Gate controllers with an event log: modbus_gate (libmodbus on the I/O pool) and uhppote (UDP).
std::shared_ptr<drivers::EventSource> make_gate(const config::DeviceSection& d,
                                                const DriverContext& ctx) {
  if (d.driver == "modbus_gate") {
    drivers::ModbusGateSettings s;
    s.device_id = d.id;
    s.host = d.host;
    s.port = d.port;
    s.unit_id = d.unit_id;
    s.poll = d.poll;
    s.timeout = d.timeout;
    s.offline_after = d.offline_after;
    s.status_base = d.status_base;
    s.log_base = d.log_base;
    s.log_size = d.log_size;
    return std::make_shared<drivers::ModbusGateSource>(std::move(s), ctx.core, ctx.io_pool);
  }
  drivers::UhppoteSettings s;
  s.device_id = d.id;
  s.host = d.host;
  s.port = d.port;
  s.serial_number = d.serial_number;
  s.poll = d.poll;
  s.timeout = d.timeout;
  s.offline_after = d.offline_after;
  s.door = d.door;
  s.listen_host = d.listen_host;
  s.listen_port = d.listen_port;
  return std::make_shared<drivers::UhppoteSource>(std::move(s), ctx.core);
}

// camera_http: the password is read here, from password_file, never from the config itself.
Result<std::shared_ptr<drivers::EventSource>> make_camera(const config::DeviceSection& d,
                                                          const DriverContext& ctx) {
  if (!d.camera) return Status::invalid("device " + d.id + ": camera_http without its settings");
  const config::DeviceSection::Camera& c = *d.camera;
  using S = drivers::CameraHttpSettings;
  S s;
  s.device_id = d.id;
  s.mode = c.mode == "push" ? S::Mode::kPush : S::Mode::kStream;
  s.vendor = c.vendor == "dahua" ? S::Vendor::kDahua : S::Vendor::kHikvision;
  s.host = d.host;
  s.port = d.port;
  s.path = c.path;
  s.username = c.username;
  if (!c.password_file.empty()) {
    std::ifstream in(c.password_file, std::ios::binary);
    if (!in.is_open()) {
      return Status::unavailable("device " + d.id + ": cannot read " + c.password_file);
    }
    std::ostringstream text;
    text << in.rdbuf();
    s.password = text.str();
    while (!s.password.empty() && (s.password.back() == '\n' || s.password.back() == '\r')) {
      s.password.pop_back();
    }
  }
  s.auth = c.auth == "basic" ? S::Auth::kBasic : S::Auth::kDigest;
  s.heartbeat = c.heartbeat;
  if (s.mode == S::Mode::kStream) {
    s.heartbeat_timeout = c.heartbeat_timeout.value_or(3 * c.heartbeat);
  } else {
    s.heartbeat_timeout = c.heartbeat_timeout.value_or(config::Duration{0});
  }
  s.inactive_after = c.inactive_after.value_or(
      s.vendor == S::Vendor::kHikvision ? config::Duration{std::chrono::seconds(5)}
                                        : config::Duration{0});
  s.listen_host = d.listen_host;
  s.listen_port = d.listen_port;
  s.allow_from = c.allow_from;
  s.max_body = static_cast<std::size_t>(c.max_body);
  s.max_connections = c.max_connections;
  s.timeout = d.timeout;
  return std::shared_ptr<drivers::EventSource>(
      std::make_shared<drivers::CameraHttpSource>(ctx.core, std::move(s)));
}

}  // namespace

drivers::BusSettings bus_settings(const config::BusSection& b) {
  drivers::BusSettings s;
  s.id = b.id;
  if (b.tcp_host.empty()) s.device_path = b.port;
  s.tcp_host = b.tcp_host;
  s.tcp_port = b.tcp_port;
  s.baud = b.baud;
  s.parity = b.parity;
  s.data_bits = b.data_bits;
  s.stop_bits = b.stop_bits;
  s.turnaround = std::chrono::duration_cast<std::chrono::microseconds>(b.turnaround);
  return s;
}

std::vector<std::string> available_drivers() {
  return {"modbus_tcp", "modbus_rtu", "dlt645", "serial_line", "tcp_line", "modbus_gate", "uhppote",
          "camera_http"};
}

Result<std::shared_ptr<drivers::Driver>> make_driver(const config::DeviceSection& device,
                                                      const DriverContext& context) {
  if (device.driver == "modbus_tcp") return make_modbus_tcp(device, context);
  if (device.driver == "modbus_rtu") return make_modbus_rtu(device, context);
  if (device.driver == "dlt645") return make_dlt645(device, context);
  return Status::invalid("driver '" + device.driver + "' is not available in this build (available: " +
                         joined(available_drivers()) + ")");
}

bool is_event_source(const std::string& driver) {
  static const std::vector<std::string> kSources = {"serial_line", "tcp_line", "modbus_gate",
                                                     "uhppote", "camera_http"};
  return std::find(kSources.begin(), kSources.end(), driver) != kSources.end();
}

Result<std::shared_ptr<drivers::EventSource>> make_source(const config::DeviceSection& device,
                                                          const DriverContext& context) {
  if (device.driver == "serial_line" || device.driver == "tcp_line") {
    return make_line_reader(device, context);
  }
  if (device.driver == "modbus_gate" || device.driver == "uhppote") {
    return make_gate(device, context);
  }
  if (device.driver == "camera_http") return make_camera(device, context);
  return Status::invalid("driver '" + device.driver + "' is not available in this build (available: " +
                         joined(available_drivers()) + ")");
}

std::vector<config::ConfigError> check_drivers(const config::Config& config) {
  std::vector<config::ConfigError> errors;
  const auto names = available_drivers();
  for (std::size_t i = 0; i < config.devices.size(); ++i) {
    const auto& d = config.devices[i];
    if (std::find(names.begin(), names.end(), d.driver) != names.end()) continue;
    errors.push_back({config.source_path, d.line, "devices[" + std::to_string(i) + "].driver",
                      d.driver,
                      "this build cannot run this driver yet (available: " + joined(names) + ")"});
  }
  return errors;
}

}  // namespace gw
