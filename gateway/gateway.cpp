#include "gateway/gateway.h"

#include <google/protobuf/util/json_util.h>
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>

#include "drivers/asio.h"
#include "gateway/alarm_monitor.h"
#include "gateway/control_protocol.h"
#include "gateway/control_server.h"
#include "gateway/device_poller.h"
#include "gateway/driver_registry.h"
#include "gateway/log.h"
#include "gateway/metrics.h"
#include "gateway/metrics_server.h"
#include "gateway/privacy.h"
#include "gateway/router.h"
#include "gateway/sd_notify.h"
#include "gateway/source_runner.h"
#include "gateway/uplink.h"
#include "protocols/topics.h"
#include "storage/event_buffer.h"

namespace gw {

namespace v1 = campus::gateway::v1;
namespace fs = std::filesystem;
using control::Json;
using control::Reply;
namespace ec = control::error_code;

namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitConfig = 78;
constexpr int kExitUnavailable = 69;
constexpr auto kShutdownDrain = std::chrono::seconds(2);
constexpr auto kShutdownDisconnect = std::chrono::seconds(2);
constexpr auto kLineCheckEvery = std::chrono::seconds(10);
constexpr std::size_t kRecentErrors = 10;
constexpr v1::EventClass kClasses[] = {v1::ACCESS, v1::ALARM, v1::TELEMETRY, v1::STATUS};

int64_t wall_now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string random_hex(std::size_t bytes) {
  std::random_device rd;
  std::string out;
  static constexpr char kHex[] = "0123456789abcdef";
  for (std::size_t i = 0; i < bytes; ++i) {
    const auto b = static_cast<unsigned>(rd() & 0xff);
    out += kHex[b >> 4];
    out += kHex[b & 0xf];
  }
  return out;
}

std::string hex_of(std::span<const uint8_t> bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    if (i) out += ' ';
    out += kHex[bytes[i] >> 4];
    out += kHex[bytes[i] & 0xf];
  }
  return out;
}

// Creates data_dir if needed and proves it writable; the contract's exit 69 otherwise.
Status prepare_data_dir(const std::string& dir) {
  std::error_code e;
  fs::create_directories(dir, e);
  if (e) return Status::unavailable("cannot create data_dir " + dir + ": " + e.message());
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    return Status::unavailable("data_dir " + dir + " is not writable: " + std::strerror(errno));
  }
  return Status::ok();
}

// The buffer's bounds and class policies from the config (CONTRACT.md "buffer").
storage::BufferOptions buffer_options(const config::Config& c) {
  storage::BufferOptions o;
  o.max_bytes = c.buffer.max_bytes;
  for (const auto& [cls, policy] : c.buffer.classes) {
    const auto i = static_cast<std::size_t>(cls);
    if (i >= o.classes.size()) continue;
    o.classes[i].max_age_us =
        std::chrono::duration_cast<std::chrono::microseconds>(policy.max_age).count();
    o.classes[i].drop_oldest = policy.when_full == config::WhenFull::kDropOldest;
    o.classes[i].never_drop = cls == v1::ACCESS || cls == v1::ALARM;
  }
  return o;
}

Result<std::string> read_secret(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::unavailable("cannot read password_file " + path);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

UplinkSettings uplink_settings(const config::Config& c, std::string password) {
  UplinkSettings s;
  s.uri = c.mqtt.uri;
  s.client_id = c.mqtt.client_id.empty() ? c.gateway.id : c.mqtt.client_id;
  s.username = c.mqtt.username;
  s.password = std::move(password);
  if (c.mqtt.tls) {
    s.tls = UplinkSettings::Tls{c.mqtt.tls->ca_file, c.mqtt.tls->cert_file, c.mqtt.tls->key_file,
                                c.mqtt.tls->verify_hostname};
  }
  s.topics = {c.mqtt.topic_prefix, c.gateway.site, c.gateway.building, c.gateway.id};
  s.keepalive = std::chrono::duration_cast<std::chrono::seconds>(c.mqtt.keepalive);
  s.max_inflight = c.mqtt.max_inflight;
  s.batch_max_events = c.mqtt.batch_max_events;
  s.backoff_initial = c.mqtt.backoff_initial;
  s.backoff_max = c.mqtt.backoff_max;
  s.startup_splay = c.mqtt.startup_splay.value_or(c.mqtt.backoff_initial);
  s.version = GW_VERSION;
  s.boot_id = random_hex(16);
  s.started_at_us = wall_now_us();
  return s;
}

// Config entries compared for reload, without where they stood in the file.
config::DeviceSection comparable(config::DeviceSection d) {
  d.line = 0;
  if (d.line_settings) d.line_settings->line = 0;
  return d;
}
config::BusSection comparable(config::BusSection b) {
  b.line = 0;
  return b;
}
bool same_device(const config::DeviceSection& a, const config::DeviceSection& b) {
  return comparable(a) == comparable(b);
}
bool same_bus(const config::BusSection& a, const config::BusSection& b) {
  return comparable(a) == comparable(b);
}

std::string_view state_name(DevicePoller::State s) {
  switch (s) {
    case DevicePoller::State::kOnline: return "online";
    case DevicePoller::State::kOffline: return "offline";
    default: return "unknown";
  }
}

std::string_view kind_name(v1::DeviceKind k) {
  switch (k) {
    case v1::ENERGY_METER: return "energy_meter";
    case v1::ACCESS_GATE: return "access_gate";
    case v1::CARD_READER: return "card_reader";
    case v1::CAMERA: return "camera";
    case v1::SENSOR: return "sensor";
    default: return "unknown";
  }
}

// The protobuf JSON form of an event, card ids masked unless the operator may see them.
Json event_json(const v1::Event& event, bool show_credentials) {
  v1::Event copy = event;
  if (copy.has_access() && !show_credentials) {
    const std::string& c = copy.access().credential();
    if (c.rfind("h:", 0) != 0) copy.mutable_access()->set_credential("[redacted]");
  }
  google::protobuf::util::JsonPrintOptions opts;
  opts.preserve_proto_field_names = true;
  opts.always_print_primitive_fields = true;
  std::string text;
  (void)google::protobuf::util::MessageToJsonString(copy, &text, opts);
  return Json::parse(text, nullptr, false);
}

}  // namespace

class Gateway : public control::Handler {
 public:
  explicit Gateway(config::Config config)
      : config_(std::move(config)),
        io_pool_(std::clamp<std::size_t>(config_.devices.size(), 1, 8)),
        signals_(core_, SIGINT, SIGTERM, SIGHUP),
        shutdown_timer_(core_),
        line_check_(core_) {}

  int run(const RunHooks& hooks);

  Reply handle(const control::Request& request,
               std::shared_ptr<control::ControlStream> stream) override;

 private:
  // A polled device has a driver and a poller; a push device (reader, gate, camera) a runner.
  struct Device {
    std::shared_ptr<drivers::Driver> driver;
    std::unique_ptr<DevicePoller> poller;
    std::unique_ptr<SourceRunner> runner;
    const config::DeviceSection& config() const {
      return poller ? poller->device() : runner->device();
    }
    DevicePoller::State state() const { return poller ? poller->state() : runner->state(); }
    const std::string& last_error() const {
      return poller ? poller->last_error() : runner->last_error();
    }
    void stop() {
      if (poller) poller->stop();
      if (runner) runner->stop();
    }
  };
  struct Tail {
    std::shared_ptr<control::ControlStream> stream;
    std::string device;
    std::optional<v1::EventClass> cls;
    bool show_credentials = false;
  };
  struct Trace {
    std::shared_ptr<control::ControlStream> stream;
    std::string device;
    bool show_credentials = false;
  };

  Status start_device(const config::DeviceSection& d, std::chrono::milliseconds first_delay);
  void stop_device(const std::string& id);
  void start_bus(const config::BusSection& b);
  void on_signal(const boost::system::error_code& e, int signo);
  void begin_shutdown(const char* why);
  void wait_drain();
  void check_lines();
  void on_committed_group(std::span<const storage::BufferedEvent> group);
  void register_metrics();
  void on_bus_frame(const std::string& device, bool tx, std::span<const uint8_t> bytes,
                    const std::string& note);
  void on_frame(const std::string& device, bool tx, bool bad, std::span<const uint8_t> bytes,
                const std::string& note);
  void on_source_frame(const std::string& device, bool tx, std::span<const uint8_t> bytes,
                       const std::string& note);
  void on_bad_input(const std::string& device, std::string_view kind, const std::string& message);
  bool owned_by_line_device(const config::Config& config, const std::string& bus_id) const;
  bool credentials_allowed(bool asked) const {
    return asked && config_.privacy.card_id == config::PrivacySection::CardId::kRaw;
  }

  Json status_json();
  Json device_json(const std::string& id, const Device& d);
  Reply buffer_reply(const Json& args);
  Json buffer_status(uint64_t pending, int64_t oldest_age_s, const Json& classes);
  Reply read_reply(const Json& args, std::shared_ptr<control::ControlStream> stream);
  Reply reload();
  void release_startup_heap();
  Reply reload_notified();
  void feed_watchdog();

  config::Config config_;
  const int64_t started_us_ = wall_now_us();
  asio::io_context core_{1};
  // libmodbus blocks; its calls run here, never on the core thread.
  asio::thread_pool io_pool_;
  std::unique_ptr<storage::EventBuffer> buffer_;
  std::optional<storage::RecoveryReport> buffer_recovery_;  // set when a damaged file was replaced
  CredentialProtector privacy_ = CredentialProtector::raw();
  std::unique_ptr<Router> router_;
  std::unique_ptr<Uplink> uplink_;
  std::unique_ptr<AlarmMonitor> alarms_;
  std::string boot_id_;
  std::map<std::string, std::shared_ptr<drivers::SerialBus>> buses_;
  std::map<std::string, Device> devices_;  // sorted by id: stable CLI output
  std::unique_ptr<control::ControlServer> control_;
  metrics::Registry metrics_;
  std::unique_ptr<metrics::MetricsServer> metrics_server_;
  std::vector<Tail> tails_;
  std::vector<Trace> traces_;
  asio::signal_set signals_;
  asio::steady_timer shutdown_timer_;
  asio::steady_timer line_check_;
  sd::SdNotifier notifier_{sd::read_notify_env(::getpid())};
  asio::steady_timer watchdog_{core_};
  bool watchdog_failing_ = false;
  std::map<std::string, std::pair<std::chrono::microseconds, std::chrono::steady_clock::time_point>>
      line_seen_;
  bool shutting_down_ = false;
  std::chrono::steady_clock::time_point drain_deadline_{};
  log::LogLimiter frame_log_;  // bad frames: one line per device per second
  std::mutex recent_mu_;  // the log observer may run on any thread
  std::deque<Json> recent_errors_;
};

int Gateway::run(const RunHooks& hooks) {
  if (Status s = prepare_data_dir(config_.gateway.data_dir); !s) {
    log::error("gatewayd", s.message());
    return kExitUnavailable;
  }
  const std::string buffer_path = (fs::path(config_.gateway.data_dir) / "buffer.db").string();
  auto opened = storage::EventBuffer::open_or_recover(buffer_path, buffer_options(config_));
  if (!opened) {
    log::error("buffer", "cannot open ", buffer_path, ": ", opened.status().message());
    return opened.status().code() == Status::Code::kUnavailable ? kExitUnavailable : kExitFailure;
  }
  buffer_ = std::move(opened.value().buffer);
  buffer_recovery_ = opened.value().recovery;
  if (buffer_recovery_) {
    const storage::RecoveryReport& r = *buffer_recovery_;
    log::error("buffer", "the buffer file was damaged (", r.reason, "): moved to ", r.moved_to,
               "; salvaged ", r.salvaged_rows, " events into a new file, ", r.unreadable_spans,
               " unreadable stretch(es); next_seq=", r.next_seq,
               " (seqs are never reused; what could not be read is announced by a gap event)");
  }
  for (const std::string& step : buffer_->migrations_applied()) {
    log::notice("buffer", "upgraded ", buffer_path, ": ", step);
  }

  std::string password;
  if (!config_.mqtt.password_file.empty()) {
    auto secret = read_secret(config_.mqtt.password_file);
    if (!secret) {
      log::error("gatewayd", secret.status().message());
      return kExitUnavailable;
    }
    password = std::move(secret).value();
  }
  {
    auto privacy = CredentialProtector::load(config_.privacy);
    if (!privacy) {
      log::error("config", privacy.status().message());
      return privacy.status().code() == Status::Code::kInvalidArgument ? kExitConfig
                                                                       : kExitUnavailable;
    }
    privacy_ = std::move(privacy).value();
  }

  log::set_observer([this](log::Level, std::string_view component, std::string_view message) {
    std::lock_guard<std::mutex> g(recent_mu_);
    recent_errors_.push_front(Json{{"at_us", wall_now_us()},
                                   {"component", std::string(component)},
                                   {"message", std::string(message)}});
    if (recent_errors_.size() > kRecentErrors) recent_errors_.pop_back();
  });

  RouterOptions router_options;
  router_options.gateway_id = config_.gateway.id;
  router_options.telemetry_linger = config_.buffer.telemetry_linger;
  router_ = std::make_unique<Router>(core_.get_executor(), *buffer_, [this] {
    uplink_->on_committed();
  }, std::move(router_options));
  router_->set_observer([this](std::span<const storage::BufferedEvent> g) {
    on_committed_group(g);
  });
  UplinkSettings settings = uplink_settings(config_, std::move(password));
  boot_id_ = settings.boot_id;
  uplink_ = std::make_unique<Uplink>(core_.get_executor(), *buffer_, std::move(settings), [this] {
    v1::GatewayHealth h;
    h.set_uptime_s(static_cast<uint64_t>((wall_now_us() - started_us_) / 1000000));
    const int64_t now = wall_now_us();
    for (auto cls : kClasses) {
      const storage::ClassStats st = buffer_->stats(cls);
      v1::ClassHealth* c = h.add_buffer();
      c->set_event_class(cls);
      c->set_pending(st.pending);
      (void)now;
      c->set_oldest_age_s(uint64_t(buffer_->oldest_age_us(cls) / 1000000));
      c->set_dropped(st.evicted);
    }
    for (const auto& [id, d] : devices_) {
      const auto state = d.state();
      if (state == DevicePoller::State::kOnline) h.set_devices_online(h.devices_online() + 1);
      if (state == DevicePoller::State::kOffline) h.set_devices_offline(h.devices_offline() + 1);
    }
    return h;
  });

  // Before the devices start, so it sees their first events; its raises and clears go through
  // the router like any event.
  alarms_ = std::make_unique<AlarmMonitor>(core_.get_executor(), *router_, *buffer_, wall_now_us);
  router_->set_submit_observer([this](const v1::Event& e) { alarms_->on_event(e); });
  if (Status s = alarms_->start(config_); !s) {
    log::error("alarm", "cannot read the active alarms from the buffer: ", s.message());
    return kExitUnavailable;
  }

  control_ = std::make_unique<control::ControlServer>(core_.get_executor(),
                                                      config_.control.socket, *this);
  if (Status s = control_->start(); !s) {
    log::error("control", s.message());
    return kExitUnavailable;
  }

  register_metrics();
  if (config_.metrics.listen) {
    metrics_server_ = std::make_unique<metrics::MetricsServer>(core_.get_executor(), metrics_,
                                                               *config_.metrics.listen);
    if (Status s = metrics_server_->start(); !s) {
      log::error("metrics", s.message());
      return kExitUnavailable;
    }
    log::notice("metrics", "serving Prometheus metrics listen=", *config_.metrics.listen,
                " port=", metrics_server_->port(), " path=/metrics");
  }

  for (const config::BusSection& b : config_.buses) {
    if (!owned_by_line_device(config_, b.id)) start_bus(b);
  }
  for (std::size_t i = 0; i < config_.devices.size(); ++i) {
    // Spread first polls over the first period so a building's devices are not hit at once.
    const auto& d = config_.devices[i];
    const auto splay = std::chrono::milliseconds(d.poll.count() * static_cast<int64_t>(i) /
                                                 static_cast<int64_t>(config_.devices.size()));
    if (Status s = start_device(d, splay); !s) {
      log::error("gatewayd", "device ", d.id, ": ", s.message());
      return kExitFailure;
    }
  }

  log::notice("gatewayd", "starting version=", GW_VERSION, " gateway=", config_.gateway.id,
              " devices=", devices_.size(), " buses=", buses_.size(), " buffer=", buffer_path,
              " pending=", buffer_->pending_total(), " next_seq=", buffer_->next_seq(),
              " control=", config_.control.socket);
  router_->start();
  uplink_->start();
  if (!buses_.empty()) check_lines();
  release_startup_heap();
  signals_.async_wait([this](const boost::system::error_code& e, int signo) { on_signal(e, signo); });

  // systemd (Type=notify): ready only now, with the buffer open and checked and every part
  // started; from here the core loop itself feeds the watchdog.
  if (!notifier_.env_problem().empty()) log::warn("systemd", notifier_.env_problem());
  if (Status s = notifier_.ready("gateway " + config_.gateway.id + ", " +
                                 std::to_string(devices_.size()) + " devices");
      !s) {
    log::warn("systemd", "cannot notify: ", s.message());
  }
  feed_watchdog();
  if (hooks.on_ready) hooks.on_ready(core_);

  core_.run();

  io_pool_.stop();
  io_pool_.join();
  log::set_observer(nullptr);
  log::notice("gatewayd", "stopped committed=", router_->committed_total(),
              " published=", uplink_->stats().published_events,
              " acked=", uplink_->stats().acked_events, " pending=", buffer_->pending_total(),
              " next_seq=", buffer_->next_seq());
  return kExitOk;
}

void Gateway::start_bus(const config::BusSection& b) {
  auto bus = std::make_shared<drivers::SerialBus>(core_.get_executor(), bus_settings(b));
  bus->set_tracer([this](const std::string& device, bool tx, std::span<const uint8_t> bytes,
                         const std::string& note) { on_bus_frame(device, tx, bytes, note); });
  bus->start();
  buses_[b.id] = std::move(bus);
}

// A serial_line reader reads its line as a stream: it owns the port, so no SerialBus opens it.
bool Gateway::owned_by_line_device(const config::Config& config, const std::string& bus_id) const {
  return std::any_of(config.devices.begin(), config.devices.end(), [&](const auto& d) {
    return d.driver == "serial_line" && d.bus == bus_id;
  });
}

Status Gateway::start_device(const config::DeviceSection& d, std::chrono::milliseconds first_delay) {
  const DriverContext context{
      core_.get_executor(), io_pool_.get_executor(),
      [this](const std::string& id) -> std::shared_ptr<drivers::SerialBus> {
        auto it = buses_.find(id);
        return it == buses_.end() ? nullptr : it->second;
      },
      [this](const std::string& id) -> const config::BusSection* {
        for (const auto& b : config_.buses) {
          if (b.id == id) return &b;
        }
        return nullptr;
      },
      [this](const std::string& device, bool tx, bool bad, std::span<const uint8_t> bytes,
             const std::string& note) { on_frame(device, tx, bad, bytes, note); },
      [this](const std::string& device) {
        return std::any_of(traces_.begin(), traces_.end(), [&](const Trace& t) {
          return t.device == device && t.stream->open();
        });
      }};
  if (is_event_source(d.driver)) {
    auto source = make_source(d, context);
    if (!source) return source.status();
    auto cursor = buffer_->cursor(d.id);
    if (!cursor) return cursor.status();
    Device dev;
    dev.runner = std::make_unique<SourceRunner>(d, std::move(source).value(), *router_, privacy_);
    dev.runner->set_tracer([this](const std::string& device, bool tx,
                                  std::span<const uint8_t> bytes, const std::string& note) {
      on_source_frame(device, tx, bytes, note);
    });
    dev.runner->set_bad_input_observer(
        [this](const std::string& device, std::string_view kind, const std::string& message) {
          on_bad_input(device, kind, message);
        });
    dev.runner->start(std::move(cursor).value());
    devices_[d.id] = std::move(dev);
    return Status::ok();
  }
  auto driver = make_driver(d, context);
  if (!driver) return driver.status();
  Device dev;
  dev.driver = std::move(driver).value();
  dev.poller = std::make_unique<DevicePoller>(core_.get_executor(), d, dev.driver, *router_);
  dev.poller->set_poll_observer([this](const std::string& id, const drivers::PollResult& r) {
    metrics_.histogram("gateway_poll_latency_seconds", "Time a device took to answer a poll.",
                       {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5})
        .observe(double(r.latency.count()) / 1e6);
    if (!r.status) {
      metrics_.counter("gateway_device_poll_errors_total", "Failed polls by device and kind.",
                       {{"device", id}, {"kind", r.status.code() == Status::Code::kTimeout ? "timeout"
                                                 : r.status.code() == Status::Code::kProtocol ? "protocol"
                                                 : r.status.code() == Status::Code::kUnavailable ? "unavailable"
                                                 : "other"}})
          .inc();
    }
  });
  dev.poller->start(first_delay);
  devices_[d.id] = std::move(dev);
  return Status::ok();
}

void Gateway::stop_device(const std::string& id) {
  auto it = devices_.find(id);
  if (it == devices_.end()) return;
  it->second.stop();
  for (auto& t : traces_) {
    if (t.device == id) t.stream->end("device " + id + " was removed or restarted by a reload");
  }
  std::erase_if(traces_, [&](const Trace& t) { return t.device == id; });
  devices_.erase(it);
  metrics_.remove_matching("device", id);
}

void Gateway::on_signal(const boost::system::error_code& e, int signo) {
  if (e) return;
  if (signo == SIGHUP) {
    Reply r = reload_notified();
    if (!r.ok) log::error("config", "reload on SIGHUP refused, old config keeps running: ", r.message);
    signals_.async_wait([this](const boost::system::error_code& e2, int s) { on_signal(e2, s); });
    return;
  }
  begin_shutdown(signo == SIGTERM ? "SIGTERM" : "SIGINT");
}

void Gateway::begin_shutdown(const char* why) {
  if (shutting_down_) return;
  shutting_down_ = true;
  log::notice("gatewayd", "stopping on ", why);
  (void)notifier_.stopping();
  for (auto& [id, d] : devices_) d.stop();
  for (auto& [id, bus] : buses_) bus->stop();
  line_check_.cancel();
  alarms_->stop();
  for (auto& t : tails_) t.stream->end("gatewayd is stopping");
  for (auto& t : traces_) t.stream->end("gatewayd is stopping");
  (void)router_->flush();
  drain_deadline_ = std::chrono::steady_clock::now() + kShutdownDrain;
  wait_drain();
}

// Lets in-flight publishes finish for a moment, then leaves.
void Gateway::wait_drain() {
  const bool idle = !uplink_->stats().connected || uplink_->stats().inflight == 0;
  if (idle || std::chrono::steady_clock::now() >= drain_deadline_) {
    (void)router_->flush();
    if (router_->queued() > 0) {
      log::error("buffer", router_->queued(), " events could not be committed before the stop "
                 "(store or disk full) and are lost with this process");
    }
    uplink_->stop(kShutdownDisconnect);
    control_->stop();
    if (metrics_server_) metrics_server_->stop();
    core_.stop();
    return;
  }
  shutdown_timer_.expires_after(std::chrono::milliseconds(20));
  shutdown_timer_.async_wait([this](const boost::system::error_code& e) {
    if (!e) wait_drain();
  });
}

// A line that cannot keep up shows as polls waiting in its queue: say so, once a minute at most
// per bus, with what to do about it.
void Gateway::check_lines() {
  line_check_.expires_after(kLineCheckEvery);
  line_check_.async_wait([this](const boost::system::error_code& e) {
    if (e) return;
    const auto now = std::chrono::steady_clock::now();
    for (auto& [id, bus] : buses_) {
      const drivers::BusStats st = bus->take_window_stats();
      auto& [busy_before, last_warned] = line_seen_[id];
      const double load = double((st.busy - busy_before).count()) /
                          double(std::chrono::duration_cast<std::chrono::microseconds>(
                                     kLineCheckEvery).count());
      busy_before = st.busy;
      if (st.max_wait > std::chrono::milliseconds(500) &&
          now - last_warned >= std::chrono::minutes(1)) {
        last_warned = now;
        log::warn("bus", id, " cannot keep up: busy ", int(load * 100), "% of the last ",
                  kLineCheckEvery.count(), "s, polls waited up to ", st.max_wait.count() / 1000,
                  "ms in the queue; lengthen poll periods, raise the baud rate or split the line");
      }
    }
    for (const auto& [who, count] : frame_log_.take_suppressed()) {
      log::notice("bus", "summary device=", who, " bad_frames_not_logged=", count, " over the last ",
                  kLineCheckEvery.count(), "s");
    }
    check_lines();
  });
}

void Gateway::on_committed_group(std::span<const storage::BufferedEvent> group) {
  if (alarms_) alarms_->on_committed(group);
  for (const storage::BufferedEvent& e : group) {
    metrics_.counter("gateway_events_committed_total", "Events committed to the buffer.",
                     {{"class", std::string(protocols::class_name(e.event_class))},
                      {"device", e.device_id}})
        .inc();
  }
  std::erase_if(tails_, [](const Tail& t) { return !t.stream->open(); });
  if (tails_.empty()) return;
  for (const storage::BufferedEvent& stored : group) {
    v1::Event event;
    if (!event.ParseFromString(stored.payload)) continue;
    for (Tail& t : tails_) {
      if (!t.device.empty() && t.device != event.device_id()) continue;
      if (t.cls && *t.cls != event.event_class()) continue;
      t.stream->send(Json{{"event", event_json(event, credentials_allowed(t.show_credentials))}});
    }
  }
}

// What a push device sent or was sent. Card readers and gates carry card numbers in their
// frames: those are shown only where the operator may see credentials (privacy.card_id: raw and
// --show-credentials).
void Gateway::on_source_frame(const std::string& device, bool tx, std::span<const uint8_t> bytes,
                              const std::string& note) {
  std::erase_if(traces_, [](const Trace& t) { return !t.stream->open(); });
  auto it = devices_.find(device);
  // By kind, and by driver for a reader configured under another kind.
  const bool carries_cards =
      it != devices_.end() &&
      (it->second.config().kind == v1::CARD_READER || it->second.config().kind == v1::ACCESS_GATE ||
       it->second.config().driver != "camera_http");
  for (Trace& t : traces_) {
    if (t.device != device) continue;
    const bool show = !carries_cards || credentials_allowed(t.show_credentials);
    t.stream->send(Json{{"at_us", wall_now_us()},
                        {"device", device},
                        {"dir", tx ? "tx" : "rx"},
                        {"hex", show ? hex_of(bytes) : std::string()},
                        {"bytes", bytes.size()},
                        {"note", show ? note : std::string("[card data hidden: privacy]")}});
  }
}

// Dropped input from a push device: counted always, logged once a second per device at most.
void Gateway::on_bad_input(const std::string& device, std::string_view kind,
                           const std::string& message) {
  metrics_.counter("gateway_device_bad_input_total", "Input a device sent that was dropped, by kind.",
                   {{"device", device}, {"kind", std::string(kind)}})
      .inc();
  uint64_t held_back = 0;
  if (frame_log_.allow(device, held_back)) {
    log::warn("device", "bad input device=", device, " kind=", kind, " reason=\"", message, "\"",
              held_back ? " (" + std::to_string(held_back) + " more like it not logged)" : "");
  }
}

void Gateway::on_bus_frame(const std::string& device, bool tx, std::span<const uint8_t> bytes,
                           const std::string& note) {
  // On a bus, an answer with a note is one the bus refused.
  on_frame(device, tx, !tx && !note.empty(), bytes, note);
}

void Gateway::on_frame(const std::string& device, bool tx, bool bad, std::span<const uint8_t> bytes,
                       const std::string& note) {
  if (bad) {
    const std::string who = device.empty() ? "line" : device;
    uint64_t held_back = 0;
    if (frame_log_.allow(who, held_back)) {
      log::warn("bus", "bad frame device=", who, " bytes=", bytes.size(), " reason=\"", note, "\"",
                held_back ? " (" + std::to_string(held_back) + " more like it not logged)" : "");
    }
  }
  std::erase_if(traces_, [](const Trace& t) { return !t.stream->open(); });
  for (Trace& t : traces_) {
    // Stray bytes belong to no device; show them to every trace on that line's devices.
    if (!device.empty() && t.device != device) continue;
    t.stream->send(Json{{"at_us", wall_now_us()},
                        {"device", device},
                        {"dir", tx ? "tx" : "rx"},
                        {"hex", hex_of(bytes)},
                        {"note", note}});
  }
}

// Gauges and totals that the daemon's parts already keep are copied in at each scrape.
void Gateway::register_metrics() {
  uplink_->set_ack_observer([this](std::chrono::microseconds waited, std::size_t) {
    metrics_.histogram("gateway_publish_ack_latency_seconds",
                       "Time from publishing a batch to its PUBACK.",
                       {0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1})
        .observe(double(waited.count()) / 1e6);
  });
  metrics_.on_collect([this] {
    const int64_t now = wall_now_us();
    alarms_->collect(metrics_);
    metrics_.gauge("gateway_uptime_seconds", "Seconds since gatewayd started.")
        .set(double(now - started_us_) / 1e6);
    for (auto cls : kClasses) {
      const storage::ClassStats st = buffer_->stats(cls);
      const metrics::Labels l{{"class", std::string(protocols::class_name(cls))}};
      metrics_.gauge("gateway_buffer_pending_events", "Events waiting in the buffer.", l)
          .set(double(st.pending));
      metrics_.gauge("gateway_buffer_bytes", "Payload bytes in the buffer.", l).set(double(st.bytes));
      metrics_.gauge("gateway_buffer_oldest_age_seconds", "Age of the oldest buffered event.", l)
          .set(double(buffer_->oldest_age_us(cls)) / 1e6);
      metrics_.counter("gateway_buffer_dropped_events_total",
                       "Events removed from the buffer undelivered (evicted, rejected or past "
                       "max_age; each announced by a gap event).", l)
          .set(double(st.evicted));
    }
    const storage::SpaceReport space = buffer_->space();
    metrics_.gauge("gateway_buffer_fill_ratio",
                   "How full the room for droppable (telemetry, status) events is, 0..1.")
        .set(space.fill);
    metrics_.gauge("gateway_buffer_file_bytes", "Size of the buffer's database file.")
        .set(double(space.file_bytes));
    metrics_.gauge("gateway_buffer_wal_bytes", "Size of the buffer's write-ahead log.")
        .set(double(space.wal_bytes));
    metrics_.gauge("gateway_buffer_reserve_bytes",
                   "Space held for access and alarm events when the store or disk is full.")
        .set(double(space.reserve_bytes));
    metrics_.gauge("gateway_buffer_disk_low", "1 while the data_dir filesystem is below its "
                   "low-water mark (the buffer does not grow).")
        .set(space.disk_low);
    const RouterStats& rs = router_->stats();
    metrics_.counter("gateway_buffer_commit_failures_total",
                     "Commit attempts that failed (I/O error, disk full); retried.")
        .set(double(rs.failed_commits));
    metrics_.counter("gateway_buffer_blocked_commits_total",
                     "Commits that stopped at an access/alarm event with no room left.")
        .set(double(rs.blocked_commits));
    metrics_.counter("gateway_buffer_full_alarms_total", "buffer_full alarms raised.")
        .set(double(rs.buffer_alarms));
    metrics_.counter("gateway_buffer_recoveries_total",
                     "Damaged buffer files moved aside and rebuilt at start.")
        .set(buffer_recovery_ ? 1 : 0);
    metrics_.gauge("gateway_buffer_queued_events", "Events waiting in memory for their commit.")
        .set(double(router_->queued()));
    metrics_.gauge("gateway_poll_slowdown",
                   "Back-pressure: telemetry polls run this many times less often.")
        .set(router_->slowdown());
    const UplinkStats& u = uplink_->stats();
    metrics_.gauge("gateway_mqtt_connected", "1 while connected to the broker.").set(u.connected);
    metrics_.gauge("gateway_mqtt_inflight_publishes", "Publishes awaiting PUBACK.")
        .set(double(u.inflight));
    metrics_.counter("gateway_mqtt_reconnects_total", "Successful connects after the first.")
        .set(double(u.reconnects));
    metrics_.counter("gateway_events_published_total", "Events published (with republishes).")
        .set(double(u.published_events));
    metrics_.counter("gateway_events_acked_total", "Events acknowledged by the broker.")
        .set(double(u.acked_events));
    metrics_.counter("gateway_events_republished_total",
                     "Events sent again after a lost connection.")
        .set(double(u.republished_events));
    for (const auto& [id, d] : devices_) {
      const metrics::Labels l{{"device", id}};
      metrics_.gauge("gateway_device_online", "1 while the device answers.", l)
          .set(d.state() == DevicePoller::State::kOnline);
      if (d.runner) {
        metrics_.counter("gateway_device_events_total", "Events a push device reported.", l)
            .set(double(d.runner->events()));
        continue;
      }
      metrics_.counter("gateway_device_polls_total", "Polls of the device.", l)
          .set(double(d.poller->polls()));
      metrics_.gauge("gateway_device_poll_latency_seconds", "Latency of the last poll.", l)
          .set(double(d.poller->last_latency().count()) / 1e6);
    }
    for (const auto& [id, bus] : buses_) {
      const metrics::Labels l{{"bus", id}};
      const drivers::BusStats& st = bus->stats();
      metrics_.counter("gateway_bus_exchanges_total", "Requests sent on the line.", l)
          .set(double(st.exchanges));
      metrics_.counter("gateway_bus_timeouts_total", "Requests without a complete answer.", l)
          .set(double(st.timeouts));
      metrics_.counter("gateway_bus_bad_frames_total", "Answers that were not valid frames.", l)
          .set(double(st.bad_frames));
      metrics_.counter("gateway_bus_discarded_bytes_total", "Stray bytes dropped between requests.", l)
          .set(double(st.discarded_bytes));
    }
  });
}

Reply Gateway::handle(const control::Request& req, std::shared_ptr<control::ControlStream> stream) {
  const Json& a = req.args;
  auto text_arg = [&](const char* key) -> std::optional<std::string> {
    auto it = a.find(key);
    if (it == a.end() || it->is_null()) return std::nullopt;
    if (!it->is_string()) return std::string();
    return it->get<std::string>();
  };
  auto flag_arg = [&](const char* key) {
    auto it = a.find(key);
    return it != a.end() && it->is_boolean() && it->get<bool>();
  };

  if (req.cmd == "hello") {
    return Reply::success(Json{{"protocol", control::kProtocolVersion},
                               {"gateway_id", config_.gateway.id},
                               {"version", GW_VERSION},
                               {"commands", {"hello", "status", "devices", "buffer", "tail",
                                             "trace", "read", "reload", "alarms"}}});
  }
  if (req.cmd == "status") return Reply::success(status_json());
  if (req.cmd == "devices") {
    Json list = Json::array();
    if (auto id = text_arg("device")) {
      auto it = devices_.find(*id);
      if (it == devices_.end()) return Reply::error(ec::kNotFound, "no device '" + *id + "'");
      list.push_back(device_json(it->first, it->second));
    } else {
      for (const auto& [each, d] : devices_) list.push_back(device_json(each, d));
    }
    return Reply::success(Json{{"devices", list}});
  }
  if (req.cmd == "buffer") return buffer_reply(a);
  if (req.cmd == "tail") {
    Tail t{stream, text_arg("device").value_or(""), std::nullopt, flag_arg("show_credentials")};
    if (auto c = text_arg("class")) {
      t.cls = protocols::parse_class_name(*c);
      if (!t.cls) {
        return Reply::error(ec::kBadRequest,
                            "unknown class '" + *c + "' (access, alarm, telemetry, status)");
      }
    }
    if (!t.device.empty() && !devices_.count(t.device)) {
      return Reply::error(ec::kNotFound, "no device '" + t.device + "'");
    }
    tails_.push_back(std::move(t));
    return Reply::stream();
  }
  if (req.cmd == "trace") {
    auto id = text_arg("device");
    if (!id || id->empty()) return Reply::error(ec::kBadRequest, "trace needs args.device");
    auto it = devices_.find(*id);
    if (it == devices_.end()) return Reply::error(ec::kNotFound, "no device '" + *id + "'");
    const config::DeviceSection& dc = it->second.config();
    if (!it->second.runner && dc.bus.empty() && dc.driver != "modbus_tcp") {
      return Reply::error(ec::kBadRequest, "trace cannot show the frames of " + *id + " (driver " +
                                               dc.driver + ")");
    }
    traces_.push_back({stream, *id, flag_arg("show_credentials")});
    return Reply::stream();
  }
  if (req.cmd == "read") return read_reply(a, stream);
  if (req.cmd == "reload") return reload_notified();
  if (req.cmd == "alarms") return Reply::success(alarms_->to_json());
  return Reply::error(ec::kUnknownCommand, "unknown command '" + req.cmd + "'");
}

// The buffer's part of status: depth, bounds, and what store-and-forward is doing about them.
Json Gateway::buffer_status(uint64_t pending, int64_t oldest_age_s, const Json& classes) {
  const storage::SpaceReport sp = buffer_->space();
  const RouterStats& rs = router_->stats();
  Json recovery = nullptr;
  if (buffer_recovery_) {
    recovery = Json{{"reason", buffer_recovery_->reason},
                    {"moved_to", buffer_recovery_->moved_to},
                    {"salvaged", buffer_recovery_->salvaged_rows},
                    {"unreadable_spans", buffer_recovery_->unreadable_spans}};
  }
  return Json{{"pending", pending},
              {"oldest_age_s", oldest_age_s},
              {"next_seq", buffer_->next_seq()},
              {"classes", classes},
              {"max_bytes", sp.max_bytes},
              {"file_bytes", sp.file_bytes},
              {"wal_bytes", sp.wal_bytes},
              {"wal_high_water_bytes", sp.wal_high_water_bytes},
              {"reserve_bytes", sp.reserve_bytes},
              {"reserve_target_bytes", sp.reserve_target_bytes},
              {"fill", sp.fill},
              {"disk_low", sp.disk_low},
              {"disk_free_bytes", sp.disk_free_bytes ? Json(*sp.disk_free_bytes) : Json(nullptr)},
              {"queued_in_memory", router_->queued()},
              {"commit_failing", rs.failing},
              {"last_commit_error", rs.last_error},
              {"full_alarm_active", rs.alarm_active},
              {"poll_slowdown", router_->slowdown()},
              {"clock_trusted", router_->clock_trusted()},
              {"recovered", recovery}};
}

Json Gateway::status_json() {
  const int64_t now = wall_now_us();
  const UplinkStats& u = uplink_->stats();
  Json classes = Json::object();
  uint64_t pending = 0;
  int64_t oldest = 0;
  for (auto cls : kClasses) {
    const storage::ClassStats st = buffer_->stats(cls);
    // On the buffer clock: a wall-clock step does not make rows look ancient or new.
    const int64_t age = buffer_->oldest_age_us(cls) / 1000000;
    classes[std::string(protocols::class_name(cls))] = Json{
        {"pending", st.pending}, {"bytes", st.bytes}, {"oldest_age_s", age}, {"dropped", st.evicted}};
    pending += st.pending;
    oldest = std::max(oldest, age);
  }
  Json devices = Json::array();
  int online = 0, offline = 0;
  for (const auto& [id, d] : devices_) {
    const auto state = d.state();
    online += state == DevicePoller::State::kOnline;
    offline += state == DevicePoller::State::kOffline;
    devices.push_back(Json{{"id", id},
                           {"online", state == DevicePoller::State::kOnline},
                           {"state", state_name(state)},
                           {"last_error", d.last_error()}});
  }
  Json buses = Json::array();
  for (const auto& [id, bus] : buses_) {
    const drivers::BusStats& st = bus->stats();
    buses.push_back(Json{{"id", id},
                         {"open", bus->is_open()},
                         {"exchanges", st.exchanges},
                         {"timeouts", st.timeouts},
                         {"bad_frames", st.bad_frames},
                         {"discarded_bytes", st.discarded_bytes},
                         {"queued", st.queued}});
  }
  Json recent = Json::array();
  {
    std::lock_guard<std::mutex> g(recent_mu_);
    for (const Json& e : recent_errors_) recent.push_back(e);
  }
  return Json{{"gateway_id", config_.gateway.id},
              {"version", GW_VERSION},
              {"boot_id", boot_id_},
              {"uptime_s", (now - started_us_) / 1000000},
              {"started_at_us", started_us_},
              {"mqtt", Json{{"uri", config_.mqtt.uri},
                            {"connected", u.connected},
                            {"connected_since_us", u.connected ? u.connected_since_us : 0},
                            {"disconnected_since_us", u.disconnected_since_us},
                            {"reconnects", u.reconnects},
                            {"last_error", u.last_error},
                            {"inflight", u.inflight},
                            {"published_events", u.published_events},
                            {"acked_events", u.acked_events},
                            {"republished_events", u.republished_events},
                            {"historical_events", u.historical_events},
                            {"backlog_events", u.backlog_events},
                            {"backlog_pending_at_connect", u.backlog_pending_at_connect},
                            {"backlog_drained_after_ms", u.backlog_drained_after_ms},
                            {"backlog_window", u.backlog_window},
                            {"startup_splay_ms", u.startup_splay_ms}}},
              {"buffer", buffer_status(pending, oldest, classes)},
              {"devices_online", online},
              {"devices_offline", offline},
              {"devices", devices},
              {"buses", buses},
              {"last_errors", recent}};
}

Json Gateway::device_json(const std::string& id, const Device& d) {
  if (d.runner) {
    const SourceRunner& r = *d.runner;
    const config::DeviceSection& c = r.device();
    Json bad = Json::object();
    for (const auto& [kind, n] : r.bad_input()) bad[kind] = n;
    return Json{{"id", id},
                {"kind", kind_name(c.kind)},
                {"driver", c.driver},
                {"address", !c.host.empty() ? c.host + ":" + std::to_string(c.port)
                            : !c.bus.empty() ? c.bus
                                             : c.serial_port},
                {"door", c.door},
                {"online", r.state() == DevicePoller::State::kOnline},
                {"state", state_name(r.state())},
                {"last_error", r.last_error()},
                {"events", r.events()},
                {"last_event_us", r.last_event_us()},
                {"bad_input", bad}};
  }
  const DevicePoller& p = *d.poller;
  const config::DeviceSection& c = p.device();
  Json points = Json::array();
  for (std::size_t i = 0; i < c.points.size(); ++i) {
    const auto& last = p.last_values()[i];
    points.push_back(Json{{"name", c.points[i].spec.name},
                          {"value", last.value},
                          {"unit", c.points[i].spec.unit},
                          {"good", last.good},
                          {"at_us", last.at_us}});
  }
  const auto& e = p.errors();
  return Json{{"id", id},
              {"kind", kind_name(c.kind)},
              {"driver", c.driver},
              {"address", c.bus.empty() ? c.host + ":" + std::to_string(c.port) : c.bus},
              {"unit_id", c.unit_id},
              {"online", p.state() == DevicePoller::State::kOnline},
              {"state", state_name(p.state())},
              {"last_good_read_us", p.last_good_read_us()},
              {"last_error", p.last_error()},
              {"polls", p.polls()},
              {"failures", p.failures()},
              {"errors", Json{{"timeout", e.timeout},
                              {"protocol", e.protocol},
                              {"unavailable", e.unavailable},
                              {"other", e.other}}},
              {"skipped_while_offline", p.skipped_while_offline()},
              {"skipped_for_backpressure", p.throttled()},
              {"overruns", p.overruns()},
              {"poll_ms_configured", c.poll.count()},
              {"poll_ms_achieved", p.achieved_period().count()},
              {"latency_ms", Json{{"last", p.last_latency().count() / 1000.0},
                                  {"avg", p.mean_latency().count() / 1000.0}}},
              {"points", points}};
}

Reply Gateway::buffer_reply(const Json& args) {
  std::size_t n = 5;
  if (auto it = args.find("oldest"); it != args.end()) {
    if (!it->is_number_unsigned() || it->get<uint64_t>() > 1000) {
      return Reply::error(ec::kBadRequest, "oldest must be a whole number from 0 to 1000");
    }
    n = it->get<std::size_t>();
  }
  Json status = status_json();
  Json oldest = Json::array();
  for (auto cls : kClasses) {
    auto rows = buffer_->peek_oldest(cls, n);
    if (!rows) return Reply::error(ec::kUnavailable, rows.status().message());
    for (const auto& r : *rows) {
      v1::Event event;
      if (event.ParseFromString(r.payload)) oldest.push_back(event_json(event, false));
    }
  }
  return Reply::success(Json{{"path", (fs::path(config_.gateway.data_dir) / "buffer.db").string()},
                             {"next_seq", buffer_->next_seq()},
                             {"pending", status["buffer"]["pending"]},
                             {"classes", status["buffer"]["classes"]},
                             {"oldest", oldest}});
}

// A one-off read is answered when the device has answered.
Reply Gateway::read_reply(const Json& args, std::shared_ptr<control::ControlStream> stream) {
  auto device = args.find("device");
  auto point = args.find("point");
  if (device == args.end() || !device->is_string() || point == args.end() || !point->is_string()) {
    return Reply::error(ec::kBadRequest, "read needs args.device and args.point");
  }
  const std::string id = device->get<std::string>();
  const std::string name = point->get<std::string>();
  auto it = devices_.find(id);
  if (it == devices_.end()) return Reply::error(ec::kNotFound, "no device '" + id + "'");
  if (!it->second.poller) {
    return Reply::error(ec::kBadRequest, "device " + id + " (driver " + it->second.config().driver +
                                             ") reports events by itself; it has no points to read");
  }
  const auto& points = it->second.poller->device().points;
  auto p = std::find_if(points.begin(), points.end(),
                        [&](const config::PointSection& s) { return s.spec.name == name; });
  if (p == points.end()) {
    std::string names;
    for (const auto& s : points) names += (names.empty() ? "" : ", ") + s.spec.name;
    return Reply::error(ec::kNotFound, "device " + id + " has no point '" + name + "' (" + names + ")");
  }
  const std::size_t index = static_cast<std::size_t>(p - points.begin());
  const std::string unit = p->spec.unit;
  it->second.poller->read_now([stream = std::move(stream), id, name, unit,
                               index](const drivers::PollResult& r) {
    Json item{{"device", id},     {"point", name},     {"value", nullptr},
              {"unit", unit},     {"good", false},     {"error", ""},
              {"latency_ms", r.latency.count() / 1000.0}};
    if (!r.status) {
      item["error"] = r.status.message();
    } else {
      for (const auto& reading : r.points) {
        if (reading.index != index) continue;
        item["good"] = reading.good;
        if (reading.good) item["value"] = reading.value;
        item["error"] = reading.error;
      }
    }
    stream->respond(Reply::success(item));
  });
  return Reply::later();
}

Reply Gateway::reload() {
  config::LoadResult loaded = config::load_config(config_.source_path);
  std::vector<config::ConfigError> errors = loaded.errors;
  if (loaded.config) {
    auto more = check_drivers(*loaded.config);
    errors.insert(errors.end(), more.begin(), more.end());
  }
  if (!errors.empty()) {
    std::string text;
    for (const auto& e : errors) text += (text.empty() ? "" : "\n") + e.to_string();
    log::error("config", "reload refused, the running config stays: ", errors.size(),
               " problem(s), first: ", errors.front().to_string());
    return Reply::error(ec::kInvalidConfig, text);
  }
  const config::Config& next = *loaded.config;
  // Only devices and buses change live; the rest would mean a new identity, a new connection, a
  // new store or a new listener, which a restart does cleanly. Nothing is applied half.
  std::vector<std::string> needs_restart;
  if (!(config_.gateway == next.gateway)) needs_restart.push_back("gateway");
  if (!(config_.mqtt == next.mqtt)) needs_restart.push_back("mqtt");
  if (!(config_.buffer == next.buffer)) needs_restart.push_back("buffer");
  if (!(config_.control == next.control)) needs_restart.push_back("control");
  if (!(config_.metrics == next.metrics)) needs_restart.push_back("metrics");
  if (!(config_.privacy == next.privacy)) needs_restart.push_back("privacy");
  if (!needs_restart.empty()) {
    std::string list;
    for (const auto& s : needs_restart) list += (list.empty() ? "" : ", ") + s;
    log::error("config", "reload refused, the running config stays: changes to ", list,
               " need a restart (systemctl restart gatewayd)");
    return Reply::error(ec::kRestartRequired,
                        "changes to " + list + " need a restart (systemctl restart gatewayd); "
                        "nothing was changed");
  }

  // Buses first: a changed line restarts every device on it.
  std::set<std::string> changed_buses;
  // Plain names, not structured bindings: clang 14 (clang-tidy, the fuzz build) cannot capture
  // a binding in a lambda.
  for (const auto& entry : buses_) {
    const std::string& id = entry.first;
    auto it = std::find_if(next.buses.begin(), next.buses.end(),
                           [&](const config::BusSection& b) { return b.id == id; });
    auto old = std::find_if(config_.buses.begin(), config_.buses.end(),
                            [&](const config::BusSection& b) { return b.id == id; });
    if (it == next.buses.end() || old == config_.buses.end() || !same_bus(*old, *it)) {
      changed_buses.insert(id);
    }
  }
  Json added = Json::array(), removed = Json::array(), changed = Json::array();
  int unchanged = 0;
  std::vector<const config::DeviceSection*> to_start;
  for (const config::DeviceSection& d : next.devices) {
    auto it = devices_.find(d.id);
    if (it == devices_.end()) {
      added.push_back(d.id);
      to_start.push_back(&d);
    } else if (!same_device(it->second.config(), d) ||
               (!d.bus.empty() && changed_buses.count(d.bus))) {
      changed.push_back(d.id);
      to_start.push_back(&d);
    } else {
      ++unchanged;
    }
  }
  std::vector<std::string> gone;
  for (const auto& entry : devices_) {
    const std::string& id = entry.first;
    const bool kept = std::any_of(next.devices.begin(), next.devices.end(),
                                  [&](const config::DeviceSection& d) { return d.id == id; });
    if (!kept) gone.push_back(id);
  }
  for (const auto& id : gone) {
    removed.push_back(id);
    stop_device(id);
  }
  for (const config::DeviceSection* d : to_start) stop_device(d->id);
  for (const auto& id : changed_buses) {
    buses_[id]->stop();
    buses_.erase(id);
    metrics_.remove_matching("bus", id);
  }
  for (const config::BusSection& b : next.buses) {
    if (!buses_.count(b.id) && !owned_by_line_device(next, b.id)) start_bus(b);
  }
  // Outside devices and buses the new config is equal (checked above) or alarms, which the
  // monitor takes over live (active alarms stay active).
  config::Config old = std::move(config_);
  config_ = *loaded.config;
  alarms_->reconfigure(config_);
  for (const config::DeviceSection* d : to_start) {
    const auto& fresh = *std::find_if(config_.devices.begin(), config_.devices.end(),
                                      [&](const config::DeviceSection& x) { return x.id == d->id; });
    if (Status s = start_device(fresh, std::chrono::milliseconds(0)); !s) {
      log::error("config", "reload: device ", fresh.id, " could not start: ", s.message());
    }
  }
  log::notice("config", "reloaded ", config_.source_path, ": added=", added.size(),
              " removed=", removed.size(), " changed=", changed.size(), " unchanged=", unchanged);
  return Reply::success(Json{{"reloaded", true},
                             {"added", added},
                             {"removed", removed},
                             {"changed", changed},
                             {"unchanged", unchanged}});
}

// Parsing a large config (yaml-cpp builds a node per scalar: ~40 MB at peak for 1,000 devices)
// leaves the heap full of free chunks that malloc keeps; the box's RSS should show what the
// daemon holds, not what start-up once needed.
void Gateway::release_startup_heap() { malloc_trim(0); }

// systemd sees the reload begin and end (RELOADING=1, READY=1), refused or not.
Reply Gateway::reload_notified() {
  (void)notifier_.reloading();
  Reply r = reload();
  release_startup_heap();
  (void)notifier_.ready("gateway " + config_.gateway.id + ", " + std::to_string(devices_.size()) +
                        " devices");
  return r;
}

// One keep-alive per half WatchdogSec, sent by a timer of the core loop: a loop that stops
// turning stops the keep-alives, and systemd restarts the service.
void Gateway::feed_watchdog() {
  const auto interval = notifier_.watchdog_interval();
  if (!interval) return;
  if (Status s = notifier_.watchdog(); !s) {
    if (!watchdog_failing_) log::warn("systemd", "watchdog keep-alive: ", s.message());
    watchdog_failing_ = true;  // once per failure streak, not every keep-alive
  } else {
    watchdog_failing_ = false;
  }
  watchdog_.expires_after(*interval);
  watchdog_.async_wait([this](const boost::system::error_code& e) {
    if (!e) feed_watchdog();
  });
}

int run_gateway(config::Config config, const RunHooks& hooks) {
  Gateway gateway(std::move(config));
  return gateway.run(hooks);
}

}  // namespace gw
