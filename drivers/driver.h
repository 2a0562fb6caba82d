// Driver is what the scheduler asks to "read now"; it answers with what the device said. A driver
// owns its device I/O and nothing else: it never touches SQLite or MQTT, never decides when to
// poll, and never blocks the core thread — blocking libraries (libmodbus) run on the I/O pool and
// the answer is posted back to the core executor.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "protocols/status.h"

namespace gw::drivers {

struct PointReading {
  std::size_t index = 0;  // position in the device's configured point list
  double value = 0.0;
  bool good = false;
  std::string error;      // why the value is bad (exception code, NaN, ...)
};

struct PollResult {
  // Not ok when the device could not be reached or answered nothing usable (timeout, refused,
  // garbage); then `points` is empty. A device that answered with a Modbus exception for some
  // registers is reachable: those points come back with good = false.
  Status status;
  std::vector<PointReading> points;
  int64_t observed_at_us = 0;                 // wall clock when the answer arrived
  std::chrono::microseconds latency{0};       // request to answer
};

class Driver {
 public:
  using PollCallback = std::function<void(PollResult)>;
  virtual ~Driver() = default;

  // Reads every configured point once. `done` runs on the core executor, exactly once per call,
  // unless stop() was called first. The scheduler never has two polls of one device outstanding.
  // `urgent`: a one-off read an operator asked for; on a shared line it goes ahead of polls.
  virtual void poll(PollCallback done, bool urgent = false) = 0;
  // Ends I/O; pending callbacks are dropped. Safe to call more than once.
  virtual void stop() = 0;
};

}  // namespace gw::drivers
