// ModbusTcpDriver polls one Modbus TCP device over one Asio socket on the core executor, with
// the project's own MBAP codec (protocols/modbus_tcp): no thread per device, no blocking call,
// and every frame visible to `gatewayctl trace`. Polls are served one at a time in order (a
// one-off operator read goes first); points are read in as few requests as the read plan allows.
// After any transport failure (timeout, reset, garbage, wrong transaction id) the connection is
// closed, so a late reply can never be matched to the next request.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <span>
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

// Sees each frame (tx = to the device) with the decoder's reading of it; `bad` when the note says
// what was wrong with an answer (those come even when nobody traces: they are logged).
using FrameTracer = std::function<void(const std::string& device, bool tx, bool bad,
                                       std::span<const uint8_t> bytes, const std::string& note)>;

class ModbusTcpDriver : public Driver, public std::enable_shared_from_this<ModbusTcpDriver> {
 public:
  ModbusTcpDriver(ModbusTcpSettings settings, asio::any_io_executor core);
  ~ModbusTcpDriver() override;

  // `active` says whether anyone is tracing this device now: notes are built only then.
  void set_tracer(FrameTracer tracer, std::function<bool(const std::string&)> active);

  void poll(PollCallback done, bool urgent = false) override;
  void stop() override;

 private:
  struct Wanted {
    PollCallback done;
    bool urgent = false;
  };
  asio::awaitable<void> serve();
  asio::awaitable<PollResult> poll_once(bool urgent);
  asio::awaitable<Status> connect();
  // Sends one request and returns the whole answer frame (header + PDU); closes on failure.
  asio::awaitable<Result<std::vector<uint8_t>>> exchange(const std::vector<uint8_t>& request);
  void close();
  void arm_deadline();
  void disarm_deadline();
  bool tracing() const { return tracer_ && tracing_active_ && tracing_active_(settings_.device_id); }

  const ModbusTcpSettings settings_;
  const std::vector<protocols::ReadRequest> plan_;
  const std::string where_;
  asio::any_io_executor core_;
  asio::ip::tcp::socket socket_;
  asio::ip::tcp::resolver resolver_;
  asio::steady_timer deadline_;  // closes the socket when a request overstays its timeout
  asio::steady_timer wake_;      // wakes serve() when a poll is queued
  std::deque<Wanted> queue_;
  bool serving_ = false;
  bool connected_ = false;
  bool timed_out_ = false;
  uint64_t deadline_generation_ = 0;
  bool stopped_ = false;
  uint16_t next_transaction_ = 0;
  FrameTracer tracer_;
  std::function<bool(const std::string&)> tracing_active_;
};

}  // namespace gw::drivers
