#include "gateway/driver_registry.h"

#include <algorithm>

#include "drivers/dlt645/dlt645_driver.h"
#include "drivers/modbus_rtu/modbus_rtu_driver.h"
#include "drivers/modbus_tcp/modbus_tcp_driver.h"
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

std::vector<std::string> available_drivers() { return {"modbus_tcp", "modbus_rtu", "dlt645"}; }

Result<std::shared_ptr<drivers::Driver>> make_driver(const config::DeviceSection& device,
                                                      const DriverContext& context) {
  if (device.driver == "modbus_tcp") return make_modbus_tcp(device, context);
  if (device.driver == "modbus_rtu") return make_modbus_rtu(device, context);
  if (device.driver == "dlt645") return make_dlt645(device, context);
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
