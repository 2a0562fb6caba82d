#include "gateway/metrics.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <csignal>
#include <functional>
#include <limits>

using gw::metrics::format_value;
using gw::metrics::Registry;

namespace {

// Runs `misuse` in a child process and reports whether it died of abort(): Catch2 v2 has no death
// tests, and a programming error must stop the daemon, not limp on.
bool aborts(const std::function<void()>& misuse) {
  const pid_t pid = fork();
  if (pid == 0) {
    // The abort and its log line are expected: no Catch2 crash report, nothing in the output.
    std::signal(SIGABRT, SIG_DFL);
    const int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) {
      dup2(devnull, STDOUT_FILENO);
      dup2(devnull, STDERR_FILENO);
    }
    misuse();
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
}

// The small registry of the exact-text test: what a gateway with two devices would show.
void register_gateway_metrics(Registry& r) {
  r.counter("gw_events_committed_total", "Events committed to the buffer.", {{"class", "access"}})
      .inc(3);
  r.counter("gw_events_committed_total", "Events committed to the buffer.", {{"class", "alarm"}})
      .inc();
  r.gauge("gw_device_up", "1 when the device answered its last poll.",
          {{"device", "meter \"b1\"\\01\nx"}, {"bus", "rs485-1"}})
      .set(1);
  auto& poll = r.histogram("gw_poll_seconds", "Poll round trip.\nSecond line \\ end.",
                           {0.25, 1, 2.5}, {{"device", "meter-1"}});
  for (double v : {0.25, 0.5, 0.5, 2.0, 7.0}) poll.observe(v);
}

}  // namespace

TEST_CASE("a small registry renders to the exact exposition text") {
  Registry r;
  register_gateway_metrics(r);
  CHECK(r.render() ==
        "# HELP gw_device_up 1 when the device answered its last poll.\n"
        "# TYPE gw_device_up gauge\n"
        "gw_device_up{bus=\"rs485-1\",device=\"meter \\\"b1\\\"\\\\01\\nx\"} 1\n"
        "# HELP gw_events_committed_total Events committed to the buffer.\n"
        "# TYPE gw_events_committed_total counter\n"
        "gw_events_committed_total{class=\"access\"} 3\n"
        "gw_events_committed_total{class=\"alarm\"} 1\n"
        "# HELP gw_poll_seconds Poll round trip.\\nSecond line \\\\ end.\n"
        "# TYPE gw_poll_seconds histogram\n"
        "gw_poll_seconds_bucket{device=\"meter-1\",le=\"0.25\"} 1\n"
        "gw_poll_seconds_bucket{device=\"meter-1\",le=\"1\"} 3\n"
        "gw_poll_seconds_bucket{device=\"meter-1\",le=\"2.5\"} 4\n"
        "gw_poll_seconds_bucket{device=\"meter-1\",le=\"+Inf\"} 5\n"
        "gw_poll_seconds_sum{device=\"meter-1\"} 10.25\n"
        "gw_poll_seconds_count{device=\"meter-1\"} 5\n");
}

TEST_CASE("a series without labels renders without braces") {
  Registry r;
  r.gauge("gw_uptime_seconds", "Seconds since start.").set(12);
  r.histogram("gw_batch_events", "Events per batch.", {10}).observe(3);
  CHECK(r.render() ==
        "# HELP gw_batch_events Events per batch.\n"
        "# TYPE gw_batch_events histogram\n"
        "gw_batch_events_bucket{le=\"10\"} 1\n"
        "gw_batch_events_bucket{le=\"+Inf\"} 1\n"
        "gw_batch_events_sum 3\n"
        "gw_batch_events_count 1\n"
        "# HELP gw_uptime_seconds Seconds since start.\n"
        "# TYPE gw_uptime_seconds gauge\n"
        "gw_uptime_seconds 12\n");
}

TEST_CASE("the same name and labels give the same series, in any label order") {
  Registry r;
  auto& a = r.counter("gw_polls_total", "Polls.", {{"device", "m1"}, {"result", "ok"}});
  auto& b = r.counter("gw_polls_total", "Polls.", {{"result", "ok"}, {"device", "m1"}});
  auto& other = r.counter("gw_polls_total", "Polls.", {{"device", "m2"}, {"result", "ok"}});
  CHECK(&a == &b);
  CHECK(&a != &other);
  a.inc();
  b.inc(2);
  CHECK(a.value() == 3);
  CHECK(other.value() == 0);
  // Other series may be added and removed without moving this one.
  for (int i = 0; i < 100; ++i) r.gauge("gw_g", "G.", {{"i", std::to_string(i)}});
  CHECK(r.remove("gw_polls_total", {{"device", "m2"}, {"result", "ok"}}));
  CHECK(&r.counter("gw_polls_total", "Polls.", {{"device", "m1"}, {"result", "ok"}}) == &a);
}

TEST_CASE("remove drops one series, and an empty family disappears") {
  Registry r;
  r.gauge("gw_device_up", "Up.", {{"device", "m1"}}).set(1);
  r.gauge("gw_device_up", "Up.", {{"device", "m2"}}).set(0);
  CHECK(r.remove("gw_device_up", {{"device", "m1"}}));
  CHECK_FALSE(r.remove("gw_device_up", {{"device", "m1"}}));  // already gone
  CHECK_FALSE(r.remove("gw_nothing", {}));
  CHECK(r.render() ==
        "# HELP gw_device_up Up.\n"
        "# TYPE gw_device_up gauge\n"
        "gw_device_up{device=\"m2\"} 0\n");
  CHECK(r.remove("gw_device_up", {{"device", "m2"}}));
  CHECK(r.render().empty());
  // Gone for good, so the name may come back as another type.
  r.counter("gw_device_up", "Now a counter.").inc();
  CHECK(r.render().find("# TYPE gw_device_up counter\n") != std::string::npos);
}

TEST_CASE("remove_matching drops every series of a device across families") {
  Registry r;
  r.gauge("gw_device_up", "Up.", {{"device", "m1"}}).set(1);
  r.gauge("gw_device_up", "Up.", {{"device", "m2"}}).set(1);
  r.counter("gw_polls_total", "Polls.", {{"device", "m1"}, {"result", "ok"}}).inc();
  r.counter("gw_polls_total", "Polls.", {{"device", "m1"}, {"result", "timeout"}}).inc();
  r.histogram("gw_poll_seconds", "RTT.", {1}, {{"device", "m1"}}).observe(0.5);
  r.gauge("gw_uptime_seconds", "Up for.").set(5);
  CHECK(r.remove_matching("device", "m1") == 4);
  CHECK(r.render() ==
        "# HELP gw_device_up Up.\n"
        "# TYPE gw_device_up gauge\n"
        "gw_device_up{device=\"m2\"} 1\n"
        "# HELP gw_uptime_seconds Up for.\n"
        "# TYPE gw_uptime_seconds gauge\n"
        "gw_uptime_seconds 5\n");
  CHECK(r.remove_matching("device", "m1") == 0);
}

TEST_CASE("on_collect callbacks refresh series at the start of every render") {
  Registry r;
  uint64_t committed = 0;  // a total owned elsewhere, like Router::committed_total()
  int calls = 0;
  r.on_collect([&] {
    ++calls;
    r.counter("gw_committed_total", "Committed.").set(double(committed));
  });
  committed = 7;
  CHECK(r.render() ==
        "# HELP gw_committed_total Committed.\n"
        "# TYPE gw_committed_total counter\n"
        "gw_committed_total 7\n");
  committed = 9;
  CHECK(r.render().find("gw_committed_total 9\n") != std::string::npos);
  CHECK(calls == 2);
}

TEST_CASE("numbers are written the way Prometheus parses them") {
  CHECK(format_value(0) == "0");
  CHECK(format_value(-0.0) == "0");
  CHECK(format_value(42) == "42");
  CHECK(format_value(-3) == "-3");
  CHECK(format_value(1234567) == "1234567");  // not 1.234567e+06
  CHECK(format_value(9007199254740992.0) == "9007199254740992");
  CHECK(format_value(0.1) == "0.1");
  CHECK(format_value(2.5) == "2.5");
  CHECK(format_value(-0.001) == "-0.001");
  CHECK(format_value(1e-7) == "1e-07");
  CHECK(format_value(1e21) == "1e+21");
  CHECK(std::stod(format_value(0.1 + 0.2)) == 0.1 + 0.2);  // shortest, yet exact
  CHECK(format_value(std::numeric_limits<double>::quiet_NaN()) == "NaN");
  CHECK(format_value(std::numeric_limits<double>::infinity()) == "+Inf");
  CHECK(format_value(-std::numeric_limits<double>::infinity()) == "-Inf");
}

TEST_CASE("label values are escaped and kept valid UTF-8") {
  using gw::metrics::escape_label_value;
  CHECK(escape_label_value("plain") == "plain");
  CHECK(escape_label_value("a\\b\"c\nd") == "a\\\\b\\\"c\\nd");
  CHECK(escape_label_value("Zählerraum 3") == "Zählerraum 3");  // valid UTF-8 kept
  CHECK(escape_label_value("\xff"
                           "ab\xc3") ==
        "\xEF\xBF\xBD"
        "ab\xEF\xBF\xBD");                                                              // bad bytes
  CHECK(escape_label_value("\xed\xa0\x80") == "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  CHECK(escape_label_value("\xc0\xaf") == "\xEF\xBF\xBD\xEF\xBF\xBD");  // overlong '/'
}

TEST_CASE("gauges go both ways and may hold any value") {
  Registry r;
  auto& g = r.gauge("gw_inflight", "In flight.");
  g.inc(5);
  g.dec(2);
  CHECK(g.value() == 3);
  g.set(std::numeric_limits<double>::quiet_NaN());
  CHECK(r.render().find("gw_inflight NaN\n") != std::string::npos);
  g.set(-std::numeric_limits<double>::infinity());
  CHECK(r.render().find("gw_inflight -Inf\n") != std::string::npos);
}

TEST_CASE("histogram buckets: upper bounds are inclusive, NaN dropped, +Inf implicit") {
  Registry r;
  auto& h = r.histogram("gw_h", "H.", {1, 2, std::numeric_limits<double>::infinity()});
  CHECK(h.upper_bounds() == std::vector<double>{1, 2});  // the trailing +Inf is the implicit one
  h.observe(1);                                          // le="1"
  h.observe(1.5);                                        // le="2"
  h.observe(std::numeric_limits<double>::quiet_NaN());
  h.observe(100);  // only +Inf
  CHECK(h.count() == 3);
  CHECK(h.bucket_counts() == std::vector<uint64_t>{1, 1, 1});
  CHECK(h.sum() == 102.5);
  // Same family, same layout, given again with or without the +Inf: same object.
  CHECK(&r.histogram("gw_h", "H.", {1, 2}) == &h);
}

TEST_CASE("metric and label names follow the Prometheus grammar") {
  using gw::metrics::valid_label_name;
  using gw::metrics::valid_metric_name;
  CHECK(valid_metric_name("gw_events_total"));
  CHECK(valid_metric_name("job:gw_up:sum"));
  CHECK(valid_metric_name("_x9"));
  CHECK_FALSE(valid_metric_name(""));
  CHECK_FALSE(valid_metric_name("9lives"));
  CHECK_FALSE(valid_metric_name("gw-events"));
  CHECK_FALSE(valid_metric_name("gw events"));
  CHECK_FALSE(valid_metric_name("gw\xc3\xa4"));
  CHECK(valid_label_name("device"));
  CHECK(valid_label_name("_a1"));
  CHECK_FALSE(valid_label_name("a:b"));
  CHECK_FALSE(valid_label_name("1a"));
  CHECK_FALSE(valid_label_name(""));
}

TEST_CASE("misuse aborts loudly") {
  CHECK_FALSE(aborts([] {
    Registry r;
    r.counter("gw_ok_total", "Fine.", {{"device", "m1"}}).inc();
    (void)r.render();
  }));
  CHECK(aborts([] { Registry().counter("gw-bad", "Bad name."); }));
  CHECK(aborts([] { Registry().gauge("gw_g", "G.", {{"bad-label", "x"}}); }));
  CHECK(aborts([] { Registry().gauge("gw_g", "G.", {{"__name__", "x"}}); }));
  CHECK(aborts([] { Registry().gauge("gw_g", "G.", {{"a", "x"}, {"a", "y"}}); }));
  CHECK(aborts([] { Registry().histogram("gw_h", "H.", {1}, {{"le", "x"}}); }));
  CHECK(aborts([] { Registry().histogram("gw_h", "H.", {2, 1}); }));
  CHECK(aborts([] { Registry().histogram("gw_h", "H.", {1, 1}); }));
  CHECK(aborts([] { Registry().histogram("gw_h", "H.", {std::nan("")}); }));
  CHECK(aborts([] {
    Registry r;
    r.counter("gw_x", "X.");
    r.gauge("gw_x", "X.");
  }));
  CHECK(aborts([] {
    Registry r;
    r.counter("gw_x", "X.");
    r.counter("gw_x", "Other help.");
  }));
  CHECK(aborts([] {
    Registry r;
    r.histogram("gw_h", "H.", {1, 2});
    r.histogram("gw_h", "H.", {1, 3}, {{"device", "m2"}});
  }));
  CHECK(aborts([] { Registry().counter("gw_c", "C.").inc(-1); }));
  CHECK(aborts([] { Registry().counter("gw_c", "C.").set(std::nan("")); }));
  CHECK(aborts([] {
    Registry r;
    r.on_collect([&r] { (void)r.render(); });
    (void)r.render();
  }));
}
