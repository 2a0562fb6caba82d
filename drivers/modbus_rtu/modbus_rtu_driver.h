// ModbusRtuDriver polls one Modbus RTU unit on a bus — a serial line or a serial server's TCP
// port — through the bus's SerialBus, which serializes it with every other device on the line.
// The read plan's requests go out one after another; a Modbus exception marks only that
// request's points bad, while a timeout or a bad frame fails the whole poll (the device, or
// the line, is not answering sensibly). Core thread only.
#pragma once

#include <memory>

#include "drivers/bus/serial_bus.h"
#include "drivers/driver.h"
#include "protocols/modbus_read_plan.h"

namespace gw::drivers {

struct ModbusRtuSettings {
  std::string device_id;
  uint8_t unit = 1;
  std::chrono::milliseconds timeout{1000};
  std::vector<protocols::PointSpec> points;
  protocols::ReadPlanLimits limits;
};

class ModbusRtuDriver : public Driver, public std::enable_shared_from_this<ModbusRtuDriver> {
 public:
  ModbusRtuDriver(ModbusRtuSettings settings, std::shared_ptr<SerialBus> bus);
  void poll(PollCallback done, bool urgent = false) override;
  void stop() override { stopped_ = true; }

 private:
  struct Poll;
  void next_request(std::shared_ptr<Poll> poll);

  const ModbusRtuSettings settings_;
  const std::vector<protocols::ReadRequest> plan_;
  std::shared_ptr<SerialBus> bus_;
  bool stopped_ = false;
};

}  // namespace gw::drivers
