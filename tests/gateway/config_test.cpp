// Tests for the YAML config loader: the contract's example loads with every value, and each
// class of mistake an operator can make comes back as one error naming the line, the key path
// and the offending value. Every test writes its files into its own temporary folder.
#include "gateway/config.h"

#include <stdlib.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
using gw::config::ConfigError;
using gw::config::Duration;
using gw::config::load_config;
using gw::config::LoadResult;
namespace pb = campus::gateway::v1;
namespace protocols = gw::protocols;

// A scratch folder holding one config file and whatever files it names; removed afterwards.
class ConfigDir {
 public:
  ConfigDir() {
    std::string tmpl = (fs::temp_directory_path() / "gw-config-test-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    dir_ = tmpl;
  }
  ~ConfigDir() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  ConfigDir(const ConfigDir&) = delete;
  ConfigDir& operator=(const ConfigDir&) = delete;

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  std::string write(const std::string& name, const std::string& text) const {
    const fs::path p = dir_ / name;
    fs::create_directories(p.parent_path());
    std::ofstream out(p, std::ios::binary);
    out << text;
    REQUIRE(out.good());
    return p.string();
  }

  LoadResult load(const std::string& yaml, const std::string& name = "gw.yaml") const {
    return load_config(write(name, yaml));
  }

 private:
  fs::path dir_;
};

std::string dump(const LoadResult& r) {
  std::string out;
  for (const ConfigError& e : r.errors) out += e.to_string() + "\n";
  return out.empty() ? "(no errors)" : out;
}

// The one error a broken file must produce: more would mean the check cascades, none that it
// is missing.
ConfigError single_error(const LoadResult& r) {
  INFO(dump(r));
  REQUIRE_FALSE(r.config.has_value());
  REQUIRE(r.errors.size() == 1);
  return r.errors[0];
}

const gw::config::Config& loaded(const LoadResult& r) {
  INFO(dump(r));
  REQUIRE(r.errors.empty());
  REQUIRE(r.config.has_value());
  return *r.config;
}

// Seven lines; sections appended to it start at line 8.
const std::string kBase = R"(gateway:
  id: gw-1
  site: north
  building: lib
  data_dir: data
mqtt:
  uri: tcp://127.0.0.1:1883
)";

// --- the contract's example ----------------------------------------------------------------

// CONTRACT.md's full example, adapted so that it can load: the files it names exist (relative
// to the config), the tls block goes with an ssl:// uri, and meter-b1-01 gains the `voltage`
// point its over-voltage alarm watches.
const std::string kContractExample = R"(gateway:
  id: lib-gw-01            # [a-z0-9][a-z0-9-]{0,63}; part of every topic and every event id
  site: north-campus
  building: library
  data_dir: /var/lib/gatewayd          # SQLite buffer and the persisted sequence live here
mqtt:
  uri: ssl://broker.campus.example:8883
  client_id: lib-gw-01-uplink          # default: gateway.id
  username: lib-gw-01                  # optional
  password_file: secrets/mqtt.pass     # optional; never the password itself in this file
  tls: { ca_file: tls/ca.pem, cert_file: tls/client.pem, key_file: tls/client.key, verify_hostname: false }
  topic_prefix: campus                 # default "campus"
  keepalive: 45s
  max_inflight: 64                     # publishes awaiting PUBACK at once
  batch_max_events: 250
  backoff: { initial: 1s, max: 2m }
buffer:
  max_bytes: 512MiB                    # whole store bound
  classes:                             # per event class: retention and what happens when full
    access:    { max_age: 180d, when_full: reject_new }   # never evicted; overflow raises an alarm
    alarm:     { max_age: 180d, when_full: reject_new }
    telemetry: { max_age: 30d,  when_full: drop_oldest }  # eviction publishes a gap event
control:
  socket: /run/gatewayd/gatewayd.sock
metrics:
  listen: 127.0.0.1:9108               # Prometheus text format at /metrics; omit to disable
privacy:
  card_id: hmac
  key_file: card.key
buses:                                 # serial lines (RS-485/RS-232); one owner each
  - id: rs485-1
    port: /dev/ttyS1
    baud: 9600
    parity: even                       # none | even | odd
    data_bits: 8
    stop_bits: 1
devices:
  - id: meter-b1-01                    # unique per gateway
    kind: energy_meter                 # energy_meter | access_gate | card_reader | camera | sensor
    driver: modbus_tcp
    address: 10.0.3.21:502             # modbus_tcp / tcp_line / camera endpoints
    unit_id: 1
    poll: 5s
    points:                            # register map (inline, or `profile: FILE`)
      - name: energy_total
        table: holding                 # holding | input | coil | discrete
        address: 0                     # zero-based register number
        type: uint32                   # int16 uint16 int32 uint32 int64 uint64 float32 float64 bool
        word_order: big                # big | little (registers of a multi-register value)
        scale: 0.01                    # value = raw * scale + offset
        offset: 0
        unit: kWh
        report: { on_change: true, deadband: 0.1, max_interval: 60s }
      - { name: voltage, table: input, address: 10, type: float32, word_order: little, unit: V }
  - id: meter-dl-01                    # a DL/T 645-2007 meter on an RS-485 bus
    kind: energy_meter
    driver: dlt645
    bus: rs485-1
    meter_address: "000000123456"      # 12 BCD digits as printed on the meter
    poll: 10s
    points:                            # data identifiers DI3..DI0 in hex
      - { name: energy_total, di: "00010000", unit: kWh }
      - { name: voltage_a, di: "02010100", unit: V, decimals: 1 }
  - id: gate-n1-reader                 # a card reader behind a serial-to-Ethernet converter
    kind: card_reader
    driver: tcp_line                   # the gateway connects to the reader's endpoint
    address: 10.0.3.40:4001
    door: north-gate-1
    direction: in                      # in | out | unknown
    framing: { type: line, delimiter: "\r\n", max_length: 256 }   # line | stx_etx | fixed
    card_format: decimal               # decimal | hex | wiegand26 | wiegand34
alarms:
  - name: over-voltage
    devices: [meter-b1-01]             # or `kind: energy_meter` for every device of a kind
    point: voltage
    high: 250                          # raise above high (or below `low`) ...
    hysteresis: 5                      # ... clear below high - hysteresis
    for: 10s                           # condition must hold this long before raising
    severity: major                    # info | minor | major | critical
  - { name: meter-stale, kind: energy_meter, stale: 5m, severity: minor }
  - { name: energy-jump, kind: energy_meter, point: energy_total, rate: { max_delta: 50, window: 15m } }
  - { name: door-held, kind: access_gate, held_open: 30s, severity: major }
  - { name: door-forced, kind: access_gate, forced: true, severity: critical }
  - { name: denied-burst, kind: card_reader, denied: { count: 5, window: 1m } }
  - { name: camera-tamper, kind: camera, active_for: { type: tamper, duration: 5s } }
)";

void write_contract_files(const ConfigDir& dir) {
  dir.write("secrets/mqtt.pass", "s3cret\n");
  dir.write("tls/ca.pem", "-----BEGIN CERTIFICATE-----\n");
  dir.write("tls/client.pem", "-----BEGIN CERTIFICATE-----\n");
  fs::permissions(dir.write("tls/client.key", "-----BEGIN PRIVATE KEY-----\n"),
                  fs::perms::owner_read | fs::perms::owner_write);
  dir.write("card.key", "0123456789abcdef\n");
}

TEST_CASE("the contract's full example loads with every value", "[config]") {
  ConfigDir dir;
  write_contract_files(dir);
  const auto result = dir.load(kContractExample);
  const auto& cfg = loaded(result);

  CHECK(cfg.source_path == dir.path("gw.yaml"));
  CHECK(cfg.gateway.id == "lib-gw-01");
  CHECK(cfg.gateway.site == "north-campus");
  CHECK(cfg.gateway.building == "library");
  CHECK(cfg.gateway.data_dir == "/var/lib/gatewayd");

  CHECK(cfg.mqtt.uri == "ssl://broker.campus.example:8883");
  CHECK(cfg.mqtt.client_id == "lib-gw-01-uplink");
  CHECK(cfg.mqtt.username == "lib-gw-01");
  CHECK(cfg.mqtt.password_file == dir.path("secrets/mqtt.pass"));
  REQUIRE(cfg.mqtt.tls.has_value());
  CHECK(cfg.mqtt.tls->ca_file == dir.path("tls/ca.pem"));
  CHECK(cfg.mqtt.tls->cert_file == dir.path("tls/client.pem"));
  CHECK(cfg.mqtt.tls->key_file == dir.path("tls/client.key"));
  CHECK_FALSE(cfg.mqtt.tls->verify_hostname);
  CHECK(cfg.mqtt.topic_prefix == "campus");
  CHECK(cfg.mqtt.keepalive == 45s);
  CHECK(cfg.mqtt.max_inflight == 64);
  CHECK(cfg.mqtt.batch_max_events == 250);
  CHECK(cfg.mqtt.backoff_initial == 1s);
  CHECK(cfg.mqtt.backoff_max == 2min);

  CHECK(cfg.buffer.max_bytes == 512ull * 1024 * 1024);
  REQUIRE(cfg.buffer.classes.size() == 4);
  using gw::config::WhenFull;
  CHECK(cfg.buffer.classes.at(pb::ACCESS).max_age == std::chrono::days(180));
  CHECK(cfg.buffer.classes.at(pb::ACCESS).when_full == WhenFull::kRejectNew);
  CHECK(cfg.buffer.classes.at(pb::ALARM).when_full == WhenFull::kRejectNew);
  CHECK(cfg.buffer.classes.at(pb::TELEMETRY).max_age == std::chrono::days(30));
  CHECK(cfg.buffer.classes.at(pb::TELEMETRY).when_full == WhenFull::kDropOldest);
  CHECK(cfg.buffer.classes.at(pb::STATUS).max_age == std::chrono::days(30));  // the default
  CHECK(cfg.buffer.classes.at(pb::STATUS).when_full == WhenFull::kDropOldest);

  CHECK(cfg.control.socket == "/run/gatewayd/gatewayd.sock");
  CHECK(cfg.metrics.listen == std::optional<std::string>("127.0.0.1:9108"));
  CHECK(cfg.privacy.card_id == gw::config::PrivacySection::CardId::kHmac);
  CHECK(cfg.privacy.key_file == dir.path("card.key"));

  REQUIRE(cfg.buses.size() == 1);
  CHECK(cfg.buses[0].id == "rs485-1");
  CHECK(cfg.buses[0].port == "/dev/ttyS1");
  CHECK(cfg.buses[0].baud == 9600);
  CHECK(cfg.buses[0].parity == 'E');
  CHECK(cfg.buses[0].data_bits == 8);
  CHECK(cfg.buses[0].stop_bits == 1);
  CHECK(cfg.buses[0].line == 31);

  REQUIRE(cfg.devices.size() == 3);
  const auto& meter = cfg.devices[0];
  CHECK(meter.id == "meter-b1-01");
  CHECK(meter.line == 38);
  CHECK(meter.kind == pb::ENERGY_METER);
  CHECK(meter.driver == "modbus_tcp");
  CHECK(meter.host == "10.0.3.21");
  CHECK(meter.port == 502);
  CHECK(meter.unit_id == 1);
  CHECK(meter.poll == 5s);
  CHECK(meter.timeout == 1s);
  CHECK(meter.profile.empty());
  REQUIRE(meter.points.size() == 2);
  const auto& energy = meter.points[0];
  CHECK(energy.spec.name == "energy_total");
  CHECK(energy.spec.table == protocols::RegisterTable::kHolding);
  CHECK(energy.spec.address == 0);
  CHECK(energy.spec.type == protocols::ValueType::kUint32);
  CHECK(energy.spec.word_order == protocols::WordOrder::kBig);
  CHECK(energy.spec.scale == Approx(0.01));
  CHECK(energy.spec.offset == 0.0);
  CHECK(energy.spec.unit == "kWh");
  CHECK(energy.report.on_change);
  CHECK(energy.report.deadband == Approx(0.1));
  CHECK(energy.report.max_interval == std::optional<Duration>(60s));
  const auto& voltage = meter.points[1];
  CHECK(voltage.spec.table == protocols::RegisterTable::kInput);
  CHECK(voltage.spec.address == 10);
  CHECK(voltage.spec.type == protocols::ValueType::kFloat32);
  CHECK(voltage.spec.word_order == protocols::WordOrder::kLittle);
  CHECK(voltage.spec.scale == 1.0);
  CHECK_FALSE(voltage.report.on_change);

  const auto& dl = cfg.devices[1];
  CHECK(dl.driver == "dlt645");
  CHECK(dl.bus == "rs485-1");
  CHECK(dl.meter_address == "000000123456");
  CHECK(dl.poll == 10s);
  REQUIRE(dl.points.size() == 2);
  CHECK(dl.points[0].spec.name == "energy_total");
  CHECK(dl.points[0].di == "00010000");
  CHECK(dl.points[0].spec.unit == "kWh");
  CHECK_FALSE(dl.points[0].decimals.has_value());
  CHECK(dl.points[1].di == "02010100");
  CHECK(dl.points[1].decimals == std::optional<int>(1));

  const auto& reader = cfg.devices[2];
  CHECK(reader.kind == pb::CARD_READER);
  CHECK(reader.driver == "tcp_line");
  CHECK(reader.host == "10.0.3.40");
  CHECK(reader.port == 4001);
  CHECK(reader.door == "north-gate-1");
  CHECK(reader.direction == "in");
  REQUIRE(reader.framing.has_value());
  CHECK(reader.framing->type == gw::config::FramingSection::Type::kLine);
  CHECK(reader.framing->delimiter == "\r\n");
  CHECK(reader.framing->max_length == 256);
  CHECK(reader.card_format == "decimal");
  CHECK_FALSE(reader.line_settings.has_value());

  REQUIRE(cfg.alarms.size() == 7);
  const auto& ov = cfg.alarms[0];
  CHECK(ov.name == "over-voltage");
  CHECK(ov.devices == std::vector<std::string>{"meter-b1-01"});
  CHECK_FALSE(ov.kind.has_value());
  CHECK(ov.point == "voltage");
  CHECK(ov.high == std::optional<double>(250));
  CHECK_FALSE(ov.low.has_value());
  CHECK(ov.hysteresis == 5);
  CHECK(ov.hold_for == 10s);
  CHECK(ov.severity == "major");
  CHECK(cfg.alarms[1].kind == std::optional<pb::DeviceKind>(pb::ENERGY_METER));
  CHECK(cfg.alarms[1].stale == std::optional<Duration>(5min));
  CHECK(cfg.alarms[1].severity == "minor");
  CHECK(cfg.alarms[2].point == "energy_total");
  CHECK(cfg.alarms[2].rate_max_delta == std::optional<double>(50));
  CHECK(cfg.alarms[2].rate_window == std::optional<Duration>(15min));
  CHECK(cfg.alarms[2].severity == "major");  // the default
  CHECK(cfg.alarms[3].held_open == std::optional<Duration>(30s));
  CHECK(cfg.alarms[4].forced);
  CHECK(cfg.alarms[4].severity == "critical");
  CHECK(cfg.alarms[5].kind == std::optional<pb::DeviceKind>(pb::CARD_READER));
  CHECK(cfg.alarms[5].denied_count == std::optional<int>(5));
  CHECK(cfg.alarms[5].denied_window == std::optional<Duration>(1min));
  CHECK(cfg.alarms[6].active_type == "tamper");
  CHECK(cfg.alarms[6].active_duration == std::optional<Duration>(5s));
}

TEST_CASE("defaults fill what the file leaves out", "[config]") {
  ConfigDir dir;
  const auto result = dir.load(kBase);
  const auto& cfg = loaded(result);
  CHECK(cfg.mqtt.client_id == "gw-1");  // gateway.id
  CHECK(cfg.mqtt.topic_prefix == "campus");
  CHECK(cfg.mqtt.keepalive == 30s);
  CHECK(cfg.mqtt.max_inflight == 64);
  CHECK_FALSE(cfg.mqtt.tls.has_value());
  CHECK(cfg.control.socket == "/run/gatewayd/gatewayd.sock");
  CHECK_FALSE(cfg.metrics.listen.has_value());
  CHECK(cfg.privacy.card_id == gw::config::PrivacySection::CardId::kRaw);
  CHECK(cfg.buffer.max_bytes == 512ull << 20);
  CHECK(cfg.buffer.telemetry_linger == 20ms);
  REQUIRE(cfg.buffer.classes.size() == 4);
  CHECK(cfg.buffer.classes.at(pb::ALARM).max_age == std::chrono::days(180));
  CHECK(cfg.buffer.classes.at(pb::ALARM).when_full == gw::config::WhenFull::kRejectNew);
  CHECK(cfg.buffer.classes.at(pb::STATUS).when_full == gw::config::WhenFull::kDropOldest);
  CHECK(cfg.devices.empty());
}

TEST_CASE("relative paths resolve against the config file's folder", "[config]") {
  ConfigDir dir;
  dir.write("etc/secrets/mqtt.pass", "pw\n");
  dir.write("etc/card.key", "k\n");
  dir.write("profiles/pm5300.yaml", "points:\n  - { name: p, address: 1, type: uint16 }\n");
  const std::string yaml = R"(gateway:
  id: gw-1
  site: north
  building: lib
  data_dir: ../var/lib/gw
mqtt:
  uri: tcp://127.0.0.1:1883
  password_file: secrets/mqtt.pass
control:
  socket: ./run/gw.sock
privacy:
  key_file: card.key
devices:
  - { id: m1, kind: energy_meter, driver: modbus_tcp, address: "h:502", profile: ../profiles/pm5300.yaml }
)";
  dir.write("etc/gw.yaml", yaml);
  // The path handed in is not normalized either; everything comes out absolute and clean.
  const auto result = load_config(dir.path("etc/../etc/gw.yaml"));
  const auto& cfg = loaded(result);
  CHECK(cfg.source_path == dir.path("etc/gw.yaml"));
  CHECK(cfg.gateway.data_dir == dir.path("var/lib/gw"));
  CHECK(cfg.mqtt.password_file == dir.path("etc/secrets/mqtt.pass"));
  CHECK(cfg.control.socket == dir.path("etc/run/gw.sock"));
  CHECK(cfg.privacy.key_file == dir.path("etc/card.key"));
  REQUIRE(cfg.devices.size() == 1);
  CHECK(cfg.devices[0].profile == dir.path("profiles/pm5300.yaml"));
  CHECK(fs::path(cfg.gateway.data_dir).is_absolute());
}

// --- one test per class of mistake -----------------------------------------------------------

TEST_CASE("a missing file is one error naming the file and the OS reason", "[config][errors]") {
  ConfigDir dir;
  const std::string path = dir.path("nope.yaml");
  const auto e = single_error(load_config(path));
  CHECK(e.file == path);
  CHECK(e.line == 0);
  CHECK(e.key_path.empty());
  CHECK_THAT(e.message, Contains("No such file or directory"));
  CHECK(e.to_string() == path + ": cannot read config file: No such file or directory");

  const auto d = single_error(load_config(dir.path("")));
  CHECK_THAT(d.message, Contains("directory"));
}

// yaml-cpp 0.7's LoadAll never returns on these (it reports empty documents at the same place
// forever while its memory grows): tests/fuzz/config found the first; gatewayd --check-config
// was killed by the kernel after eating the machine's memory.
TEST_CASE("a stray flow character is a syntax error, not a parser that never returns",
          "[config][errors]") {
  ConfigDir dir;
  const auto lone = single_error(dir.load(","));
  CHECK(lone.line == 1);
  CHECK_THAT(lone.message, StartsWith("YAML syntax error") && Contains("column 1"));

  const auto after_comment = single_error(dir.load("# the demo building\n  ,"));
  CHECK(after_comment.line == 2);
  CHECK_THAT(after_comment.message, StartsWith("YAML syntax error") && Contains("column 3"));

  const auto second_doc = single_error(dir.load("gateway: {id: a}\n---\n,\n"));
  CHECK_THAT(second_doc.message, Contains("more than one YAML document"));
}

TEST_CASE("a YAML syntax error carries the parser's line", "[config][errors]") {
  ConfigDir dir;
  const auto e = single_error(dir.load("gateway:\n  id: gw-1\n\tsite: north\n"));
  CHECK(e.file == dir.path("gw.yaml"));
  CHECK(e.line == 3);
  CHECK_THAT(e.message, StartsWith("YAML syntax error") && Contains("tab"));

  const auto flow = single_error(dir.load("gateway:\n  id: [gw-1\nmqtt: {}\n"));
  CHECK(flow.line == 3);
  CHECK_THAT(flow.message, Contains("end of sequence flow not found"));
}

TEST_CASE("an unknown key is an error that suggests the closest valid key", "[config][errors]") {
  ConfigDir dir;
  const auto e = single_error(dir.load(kBase + R"(devices:
  - id: m1
    kind: energy_meter
    driver: modbus_tcp
    address: 10.0.0.1:502
    pol: 5s
    points: [{ name: p, address: 1, type: uint16 }]
)"));
  CHECK(e.line == 13);
  CHECK(e.key_path == "devices[0].pol");
  CHECK_THAT(e.message, StartsWith("unknown key 'pol' (did you mean 'poll'?); expected one of: "));
  CHECK_THAT(e.message, Contains("unit_id") && Contains("offline_after"));
  // Keys of other drivers are not offered to a modbus_tcp device.
  CHECK_THAT(e.message, !Contains("meter_address"));

  // Top level and nested maps alike; no suggestion when nothing is close.
  const auto top = single_error(dir.load(kBase + "zzzzzz: 1\n"));
  CHECK(top.line == 8);
  CHECK(top.key_path == "zzzzzz");
  CHECK_THAT(top.message, Contains("expected one of: gateway, mqtt,") && !Contains("did you mean"));
}

TEST_CASE("a missing required key names the parent path and its line", "[config][errors]") {
  ConfigDir dir;
  const auto e = single_error(dir.load(R"(mqtt:
  uri: tcp://127.0.0.1:1883
gateway:
  id: gw-1
  site: north
  building: lib
)"));
  CHECK(e.line == 3);
  CHECK(e.key_path == "gateway.data_dir");
  CHECK_THAT(e.message, Contains("required key 'data_dir' is missing from gateway (line 3)"));

  const auto dev = single_error(dir.load(kBase + R"(devices:
  - id: m1
    kind: energy_meter
    address: 10.0.0.1:502
)"));
  CHECK(dev.line == 9);
  CHECK(dev.key_path == "devices[0].driver");
  CHECK_THAT(dev.message, Contains("'driver' is missing from devices[0] (line 9)"));
}

TEST_CASE("a bad duration says how durations are written", "[config][errors]") {
  ConfigDir dir;
  const auto e = single_error(dir.load(kBase + R"(devices:
  - { id: m0, kind: sensor, driver: modbus_tcp, address: "h:502", points: [{ name: p, address: 1, type: int16 }] }
  - id: m1
    kind: energy_meter
    driver: modbus_tcp
    address: 10.0.0.1:502
    poll: 5
    points: [{ name: p, address: 1, type: uint16 }]
)"));
  CHECK(e.line == 14);
  CHECK(e.key_path == "devices[1].poll");
  CHECK(e.value == "5");
  CHECK(e.to_string() == dir.path("gw.yaml") +
                             ":14: devices[1].poll: not a duration (no unit); write it like "
                             "500ms, 5s, 2m, 1h or 7d (got '5')");

  const auto frac = single_error(dir.load(kBase + "  keepalive: 1.5s\n"));
  CHECK(frac.line == 8);
  CHECK(frac.key_path == "mqtt.keepalive");
  CHECK(frac.value == "1.5s");
  CHECK_THAT(frac.message, Contains("whole numbers only"));
}

TEST_CASE("telemetry_linger takes 0 to 1s", "[config][errors]") {
  ConfigDir dir;
  const auto zero = dir.load(kBase + "buffer:\n  telemetry_linger: 0ms\n");
  REQUIRE(zero.config);
  CHECK(zero.config->buffer.telemetry_linger == 0ms);
  const auto fifty = dir.load(kBase + "buffer:\n  telemetry_linger: 50ms\n");
  REQUIRE(fifty.config);
  CHECK(fifty.config->buffer.telemetry_linger == 50ms);
  const auto e = single_error(dir.load(kBase + "buffer:\n  telemetry_linger: 2s\n"));
  CHECK(e.key_path == "buffer.telemetry_linger");
  CHECK(e.value == "2s");
  CHECK_THAT(e.message, Contains("at most 1s"));
}

TEST_CASE("a bad size says how sizes are written", "[config][errors]") {
  ConfigDir dir;
  const auto e = single_error(dir.load(kBase + "buffer:\n  max_bytes: 512MB\n"));
  CHECK(e.line == 9);
  CHECK(e.key_path == "buffer.max_bytes");
  CHECK(e.value == "512MB");
  CHECK_THAT(e.message, Contains("unknown unit 'MB'") && Contains("KiB, MiB, GiB"));

  const auto small = single_error(dir.load(kBase + "buffer:\n  max_bytes: 64KiB\n"));
  CHECK(small.key_path == "buffer.max_bytes");
  CHECK_THAT(small.message, Contains("at least 1MiB"));
}

TEST_CASE("an integer out of range names the allowed range", "[config][errors]") {
  ConfigDir dir;
  const auto e = single_error(dir.load(kBase + R"(devices:
  - id: m1
    kind: energy_meter
    driver: modbus_tcp
    address: 10.0.0.1:502
    unit_id: 300
    points: [{ name: p, address: 1, type: uint16 }]
)"));
  CHECK(e.line == 13);
  CHECK(e.key_path == "devices[0].unit_id");
  CHECK(e.value == "300");
  CHECK_THAT(e.message, Contains("out of range") && Contains("0..255"));

  const auto huge = single_error(dir.load(kBase + "  max_inflight: 99999999999999999999999999\n"));
  CHECK(huge.key_path == "mqtt.max_inflight");
  CHECK(huge.value == "99999999999999999999999999");
  CHECK_THAT(huge.message, Contains("out of range") && Contains("1..65535"));

  const auto text = single_error(dir.load(kBase + "  max_inflight: lots\n"));
  CHECK_THAT(text.message, StartsWith("not a number"));

  const auto scale = single_error(dir.load(kBase + R"(devices:
  - id: m1
    kind: energy_meter
    driver: modbus_tcp
    address: 10.0.0.1:502
    points: [{ name: p, address: 1, type: uint16, scale: abc }]
)"));
  CHECK(scale.line == 13);
  CHECK(scale.key_path == "devices[0].points[0].scale");
  CHECK(scale.value == "abc");
  CHECK_THAT(scale.message, StartsWith("not a number"));
}

TEST_CASE("a bad enum value lists the valid ones and suggests one", "[config][errors]") {
  ConfigDir dir;
  const auto e = single_error(dir.load(kBase + R"(buses:
  - id: rs485-1
    port: /dev/ttyS1
    parity: evn
)"));
  CHECK(e.line == 11);
  CHECK(e.key_path == "buses[0].parity");
  CHECK(e.value == "evn");
  CHECK(e.message == "did you mean 'even'? must be one of: none, even, odd");

  const auto driver = single_error(dir.load(kBase + R"(devices:
  - { id: m1, kind: energy_meter, driver: bacnet }
)"));
  CHECK(driver.key_path == "devices[0].driver");
  CHECK(driver.value == "bacnet");
  CHECK_THAT(driver.message, Contains("modbus_tcp, modbus_rtu, dlt645, serial_line, tcp_line, "
                                      "camera_http"));
}

TEST_CASE("a gateway id that is not lowercase letters, digits and '-' is rejected",
          "[config][errors]") {
  ConfigDir dir;
  const auto e = single_error(dir.load(R"(gateway:
  id: Lib_GW
  site: north
  building: lib
  data_dir: data
mqtt:
  uri: tcp://127.0.0.1:1883
)"));
  CHECK(e.line == 2);
  CHECK(e.key_path == "gateway.id");
  CHECK(e.value == "Lib_GW");
  CHECK_THAT(e.message, Contains("lowercase letters, digits or '-'"));

  const auto site = single_error(dir.load(R"(gateway:
  id: gw-1
  site: north/east
  building: lib
  data_dir: data
mqtt:
  uri: tcp://127.0.0.1:1883
)"));
  CHECK(site.line == 3);
  CHECK(site.key_path == "gateway.site");
  CHECK_THAT(site.message, Contains("'/', '+' or '#'"));
}

TEST_CASE("a duplicate device id points at the first one", "[config][errors]") {
  ConfigDir dir;
  const auto e = single_error(dir.load(kBase + R"(devices:
  - id: gate-1
    kind: card_reader
    driver: tcp_line
    address: 10.0.0.5:4001
  - id: gate-1
    kind: card_reader
    driver: tcp_line
    address: 10.0.0.6:4001
)"));
  CHECK(e.line == 13);
  CHECK(e.key_path == "devices[1].id");
  CHECK(e.value == "gate-1");
  CHECK_THAT(e.message, Contains("duplicate device id; first defined at line 9"));
}

TEST_CASE("a device naming an unknown bus lists the buses", "[config][errors]") {
  ConfigDir dir;
  const auto e = single_error(dir.load(kBase + R"(buses:
  - { id: rs485-1, port: /dev/ttyS1 }
  - { id: rs485-2, port: /dev/ttyS2 }
devices:
  - id: m1
    kind: energy_meter
    driver: modbus_rtu
    bus: rs485-3
    points: [{ name: p, address: 1, type: uint16 }]
)"));
  CHECK(e.line == 15);
  CHECK(e.key_path == "devices[0].bus");
  CHECK(e.value == "rs485-3");
  CHECK_THAT(e.message, Contains("unknown bus") && Contains("buses defined: rs485-1, rs485-2"));
}

TEST_CASE("an ssl:// uri without tls is rejected", "[config][errors]") {
  ConfigDir dir;
  const auto e =
      single_error(dir.load(R"(gateway: { id: gw-1, site: north, building: lib, data_dir: data }
mqtt:
  client_id: x
  uri: ssl://broker:8883
)"));
  CHECK(e.line == 4);
  CHECK(e.key_path == "mqtt.tls");
  CHECK(e.value == "ssl://broker:8883");
  CHECK_THAT(e.message, Contains("ssl://") && Contains("no tls section"));

  // And the other way round: tls with tcp:// would silently go unencrypted.
  dir.write("ca.pem", "ca");
  const auto plain = single_error(dir.load(kBase + "  tls: { ca_file: ca.pem }\n"));
  CHECK(plain.line == 8);
  CHECK(plain.key_path == "mqtt.tls");
  CHECK_THAT(plain.message, Contains("use ssl://"));
}

TEST_CASE("a client certificate without its key is rejected", "[config][errors]") {
  ConfigDir dir;
  dir.write("ca.pem", "ca");
  dir.write("client.pem", "cert");
  const auto e =
      single_error(dir.load(R"(gateway: { id: gw-1, site: north, building: lib, data_dir: data }
mqtt:
  uri: ssl://broker:8883
  tls:
    ca_file: ca.pem
    cert_file: client.pem
)"));
  CHECK(e.line == 6);
  CHECK(e.key_path == "mqtt.tls.key_file");
  CHECK_THAT(e.message, Contains("cert_file is set but key_file is not"));
}

TEST_CASE("a client key readable by group or others is refused, naming the file", "[config][errors]") {
  ConfigDir dir;
  dir.write("ca.pem", "ca");
  dir.write("client.pem", "cert");
  const std::string key = dir.write("client.key", "key");
  const std::string yaml = R"(gateway: { id: gw-1, site: north, building: lib, data_dir: data }
mqtt:
  uri: ssl://broker:8883
  tls:
    ca_file: ca.pem
    cert_file: client.pem
    key_file: client.key
)";
  fs::permissions(key, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                           fs::perms::others_read);
  const auto e = single_error(dir.load(yaml));
  CHECK(e.line == 7);
  CHECK(e.key_path == "mqtt.tls.key_file");
  CHECK_THAT(e.message, Contains(key) && Contains("mode 0644") && Contains("chmod 600"));

  fs::permissions(key, fs::perms::owner_read | fs::perms::group_read);  // 0440: still exposed
  CHECK(single_error(dir.load(yaml)).key_path == "mqtt.tls.key_file");

  fs::permissions(key, fs::perms::owner_read | fs::perms::owner_write);  // 0600
  CHECK(loaded(dir.load(yaml)).mqtt.tls->key_file == key);
}

TEST_CASE("a password_file that does not exist names the resolved path", "[config][errors]") {
  ConfigDir dir;
  const auto e = single_error(dir.load(kBase + "  password_file: secrets/mqtt.pass\n"));
  CHECK(e.line == 8);
  CHECK(e.key_path == "mqtt.password_file");
  CHECK(e.value == "secrets/mqtt.pass");
  CHECK(e.message ==
        "cannot read " + dir.path("secrets/mqtt.pass") + ": No such file or directory");

  // A directory is not a password file either.
  fs::create_directories(dir.path("secrets/mqtt.pass"));
  const auto d = single_error(dir.load(kBase + "  password_file: secrets/mqtt.pass\n"));
  CHECK_THAT(d.message, Contains("directory"));
}

TEST_CASE("a point whose type does not fit its table is rejected", "[config][errors]") {
  ConfigDir dir;
  const auto e = single_error(dir.load(kBase + R"(devices:
  - id: m1
    kind: sensor
    driver: modbus_tcp
    address: 10.0.0.1:502
    points:
      - name: door_open
        table: coil
        address: 3
        type: float32
)"));
  CHECK(e.line == 17);
  CHECK(e.key_path == "devices[0].points[0].type");
  CHECK(e.value == "float32");
  CHECK_THAT(e.message, Contains("coil point must have type bool"));
}

TEST_CASE("a point running past register 65535 names the address", "[config][errors]") {
  ConfigDir dir;
  const auto e = single_error(dir.load(kBase + R"(devices:
  - id: m1
    kind: energy_meter
    driver: modbus_tcp
    address: 10.0.0.1:502
    points:
      - { name: ok, address: 65534, type: uint32 }
      - { name: bad, address: 65535, type: uint32 }
)"));
  CHECK(e.line == 15);
  CHECK(e.key_path == "devices[0].points[1].address");
  CHECK(e.value == "65535");
  CHECK_THAT(e.message, Contains("address 65535 with type uint32 runs past the last register"));

  const auto big = single_error(dir.load(kBase + R"(devices:
  - { id: m1, kind: sensor, driver: modbus_tcp, address: "h:1", points: [{ name: p, address: 65536, type: bool }] }
)"));
  CHECK(big.key_path == "devices[0].points[0].address");
  CHECK_THAT(big.message, Contains("0..65535"));
}

TEST_CASE("access and alarm events may not be drop_oldest", "[config][errors]") {
  ConfigDir dir;
  const auto e = single_error(dir.load(kBase + R"(buffer:
  classes:
    telemetry: { max_age: 7d, when_full: drop_oldest }
    access: { max_age: 90d, when_full: drop_oldest }
)"));
  CHECK(e.line == 11);
  CHECK(e.key_path == "buffer.classes.access.when_full");
  CHECK(e.value == "drop_oldest");
  CHECK_THAT(e.message, Contains("never evicted") && Contains("reject_new"));
}

TEST_CASE("an error inside a profile names the profile file and its own line", "[config][errors]") {
  ConfigDir dir;
  const std::string profile = dir.write("profiles/pm5300.yaml", R"(model: Schneider PM5300
manual: https://example.invalid/pm5300.pdf
points:
  - { name: energy_total, address: 2700, type: float32 }
  - name: phase_count
    table: discrete
    address: 12
    type: uint16
)");
  const auto e = single_error(dir.load(kBase + R"(devices:
  - { id: m1, kind: energy_meter, driver: modbus_tcp, address: "10.0.0.1:502", profile: profiles/pm5300.yaml }
  - { id: m2, kind: energy_meter, driver: modbus_tcp, address: "10.0.0.2:502", profile: profiles/pm5300.yaml }
)"));
  // Reported once although two devices share the profile.
  CHECK(e.file == profile);
  CHECK(e.line == 8);
  CHECK(e.key_path == "points[1].type");
  CHECK(e.value == "uint16");
  CHECK_THAT(e.message, Contains("discrete point must have type bool"));
  CHECK_THAT(e.to_string(), StartsWith(profile + ":8: points[1].type: "));

  // A missing profile is an error on the device's own line.
  const auto missing = single_error(dir.load(kBase + R"(devices:
  - { id: m1, kind: energy_meter, driver: modbus_tcp, address: "h:502", profile: nope.yaml }
)"));
  CHECK(missing.file == dir.path("gw.yaml"));
  CHECK(missing.line == 9);
  CHECK(missing.key_path == "devices[0].profile");
  CHECK_THAT(missing.message, Contains(dir.path("nope.yaml")) && Contains("No such file"));

  // A syntax error inside the profile, too.
  const std::string broken =
      dir.write("broken.yaml", "points:\n  - { name: p, address: 1 }\n  - name: q\n\taddress: 2\n");
  const auto syntax = single_error(dir.load(kBase + R"(devices:
  - { id: m1, kind: energy_meter, driver: modbus_tcp, address: "h:502", profile: broken.yaml }
)"));
  CHECK(syntax.file == broken);
  CHECK(syntax.line == 4);
  CHECK_THAT(syntax.message, StartsWith("YAML syntax error"));
}

TEST_CASE("a list where a map is expected is a clean error", "[config][errors]") {
  ConfigDir dir;
  const auto e = single_error(dir.load(R"(gateway:
  - id: gw-1
  - site: north
mqtt:
  uri: tcp://127.0.0.1:1883
)"));
  CHECK(e.line == 2);
  CHECK(e.key_path == "gateway");
  CHECK(e.message == "expected a map of `key: value` entries, got a list");

  const auto scalar = single_error(dir.load(kBase + "  backoff: [1s, 2s]\n"));
  CHECK(scalar.key_path == "mqtt.backoff");
  CHECK_THAT(scalar.message, Contains("got a list"));

  const auto list = single_error(dir.load(kBase + "devices: { id: m1 }\n"));
  CHECK(list.key_path == "devices");
  CHECK_THAT(list.message, Contains("expected a list") && Contains("got a map"));

  const auto value = single_error(dir.load(kBase + "  username: [a, b]\n"));
  CHECK(value.key_path == "mqtt.username");
  CHECK(value.message == "expected a single value, got a list");
}

// --- more of what the loader catches ---------------------------------------------------------

TEST_CASE("a key that belongs to another driver says which drivers take it", "[config]") {
  ConfigDir dir;
  const auto e = single_error(dir.load(kBase + R"(buses: [{ id: b1, port: /dev/ttyS1 }]
devices:
  - id: m1
    kind: energy_meter
    driver: modbus_rtu
    bus: b1
    address: 10.0.0.1:502
    points: [{ name: p, address: 1, type: uint16 }]
)"));
  CHECK(e.line == 14);
  CHECK(e.key_path == "devices[0].address");
  CHECK(e.message ==
        "'address' does not apply to driver modbus_rtu (it is for modbus_tcp, "
        "tcp_line, camera_http, modbus_gate, uhppote)");

  const auto baud = single_error(dir.load(kBase + R"(buses: [{ id: b1, port: /dev/ttyS1 }]
devices:
  - { id: m1, kind: sensor, driver: modbus_rtu, bus: b1, baud: 19200, points: [{ name: p, address: 1, type: uint16 }] }
)"));
  CHECK(baud.line == 10);
  CHECK(baud.key_path == "devices[0].baud");
  CHECK_THAT(baud.message, Contains("belongs to the bus"));
}

TEST_CASE("dlt645 devices: meter address, DIs and no Modbus point keys", "[config]") {
  ConfigDir dir;
  const auto result = dir.load(kBase + R"(buses: [{ id: b1, port: /dev/ttyS1, baud: 2400 }]
devices:
  - id: dl1
    kind: energy_meter
    driver: dlt645
    bus: b1
    meter_address: "12345678901"
    points:
      - { name: e, di: "0001000", unit: kWh }
      - { name: v, di: "02010100", type: uint16, decimals: 9 }
)");
  INFO(dump(result));
  REQUIRE(result.errors.size() == 4);
  CHECK(result.errors[0].key_path == "devices[0].meter_address");
  CHECK(result.errors[0].line == 14);
  CHECK_THAT(result.errors[0].message, Contains("exactly 12 decimal digits"));
  CHECK(result.errors[1].key_path == "devices[0].points[0].di");
  CHECK(result.errors[1].value == "0001000");
  CHECK(result.errors[2].key_path == "devices[0].points[1].type");
  CHECK_THAT(result.errors[2].message, Contains("does not apply to dlt645 points"));
  CHECK(result.errors[3].key_path == "devices[0].points[1].decimals");
  CHECK_THAT(result.errors[3].message, Contains("0..8"));
}

TEST_CASE("serial_line takes bus: or port: with its own line settings", "[config]") {
  ConfigDir dir;
  const auto ok = dir.load(kBase + R"(devices:
  - id: r1
    kind: card_reader
    driver: serial_line
    port: /dev/ttyUSB0
    baud: 19200
    parity: odd
    framing: { type: fixed, length: 8 }
    card_format: wiegand26
)");
  const auto& cfg = loaded(ok);
  REQUIRE(cfg.devices.size() == 1);
  const auto& d = cfg.devices[0];
  CHECK(d.serial_port == "/dev/ttyUSB0");
  REQUIRE(d.line_settings.has_value());
  CHECK(d.line_settings->id == "r1");
  CHECK(d.line_settings->port == "/dev/ttyUSB0");
  CHECK(d.line_settings->baud == 19200);
  CHECK(d.line_settings->parity == 'O');
  REQUIRE(d.framing.has_value());
  CHECK(d.framing->type == gw::config::FramingSection::Type::kFixed);
  CHECK(d.framing->length == 8);
  CHECK(d.card_format == "wiegand26");

  const auto both = single_error(dir.load(kBase + R"(buses: [{ id: b1, port: /dev/ttyS1 }]
devices:
  - { id: r1, kind: card_reader, driver: serial_line, bus: b1, port: /dev/ttyS2 }
)"));
  CHECK(both.key_path == "devices[0].port");
  CHECK(both.line == 10);
  CHECK_THAT(both.message, Contains("not both"));

  const auto neither = single_error(dir.load(kBase + R"(devices:
  - { id: r1, kind: card_reader, driver: serial_line }
)"));
  CHECK(neither.line == 9);
  CHECK_THAT(neither.message, Contains("port:") && Contains("bus:"));

  const auto taken = single_error(dir.load(kBase + R"(buses: [{ id: b1, port: /dev/ttyS1 }]
devices:
  - { id: r1, kind: card_reader, driver: serial_line, port: /dev/ttyS1 }
)"));
  CHECK(taken.key_path == "devices[0].port");
  CHECK_THAT(taken.message, Contains("already used by bus 'b1'"));
}

TEST_CASE("timeout must be shorter than poll", "[config]") {
  ConfigDir dir;
  const auto e = single_error(dir.load(kBase + R"(devices:
  - id: m1
    kind: energy_meter
    driver: modbus_tcp
    address: 10.0.0.1:502
    poll: 2s
    timeout: 2s
    points: [{ name: p, address: 1, type: uint16 }]
)"));
  CHECK(e.line == 14);
  CHECK(e.key_path == "devices[0].timeout");
  CHECK(e.value == "2s");
  CHECK(e.message == "timeout (2s) must be shorter than poll (2s)");

  // Without an explicit timeout, a poll at or below the 1s default gets half the period.
  const auto fast = dir.load(kBase + R"(devices:
  - { id: m1, kind: sensor, driver: modbus_tcp, address: "h:1", poll: 1s, points: [{ name: p, address: 1, type: bool }] }
  - { id: m2, kind: sensor, driver: modbus_tcp, address: "h:2", poll: 200ms, timeout: 150ms, points: [{ name: p, address: 1, type: bool }] }
)");
  const auto& cfg = loaded(fast);
  CHECK(cfg.devices[0].timeout == 500ms);
  CHECK(cfg.devices[1].poll == 200ms);
  CHECK(cfg.devices[1].timeout == 150ms);
}

TEST_CASE("alarm rules: one condition each, known devices and points", "[config]") {
  ConfigDir dir;
  const auto result = dir.load(kBase + R"(devices:
  - { id: m1, kind: energy_meter, driver: modbus_tcp, address: "h:502", points: [{ name: voltage, address: 1, type: uint16 }] }
alarms:
  - { name: a1, devices: [m2], point: voltage, high: 250 }
  - { name: a2, kind: energy_meter, stale: 5m, held_open: 30s }
  - { name: a3, kind: energy_meter, severity: urgent, stale: 5m }
  - { name: a4, devices: [m1], point: voltge, high: 250 }
  - { name: a4, kind: camera, active_for: { type: tamper } }
  - { name: a6, kind: energy_meter }
)");
  INFO(dump(result));
  REQUIRE(result.errors.size() == 7);
  const auto& e = result.errors;
  CHECK(e[0].line == 11);
  CHECK(e[0].key_path == "alarms[0].devices[0]");
  CHECK_THAT(e[0].message, Contains("unknown device") && Contains("did you mean 'm1'"));
  CHECK(e[1].key_path == "alarms[1].held_open");
  CHECK_THAT(e[1].message, Contains("more than one condition (stale and held_open)"));
  CHECK(e[2].key_path == "alarms[2].severity");
  CHECK(e[2].value == "urgent");
  CHECK(e[3].key_path == "alarms[3].point");
  CHECK_THAT(e[3].message, Contains("device 'm1' has no such point; did you mean 'voltage'?"));
  CHECK(e[4].line == 15);
  CHECK(e[4].key_path == "alarms[4].active_for.duration");
  CHECK(e[5].key_path == "alarms[4].name");
  CHECK_THAT(e[5].message, Contains("duplicate alarm name; first at line 14"));
  CHECK(e[6].key_path == "alarms[5]");
  CHECK_THAT(e[6].message, Contains("no condition"));
}

TEST_CASE("card_id hmac needs a readable, non-empty key_file", "[config]") {
  ConfigDir dir;
  const auto missing = single_error(dir.load(kBase + "privacy:\n  card_id: hmac\n"));
  CHECK(missing.line == 8);
  CHECK(missing.key_path == "privacy.key_file");
  CHECK_THAT(missing.message, Contains("card_id: hmac needs the key"));

  dir.write("empty.key", "\n");
  const auto empty =
      single_error(dir.load(kBase + "privacy:\n  card_id: hmac\n  key_file: empty.key\n"));
  CHECK(empty.line == 10);
  CHECK_THAT(empty.message, Contains("is empty"));
}

TEST_CASE("every problem is reported, in file order", "[config]") {
  ConfigDir dir;
  const auto result = dir.load(R"(gateway:
  id: GW
  site: north
  building: lib
  data_dir: data
mqtt:
  uri: mqtt://broker:1883
  keepalive: 0s
devices:
  - { id: m1, kind: meter, driver: modbus_tcp, address: "h:70000", points: [{ name: p, address: 1, type: uint16 }] }
buffer:
  max_bytes: lots
  max_bytes: 2GiB
)");
  INFO(dump(result));
  REQUIRE(result.errors.size() == 7);
  std::vector<int> lines;
  for (const auto& e : result.errors) lines.push_back(e.line);
  CHECK(lines == std::vector<int>{2, 7, 8, 10, 10, 12, 13});
  CHECK_THAT(result.errors[1].message, Contains("write tcp:// instead of mqtt://"));
  CHECK_THAT(result.errors[2].message, Contains("greater than zero"));
  CHECK(result.errors[3].key_path == "devices[0].kind");
  CHECK(result.errors[4].key_path == "devices[0].address");
  CHECK_THAT(result.errors[4].message, Contains("port 70000 is out of range"));
  CHECK(result.errors[6].key_path == "buffer.max_bytes");
  CHECK_THAT(result.errors[6].message, Contains("duplicate key 'max_bytes' (first at line 12)"));
}

TEST_CASE("hostile input gives errors, never an exception", "[config]") {
  ConfigDir dir;
  const std::vector<std::string> inputs = {
      "",
      "---\n",
      "42\n",
      "? [a, b]\n: c\n",
      "gateway: *nope\n",
      std::string(20000, '[') + std::string(20000, ']'),
      "gateway: &g { id: *g }\n",
      std::string("gateway:\0\x01\xff\n  id: x", 17),
      kBase + "devices: [1, [2], {a: b}, ~, {id: [x]}]\n",
      kBase + "devices:\n  - { id: m1, kind: sensor, driver: modbus_tcp, address: \"[::1\" }\n",
      kBase +
          "devices:\n  - { id: m1, kind: sensor, driver: modbus_tcp, address: \"h:1\", "
          "points: [{ name: p, address: -1, type: uint16, scale: 1e999 }] }\n",
      kBase + "alarms: [{ name: a, kind: camera, active_for: [1], rate: x, denied: ~ }]\n",
      kBase + "buffer: { classes: { access: 1, bogus: {} } }\n",
      kBase + "  keepalive: 99999999999999999999999d\n",
  };
  for (const std::string& text : inputs) {
    INFO(text.substr(0, 80));
    LoadResult r;
    REQUIRE_NOTHROW(r = dir.load(text));
    CHECK_FALSE(r.config.has_value());
    CHECK_FALSE(r.errors.empty());
  }
}

TEST_CASE("to_string() is FILE:LINE: KEY_PATH: MESSAGE (got 'VALUE')", "[config]") {
  CHECK(ConfigError{"gw.yaml", 14, "devices[1].poll", "5", "not a duration"}.to_string() ==
        "gw.yaml:14: devices[1].poll: not a duration (got '5')");
  CHECK(ConfigError{"gw.yaml", 3, "mqtt.tls", "", "missing"}.to_string() ==
        "gw.yaml:3: mqtt.tls: missing");
  CHECK(ConfigError{"gw.yaml", 0, "", "", "cannot read"}.to_string() == "gw.yaml: cannot read");
  // One error is one log line, whatever the value holds.
  CHECK(ConfigError{"f", 1, "k", "a\nb\x01", "m"}.to_string() == "f:1: k: m (got 'a\\nb\\x01')");
}

// --- the shared parsers ------------------------------------------------------------------------

TEST_CASE("parse_duration accepts a positive integer with a unit, nothing else", "[config]") {
  using gw::config::parse_duration;
  CHECK(parse_duration("500ms") == Duration(500));
  CHECK(parse_duration("5s") == Duration(5'000));
  CHECK(parse_duration("2m") == Duration(120'000));
  CHECK(parse_duration("1h") == Duration(3'600'000));
  CHECK(parse_duration("7d") == Duration(604'800'000));
  CHECK(parse_duration("180d") == std::chrono::days(180));
  CHECK(parse_duration("36500d") == std::chrono::days(36500));
  for (const char* bad : {"",
                          "5",
                          "-1s",
                          "1.5s",
                          "0s",
                          "0ms",
                          "s",
                          "5 s",
                          " 5s",
                          "5S",
                          "5sec",
                          "5min",
                          "1w",
                          "+5s",
                          "0x10s",
                          "1e3ms",
                          "36501d",
                          "9223372036854775807ms",
                          "99999999999999999999999s",
                          "5s5"}) {
    INFO(bad);
    CHECK_FALSE(parse_duration(bad).has_value());
  }
}

TEST_CASE("parse_size accepts bytes or binary units, nothing else", "[config]") {
  using gw::config::parse_size;
  CHECK(parse_size("100") == 100u);
  CHECK(parse_size("0") == 0u);
  CHECK(parse_size("100B") == 100u);
  CHECK(parse_size("64KiB") == 65'536u);
  CHECK(parse_size("512MiB") == 512ull << 20);
  CHECK(parse_size("1GiB") == 1ull << 30);
  CHECK(parse_size("2TiB") == 2ull << 40);
  CHECK(parse_size("18446744073709551615") == UINT64_MAX);
  for (const char* bad : {"", "-1", "1.5MiB", "64KB", "64kb", "64K", "512M", "1GB", "MiB", "64 KiB",
                          "64kib", "18446744073709551616", "16777216TiB", "0x10"}) {
    INFO(bad);
    CHECK_FALSE(parse_size(bad).has_value());
  }
}

}  // namespace

TEST_CASE("register addresses may be written in hex, as meter manuals print them") {
  ConfigDir dir;
  const std::string path = dir.write("hex.yaml", R"(gateway: { id: gw-1, site: s, building: b, data_dir: d }
mqtt: { uri: "tcp://127.0.0.1:1883" }
devices:
  - id: m1
    kind: energy_meter
    driver: modbus_tcp
    address: 127.0.0.1:502
    points:
      - { name: a, address: 0x5000, type: uint64 }
      - { name: b, address: 0xZZ, type: uint16 }
)");
  gw::config::LoadResult r = gw::config::load_config(path);
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].key_path == "devices[0].points[1].address");
  CHECK(r.errors[0].value == "0xZZ");
}

TEST_CASE("card readers: idle_timeout, and card formats their framing can carry", "[config]") {
  ConfigDir dir;
  const auto ok = dir.load(kBase + R"(devices:
  - { id: r1, kind: card_reader, driver: tcp_line, address: 127.0.0.1:4001, idle_timeout: 90s }
  - { id: r2, kind: card_reader, driver: tcp_line, address: 127.0.0.1:4002, idle_timeout: 0s }
  - { id: r3, kind: card_reader, driver: tcp_line, address: 127.0.0.1:4003 }
)");
  const auto& cfg = loaded(ok);
  CHECK(cfg.devices[0].idle_timeout == std::chrono::seconds(90));
  CHECK(cfg.devices[1].idle_timeout.count() == 0);
  CHECK(cfg.devices[2].idle_timeout == std::chrono::minutes(5));

  const auto serial = single_error(dir.load(kBase + R"(devices:
  - { id: r1, kind: card_reader, driver: serial_line, port: /dev/ttyUSB0, idle_timeout: 1m }
)"));
  CHECK(serial.key_path == "devices[0].idle_timeout");

  const auto stx = single_error(dir.load(kBase + R"(devices:
  - id: r1
    kind: card_reader
    driver: serial_line
    port: /dev/ttyUSB0
    framing: { type: stx_etx }
    card_format: wiegand26
)"));
  CHECK(stx.key_path == "devices[0].card_format");
  CHECK(stx.line == 14);
  CHECK(stx.value == "wiegand26");
  CHECK_THAT(stx.message, Contains("no Wiegand parity bits"));

  const auto shortframe = single_error(dir.load(kBase + R"(devices:
  - id: r1
    kind: card_reader
    driver: tcp_line
    address: 127.0.0.1:4001
    framing: { type: fixed, length: 4 }
    card_format: wiegand34
)"));
  CHECK(shortframe.key_path == "devices[0].card_format");
  CHECK_THAT(shortframe.message, Contains("at least 5 bytes"));
}

TEST_CASE("alarm rules: offline, rate limits, grant_window, and errors that name the rule",
          "[config]") {
  ConfigDir dir;
  const std::string devices = R"(devices:
  - { id: m1, kind: energy_meter, driver: modbus_tcp, address: "h:502", points: [{ name: voltage, address: 1, type: uint16 }, { name: energy_total, address: 2, type: uint32, report: { on_change: true } }] }
  - { id: r1, kind: card_reader, driver: tcp_line, address: "h:4001", door: north-1 }
)";
  const auto good = dir.load(kBase + devices + R"(alarms:
  - { name: meter-offline, devices: [m1], offline: 2m, severity: minor }
  - { name: meter-backwards, kind: energy_meter, point: energy_total, rate: { min_delta: 0, window: 1h } }
  - { name: energy-jump, devices: [m1], point: energy_total, rate: { max_delta: 50, min_delta: -1, window: 15m }, for: 1m }
  - { name: door-forced, kind: access_gate, forced: true, grant_window: 15s }
  - { name: door-forced-default, kind: access_gate, forced: true }
  - { name: voltage-stale, kind: energy_meter, point: voltage, stale: 5m }
)");
  const auto& cfg = loaded(good);
  REQUIRE(cfg.alarms.size() == 6);
  CHECK(cfg.alarms[0].offline == std::optional<Duration>(2min));
  CHECK(cfg.alarms[1].rate_min_delta == std::optional<double>(0));
  CHECK_FALSE(cfg.alarms[1].rate_max_delta);
  CHECK(cfg.alarms[2].rate_max_delta == std::optional<double>(50));
  CHECK(cfg.alarms[2].rate_min_delta == std::optional<double>(-1));
  CHECK(cfg.alarms[2].hold_for == 1min);
  CHECK(cfg.alarms[3].grant_window == 15s);
  CHECK(cfg.alarms[4].grant_window == 10s);

  const auto bad = dir.load(kBase + devices + R"(alarms:
  - { name: r-offline, devices: [r1], offline: 1m, point: voltage }
  - { name: no-limit, devices: [m1], point: energy_total, rate: { window: 1h } }
  - { name: upside-down, devices: [m1], point: energy_total, rate: { max_delta: 5, min_delta: 5, window: 1h } }
  - { name: grant, devices: [m1], point: voltage, high: 250, grant_window: 5s }
  - { name: cam-on-meter, kind: energy_meter, active_for: { type: tamper, duration: 5s } }
  - { name: denied-meter, devices: [m1], denied: { count: 3, window: 1m } }
  - { name: held-reader, devices: [r1], held_open: 30s }
  - { name: steady-is-stale, devices: [m1], point: energy_total, stale: 5m }
  - { name: quiet-reader, devices: [r1], stale: 5m }
  - { name: typo, kind: energy_meter, point: voltag, high: 250 }
)");
  INFO(dump(bad));
  REQUIRE(bad.errors.size() == 10);
  const auto& e = bad.errors;
  // Every message says which rule it is about: alarms[7] alone is hard to find in a long file.
  CHECK(e[0].key_path == "alarms[0].point");
  CHECK_THAT(e[0].message, StartsWith("alarm rule 'r-offline': point does not apply"));
  CHECK(e[1].key_path == "alarms[1].rate.max_delta");
  CHECK_THAT(e[1].message, StartsWith("alarm rule 'no-limit': ") && Contains("min_delta"));
  CHECK(e[2].key_path == "alarms[2].rate.min_delta");
  CHECK_THAT(e[2].message, Contains("must be below max_delta (5)"));
  CHECK(e[3].key_path == "alarms[3].grant_window");
  CHECK_THAT(e[3].message, Contains("only to forced rules"));
  CHECK(e[4].key_path == "alarms[4].kind");
  CHECK_THAT(e[4].message,
             Contains("'cam-on-meter'") && Contains("active_for watches camera events"));
  CHECK(e[5].key_path == "alarms[5].devices[0]");
  CHECK_THAT(e[5].message, Contains("device 'm1' (energy_meter): denied watches DENIED"));
  CHECK(e[6].key_path == "alarms[6].devices[0]");
  CHECK_THAT(e[6].message, Contains("held_open watches a door_open reading"));
  CHECK(e[7].key_path == "alarms[7].devices[0]");
  CHECK_THAT(e[7].message, Contains("reports point 'energy_total' only on change") &&
                               Contains("report.max_interval below 5m"));
  CHECK(e[8].key_path == "alarms[8].devices[0]");
  CHECK_THAT(e[8].message, Contains("use offline: instead"));
  CHECK(e[9].key_path == "alarms[9].point");
  CHECK_THAT(e[9].message, StartsWith("alarm rule 'typo': no energy_meter device has a point"));
  CHECK_THAT(e[9].to_string(), Contains("gw.yaml:21: alarms[9].point: alarm rule 'typo'"));
}

TEST_CASE("gate controllers: register layout, serial number and listener", "[config]") {
  ConfigDir dir;
  const auto ok = dir.load(kBase + R"(devices:
  - id: g1
    kind: access_gate
    driver: modbus_gate
    address: 127.0.0.1:5020
    unit_id: 3
    poll: 500ms
    registers: { status: 0x10, log: 200 }
    log_size: 100
    door: north-gate-1
  - id: g2
    kind: access_gate
    driver: uhppote
    address: 10.0.3.60:60000
    serial_number: 405419896
    listen: 0.0.0.0:60001
  - { id: g3, kind: access_gate, driver: modbus_gate, address: 127.0.0.1:502 }
)");
  const auto& cfg = loaded(ok);
  REQUIRE(cfg.devices.size() == 3);
  const auto& m = cfg.devices[0];
  CHECK(m.unit_id == 3);
  CHECK(m.status_base == 16);
  CHECK(m.log_base == 200);
  CHECK(m.log_size == 100);
  CHECK(m.port == 5020);
  const auto& u = cfg.devices[1];
  CHECK(u.serial_number == 405419896u);
  CHECK(u.listen_host == "0.0.0.0");
  CHECK(u.listen_port == 60001);
  CHECK(u.port == 60000);
  const auto& defaults = cfg.devices[2];  // the layout of drivers/gate/modbus_gate_source.h
  CHECK(defaults.status_base == 0);
  CHECK(defaults.log_base == 100);
  CHECK(defaults.log_size == 64);

  const auto bad = dir.load(kBase + R"(devices:
  - id: g1
    kind: access_gate
    driver: modbus_gate
    address: 127.0.0.1:502
    registers: { status: 0, log: 65000, stats: 3 }
    log_size: 100
  - { id: g2, kind: access_gate, driver: modbus_gate, address: h:1, registers: { status: 100 } }
  - { id: g3, kind: access_gate, driver: modbus_gate, address: h:1, log_size: 0 }
  - { id: g4, kind: access_gate, driver: uhppote, address: h:60000 }
  - { id: g5, kind: access_gate, driver: uhppote, address: h:1, serial_number: 4294967296 }
  - { id: g6, kind: access_gate, driver: uhppote, address: h:1, serial_number: 1, listen: gw.local:60001 }
  - { id: g7, kind: access_gate, driver: uhppote, address: h:1, serial_number: 1, registers: { log: 1 } }
)");
  INFO(dump(bad));
  REQUIRE(bad.errors.size() == 8);
  const auto& e = bad.errors;
  CHECK(e[0].key_path == "devices[0].registers.stats");
  CHECK(e[1].key_path == "devices[0].registers.log");
  CHECK(e[1].line == 13);
  CHECK_THAT(e[1].message, Contains("runs past register 65535"));
  CHECK(e[2].key_path == "devices[1].registers");
  CHECK_THAT(e[2].message, Contains("status block (100..107) overlaps the log window (100..611)"));
  CHECK(e[3].key_path == "devices[2].log_size");
  CHECK_THAT(e[3].message, Contains("1..8000"));
  CHECK(e[4].key_path == "devices[3].serial_number");
  CHECK_THAT(e[4].message, Contains("serial number"));
  CHECK(e[5].key_path == "devices[4].serial_number");
  CHECK(e[5].value == "4294967296");
  CHECK(e[6].key_path == "devices[5].listen");
  CHECK_THAT(e[6].message, Contains("IP address"));
  CHECK(e[7].key_path == "devices[6].registers");
  CHECK_THAT(e[7].message, Contains("does not apply to driver uhppote") && Contains("modbus_gate"));
}

TEST_CASE("cameras: push and stream modes, their keys, defaults and mistakes", "[config]") {
  ConfigDir dir;
  dir.write("cam.pass", "s3cret\n");
  const auto ok = dir.load(kBase + R"(devices:
  - id: cam-gate
    kind: camera
    driver: camera_http
    mode: stream
    vendor: hikvision
    address: 10.0.3.30:80
    username: gateway
    password_file: cam.pass
    heartbeat: 10s
  - id: cam-lobby
    kind: camera
    driver: camera_http
    mode: stream
    vendor: dahua
    address: 10.0.3.31:80
    username: admin
    password_file: cam.pass
    auth: basic
    heartbeat: 5s
    heartbeat_timeout: 12s
    inactive_after: 0s
    path: /cgi-bin/eventManager.cgi?action=attach&codes=[VideoMotion]
  - id: cam-park
    kind: camera
    driver: camera_http
    mode: push
    listen: 0.0.0.0:8090
    path: /alarm
    allow_from: [10.0.3.32]
    max_body: 8MiB
    max_connections: 4
    heartbeat_timeout: 5m
    timeout: 20s
)");
  const auto& cfg = loaded(ok);
  REQUIRE(cfg.devices.size() == 3);
  const auto& hik = cfg.devices[0];
  REQUIRE(hik.camera);
  CHECK(hik.camera->mode == "stream");
  CHECK(hik.host == "10.0.3.30");
  CHECK(hik.port == 80);
  CHECK(hik.camera->username == "gateway");
  CHECK(hik.camera->password_file == dir.path("cam.pass"));
  CHECK(hik.camera->auth == "digest");
  CHECK(hik.camera->heartbeat == 10s);
  CHECK_FALSE(hik.camera->heartbeat_timeout);  // the registry makes it 3 x heartbeat
  CHECK_FALSE(hik.camera->inactive_after);     // ... and 5s for hikvision
  CHECK(hik.timeout == 10s);                   // cameras are not polled: their own default
  const auto& dahua = cfg.devices[1];
  CHECK(dahua.camera->vendor == "dahua");
  CHECK(dahua.camera->auth == "basic");
  CHECK(dahua.camera->heartbeat_timeout == 12s);
  CHECK(dahua.camera->inactive_after == 0s);
  CHECK(dahua.camera->path == "/cgi-bin/eventManager.cgi?action=attach&codes=[VideoMotion]");
  const auto& push = cfg.devices[2];
  CHECK(push.camera->mode == "push");
  CHECK(push.listen_host == "0.0.0.0");
  CHECK(push.listen_port == 8090);
  CHECK(push.camera->path == "/alarm");
  CHECK(push.camera->allow_from == std::vector<std::string>{"10.0.3.32"});
  CHECK(push.camera->max_body == 8u << 20);
  CHECK(push.camera->max_connections == 4);
  CHECK(push.camera->heartbeat_timeout == 5min);
  CHECK(push.timeout == 20s);  // longer than the 5s default poll: fine for a camera

  const auto bad = dir.load(kBase + R"(devices:
  - { id: c1, kind: camera, driver: camera_http, address: 10.0.0.1:80 }
  - { id: c2, kind: camera, driver: camera_http, mode: pull, address: 10.0.0.1:80 }
  - { id: c3, kind: camera, driver: camera_http, mode: stream }
  - { id: c4, kind: camera, driver: camera_http, mode: push, address: 10.0.0.1:80 }
  - { id: c5, kind: camera, driver: camera_http, mode: push, listen: cams.local:8090 }
  - { id: c6, kind: camera, driver: camera_http, mode: stream, address: h:80, password: x }
  - { id: c7, kind: camera, driver: camera_http, mode: stream, address: h:80, password_file: nope.pass }
  - { id: c8, kind: camera, driver: camera_http, mode: stream, address: h:80, heartbeat: 10s, heartbeat_timeout: 5s }
  - { id: c9, kind: camera, driver: camera_http, mode: push, listen: 0.0.0.0:1, allow_from: [cam-9], max_body: 1KiB }
  - { id: c10, kind: camera, driver: camera_http, mode: stream, address: h:80, vendor: axis, path: alerts }
)");
  INFO(dump(bad));
  REQUIRE(bad.errors.size() == 14);
  const auto& e = bad.errors;
  CHECK(e[0].key_path == "devices[0].mode");
  CHECK_THAT(e[0].message, Contains("required key 'mode'") && Contains("push (the camera posts"));
  CHECK(e[1].key_path == "devices[1].mode");
  CHECK_THAT(e[1].message, Contains("must be one of: push, stream"));
  CHECK(e[2].key_path == "devices[2].address");
  CHECK_THAT(e[2].message, Contains("required key 'address'"));
  CHECK(e[3].key_path == "devices[3].address");
  CHECK_THAT(e[3].message, Contains("applies to mode: stream only"));
  CHECK(e[4].key_path == "devices[3].listen");
  CHECK_THAT(e[4].message, Contains("required key 'listen'"));
  CHECK(e[5].key_path == "devices[4].listen");
  CHECK_THAT(e[5].message, Contains("IP address of this machine"));
  CHECK(e[6].key_path == "devices[5].password");
  CHECK_THAT(e[6].message, Contains("never goes in this file") && Contains("password_file:"));
  CHECK(e[7].key_path == "devices[6].password_file");
  CHECK_THAT(e[7].message, Contains("needs username: too"));
  CHECK(e[8].key_path == "devices[6].password_file");
  CHECK_THAT(e[8].message, Contains("cannot read " + dir.path("nope.pass")));
  CHECK(e[9].key_path == "devices[7].heartbeat_timeout");
  CHECK_THAT(e[9].message, Contains("must be longer than heartbeat (10s)"));
  CHECK(e[10].key_path == "devices[8].allow_from[0]");
  CHECK(e[10].value == "cam-9");
  CHECK(e[11].key_path == "devices[8].max_body");
  CHECK_THAT(e[11].message, Contains("from 64KiB to 256MiB"));
  CHECK(e[12].key_path == "devices[9].vendor");
  CHECK_THAT(e[12].message, Contains("hikvision, dahua"));
  CHECK(e[13].key_path == "devices[9].path");
  CHECK_THAT(e[13].message, Contains("must start with '/'"));
}
