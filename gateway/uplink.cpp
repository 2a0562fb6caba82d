#include "gateway/uplink.h"

#include <mqtt/async_client.h>

#include <algorithm>
#include <functional>
#include <limits>
#include <mutex>
#include <string_view>
#include <utility>

#include "gateway/log.h"
#include "gateway/tls_diagnosis.h"
#include "protocols/event_batch_encoder.h"

namespace gw {

namespace v1 = campus::gateway::v1;

namespace {

int64_t wall_now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Paho keeps the C library's failure text (e.g. the TLS or socket error) inside the token and
// only hands it out by throwing. The token is complete and unlocked when a listener runs, so
// try_wait() returns at once.
std::string describe_failure(const mqtt::token& tok) {
  try {
    const_cast<mqtt::token&>(tok).try_wait();
  } catch (const mqtt::exception& e) {
    return e.what();
  }
  return mqtt::exception::error_str(tok.get_return_code());
}

// Paho C's trace goes to one process-wide callback; it is read only while a TLS connect attempt
// is under way (the trace level is raised for that time), by the uplink registered here.
std::mutex g_trace_mutex;
std::function<void(std::string_view)> g_trace_sink;

// NOLINTNEXTLINE(readability-non-const-parameter): MQTTAsync_traceCallback's type says char*
void on_paho_trace(enum MQTTASYNC_TRACE_LEVELS /*level*/, char* message) {
  std::lock_guard<std::mutex> lock(g_trace_mutex);
  if (g_trace_sink && message) g_trace_sink(message);
}

// "ssl://host:port" -> "host" ("[::1]:8883" -> "::1").
std::string uri_host(std::string_view uri) {
  if (auto p = uri.find("://"); p != std::string_view::npos) uri.remove_prefix(p + 3);
  if (!uri.empty() && uri.front() == '[') return std::string(uri.substr(1, uri.find(']') - 1));
  return std::string(uri.substr(0, uri.rfind(':')));
}

constexpr v1::EventClass kDrainOrder[] = {v1::ALARM, v1::ACCESS, v1::STATUS, v1::TELEMETRY};
// The backlog lane's PUBACK latency may reach this many times its best before the window halves
// (and never less than kMinLatencyTargetMs: on loopback a few ms are noise, not congestion).
constexpr double kLatencyFactor = 4.0;
constexpr double kMinLatencyTargetMs = 20.0;
// Delivered rows wait at most this long for a commit to delete them with.
constexpr auto kAckFlushAfter = std::chrono::milliseconds(100);

}  // namespace

// Everything Paho calls, on Paho's threads. Each method only posts to the core: never block here.
class Uplink::PahoAdapter : public mqtt::callback {
 public:
  PahoAdapter(asio::any_io_executor core, Uplink* uplink)
      : core_(std::move(core)), uplink_(uplink), connect_(*this), publish_(*this) {}

  void connection_lost(const std::string& cause) override {
    post([u = uplink_, cause] { u->on_connection_lost(cause.empty() ? "connection lost" : cause); });
  }

  mqtt::iaction_listener& connect_listener() { return connect_; }
  mqtt::iaction_listener& publish_listener() { return publish_; }

  // Paho reports a failed TLS handshake only as "TCP/TLS connect failure". Why it failed is in
  // Paho's protocol trace (TLS alerts, its host-name check), written on Paho's threads before
  // the connect listener runs: collected per attempt.
  void begin_attempt(TlsAttempt base) {
    std::lock_guard<std::mutex> lock(tls_mutex_);
    attempt_ = std::move(base);
    collecting_ = true;
  }
  void note_trace(std::string_view text) { note(attempt_.trace, text); }
  std::string diagnose(const std::string& paho_text) {
    std::lock_guard<std::mutex> lock(tls_mutex_);
    collecting_ = false;
    std::string why = diagnose_tls_failure(attempt_);
    return why.empty() ? paho_text : "TLS: " + why + " [" + paho_text + "]";
  }

 private:
  template <typename F>
  void post(F&& f) {
    asio::post(core_, std::forward<F>(f));
  }

  struct ConnectListener : mqtt::iaction_listener {
    explicit ConnectListener(PahoAdapter& a) : a_(a) {}
    void on_success(const mqtt::token& tok) override {
      bool session_present = false;
      try {
        session_present = tok.get_connect_response().is_session_present();
      } catch (const std::exception&) {
        // No CONNACK details on this token; clean sessions are assumed.
      }
      a_.post([u = a_.uplink_, session_present] { u->on_connected(session_present); });
    }
    void on_failure(const mqtt::token& tok) override {
      a_.post([u = a_.uplink_, why = a_.diagnose(describe_failure(tok))] {
        u->on_connect_failed(why);
      });
    }
    PahoAdapter& a_;
  };

  struct PublishListener : mqtt::iaction_listener {
    explicit PublishListener(PahoAdapter& a) : a_(a) {}
    void on_success(const mqtt::token& tok) override { done(tok, true, {}); }
    void on_failure(const mqtt::token& tok) override { done(tok, false, describe_failure(tok)); }
    void done(const mqtt::token& tok, bool ok, std::string why) {
      const auto id = reinterpret_cast<uintptr_t>(tok.get_user_context());
      a_.post([u = a_.uplink_, id, ok, why = std::move(why)] { u->on_publish_done(id, ok, why); });
    }
    PahoAdapter& a_;
  };

  asio::any_io_executor core_;
  Uplink* uplink_;
  ConnectListener connect_;
  PublishListener publish_;
  void note(std::vector<std::string>& lines, std::string_view text) {
    std::lock_guard<std::mutex> lock(tls_mutex_);
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.remove_suffix(1);
    // At this trace level Paho also logs every function entry and exit: keep the TLS lines.
    const bool tls = text.find("SSL alert") != std::string_view::npos ||
                     text.find("X509_check") != std::string_view::npos ||
                     text.find("certificate request") != std::string_view::npos;
    if (collecting_ && tls && lines.size() < 64) lines.emplace_back(text);
  }

  std::mutex tls_mutex_;
  bool collecting_ = false;
  TlsAttempt attempt_;
};

Uplink::Uplink(asio::any_io_executor core, storage::EventBuffer& buffer, UplinkSettings settings,
               HealthSource health)
    : core_(core),
      buffer_(buffer),
      settings_(std::move(settings)),
      health_(std::move(health)),
      reconnect_timer_(core),
      health_timer_(core),
      ack_timer_(core),
      adapter_(std::make_unique<PahoAdapter>(core, this)),
      rng_(std::random_device{}()) {
  mqtt::create_options create(MQTTVERSION_3_1_1);
  // Our window bounds what we hand Paho; its own buffer only needs room for that plus state.
  create.set_max_buffered_messages(settings_.max_inflight + 8);
  client_ = std::make_unique<mqtt::async_client>(settings_.uri, settings_.client_id, create,
                                                 nullptr);
  client_->set_callback(*adapter_);

  v1::GatewayState offline;
  offline.set_online(false);
  offline.set_boot_id(settings_.boot_id);
  offline.set_version(settings_.version);
  offline.set_started_at_us(settings_.started_at_us);

  connect_options_ = std::make_unique<mqtt::connect_options>();
  connect_options_->set_mqtt_version(MQTTVERSION_3_1_1);  // no silent fallback to 3.1
  connect_options_->set_clean_session(true);
  connect_options_->set_keep_alive_interval(static_cast<int>(settings_.keepalive.count()));
  connect_options_->set_connect_timeout(10);
  connect_options_->set_automatic_reconnect(false);  // ours has jitter and republishes
  connect_options_->set_max_inflight(settings_.max_inflight + 4);
  connect_options_->set_will(mqtt::will_options(protocols::state_topic(settings_.topics),
                                                offline.SerializeAsString(), 1, true));
  if (!settings_.username.empty()) connect_options_->set_user_name(settings_.username);
  if (!settings_.password.empty()) connect_options_->set_password(settings_.password);
  if (settings_.tls) {
    mqtt::ssl_options ssl;
    ssl.set_trust_store(settings_.tls->ca_file);
    if (!settings_.tls->cert_file.empty()) ssl.set_key_store(settings_.tls->cert_file);
    if (!settings_.tls->key_file.empty()) ssl.set_private_key(settings_.tls->key_file);
    ssl.set_enable_server_cert_auth(true);
    ssl.set_verify(settings_.tls->verify_hostname);  // Paho leaves hostname checks off otherwise
    ssl.set_ssl_version(MQTT_SSL_VERSION_TLS_1_2);
    // TLS 1.2 is the floor: Paho C 1.3 ignores set_ssl_version() with OpenSSL 1.1+, but sets
    // OpenSSL security level 1, at which OpenSSL 3 refuses TLS 1.0 and 1.1 (tested).
    connect_options_->set_ssl(std::move(ssl));
    // No ssl_options error handler: Paho C++ 1.2 hands the C library a pointer to the
    // ssl_options object it was set on, and async_client::connect() moves that object without
    // updating the pointer, so the first TLS error calls through freed memory (crashed here).
    // The trace below says more anyway.
    {
      std::lock_guard<std::mutex> lock(g_trace_mutex);
      g_trace_sink = [a = adapter_.get()](std::string_view line) { a->note_trace(line); };
    }
    MQTTAsync_setTraceCallback(on_paho_trace);
    MQTTAsync_setTraceLevel(MQTTASYNC_TRACE_ERROR);
  }
}

Uplink::~Uplink() {
  if (settings_.tls) {
    std::lock_guard<std::mutex> lock(g_trace_mutex);
    g_trace_sink = nullptr;
  }
  // Paho's threads must be gone before the adapter they call into.
  client_.reset();
}

void Uplink::start() {
  stats_.disconnected_since_us = wall_now_us();
  start_seq_ = buffer_.next_seq();
  if (settings_.startup_splay.count() <= 0) {
    connect();
    return;
  }
  std::uniform_int_distribution<int64_t> pick(0, settings_.startup_splay.count());
  const auto delay = std::chrono::milliseconds(pick(rng_));
  stats_.startup_splay_ms = delay.count();
  log::notice("mqtt", "first connect to ", settings_.uri, " in ", delay.count(),
              "ms (start-up splay, up to ", settings_.startup_splay.count(), "ms)");
  reconnect_timer_.expires_after(delay);
  reconnect_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) connect();
  });
}

void Uplink::connect() {
  if (stopping_ || connecting_ || stats_.connected) return;
  connecting_ = true;
  if (settings_.tls) {
    TlsAttempt attempt;
    attempt.host = uri_host(settings_.uri);
    attempt.ca_file = settings_.tls->ca_file;
    attempt.client_cert = !settings_.tls->cert_file.empty();
    adapter_->begin_attempt(std::move(attempt));
    // Alerts and the host-name check; the IP check's result is only logged at this level.
    MQTTAsync_setTraceLevel(MQTTASYNC_TRACE_MINIMUM);
  }
  try {
    client_->connect(*connect_options_, nullptr, adapter_->connect_listener());
  } catch (const mqtt::exception& e) {
    connecting_ = false;
    schedule_reconnect(e.what());
  }
}

void Uplink::schedule_reconnect(const std::string& why) {
  if (stopping_) return;
  outage_ = true;
  // Full jitter: uniform in [0, min(max, initial * 2^attempt)], so that a campus full of
  // gateways losing the same broker does not come back in lockstep.
  const auto ceiling = std::min<int64_t>(settings_.backoff_max.count(),
                                         settings_.backoff_initial.count() << std::min(attempt_, 20));
  std::uniform_int_distribution<int64_t> pick(0, std::max<int64_t>(ceiling, 1));
  const auto delay = std::chrono::milliseconds(pick(rng_));
  ++attempt_;
  stats_.last_error = why;
  log::warn("mqtt", "not connected to ", settings_.uri, ": ", why, "; retrying in ",
            delay.count(), "ms (attempt ", attempt_, ")");
  reconnect_timer_.expires_after(delay);
  reconnect_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) connect();
  });
}

void Uplink::on_connected(bool session_present) {
  connecting_ = false;
  // Paho C++ 1.2.0 may report one connect twice; only the first report counts.
  if (stopping_ || stats_.connected) return;
  const bool first = stats_.connected_since_us == 0;
  stats_.connected = true;
  stats_.connected_since_us = wall_now_us();
  stats_.disconnected_since_us = 0;
  if (!first) ++stats_.reconnects;
  connected_at_ = std::chrono::steady_clock::now();
  if (settings_.tls) MQTTAsync_setTraceLevel(MQTTASYNC_TRACE_ERROR);
  link_followed_outage_ = outage_;
  outage_ = false;
  // Everything committed before this moment is the backlog; everything after is live.
  boundary_seq_ = buffer_.next_seq();
  backlog_done_.fill(false);
  backlog_inflight_ = 0;
  const double lane = std::max(1, settings_.max_inflight - std::max(1, settings_.max_inflight / 4));
  backlog_window_ = std::max(1.0, lane / 2);
  min_backlog_latency_ms_ = 0;
  stats_.backlog_window = backlog_window_;
  stats_.backlog_pending_at_connect = buffer_.pending_total();
  stats_.backlog_drained_after_ms = stats_.backlog_pending_at_connect ? -1 : 0;
  log::notice("mqtt", "connected to ", settings_.uri, " client_id=", settings_.client_id,
              " session_present=", session_present ? "yes" : "no",
              " pending=", buffer_.pending_total());
  publish_state(true);
  schedule_health();
  drain();
}

void Uplink::on_connect_failed(const std::string& why) {
  connecting_ = false;
  schedule_reconnect("connect failed: " + why);
}

void Uplink::on_connection_lost(const std::string& why) {
  if (!stats_.connected) return;
  note_link_down();
  reset_link();
  schedule_reconnect("connection lost: " + why);
}

// Only a link that stayed up a while earns a fresh backoff; one that flaps keeps backing off.
void Uplink::note_link_down() {
  if (stats_.connected &&
      std::chrono::steady_clock::now() - connected_at_ >= settings_.stable_after) {
    attempt_ = 0;
  }
}

void Uplink::reset_link() {
  if (stats_.connected) stats_.disconnected_since_us = wall_now_us();
  stats_.connected = false;
  health_timer_.cancel();
  // Whatever awaited a PUBACK goes out again on the next connection; callbacks that still
  // arrive for the old publishes find nothing here and are ignored.
  for (const auto& [id, f] : inflight_) stats_.republished_events += f.seqs.size();
  inflight_.clear();
  stats_.inflight = 0;
  backlog_inflight_ = 0;
  buffer_.release_all();
}

void Uplink::on_committed() {
  if (stats_.connected) drain();
}

// Whether the class still has backlog rows (below the boundary) that were not sent yet.
bool Uplink::backlog_open(v1::EventClass cls) {
  const auto c = static_cast<std::size_t>(cls);
  if (c >= backlog_done_.size() || backlog_done_[c]) return false;
  if (!buffer_.has_unleased_below(cls, boundary_seq_)) backlog_done_[c] = true;
  return !backlog_done_[c];
}

void Uplink::drain() {
  while (stats_.connected && !stopping_ &&
         inflight_.size() < static_cast<std::size_t>(settings_.max_inflight)) {
    // Leased and delivered-but-undeleted batches together stay within max_inflight, so a crash
    // duplicates no more than a lost connection does.
    if (inflight_.size() + buffer_.deferred_ack_batches() >=
        static_cast<std::size_t>(settings_.max_inflight)) {
      (void)flush_acks();
    }
    bool sent = false;
    for (v1::EventClass cls : kDrainOrder) {
      if (backlog_open(cls)) {
        // This class's live rows wait behind its backlog (per-class order); while the backlog
        // window is full, lower classes may still send their live rows.
        if (double(backlog_inflight_) >= backlog_window_) continue;
        if (publish_batch(cls, /*backlog=*/true)) {
          sent = true;
          break;
        }
        if (!stats_.connected) return;
        backlog_done_[static_cast<std::size_t>(cls)] = true;
      }
      if (publish_batch(cls, /*backlog=*/false)) {
        sent = true;
        break;  // start again from the most urgent class
      }
      if (!stats_.connected) return;
    }
    if (!sent) break;
  }
  if (stats_.connected && stats_.backlog_drained_after_ms < 0 &&
      std::all_of(std::begin(kDrainOrder), std::end(kDrainOrder),
                  [&](v1::EventClass c) { return !backlog_open(c); })) {
    stats_.backlog_drained_after_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                          std::chrono::steady_clock::now() - connected_at_)
                                          .count();
    log::notice("mqtt", "backlog of ", stats_.backlog_pending_at_connect, " events sent in ",
                stats_.backlog_drained_after_ms, "ms after the connect (backlog window now ",
                int(backlog_window_), ")");
  }
}

// AIMD on the backlog lane: one more publish in flight per window's worth of fast PUBACKs, half
// as many (at most once per round trip) when PUBACKs come back slowly.
void Uplink::adapt_backlog_window(std::chrono::microseconds latency) {
  const double ms = double(latency.count()) / 1000.0;
  if (min_backlog_latency_ms_ == 0 || ms < min_backlog_latency_ms_) min_backlog_latency_ms_ = ms;
  stats_.backlog_ack_latency_ms =
      stats_.backlog_ack_latency_ms == 0 ? ms : stats_.backlog_ack_latency_ms * 0.9 + ms * 0.1;
  const double lane = std::max(1, settings_.max_inflight - std::max(1, settings_.max_inflight / 4));
  const double target = std::max(kMinLatencyTargetMs, kLatencyFactor * min_backlog_latency_ms_);
  const auto now = std::chrono::steady_clock::now();
  if (ms > target) {
    if (now - last_window_cut_ >= latency) {
      backlog_window_ = std::max(1.0, backlog_window_ / 2);
      last_window_cut_ = now;
    }
  } else {
    backlog_window_ = std::min(lane, backlog_window_ + 1.0 / backlog_window_);
  }
  stats_.backlog_window = backlog_window_;
}

bool Uplink::publish_batch(v1::EventClass cls, bool backlog) {
  Result<std::vector<storage::BufferedEvent>> leased =
      buffer_.lease(cls, static_cast<std::size_t>(settings_.batch_max_events),
                    settings_.batch_max_bytes,
                    backlog ? boundary_seq_ : std::numeric_limits<uint64_t>::max());
  if (!leased) {
    log::error("buffer", "reading the buffer failed: ", leased.status().message());
    return false;
  }
  if (leased->empty()) return false;

  protocols::EventBatchEncoder batch(settings_.topics.gateway_id);
  InFlight flight;
  flight.backlog = backlog;
  uint64_t historical = 0;
  for (const storage::BufferedEvent& e : *leased) {
    const bool waited =
        e.seq < boundary_seq_ && (link_followed_outage_ || e.seq < start_seq_);
    historical += waited;
    batch.add(e.payload, waited);
    flight.seqs.push_back(e.seq);
  }
  const uint64_t id = next_publish_id_++;
  const std::size_t n = flight.seqs.size();
  flight.sent_at = std::chrono::steady_clock::now();
  inflight_.emplace(id, std::move(flight));
  stats_.inflight = inflight_.size();
  try {
    auto msg = mqtt::make_message(protocols::events_topic(settings_.topics, cls), batch.take(), 1,
                                  false);
    client_->publish(msg, reinterpret_cast<void*>(static_cast<uintptr_t>(id)),
                     adapter_->publish_listener());
  } catch (const mqtt::exception& e) {
    // Paho refused the publish: the link is not usable. Start over on a fresh connection.
    log::warn("mqtt", "publish refused by the client library: ", e.what());
    note_link_down();
    reset_link();
    try {
      client_->disconnect(0);
    } catch (const mqtt::exception&) {
      // Already disconnected.
    }
    schedule_reconnect(std::string("publish refused: ") + e.what());
    return false;
  }
  stats_.published_messages += 1;
  stats_.published_events += n;
  stats_.historical_events += historical;
  if (backlog) {
    ++backlog_inflight_;
    stats_.backlog_events += n;
  }
  return true;
}

void Uplink::on_publish_done(uint64_t id, bool ok, const std::string& why) {
  auto it = inflight_.find(id);
  if (it == inflight_.end()) return;  // from a connection that is gone; rows were released
  if (!ok) {
    // A QoS 1 publish that failed without the connection dropping: treat the link as broken
    // rather than skip rows, so order and at-least-once both hold.
    log::warn("mqtt", "publish failed: ", why);
    note_link_down();
    reset_link();
    try {
      client_->disconnect(0);
    } catch (const mqtt::exception&) {
      // Already disconnected.
    }
    schedule_reconnect("publish failed: " + why);
    return;
  }
  // The rows are deleted with the next commit, or with other PUBACKs' rows in one transaction
  // (drain() keeps leased plus deferred batches within max_inflight).
  buffer_.defer_ack(it->second.seqs);
  if (!ack_timer_armed_) {
    ack_timer_armed_ = true;
    ack_timer_.expires_after(kAckFlushAfter);
    ack_timer_.async_wait([this](const boost::system::error_code& ec) {
      ack_timer_armed_ = false;
      if (!ec) (void)flush_acks();
    });
  }
  stats_.acked_events += it->second.seqs.size();
  const auto latency = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::steady_clock::now() - it->second.sent_at);
  if (it->second.backlog) adapt_backlog_window(latency);
  if (ack_observer_) ack_observer_(latency, it->second.seqs.size());
  if (it->second.backlog && backlog_inflight_ > 0) --backlog_inflight_;
  inflight_.erase(it);
  stats_.inflight = inflight_.size();
  drain();
}

Status Uplink::flush_acks() {
  Status s = buffer_.flush_acks();
  // The rows stay and go out again later: a duplicate, never a loss. Logged once an episode.
  if (!s && !ack_failing_) {
    log::error("buffer", "deleting delivered rows failed, they will be resent: ", s.message());
  } else if (s && ack_failing_) {
    log::notice("buffer", "delivered rows are deleted again");
  }
  ack_failing_ = !s;
  return s;
}

void Uplink::publish_state(bool online) {
  v1::GatewayState state;
  state.set_online(online);
  state.set_boot_id(settings_.boot_id);
  state.set_version(settings_.version);
  state.set_started_at_us(settings_.started_at_us);
  try {
    client_->publish(protocols::state_topic(settings_.topics), state.SerializeAsString(), 1, true);
  } catch (const mqtt::exception& e) {
    log::warn("mqtt", "state publish failed: ", e.what());
  }
}

void Uplink::schedule_health() {
  health_timer_.expires_after(settings_.health_interval);
  health_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec || !stats_.connected) return;
    publish_health();
    schedule_health();
  });
}

void Uplink::publish_health() {
  if (!health_) return;
  try {
    client_->publish(protocols::health_topic(settings_.topics),
                     health_().SerializeAsString(), 0, false);
  } catch (const mqtt::exception& e) {
    log::warn("mqtt", "health publish failed: ", e.what());
  }
}

void Uplink::stop(std::chrono::milliseconds grace) {
  stopping_ = true;
  reconnect_timer_.cancel();
  health_timer_.cancel();
  ack_timer_.cancel();
  (void)flush_acks();
  if (!stats_.connected) return;
  const auto deadline = std::chrono::steady_clock::now() + grace;
  try {
    v1::GatewayState state;
    state.set_online(false);
    state.set_boot_id(settings_.boot_id);
    state.set_version(settings_.version);
    state.set_started_at_us(settings_.started_at_us);
    auto tok = client_->publish(protocols::state_topic(settings_.topics),
                                state.SerializeAsString(), 1, true);
    tok->wait_for(grace / 2);
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    client_->disconnect(static_cast<int>(std::max<int64_t>(left.count(), 0)))
        ->wait_for(std::max(left, std::chrono::milliseconds(1)));
  } catch (const mqtt::exception& e) {
    log::warn("mqtt", "clean disconnect failed: ", e.what());
  }
  stats_.connected = false;
  log::notice("mqtt", "disconnected; unacked events stay buffered: ", buffer_.pending_total());
}

}  // namespace gw
