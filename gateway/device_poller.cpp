#include "gateway/device_poller.h"

#include "gateway/log.h"

namespace gw {

namespace v1 = campus::gateway::v1;

namespace {
std::vector<config::ReportPolicy> policies_of(const config::DeviceSection& d) {
  std::vector<config::ReportPolicy> out;
  for (const auto& p : d.points) out.push_back(p.report);
  return out;
}
}  // namespace

DevicePoller::DevicePoller(asio::any_io_executor core, config::DeviceSection device,
                           std::shared_ptr<drivers::Driver> driver, Router& router)
    : device_(std::move(device)),
      driver_(std::move(driver)),
      router_(router),
      filter_(policies_of(device_)),
      timer_(core),
      last_values_(device_.points.size()) {}

void DevicePoller::start(std::chrono::milliseconds first_delay) {
  next_due_ = std::chrono::steady_clock::now() + first_delay;
  arm();
}

void DevicePoller::stop() {
  stopped_ = true;
  timer_.cancel();
  driver_->stop();
}

void DevicePoller::arm() {
  timer_.expires_at(next_due_);
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec && !stopped_) on_tick();
  });
}

void DevicePoller::on_tick() {
  const auto now = std::chrono::steady_clock::now();
  next_due_ += device_.poll;
  if (next_due_ <= now) {
    // Fell more than a period behind (a slow device, a stalled loop): skip, don't burst.
    next_due_ = now + device_.poll;
  }
  arm();
  if (outstanding_) {
    ++overruns_;
    return;
  }
  if (state_ == State::kOffline && now < next_probe_) {
    ++skipped_offline_;
    return;
  }
  // Back-pressure: while the buffer's room for telemetry fills up, poll 2, 4 or 8 times less
  // often rather than have the buffer evict what it stored.
  if (const int slow = router_.slowdown(); slow > 1 && (++throttle_ticks_ % slow) != 0) {
    ++throttled_;
    return;
  }
  outstanding_ = true;
  if (last_start_ != std::chrono::steady_clock::time_point{}) {
    // Smoothed over about eight polls: what the operator compares with the configured period.
    const auto gap = std::chrono::duration_cast<std::chrono::milliseconds>(now - last_start_);
    achieved_ = achieved_.count() == 0 ? gap : (achieved_ * 7 + gap) / 8;
  }
  last_start_ = now;
  driver_->poll([this](const drivers::PollResult& r) {
    outstanding_ = false;
    if (!stopped_) on_result(r);
  });
}

void DevicePoller::on_result(const drivers::PollResult& result) {
  ++polls_;
  if (poll_observer_) poll_observer_(device_.id, result);
  last_latency_ = result.latency;
  latency_sum_ += result.latency;
  if (!result.status) {
    ++failures_;
    switch (result.status.code()) {
      case Status::Code::kTimeout: ++errors_.timeout; break;
      case Status::Code::kProtocol:
      case Status::Code::kCorrupt: ++errors_.protocol; break;
      case Status::Code::kUnavailable: ++errors_.unavailable; break;
      default: ++errors_.other; break;
    }
    ++consecutive_failures_;
    last_error_ = result.status.message();
    if (consecutive_failures_ >= device_.offline_after && state_ != State::kOffline) {
      state_ = State::kOffline;
      probe_gap_ = device_.poll;
      log::warn("device", device_.id, " offline after ", consecutive_failures_,
                " failed polls: ", last_error_);
      emit_status(false, last_error_, result.observed_at_us);
    }
    if (state_ == State::kOffline) {
      probe_gap_ = std::min(std::max(probe_gap_ * 2, device_.poll),
                            std::max(kMaxProbeGap, device_.poll));
      next_probe_ = std::chrono::steady_clock::now() + probe_gap_;
    }
    return;
  }
  consecutive_failures_ = 0;
  probe_gap_ = std::chrono::milliseconds(0);
  last_good_us_ = result.observed_at_us;
  for (const drivers::PointReading& r : result.points) {
    if (r.index < last_values_.size()) last_values_[r.index] = {r.value, r.good, result.observed_at_us};
  }
  if (state_ != State::kOnline) {
    state_ = State::kOnline;
    log::notice("device", device_.id, " online (",
                device_.bus.empty() ? device_.host + ":" + std::to_string(device_.port)
                                    : "bus " + device_.bus,
                ")");
    emit_status(true, {}, result.observed_at_us);
  }
  const auto selected = filter_.select(result.points, std::chrono::steady_clock::now());
  if (selected.empty()) return;
  v1::Event event;
  event.set_device_id(device_.id);
  event.set_kind(device_.kind);
  event.set_gateway_time_us(result.observed_at_us);
  v1::MeterBody* meter = event.mutable_meter();
  for (const drivers::PointReading& r : selected) {
    const config::PointSection& point = device_.points[r.index];
    v1::MeterValue* v = meter->add_values();
    v->set_name(point.spec.name);
    v->set_value(r.good ? r.value : 0.0);
    v->set_unit(point.spec.unit);
    v->set_quality(r.good ? v1::GOOD : v1::BAD);
  }
  router_.submit(std::move(event));
}

void DevicePoller::emit_status(bool online, const std::string& error, int64_t at_us) {
  v1::Event event;
  event.set_device_id(device_.id);
  event.set_kind(device_.kind);
  event.set_gateway_time_us(at_us);
  event.mutable_status()->set_online(online);
  event.mutable_status()->set_error(error);
  router_.submit(std::move(event));
}

}  // namespace gw
