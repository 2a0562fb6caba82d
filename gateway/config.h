// Config is the daemon's whole configuration, as read from the one YAML file of CONTRACT.md.
// load_config() validates everything it can without touching devices or the network: unknown
// keys, bad values, missing required keys. Each problem becomes a ConfigError naming the file,
// line, key path and offending value; the daemon exits 78 (EX_CONFIG) when there is any.
// Relative paths in the file are resolved against the file's folder before they get here.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "campus/gateway/v1/gateway.pb.h"
#include "protocols/modbus_read_plan.h"
#include "protocols/register_map.h"

namespace gw::config {

using Duration = std::chrono::milliseconds;
using EventClass = campus::gateway::v1::EventClass;
using DeviceKind = campus::gateway::v1::DeviceKind;

struct GatewaySection {
  std::string id;        // [a-z0-9][a-z0-9-]{0,63}
  std::string site;      // topic level: no '/', '+', '#'
  std::string building;  // topic level: no '/', '+', '#'
  std::string data_dir;  // absolute after loading
  bool operator==(const GatewaySection&) const = default;
};

struct TlsSection {
  std::string ca_file;
  std::string cert_file;  // cert_file and key_file together, or neither
  std::string key_file;
  bool verify_hostname = true;
  bool operator==(const TlsSection&) const = default;
};

struct MqttSection {
  std::string uri;                 // tcp://host:port or ssl://host:port
  std::string client_id;           // defaults to gateway.id
  std::string username;            // optional
  std::string password_file;       // optional, absolute after loading
  std::optional<TlsSection> tls;   // required for ssl:// URIs
  std::string topic_prefix = "campus";
  Duration keepalive = std::chrono::seconds(30);
  int max_inflight = 64;           // publishes awaiting PUBACK at once, 1..65535
  // Beyond the contract (ours to design):
  int batch_max_events = 100;      // events per EventBatch publish, 1..10000
  Duration backoff_initial = std::chrono::milliseconds(500);  // reconnect backoff bounds
  Duration backoff_max = std::chrono::seconds(30);
  // Random wait before the first connect, uniform in [0, this]; unset: backoff_initial.
  std::optional<Duration> startup_splay;
  bool operator==(const MqttSection&) const = default;
};

enum class WhenFull { kRejectNew, kDropOldest };

struct ClassPolicy {
  Duration max_age{};
  WhenFull when_full = WhenFull::kDropOldest;
  bool operator==(const ClassPolicy&) const = default;
};

struct BufferSection {
  uint64_t max_bytes = 512ull << 20;
  // How long a telemetry event may wait to share its commit and its publish with others
  // (RouterOptions::telemetry_linger). Access, alarm and status events never wait.
  Duration telemetry_linger = std::chrono::milliseconds(20);
  // Always holds all four classes after loading (defaults for those the file omits):
  // access and alarm 180d reject_new; telemetry and status 30d drop_oldest.
  std::map<EventClass, ClassPolicy> classes;
  bool operator==(const BufferSection&) const = default;
};

struct ControlSection {
  std::string socket = "/run/gatewayd/gatewayd.sock";
  bool operator==(const ControlSection&) const = default;
};

struct MetricsSection {
  std::optional<std::string> listen;  // host:port; absent = disabled
  bool operator==(const MetricsSection&) const = default;
};

struct PrivacySection {
  enum class CardId { kRaw, kHmac };
  CardId card_id = CardId::kRaw;
  std::string key_file;  // required for kHmac, absolute after loading
  bool operator==(const PrivacySection&) const = default;
};

struct BusSection {
  std::string id;
  std::string port;   // e.g. /dev/ttyS1, or tcp://host:port for a serial server's raw TCP port
  std::string tcp_host;  // set when port is tcp://...
  uint16_t tcp_port = 0;
  int baud = 9600;
  char parity = 'N';  // 'N', 'E', 'O'
  int data_bits = 8;  // 5..8
  int stop_bits = 1;  // 1..2
  // Extra quiet time after a reply before the next request, on top of the 3.5-character silent
  // interval: slow RS-485 transceivers need it to turn the line around. 0..1s.
  Duration turnaround{0};
  int line = 0;       // where the entry starts in the file, for later errors
  bool operator==(const BusSection&) const = default;
};

struct ReportPolicy {
  bool on_change = false;              // false: every good poll is reported
  double deadband = 0.0;               // on_change: report when |new - last| > deadband
  std::optional<Duration> max_interval;  // report at least this often, changed or not
  bool operator==(const ReportPolicy&) const = default;
};

struct PointSection {
  protocols::PointSpec spec;  // Modbus drivers: name, table, address, type, word order, scale...
  ReportPolicy report;
  std::string di;                 // dlt645: data identifier DI3..DI0, 8 hex digits
  std::optional<int> decimals;    // dlt645: overrides the standard's format
  bool operator==(const PointSection&) const = default;
};

struct FramingSection {
  enum class Type { kLine, kStxEtx, kFixed };
  Type type = Type::kLine;
  std::string delimiter = "\r\n";  // kLine; YAML escapes already applied
  int max_length = 256;            // bytes per frame, 1..65536
  int length = 0;                  // kFixed: bytes per frame
  bool operator==(const FramingSection&) const = default;
};

struct DeviceSection {
  std::string id;
  DeviceKind kind = campus::gateway::v1::DEVICE_KIND_UNSPECIFIED;
  std::string driver;            // modbus_tcp | modbus_rtu | dlt645 | serial_line | tcp_line |
                                 // camera_http | modbus_gate | uhppote
  std::string host;              // from address: "host:port"
  uint16_t port = 0;
  std::string bus;               // id of a BusSection
  std::string serial_port;       // serial_line without a bus: `port:`
  // serial_line with its own `port:`: that port's baud/parity/data_bits/stop_bits, shaped like a
  // bus of its own (id = device id, port = serial_port). Empty for every other device.
  std::optional<BusSection> line_settings;
  int unit_id = 1;               // 0..247 (255 allowed for Modbus TCP gateways)
  Duration poll = std::chrono::seconds(5);
  Duration timeout = std::chrono::seconds(1);  // per request, < poll; omitted: 1s or poll/2
  int offline_after = 3;         // consecutive failed polls before the device is offline
  int max_registers = protocols::kMaxRegistersPerRead;  // 1..125
  int max_gap = 0;                                       // 0..124
  std::vector<PointSection> points;
  std::string profile;           // absolute path of the shared register map it came from, if any
  std::string meter_address;     // dlt645: 12 BCD digits
  std::string door;              // card readers and gates
  std::string direction = "unknown";  // in | out | unknown
  std::optional<FramingSection> framing;
  std::string card_format = "decimal";  // decimal | hex | wiegand26 | wiegand34
  // Gate controllers (modbus_gate, uhppote).
  uint32_t serial_number = 0;    // uhppote: the controller's serial number, 1..4294967295
  std::string listen_host;       // uhppote `listen:` (IP literal), where it pushes events; optional
  uint16_t listen_port = 0;
  uint16_t status_base = 0;      // modbus_gate `registers.status`: the 8-register status block
  uint16_t log_base = 100;       // modbus_gate `registers.log`: the log window
  uint32_t log_size = 64;        // modbus_gate: records the controller keeps, 1..8000
  // tcp_line: no byte for this long -> reconnect; the link is reported down only if that fails
  // (readers are silent while nobody swipes). 0 = never.
  Duration idle_timeout = std::chrono::minutes(5);
  // camera_http (README "Cameras"; drivers/camera_http/camera_http_source.h). Push mode listens
  // on listen_host:listen_port above; stream mode reads from host:port.
  struct Camera {
    std::string mode;                      // push | stream
    std::string vendor = "hikvision";      // hikvision | dahua
    std::string path;                      // stream: request target; push: the one path accepted
    std::string username;                  // stream
    std::string password_file;             // stream; absolute after loading
    std::string auth = "digest";           // stream: digest | basic
    Duration heartbeat = std::chrono::seconds(10);
    std::optional<Duration> heartbeat_timeout;  // unset: 3 x heartbeat (stream), none (push)
    std::optional<Duration> inactive_after;     // unset: 5s for hikvision, never for dahua
    std::vector<std::string> allow_from;   // push: IP addresses that may post; empty: any
    uint64_t max_body = 4ull << 20;        // push: one request, pictures included
    int max_connections = 8;               // push: at once
    bool operator==(const Camera&) const = default;
  };
  std::optional<Camera> camera;          // set for camera_http
  int line = 0;                  // where the entry starts in the file, for later errors
  bool operator==(const DeviceSection&) const = default;
};

// One rule of `alarms:`; which fields are set depends on the rule's condition (exactly one of
// high/low, stale, offline, rate, held_open, forced, denied, active_for). README "Alarm rules"
// has the meaning of each; gateway/alarm_engine.h evaluates them.
struct AlarmSection {
  std::string name;
  std::vector<std::string> devices;       // or:
  std::optional<DeviceKind> kind;
  std::string point;
  std::optional<double> high, low;
  double hysteresis = 0.0;
  Duration hold_for{};                    // `for:`
  std::string severity = "major";         // info | minor | major | critical
  std::optional<Duration> stale;
  std::optional<Duration> offline;        // device offline longer than this
  std::optional<double> rate_max_delta;   // rate: change over the window above this, or
  std::optional<double> rate_min_delta;   //   below this (0: a counter running backwards)
  std::optional<Duration> rate_window;
  std::optional<Duration> held_open;
  bool forced = false;
  // forced: an opening counts as granted when a GRANTED passage at the door was seen at most
  // this long before it (or up to 2 s after it, for reports that arrive late).
  Duration grant_window = std::chrono::seconds(10);
  std::optional<int> denied_count;
  std::optional<Duration> denied_window;
  std::string active_type;                // active_for.type
  std::optional<Duration> active_duration;
  int line = 0;
  bool operator==(const AlarmSection&) const = default;
};

struct Config {
  std::string source_path;  // absolute path of the file it was loaded from
  GatewaySection gateway;
  MqttSection mqtt;
  BufferSection buffer;
  ControlSection control;
  MetricsSection metrics;
  PrivacySection privacy;
  std::vector<BusSection> buses;
  std::vector<DeviceSection> devices;
  std::vector<AlarmSection> alarms;
};

struct ConfigError {
  std::string file;
  int line = 0;           // 1-based; 0 when the problem is the file itself
  std::string key_path;   // e.g. "devices[2].points[0].type"
  std::string value;      // the offending value as written, may be empty
  std::string message;    // what is wrong and what is allowed
  // "FILE:LINE: KEY_PATH: MESSAGE (got 'VALUE')"
  std::string to_string() const;
};

struct LoadResult {
  std::optional<Config> config;     // set only when errors is empty
  std::vector<ConfigError> errors;  // every problem found, in file order
};

LoadResult load_config(const std::string& path);

// Parsers shared with the CLI: "500ms", "5s", "2m", "1h", "7d"; "64KiB", "512MiB", "1GiB", "100".
std::optional<Duration> parse_duration(const std::string& text);
std::optional<uint64_t> parse_size(const std::string& text);

}  // namespace gw::config
