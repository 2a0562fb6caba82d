// e2e_bench: the gateway's own event path measured in-process, and the bare limits it is compared
// with, each as one command printing one `key=value` line:
//
//   e2e_bench pipeline --uri URI --dir DIR --events N          events/s through the real Router
//       (group commit into storage/EventBuffer) and Uplink (Paho async, QoS 1, PUBACK, ack), the
//       objects gatewayd wires together; generation is paced so that at most --window events are
//       between submit and PUBACK (a steady state, not a backlog).
//   e2e_bench latency --uri URI --dir DIR --rate R --seconds S --class access|telemetry
//       live observed -> PUBACK latency at R events/s, one event per tick of a steady timer.
//       [--linger-ms L] sets the Router's telemetry_linger (gatewayd's buffer.telemetry_linger;
//       default 0 here).
//   e2e_bench bare-sqlite --dir DIR --events N [--batch B] [--full]
//       raw SQLite, WAL: insert N ~100-byte rows in transactions of B, then select-oldest-B +
//       delete in transactions of B; rows/s through both.
//   e2e_bench bare-paho --uri URI --messages N [--window W]
//       raw Paho async QoS 1 publishes of 100-byte payloads, at most W awaiting PUBACK.
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include <mqtt/async_client.h>

#include "gateway/router.h"
#include "gateway/uplink.h"
#include "storage/event_buffer.h"

namespace v1 = campus::gateway::v1;
using Clock = std::chrono::steady_clock;

namespace {

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "e2e_bench: %s\nusage: e2e_bench pipeline|latency|bare-sqlite|bare-paho "
               "[--uri URI] [--dir DIR] [--events N] [--messages N] [--window W] [--batch B] "
               "[--rate R] [--seconds S] [--class access|telemetry] [--linger-ms L] [--full]\n",
               why.c_str());
  std::exit(2);
}

struct Args {
  std::string mode, uri, dir, cls = "telemetry";
  long events = 100000, messages = 50000, window = 20000, batch = 100, rate = 1000;
  long linger_ms = 0;
  double seconds = 10;
  bool full = false;
};

Args parse(int argc, char** argv) {
  if (argc < 2) usage("no mode");
  Args a;
  a.mode = argv[1];
  for (int i = 2; i < argc; ++i) {
    const std::string f = argv[i];
    if (f == "--full") {
      a.full = true;
      continue;
    }
    if (i + 1 >= argc) usage(f + " needs a value");
    const std::string v = argv[++i];
    auto num = [&](long lo) {
      char* end = nullptr;
      const long n = std::strtol(v.c_str(), &end, 10);
      if (end == v.c_str() || *end != '\0' || n < lo) usage(f + ": bad value '" + v + "'");
      return n;
    };
    if (f == "--uri") a.uri = v;
    else if (f == "--dir") a.dir = v;
    else if (f == "--events") a.events = num(1);
    else if (f == "--messages") a.messages = num(1);
    else if (f == "--window") a.window = num(1);
    else if (f == "--batch") a.batch = num(1);
    else if (f == "--rate") a.rate = num(1);
    else if (f == "--linger-ms") a.linger_ms = num(0);
    else if (f == "--seconds") a.seconds = double(num(1));
    else if (f == "--class") {
      if (v != "access" && v != "telemetry") usage("--class: access or telemetry, not '" + v + "'");
      a.cls = v;
    } else usage("unknown flag '" + f + "'");
  }
  return a;
}

int64_t wall_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

double pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto at = static_cast<std::size_t>(std::lround(p * double(v.size() - 1)));
  const auto i = std::min(v.size() - 1, at);
  return v[i];
}

// A meter reading of three values (~110 bytes serialized), or a card swipe: what devices send.
v1::Event make_event(bool access, long i) {
  v1::Event e;
  e.set_device_id("meter-" + std::to_string(i % 50));
  e.set_gateway_time_us(wall_us());
  if (access) {
    e.set_kind(v1::CARD_READER);
    auto* a = e.mutable_access();
    a->set_credential("h:" + std::string(64, 'a'));
    a->set_direction(v1::IN);
    a->set_result(v1::GRANTED);
    a->set_door("north-gate-1");
  } else {
    e.set_kind(v1::ENERGY_METER);
    auto* m = e.mutable_meter();
    for (const char* name : {"energy_total", "voltage_l1", "active_power"}) {
      auto* v = m->add_values();
      v->set_name(name);
      v->set_value(1000.0 + double(i) * 0.01);
      v->set_unit("kWh");
      v->set_quality(v1::GOOD);
    }
  }
  return e;
}

// Router + Uplink over a fresh buffer in `dir`, as gatewayd wires them (without devices).
struct Pipeline {
  asio::io_context core;
  std::unique_ptr<gw::storage::EventBuffer> buffer;
  std::unique_ptr<gw::Router> router;
  std::unique_ptr<gw::Uplink> uplink;

  Pipeline(const Args& a) {
    std::filesystem::create_directories(a.dir);
    const std::string path = a.dir + "/buffer.db";
    std::filesystem::remove(path);
    std::filesystem::remove(path + "-wal");
    std::filesystem::remove(path + "-shm");
    std::filesystem::remove(path + ".seq");
    auto opened = gw::storage::EventBuffer::open(path);
    if (!opened) {
      std::fprintf(stderr, "e2e_bench: %s\n", opened.status().message().c_str());
      std::exit(1);
    }
    buffer = std::move(opened.value());
    gw::RouterOptions ro;
    ro.gateway_id = "bench-gw";
    ro.wall_clock_trusted = [] { return true; };
    ro.telemetry_linger = std::chrono::milliseconds(a.linger_ms);
    router = std::make_unique<gw::Router>(core.get_executor(), *buffer,
                                          [this] { uplink->on_committed(); }, ro);
    gw::UplinkSettings s;
    s.uri = a.uri;
    s.client_id = "bench-gw";
    s.topics = {"campus", "bench", "b", "bench-gw"};
    s.version = "bench";
    s.boot_id = "bench";
    s.started_at_us = wall_us();
    uplink = std::make_unique<gw::Uplink>(core.get_executor(), *buffer, s,
                                          [] { return v1::GatewayHealth(); });
  }
  void start() {
    router->start();
    uplink->start();
  }
  // Runs the loop until `done` or the deadline; false on the deadline.
  bool run_until(const std::function<bool()>& done, double seconds) {
    const auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
    while (!done()) {
      if (Clock::now() > deadline) return false;
      core.run_for(std::chrono::milliseconds(50));
      if (core.stopped()) core.restart();
    }
    return true;
  }
  void stop() {
    router->stop();
    uplink->stop(std::chrono::milliseconds(1000));
  }
};

int pipeline(const Args& a) {
  Pipeline p(a);
  std::atomic<long> acked{0};
  p.uplink->set_ack_observer([&](std::chrono::microseconds, std::size_t n) { acked += long(n); });
  p.start();
  if (!p.run_until([&] { return p.uplink->stats().connected; }, 10)) {
    std::fprintf(stderr, "e2e_bench: no connection to %s\n", a.uri.c_str());
    return 1;
  }
  long submitted = 0;
  const auto start = Clock::now();
  // The generator: one turn submits up to 1000 events (one group commit), then yields the loop
  // to the uplink's callbacks; it stops submitting while --window events await their PUBACK.
  std::function<void()> generate = [&] {
    long n = 0;
    while (submitted < a.events && n < 1000 && submitted - acked.load() < a.window) {
      p.router->submit(make_event(false, submitted));
      ++submitted;
      ++n;
    }
    if (submitted < a.events) asio::post(p.core, generate);
  };
  asio::post(p.core, generate);
  const bool ok = p.run_until([&] { return acked.load() >= a.events; }, 600);
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  const auto& st = p.uplink->stats();
  std::printf("pipeline events=%ld acked=%ld seconds=%.3f rate=%.0f publishes=%llu pending=%llu "
              "committed=%llu complete=%d\n",
              a.events, acked.load(), secs, double(acked.load()) / secs,
              (unsigned long long)st.published_messages,
              (unsigned long long)p.buffer->pending_total(),
              (unsigned long long)p.router->committed_total(), ok ? 1 : 0);
  p.stop();
  return ok ? 0 : 1;
}

int latency(const Args& a) {
  Pipeline p(a);
  const bool access = a.cls == "access";
  std::deque<Clock::time_point> waiting;  // submit times, in seq order
  std::vector<double> lat_us;
  long acked_events = 0;
  // One class, one connection: PUBACKs come back in publish order and batches are in seq order,
  // so the n events a PUBACK covers are the n oldest still waiting.
  p.uplink->set_ack_observer([&](std::chrono::microseconds, std::size_t n) {
    const auto now = Clock::now();
    for (std::size_t i = 0; i < n && !waiting.empty(); ++i) {
      lat_us.push_back(double(std::chrono::duration_cast<std::chrono::microseconds>(
                                  now - waiting.front())
                                  .count()));
      waiting.pop_front();
    }
    acked_events += long(n);
  });
  p.start();
  if (!p.run_until([&] { return p.uplink->stats().connected; }, 10)) {
    std::fprintf(stderr, "e2e_bench: no connection to %s\n", a.uri.c_str());
    return 1;
  }
  const long total = static_cast<long>(double(a.rate) * a.seconds);
  const auto period = std::chrono::nanoseconds(1000000000L / a.rate);
  asio::steady_timer timer(p.core);
  long sent = 0;
  const auto t0 = Clock::now();
  std::function<void(const boost::system::error_code&)> tick =
      [&](const boost::system::error_code& ec) {
        if (ec) return;
        // Absolute deadlines: a late wake-up sends what is due, it does not drift.
        const auto now = Clock::now();
        while (sent < total && t0 + sent * period <= now) {
          waiting.push_back(Clock::now());
          p.router->submit(make_event(access, sent));
          ++sent;
        }
        if (sent < total) {
          timer.expires_at(t0 + sent * period);
          timer.async_wait(tick);
        }
      };
  timer.expires_at(t0);
  timer.async_wait(tick);
  const bool ok = p.run_until([&] { return acked_events >= total; }, a.seconds + 30);
  // The first 10% are the warm-up (page cache, Paho's buffers): left out.
  std::vector<double> steady(lat_us.begin() + std::ptrdiff_t(lat_us.size() / 10), lat_us.end());
  std::printf("latency class=%s rate=%ld events=%ld acked=%ld p50_ms=%.3f p99_ms=%.3f "
              "max_ms=%.3f complete=%d\n",
              a.cls.c_str(), a.rate, total, acked_events, pct(steady, 0.5) / 1000,
              pct(steady, 0.99) / 1000,
              steady.empty() ? 0 : *std::max_element(steady.begin(), steady.end()) / 1000,
              ok ? 1 : 0);
  p.stop();
  return ok ? 0 : 1;
}

void check(int rc, sqlite3* db, const char* what) {
  if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
    std::fprintf(stderr, "e2e_bench: sqlite %s: %s\n", what, sqlite3_errmsg(db));
    std::exit(1);
  }
}

int bare_sqlite(const Args& a) {
  std::filesystem::create_directories(a.dir);
  const std::string path = a.dir + "/bare.db";
  for (const char* s : {"", "-wal", "-shm"}) std::filesystem::remove(path + s);
  sqlite3* db = nullptr;
  check(sqlite3_open(path.c_str(), &db), db, "open");
  const std::string pragmas = std::string("PRAGMA journal_mode=WAL; PRAGMA synchronous=") +
                              (a.full ? "FULL" : "NORMAL") +
                              "; CREATE TABLE ev(seq INTEGER PRIMARY KEY, cls INTEGER, "
                              "payload BLOB);";
  check(sqlite3_exec(db, pragmas.c_str(), nullptr, nullptr, nullptr), db, "schema");
  sqlite3_stmt *ins = nullptr, *sel = nullptr, *del = nullptr;
  check(sqlite3_prepare_v2(db, "INSERT INTO ev VALUES(?,?,?)", -1, &ins, nullptr), db, "prep");
  check(sqlite3_prepare_v2(db, "SELECT seq, payload FROM ev ORDER BY seq LIMIT ?", -1, &sel,
                           nullptr),
        db, "prep");
  check(sqlite3_prepare_v2(db, "DELETE FROM ev WHERE seq <= ?", -1, &del, nullptr), db, "prep");
  const std::string payload(110, 'x');
  const auto t0 = Clock::now();
  for (long seq = 1; seq <= a.events;) {
    check(sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr), db, "begin");
    for (long i = 0; i < a.batch && seq <= a.events; ++i, ++seq) {
      sqlite3_bind_int64(ins, 1, seq);
      sqlite3_bind_int(ins, 2, 3);
      sqlite3_bind_blob(ins, 3, payload.data(), int(payload.size()), SQLITE_STATIC);
      check(sqlite3_step(ins), db, "insert");
      sqlite3_reset(ins);
    }
    check(sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr), db, "commit");
  }
  const auto t1 = Clock::now();
  long removed = 0;
  while (removed < a.events) {
    check(sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr), db, "begin");
    sqlite3_bind_int64(sel, 1, a.batch);
    int64_t last = 0;
    long got = 0;
    std::size_t bytes = 0;
    while (sqlite3_step(sel) == SQLITE_ROW) {
      last = sqlite3_column_int64(sel, 0);
      bytes += std::size_t(sqlite3_column_bytes(sel, 1));
      ++got;
    }
    sqlite3_reset(sel);
    sqlite3_bind_int64(del, 1, last);
    check(sqlite3_step(del), db, "delete");
    sqlite3_reset(del);
    check(sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr), db, "commit");
    if (got == 0 || bytes == 0) break;
    removed += got;
  }
  const auto t2 = Clock::now();
  sqlite3_finalize(ins);
  sqlite3_finalize(sel);
  sqlite3_finalize(del);
  sqlite3_close(db);
  const double ins_s = std::chrono::duration<double>(t1 - t0).count();
  const double del_s = std::chrono::duration<double>(t2 - t1).count();
  std::printf("bare_sqlite sync=%s batch=%ld rows=%ld insert_rate=%.0f delete_rate=%.0f "
              "insert_delete_rate=%.0f\n",
              a.full ? "FULL" : "NORMAL", a.batch, a.events, double(a.events) / ins_s,
              double(removed) / del_s, double(a.events) / (ins_s + del_s));
  return 0;
}

int bare_paho(const Args& a) {
  mqtt::async_client client(a.uri, "bench-bare-paho", mqtt::create_options(MQTTVERSION_3_1_1));
  auto opts = mqtt::connect_options_builder().clean_session(true).finalize();
  client.connect(opts)->wait();
  std::mutex mu;
  std::condition_variable cv;
  long inflight = 0, acked = 0;
  struct Listener : mqtt::iaction_listener {
    std::mutex* mu;
    std::condition_variable* cv;
    long *inflight, *acked;
    void on_success(const mqtt::token&) override {
      std::lock_guard<std::mutex> g(*mu);
      --*inflight;
      ++*acked;
      cv->notify_one();
    }
    void on_failure(const mqtt::token&) override {
      std::lock_guard<std::mutex> g(*mu);
      --*inflight;
      cv->notify_one();
    }
  } listener;
  listener.mu = &mu;
  listener.cv = &cv;
  listener.inflight = &inflight;
  listener.acked = &acked;
  const std::string payload(100, 'x');
  const auto t0 = Clock::now();
  for (long i = 0; i < a.messages; ++i) {
    {
      std::unique_lock<std::mutex> g(mu);
      cv.wait(g, [&] { return inflight < a.window; });
      ++inflight;
    }
    client.publish(mqtt::make_message("bench/bare", payload, 1, false), nullptr, listener);
  }
  {
    std::unique_lock<std::mutex> g(mu);
    cv.wait_for(g, std::chrono::seconds(60), [&] { return inflight == 0; });
  }
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  client.disconnect()->wait();
  std::printf("bare_paho messages=%ld acked=%ld window=%ld seconds=%.3f rate=%.0f\n", a.messages,
              acked, a.window, secs, double(acked) / secs);
  return acked == a.messages ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  if ((a.mode == "pipeline" || a.mode == "latency" || a.mode == "bare-paho") && a.uri.empty()) {
    usage(a.mode + " needs --uri");
  }
  if ((a.mode == "pipeline" || a.mode == "latency" || a.mode == "bare-sqlite") && a.dir.empty()) {
    usage(a.mode + " needs --dir");
  }
  if (a.mode == "pipeline") return pipeline(a);
  if (a.mode == "latency") return latency(a);
  if (a.mode == "bare-sqlite") return bare_sqlite(a);
  if (a.mode == "bare-paho") return bare_paho(a);
  usage("unknown mode '" + a.mode + "'");
}
