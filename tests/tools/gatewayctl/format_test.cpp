#include "tools/gatewayctl/format.h"

#include <catch2/catch.hpp>

#include "tests/tools/gatewayctl/samples.h"

namespace gw::ctl {
namespace {

using testing::at;
using testing::kNowUs;

const Style kPlain{false};

TEST_CASE("counts, ages, periods and sizes read the way people write them") {
  CHECK(format_count(0) == "0");
  CHECK(format_count(999) == "999");
  CHECK(format_count(1204) == "1,204");
  CHECK(format_count(1204033) == "1,204,033");
  CHECK(format_count(100000) == "100,000");
  CHECK(format_age(-5) == "0s");
  CHECK(format_age(45) == "45s");
  CHECK(format_age(14 * 60 + 59) == "14m");
  CHECK(format_age(2 * 3600 + 13 * 60) == "2h13m");
  CHECK(format_age(3600) == "1h");
  CHECK(format_age(3 * 86400 + 4 * 3600 + 5) == "3d4h");
  CHECK(format_period_ms(0) == "-");
  CHECK(format_period_ms(500) == "500ms");
  CHECK(format_period_ms(5000) == "5s");
  CHECK(format_period_ms(5012.3) == "5.01s");
  CHECK(format_period_ms(20100) == "20.1s");
  CHECK(format_period_ms(90000) == "1m30s");
  CHECK(format_bytes(0) == "0 B");
  CHECK(format_bytes(1023) == "1023 B");
  CHECK(format_bytes(1230) == "1.2 KiB");
  CHECK(format_bytes(512ull << 20) == "512.0 MiB");
}

TEST_CASE("clock times are short for today and dated otherwise") {
  testing::use_utc();
  CHECK(format_clock(at(3, 12), kNowUs) == "03:12");
  CHECK(format_clock(at(3, 12, 4), kNowUs, true) == "03:12:04");
  CHECK(format_clock(at(3, 12) - 2LL * 86400 * 1000000, kNowUs) == "2024-04-29 03:12");
  CHECK(format_clock(0, kNowUs) == "?");
  CHECK(format_time_ms(at(3, 25, 58) + 123456) == "03:25:58.123");
}

TEST_CASE("status headline: healthy") {
  testing::use_utc();
  const Json st = testing::healthy_status();
  CHECK_FALSE(status_is_degraded(st));
  CHECK(status_headline(st, kNowUs, kPlain) ==
        "lib-gw-01 OK — MQTT connected 2h13m, 0 pending, 12/12 devices online");
}

TEST_CASE("status headline: degraded names every reason") {
  testing::use_utc();
  const Json st = testing::degraded_status();
  CHECK(status_is_degraded(st));
  CHECK(status_headline(st, kNowUs, kPlain) ==
        "lib-gw-01 DEGRADED — MQTT down since 03:12 (connection refused), 1,204 events waiting "
        "(oldest 14m), 2/12 devices offline");
}

TEST_CASE("status headline: each reason alone degrades") {
  testing::use_utc();
  SECTION("a device offline") {
    Json st = testing::healthy_status();
    st["devices_online"] = 11;
    st["devices_offline"] = 1;
    st["devices"][0] = testing::device_summary("meter-b1-01", false, "timeout");
    CHECK(status_headline(st, kNowUs, kPlain) ==
          "lib-gw-01 DEGRADED — MQTT connected 2h13m, 0 pending, 1/12 devices offline");
  }
  SECTION("a backlog older than five minutes while connected") {
    Json st = testing::healthy_status();
    st["buffer"]["pending"] = 50000;
    st["buffer"]["oldest_age_s"] = 3600;
    CHECK(status_headline(st, kNowUs, kPlain) ==
          "lib-gw-01 DEGRADED — MQTT connected 2h13m, 50,000 events waiting (oldest 1h), 12/12 "
          "devices online");
  }
  SECTION("a young backlog is normal traffic") {
    Json st = testing::healthy_status();
    st["buffer"]["pending"] = 3;
    st["buffer"]["oldest_age_s"] = 1;
    CHECK_FALSE(status_is_degraded(st));
    CHECK_THAT(status_headline(st, kNowUs, kPlain), Catch::Contains("OK — "));
  }
  SECTION("down, and the daemon does not say since when") {
    Json st = testing::healthy_status();
    st["mqtt"]["connected"] = false;
    st["mqtt"]["connected_since_us"] = 0;
    st["mqtt"]["last_error"] = "";
    CHECK(status_headline(st, kNowUs, kPlain) ==
          "lib-gw-01 DEGRADED — MQTT down, 0 pending, 12/12 devices online");
  }
  SECTION("down since a disconnected_since_us, when a daemon sends one") {
    Json st = testing::healthy_status();
    st["mqtt"]["connected"] = false;
    st["mqtt"]["connected_since_us"] = 0;
    st["mqtt"]["disconnected_since_us"] = testing::at(2, 58);
    st["mqtt"]["last_error"] = "Connection refused";
    CHECK(status_headline(st, kNowUs, kPlain) ==
          "lib-gw-01 DEGRADED — MQTT down since 02:58 (Connection refused), 0 pending, 12/12 "
          "devices online");
  }
}

TEST_CASE("status headline colours only when asked") {
  testing::use_utc();
  const std::string coloured = status_headline(testing::degraded_status(), kNowUs, Style{true});
  CHECK_THAT(coloured, Catch::Contains("\x1b[31mDEGRADED\x1b[0m"));
  CHECK(display_width(coloured) ==
        display_width(status_headline(testing::degraded_status(), kNowUs, kPlain)));
}

TEST_CASE("status tolerates a daemon that omits keys") {
  const Json empty = Json::object();
  CHECK(status_headline(empty, kNowUs, kPlain) ==
        "? DEGRADED — MQTT down, 0 pending, 0/0 devices online");
  CHECK_NOTHROW(status_screen(empty, kNowUs, kPlain));
  CHECK_NOTHROW(status_screen(Json::array(), kNowUs, kPlain));
  CHECK_NOTHROW(devices_table(Json("nonsense"), kPlain, false, 0));
  CHECK_NOTHROW(device_detail(Json::object(), kNowUs, kPlain));
}

TEST_CASE("the status screen puts the verdict first and lists what is wrong") {
  testing::use_utc();
  CHECK(status_screen(testing::degraded_status(), kNowUs, kPlain) ==
        "lib-gw-01 DEGRADED — MQTT down since 03:12 (connection refused), 1,204 events waiting "
        "(oldest 14m), 2/12 devices offline\n"
        "\n"
        "Gateway   version 0.1.0, up 3d4h (since 2024-04-27 23:26), boot 5f3c2a9e\n"
        "MQTT      down since 03:12 (14m ago): connection refused\n"
        "          tcp://broker.campus:1883, 14 reconnects, 0 in flight\n"
        "          published 120,344, acked 120,344, republished 12 events\n"
        "Buffer    1,204 events pending, oldest 14m, next seq 121,549\n"
        "          class      pending      bytes  oldest\n"
        "          access           3    1.2 KiB     14m\n"
        "          telemetry    1,190  410.0 KiB     14m\n"
        "          status          11    1.1 KiB     12m\n"
        "Devices   10 of 12 online, 2 offline:\n"
        "          meter-b1-07  offline  no answer within 200ms\n"
        "          meter-b1-09  offline  connect to 10.0.3.29:502: Connection refused\n"
        "Buses     rs485-1 open: 12,033 exchanges, 37 timeouts, 2 bad frames, 17 B discarded, 1 "
        "queued\n"
        "Recent errors (newest first)\n"
        "          03:12:04  uplink       connection refused\n"
        "          03:11:58  meter-b1-07  offline: no answer within 200ms\n");
}

TEST_CASE("tables pad to the widest cell, align numbers and cut the last column") {
  Table t;
  t.headers = {"ID", "N", "NOTE"};
  t.right_align = {false, true, false};
  t.rows = {{"a", "1", "short"}, {"longer-id", "1,204", "a rather long note that goes on"}};
  CHECK(render_table(t) ==
        "ID             N  NOTE\n"
        "a              1  short\n"
        "longer-id  1,204  a rather long note that goes on\n");
  CHECK(render_table(t, 30) ==
        "ID             N  NOTE\n"
        "a              1  short\n"
        "longer-id  1,204  a rather lo…\n");
}

TEST_CASE("table widths ignore colour codes and count UTF-8 characters once") {
  Table t;
  t.headers = {"STATE", "X"};
  t.rows = {{Style{true}.green("online"), "1"}, {"größe", "2"}};
  const std::string out = render_table(t);
  CHECK_THAT(out, Catch::Contains("\x1b[32monline\x1b[0m  1\n"));
  CHECK_THAT(out, Catch::Contains("größe   2\n"));
}

TEST_CASE("the device table has one row per device and a summary") {
  CHECK(devices_table(testing::devices_result(), kPlain, false, 0) ==
        "ID           STATE    DRIVER      ADDRESS           POLL          LATENCY  ERRORS  LAST "
        "ERROR\n"
        "meter-b1-01  online   modbus_tcp  10.0.3.21:502 #1  5s/5s     12.4/15.1ms       3  -\n"
        "meter-b1-07  offline  modbus_rtu  rs485-1 #7        5s/20.1s      -/182ms      61  no "
        "answer within 200ms\n"
        "2 devices: 1 online, 1 offline\n");
  CHECK(devices_table(testing::devices_result(), kPlain, true, 0) ==
        "ID           STATE    DRIVER      ADDRESS     POLL      LATENCY  ERRORS  LAST ERROR\n"
        "meter-b1-07  offline  modbus_rtu  rs485-1 #7  5s/20.1s  -/182ms      61  no answer "
        "within 200ms\n"
        "2 devices: 1 online, 1 offline\n");
}

TEST_CASE("one device in full") {
  testing::use_utc();
  CHECK(device_detail(testing::device_full("meter-b1-07", false), kNowUs, kPlain) ==
        "meter-b1-07  offline  (energy_meter, modbus_rtu at rs485-1 unit 7)\n"
        "  last error       no answer within 200ms\n"
        "  last good read   03:11:40 (14m ago)\n"
        "  polls            5,120, 61 failed: 58 timeout, 3 protocol, 0 unavailable, 0 other\n"
        "  skipped offline  140 polls skipped while offline\n"
        "  overruns         0 polls started late because the previous one was still running\n"
        "  poll period      5s configured, 20.1s achieved\n"
        "  latency          last 0 ms, average 182 ms\n"
        "Points (last values)\n"
        "  NAME            VALUE  UNIT  QUALITY  AT\n"
        "  energy_total  1234.56  kWh   good     03:11:40\n"
        "  voltage_l1          -  V     bad      03:11:40\n");
}

TEST_CASE("event lines are the central subscriber's, with the time in front") {
  testing::use_utc();
  CHECK(event_line(testing::telemetry_event(12), "lib-gw-01", false) ==
        "03:25:58.123 lib-gw-01 seq=12 meter-b1-01 telemetry energy_total=1234.56 kWh "
        "voltage_l1=231.7 V");
}

TEST_CASE("raw card ids never reach the screen unless asked for") {
  testing::use_utc();
  const Json raw = testing::access_event(13, "0004123456");
  CHECK(
      event_line(raw, "gw", false) ==
      "03:25:59.000 gw seq=13 gate-n1-reader access card=[redacted] in granted door=north-gate-1");
  CHECK_THAT(event_line(raw, "gw", true), Catch::Contains("card=0004123456"));
  const Json hashed = testing::access_event(14, "h:9f86d081884c7d65");
  CHECK_THAT(event_line(hashed, "gw", false), Catch::Contains("card=h:9f86d081884c7d65"));

  Json doc = {{"oldest", Json::array({raw, hashed})}};
  redact_all_credentials(doc);
  CHECK(doc["oldest"][0]["access"]["credential"] == "[redacted]");
  CHECK(doc["oldest"][1]["access"]["credential"] == "h:9f86d081884c7d65");
}

TEST_CASE("an event this build cannot decode is still shown") {
  const Json odd = {{"seq", "not a number"}, {"gateway_time_us", "1714533958000000"}};
  CHECK_THAT(event_line(odd, "gw", false), Catch::Contains("(undecodable event)"));
}

TEST_CASE("trace lines show time, direction, spaced hex and the note") {
  testing::use_utc();
  const Json item = {{"at_us", at(3, 25, 58) + 5000},
                     {"device", "meter-b1-07"},
                     {"dir", "tx"},
                     {"hex", "0703000000 0ac5cd"},
                     {"note", "read holding 0..9"}};
  CHECK(trace_line(item, kPlain) == "03:25:58.005 tx 07 03 00 00 00 0a c5 cd  read holding 0..9");
  CHECK(spaced_hex("01:03:AB") == "01 03 ab");
  CHECK(spaced_hex("0g") == "0g");
  CHECK(spaced_hex("123") == "123");
}

TEST_CASE("read and reload results in one line") {
  const Json good = {{"device", "meter-b1-01"},
                     {"point", "voltage_l1"},
                     {"value", 231.68},
                     {"unit", "V"},
                     {"good", true},
                     {"error", ""},
                     {"latency_ms", 12.4}};
  CHECK(read_result_line(good, kPlain) == "meter-b1-01 voltage_l1 = 231.68 V  (12.4 ms)");
  const Json bad = {{"device", "meter-b1-07"}, {"point", "voltage_l1"},
                    {"value", nullptr},        {"unit", "V"},
                    {"good", false},           {"error", "no answer within 200ms"},
                    {"latency_ms", 201}};
  CHECK(read_result_line(bad, kPlain) ==
        "meter-b1-07 voltage_l1: BAD - no answer within 200ms  (201 ms)");
  const Json reload = {{"reloaded", true},
                       {"added", {"meter-b1-13"}},
                       {"removed", Json::array()},
                       {"changed", {"meter-b1-01", "meter-b1-05"}},
                       {"unchanged", 9}};
  CHECK(reload_summary(reload) ==
        "reloaded: 1 added (meter-b1-13), 0 removed, 2 changed (meter-b1-01, meter-b1-05), 9 "
        "unchanged");
  const Json nothing = {{"reloaded", true},
                        {"added", Json::array()},
                        {"removed", Json::array()},
                        {"changed", Json::array()},
                        {"unchanged", 12}};
  CHECK(reload_summary(nothing) == "reloaded: nothing changed (12 devices unchanged)");
}

TEST_CASE("on a terminal the status screen fits: lines cut, long lists capped") {
  testing::use_utc();
  Json st = testing::degraded_status();
  st["mqtt"]["last_error"] =
      "connect failed: MQTT error [-1]: TCP/TLS connect failure to broker.campus.example:8883";
  for (int i = 0; i < 12; ++i) {
    st["devices"][i] = testing::device_summary("meter-b1-" + std::to_string(10 + i), false,
                                               "read from 10.0.3.40:502: no answer within 1000ms");
  }
  st["devices_online"] = 0;
  st["devices_offline"] = 12;
  Json errors = Json::array();
  for (int i = 0; i < 10; ++i) {
    errors.push_back(Json{{"at_us", testing::at(3, 20, 59 - i)},
                          {"component", "c" + std::to_string(i)},
                          {"message", "something distinct went wrong number " + std::to_string(i) +
                                          " and the message is long enough to need cutting"}});
  }
  st["last_errors"] = errors;
  const std::string screen = status_screen(st, kNowUs, kPlain, 80);
  std::size_t start = 0, lines = 0;
  for (std::size_t nl; (nl = screen.find('\n', start)) != std::string::npos; start = nl + 1) {
    const std::string line = screen.substr(start, nl - start);
    INFO(line);
    CHECK(display_width(line) <= 80);
    ++lines;
  }
  CHECK(lines <= 24);
  CHECK_THAT(screen,
             Catch::StartsWith("lib-gw-01 DEGRADED — MQTT down since 03:12 (connect failed: "
                               "MQTT error [-1]: …),\n"
                               "  1,204 events waiting (oldest 14m), 12/12 devices offline\n"));
  CHECK_THAT(screen, Catch::Contains("... and 9 more: gatewayctl devices --offline\n"));
  CHECK_THAT(screen, Catch::Contains("... and 6 older: gatewayctl status --json\n"));
}

TEST_CASE("cutting keeps colour sequences and closes them") {
  const std::string red = Style{true}.red("abcdefghij");
  CHECK(cut_to_width(red, 5) == "\x1b[31mabcd…\x1b[0m");
  CHECK(cut_to_width("short", 10) == "short");
  CHECK(display_width(cut_to_width("größer als das", 6)) == 6);
}

}  // namespace
}  // namespace gw::ctl
