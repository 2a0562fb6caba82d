#include "drivers/modbus_rtu/modbus_rtu_driver.h"

#include "drivers/modbus_points.h"
#include "protocols/modbus_rtu.h"

namespace gw::drivers {

namespace rtu = protocols::modbus_rtu;

namespace {
int64_t wall_now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

const char* exception_name(uint8_t code) {
  switch (code) {
    case 1: return "illegal function";
    case 2: return "illegal data address";
    case 3: return "illegal data value";
    case 4: return "server device failure";
    case 6: return "server device busy";
    case 11: return "gateway target device failed to respond";
    default: return "exception";
  }
}
}  // namespace

struct ModbusRtuDriver::Poll {
  PollCallback done;
  bool urgent = false;
  PollResult result;
  std::size_t next = 0;
  std::chrono::microseconds latency{0};
};

ModbusRtuDriver::ModbusRtuDriver(ModbusRtuSettings settings, std::shared_ptr<SerialBus> bus)
    : settings_(std::move(settings)),
      plan_(protocols::plan_reads(settings_.points, settings_.limits)),
      bus_(std::move(bus)) {}

void ModbusRtuDriver::poll(PollCallback done, bool urgent) {
  auto p = std::make_shared<Poll>();
  p->done = std::move(done);
  p->urgent = urgent;
  next_request(std::move(p));
}

void ModbusRtuDriver::next_request(std::shared_ptr<Poll> p) {
  if (stopped_) return;
  if (p->next == plan_.size()) {
    p->result.status = Status::ok();
    p->result.observed_at_us = wall_now_us();
    p->result.latency = p->latency;
    p->done(std::move(p->result));
    return;
  }
  const protocols::ReadRequest& req = plan_[p->next];
  const uint8_t unit = settings_.unit;
  Exchange ex;
  ex.device_id = settings_.device_id;
  ex.request = rtu::build_read_request(unit, req.table, req.start, req.count);
  ex.timeout = settings_.timeout;
  ex.urgent = p->urgent;
  ex.check = [unit, table = req.table, count = req.count](std::span<const uint8_t> rx) {
    rtu::Response r = rtu::parse_read_response(rx, unit, table, count);
    switch (r.outcome) {
      case rtu::Response::Outcome::kNeedMore: return FrameCheck{};
      case rtu::Response::Outcome::kGood:
        return FrameCheck{FrameCheck::Verdict::kComplete, r.frame_length, {}};
      case rtu::Response::Outcome::kBad:
        if (r.error == rtu::Error::kException) {
          // A well-formed exception is a complete answer, judged below.
          return FrameCheck{FrameCheck::Verdict::kComplete, r.frame_length, {}};
        }
        return FrameCheck{FrameCheck::Verdict::kBad, r.frame_length,
                          "unit " + std::to_string(unit) + ": " + r.message};
    }
    return FrameCheck{};
  };
  bus_->submit(std::move(ex),
               [self = shared_from_this(), p = std::move(p), &req](ExchangeResult er) {
    if (self->stopped_) return;
    p->latency += er.latency;
    if (!er.status) {
      p->result.status = er.status;
      p->result.points.clear();
      p->result.observed_at_us = wall_now_us();
      p->result.latency = p->latency;
      p->done(std::move(p->result));
      return;
    }
    rtu::Response r = rtu::parse_read_response(er.reply, self->settings_.unit, req.table,
                                               req.count);
    if (r.outcome == rtu::Response::Outcome::kGood) {
      decode_request_points(req, self->settings_.points, r.registers, r.bits, p->result.points);
    } else {
      // An exception reply: the device is there but refuses these registers.
      mark_request_bad(req,
                       std::string("device answered exception ") +
                           std::to_string(r.exception_code) + " (" +
                           exception_name(r.exception_code) + ")",
                       p->result.points);
    }
    ++p->next;
    self->next_request(p);
  });
}

}  // namespace gw::drivers
