// central_consumer: the reference consumer a central server runs to store the gateways' events.
// Several run at once (one per central server) in one MQTT shared-subscription group:
// `$share/GROUP/{prefix}/+/+/+/events/#`, so the broker (mosquitto 2, or a cluster such as EMQX)
// hands each message to one member of the group, and all of them write to one EventStore
// (tools/central/event_store.h: a SQLite file or PostgreSQL). The store deduplicates on
// (gateway_id, seq) — the contract's event id — so the at-least-once delivery of the gateways
// becomes exactly one row per event. Gaps (seqs missing between a gateway's first and last stored
// event, minus the gaps the gateway announced) are computed from the shared store, not from what
// one member saw, and reported per gateway.
//
// Delivery: MQTT acknowledges a QoS 1 message when the client receives it (Paho C sends the
// PUBACK before handing the message over), so what a consumer loses when it is killed -9 is what
// it had received and not yet committed: at most the broker's in-flight window for it plus our
// queue. A clean stop (SIGTERM) disconnects first and then commits everything received. With a
// fixed --client-id the session persists (clean_session=false): messages the broker routes to a
// member while it is away are delivered when it is back.
//
// Threads: Paho calls back on its own thread; the callback only queues the message, waiting when
// the queue is full (backpressure: the broker holds the rest). One worker thread decodes, writes
// the store (one transaction per group of messages) and writes the report. The main thread waits
// for signals and the deadline.
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
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <vector>

#include "campus/gateway/v1/gateway.pb.h"
#include "protocols/status.h"
#include "tools/central/cli_common.h"
#include "tools/central/event_format.h"
#include "tools/central/event_store.h"
#include "tools/central/json_text.h"

namespace gw::central {
namespace {

namespace v1 = campus::gateway::v1;

constexpr std::string_view kProgram = "central_consumer";
constexpr std::size_t kQueueLimit = 2000;          // messages received, not yet stored
constexpr std::size_t kMaxEventsPerCommit = 2000;  // one transaction
constexpr std::size_t kMaxRangesReported = 20;

constexpr char kUsage[] = R"(usage: central_consumer --store TARGET [options]

Stores the gateways' events in a central store, one row per (gateway_id, seq). Run one per
central server: members of one --group share the event stream (MQTT shared subscription
$share/GROUP/PREFIX/+/+/+/events/#) and one store.

options:
  --store TARGET          a SQLite file (created if missing; WAL; several consumers may share it)
                          or a postgresql://[user[:password]@]host[:port]/db URL (libpq)
  --uri URI               broker (default tcp://127.0.0.1:1883; ssl://host:8883 with --ca-file)
  --group NAME            shared-subscription group (default central)
  --client-id ID          MQTT client id. Give a fixed one per server: the broker then keeps the
                          session (clean_session=false) and what it routed to this member while
                          it was away. Default: central-consumer-<host>-<pid>, clean session.
  --prefix P              topic prefix (default campus)
  --username U            MQTT user name
  --password-file FILE    MQTT password (first line of FILE)
  --ca-file FILE          CA for ssl:// brokers; --cert-file/--key-file for client certificates
  --cert-file FILE
  --key-file FILE
  --report FILE           write the JSON report to FILE (FILE.tmp + rename) every
                          --report-interval-s once subscribed, so its existence means "ready",
                          and at exit
  --report-interval-s S   default 5
  --duration-s S          exit after S seconds (default: until SIGINT/SIGTERM)
  --connect-timeout-s S   exit 1 when the first connect fails for S seconds (default 10)
  --help                  this text

The report:
  {"consumer":ID,"group":G,"store":"sqlite:...","connects":C,"messages":M,"events":E,
   "inserted":I,"duplicates":D,"decode_errors":X,"store_retries":R,"unstored":U,
   "gateways":{"<id>":{"events":N,"first_seq":F,"last_seq":L,"missing":K,
   "announced_dropped":A,"missing_ranges":[[a,b],...]}}}
"inserted" and "duplicates" are this consumer's; "gateways" is the whole store (all members).
"missing" counts seqs between F and L neither stored nor announced by the gateway as dropped.

exit status: 0 ok (also after SIGINT/SIGTERM), 1 could not connect, could not open the store,
or events received could not be stored, 2 bad usage
)";

struct Options {
  std::string uri = "tcp://127.0.0.1:1883";
  std::string store;
  std::string group = "central";
  std::string client_id;
  bool client_id_given = false;
  std::string prefix = "campus";
  std::string username;
  std::string password_file;
  std::string ca_file, cert_file, key_file;
  std::string report_path;
  double report_interval_s = 5;
  std::optional<double> duration_s;
  double connect_timeout_s = 10;
  bool help = false;
};

void log_line(std::string_view msg) { central::log_line(kProgram, msg); }

// MQTT topic filter levels may not contain wildcards or '/' here (a group name is one level).
bool valid_level(std::string_view s) {
  return !s.empty() && s.find_first_of("+#/") == std::string_view::npos;
}

Result<Options> parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    const std::optional<std::string_view> inline_value = split_inline_value(arg);
    auto value = [&]() -> Result<std::string> {
      std::string v;
      if (inline_value) {
        v = std::string(*inline_value);
      } else if (i + 1 < argc) {
        v = argv[++i];
      } else {
        return Status::invalid(std::string(arg) + ": missing value");
      }
      if (v.empty()) return Status::invalid(std::string(arg) + ": must not be empty");
      return v;
    };
    if (arg == "--help" || arg == "-h") {
      o.help = true;
      return o;
    }
    static const std::map<std::string_view, std::string Options::*> kText = {
        {"--uri", &Options::uri},
        {"--store", &Options::store},
        {"--group", &Options::group},
        {"--client-id", &Options::client_id},
        {"--prefix", &Options::prefix},
        {"--username", &Options::username},
        {"--password-file", &Options::password_file},
        {"--ca-file", &Options::ca_file},
        {"--cert-file", &Options::cert_file},
        {"--key-file", &Options::key_file},
        {"--report", &Options::report_path}};
    if (auto it = kText.find(arg); it != kText.end()) {
      Result<std::string> v = value();
      if (!v) return v.status();
      o.*(it->second) = *v;
      if (arg == "--client-id") o.client_id_given = true;
    } else if (arg == "--report-interval-s" || arg == "--duration-s" ||
               arg == "--connect-timeout-s") {
      Result<std::string> v = value();
      if (!v) return v.status();
      Result<double> secs = parse_seconds(arg, *v);
      if (!secs) return secs.status();
      if (arg == "--report-interval-s") o.report_interval_s = *secs;
      if (arg == "--duration-s") o.duration_s = *secs;
      if (arg == "--connect-timeout-s") o.connect_timeout_s = *secs;
    } else {
      return Status::invalid("unknown option '" + std::string(argv[i]) + "'");
    }
  }
  if (o.store.empty()) return Status::invalid("--store is required (a SQLite file or a URL)");
  if (!valid_level(o.group)) {
    return Status::invalid("--group: one topic level without + # or /, got '" + o.group + "'");
  }
  if (o.prefix.find_first_of("+#") != std::string::npos) {
    return Status::invalid("--prefix: must not contain MQTT wildcards, got '" + o.prefix + "'");
  }
  if (o.uri.rfind("ssl://", 0) == 0 && o.ca_file.empty()) {
    return Status::invalid("--uri uses ssl:// but no --ca-file names the broker's CA");
  }
  if (!o.client_id_given) {
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    o.client_id = "central-consumer-" + std::string(host) + "-" + std::to_string(::getpid());
  }
  return o;
}

std::string ranges_text(const std::vector<SeqRange>& ranges) {
  std::string out;
  for (const SeqRange& r : ranges) {
    if (!out.empty()) out += ", ";
    out += r.first == r.last ? std::to_string(r.first)
                             : std::to_string(r.first) + "-" + std::to_string(r.last);
  }
  return out;
}

class Consumer {
 public:
  Consumer(const Options& opts, std::unique_ptr<EventStore> store, std::string password)
      : opts_(opts),
        store_(std::move(store)),
        password_(std::move(password)),
        topic_("$share/" + opts.group + "/" + opts.prefix + "/+/+/+/events/#"),
        connect_listener_(*this),
        subscribe_listener_(*this),
        cli_(opts.uri, opts.client_id) {
    cli_.set_message_callback([this](const mqtt::const_message_ptr& msg) { on_message(msg); });
    cli_.set_connected_handler([this](const std::string&) { on_connected(); });
    cli_.set_connection_lost_handler(
        [this](const std::string& cause) { connection_.lost(cause); });
    worker_ = std::thread([this] { work(); });
  }

  ~Consumer() { stop_worker(); }

  void start() {
    auto builder = mqtt::connect_options_builder()
                       .mqtt_version(MQTTVERSION_3_1_1)
                       .clean_session(!opts_.client_id_given)
                       .keep_alive_interval(std::chrono::seconds(10))
                       .connect_timeout(std::chrono::seconds(5))
                       .automatic_reconnect(std::chrono::seconds(1), std::chrono::seconds(10));
    if (!opts_.username.empty()) builder.user_name(opts_.username);
    if (!password_.empty()) builder.password(password_);
    if (!opts_.ca_file.empty()) {
      mqtt::ssl_options ssl;
      ssl.set_trust_store(opts_.ca_file);
      if (!opts_.cert_file.empty()) ssl.set_key_store(opts_.cert_file);
      if (!opts_.key_file.empty()) ssl.set_private_key(opts_.key_file);
      ssl.set_enable_server_cert_auth(true);
      ssl.set_verify(true);  // Paho leaves hostname checks off unless asked
      builder.ssl(std::move(ssl));
    }
    cli_.connect(builder.finalize(), nullptr, connect_listener_);
  }

  bool wait_connected(Clock::time_point deadline, const std::function<bool()>& stop_requested) {
    return connection_.wait_connected(deadline, stop_requested);
  }

  std::string last_error() const { return connection_.last_error(); }

  // Disconnects (nothing more is received, so nothing more is acknowledged), then stores
  // everything already received and writes the final report. False when events were lost.
  bool stop() {
    stopping_ = true;
    try {
      cli_.disconnect(std::chrono::milliseconds(500))->wait_for(2000);
    } catch (const mqtt::exception& e) {
      log_line(std::string("disconnect: ") + e.what());
    }
    queue_cv_.notify_all();
    stop_worker();
    return unstored_ == 0;
  }

 private:
  class ConnectListener : public mqtt::iaction_listener {
   public:
    explicit ConnectListener(Consumer& c) : c_(c) {}
    void on_success(const mqtt::token&) override {}
    void on_failure(const mqtt::token& tok) override {
      c_.connection_.failed(describe_failure(tok));
    }

   private:
    Consumer& c_;
  };

  class SubscribeListener : public mqtt::iaction_listener {
   public:
    explicit SubscribeListener(Consumer& c) : c_(c) {}
    void on_success(const mqtt::token& tok) override {
      try {
        const auto codes = tok.get_subscribe_response().get_reason_codes();
        if (!codes.empty() && codes[0] >= 0x80) {
          log_line("broker refused the subscription to " + c_.topic_ +
                   " (shared subscriptions not supported, or an ACL forbids it)");
          return;
        }
      } catch (const mqtt::exception&) {
        // A SUBACK without per-filter codes; nothing more to check.
      }
      c_.subscribed_ = true;
    }
    void on_failure(const mqtt::token& tok) override {
      log_line("subscribe failed: " + describe_failure(tok));
    }

   private:
    Consumer& c_;
  };

  // Paho thread. Subscribing again on every connect is harmless (it replaces the same filter)
  // and covers a broker that lost the session.
  void on_connected() {
    if (stopping_) return;
    connection_.connected();
    ++connects_;
    log_line("connected to " + opts_.uri + " as " + opts_.client_id + "; subscribing to " + topic_);
    try {
      cli_.subscribe(topic_, 1, nullptr, subscribe_listener_);
    } catch (const mqtt::exception& e) {
      log_line(std::string("subscribe: ") + e.what());
    }
  }

  // Paho thread: queue and return; wait while the queue is full so the broker keeps the rest.
  void on_message(const mqtt::const_message_ptr& msg) {
    std::unique_lock lock(queue_mu_);
    queue_cv_.wait(lock, [this] { return queue_.size() < kQueueLimit || worker_stop_; });
    queue_.push_back({msg->get_topic(), msg->get_payload_str()});
    queue_cv_.notify_all();
  }

  struct Inbound {
    std::string topic;
    std::string payload;
  };

  void stop_worker() {
    {
      std::lock_guard lock(queue_mu_);
      worker_stop_ = true;
    }
    queue_cv_.notify_all();
    if (worker_.joinable()) worker_.join();
  }

  // Worker thread.
  void work() {
    const auto interval = std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(opts_.report_interval_s));
    Clock::time_point next_report = Clock::now();
    for (;;) {
      std::deque<Inbound> batch;
      bool last_round = false;
      {
        std::unique_lock lock(queue_mu_);
        queue_cv_.wait_until(lock, next_report, [this] { return !queue_.empty() || worker_stop_; });
        batch.swap(queue_);
        last_round = worker_stop_ && batch.empty();
      }
      queue_cv_.notify_all();
      if (!batch.empty()) store(batch);
      if (last_round || Clock::now() >= next_report) {
        report(last_round);
        next_report = Clock::now() + interval;
      }
      if (last_round) return;
    }
  }

  void store(const std::deque<Inbound>& batch) {
    std::vector<EventRow> rows;
    for (const Inbound& in : batch) {
      ++messages_;
      const TopicInfo info = classify_topic(in.topic);
      if (info.kind != TopicKind::kEvents) continue;
      v1::EventBatch events;
      if (Status s = decode_event_batch(in.payload, &events); !s) {
        if (++decode_errors_ <= 100) log_line("decode error on " + in.topic + ": " + s.message());
        continue;
      }
      const std::string& gateway_id =
          events.gateway_id().empty() ? info.gateway_id : events.gateway_id();
      for (const v1::Event& e : events.events()) rows.push_back(make_row(gateway_id, e));
      events_ += uint64_t(events.events_size());
    }
    for (std::size_t at = 0; at < rows.size(); at += kMaxEventsPerCommit) {
      const std::span<const EventRow> part(rows.data() + at,
                                           std::min(kMaxEventsPerCommit, rows.size() - at));
      commit(part);
    }
  }

  // Retries until the store takes the rows: they are acknowledged to the broker already, so
  // giving up would lose them. Only a stop request ends the retries, loudly.
  void commit(std::span<const EventRow> rows) {
    auto wait = std::chrono::milliseconds(200);
    for (int attempt = 1;; ++attempt) {
      Result<InsertOutcome> r = store_->insert(rows);
      if (r) {
        inserted_ += r->inserted;
        duplicates_ += r->duplicates;
        if (attempt > 1)
          log_line("store works again after " + std::to_string(attempt) + " attempts");
        return;
      }
      ++store_retries_;
      if (attempt == 1 || attempt % 10 == 0) {
        log_line("cannot store " + std::to_string(rows.size()) + " events in " +
                 store_->describe() + " (attempt " + std::to_string(attempt) +
                 "): " + r.status().message());
      }
      {
        std::unique_lock lock(queue_mu_);
        if (worker_stop_ && attempt >= 3) {
          unstored_ += rows.size();
          log_line("giving up on " + std::to_string(rows.size()) +
                   " received events at stop: they are NOT in the store");
          return;
        }
      }
      std::this_thread::sleep_for(wait);
      wait = std::min(wait * 2, std::chrono::milliseconds(10000));
    }
  }

  // Worker thread: the store's view of every gateway, logged when a hole has stood for a whole
  // report interval (a younger one is usually a batch another member has not committed yet).
  void report(bool final_report) {
    Result<std::vector<GatewaySummary>> summary = store_->summarize(kMaxRangesReported);
    if (!summary) {
      log_line("cannot summarize " + store_->describe() + ": " + summary.status().message());
      return;
    }
    std::map<std::string, std::vector<SeqRange>> holes;
    for (const GatewaySummary& g : *summary) {
      holes[g.gateway_id] = g.missing_ranges;
      const auto& before = previous_holes_[g.gateway_id];
      std::vector<SeqRange> standing;
      for (const SeqRange& r : g.missing_ranges) {
        if (std::find(before.begin(), before.end(), r) != before.end() &&
            reported_holes_.insert({g.gateway_id, r.first, r.last}).second) {
          standing.push_back(r);
        }
      }
      if (!standing.empty()) {
        log_line("gateway " + g.gateway_id + ": missing seqs " + ranges_text(standing) + " (" +
                 std::to_string(g.missing) + " missing in all, seqs " +
                 std::to_string(g.first_seq) + ".." + std::to_string(g.last_seq) + ")");
      }
    }
    previous_holes_ = std::move(holes);

    std::string out = "{\"consumer\":";
    append_json_string(out, opts_.client_id);
    out += ",\"group\":";
    append_json_string(out, opts_.group);
    out += ",\"store\":";
    append_json_string(out, store_->describe());
    out += ",\"connects\":" + std::to_string(connects_.load());
    out += ",\"messages\":" + std::to_string(messages_);
    out += ",\"events\":" + std::to_string(events_);
    out += ",\"inserted\":" + std::to_string(inserted_);
    out += ",\"duplicates\":" + std::to_string(duplicates_);
    out += ",\"decode_errors\":" + std::to_string(decode_errors_);
    out += ",\"store_retries\":" + std::to_string(store_retries_);
    out += ",\"unstored\":" + std::to_string(unstored_);
    out += ",\"gateways\":{";
    bool first = true;
    for (const GatewaySummary& g : *summary) {
      if (!first) out += ',';
      first = false;
      append_json_string(out, g.gateway_id);
      out += ":{\"events\":" + std::to_string(g.events) +
             ",\"first_seq\":" + std::to_string(g.first_seq) +
             ",\"last_seq\":" + std::to_string(g.last_seq) +
             ",\"missing\":" + std::to_string(g.missing) +
             ",\"announced_dropped\":" + std::to_string(g.announced_dropped) +
             ",\"missing_ranges\":[";
      for (std::size_t i = 0; i < g.missing_ranges.size(); ++i) {
        if (i) out += ',';
        out += "[" + std::to_string(g.missing_ranges[i].first) + "," +
               std::to_string(g.missing_ranges[i].last) + "]";
      }
      out += "]}";
    }
    out += "}}";
    if (final_report) {
      log_line("report: " + out);
    }
    // The file appears once the subscription stands, so a test can wait for it as "ready".
    if (!opts_.report_path.empty() && (subscribed_ || final_report) &&
        !write_file_atomically(opts_.report_path, out + "\n")) {
      log_line("cannot write report " + opts_.report_path + ": " + std::strerror(errno));
    }
  }

  const Options& opts_;
  std::unique_ptr<EventStore> store_;  // worker thread only (after construction)
  const std::string password_;
  const std::string topic_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> subscribed_{false};
  std::atomic<uint64_t> connects_{0};

  ConnectionState connection_{kProgram};

  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::deque<Inbound> queue_;
  bool worker_stop_ = false;

  // Worker thread only.
  uint64_t messages_ = 0, events_ = 0, inserted_ = 0, duplicates_ = 0, decode_errors_ = 0;
  uint64_t store_retries_ = 0, unstored_ = 0;
  std::map<std::string, std::vector<SeqRange>> previous_holes_;
  std::set<std::tuple<std::string, uint64_t, uint64_t>> reported_holes_;

  ConnectListener connect_listener_;
  SubscribeListener subscribe_listener_;
  std::thread worker_;
  // Last, so it is destroyed first: no Paho callback can then reach the members above.
  mqtt::async_client cli_;
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
  std::string password;
  if (!opts.password_file.empty()) {
    std::ifstream in(opts.password_file);
    if (!in || !std::getline(in, password)) {
      log_line("--password-file: cannot read " + opts.password_file);
      return 2;
    }
  }

  // Before Paho and the worker start their threads, which inherit the signal mask.
  StopSignals signals;

  auto store = open_event_store(opts.store, opts.client_id);
  if (!store) {
    log_line(store.status().message());
    return 1;
  }
  log_line("storing into " + store.value()->describe());

  const Clock::time_point started = Clock::now();
  const Clock::time_point end_at =
      opts.duration_s ? after(started, *opts.duration_s) : Clock::time_point::max();

  std::optional<Consumer> consumer;
  try {
    consumer.emplace(opts, std::move(store).value(), password);
  } catch (const mqtt::exception& e) {
    log_line("--uri: cannot use '" + opts.uri + "': " + e.what());
    return 2;
  }
  consumer->start();
  if (!consumer->wait_connected(after(started, opts.connect_timeout_s),
                                [&] { return signals.wait(Clock::duration::zero()); }) &&
      !signals.received()) {
    log_line("could not connect to " + opts.uri + " within " +
             format_double(opts.connect_timeout_s) + " s: " + consumer->last_error());
    consumer->stop();
    return 1;
  }
  while (!signals.received()) {
    const Clock::time_point now = Clock::now();
    if (now >= end_at) break;
    if (signals.wait(std::min<Clock::duration>(std::chrono::milliseconds(500), end_at - now))) {
      break;
    }
  }
  return consumer->stop() ? 0 : 1;
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
