// Dlt645Driver reads one DL/T 645-2007 meter on a bus: one read-data request per configured
// data identifier, through the bus's SerialBus (so it shares a line with Modbus RTU devices).
// An exception reply (the meter has no such data) marks that point bad; a timeout or a bad
// frame fails the poll. Core thread only.
#pragma once

#include <memory>
#include <optional>

#include "drivers/bus/serial_bus.h"
#include "drivers/driver.h"
#include "protocols/dlt645.h"

namespace gw::drivers {

struct Dlt645Point {
  uint32_t di = 0;
  std::optional<int> decimals;
};

struct Dlt645Settings {
  std::string device_id;
  protocols::dlt645::Address address{};
  std::chrono::milliseconds timeout{1000};
  std::vector<Dlt645Point> points;
};

class Dlt645Driver : public Driver, public std::enable_shared_from_this<Dlt645Driver> {
 public:
  Dlt645Driver(Dlt645Settings settings, std::shared_ptr<SerialBus> bus);
  void poll(PollCallback done, bool urgent = false) override;
  void stop() override { stopped_ = true; }

 private:
  struct Poll;
  void next_point(std::shared_ptr<Poll> poll);

  const Dlt645Settings settings_;
  std::shared_ptr<SerialBus> bus_;
  bool stopped_ = false;
};

}  // namespace gw::drivers
