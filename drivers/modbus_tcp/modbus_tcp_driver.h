// ModbusTcpDriver polls one Modbus TCP device with libmodbus. libmodbus blocks, so every request
// runs on the shared I/O pool, serialized per device by a strand, and the result is posted back
// to the core executor. Points are read in as few requests as the read plan allows. After any
// transport failure (timeout, reset, garbage) the connection is closed, so a late reply can never
// be matched to the next request.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "drivers/asio.h"
#include "drivers/driver.h"
#include "protocols/modbus_read_plan.h"
#include "protocols/register_map.h"

namespace gw::drivers {

struct ModbusTcpSettings {
  std::string device_id;
  std::string host;
  uint16_t port = 502;
  int unit_id = 1;
  std::chrono::milliseconds timeout{1000};
  std::vector<protocols::PointSpec> points;
  protocols::ReadPlanLimits limits;
};

class ModbusTcpDriver : public Driver, public std::enable_shared_from_this<ModbusTcpDriver> {
 public:
  ModbusTcpDriver(ModbusTcpSettings settings, asio::any_io_executor core,
                  asio::any_io_executor io_pool);
  ~ModbusTcpDriver() override;

  void poll(PollCallback done, bool urgent = false) override;
  void stop() override;

 private:
  struct Connection;  // owns the modbus_t; touched only on strand_
  PollResult poll_blocking();

  const ModbusTcpSettings settings_;
  const std::vector<protocols::ReadRequest> plan_;
  asio::any_io_executor core_;
  asio::strand<asio::any_io_executor> strand_;
  std::unique_ptr<Connection> connection_;
  std::shared_ptr<std::atomic<bool>> stopped_;
};

}  // namespace gw::drivers
