#include "tools/gatewayctl/offline.h"

#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>

#include "storage/event_buffer.h"
#include "storage/sqlite_db.h"
#include "tests/tools/gatewayctl/fake_daemon.h"
#include "tools/gatewayctl/commands.h"

namespace gw::ctl {
namespace {

namespace v1 = campus::gateway::v1;
using testing::TempDir;

std::string write_config(const TempDir& dir, const std::string& extra = "") {
  const std::string path = dir.file("gatewayd.yaml");
  std::ofstream(path)
      << "gateway:\n  id: cfg-gw-01\n  site: s\n  building: b\n  data_dir: data\n"
         "control: { socket: gatewayd.sock }\n"
         "mqtt:\n  uri: tcp://127.0.0.1:1\n"
      << extra
      << "devices:\n  - id: meter-1\n    kind: energy_meter\n    driver: modbus_tcp\n"
         "    address: 127.0.0.1:1502\n    poll: 1s\n    points:\n"
         "      - { name: energy_total, address: 0, type: uint32, unit: kWh }\n";
  return path;
}

storage::BufferedEvent make(uint64_t seq, v1::EventClass cls, const std::string& credential = "") {
  v1::Event e;
  e.set_seq(seq);
  e.set_device_id(cls == v1::ACCESS ? "gate-1" : "meter-1");
  e.set_event_class(cls);
  e.set_gateway_time_us(1714533958000000 + static_cast<int64_t>(seq));
  if (cls == v1::ACCESS) {
    e.mutable_access()->set_credential(credential);
    e.mutable_access()->set_direction(v1::IN);
    e.mutable_access()->set_result(v1::GRANTED);
  } else {
    auto* v = e.mutable_meter()->add_values();
    v->set_name("energy_total");
    v->set_value(12.5);
    v->set_unit("kWh");
    v->set_quality(v1::GOOD);
  }
  storage::BufferedEvent b;
  b.seq = seq;
  b.event_class = cls;
  b.device_id = e.device_id();
  b.gateway_time_us = e.gateway_time_us();
  b.payload = e.SerializeAsString();
  return b;
}

void fill_buffer(const std::string& data_dir) {
  std::filesystem::create_directories(data_dir);
  auto buf = storage::EventBuffer::open(data_dir + "/buffer.db");
  REQUIRE(buf);
  std::vector<storage::BufferedEvent> events = {
      make(1, v1::TELEMETRY), make(2, v1::ACCESS, "0004123456"), make(3, v1::TELEMETRY)};
  REQUIRE(buf.value()->append_batch(events));
}

struct Ran {
  int rc;
  std::string out, err;
};
Ran run_ctl(std::vector<std::string> argv) {
  std::ostringstream out, err;
  Context ctx{out, err};
  const int rc = run(argv, ctx);
  return {rc, out.str(), err.str()};
}

TEST_CASE("check-config: OK line, or every problem and exit 78") {
  TempDir dir;
  const std::string good = write_config(dir);
  Ran ok = run_ctl({"check-config", good});
  CHECK(ok.rc == 0);
  CHECK(ok.out == good + ": OK (1 devices, 0 buses)\n");

  const std::string bad = dir.file("bad.yaml");
  std::ofstream(bad) << "gateway:\n  id: x\n  colour: blue\n";
  Ran r = run_ctl({"check-config", bad});
  CHECK(r.rc == 78);
  CHECK_THAT(r.err, Catch::StartsWith("gatewayctl: config error: " + bad + ":"));
  CHECK_THAT(r.err, Catch::Contains("gatewayctl: config error: " + bad +
                                    ":3: gateway.colour: unknown key 'colour'"));
}

TEST_CASE("a config that does not load stops a daemon command with exit 78") {
  TempDir dir;
  const std::string bad = dir.file("bad.yaml");
  std::ofstream(bad) << "gateway: [\n";
  Ran r = run_ctl({"status", "--config", bad});
  CHECK(r.rc == 78);
  CHECK_THAT(r.err, Catch::StartsWith("gatewayctl: config error: " + bad));
}

TEST_CASE("the config file gives the socket") {
  TempDir dir;
  const std::string cfg = write_config(dir);
  Ran r = run_ctl({"status", "--config", cfg});
  CHECK(r.rc == 69);
  CHECK_THAT(r.err,
             Catch::Contains("cannot connect to gatewayd at " + dir.path() + "/gatewayd.sock"));
}

TEST_CASE("buffer --data-dir reads the file offline, in the old layout") {
  TempDir dir;
  fill_buffer(dir.file("data"));
  Ran r = run_ctl({"buffer", "--data-dir", dir.file("data")});
  CHECK(r.rc == 0);
  CHECK_THAT(r.out, Catch::StartsWith("buffer " + dir.file("data") +
                                      "/buffer.db\n"
                                      "  pending 3 events, next seq 4\n"
                                      "  class         pending        bytes     oldest age\n"
                                      "  access              1"));
  Ran j = run_ctl({"buffer", "--data-dir", dir.file("data"), "--json"});
  CHECK(j.rc == 0);
  CHECK_THAT(j.out,
             Catch::StartsWith("{\"path\":\"" + dir.file("data") +
                               "/buffer.db\",\"schema_version\":" +
                               std::to_string(storage::EventBuffer::kSchemaVersion) +
                               ",\"next_seq\":4,\"pending\":3,"
                               "\"classes\":{\"access\":{\"pending\":1,"));
  Ran none = run_ctl({"buffer", "--data-dir", dir.file("nothing")});
  CHECK(none.rc == 69);
  CHECK(none.err == "gatewayctl buffer: no buffer at " + dir.file("nothing") + "/buffer.db\n");
}

TEST_CASE("buffer with --config falls back to the file when gatewayd is not there") {
  TempDir dir;
  const std::string cfg = write_config(dir);
  fill_buffer(dir.file("data"));
  Ran r = run_ctl({"buffer", "--config", cfg});
  CHECK(r.rc == 0);
  CHECK_THAT(r.err, Catch::Contains("reading the buffer file offline instead"));
  CHECK_THAT(r.out, Catch::Contains("pending 3 events, next seq 4"));
}

TEST_CASE("buffer export writes every event as protobuf JSON lines, card ids redacted") {
  TempDir dir;
  fill_buffer(dir.file("data"));
  std::ostringstream sink;
  Result<ExportSummary> s = export_events(dir.file("data/buffer.db"), sink, std::nullopt, false);
  REQUIRE(s);
  CHECK(s->events == 3);
  CHECK(s->first_seq == 1);
  CHECK(s->last_seq == 3);
  std::istringstream lines(sink.str());
  std::string line;
  std::vector<Json> docs;
  while (std::getline(lines, line)) docs.push_back(parse_line(line));
  REQUIRE(docs.size() == 3);
  CHECK(docs[0]["seq"] == "1");
  CHECK(docs[0]["event_class"] == "TELEMETRY");
  CHECK(docs[0]["meter"]["values"][0]["name"] == "energy_total");
  CHECK(docs[1]["access"]["credential"] == "[redacted]");
  CHECK(sink.str().find("0004123456") == std::string::npos);

  std::ostringstream raw;
  REQUIRE(export_events(dir.file("data/buffer.db"), raw, v1::ACCESS, true));
  CHECK(raw.str().find("\"credential\":\"0004123456\"") != std::string::npos);
  CHECK(raw.str().find("TELEMETRY") == std::string::npos);
}

TEST_CASE("buffer export to a file via --config, and its summary") {
  TempDir dir;
  const std::string cfg = write_config(dir);
  fill_buffer(dir.file("data"));
  const std::string out = dir.file("backlog.jsonl");
  Ran r = run_ctl({"buffer", "export", out, "--config", cfg, "--class", "telemetry"});
  CHECK(r.rc == 0);
  CHECK(r.out ==
        "exported 2 events (seq 1..3) from " + dir.file("data") + "/buffer.db to " + out + "\n");
  std::ifstream f(out);
  std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  CHECK(std::count(all.begin(), all.end(), '\n') == 2);
  CHECK_FALSE(std::filesystem::exists(out + ".tmp"));

  Ran missing = run_ctl({"buffer", "export", out});
  CHECK(missing.rc == 1);
  CHECK(missing.err == "gatewayctl: buffer export: give --data-dir DIR or --config FILE\n");
  Ran bad_class =
      run_ctl({"buffer", "export", out, "--data-dir", dir.file("data"), "--class", "x"});
  CHECK(bad_class.rc == 1);
  CHECK_THAT(bad_class.err,
             Catch::Contains("--class must be access, alarm, telemetry or status (got 'x')"));
}

TEST_CASE("buffer export skips a payload that is not an event and says so") {
  TempDir dir;
  fill_buffer(dir.file("data"));
  {
    auto db = storage::SqliteDb::open(dir.file("data/buffer.db"));
    REQUIRE(db);
    REQUIRE(db.value()->exec("UPDATE events SET payload = x'ffffffff' WHERE seq = 2"));
  }
  Ran r = run_ctl({"buffer", "export", "-", "--data-dir", dir.file("data")});
  CHECK(r.rc == 1);
  CHECK(std::count(r.out.begin(), r.out.end(), '\n') == 2);
  CHECK_THAT(r.err,
             Catch::Contains("seq 2: payload (4 bytes) is not a campus.gateway.v1.Event; skipped"));
}

TEST_CASE("buffer export refuses a file that is not a gatewayd buffer") {
  TempDir dir;
  std::filesystem::create_directories(dir.file("data"));
  std::ofstream(dir.file("data/buffer.db")) << "not sqlite at all, just text";
  Ran r = run_ctl({"buffer", "export", "-", "--data-dir", dir.file("data")});
  CHECK(r.rc == 1);
  CHECK_THAT(r.err, Catch::StartsWith("gatewayctl: buffer export: "));
}

}  // namespace
}  // namespace gw::ctl
