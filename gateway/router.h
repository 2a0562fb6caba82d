// Router is where an observation becomes a durable event: it assigns the event's class (from
// its body) and its seq, and commits queued events to the buffer in groups — everything
// submitted during one turn of the core loop goes into one transaction (group commit). An event
// is committed, and only then handed to the uplink, when that transaction commits. When a commit
// fails (disk full, I/O error) the events stay queued in order, with their seqs, and the commit
// is retried with backoff. Core thread only.
#pragma once

#include <chrono>
#include <functional>
#include <span>
#include <vector>

#include "campus/gateway/v1/gateway.pb.h"
#include "drivers/asio.h"
#include "storage/event_buffer.h"

namespace gw {

class Router {
 public:
  static constexpr std::size_t kMaxGroup = 1000;  // events per transaction

  Router(asio::any_io_executor core, storage::EventBuffer& buffer,
         std::function<void()> on_committed);

  // Assigns class and seq and queues the event for the next group commit. Returns the seq.
  uint64_t submit(campus::gateway::v1::Event event);
  // Commits everything queued, now. Used at shutdown.
  Status flush();

  // Sees every group of events right after it committed (gatewayctl tail, metrics).
  using Observer = std::function<void(std::span<const storage::BufferedEvent>)>;
  void set_observer(Observer observer) { observer_ = std::move(observer); }

  std::size_t queued() const { return queued_.size(); }
  uint64_t committed_total() const { return committed_total_; }

  static campus::gateway::v1::EventClass class_of(const campus::gateway::v1::Event& event);

 private:
  void schedule_flush(std::chrono::milliseconds delay);
  void on_flush_timer();

  asio::any_io_executor core_;
  storage::EventBuffer& buffer_;
  std::function<void()> on_committed_;
  Observer observer_;
  asio::steady_timer retry_timer_;
  std::vector<storage::BufferedEvent> queued_;
  bool flush_scheduled_ = false;
  std::chrono::milliseconds retry_delay_{0};
  uint64_t committed_total_ = 0;
  uint64_t failed_commits_ = 0;
};

}  // namespace gw
