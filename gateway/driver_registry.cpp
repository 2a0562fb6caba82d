#include "gateway/driver_registry.h"

#include "drivers/modbus_tcp/modbus_tcp_driver.h"

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
  return std::make_shared<drivers::ModbusTcpDriver>(std::move(s), ctx.core, ctx.io_pool);
}
}  // namespace

std::vector<std::string> available_drivers() { return {"modbus_tcp"}; }

Result<std::shared_ptr<drivers::Driver>> make_driver(const config::DeviceSection& device,
                                                      const DriverContext& context) {
  if (device.driver == "modbus_tcp") return make_modbus_tcp(device, context);
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
