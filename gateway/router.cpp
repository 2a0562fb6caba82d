#include "gateway/router.h"

#include <algorithm>

#include "gateway/log.h"

namespace gw {

namespace v1 = campus::gateway::v1;

Router::Router(asio::any_io_executor core, storage::EventBuffer& buffer,
               std::function<void()> on_committed)
    : core_(core), buffer_(buffer), on_committed_(std::move(on_committed)), retry_timer_(core) {}

v1::EventClass Router::class_of(const v1::Event& event) {
  switch (event.body_case()) {
    case v1::Event::kAccess: return v1::ACCESS;
    case v1::Event::kAlarm: return v1::ALARM;
    case v1::Event::kStatus: return v1::STATUS;
    case v1::Event::kCamera: return v1::ALARM;  // a camera detection is something to act on
    case v1::Event::kGap: return v1::STATUS;  // about the stream itself, like device status
    case v1::Event::kMeter:
    case v1::Event::BODY_NOT_SET: return v1::TELEMETRY;
  }
  return v1::TELEMETRY;
}

uint64_t Router::submit(v1::Event event) {
  const uint64_t seq = buffer_.next_seq() + queued_.size();
  event.set_seq(seq);
  event.set_event_class(class_of(event));
  storage::BufferedEvent stored;
  stored.seq = seq;
  stored.event_class = event.event_class();
  stored.device_id = event.device_id();
  stored.gateway_time_us = event.gateway_time_us();
  stored.payload = event.SerializeAsString();
  queued_.push_back(std::move(stored));
  if (queued_.size() >= kMaxGroup && retry_delay_.count() == 0) {
    (void)flush();  // a failure is logged and retried by the timer
  } else if (!flush_scheduled_) {
    schedule_flush(retry_delay_);
  }
  return seq;
}

void Router::schedule_flush(std::chrono::milliseconds delay) {
  flush_scheduled_ = true;
  if (delay.count() == 0) {
    asio::post(core_, [this] { on_flush_timer(); });
    return;
  }
  retry_timer_.expires_after(delay);
  retry_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) on_flush_timer();
  });
}

void Router::on_flush_timer() {
  flush_scheduled_ = false;
  if (queued_.empty()) return;
  if (flush().is_ok() || flush_scheduled_) return;
  schedule_flush(retry_delay_);
}

Status Router::flush() {
  std::size_t done = 0;
  Status result = Status::ok();
  while (done < queued_.size()) {
    const std::size_t n = std::min(kMaxGroup, queued_.size() - done);
    const auto group = std::span<const storage::BufferedEvent>(queued_).subspan(done, n);
    Status s = buffer_.append_batch(group);
    if (!s) {
      result = s;
      break;
    }
    if (observer_) observer_(group);
    done += n;
  }
  if (done > 0) {
    queued_.erase(queued_.begin(), queued_.begin() + static_cast<std::ptrdiff_t>(done));
    committed_total_ += done;
    if (retry_delay_.count() != 0) {
      log::notice("buffer", "commits succeed again after ", failed_commits_,
                  " failed attempts queued=", queued_.size());
      failed_commits_ = 0;
      retry_delay_ = std::chrono::milliseconds(0);
    }
    on_committed_();
  }
  if (!result) {
    // Logged on the first failure and then every 64th, not on every retry.
    if (failed_commits_++ % 64 == 0) {
      log::error("buffer", "commit failed, events kept in memory and retried: ",
                 result.message(), " queued=", queued_.size());
    }
    retry_delay_ = std::clamp(retry_delay_ * 2, std::chrono::milliseconds(100),
                              std::chrono::milliseconds(2000));
  }
  return result;
}

}  // namespace gw
