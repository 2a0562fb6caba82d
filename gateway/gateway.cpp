#include "gateway/gateway.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <thread>

#include "drivers/asio.h"
#include "gateway/device_poller.h"
#include "gateway/driver_registry.h"
#include "gateway/log.h"
#include "gateway/router.h"
#include "gateway/uplink.h"
#include "storage/event_buffer.h"

namespace gw {

namespace v1 = campus::gateway::v1;
namespace fs = std::filesystem;

namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUnavailable = 69;
constexpr auto kShutdownDrain = std::chrono::seconds(2);
constexpr auto kShutdownDisconnect = std::chrono::seconds(2);
constexpr auto kLineCheckEvery = std::chrono::seconds(10);

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

// Creates data_dir if needed and proves it writable; the contract's exit 69 otherwise.
Status prepare_data_dir(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Status::unavailable("cannot create data_dir " + dir + ": " + ec.message());
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    return Status::unavailable("data_dir " + dir + " is not writable: " + std::strerror(errno));
  }
  return Status::ok();
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
  s.version = GW_VERSION;
  s.boot_id = random_hex(16);
  s.started_at_us = wall_now_us();
  return s;
}

}  // namespace

int run_gateway(const config::Config& config) {
  const int64_t started_us = wall_now_us();
  if (Status s = prepare_data_dir(config.gateway.data_dir); !s) {
    log::error("gatewayd", s.message());
    return kExitUnavailable;
  }
  const std::string buffer_path = (fs::path(config.gateway.data_dir) / "buffer.db").string();
  auto opened = storage::EventBuffer::open(buffer_path);
  if (!opened) {
    log::error("buffer", "cannot open ", buffer_path, ": ", opened.status().message());
    return opened.status().code() == Status::Code::kUnavailable ? kExitUnavailable : kExitFailure;
  }
  std::unique_ptr<storage::EventBuffer> buffer = std::move(opened).value();

  std::string password;
  if (!config.mqtt.password_file.empty()) {
    auto secret = read_secret(config.mqtt.password_file);
    if (!secret) {
      log::error("gatewayd", secret.status().message());
      return kExitUnavailable;
    }
    password = std::move(secret).value();
  }

  asio::io_context core(1);
  // libmodbus blocks; its calls run here, never on the core thread.
  const auto io_threads = static_cast<std::size_t>(
      std::clamp<std::size_t>(config.devices.size(), 1, 8));
  asio::thread_pool io_pool(io_threads);

  std::vector<std::unique_ptr<DevicePoller>> pollers;
  UplinkSettings settings = uplink_settings(config, std::move(password));
  Uplink* uplink_ptr = nullptr;
  Router router(core.get_executor(), *buffer, [&] { uplink_ptr->on_committed(); });
  auto health = [&] {
    v1::GatewayHealth h;
    h.set_uptime_s(static_cast<uint64_t>((wall_now_us() - started_us) / 1000000));
    const int64_t now = wall_now_us();
    for (auto cls : {v1::ACCESS, v1::ALARM, v1::TELEMETRY, v1::STATUS}) {
      const storage::ClassStats st = buffer->stats(cls);
      v1::ClassHealth* c = h.add_buffer();
      c->set_event_class(cls);
      c->set_pending(st.pending);
      c->set_oldest_age_s(st.oldest_time_us ? uint64_t(std::max<int64_t>(0, now - st.oldest_time_us) / 1000000) : 0);
    }
    for (const auto& p : pollers) {
      if (p->state() == DevicePoller::State::kOnline) h.set_devices_online(h.devices_online() + 1);
      if (p->state() == DevicePoller::State::kOffline) h.set_devices_offline(h.devices_offline() + 1);
    }
    return h;
  };
  Uplink uplink(core.get_executor(), *buffer, std::move(settings), health);
  uplink_ptr = &uplink;

  // One owner per serial line: every device on it talks through that bus.
  std::map<std::string, std::shared_ptr<drivers::SerialBus>> buses;
  for (const config::BusSection& b : config.buses) {
    buses[b.id] = std::make_shared<drivers::SerialBus>(core.get_executor(), bus_settings(b));
  }
  const DriverContext driver_context{
      core.get_executor(), io_pool.get_executor(),
      [&buses](const std::string& id) -> std::shared_ptr<drivers::SerialBus> {
        auto it = buses.find(id);
        return it == buses.end() ? nullptr : it->second;
      }};
  for (std::size_t i = 0; i < config.devices.size(); ++i) {
    auto driver = make_driver(config.devices[i], driver_context);
    if (!driver) {
      log::error("gatewayd", "device ", config.devices[i].id, ": ", driver.status().message());
      return kExitFailure;
    }
    pollers.push_back(std::make_unique<DevicePoller>(core.get_executor(), config.devices[i],
                                                     std::move(driver).value(), router));
  }

  log::notice("gatewayd", "starting version=", GW_VERSION, " gateway=", config.gateway.id,
              " devices=", pollers.size(), " buffer=", buffer_path,
              " pending=", buffer->pending_total(), " next_seq=", buffer->next_seq());
  uplink.start();
  for (auto& [id, bus] : buses) bus->start();
  // Spread first polls over the first period so a building's devices are not hit at once.
  for (std::size_t i = 0; i < pollers.size(); ++i) {
    const auto period = config.devices[i].poll;
    pollers[i]->start(std::chrono::milliseconds(period.count() * static_cast<int64_t>(i) /
                                                static_cast<int64_t>(pollers.size())));
  }

  // A line that cannot keep up shows as polls waiting in its queue: say so, once a minute at
  // most per bus, with what to do about it.
  asio::steady_timer line_check(core);
  std::map<std::string, std::pair<std::chrono::microseconds, std::chrono::steady_clock::time_point>>
      line_seen;
  std::function<void()> check_lines = [&] {
    line_check.expires_after(kLineCheckEvery);
    line_check.async_wait([&](const boost::system::error_code& ec) {
      if (ec) return;
      const auto now = std::chrono::steady_clock::now();
      for (auto& [id, bus] : buses) {
        const drivers::BusStats st = bus->take_window_stats();
        auto& [busy_before, last_warned] = line_seen[id];
        const double load = double((st.busy - busy_before).count()) /
                            double(std::chrono::duration_cast<std::chrono::microseconds>(
                                       kLineCheckEvery).count());
        busy_before = st.busy;
        const bool late = st.max_wait > std::chrono::milliseconds(500);
        if (late && now - last_warned >= std::chrono::minutes(1)) {
          last_warned = now;
          log::warn("bus", id, " cannot keep up: busy ", int(load * 100), "% of the last ",
                    kLineCheckEvery.count(), "s, polls waited up to ",
                    st.max_wait.count() / 1000, "ms in the queue; lengthen poll periods, "
                    "raise the baud rate or split the line");
        }
      }
      check_lines();
    });
  };
  if (!buses.empty()) check_lines();

  // Shutdown: stop polling, commit, let in-flight publishes finish briefly, then leave.
  asio::signal_set signals(core, SIGINT, SIGTERM, SIGHUP);
  asio::steady_timer shutdown_timer(core);
  bool shutting_down = false;
  std::chrono::steady_clock::time_point drain_deadline{};
  // Lives as long as the loop: the timer handlers below call it after on_signal has returned.
  std::function<void()> wait_drain = [&] {
    const bool idle = !uplink.stats().connected || uplink.stats().inflight == 0;
    if (idle || std::chrono::steady_clock::now() >= drain_deadline) {
      (void)router.flush();
      uplink.stop(kShutdownDisconnect);
      core.stop();
      return;
    }
    shutdown_timer.expires_after(std::chrono::milliseconds(20));
    shutdown_timer.async_wait([&](const boost::system::error_code& e) {
      if (!e) wait_drain();
    });
  };
  std::function<void(const boost::system::error_code&, int)> on_signal;
  on_signal = [&](const boost::system::error_code& ec, int signo) {
    if (ec) return;
    if (signo == SIGHUP) {
      log::warn("gatewayd", "SIGHUP: live reload is not available in this version; restart the "
                            "service to apply a new config");
      signals.async_wait(on_signal);
      return;
    }
    if (shutting_down) return;
    shutting_down = true;
    log::notice("gatewayd", "stopping on ", signo == SIGTERM ? "SIGTERM" : "SIGINT");
    for (auto& p : pollers) p->stop();
    for (auto& [id, bus] : buses) bus->stop();
    line_check.cancel();
    (void)router.flush();
    drain_deadline = std::chrono::steady_clock::now() + kShutdownDrain;
    wait_drain();
  };
  signals.async_wait(on_signal);

  core.run();
  io_pool.stop();
  io_pool.join();
  log::notice("gatewayd", "stopped committed=", router.committed_total(),
              " published=", uplink.stats().published_events,
              " acked=", uplink.stats().acked_events, " pending=", buffer->pending_total(),
              " next_seq=", buffer->next_seq());
  return kExitOk;
}

}  // namespace gw
