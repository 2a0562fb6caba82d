// Uplink drains the event buffer to the broker over one MQTT connection (Paho's async client),
// and owns everything MQTT: connect and reconnect, the Last Will, the retained state, health.
//
// Delivery: every event publish is QoS 1 and carries one EventBatch of one class. At most
// max_inflight publishes await their PUBACK at once — the next batch goes out only as PUBACKs
// come back, which is also what keeps Paho fast. Rows are acked in the buffer on PUBACK, never
// before (deleted with the next commit, or within 100 ms: EventBuffer::defer_ack). When the
// connection is lost, every unacked row is released and published again after
// the next connect, so duplicates are bounded by the publishes in flight (max_inflight batches).
// Live first, then the backlog: at each connect the buffer's next seq becomes the boundary.
// Rows below it are the backlog; they drain by class priority (alarm, access, status, telemetry)
// through a window of their own — at most backlog_window publishes in flight, a window that
// grows while PUBACKs come back fast and halves when their latency climbs — so a quarter of
// max_inflight always stays free for live events. Live events (committed after the connect) of a
// class go out once that class's backlog has been sent: per device and class, publish order is
// seq order, always. An event goes out with historical = true when it waited out an outage: it
// is below the boundary, and the connection followed a failed or lost one, or the event was
// committed before this process started. Seqs, not clocks, decide: a wall-clock step changes
// nothing.
//
// Reconnects: full-jitter backoff (uniform in [0, min(max, initial * 2^attempt)]), the attempt
// count reset only once a link stayed up stable_after; the first connect waits a random start-up
// splay in [0, startup_splay], so gateways restarted together (a campus power cut) spread out.
// Sessions are clean: after any reconnect, whatever the broker had not acknowledged is
// published again from the buffer, whether or not the broker kept a session.
//
// Threading: Paho calls back on its own threads; each callback only posts to the core executor.
// All state lives on the core thread.
#pragma once

#include <array>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "campus/gateway/v1/gateway.pb.h"
#include "drivers/asio.h"
#include "protocols/topics.h"
#include "storage/event_buffer.h"

namespace mqtt {
class async_client;
class connect_options;
}  // namespace mqtt

namespace gw {

struct UplinkSettings {
  std::string uri;
  std::string client_id;
  std::string username;
  std::string password;  // read from password_file; never logged
  struct Tls {
    std::string ca_file, cert_file, key_file;
    bool verify_hostname = true;
  };
  std::optional<Tls> tls;
  protocols::TopicRoot topics;
  std::chrono::seconds keepalive{30};
  int max_inflight = 64;
  int batch_max_events = 100;
  std::size_t batch_max_bytes = 256 * 1024;
  std::chrono::milliseconds backoff_initial{500};
  std::chrono::milliseconds backoff_max{30000};
  std::chrono::seconds stable_after{30};   // a link up this long resets the backoff
  std::chrono::milliseconds startup_splay{0};  // the first connect waits uniform [0, this]
  std::chrono::seconds health_interval{30};
  // GatewayState fields.
  std::string version;
  std::string boot_id;
  int64_t started_at_us = 0;
};

struct UplinkStats {
  bool connected = false;
  int64_t connected_since_us = 0;
  int64_t disconnected_since_us = 0;  // when the link was last lost (or the start), 0 while up
  uint64_t reconnects = 0;          // successful connects after the first
  uint64_t published_messages = 0;
  uint64_t published_events = 0;
  uint64_t acked_events = 0;
  uint64_t republished_events = 0;  // released after a lost connection, to be sent again
  uint64_t historical_events = 0;   // published with historical = true
  uint64_t backlog_events = 0;      // published from below the boundary (the backlog lane)
  uint64_t backlog_pending_at_connect = 0;  // rows in the buffer when the link last came up
  int64_t backlog_drained_after_ms = -1;    // from that connect until the backlog was all sent
  double backlog_window = 0;        // the backlog lane's current window (publishes in flight)
  double backlog_ack_latency_ms = 0;  // smoothed PUBACK latency of backlog publishes
  int64_t startup_splay_ms = 0;     // the splay the first connect waited
  std::size_t inflight = 0;
  std::string last_error;
};

class Uplink {
 public:
  using HealthSource = std::function<campus::gateway::v1::GatewayHealth()>;

  Uplink(asio::any_io_executor core, storage::EventBuffer& buffer, UplinkSettings settings,
         HealthSource health);
  ~Uplink();
  Uplink(const Uplink&) = delete;
  Uplink& operator=(const Uplink&) = delete;

  // Starts connecting; returns at once.
  void start();
  // The buffer has new committed events.
  void on_committed();
  // Publishes the retained offline state and disconnects. Blocks the calling (core) thread for
  // at most `grace`: only used at shutdown, when nothing else runs.
  void stop(std::chrono::milliseconds grace);

  const UplinkStats& stats() const { return stats_; }
  // Sees each PUBACK: how long the batch waited for it, and how many events it carried.
  using AckObserver = std::function<void(std::chrono::microseconds, std::size_t events)>;
  void set_ack_observer(AckObserver observer) { ack_observer_ = std::move(observer); }

 private:
  class PahoAdapter;  // Paho's callback and listener interfaces, posting to the core
  struct InFlight {
    std::vector<uint64_t> seqs;
    std::chrono::steady_clock::time_point sent_at{};
    bool backlog = false;
  };

  void connect();
  void schedule_reconnect(const std::string& why);
  void on_connected(bool session_present);
  void on_connect_failed(const std::string& why);
  void on_connection_lost(const std::string& why);
  void on_publish_done(uint64_t id, bool ok, const std::string& why);
  Status flush_acks();
  void drain();
  bool publish_batch(campus::gateway::v1::EventClass cls, bool backlog);
  bool backlog_open(campus::gateway::v1::EventClass cls);
  void adapt_backlog_window(std::chrono::microseconds latency);
  void note_link_down();
  void publish_state(bool online);
  void publish_health();
  void schedule_health();
  void reset_link();

  asio::any_io_executor core_;
  storage::EventBuffer& buffer_;
  UplinkSettings settings_;
  HealthSource health_;
  asio::steady_timer reconnect_timer_;
  asio::steady_timer health_timer_;
  asio::steady_timer ack_timer_;  // deletes delivered rows when no commit took them along
  bool ack_timer_armed_ = false;
  bool ack_failing_ = false;
  std::unique_ptr<PahoAdapter> adapter_;
  std::unique_ptr<mqtt::connect_options> connect_options_;
  std::unique_ptr<mqtt::async_client> client_;
  std::mt19937_64 rng_;
  bool connecting_ = false;
  bool outage_ = false;              // a connect failed or the link dropped since the last connect
  bool link_followed_outage_ = false;
  bool stopping_ = false;
  int attempt_ = 0;
  std::chrono::steady_clock::time_point connected_at_{};
  uint64_t next_publish_id_ = 1;
  std::map<uint64_t, InFlight> inflight_;
  uint64_t start_seq_ = 0;      // the buffer's next seq when this process started
  uint64_t boundary_seq_ = 0;   // the buffer's next seq when the current link came up
  std::array<bool, storage::kClassCount> backlog_done_{};
  std::size_t backlog_inflight_ = 0;
  double backlog_window_ = 1;
  double min_backlog_latency_ms_ = 0;
  std::chrono::steady_clock::time_point last_window_cut_{};
  UplinkStats stats_;
  AckObserver ack_observer_;
};

}  // namespace gw
