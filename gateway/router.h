// Router is where an observation becomes a durable event: it assigns the event's class (from
// its body) and its seq, and commits queued events to the buffer in groups — everything
// submitted during one turn of the core loop goes into one transaction (group commit); telemetry
// may linger up to telemetry_linger to gather more. An event is committed, and only then handed
// to the uplink, when that transaction commits.
//
// When the buffer cannot take everything (EventBuffer's tiers):
//   - droppable events it evicts or does not store are announced: every eviction record becomes
//     a gap event (pinned: never evicted itself), committed together with the record's deletion;
//   - an access or alarm event that does not fit even in the reserve stays queued, in order, and
//     is retried with backoff; the gateway raises a "buffer_full" alarm (it may use the reserve's
//     last pages, so it is stored first), logs it and counts it. The alarm clears once the queue
//     has drained and the reserve is whole again.
//   - a commit that fails (I/O error, a disk that filled up at once) keeps the events queued and
//     is retried every 100 ms .. 1 s, so the buffer recovers within a second or so of space
//     returning. The first failure is logged, then one summary a minute until commits succeed.
//   - the queue in memory is bounded (max_queued_events): beyond it, the oldest droppable events
//     are dropped and announced by a gap event (reason queue_full); access and alarm never are.
// Back-pressure: slowdown() tells pollers to poll telemetry less often as the room for droppable
// events fills (x2 from 85 %, x4 from 93 %, x8 from 97 % or while commits fail).
// Events observed while the wall clock is not trusted are flagged clock_unsynced.
// Core thread only.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "campus/gateway/v1/gateway.pb.h"
#include "drivers/asio.h"
#include "storage/event_buffer.h"

namespace gw {

struct RouterOptions {
  std::string gateway_id = "gateway";  // device_id of the gateway's own events (gap, buffer_full)
  std::size_t max_queued_events = 50000;
  std::chrono::milliseconds maintenance_interval{1000};
  std::chrono::seconds failure_summary_every{60};
  // How long a telemetry event may wait in memory for others to share its transaction and its
  // publish. Any other event is committed on the next turn of the loop, taking waiting
  // telemetry with it. 0: telemetry too.
  std::chrono::microseconds telemetry_linger{0};
  // Whether the wall clock can be trusted now; default: storage::wall_clock_state().trusted().
  std::function<bool()> wall_clock_trusted;
};

struct RouterStats {
  uint64_t committed = 0;          // events stored
  uint64_t failed_commits = 0;     // commit attempts that failed (I/O error, disk full)
  uint64_t blocked_commits = 0;    // commits that stopped at an access/alarm event with no room
  uint64_t dropped_in_memory = 0;  // droppable events dropped from the queue (queue_full)
  uint64_t gaps_announced = 0;     // gap events queued
  uint64_t buffer_alarms = 0;      // buffer_full alarms raised
  uint64_t maintenance_errors = 0;
  bool failing = false;            // the last commit attempt failed or blocked
  bool alarm_active = false;
  std::string last_error;
};

class Router {
 public:
  static constexpr std::size_t kMaxGroup = 1000;  // events per transaction

  Router(asio::any_io_executor core, storage::EventBuffer& buffer,
         std::function<void()> on_committed, RouterOptions options = {});

  // Announces evictions left unannounced by an earlier run and starts the periodic upkeep
  // (retention, reserve, WAL, clock check).
  void start();
  void stop();

  // Assigns class and seq and queues the event for the next group commit. Returns the seq.
  // `cursor`, when set, is the device's read position committed in the same transaction.
  uint64_t submit(campus::gateway::v1::Event event, std::string cursor = {});
  // Like submit(), and commits a durable state row (BufferedEvent::state_key/state_value) in the
  // same transaction: the alarm engine's active alarms. Not shown to the submit observer.
  uint64_t submit_with_state(campus::gateway::v1::Event event, std::string state_key,
                             std::string state_value);
  // Commits everything queued that fits, now. Used at shutdown.
  Status flush();

  // Sees every group of events right after it committed (gatewayctl tail, metrics).
  using Observer = std::function<void(std::span<const storage::BufferedEvent>)>;
  void set_observer(Observer observer) { observer_ = std::move(observer); }
  // Sees every event submit() queues, with its class and seq set, before it is committed (the
  // alarm engine's input). Alarm events are not shown. It may submit events itself.
  // A seq seen here may still move up by one: an emergency alarm can be put in front of a queue
  // that could not commit.
  using SubmitObserver = std::function<void(const campus::gateway::v1::Event&)>;
  void set_submit_observer(SubmitObserver observer) { submit_observer_ = std::move(observer); }

  std::size_t queued() const { return queued_.size(); }
  uint64_t committed_total() const { return stats_.committed; }
  const RouterStats& stats() const { return stats_; }
  // How many times less often low-priority (telemetry) polls should run: 1, 2, 4 or 8.
  int slowdown() const;
  bool clock_trusted() const { return clock_trusted_; }

  static campus::gateway::v1::EventClass class_of(const campus::gateway::v1::Event& event);

 private:
  struct Queued {
    campus::gateway::v1::Event event;  // class and seq set
    std::string cursor;
    std::string state_key;
    std::string state_value;
    bool pinned = false;
    bool emergency = false;
    uint64_t announces = 0;
    std::size_t bytes = 0;
  };

  uint64_t enqueue(campus::gateway::v1::Event& event, std::string cursor, std::string state_key,
                   std::string state_value);
  uint64_t push(Queued item);
  void put_in_front(Queued item);
  void bound_queue();
  void announce_evictions();
  void raise_alarm(bool active, const std::string& why, bool in_front);
  void after_flush(const Status& result);
  // Commits soon: next turn of the loop, or after telemetry_linger when only lingering telemetry
  // waits, or after the retry delay while commits fail.
  void request_flush(bool may_linger);
  void arm_flush_timer(std::chrono::microseconds delay);
  void on_flush_due();
  void arm_maintenance();
  void maintain();
  int64_t wall_now_us() const;

  asio::any_io_executor core_;
  storage::EventBuffer& buffer_;
  std::function<void()> on_committed_;
  RouterOptions options_;
  Observer observer_;
  SubmitObserver submit_observer_;
  asio::steady_timer flush_timer_;  // telemetry linger, or the retry after a failed commit
  asio::steady_timer maintenance_timer_;
  std::deque<Queued> queued_;
  uint64_t next_seq_ = 0;  // the next seq to hand out (>= buffer_.next_seq())
  bool flush_posted_ = false;
  bool timer_armed_ = false;
  bool flushing_ = false;
  bool stopped_ = false;
  bool clock_trusted_ = true;
  std::chrono::milliseconds retry_delay_{0};
  RouterStats stats_;
  // Failure episode bookkeeping for the log.
  std::chrono::steady_clock::time_point failing_since_{};
  std::chrono::steady_clock::time_point last_summary_{};
  uint64_t failures_in_episode_ = 0;
  uint64_t failures_since_summary_ = 0;
  uint64_t evicted_logged_ = 0;
  bool queue_drop_logged_ = false;
  std::chrono::steady_clock::time_point last_eviction_log_{};
};

}  // namespace gw
