#include "drivers/dlt645/dlt645_driver.h"

namespace gw::drivers {

namespace dlt = protocols::dlt645;

namespace {
int64_t wall_now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}
constexpr uint8_t kErrorReplyBit = 0x40;  // 0xD1 = 0x91 | 0x40: the meter refused the request
}  // namespace

struct Dlt645Driver::Poll {
  PollCallback done;
  bool urgent = false;
  PollResult result;
  std::size_t next = 0;
  std::chrono::microseconds latency{0};
};

Dlt645Driver::Dlt645Driver(Dlt645Settings settings, std::shared_ptr<SerialBus> bus)
    : settings_(std::move(settings)), bus_(std::move(bus)) {}

void Dlt645Driver::poll(PollCallback done, bool urgent) {
  auto p = std::make_shared<Poll>();
  p->done = std::move(done);
  p->urgent = urgent;
  next_point(std::move(p));
}

void Dlt645Driver::next_point(std::shared_ptr<Poll> p) {
  if (stopped_) return;
  if (p->next == settings_.points.size()) {
    p->result.status = Status::ok();
    p->result.observed_at_us = wall_now_us();
    p->result.latency = p->latency;
    p->done(std::move(p->result));
    return;
  }
  const Dlt645Point& point = settings_.points[p->next];
  Exchange ex;
  ex.device_id = settings_.device_id;
  ex.request = dlt::build_read_data(settings_.address, point.di);
  ex.timeout = settings_.timeout;
  ex.urgent = p->urgent;
  ex.check = [](std::span<const uint8_t> rx) {
    dlt::Parsed parsed = dlt::parse_frame(rx);
    switch (parsed.outcome) {
      case dlt::Parsed::Outcome::kNeedMore: return FrameCheck{};
      case dlt::Parsed::Outcome::kGood:
        return FrameCheck{FrameCheck::Verdict::kComplete, parsed.consumed, {}};
      case dlt::Parsed::Outcome::kBad:
        return FrameCheck{FrameCheck::Verdict::kBad, parsed.consumed, parsed.message};
    }
    return FrameCheck{};
  };
  bus_->submit(std::move(ex), [self = shared_from_this(), p, &point](ExchangeResult er) {
    if (self->stopped_) return;
    p->latency += er.latency;
    auto fail = [&](Status s) {
      p->result.status = std::move(s);
      p->result.points.clear();
      p->result.observed_at_us = wall_now_us();
      p->result.latency = p->latency;
      p->done(std::move(p->result));
    };
    if (!er.status) return fail(er.status);
    dlt::Parsed parsed = dlt::parse_frame(er.reply);
    if (parsed.outcome != dlt::Parsed::Outcome::kGood) {
      return fail(Status::protocol("reply no longer parses: " + parsed.message));
    }
    Result<dlt::Reading> reading =
        dlt::read_data_value(parsed.frame, self->settings_.address, point.di, point.decimals);
    const std::size_t index = p->next;
    if (reading) {
      p->result.points.push_back({index, reading->value, true, {}});
    } else if (parsed.frame.control & kErrorReplyBit) {
      p->result.points.push_back({index, 0.0, false, reading.status().message()});
    } else {
      // A reply from another meter or for another DI: the line is not sane.
      return fail(reading.status());
    }
    ++p->next;
    self->next_point(p);
  });
}

}  // namespace gw::drivers
