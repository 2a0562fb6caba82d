// gatewayctl's commands end to end against FakeDaemon (a stand-in for gatewayd's side of the
// control protocol): exact output, exit statuses, and the requests sent.
#include "tools/gatewayctl/commands.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>
#include <thread>

#include "tests/tools/gatewayctl/fake_daemon.h"
#include "tests/tools/gatewayctl/samples.h"
#include "tools/gatewayctl/bundle.h"

namespace gw::ctl {
namespace {

using testing::FakeDaemon;
using testing::kNowUs;

struct Ran {
  int rc;
  std::string out, err;
};

Ran run_ctl(std::vector<std::string> argv) {
  std::ostringstream out, err;
  Context ctx{out, err};
  ctx.now_us = kNowUs;
  const int rc = run(argv, ctx);
  return {rc, out.str(), err.str()};
}

Ran run_at(const FakeDaemon& d, std::vector<std::string> argv) {
  argv.insert(argv.begin(), {"--socket", d.socket_path()});
  return run_ctl(std::move(argv));
}

const std::string kStreaming = R"({"v":1,"id":@ID@,"ok":true,"result":{"streaming":true}})";
std::string item_line(const Json& item) {
  return R"({"v":1,"id":@ID@,"item":)" + item.dump() + "}";
}
const std::string kEnd = R"({"v":1,"id":@ID@,"end":true,"reason":"gatewayd is stopping"})";

TEST_CASE("status prints one screen, verdict first") {
  testing::use_utc();
  FakeDaemon d;
  d.answer("status", testing::healthy_status());
  Ran r = run_at(d, {"status"});
  CHECK(r.rc == 0);
  CHECK(r.err.empty());
  CHECK(r.out ==
        "lib-gw-01 OK — MQTT connected 2h13m, 0 pending, 12/12 devices online\n"
        "\n"
        "Gateway   version 0.1.0, up 3d4h (since 2024-04-27 23:26), boot 5f3c2a9e\n"
        "MQTT      connected since 01:13 (2h13m)\n"
        "          tcp://broker.campus:1883, 1 reconnect, 0 in flight\n"
        "          published 120,344, acked 120,344, republished 12 events\n"
        "Buffer    0 events pending, next seq 120,345\n"
        "Devices   12 of 12 online\n"
        "Errors    none recently\n");
  CHECK(d.requests().at(0).dump() == R"({"v":1,"id":1,"cmd":"status","args":{}})");
}

TEST_CASE("the json option prints the daemon's result as sent, one document") {
  FakeDaemon d;
  d.answer("status", testing::degraded_status());
  Ran r = run_at(d, {"status", "--json"});
  CHECK(r.rc == 0);
  CHECK(r.out == testing::degraded_status().dump() + "\n");
}

TEST_CASE("daemon errors: 'gatewayctl: <command>: <message> (<code>)', exit 1 or 69") {
  FakeDaemon d;
  d.fail("status", "internal", "status is not available during shutdown");
  d.fail("reload", "invalid_config",
         "/etc/gatewayd/gatewayd.yaml:14: devices[0].poll: not a duration (got '5')\n"
         "/etc/gatewayd/gatewayd.yaml:21: devices[1].unit_id: must be 0..247 (got '300')");
  d.fail("read", "unavailable", "meter-b1-07 is offline");
  Ran st = run_at(d, {"status"});
  CHECK(st.rc == 1);
  CHECK(st.err == "gatewayctl: status: status is not available during shutdown (internal)\n");
  Ran rl = run_at(d, {"reload"});
  CHECK(rl.rc == 1);
  CHECK(rl.err ==
        "gatewayctl: reload: /etc/gatewayd/gatewayd.yaml:14: devices[0].poll: not a duration (got "
        "'5')\n"
        "gatewayctl: reload: /etc/gatewayd/gatewayd.yaml:21: devices[1].unit_id: must be 0..247 "
        "(got '300') (invalid_config)\n");
  Ran rd = run_at(d, {"read", "meter-b1-07", "voltage_l1"});
  CHECK(rd.rc == 69);
  CHECK(rd.err == "gatewayctl: read: meter-b1-07 is offline (unavailable)\n");
  CHECK(st.out.empty());
}

TEST_CASE("no daemon: one line naming the socket and what to do, exit 69") {
  testing::TempDir dir;
  Ran r = run_ctl({"devices", "--socket", dir.file("gatewayd.sock")});
  CHECK(r.rc == 69);
  CHECK(r.err == "gatewayctl: devices: cannot connect to gatewayd at " + dir.file("gatewayd.sock") +
                     ": no such socket - is gatewayd running? (systemctl status gatewayd); if it "
                     "uses another socket, give --socket PATH or --config FILE\n");
}

TEST_CASE("a daemon that does not answer in --timeout") {
  FakeDaemon d;
  d.on("status", {.lines = {}, .close_after = false, .silent = true});
  Ran r = run_at(d, {"status", "--timeout", "150ms"});
  CHECK(r.rc == 69);
  CHECK_THAT(r.err, Catch::StartsWith("gatewayctl: status: no answer from gatewayd at "));
  CHECK(run_at(d, {"status", "--timeout", "soon"}).rc == 1);
}

TEST_CASE("devices: the table, one device in full, and a near miss") {
  testing::use_utc();
  FakeDaemon d;
  d.answer("devices", testing::devices_result());
  Ran all = run_at(d, {"devices"});
  CHECK(all.rc == 0);
  CHECK(all.out ==
        "ID           STATE    DRIVER      ADDRESS           POLL          LATENCY  ERRORS  LAST "
        "ERROR\n"
        "meter-b1-01  online   modbus_tcp  10.0.3.21:502 #1  5s/5s     12.4/15.1ms       3  -\n"
        "meter-b1-07  offline  modbus_rtu  rs485-1 #7        5s/20.1s      -/182ms      61  no "
        "answer within 200ms\n"
        "2 devices: 1 online, 1 offline\n");

  d.answer("devices", Json{{"devices", Json::array({testing::device_full("meter-b1-01", true)})}});
  Ran one = run_at(d, {"devices", "meter-b1-01"});
  CHECK(one.rc == 0);
  CHECK(one.out ==
        "meter-b1-01  online  (energy_meter, modbus_tcp at 10.0.3.21:502 unit 1)\n"
        "  last error       -\n"
        "  last good read   03:25:58 (2s ago)\n"
        "  polls            54,213, 3 failed: 2 timeout, 1 protocol, 0 unavailable, 0 other\n"
        "  skipped offline  0 polls skipped while offline\n"
        "  overruns         0 polls started late because the previous one was still running\n"
        "  poll period      5s configured, 5s achieved\n"
        "  latency          last 12.4 ms, average 15.1 ms\n"
        "Points (last values)\n"
        "  NAME            VALUE  UNIT  QUALITY  AT\n"
        "  energy_total  1234.56  kWh   good     03:25:58\n"
        "  voltage_l1      231.7  V     good     03:25:58\n");
  CHECK(d.requests().back()["args"].dump() == R"({"device":"meter-b1-01"})");
}

TEST_CASE("an unknown device id gets the nearest configured one suggested") {
  FakeDaemon d;
  d.answer("devices", testing::devices_result());
  d.on(
      R"(devices {"device":"meter-b1-7"})",
      {.lines = {
           R"({"v":1,"id":@ID@,"ok":false,"error":{"code":"not_found","message":"no device 'meter-b1-7'"}})"}});
  Ran r = run_at(d, {"devices", "meter-b1-7"});
  CHECK(r.rc == 1);
  CHECK(r.out.empty());
  CHECK(r.err ==
        "gatewayctl: devices: no device 'meter-b1-7' (not_found)\n"
        "gatewayctl: did you mean meter-b1-07? (gatewayctl devices lists them)\n");
}

TEST_CASE("tail: one line per event until gatewayd ends the stream") {
  testing::use_utc();
  FakeDaemon d;
  d.answer("hello", Json{{"protocol", 1},
                         {"gateway_id", "lib-gw-01"},
                         {"version", "0.1.0"},
                         {"commands", Json::array()}});
  d.on("tail", {.lines = {kStreaming, item_line({{"event", testing::telemetry_event(12)}}),
                          item_line({{"event", testing::access_event(13, "0004123456")}}), kEnd}});
  Ran r = run_at(d, {"tail", "--class", "access", "--device", "gate-n1-reader"});
  CHECK(r.rc == 0);
  CHECK(r.out ==
        "03:25:58.123 lib-gw-01 seq=12 meter-b1-01 telemetry energy_total=1234.56 kWh "
        "voltage_l1=231.7 V\n"
        "03:25:59.000 lib-gw-01 seq=13 gate-n1-reader access card=[redacted] in granted "
        "door=north-gate-1\n");
  CHECK(r.err == "gatewayctl: tail: streaming from " + d.socket_path() +
                     "; Ctrl-C to stop\n"
                     "gatewayctl: tail: gatewayd ended the stream: gatewayd is stopping\n");
  CHECK(d.requests().back()["args"].dump() == R"({"device":"gate-n1-reader","class":"access"})");
}

TEST_CASE("tail --json passes items through, but never a raw card id unless asked") {
  FakeDaemon d;
  d.on("tail", {.lines = {kStreaming,
                          item_line({{"event", testing::access_event(13, "0004123456")}}), kEnd}});
  Ran r = run_at(d, {"tail", "--json"});
  CHECK(r.rc == 0);
  CHECK_THAT(r.out, Catch::Contains(R"("credential":"[redacted]")"));
  Ran shown = run_at(d, {"tail", "--json", "--show-credentials"});
  CHECK_THAT(shown.out, Catch::Contains(R"("credential":"0004123456")"));
  CHECK(d.requests().back()["args"].dump() == R"({"show_credentials":true})");
}

TEST_CASE("tail: a bad class is named before anything is sent") {
  FakeDaemon d;
  Ran r = run_at(d, {"tail", "--class", "telemetrie"});
  CHECK(r.rc == 1);
  CHECK(
      r.err ==
      "gatewayctl: tail: --class must be access, alarm, telemetry or status (got 'telemetrie')\n");
  CHECK(d.requests().empty());
}

TEST_CASE("a stream whose daemon dies exits 69; Ctrl-C exits 0") {
  FakeDaemon d;
  d.on("trace", {.lines = {kStreaming}, .close_after = true});
  Ran died = run_at(d, {"trace", "meter-b1-07"});
  CHECK(died.rc == 69);
  CHECK_THAT(died.err, Catch::Contains("gatewayd closed the stream (did it stop?)"));

  d.on("trace", {.lines = {kStreaming}});
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  std::thread ctrl_c([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    REQUIRE(::write(fds[1], "x", 1) == 1);
  });
  std::ostringstream out, err;
  Context ctx{out, err};
  ctx.interrupt_fd = fds[0];
  CHECK(run({"--socket", d.socket_path(), "trace", "meter-b1-07"}, ctx) == 0);
  ctrl_c.join();
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST_CASE("trace: time, direction, hex and note per frame") {
  testing::use_utc();
  FakeDaemon d;
  d.on("trace", {.lines = {kStreaming,
                           item_line({{"at_us", testing::at(3, 25, 58) + 1000},
                                      {"device", "meter-b1-07"},
                                      {"dir", "tx"},
                                      {"hex", "070300000002c5ad"},
                                      {"note", "read holding 0..1"}}),
                           item_line({{"at_us", testing::at(3, 25, 58) + 24000},
                                      {"device", "meter-b1-07"},
                                      {"dir", "rx"},
                                      {"hex", "070304436 77ae1 c2f1"},
                                      {"note", "bad CRC"}}),
                           kEnd}});
  Ran r = run_at(d, {"trace", "meter-b1-07"});
  CHECK(r.rc == 0);
  CHECK(r.out ==
        "03:25:58.001 tx 07 03 00 00 00 02 c5 ad  read holding 0..1\n"
        "03:25:58.024 rx 07 03 04 43 67 7a e1 c2 f1  bad CRC\n");
  CHECK(d.requests().back()["args"].dump() == R"({"device":"meter-b1-07"})");
}

TEST_CASE("read: the value and exit 0, or BAD and exit 1") {
  FakeDaemon d;
  d.answer("read", Json{{"device", "meter-b1-01"},
                        {"point", "voltage_l1"},
                        {"value", 231.68},
                        {"unit", "V"},
                        {"good", true},
                        {"error", ""},
                        {"latency_ms", 12.4}});
  Ran good = run_at(d, {"read", "meter-b1-01", "voltage_l1"});
  CHECK(good.rc == 0);
  CHECK(good.out == "meter-b1-01 voltage_l1 = 231.68 V  (12.4 ms)\n");
  CHECK(d.requests().back()["args"].dump() == R"({"device":"meter-b1-01","point":"voltage_l1"})");
  d.answer("read", Json{{"device", "meter-b1-07"},
                        {"point", "voltage_l1"},
                        {"value", nullptr},
                        {"unit", "V"},
                        {"good", false},
                        {"error", "no answer within 200ms"},
                        {"latency_ms", 201}});
  Ran bad = run_at(d, {"read", "meter-b1-07", "voltage_l1"});
  CHECK(bad.rc == 1);
  CHECK(bad.out == "meter-b1-07 voltage_l1: BAD - no answer within 200ms  (201 ms)\n");
}

TEST_CASE("reload: what changed") {
  FakeDaemon d;
  d.answer("reload", Json{{"reloaded", true},
                          {"added", {"meter-b1-13"}},
                          {"removed", Json::array()},
                          {"changed", {"meter-b1-01"}},
                          {"unchanged", 11}});
  Ran r = run_at(d, {"reload"});
  CHECK(r.rc == 0);
  CHECK(r.out ==
        "reloaded: 1 added (meter-b1-13), 0 removed, 1 changed (meter-b1-01), 11 unchanged\n");
}

TEST_CASE("alarms: active ones most severe first, then the recent transitions") {
  testing::use_utc();
  FakeDaemon d;
  const Json result = {
      {"rules", 7},
      {"active",
       {{{"rule", "over-voltage"}, {"severity", "major"}, {"device", "meter-b1-01"},
         {"subject", ""}, {"point", "voltage_l1"}, {"value", 262.5}, {"threshold", 250},
         {"raised_at_us", testing::at(3, 12)}, {"since_us", testing::at(3, 11, 50)}},
        {{"rule", "door-forced"}, {"severity", "critical"}, {"device", "gate-n1"},
         {"subject", ""}, {"point", "door_open"}, {"value", 1}, {"threshold", 10},
         {"raised_at_us", testing::at(3, 20)}, {"since_us", testing::at(3, 20)}}}},
      {"recent",
       {{{"at_us", testing::at(3, 20, 2)}, {"seq", 1207}, {"rule", "door-forced"},
         {"severity", "critical"}, {"device", "gate-n1"}, {"point", "door_open"}, {"value", 1},
         {"threshold", 10}, {"active", true}},
        {{"at_us", testing::at(3, 15, 40)}, {"seq", 1190}, {"rule", "denied-burst"},
         {"severity", "minor"}, {"device", "reader-n1"}, {"point", "north-gate-1"},
         {"value", 0}, {"threshold", 5}, {"active", false}}}}};
  d.answer("alarms", result);
  Ran r = run_at(d, {"alarms"});
  CHECK(r.rc == 0);
  CHECK(r.err.empty());
  CHECK(r.out ==
        "2 alarms active (7 rules)\n"
        "SEVERITY  RULE          DEVICE       POINT       VALUE  THRESHOLD  SINCE\n"
        "critical  door-forced   gate-n1      door_open       1         10  03:20 (6m)\n"
        "major     over-voltage  meter-b1-01  voltage_l1  262.5        250  03:12 (14m)\n"
        "\n"
        "Recent transitions (newest first)\n"
        "TIME       SEQ  EVENT    SEVERITY  RULE          DEVICE     POINT         VALUE  THRESHOLD\n"
        "03:20:02  1207  raised   critical  door-forced   gate-n1    door_open         1         10\n"
        "03:15:40  1190  cleared  minor     denied-burst  reader-n1  north-gate-1      0          5\n");
  CHECK(d.requests().at(0).dump() == R"({"v":1,"id":1,"cmd":"alarms","args":{}})");

  Ran one = run_at(d, {"alarms", "--recent", "1"});
  CHECK(one.out.find("1207") != std::string::npos);
  CHECK(one.out.find("1190") == std::string::npos);
  Ran json = run_at(d, {"alarms", "--json"});
  CHECK(Json::parse(json.out) == result);
  Ran bad = run_at(d, {"alarms", "--recent", "x"});
  CHECK(bad.rc == 1);
  CHECK(bad.err == "gatewayctl: alarms: --recent must be 0..50 (got 'x')\n");

  FakeDaemon none;
  none.answer("alarms", Json{{"rules", 0}, {"active", Json::array()}, {"recent", Json::array()}});
  CHECK(run_at(none, {"alarms"}).out == "no alarm rules configured (alarms: in the config)\n");
}

TEST_CASE("buffer through the daemon: counts per class and the oldest events") {
  testing::use_utc();
  FakeDaemon d;
  d.answer("hello", Json{{"protocol", 1},
                         {"gateway_id", "lib-gw-01"},
                         {"version", "0.1.0"},
                         {"commands", Json::array()}});
  d.answer("buffer", Json{{"path", "/var/lib/gatewayd/buffer.db"},
                          {"next_seq", 121549},
                          {"pending", 1204},
                          {"classes", testing::degraded_status()["buffer"]["classes"]},
                          {"oldest", Json::array({testing::access_event(120345, "0004123456"),
                                                  testing::telemetry_event(120346)})}});
  Ran r = run_at(d, {"buffer", "--oldest", "2"});
  CHECK(r.rc == 0);
  CHECK(r.out ==
        "buffer /var/lib/gatewayd/buffer.db\n"
        "  pending 1204 events, next seq 121549\n"
        "  class         pending        bytes     oldest age\n"
        "  access              3         1230           840s\n"
        "  alarm               0            0             0s\n"
        "  telemetry        1190       419840           840s\n"
        "  status             11         1126           720s\n"
        "oldest events of each class:\n"
        "  03:25:59.000 lib-gw-01 seq=120345 gate-n1-reader access card=[redacted] in granted "
        "door=north-gate-1\n"
        "  03:25:58.123 lib-gw-01 seq=120346 meter-b1-01 telemetry energy_total=1234.56 kWh "
        "voltage_l1=231.7 V\n");
  CHECK(d.requests().back()["args"].dump() == R"({"oldest":2})");
  Ran j = run_at(d, {"buffer", "--json"});
  CHECK_THAT(j.out, !Catch::Contains("0004123456"));
  CHECK(run_at(d, {"buffer", "--oldest", "many"}).rc == 1);
}

TEST_CASE("version: ours, and the daemon's when it answers") {
  FakeDaemon d;
  d.answer("hello", Json{{"protocol", 1},
                         {"gateway_id", "lib-gw-01"},
                         {"version", "0.1.0"},
                         {"commands", Json::array({"status"})}});
  Ran r = run_at(d, {"version"});
  CHECK(r.rc == 0);
  CHECK(r.out == "gatewayctl " GW_VERSION
                 " (control protocol 1)\n"
                 "gatewayd   0.1.0 (gateway lib-gw-01, control protocol 1) at " +
                     d.socket_path() + "\n");
  testing::TempDir dir;
  Ran alone = run_ctl({"version", "--socket", dir.file("x.sock")});
  CHECK(alone.rc == 0);
  CHECK_THAT(alone.out, Catch::Contains("gatewayd   not reachable: cannot connect"));
  CHECK(run_ctl({"--version"}).out == "gatewayctl " GW_VERSION "\n");
}

TEST_CASE("usage errors exit 1 with one clear line") {
  Ran unknown = run_ctl({"stauts"});
  CHECK(unknown.rc == 1);
  CHECK(unknown.err ==
        "gatewayctl: unknown command 'stauts'; did you mean 'status'? (gatewayctl help "
        "lists the commands)\n");
  Ran none = run_ctl({});
  CHECK(none.rc == 1);
  CHECK_THAT(none.err, Catch::StartsWith("gatewayctl: no command given\n"));
  CHECK(run_ctl({"help", "stauts"}).rc == 1);
  CHECK(run_ctl({"completion", "zsh"}).rc == 1);
}

TEST_CASE("help, completion and man go to stdout with exit 0") {
  Ran help = run_ctl({"help", "buffer", "export"});
  CHECK(help.rc == 0);
  CHECK_THAT(help.out, Catch::StartsWith("usage: gatewayctl buffer export FILE"));
  CHECK(run_ctl({"tail", "--help"}).out == run_ctl({"help", "tail"}).out);
  CHECK_THAT(run_ctl({"completion", "bash"}).out, Catch::Contains("complete -F _gatewayctl"));
  CHECK_THAT(run_ctl({"man"}).out, Catch::StartsWith(".\\\" Generated"));
}

TEST_CASE("config redaction keeps paths and removes secrets") {
  const std::string in =
      "mqtt:\n"
      "  uri: ssl://lib-gw-01:s3cret@broker:8883\n"
      "  username: lib-gw-01\n"
      "  password_file: /etc/gatewayd/mqtt.pass\n"
      "  password: hunter2   # typed here by mistake\n"
      "  tls: { ca_file: /etc/ca.pem, key_file: /etc/k.pem, api_token: abc123 }\n"
      "privacy:\n  card_id: hmac\n  key_file: /etc/gatewayd/card.key\n";
  const std::string out = redact_config_text(in);
  CHECK(out ==
        "mqtt:\n"
        "  uri: ssl://<redacted>@broker:8883\n"
        "  username: lib-gw-01\n"
        "  password_file: /etc/gatewayd/mqtt.pass\n"
        "  password: <redacted># typed here by mistake\n"
        "  tls: { ca_file: /etc/ca.pem, key_file: /etc/k.pem, api_token: <redacted>}\n"
        "privacy:\n  card_id: hmac\n  key_file: /etc/gatewayd/card.key\n");
}

TEST_CASE("metrics endpoints and a plain HTTP GET") {
  CHECK(metrics_endpoint("127.0.0.1:9108")->port == 9108);
  CHECK(metrics_endpoint("0.0.0.0:9108")->host == "127.0.0.1");
  CHECK(metrics_endpoint("[::]:9108")->host == "::1");
  CHECK_FALSE(metrics_endpoint("nonsense"));

  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(fd, 1) == 0);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  std::thread server([fd] {
    const int c = ::accept(fd, nullptr, nullptr);
    char buf[1024];
    [[maybe_unused]] ssize_t n = ::read(c, buf, sizeof buf);
    const std::string answer = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\ngw_up 1\n";
    n = ::write(c, answer.data(), answer.size());
    ::close(c);
  });
  std::string error;
  auto body = http_get({"127.0.0.1", ntohs(addr.sin_port)}, "/metrics", 2000, &error);
  server.join();
  ::close(fd);
  REQUIRE(body);
  CHECK(*body == "gw_up 1\n");
}

TEST_CASE("bundle collects what it can and lists what is missing") {
  testing::use_utc();
  FakeDaemon d;
  d.answer("hello", Json{{"protocol", 1},
                         {"gateway_id", "lib-gw-01"},
                         {"version", "0.1.0"},
                         {"commands", Json::array()}});
  d.answer("status", testing::degraded_status());
  d.answer("devices", testing::devices_result());
  d.answer("buffer", Json{{"path", "/x"},
                          {"next_seq", 1},
                          {"pending", 0},
                          {"classes", Json::object()},
                          {"oldest", Json::array({testing::access_event(1, "0004123456")})}});
  const std::string cfg = d.dir().file("gw.yaml");
  std::ofstream(d.dir().file("mqtt.pass")) << "TOPSECRET-PASSWORD\n";
  std::ofstream(cfg)
      << "gateway: { id: lib-gw-01, site: s, building: b, data_dir: data }\n"
         "mqtt: { uri: tcp://127.0.0.1:1, password_file: mqtt.pass }\n"
         "devices:\n  - { id: meter-1, kind: energy_meter, driver: modbus_tcp,\n"
         "      address: 127.0.0.1:1502, points: [{ name: e, address: 0, type: uint16 }] }\n";
  const std::string out = d.dir().file("support.tar.gz");
  Ran r = run_at(d, {"bundle", out, "--config", cfg});
  INFO(r.out << r.err);
  CHECK(r.rc == 0);
  CHECK_THAT(r.out, Catch::StartsWith("wrote " + out + " ("));
  CHECK_THAT(r.out, Catch::Contains("  + status.json, status.txt\n"));
  CHECK_THAT(r.out, Catch::Contains("  - metrics.txt: metrics.listen is not configured\n"));

  FILE* p = ::popen(("tar -xzOf " + out).c_str(), "r");
  std::string listing;
  char buf[4096];
  while (p && std::fgets(buf, sizeof buf, p)) listing += buf;
  if (p) ::pclose(p);
  CHECK_THAT(listing, Catch::Contains("lib-gw-01 DEGRADED — MQTT down since 03:12"));
  CHECK_THAT(listing, Catch::Contains("password_file: mqtt.pass"));
  CHECK(listing.find("TOPSECRET") == std::string::npos);
  CHECK_THAT(listing, Catch::Contains("Missing:\n  metrics.txt: metrics.listen is not configured"));
  CHECK(listing.find("0004123456") == std::string::npos);

  CHECK(run_at(d, {"bundle", d.dir().file("out.zip")}).rc == 1);
}

TEST_CASE("bundle without a daemon still writes an archive") {
  testing::TempDir dir;
  const std::string out = dir.file("b.tar.gz");
  Ran r = run_ctl({"bundle", out, "--socket", dir.file("none.sock")});
  CHECK(r.rc == 0);
  CHECK_THAT(r.out,
             Catch::Contains("  - hello.json, status.*, devices.*, buffer.*: cannot connect"));
  CHECK(std::filesystem::exists(out));
}

}  // namespace
}  // namespace gw::ctl
