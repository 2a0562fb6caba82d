#include "gateway/router.h"

#include <algorithm>
#include <array>
#include <map>

#include "gateway/log.h"
#include "protocols/topics.h"
#include "storage/buffer_clock.h"

namespace gw {

namespace v1 = campus::gateway::v1;
using Clock = std::chrono::steady_clock;

namespace {
constexpr auto kMinRetry = std::chrono::milliseconds(100);
constexpr auto kMaxRetry = std::chrono::milliseconds(1000);
constexpr auto kEvictionLogEvery = std::chrono::seconds(60);
constexpr const char* kBufferRule = "buffer_full";
}  // namespace

Router::Router(asio::any_io_executor core, storage::EventBuffer& buffer,
               std::function<void()> on_committed, RouterOptions options)
    : core_(core),
      buffer_(buffer),
      on_committed_(std::move(on_committed)),
      options_(std::move(options)),
      flush_timer_(core),
      maintenance_timer_(core) {
  if (!options_.wall_clock_trusted) {
    options_.wall_clock_trusted = [this] {
      return storage::wall_clock_state(wall_now_us()).trusted();
    };
  }
  clock_trusted_ = options_.wall_clock_trusted();
  next_seq_ = buffer_.next_seq();
}

int64_t Router::wall_now_us() const {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

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

void Router::start() {
  if (!clock_trusted_) {
    log::warn("clock", "the wall clock is not synchronised (no NTP sync reported by the kernel, "
                       "or a date before 2025): events are flagged clock_unsynced until it is");
  }
  announce_evictions();
  arm_maintenance();
}

void Router::stop() {
  stopped_ = true;
  maintenance_timer_.cancel();
}

uint64_t Router::submit(v1::Event event, std::string cursor) {
  const uint64_t seq = enqueue(event, std::move(cursor), {}, {});
  // After queueing, so whatever the observer submits in turn gets a later seq.
  if (submit_observer_ && !event.has_alarm()) submit_observer_(event);
  return seq;
}

uint64_t Router::submit_with_state(v1::Event event, std::string state_key,
                                   std::string state_value) {
  return enqueue(event, {}, std::move(state_key), std::move(state_value));
}

uint64_t Router::enqueue(v1::Event& event, std::string cursor, std::string state_key,
                         std::string state_value) {
  event.set_event_class(class_of(event));
  if (!clock_trusted_) event.set_clock_unsynced(true);
  Queued q;
  q.cursor = std::move(cursor);
  q.state_key = std::move(state_key);
  q.state_value = std::move(state_value);
  q.event = event;
  const uint64_t seq = push(std::move(q));
  event.set_seq(seq);
  return seq;
}

uint64_t Router::push(Queued item) {
  next_seq_ = std::max(next_seq_, buffer_.next_seq());
  const uint64_t seq = next_seq_++;
  item.event.set_seq(seq);
  item.bytes = item.event.ByteSizeLong() + item.cursor.size() + item.state_value.size();
  const bool may_linger = item.event.event_class() == v1::TELEMETRY && !item.pinned &&
                         !item.emergency && item.announces == 0;
  queued_.push_back(std::move(item));
  if (queued_.size() > options_.max_queued_events) bound_queue();
  if (queued_.size() >= kMaxGroup && retry_delay_.count() == 0 && !flushing_) {
    (void)flush();  // a failure is logged and retried by the timer
  } else {
    request_flush(may_linger);
  }
  return seq;
}

void Router::request_flush(bool may_linger) {
  if (retry_delay_.count() > 0) {
    if (!timer_armed_) arm_flush_timer(retry_delay_);
  } else if (!may_linger || options_.telemetry_linger.count() == 0) {
    // Next turn of the core loop: what else this turn submits shares the transaction.
    if (!flush_posted_) {
      flush_posted_ = true;
      asio::post(core_, [this] {
        flush_posted_ = false;
        on_flush_due();
      });
    }
  } else if (!timer_armed_) {
    arm_flush_timer(options_.telemetry_linger);
  }
}

// Nothing queued was committed, so no one has seen these seqs: they may all move up by one, and
// the emergency event takes the first. Gap events of this queue that name dropped seqs at or
// above it move with them (dropped seqs were in the same sequence).
void Router::put_in_front(Queued item) {
  next_seq_ = std::max(next_seq_, buffer_.next_seq());
  if (queued_.empty()) {
    push(std::move(item));
    return;
  }
  const uint64_t first = queued_.front().event.seq();
  for (Queued& q : queued_) {
    q.event.set_seq(q.event.seq() + 1);
    if (q.event.has_gap() && q.announces == 0) {
      v1::GapBody* g = q.event.mutable_gap();
      if (g->first_seq() >= first) g->set_first_seq(g->first_seq() + 1);
      if (g->last_seq() >= first) g->set_last_seq(g->last_seq() + 1);
    }
  }
  ++next_seq_;
  item.event.set_seq(first);
  item.bytes = item.event.ByteSizeLong();
  queued_.push_front(std::move(item));
}

// Commits have been failing long enough for the queue to reach its bound: the oldest droppable
// events go, announced; access, alarm and the gateway's own events stay.
void Router::bound_queue() {
  const std::size_t target = options_.max_queued_events - options_.max_queued_events / 10;
  std::size_t excess = queued_.size() - std::min(queued_.size(), target);
  struct Span {
    uint64_t first = 0, last = 0, count = 0;
  };
  std::map<int, Span> dropped;
  std::deque<Queued> kept;
  for (Queued& q : queued_) {
    const auto cls = q.event.event_class();
    const bool droppable = !q.pinned && !q.emergency && q.announces == 0 &&
                           buffer_.policy(cls).drop_oldest && !buffer_.policy(cls).never_drop;
    if (excess > 0 && droppable) {
      Span& s = dropped[cls];
      s.first = s.count ? s.first : q.event.seq();
      s.last = q.event.seq();
      ++s.count;
      --excess;
      continue;
    }
    kept.push_back(std::move(q));
  }
  if (dropped.empty()) return;  // only events that must be kept: memory it is
  queued_ = std::move(kept);
  uint64_t n = 0;
  for (const auto& [cls, s] : dropped) {
    n += s.count;
    v1::Event gap;
    gap.set_device_id(options_.gateway_id);
    gap.set_gateway_time_us(wall_now_us());
    v1::GapBody* g = gap.mutable_gap();
    g->set_event_class(static_cast<v1::EventClass>(cls));
    g->set_first_seq(s.first);
    g->set_last_seq(s.last);
    g->set_count(s.count);
    g->set_reason("queue_full");
    gap.set_event_class(class_of(gap));
    if (!clock_trusted_) gap.set_clock_unsynced(true);
    Queued q;
    q.event = std::move(gap);
    q.pinned = true;
    next_seq_ = std::max(next_seq_, buffer_.next_seq());
    q.event.set_seq(next_seq_++);
    q.bytes = q.event.ByteSizeLong();
    queued_.push_back(std::move(q));
    ++stats_.gaps_announced;
  }
  stats_.dropped_in_memory += n;
  // Once an episode; the failure summary a minute carries the running count.
  if (!queue_drop_logged_) {
    queue_drop_logged_ = true;
    log::error("buffer", "commits are failing and ", options_.max_queued_events,
               " events wait in memory: dropping the oldest telemetry/status events (", n,
               " so far; announced by gap events, reason queue_full)");
  }
}

void Router::announce_evictions() {
  for (const storage::Eviction& e : buffer_.take_evictions()) {
    v1::Event gap;
    gap.set_device_id(options_.gateway_id);
    gap.set_gateway_time_us(wall_now_us());
    v1::GapBody* g = gap.mutable_gap();
    g->set_event_class(e.event_class);
    g->set_first_seq(e.first_seq);
    g->set_last_seq(e.last_seq);
    g->set_count(e.count);
    g->set_reason(e.reason);
    gap.set_event_class(class_of(gap));
    if (!clock_trusted_) gap.set_clock_unsynced(true);
    Queued q;
    q.event = std::move(gap);
    q.pinned = true;
    q.announces = e.id;
    push(std::move(q));
    ++stats_.gaps_announced;
  }
}

void Router::raise_alarm(bool active, const std::string& why, bool in_front) {
  if (active == stats_.alarm_active) return;
  stats_.alarm_active = active;
  v1::Event alarm;
  alarm.set_device_id(options_.gateway_id);
  alarm.set_gateway_time_us(wall_now_us());
  v1::AlarmBody* a = alarm.mutable_alarm();
  a->set_rule(kBufferRule);
  a->set_severity(v1::CRITICAL);
  a->set_point("buffer");
  a->set_value(buffer_.fill() * 100.0);
  a->set_threshold(100.0);
  a->set_active(active);
  alarm.set_event_class(class_of(alarm));
  if (!clock_trusted_) alarm.set_clock_unsynced(true);
  Queued q;
  q.event = std::move(alarm);
  q.emergency = true;
  if (active) {
    ++stats_.buffer_alarms;
    log::error("buffer", "alarm buffer_full raised: ", why, "; queued=", queued_.size(),
               " (access and alarm events are never dropped: what does not fit waits in memory)");
  } else {
    log::notice("buffer", "alarm buffer_full cleared: every queued event is committed and the "
                "reserve is whole again");
  }
  if (in_front) {
    put_in_front(std::move(q));
  } else {
    push(std::move(q));
  }
}

void Router::arm_flush_timer(std::chrono::microseconds delay) {
  timer_armed_ = true;
  flush_timer_.expires_after(delay);
  flush_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    timer_armed_ = false;
    on_flush_due();
  });
}

void Router::on_flush_due() {
  if (queued_.empty()) return;
  if (flush().is_ok() || timer_armed_) return;
  arm_flush_timer(retry_delay_);
}

Status Router::flush() {
  if (flushing_) return Status::ok();  // an event queued from inside flush(): the loop takes it
  flushing_ = true;
  Status result = Status::ok();
  bool any = false;
  std::vector<storage::BufferedEvent> group;
  while (!queued_.empty()) {
    const std::size_t n = std::min(kMaxGroup, queued_.size());
    group.clear();
    group.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      const Queued& q = queued_[i];
      storage::BufferedEvent b;
      b.seq = q.event.seq();
      b.event_class = q.event.event_class();
      b.device_id = q.event.device_id();
      b.gateway_time_us = q.event.gateway_time_us();
      b.payload = q.event.SerializeAsString();
      b.cursor = q.cursor;
      b.state_key = q.state_key;
      b.state_value = q.state_value;
      b.pinned = q.pinned;
      b.emergency = q.emergency;
      b.announces_eviction = q.announces;
      group.push_back(std::move(b));
    }
    Result<storage::AppendResult> r = buffer_.append(group);
    if (!r) {
      result = r.status();
      break;
    }
    const std::size_t consumed = r->consumed;
    if (consumed > 0) {
      any = true;
      std::vector<storage::BufferedEvent> stored;
      stored.reserve(consumed - r->dropped);
      for (std::size_t i = 0, d = 0; i < consumed; ++i) {
        if (d < r->dropped_seqs.size() && r->dropped_seqs[d] == group[i].seq) {
          ++d;
          continue;
        }
        stored.push_back(std::move(group[i]));
      }
      stats_.committed += stored.size();
      if (observer_ && !stored.empty()) observer_(stored);
      queued_.erase(queued_.begin(), queued_.begin() + static_cast<std::ptrdiff_t>(consumed));
    }
    if (r->used_reserve && !stats_.alarm_active) {
      raise_alarm(true, "access/alarm events are using the buffer's reserve (store or disk full)",
                  false);
    }
    if (r->blocked) {
      ++stats_.blocked_commits;
      result = Status::full("an access or alarm event does not fit in the buffer, not even in "
                            "its reserve (store or disk full)");
      if (!stats_.alarm_active) raise_alarm(true, result.message(), /*in_front=*/true);
      break;
    }
    if (consumed == 0) break;
  }
  flushing_ = false;
  if (any) on_committed_();
  after_flush(result);
  return result;
}

void Router::after_flush(const Status& result) {
  const auto now = Clock::now();
  if (result) {
    if (stats_.failing) {
      log::notice("buffer", "commits succeed again after ", failures_in_episode_,
                  " failed attempts over ",
                  std::chrono::duration_cast<std::chrono::milliseconds>(now - failing_since_).count(),
                  "ms; queued=", queued_.size());
    }
    stats_.failing = false;
    queue_drop_logged_ = false;
    failures_in_episode_ = 0;
    retry_delay_ = std::chrono::milliseconds(0);
    if (stats_.alarm_active && queued_.empty() && buffer_.reserve_full()) {
      raise_alarm(false, {}, false);
    }
  } else {
    ++stats_.failed_commits;
    ++failures_in_episode_;
    ++failures_since_summary_;
    stats_.last_error = result.message();
    if (!stats_.failing) {
      stats_.failing = true;
      failing_since_ = now;
      last_summary_ = now;
      failures_since_summary_ = 0;
      log::error("buffer", "commit failed, events kept in memory and retried: ", result.message(),
                 " queued=", queued_.size());
    } else if (now - last_summary_ >= options_.failure_summary_every) {
      log::warn("buffer", "commits still failing: ", failures_since_summary_, " attempts in the last ",
                std::chrono::duration_cast<std::chrono::seconds>(now - last_summary_).count(),
                "s, queued=", queued_.size(), " dropped_in_memory=", stats_.dropped_in_memory,
                "; last error: ", result.message());
      last_summary_ = now;
      failures_since_summary_ = 0;
    }
    // Any queued access/alarm event that cannot be stored is worth the alarm.
    if (!stats_.alarm_active) {
      const bool holds_protected = std::any_of(queued_.begin(), queued_.end(), [&](const Queued& q) {
        return buffer_.policy(q.event.event_class()).never_drop && !q.emergency;
      });
      if (holds_protected) raise_alarm(true, "commits fail: " + result.message(), true);
    }
    retry_delay_ = std::clamp(retry_delay_ * 2, std::chrono::milliseconds(kMinRetry),
                              std::chrono::milliseconds(kMaxRetry));
  }
  // Evictions are announced by the upkeep, once a second: until then the buffer merges them
  // per class and reason, so a store that stays full sends one gap event a second, not one per
  // commit.
}

int Router::slowdown() const {
  if (stats_.failing) return 8;
  const double fill = buffer_.fill();
  if (fill >= 0.97) return 8;
  if (fill >= 0.93) return 4;
  if (fill >= 0.85) return 2;
  return 1;
}

void Router::arm_maintenance() {
  if (stopped_) return;
  maintenance_timer_.expires_after(options_.maintenance_interval);
  maintenance_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec || stopped_) return;
    maintain();
    arm_maintenance();
  });
}

void Router::maintain() {
  const bool trusted = options_.wall_clock_trusted();
  if (trusted != clock_trusted_) {
    clock_trusted_ = trusted;
    if (trusted) {
      log::notice("clock", "the wall clock is synchronised: events are no longer flagged "
                           "clock_unsynced");
    } else {
      log::warn("clock", "the wall clock is no longer synchronised: events are flagged "
                         "clock_unsynced");
    }
  }
  if (Status s = buffer_.maintain(); !s) {
    if (stats_.maintenance_errors++ % 60 == 0) {
      log::warn("buffer", "upkeep (retention, reserve, checkpoint) failed, retried every second: ",
                s.message());
    }
  }
  announce_evictions();
  if (!queued_.empty()) request_flush(/*may_linger=*/false);
  // Evictions are announced to centrals one by one; the log gets a summary a minute.
  uint64_t evicted = 0;
  for (auto c : {v1::ACCESS, v1::ALARM, v1::TELEMETRY, v1::STATUS}) evicted += buffer_.stats(c).evicted;
  const auto now = Clock::now();
  if (evicted != evicted_logged_ && now - last_eviction_log_ >= kEvictionLogEvery) {
    std::string detail;
    for (auto c : {v1::TELEMETRY, v1::STATUS, v1::ACCESS, v1::ALARM}) {
      if (buffer_.stats(c).evicted == 0) continue;
      detail += std::string(detail.empty() ? "" : " ") + std::string(protocols::class_name(c)) +
                "=" + std::to_string(buffer_.stats(c).evicted);
    }
    log::warn("buffer", "events removed undelivered since start (announced by gap events): ",
              detail, " fill=", int(buffer_.fill() * 100), "% disk_low=",
              buffer_.disk_low() ? "yes" : "no");
    evicted_logged_ = evicted;
    last_eviction_log_ = now;
  }
}

}  // namespace gw
