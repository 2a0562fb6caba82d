// The driver registry: the one place that maps a device's `driver:` name to the code that runs
// it. Listed explicitly (static self-registration in static libraries is dropped by the linker).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "drivers/asio.h"
#include "drivers/bus/serial_bus.h"
#include "drivers/driver.h"
#include "drivers/event_source.h"
#include "drivers/modbus_tcp/modbus_tcp_driver.h"
#include "gateway/config.h"

namespace gw {

struct DriverContext {
  asio::any_io_executor core;     // where results are delivered
  asio::any_io_executor io_pool;  // where blocking device I/O runs
  // The owner of a configured bus (buses: in the config), by id; null when there is none.
  std::function<std::shared_ptr<drivers::SerialBus>(const std::string&)> bus;
  // A `buses:` entry by id, for drivers that own their line outright (serial_line); null when
  // there is none.
  std::function<const config::BusSection*(const std::string&)> bus_section;
  // Frames of drivers that own their socket (modbus_tcp) for `gatewayctl trace`, and whether a
  // trace of a device is open (decoded notes are built only then). Either may be null.
  drivers::FrameTracer trace;
  std::function<bool(const std::string& device)> tracing;
};

// The bus owner for one `buses:` entry.
drivers::BusSettings bus_settings(const config::BusSection& bus);

// Names of the drivers this build can run.
std::vector<std::string> available_drivers();

// Builds the driver for a device. Fails (kInvalidArgument) for a driver this build lacks.
Result<std::shared_ptr<drivers::Driver>> make_driver(const config::DeviceSection& device,
                                                      const DriverContext& context);

// True for drivers that are EventSources (make_source), false for polled Drivers (make_driver).
bool is_event_source(const std::string& driver);

// Builds the event source for a device whose driver is_event_source().
Result<std::shared_ptr<drivers::EventSource>> make_source(const config::DeviceSection& device,
                                                          const DriverContext& context);

// One ConfigError per device whose driver this build cannot run (for exit 78 at start-up).
std::vector<config::ConfigError> check_drivers(const config::Config& config);

}  // namespace gw
