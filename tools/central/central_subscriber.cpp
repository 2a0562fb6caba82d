// central_subscriber: what a central server runs to receive gateways' events, and the oracle the
// integration tests read for "nothing lost". It subscribes at QoS 1 to the contract's event and
// state topics (CONTRACT.md, "MQTT"), decodes every EventBatch, keeps an EventTally per gateway
// and writes it as a JSON report.
//
// Loss-free by construction as far as MQTT allows: a persistent session (clean_session=false) so
// the broker queues our messages while we are away, Paho's automatic reconnect, and a
// re-subscribe whenever the broker may have lost the session.
//
// Threads: Paho calls back on its own thread; those callbacks only queue messages or note the
// connection state and never block. One worker thread decodes, tallies and prints (stdout is
// written by it alone). The main thread waits for signals, the deadline and the 500 ms report tick.
#include <mqtt/async_client.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "campus/gateway/v1/gateway.pb.h"
#include "protocols/status.h"
#include "tools/central/cli_common.h"
#include "tools/central/event_format.h"
#include "tools/central/event_tally.h"
#include "tools/central/json_text.h"

namespace gw::central {
namespace {

namespace v1 = campus::gateway::v1;

constexpr std::string_view kProgram = "central_subscriber";
constexpr auto kReportInterval = std::chrono::milliseconds(500);
// Decode errors are all counted, but only this many are described on stderr, so a flood of
// garbage does not drown everything else.
constexpr uint64_t kMaxDecodeErrorLogs = 1000;

constexpr char kUsage[] = R"(usage: central_subscriber [options]

Subscribes (QoS 1, persistent session, automatic reconnect) to a broker, decodes the gateways'
EventBatch and GatewayState payloads and keeps per-gateway delivery statistics.

options:
  --uri URI               broker (default tcp://127.0.0.1:1883)
  --client-id ID          MQTT client id; give a fixed one to resume the broker-side session
                          across runs (default central-subscriber-<pid>, whose session is
                          discarded at exit)
  --prefix P              topic prefix (default campus): subscribes to P/+/+/+/events/# and
                          P/+/+/+/state
  --topic T               subscribe to T instead of the defaults (repeatable)
  --json                  one JSON line per event/state/health message on stdout
  --quiet                 no per-message output
  --report FILE           write the JSON report to FILE (FILE.tmp + rename) every 500 ms once
                          subscribed, so its existence means "ready", and at exit
  --duration-s S          exit after S seconds (default: run until SIGINT/SIGTERM)
  --expect-gateway ID     list ID in the report even without events, and warn about events
                          from any gateway not named (repeatable)
  --connect-timeout-s S   give up (exit 1) when the first connect has not succeeded after S
                          seconds (default 10)
  --show-credentials      print raw card ids (default: "[redacted]"; "h:..." ids always shown)
  --help                  this text

The report ("report: " line on stderr at exit, and --report FILE):
  {"messages":M,"decode_errors":E,"connects":C,"gateways":{"<id>":{"received":R,"distinct":D,
   "duplicates":R-D,"gaps":G,"first_seq":F,"last_seq":L,"missing_ranges":[[a,b],...],
   "by_class":{"access":..,"alarm":..,"status":..,"telemetry":..},"historical":H,
   "out_of_order":O,"online":true|false|null}}}

exit status: 0 ok (also after SIGINT/SIGTERM), 1 could not connect, 2 bad usage
)";

enum class Output { kText, kJson, kQuiet };

struct Options {
  std::string uri = "tcp://127.0.0.1:1883";
  std::string client_id;
  bool client_id_given = false;
  std::string prefix = "campus";
  std::vector<std::string> topics;
  Output output = Output::kText;
  std::string report_path;
  std::optional<double> duration_s;
  std::vector<std::string> expect_gateways;
  double connect_timeout_s = 10;
  bool show_credentials = false;
  bool help = false;
};

void log_line(std::string_view msg) { central::log_line(kProgram, msg); }

Result<Options> parse_args(int argc, char** argv) {
  Options o;
  bool json = false;
  bool quiet = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    const std::optional<std::string_view> inline_value = split_inline_value(arg);
    auto flag_only = [&]() -> Status {
      if (inline_value) return Status::invalid(std::string(arg) + ": takes no value");
      return Status::ok();
    };
    auto value = [&]() -> Result<std::string> {
      if (inline_value) return std::string(*inline_value);
      if (i + 1 >= argc) return Status::invalid(std::string(arg) + ": missing value");
      return std::string(argv[++i]);
    };
    auto nonempty = [&]() -> Result<std::string> {
      Result<std::string> v = value();
      if (v && v->empty()) return Status::invalid(std::string(arg) + ": must not be empty");
      return v;
    };

    if (arg == "--help" || arg == "-h") {
      o.help = true;
      return o;
    } else if (arg == "--json" || arg == "--quiet" || arg == "--show-credentials") {
      if (Status s = flag_only(); !s) return s;
      if (arg == "--json") json = true;
      if (arg == "--quiet") quiet = true;
      if (arg == "--show-credentials") o.show_credentials = true;
    } else if (arg == "--uri" || arg == "--client-id" || arg == "--prefix" || arg == "--topic" ||
               arg == "--report" || arg == "--expect-gateway") {
      Result<std::string> v = nonempty();
      if (!v) return v.status();
      if (arg == "--uri") o.uri = *v;
      if (arg == "--client-id") o.client_id = *v, o.client_id_given = true;
      if (arg == "--prefix") o.prefix = *v;
      if (arg == "--topic") o.topics.push_back(*v);
      if (arg == "--report") o.report_path = *v;
      if (arg == "--expect-gateway") o.expect_gateways.push_back(*v);
    } else if (arg == "--duration-s" || arg == "--connect-timeout-s") {
      Result<std::string> v = value();
      if (!v) return v.status();
      Result<double> secs = parse_seconds(arg, *v);
      if (!secs) return secs.status();
      if (arg == "--duration-s") o.duration_s = *secs;
      if (arg == "--connect-timeout-s") o.connect_timeout_s = *secs;
    } else {
      return Status::invalid("unknown option '" + std::string(argv[i]) + "'");
    }
  }
  if (json && quiet) return Status::invalid("--json and --quiet exclude each other");
  o.output = json ? Output::kJson : quiet ? Output::kQuiet : Output::kText;
  if (o.prefix.find_first_of("+#") != std::string::npos) {
    return Status::invalid("--prefix: must not contain MQTT wildcards, got '" + o.prefix + "'");
  }
  if (o.topics.empty()) {
    o.topics = {o.prefix + "/+/+/+/events/#", o.prefix + "/+/+/+/state"};
  }
  if (!o.client_id_given) o.client_id = "central-subscriber-" + std::to_string(::getpid());
  return o;
}

class Subscriber {
 public:
  explicit Subscriber(const Options& opts)
      : opts_(opts),
        connect_listener_(*this),
        subscribe_listener_(*this),
        // No client-side persistence: inbound QoS 1 needs none, and a file store would litter
        // the working directory.
        cli_(opts.uri, opts.client_id) {
    for (const std::string& id : opts_.expect_gateways) tally_.expect_gateway(id);
    cli_.set_message_callback([this](const mqtt::const_message_ptr& msg) { on_message(msg); });
    cli_.set_connected_handler([this](const std::string& cause) { on_connected(cause); });
    cli_.set_connection_lost_handler(
        [this](const std::string& cause) { connection_.lost(cause); });
    worker_ = std::thread([this] { work(); });
  }

  ~Subscriber() { stop_worker(); }

  // Starts connecting; Paho keeps retrying in the background (automatic reconnect).
  void start() {
    auto opts = mqtt::connect_options_builder()
                    .mqtt_version(MQTTVERSION_3_1_1)
                    .clean_session(false)
                    .keep_alive_interval(std::chrono::seconds(10))
                    .connect_timeout(std::chrono::seconds(5))
                    .automatic_reconnect(std::chrono::seconds(1), std::chrono::seconds(2))
                    .finalize();
    cli_.connect(opts, nullptr, connect_listener_);
  }

  // Waits until the first connect succeeded, `deadline` passed or `stop_requested` says so.
  bool wait_connected(Clock::time_point deadline, const std::function<bool()>& stop_requested) {
    return connection_.wait_connected(deadline, stop_requested);
  }

  // True once the broker has confirmed our subscriptions (or kept them in a present session).
  bool subscribed() const {
    std::lock_guard lock(state_mu_);
    return subscribed_;
  }

  std::string last_error() const { return connection_.last_error(); }

  // Disconnects, then drains every message Paho already handed over before the final report.
  void stop() {
    stopping_ = true;
    bool disconnected = false;
    const bool was_connected = cli_.is_connected();
    try {
      // Also when not connected: it ends Paho's reconnect loop, so no message can be taken
      // (and acknowledged to the broker) after the final report.
      disconnected = cli_.disconnect(std::chrono::milliseconds(500))->wait_for(2000);
    } catch (const mqtt::exception& e) {
      if (was_connected) log_line(std::string("disconnect: ") + e.what());
    }
    stop_worker();
    // Only after a clean disconnect: while Paho is still reconnecting on its own, a second
    // connect would race it, and the broker is probably not there to hear it anyway.
    if (disconnected && !opts_.client_id_given) discard_session();
  }

  std::string report() const {
    std::lock_guard lock(tally_mu_);
    return tally_.report_json();
  }

  void warn_silent_expected_gateways() const {
    std::lock_guard lock(tally_mu_);
    for (const std::string& id : opts_.expect_gateways) {
      if (!seen_gateways_.contains(id)) log_line("expected gateway " + id + " sent no events");
    }
  }

 private:
  struct Inbound {
    std::string topic;
    std::string payload;
  };

  class ConnectListener : public mqtt::iaction_listener {
   public:
    explicit ConnectListener(Subscriber& s) : s_(s) {}
    // Paho C++ 1.2.0 calls this again on every automatic reconnect, but with the token's first
    // CONNACK: only the first connect's session flag is real (see on_connected()).
    void on_success(const mqtt::token& tok) override {
      try {
        // Does not block: Paho marks the token complete before calling its listener.
        const bool present = tok.get_connect_response().is_session_present();
        std::lock_guard lock(s_.state_mu_);
        s_.session_present_ = present;
      } catch (const mqtt::exception&) {
        // No CONNACK details: on_connected() then treats the session as unknown.
      }
    }
    void on_failure(const mqtt::token& tok) override {
      s_.connection_.failed(describe_failure(tok));
    }

   private:
    Subscriber& s_;
  };

  class SubscribeListener : public mqtt::iaction_listener {
   public:
    explicit SubscribeListener(Subscriber& s) : s_(s) {}
    void on_success(const mqtt::token& tok) override {
      const std::vector<std::string>& topics = s_.opts_.topics;
      try {
        // MQTT 3.1.1 SUBACK: granted QoS per filter, or 0x80 for a refused one.
        const auto codes = tok.get_subscribe_response().get_reason_codes();
        for (std::size_t i = 0; i < codes.size() && i < topics.size(); ++i) {
          if (codes[i] >= 0x80) log_line("broker refused the subscription to " + topics[i]);
        }
        std::lock_guard lock(s_.state_mu_);
        s_.subscribed_ = true;
      } catch (const mqtt::exception&) {
        // A SUBACK without per-filter codes; nothing more to check.
      }
    }
    void on_failure(const mqtt::token& tok) override {
      log_line("subscribe failed: " + describe_failure(tok));
    }

   private:
    Subscriber& s_;
  };

  // Paho thread.
  void on_connected(const std::string& cause) {
    if (stopping_) return;  // the clean-session connect of discard_session()
    std::optional<bool> session;
    {
      std::lock_guard lock(state_mu_);
      session = std::exchange(session_present_, std::nullopt);
      // Measured with Paho C 1.3.11 / C++ 1.2.0: after a broker restart the CONNACK said
      // "session present" while the token still reported the first connect's "no session".
      if (ever_connected_) session.reset();
      ever_connected_ = true;
    }
    connection_.connected();
    {
      std::lock_guard lock(tally_mu_);
      tally_.count_connect();
    }
    // Resubscribing to an identical filter replaces the subscription without interrupting the
    // flow of queued messages (MQTT 3.1.1, 3.8.4), so when in doubt we resubscribe; the only
    // cost is that the broker sends retained state messages again.
    const bool resubscribe = !session.value_or(false);
    log_line("connected to " + opts_.uri + " as " + opts_.client_id + " (" +
             (!session   ? "session flag unknown (" + cause + ")"
              : *session ? "session present"
                         : "no session on the broker") +
             (resubscribe ? "; subscribing)" : "; keeping the subscriptions)"));
    if (!resubscribe) {
      std::lock_guard lock(state_mu_);
      subscribed_ = true;
      return;
    }
    try {
      auto topics = mqtt::string_collection::create(opts_.topics);
      mqtt::iasync_client::qos_collection qos(opts_.topics.size(), 1);
      cli_.subscribe(topics, qos, nullptr, subscribe_listener_);
    } catch (const mqtt::exception& e) {
      log_line(std::string("subscribe: ") + e.what());
    }
  }

  // Paho thread: hand over and return. Topic and payload are copied out so the worker never
  // shares Paho's message object, whose last reference may drop inside the (uninstrumented)
  // library; that keeps ThreadSanitizer runs of this tool meaningful.
  void on_message(const mqtt::const_message_ptr& msg) {
    Inbound in{msg->get_topic(), msg->get_payload_str()};
    {
      std::lock_guard lock(queue_mu_);
      queue_.push_back(std::move(in));
    }
    queue_cv_.notify_one();
  }

  void work() {
    std::deque<Inbound> batch;
    for (;;) {
      {
        std::unique_lock lock(queue_mu_);
        queue_cv_.wait(lock, [this] { return !queue_.empty() || worker_stop_; });
        if (queue_.empty()) return;  // worker_stop_ and drained
        batch.swap(queue_);
      }
      for (const Inbound& in : batch) process(in.topic, in.payload);
      batch.clear();
    }
  }

  void stop_worker() {
    {
      std::lock_guard lock(queue_mu_);
      worker_stop_ = true;
    }
    queue_cv_.notify_one();
    if (worker_.joinable()) worker_.join();
  }

  void process(const std::string& topic, const std::string& payload) {
    const TopicInfo info = classify_topic(topic);
    switch (info.kind) {
      case TopicKind::kEvents:
        return process_events(topic, payload, info);
      case TopicKind::kState:
        return process_state(topic, payload, info);
      case TopicKind::kHealth:
        return process_health(topic, payload, info);
      case TopicKind::kOther:
        break;
    }
    {
      std::lock_guard lock(tally_mu_);
      tally_.count_message();
    }
    if (ignored_topics_.insert(topic).second) {
      log_line("ignoring messages on " + topic + " (not an events, state or health topic)");
    }
  }

  void process_events(const std::string& topic, const std::string& payload, const TopicInfo& info) {
    v1::EventBatch batch;
    const Status decoded = decode_event_batch(payload, &batch);
    // The batch names the gateway of its events' ids; the topic is only a fallback.
    const std::string& gateway_id =
        batch.gateway_id().empty() ? info.gateway_id : batch.gateway_id();
    {
      std::lock_guard lock(tally_mu_);
      tally_.count_message();
      if (!decoded) {
        tally_.count_decode_error();
      } else {
        seen_gateways_.insert(gateway_id);
        for (const v1::Event& e : batch.events()) tally_.record(gateway_id, e);
      }
    }
    if (!decoded) {
      if (++decode_errors_logged_ <= kMaxDecodeErrorLogs) {
        log_line(
            "decode error on " + topic + ": " + decoded.message() +
            (decode_errors_logged_ == kMaxDecodeErrorLogs ? " (further ones only counted)" : ""));
      }
      return;
    }
    check_gateway(topic, info, gateway_id);
    if (opts_.output == Output::kQuiet) return;
    for (const v1::Event& e : batch.events()) {
      emit(opts_.output == Output::kJson
               ? event_json_line(gateway_id, topic, e, opts_.show_credentials)
               : event_text_line(gateway_id, e, opts_.show_credentials));
    }
  }

  void process_state(const std::string& topic, const std::string& payload, const TopicInfo& info) {
    v1::GatewayState state;
    // An empty retained message only clears the broker's copy; it says nothing about the gateway.
    const bool cleared = payload.empty();
    const Status decoded = cleared ? Status::ok() : decode_state(payload, &state);
    {
      std::lock_guard lock(tally_mu_);
      tally_.count_message();
      if (!decoded) tally_.count_decode_error();
      if (decoded && !cleared) tally_.record_state(info.gateway_id, state);
    }
    if (!decoded) {
      log_line("decode error on " + topic + ": " + decoded.message());
      return;
    }
    if (cleared || opts_.output == Output::kQuiet) return;
    emit(opts_.output == Output::kJson ? state_json_line(info.gateway_id, topic, state)
                                       : state_text_line(info.gateway_id, state));
  }

  void process_health(const std::string& topic, const std::string& payload, const TopicInfo& info) {
    v1::GatewayHealth health;
    const Status decoded = decode_health(payload, &health);
    {
      std::lock_guard lock(tally_mu_);
      tally_.count_message();
      if (!decoded) tally_.count_decode_error();
    }
    if (!decoded) {
      log_line("decode error on " + topic + ": " + decoded.message());
      return;
    }
    if (opts_.output == Output::kQuiet) return;
    emit(opts_.output == Output::kJson ? health_json_line(info.gateway_id, topic, health)
                                       : health_text_line(info.gateway_id, health));
  }

  // Worker thread: warnings a test author wants to see once, not per message.
  void check_gateway(const std::string& topic, const TopicInfo& info,
                     const std::string& gateway_id) {
    if (gateway_id != info.gateway_id &&
        warned_.insert("mismatch:" + info.gateway_id + "/" + gateway_id).second) {
      log_line("EventBatch.gateway_id '" + gateway_id + "' differs from the topic " + topic);
    }
    if (!opts_.expect_gateways.empty() &&
        std::find(opts_.expect_gateways.begin(), opts_.expect_gateways.end(), gateway_id) ==
            opts_.expect_gateways.end() &&
        warned_.insert("unexpected:" + gateway_id).second) {
      log_line("events from unexpected gateway '" + gateway_id + "' on " + topic);
    }
  }

  // Worker thread. Flushed per line: tests and people read the stream live.
  void emit(std::string line) {
    if (stdout_broken_) return;
    line.push_back('\n');
    if (std::fwrite(line.data(), 1, line.size(), stdout) != line.size() ||
        std::fflush(stdout) != 0) {
      stdout_broken_ = true;
      log_line("stdout is closed; per-message output stops, counting goes on");
    }
  }

  // A generated client id is never used again, so its persistent session would only pile up
  // queued events on the broker (mosquitto keeps such sessions forever by default). A
  // clean-session connect discards it.
  void discard_session() {
    try {
      auto opts = mqtt::connect_options_builder()
                      .mqtt_version(MQTTVERSION_3_1_1)
                      .clean_session(true)
                      .connect_timeout(std::chrono::seconds(2))
                      .finalize();
      if (cli_.connect(opts)->wait_for(std::chrono::seconds(3))) {
        cli_.disconnect()->wait_for(std::chrono::seconds(2));
      }
    } catch (const mqtt::exception&) {
      // Best effort: the broker is gone, and with it (without persistence) the session.
    }
  }

  const Options& opts_;
  std::atomic<bool> stopping_{false};

  ConnectionState connection_{kProgram};
  mutable std::mutex state_mu_;
  bool ever_connected_ = false;
  bool subscribed_ = false;
  std::optional<bool> session_present_;  // from the connect token, consumed by on_connected

  mutable std::mutex tally_mu_;
  EventTally tally_;
  std::set<std::string> seen_gateways_;  // gateways that sent at least one valid batch

  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::deque<Inbound> queue_;
  bool worker_stop_ = false;

  // Worker thread only.
  uint64_t decode_errors_logged_ = 0;
  std::set<std::string> ignored_topics_;
  std::set<std::string> warned_;
  bool stdout_broken_ = false;

  ConnectListener connect_listener_;
  SubscribeListener subscribe_listener_;
  std::thread worker_;
  // Last, so it is destroyed first: no Paho callback can then reach the members above.
  mqtt::async_client cli_;
};

class ReportWriter {
 public:
  explicit ReportWriter(std::string path) : path_(std::move(path)) {}
  void write(const std::string& json) {
    if (path_.empty()) return;
    if (write_file_atomically(path_, json + "\n")) {
      failing_ = false;
    } else if (!failing_) {
      failing_ = true;  // say it once per failure streak, not every 500 ms
      log_line("cannot write report " + path_ + ": " + std::strerror(errno));
    }
  }

 private:
  std::string path_;
  bool failing_ = false;
};

int run(int argc, char** argv) {
  Result<Options> parsed = parse_args(argc, argv);
  if (!parsed) {
    log_line(parsed.status().message() + " (see --help)");
    return 2;
  }
  const Options& opts = *parsed;
  if (opts.help) {
    std::fputs(kUsage, stdout);
    return 0;
  }

  // Before Paho and the worker start their threads, which inherit the signal mask.
  StopSignals signals;
  std::signal(SIGPIPE, SIG_IGN);  // a closed stdout must not kill the report

  const Clock::time_point started = Clock::now();
  const Clock::time_point end_at =
      opts.duration_s ? after(started, *opts.duration_s) : Clock::time_point::max();

  std::optional<Subscriber> sub;
  try {
    sub.emplace(opts);
  } catch (const mqtt::exception& e) {
    log_line("--uri: cannot use '" + opts.uri + "': " + e.what());
    return 2;
  }
  ReportWriter report_file(opts.report_path);

  sub->start();
  const Clock::time_point connect_deadline = after(started, opts.connect_timeout_s);
  if (!sub->wait_connected(connect_deadline,
                           [&] { return signals.wait(Clock::duration::zero()); })) {
    if (!signals.received()) {
      log_line("could not connect to " + opts.uri + " within " +
               format_double(opts.connect_timeout_s) + " s: " + sub->last_error());
      return 1;
    }
  }

  while (!signals.received()) {
    const Clock::time_point now = Clock::now();
    if (now >= end_at) break;
    if (signals.wait(std::min<Clock::duration>(kReportInterval, end_at - now))) break;
    // The file appears only once the subscriptions stand, so a test can wait for it as "ready".
    if (sub->subscribed()) report_file.write(sub->report());
  }

  sub->stop();
  const std::string final_report = sub->report();
  report_file.write(final_report);
  sub->warn_silent_expected_gateways();
  std::fputs(("report: " + final_report + "\n").c_str(), stderr);
  return 0;
}

}  // namespace
}  // namespace gw::central

int main(int argc, char** argv) {
  try {
    return gw::central::run(argc, argv);
  } catch (const std::exception& e) {
    gw::central::log_line(gw::central::kProgram, std::string("fatal: ") + e.what());
    return 1;
  }
}
