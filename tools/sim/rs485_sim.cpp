// rs485_sim plays one RS-485 line on a pseudo-terminal: any number of Modbus RTU units and DL/T 645
// meters sharing it, answering the gateway's RTU and DL/T 645 drivers like real devices would,
// with faults injectable per unit. One thread, one poll loop; the line is half-duplex, so replies
// leave one at a time, each after the inter-frame gap.
//
// Independence: the Modbus RTU framing and CRC here are written apart from protocols/modbus_rtu.*
// (this file must not include it), so the gateway's codec is checked against a second
// implementation. DL/T 645 requests are delimited with gw::protocols::dlt645::parse_frame and
// answered by gw::sim::Dlt645Meter, which frames its replies on its own.
//
// Guarantees a test can rely on:
// - Modbus units serve the register map of modbus_tcp_sim (tools/sim/README.md) with the same
//   value formulas, the device index i being the unit's position in --units, plus:
//     register 20 = device_tag = 1000 + unit id (not 1000 + i as over TCP),
//     register 21 = request counter: number of requests this unit received, this one included,
//                   so two reads never show the same value and a lost reply leaves a gap.
//   Registers 0..21 are readable with FC 3 and FC 4, coil 0 (relay) with FC 1, discrete input 0
//   (tamper, always 0) with FC 2. Anything past them gets exception 02; a quantity out of 1..125
//   (registers) or 1..2000 (bits), or a read frame that is not 8 bytes, gets 03; a function
//   other than 1-4 gets 01.
// - A reply is built when its request is complete, from the values current then (which the
//   values log already holds); delayed replies (--slow, late) keep those values.
// - Requests to units not served, and broadcasts (unit 0), get no reply, as on a real bus.
// - A request is complete when 8 bytes with function 1-4 and a valid CRC are there, or else when
//   the line has been silent for 3.5 character times; whatever does not form a valid frame by
//   then is discarded. No reply starts less than 3.5 character times after the last byte
//   received or after the nominal end of the previous reply.
//
// Fault kinds (--fault UNIT:KIND[:every=N]) and what they put on the line instead of the normal
// reply R (unit, function, byte count, data, CRC lo, CRC hi):
//   bad-crc         R with its last byte (CRC high) inverted
//   wrong-unit      R from unit id U+1 (247 -> 1), CRC recomputed
//   wrong-function  R with function 1<->2 or 3<->4 (exception flag kept), CRC recomputed
//   exception       U, FC|0x80, 02, CRC (illegal data address)
//   short           R without its last 3 bytes (the CRC and one data byte are missing)
//   extra-bytes     R followed by EE EE EE
//   late            R, sent --late-ms (default 300) after the request
//   garbage         as many pseudo-random bytes as R has (seeded by unit and counter; never a
//                   frame with a valid CRC)
// With every=N the fault applies to requests whose counter is a multiple of N only.
//
// Pseudo-terminal notes (Linux 6.18, checked while writing this): a pty has no baud rate; the
// speed set with cfsetspeed() is stored and read back but bytes move at memory speed. A new
// slave starts cooked with ECHO on (the gateway would read its own requests back), hence raw
// mode here; termios set through either side lasts while the master is open, across the
// gateway's close and reopen. When the last descriptor of the slave closes, the master polls
// POLLHUP without end and read() fails with EIO until the slave is opened again; --create-pty
// therefore keeps its own descriptor of the slave open. Bytes written to the master that nobody
// read stay in the slave's input queue across close and reopen: a gateway should
// tcflush(TCIFLUSH) after open. When the master goes away (socat killed), the slave polls
// POLLHUP and read() returns 0, and the simulator exits 1. socat 1.7.4 itself survives the
// gateway closing its end and relays again after a reopen.

#include <fcntl.h>
#include <poll.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "protocols/dlt645.h"
#include "tools/sim/dlt645_meter.h"
#include "tools/sim/sim_cli.h"
#include "tools/sim/sim_meter.h"

namespace gw::sim {
namespace {

using Clock = std::chrono::steady_clock;
namespace dlt645 = protocols::dlt645;

constexpr int kMinUnit = 1;
constexpr int kMaxUnit = 255;
constexpr int kRegisterCount = 22;  // 0..20 as over TCP, 21 = request counter
constexpr int kCounterRegister = 21;
constexpr int kMaxReadRegisters = 125;
constexpr int kMaxReadBits = 2000;
constexpr size_t kReadRequestLength = 8;
constexpr size_t kMaxRtuFrame = 256;  // Modbus serial line: the largest RTU ADU
// Bytes kept while waiting for a frame to complete; more than any frame, so junk cannot pile up.
constexpr size_t kMaxRxBuffer = 1024;
constexpr size_t kMaxQueuedReplies = 64;
constexpr int kBitsPerChar = 11;
constexpr int kMaxTickMs = 3600 * 1000;
constexpr int kMaxDelayMs = 60 * 1000;
constexpr int kMaxEvery = 1000000;
constexpr uint8_t kExceptionFlag = 0x80;
constexpr uint8_t kIllegalFunction = 1;
constexpr uint8_t kIllegalAddress = 2;
constexpr uint8_t kIllegalValue = 3;
constexpr std::array<uint8_t, 3> kAppendedBytes = {0xEE, 0xEE, 0xEE};
constexpr size_t kShortBy = 3;
// Unit ids whose first byte would read as a DL/T 645 wake-up or start byte.
constexpr int kDltStart = 0x68;
constexpr int kDltWakeUp = 0xFE;

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;

constexpr const char* kUsage =
    R"(Usage: rs485_sim (--tty PATH | --create-pty LINK) [options]
Simulates one RS-485 line on a pseudo-terminal: Modbus RTU units (the register map of
modbus_tcp_sim, tools/sim/README.md) and DL/T 645 meters, with faults per unit.

  --tty PATH            serve on PATH, one end of a pty pair (e.g. made by
                        socat -d -d pty,raw,echo=0,link=A pty,raw,echo=0,link=B)
  --create-pty LINK     create a pty, symlink its slave to LINK (replaced if it is a symlink);
                        the gateway opens LINK
  --baud B              1200..230400, a standard rate (default 9600); on a pty only the
                        inter-frame gap (3.5 characters of 11 bits, 1750 us above 19200) is real
  --units LIST          Modbus unit ids served, 1..255: "1-32", "1,5,7" or "1-4,9"; the device
                        index of a unit is its position in LIST
  --dlt645 ADDR,...     DL/T 645 meters (12-digit printed addresses) on the same line; a request
                        starting with 0xFE or 0x68 is DL/T 645 (so units 104 and 254 are refused)
  --dead U,...          these units never answer
  --slow U,...          these units answer --slow-ms late
  --slow-ms M           reply delay of --slow units, 1..60000 (required with --slow)
  --fault U:KIND[:every=N]
                        repeatable; KIND: bad-crc, wrong-unit, wrong-function, exception, short,
                        extra-bytes, late, garbage; with every=N only every Nth request of U
                        (its counter a multiple of N); the first matching --fault of U applies
  --late-ms M           delay of the "late" fault, 1..60000 (default 300)
  --tick-ms MS          value update period, 1..3600000 (default 1000)
  --values-log FILE     one JSON line per unit or meter and tick (truncated at start)
  --requests-log FILE   one JSON line per request addressed to a served unit or meter
  --duration-s S        exit 0 after S seconds (decimals allowed); 0 = until SIGINT/SIGTERM
  -h, --help            print this help and exit

Once the line is open and tick 0 is stored, prints one line "ready key=value ..." on stdout.
Exit status: 0 after --duration-s or on SIGINT/SIGTERM, 1 on a runtime failure (cannot open
the tty, the other end of the line is gone, a log cannot be written), 2 on a bad command line.
)";

enum class Fault {
  kNone,
  kDead,
  kBadCrc,
  kWrongUnit,
  kWrongFunction,
  kException,
  kShort,
  kExtraBytes,
  kLate,
  kGarbage
};

struct FaultName {
  Fault fault;
  std::string_view name;
};
constexpr std::array<FaultName, 10> kFaultNames = {{
    {Fault::kNone, "none"},
    {Fault::kDead, "dead"},
    {Fault::kBadCrc, "bad-crc"},
    {Fault::kWrongUnit, "wrong-unit"},
    {Fault::kWrongFunction, "wrong-function"},
    {Fault::kException, "exception"},
    {Fault::kShort, "short"},
    {Fault::kExtraBytes, "extra-bytes"},
    {Fault::kLate, "late"},
    {Fault::kGarbage, "garbage"},
}};

std::string_view fault_name(Fault fault) {
  for (const FaultName& entry : kFaultNames) {
    if (entry.fault == fault) return entry.name;
  }
  std::abort();  // every Fault is in the table
}

struct FaultRule {
  int unit = 0;
  Fault fault = Fault::kNone;
  int every = 1;
};

struct Options {
  std::string tty;
  std::string create_pty;
  int baud = 9600;
  std::vector<int> units;
  std::vector<std::string> dlt645;
  std::vector<int> dead;
  std::vector<int> slow;
  int slow_ms = 0;
  std::vector<FaultRule> faults;
  int late_ms = 300;
  int tick_ms = 1000;
  std::string values_log;
  std::string requests_log;
  double duration_s = 0;
};


std::vector<std::string_view> split(std::string_view text, char separator) {
  std::vector<std::string_view> items;
  size_t start = 0;
  while (true) {
    const size_t at = text.find(separator, start);
    items.push_back(text.substr(start, at == std::string_view::npos ? at : at - start));
    if (at == std::string_view::npos) return items;
    start = at + 1;
  }
}

// "1-32", "1,5,7", "1-4,9": ranges and single ids, in the order given; duplicates are refused
// because the position in the list is the unit's device index.
std::vector<int> parse_unit_list(std::string_view flag, std::string_view text) {
  std::vector<int> units;
  for (const std::string_view item : split(text, ',')) {
    const size_t dash = item.find('-');
    int first = 0;
    int last = 0;
    if (dash == std::string_view::npos) {
      first = last = parse_int(flag, item, kMinUnit, kMaxUnit);
    } else {
      first = parse_int(flag, item.substr(0, dash), kMinUnit, kMaxUnit);
      last = parse_int(flag, item.substr(dash + 1), kMinUnit, kMaxUnit);
      if (last < first)
        usage_error(std::string(flag) + ": empty range '" + std::string(item) + "'");
    }
    for (int unit = first; unit <= last; ++unit) {
      if (std::find(units.begin(), units.end(), unit) != units.end()) {
        usage_error(std::string(flag) + ": unit " + std::to_string(unit) + " is listed twice");
      }
      units.push_back(unit);
    }
  }
  return units;
}

FaultRule parse_fault(std::string_view text) {
  const std::vector<std::string_view> parts = split(text, ':');
  if (parts.size() < 2 || parts.size() > 3) {
    usage_error("--fault: '" + std::string(text) + "' is not UNIT:KIND or UNIT:KIND:every=N");
  }
  FaultRule rule;
  rule.unit = parse_int("--fault", parts[0], kMinUnit, kMaxUnit);
  for (const FaultName& entry : kFaultNames) {
    if (entry.name == parts[1] && entry.fault != Fault::kNone && entry.fault != Fault::kDead) {
      rule.fault = entry.fault;
    }
  }
  if (rule.fault == Fault::kNone) {
    usage_error("--fault: unknown kind '" + std::string(parts[1]) +
                "' (bad-crc, wrong-unit, wrong-function, exception, short, extra-bytes, late, "
                "garbage)");
  }
  if (parts.size() == 3) {
    constexpr std::string_view kEvery = "every=";
    if (parts[2].substr(0, kEvery.size()) != kEvery) {
      usage_error("--fault: '" + std::string(parts[2]) + "' is not every=N");
    }
    rule.every = parse_int("--fault every", parts[2].substr(kEvery.size()), 1, kMaxEvery);
  }
  return rule;
}

std::optional<speed_t> speed_for(int baud) {
  switch (baud) {
    case 1200:
      return B1200;
    case 2400:
      return B2400;
    case 4800:
      return B4800;
    case 9600:
      return B9600;
    case 19200:
      return B19200;
    case 38400:
      return B38400;
    case 57600:
      return B57600;
    case 115200:
      return B115200;
    case 230400:
      return B230400;
    default:
      return std::nullopt;
  }
}

bool contains(const std::vector<int>& list, int value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

Options parse_options(int argc, char** argv) {
  Options options;
  bool slow_ms_given = false;
  for (gw::sim::FlagReader args(argc, argv, kUsage); args.next();) {
    const std::string_view flag = args.flag();
    auto take_path = [&]() -> std::string {
      std::string path(args.value());
      if (path.empty()) usage_error(std::string(flag) + ": empty path");
      return path;
    };
    if (flag == "--tty") {
      options.tty = take_path();
    } else if (flag == "--create-pty") {
      options.create_pty = take_path();
    } else if (flag == "--baud") {
      options.baud = parse_int(flag, args.value(), 1, 4000000);
      if (!speed_for(options.baud)) {
        usage_error("--baud: " + std::to_string(options.baud) +
                    " is not one of 1200 2400 4800 9600 19200 38400 57600 115200 230400");
      }
    } else if (flag == "--units") {
      options.units = parse_unit_list(flag, args.value());
    } else if (flag == "--dlt645") {
      options.dlt645.clear();
      for (const std::string_view item : split(args.value(), ',')) {
        const auto address = dlt645::parse_address(item);
        if (!address) {
          usage_error("--dlt645: '" + std::string(item) + "': " + address.status().message());
        }
        const std::string printed(item);
        if (std::find(options.dlt645.begin(), options.dlt645.end(), printed) !=
            options.dlt645.end()) {
          usage_error("--dlt645: meter " + printed + " is listed twice");
        }
        options.dlt645.push_back(printed);
      }
    } else if (flag == "--dead") {
      options.dead = parse_unit_list(flag, args.value());
    } else if (flag == "--slow") {
      options.slow = parse_unit_list(flag, args.value());
    } else if (flag == "--slow-ms") {
      options.slow_ms = parse_int(flag, args.value(), 1, kMaxDelayMs);
      slow_ms_given = true;
    } else if (flag == "--fault") {
      options.faults.push_back(parse_fault(args.value()));
    } else if (flag == "--late-ms") {
      options.late_ms = parse_int(flag, args.value(), 1, kMaxDelayMs);
    } else if (flag == "--tick-ms") {
      options.tick_ms = parse_int(flag, args.value(), 1, kMaxTickMs);
    } else if (flag == "--values-log") {
      options.values_log = take_path();
    } else if (flag == "--requests-log") {
      options.requests_log = take_path();
    } else if (flag == "--duration-s") {
      options.duration_s = parse_seconds(flag, args.value());
    } else {
      usage_error("unknown flag '" + std::string(flag) + "'");
    }
  }

  if (options.tty.empty() == options.create_pty.empty()) {
    usage_error("give exactly one of --tty PATH and --create-pty LINK");
  }
  if (options.units.empty() && options.dlt645.empty()) {
    usage_error("nothing on the line: give --units and/or --dlt645");
  }
  if (!options.dlt645.empty()) {
    for (const int unit : {kDltStart, kDltWakeUp}) {
      if (contains(options.units, unit)) {
        usage_error("--units: unit " + std::to_string(unit) +
                    " cannot share a line with --dlt645 (its first byte is DL/T 645's 0x" +
                    (unit == kDltStart ? std::string("68") : std::string("FE")) + ")");
      }
    }
  }
  auto check_served = [&](const char* flag, int unit) {
    if (!contains(options.units, unit)) {
      usage_error(std::string(flag) + ": unit " + std::to_string(unit) + " is not in --units");
    }
  };
  for (const int unit : options.dead) check_served("--dead", unit);
  for (const int unit : options.slow) {
    check_served("--slow", unit);
    if (contains(options.dead, unit)) {
      usage_error("unit " + std::to_string(unit) + " is both --dead and --slow");
    }
  }
  for (const FaultRule& rule : options.faults) {
    check_served("--fault", rule.unit);
    if (contains(options.dead, rule.unit)) {
      usage_error("--fault: unit " + std::to_string(rule.unit) + " is --dead: it never answers");
    }
  }
  if (!options.slow.empty() && !slow_ms_given) usage_error("--slow needs --slow-ms");
  return options;
}

// ---- Modbus RTU, written apart from protocols/modbus_rtu.cpp (see the file comment) ----

// CRC-16/MODBUS with the usual 256-entry table (the gateway's codec computes it bit by bit).
class Crc16 {
 public:
  Crc16() {
    for (unsigned n = 0; n < 256; ++n) {
      unsigned crc = n;
      for (int k = 0; k < 8; ++k) crc = (crc & 1u) ? (crc >> 1) ^ 0xA001u : crc >> 1;
      table_[n] = static_cast<uint16_t>(crc);
    }
  }
  uint16_t operator()(std::span<const uint8_t> bytes) const {
    unsigned crc = 0xFFFF;
    for (const uint8_t b : bytes) crc = (crc >> 8) ^ table_[(crc ^ b) & 0xFFu];
    return static_cast<uint16_t>(crc);
  }

 private:
  std::array<uint16_t, 256> table_{};
};

const Crc16 crc16;

void append_crc(std::vector<uint8_t>& frame) {
  const uint16_t crc = crc16(frame);
  frame.push_back(static_cast<uint8_t>(crc & 0xFF));
  frame.push_back(static_cast<uint8_t>(crc >> 8));
}

// A frame with its CRC appended (low byte first) has a CRC of 0 over all of it.
bool crc_ok(std::span<const uint8_t> frame) { return frame.size() >= 4 && crc16(frame) == 0; }

void replace_crc(std::vector<uint8_t>& frame) {
  frame.resize(frame.size() - 2);
  append_crc(frame);
}

// ---- Values: the formulas of modbus_tcp_sim, index = position in --units ----


// The line of modbus_tcp_sim's values log, with "unit" in place of "device" and "port".
std::string format_values_line(int64_t t_ms, int unit, int64_t tick, const MeterValues& v) {
  return "{\"t_ms\":" + std::to_string(t_ms) + ",\"unit\":" + std::to_string(unit) +
         ",\"tick\":" + std::to_string(tick) + ",\"values\":" + meter_values_json(v) + "}\n";
}

int64_t unix_ms_now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string hex_di(const std::vector<uint8_t>& data) {
  if (data.size() < 4) return "";
  char text[16];
  std::snprintf(text, sizeof text, "%02X%02X%02X%02X", data[3], data[2], data[1], data[0]);
  return text;
}

// 3.5 characters of 11 bits, rounded up to whole µs; a fixed 1750 µs above 19200 baud (Modbus
// over serial line, 2.5.1.1). Computed here rather than by the gateway's codec, like the CRC.
std::chrono::microseconds inter_frame_gap(int baud) {
  if (baud > 19200) return std::chrono::microseconds(1750);
  const int64_t half_bits_us = int64_t{7} * kBitsPerChar * 1000000;  // 3.5 chars, doubled
  return std::chrono::microseconds((half_bits_us + 2 * int64_t{baud} - 1) / (2 * int64_t{baud}));
}

// Owns the line, the units, the meters and the logs. Single-threaded: run() is the only loop.
class Simulator {
 public:
  explicit Simulator(Options options);
  ~Simulator();
  Simulator(const Simulator&) = delete;
  Simulator& operator=(const Simulator&) = delete;

  // Opens the line and the logs, stores tick 0, prints "ready". False after saying why.
  bool start();
  int run();

 private:
  enum class Behaviour { kNormal, kDead, kSlow };

  struct Unit {
    int id = 0;
    int index = 0;
    Behaviour behaviour = Behaviour::kNormal;
    std::vector<FaultRule> faults;
    uint32_t requests = 0;
    std::array<uint16_t, kRegisterCount> registers{};
    bool relay = false;
  };

  struct Request {  // a Modbus request with a valid CRC, as the log reports it
    int function = 0;
    int start = 0;
    int count = 0;
  };

  bool open_line();
  bool create_pty();
  bool open_tty();
  bool configure_line(int fd);
  bool open_log(const std::string& path, const char* flag, int* fd);
  bool write_log(int fd, const std::string& line, const char* what);
  bool apply_tick(int64_t tick);

  bool on_line_readable(Clock::time_point now);
  bool frame_input(Clock::time_point now, bool silent);
  bool on_modbus_frame(std::span<const uint8_t> frame, Clock::time_point now);
  bool on_dlt645_frame(const dlt645::Frame& frame, Clock::time_point now);
  std::vector<uint8_t> normal_reply(const Unit& unit, std::span<const uint8_t> frame,
                                    uint8_t* exception) const;
  std::vector<uint8_t> apply_fault(Fault fault, const Unit& unit, std::vector<uint8_t> reply) const;
  void queue_reply(Clock::time_point due, std::vector<uint8_t> bytes);
  bool send_due_replies(Clock::time_point now);
  bool flush_tx();
  bool on_signal();

  Unit* find_unit(int id);

  Options options_;
  std::chrono::microseconds gap_;
  std::vector<Unit> units_;
  std::vector<Dlt645Meter> meters_;
  int line_fd_ = -1;
  // --create-pty: our own descriptor of the slave, so the master never sees a hang-up.
  int slave_hold_fd_ = -1;
  std::string slave_name_;
  bool link_created_ = false;
  int signal_fd_ = -1;
  int values_fd_ = -1;
  int requests_fd_ = -1;

  std::vector<uint8_t> rx_;
  Clock::time_point last_rx_{};
  // Replies waiting for their due time, in due order (equal times keep arrival order).
  std::multimap<Clock::time_point, std::vector<uint8_t>> queued_;
  std::vector<uint8_t> tx_;  // the reply being written (a pty may take it in pieces)
  size_t tx_done_ = 0;
  Clock::time_point line_free_at_{};  // nominal end of our last reply plus the gap
  Clock::time_point last_drop_warning_{};
  Clock::time_point start_{};
  int64_t tick_ = 0;
};

Simulator::Simulator(Options options)
    : options_(std::move(options)), gap_(inter_frame_gap(options_.baud)) {
  for (size_t n = 0; n < options_.units.size(); ++n) {
    Unit unit;
    unit.id = options_.units[n];
    unit.index = static_cast<int>(n);
    if (contains(options_.dead, unit.id)) unit.behaviour = Behaviour::kDead;
    if (contains(options_.slow, unit.id)) unit.behaviour = Behaviour::kSlow;
    for (const FaultRule& rule : options_.faults) {
      if (rule.unit == unit.id) unit.faults.push_back(rule);
    }
    units_.push_back(std::move(unit));
  }
  for (size_t n = 0; n < options_.dlt645.size(); ++n) {
    meters_.emplace_back(options_.dlt645[n], static_cast<int>(n));
  }
}

Simulator::~Simulator() {
  if (link_created_) {
    // Only our own link: another simulator may have replaced it meanwhile.
    char target[256];
    const ssize_t n = ::readlink(options_.create_pty.c_str(), target, sizeof target - 1);
    if (n > 0 && std::string_view(target, static_cast<size_t>(n)) == slave_name_) {
      ::unlink(options_.create_pty.c_str());
    }
  }
  for (int fd : {line_fd_, slave_hold_fd_, signal_fd_, values_fd_, requests_fd_}) {
    if (fd >= 0) ::close(fd);
  }
}

Simulator::Unit* Simulator::find_unit(int id) {
  for (Unit& unit : units_) {
    if (unit.id == id) return &unit;
  }
  return nullptr;
}

bool Simulator::configure_line(int fd) {
  termios tio{};
  if (tcgetattr(fd, &tio) != 0) {
    std::fprintf(stderr, "rs485_sim: tcgetattr: %s\n", std::strerror(errno));
    return false;
  }
  // Raw: no echo (the gateway would read its own request back), no CR/LF translation, 8 bits.
  cfmakeraw(&tio);
  tio.c_cflag |= CLOCAL | CREAD;
  tio.c_cc[VMIN] = 1;
  tio.c_cc[VTIME] = 0;
  const speed_t speed = *speed_for(options_.baud);
  if (cfsetispeed(&tio, speed) != 0 || cfsetospeed(&tio, speed) != 0 ||
      tcsetattr(fd, TCSANOW, &tio) != 0) {
    std::fprintf(stderr, "rs485_sim: tcsetattr: %s\n", std::strerror(errno));
    return false;
  }
  return true;
}

bool Simulator::create_pty() {
  line_fd_ = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (line_fd_ < 0 || grantpt(line_fd_) != 0 || unlockpt(line_fd_) != 0) {
    std::fprintf(stderr, "rs485_sim: posix_openpt/grantpt/unlockpt: %s\n", std::strerror(errno));
    return false;
  }
  char name[128];
  if (ptsname_r(line_fd_, name, sizeof name) != 0) {
    std::fprintf(stderr, "rs485_sim: ptsname_r: %s\n", std::strerror(errno));
    return false;
  }
  slave_name_ = name;
  slave_hold_fd_ = ::open(name, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
  if (slave_hold_fd_ < 0) {
    std::fprintf(stderr, "rs485_sim: open %s: %s\n", name, std::strerror(errno));
    return false;
  }
  // The slave's termios is what the gateway's end gets; it stays while the master is open.
  if (!configure_line(slave_hold_fd_)) return false;

  const std::string& link = options_.create_pty;
  struct stat st {};
  if (::lstat(link.c_str(), &st) == 0 && !S_ISLNK(st.st_mode)) {
    std::fprintf(stderr, "rs485_sim: --create-pty %s exists and is not a symlink\n", link.c_str());
    return false;
  }
  // A stale link from an earlier run is replaced in one step (symlink beside it, then rename).
  const std::string tmp = link + ".tmp" + std::to_string(::getpid());
  ::unlink(tmp.c_str());
  if (::symlink(name, tmp.c_str()) != 0 || ::rename(tmp.c_str(), link.c_str()) != 0) {
    std::fprintf(stderr, "rs485_sim: --create-pty %s: %s\n", link.c_str(), std::strerror(errno));
    ::unlink(tmp.c_str());
    return false;
  }
  link_created_ = true;
  return true;
}

bool Simulator::open_tty() {
  line_fd_ = ::open(options_.tty.c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (line_fd_ < 0) {
    std::fprintf(stderr, "rs485_sim: --tty %s: %s\n", options_.tty.c_str(), std::strerror(errno));
    return false;
  }
  if (!::isatty(line_fd_)) {
    std::fprintf(stderr, "rs485_sim: --tty %s is not a terminal\n", options_.tty.c_str());
    return false;
  }
  return configure_line(line_fd_);
}

bool Simulator::open_line() {
  if (!(options_.create_pty.empty() ? open_tty() : create_pty())) return false;
  const int flags = ::fcntl(line_fd_, F_GETFL);
  if (flags < 0 || ::fcntl(line_fd_, F_SETFL, flags | O_NONBLOCK) != 0) {
    std::fprintf(stderr, "rs485_sim: fcntl(O_NONBLOCK): %s\n", std::strerror(errno));
    return false;
  }
  // Whatever the other end sent before we were listening is not a request to us.
  tcflush(line_fd_, TCIFLUSH);
  return true;
}

bool Simulator::open_log(const std::string& path, const char* flag, int* fd) {
  if (path.empty()) return true;
  *fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
  if (*fd < 0) {
    std::fprintf(stderr, "rs485_sim: %s %s: %s\n", flag, path.c_str(), std::strerror(errno));
    return false;
  }
  return true;
}

bool Simulator::write_log(int fd, const std::string& line, const char* what) {
  if (fd < 0) return true;
  // One write() per line: a reader tailing the file never sees half a line.
  if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
    std::fprintf(stderr, "rs485_sim: %s write failed: %s\n", what, std::strerror(errno));
    return false;
  }
  return true;
}

bool Simulator::start() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigprocmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  signal_fd_ = signalfd(-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC);
  if (signal_fd_ < 0) {
    std::perror("rs485_sim: signalfd");
    return false;
  }
  if (!open_log(options_.values_log, "--values-log", &values_fd_) ||
      !open_log(options_.requests_log, "--requests-log", &requests_fd_) || !open_line()) {
    return false;
  }
  start_ = Clock::now();
  if (!apply_tick(0)) return false;

  std::string ready = "ready";
  if (!options_.create_pty.empty()) {
    ready += " link=" + options_.create_pty + " pty=" + slave_name_;
  } else {
    ready += " tty=" + options_.tty;
  }
  ready += " baud=" + std::to_string(options_.baud) + " gap_us=" + std::to_string(gap_.count()) +
           " units=" + std::to_string(units_.size()) + " dlt645=" + std::to_string(meters_.size()) +
           "\n";
  std::fputs(ready.c_str(), stdout);
  std::fflush(stdout);
  return true;
}

bool Simulator::apply_tick(int64_t tick) {
  tick_ = tick;
  const int64_t t_ms = unix_ms_now();
  for (Unit& unit : units_) {
    const MeterValues values =
        compute_meter_values(unit.index, static_cast<uint16_t>(1000 + unit.id), tick);
    encode_meter_registers(values, unit.registers);  // 21 (the request counter) is left alone
    unit.relay = values.relay;
    if (!write_log(values_fd_, format_values_line(t_ms, unit.id, tick, values), "--values-log")) {
      return false;
    }
  }
  for (Dlt645Meter& meter : meters_) {
    meter.tick(static_cast<int>(tick));
    const std::string line = "{\"t_ms\":" + std::to_string(t_ms) + ",\"dlt645\":\"" +
                             dlt645::to_string(meter.address()) +
                             "\",\"tick\":" + std::to_string(tick) +
                             ",\"values\":" + meter.values_json() + "}\n";
    if (!write_log(values_fd_, line, "--values-log")) return false;
  }
  return true;
}

int Simulator::run() {
  const auto tick_period = std::chrono::milliseconds(options_.tick_ms);
  std::optional<Clock::time_point> end;
  if (options_.duration_s > 0) {
    end = start_ + std::chrono::duration_cast<Clock::duration>(
                       std::chrono::duration<double>(options_.duration_s));
  }
  while (true) {
    Clock::time_point now = Clock::now();
    if (end && now >= *end) return kExitOk;
    Clock::time_point deadline = start_ + (tick_ + 1) * tick_period;
    if (end) deadline = std::min(deadline, *end);
    if (!rx_.empty()) deadline = std::min(deadline, last_rx_ + gap_);
    if (!queued_.empty() && tx_.empty()) {
      deadline =
          std::min(deadline, std::max({queued_.begin()->first, line_free_at_, last_rx_ + gap_}));
    }
    const auto wait = std::max(Clock::duration::zero(), deadline - now);
    const auto wait_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(wait).count();
    const timespec timeout{static_cast<time_t>(wait_ns / 1000000000),
                           static_cast<long>(wait_ns % 1000000000)};

    std::array<pollfd, 2> fds{};
    fds[0] = {signal_fd_, POLLIN, 0};
    fds[1] = {line_fd_, static_cast<short>(POLLIN | (tx_.empty() ? 0 : POLLOUT)), 0};
    const int n = ppoll(fds.data(), fds.size(), &timeout, nullptr);
    if (n < 0 && errno != EINTR) {
      std::perror("rs485_sim: ppoll");
      return kExitFailure;
    }
    now = Clock::now();
    if (n > 0) {
      if ((fds[0].revents & POLLIN) && on_signal()) return kExitOk;
      if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
        if (!on_line_readable(now)) return kExitFailure;
      }
      if ((fds[1].revents & POLLOUT) && !flush_tx()) return kExitFailure;
    }
    if (!rx_.empty() && now - last_rx_ >= gap_ && !frame_input(now, true)) return kExitFailure;
    if (!send_due_replies(now)) return kExitFailure;
    const int64_t due_tick = (now - start_) / tick_period;
    if (due_tick > tick_ && !apply_tick(due_tick)) return kExitFailure;
  }
}

bool Simulator::on_signal() {
  signalfd_siginfo info{};
  while (::read(signal_fd_, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
    if (info.ssi_signo == SIGINT || info.ssi_signo == SIGTERM) return true;
  }
  return false;
}

bool Simulator::on_line_readable(Clock::time_point now) {
  std::array<uint8_t, 4096> chunk;
  const ssize_t got = ::read(line_fd_, chunk.data(), chunk.size());
  if (got < 0 && (errno == EAGAIN || errno == EINTR)) return true;
  if (got <= 0) {
    // 0: the master of our --tty slave is gone (socat exited); EIO: the same seen from a master.
    std::fprintf(stderr, "rs485_sim: the other end of the line is gone (%s)\n",
                 got == 0 ? "end of file" : std::strerror(errno));
    return false;
  }
  // A flood without a silent gap is junk: keep only the newest bytes, which may yet become a frame.
  rx_.insert(rx_.end(), chunk.begin(), chunk.begin() + got);
  if (rx_.size() > kMaxRxBuffer) rx_.erase(rx_.begin(), rx_.end() - kMaxRtuFrame);
  last_rx_ = now;
  return frame_input(now, false);
}

// Takes every complete frame off the front of rx_. `silent`: the line has been quiet for the
// inter-frame gap, so whatever is left is a whole frame or junk.
bool Simulator::frame_input(Clock::time_point now, bool silent) {
  const bool dlt_on_line = !meters_.empty();
  while (!rx_.empty()) {
    if (dlt_on_line && (rx_[0] == kDltWakeUp || rx_[0] == kDltStart)) {
      const dlt645::Parsed parsed = dlt645::parse_frame(rx_);
      if (parsed.outcome == dlt645::Parsed::Outcome::kNeedMore) {
        if (silent) rx_.clear();  // a partial DL/T 645 frame: the sender gave up
        return true;
      }
      const size_t consumed = std::min(parsed.consumed, rx_.size());
      if (parsed.outcome == dlt645::Parsed::Outcome::kGood && !on_dlt645_frame(parsed.frame, now)) {
        return false;
      }
      rx_.erase(rx_.begin(), rx_.begin() + static_cast<std::ptrdiff_t>(consumed));
      continue;
    }
    // FC 1-4 requests are exactly 8 bytes: answer as soon as they are here, as devices do.
    if (rx_.size() >= kReadRequestLength && rx_[1] >= 1 && rx_[1] <= 4 &&
        crc_ok(std::span(rx_).first(kReadRequestLength))) {
      if (!on_modbus_frame(std::span(rx_).first(kReadRequestLength), now)) return false;
      rx_.erase(rx_.begin(), rx_.begin() + kReadRequestLength);
      continue;
    }
    if (!silent) return true;
    // Silence ends the frame: one frame with a valid CRC (any function), or junk.
    if (rx_.size() <= kMaxRtuFrame && crc_ok(rx_) && !on_modbus_frame(rx_, now)) return false;
    rx_.clear();
  }
  return true;
}

std::vector<uint8_t> Simulator::normal_reply(const Unit& unit, std::span<const uint8_t> frame,
                                             uint8_t* exception) const {
  const uint8_t function = frame[1];
  auto refuse = [&](uint8_t code) {
    *exception = code;
    std::vector<uint8_t> reply{static_cast<uint8_t>(unit.id),
                               static_cast<uint8_t>(function | kExceptionFlag), code};
    append_crc(reply);
    return reply;
  };
  if (function < 1 || function > 4) return refuse(kIllegalFunction);
  if (frame.size() != kReadRequestLength) return refuse(kIllegalValue);
  const int start = (frame[2] << 8) | frame[3];
  const int count = (frame[4] << 8) | frame[5];
  const bool bits = function <= 2;
  if (count < 1 || count > (bits ? kMaxReadBits : kMaxReadRegisters)) {
    return refuse(kIllegalValue);
  }
  if (start + count > (bits ? 1 : kRegisterCount)) return refuse(kIllegalAddress);

  std::vector<uint8_t> reply{static_cast<uint8_t>(unit.id), function};
  if (bits) {
    // Coil 0 is the relay, discrete input 0 (tamper) is always 0; one byte, bit 0.
    const bool bit = function == 1 && unit.relay;
    reply.push_back(1);
    reply.push_back(bit ? 1 : 0);
  } else {
    reply.push_back(static_cast<uint8_t>(2 * count));
    for (int r = start; r < start + count; ++r) {
      const uint16_t value = unit.registers[static_cast<size_t>(r)];
      reply.push_back(static_cast<uint8_t>(value >> 8));
      reply.push_back(static_cast<uint8_t>(value & 0xFF));
    }
  }
  append_crc(reply);
  return reply;
}

std::vector<uint8_t> Simulator::apply_fault(Fault fault, const Unit& unit,
                                            std::vector<uint8_t> reply) const {
  switch (fault) {
    case Fault::kNone:
    case Fault::kDead:
    case Fault::kLate:
      return reply;
    case Fault::kBadCrc:
      reply.back() ^= 0xFF;
      return reply;
    case Fault::kWrongUnit:
      reply[0] = static_cast<uint8_t>(unit.id >= 247 ? 1 : unit.id + 1);
      replace_crc(reply);
      return reply;
    case Fault::kWrongFunction: {
      // 1<->2 and 3<->4 keep the frame's shape; an exception to another function becomes one
      // to function 3.
      const uint8_t base = reply[1] & 0x7F;
      const uint8_t swapped = base == 1 ? 2 : base == 2 ? 1 : base == 3 ? 4 : 3;
      reply[1] = static_cast<uint8_t>((reply[1] & kExceptionFlag) | swapped);
      replace_crc(reply);
      return reply;
    }
    case Fault::kException: {
      std::vector<uint8_t> out{reply[0], static_cast<uint8_t>(reply[1] | kExceptionFlag),
                               kIllegalAddress};
      append_crc(out);
      return out;
    }
    case Fault::kShort:
      reply.resize(reply.size() > kShortBy ? reply.size() - kShortBy : 1);
      return reply;
    case Fault::kExtraBytes:
      reply.insert(reply.end(), kAppendedBytes.begin(), kAppendedBytes.end());
      return reply;
    case Fault::kGarbage: {
      // Reproducible per (unit, counter), so a failing test can be replayed byte for byte.
      std::mt19937 rng((static_cast<uint32_t>(unit.id) << 24) ^ unit.requests);
      for (uint8_t& b : reply) b = static_cast<uint8_t>(rng());
      if (crc_ok(reply)) reply.back() ^= 0xFF;
      return reply;
    }
  }
  std::abort();  // every Fault is handled above
}

bool Simulator::on_modbus_frame(std::span<const uint8_t> frame, Clock::time_point now) {
  Unit* unit = find_unit(frame[0]);
  // Broadcasts (unit 0) are never answered; other units' requests are not ours to answer.
  if (unit == nullptr) return true;
  ++unit->requests;
  unit->registers[kCounterRegister] = static_cast<uint16_t>(unit->requests);

  Request request;
  request.function = frame[1];
  if (frame.size() >= 6) {
    request.start = (frame[2] << 8) | frame[3];
    request.count = (frame[4] << 8) | frame[5];
  }
  Fault fault = Fault::kNone;
  if (unit->behaviour == Behaviour::kDead) {
    fault = Fault::kDead;
  } else {
    for (const FaultRule& rule : unit->faults) {
      if (unit->requests % static_cast<uint32_t>(rule.every) == 0) {
        fault = rule.fault;
        break;
      }
    }
  }
  uint8_t exception = 0;
  std::vector<uint8_t> reply;
  int delay_ms = 0;
  if (fault != Fault::kDead) {
    reply = apply_fault(fault, *unit, normal_reply(*unit, frame, &exception));
    if (unit->behaviour == Behaviour::kSlow) delay_ms += options_.slow_ms;
    if (fault == Fault::kLate) delay_ms += options_.late_ms;
  }

  char line[320];
  std::snprintf(
      line, sizeof line,
      "{\"t_ms\":%" PRId64
      ",\"unit\":%d,\"function\":%d,\"start\":%d,\"count\":%d,\"request_counter\":%" PRIu32
      ",\"fault\":\"%s\",\"exception\":%d,\"delay_ms\":%d,\"reply_bytes\":%zu}\n",
      unix_ms_now(), unit->id, request.function, request.start, request.count, unit->requests,
      std::string(fault_name(fault)).c_str(), exception, delay_ms, reply.size());
  if (!write_log(requests_fd_, line, "--requests-log")) return false;
  if (fault != Fault::kDead)
    queue_reply(now + std::chrono::milliseconds(delay_ms), std::move(reply));
  return true;
}

bool Simulator::on_dlt645_frame(const dlt645::Frame& frame, Clock::time_point now) {
  for (Dlt645Meter& meter : meters_) {
    std::optional<std::vector<uint8_t>> reply = meter.handle(frame);
    if (!reply) continue;
    const std::string line = "{\"t_ms\":" + std::to_string(unix_ms_now()) + ",\"dlt645\":\"" +
                             dlt645::to_string(meter.address()) +
                             "\",\"control\":" + std::to_string(frame.control) + ",\"di\":\"" +
                             hex_di(frame.data) +
                             "\",\"reply_bytes\":" + std::to_string(reply->size()) + "}\n";
    if (!write_log(requests_fd_, line, "--requests-log")) return false;
    // Several meters answering one wildcard request collide on a real bus; here they queue.
    queue_reply(now, std::move(*reply));
  }
  return true;
}

void Simulator::queue_reply(Clock::time_point due, std::vector<uint8_t> bytes) {
  if (queued_.size() >= kMaxQueuedReplies) {
    // Only a master that stops reading while it keeps asking gets here; a bus would lose the
    // bytes too.
    const Clock::time_point now = Clock::now();
    if (now - last_drop_warning_ > std::chrono::seconds(5)) {
      std::fprintf(stderr, "rs485_sim: %zu replies waiting for the line: dropping\n",
                   queued_.size());
      last_drop_warning_ = now;
    }
    return;
  }
  queued_.emplace(due, std::move(bytes));
}

bool Simulator::send_due_replies(Clock::time_point now) {
  // Half-duplex: one reply at a time, never sooner than the gap after the last byte received or
  // after the nominal end of our previous reply.
  while (tx_.empty() && !queued_.empty() && queued_.begin()->first <= now && now >= line_free_at_ &&
         now >= last_rx_ + gap_) {
    tx_ = std::move(queued_.begin()->second);
    tx_done_ = 0;
    queued_.erase(queued_.begin());
    const auto on_wire = std::chrono::microseconds(static_cast<int64_t>(tx_.size()) * kBitsPerChar *
                                                   1000000 / options_.baud);
    line_free_at_ = now + on_wire + gap_;
    if (!flush_tx()) return false;
  }
  return true;
}

bool Simulator::flush_tx() {
  while (tx_done_ < tx_.size()) {
    const ssize_t put = ::write(line_fd_, tx_.data() + tx_done_, tx_.size() - tx_done_);
    if (put < 0) {
      if (errno == EAGAIN || errno == EINTR) return true;  // POLLOUT brings us back
      std::fprintf(stderr, "rs485_sim: write to the line: %s\n", std::strerror(errno));
      return false;
    }
    tx_done_ += static_cast<size_t>(put);
  }
  tx_.clear();
  tx_done_ = 0;
  return true;
}

}  // namespace
}  // namespace gw::sim

int main(int argc, char** argv) {
  gw::sim::set_program_name("rs485_sim");
  gw::sim::Simulator simulator(gw::sim::parse_options(argc, argv));
  if (!simulator.start()) return gw::sim::kExitFailure;
  return simulator.run();
}
