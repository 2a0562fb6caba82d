// modbus_tcp_sim plays N Modbus TCP energy meters in one process, for the integration tests, the
// demo and the benchmarks (up to 10,000 meters; 1,000 is the planned load). Every meter has its
// own listening port; all listeners and all client connections are served by one epoll loop on
// one thread, so an idle simulator costs ~0 CPU and no meter can hold up another.
//
// Guarantees a test can rely on:
// - Register values are a pure function of (meter index i, tick number k); tick k is applied at
//   start + k * --tick-ms (tick 0 before the "listening" lines are printed). Late wake-ups skip
//   ticks rather than replay them.
// - With --values-log, the line for (i, k) is written in the same loop iteration that stores the
//   registers, so a reply can never show values the log does not (yet) contain.
// - No client can delay another: a client costs at most one 260-byte buffer and 32 queued
//   replies. One that stalls mid-frame is simply left waiting; one that sends garbage, floods a
//   --slow meter or stops reading its replies is disconnected.
//
// Register map. Holding registers (FC 3) and input registers (FC 4) hold the same 21 registers;
// 16-19 are reserved (always 0). Register bytes are big-endian as Modbus requires; "big" word
// order means the first register holds the most significant 16 bits.
//
//   reg    name           type     word order  encoding
//   0-1    energy_total   uint32   big          raw = kWh * 100
//   2-3    voltage_l1     float32  big (ABCD)   IEEE 754 single, volts
//   4-5    current_l1     float32  little(CDAB) IEEE 754 single, amperes; low word first
//   6      active_power   int16    -            raw = W / 10 (negative = export)
//   7      frequency      uint16   -            raw = Hz * 100
//   8-11   energy_export  int64    big          raw = Wh, two's complement
//   12-15  runtime_hours  float64  big          IEEE 754 double, hours
//   20     device_tag     uint16   -            1000 + i (tells which meter answered)
//   coil 0            relay   bool
//   discrete input 0  tamper  bool, always 0
//
// Values for meter i at tick k (integer division, % is the remainder):
//   energy_total  raw = B + 10000 i + 37 k (mod 2^32), B = 100000 for even i, 3000000000 for odd
//                 i: odd meters sit above INT32_MAX, which catches a decoder that reads uint32 as
//                 signed.
//   voltage_l1    230 + 2 sin(k / 5 + i), computed in float.
//   current_l1    float(5 + 0.5 (i % 20) + 0.25 (k % 7) + 0.013 (k % 11)); the fraction keeps
//                 the low word non-zero, so a word-order mistake cannot go unnoticed.
//   active_power  raw = s (150 + 7 (i % 50) + 3 (k % 13)), s = -1 when (k + i) % 4 == 3, else 1.
//   frequency     raw = 4995 + (k + 3 i) % 11, i.e. 49.95 .. 50.05 Hz.
//   energy_export Wh = s (5000000000 + 1000000 i + 123 k), s = -1 for even i: beyond 32 bits
//                 both ways, so every one of the four registers matters.
//   runtime_hours 8760 (1 + i % 5) + 0.1 i + k / 3600 (a tick counts as one second of runtime).
//   device_tag    1000 + i.
//   relay         (k / 10 + i) % 2.
//
// libmodbus (Debian 12: 3.1.6) builds every reply (modbus_reply / modbus_reply_exception), but
// this file frames requests itself and does not call modbus_receive(), because in 3.1.6:
// - modbus_receive() waits with select() on ctx->s: a socket numbered >= FD_SETSIZE (1024) aborts
//   the process ("bit out of range 0 - FD_SETSIZE on fd_set"), which 1,000 meters reach at once;
// - it reads a frame byte-group by byte-group, blocking up to the byte timeout for each, so one
//   stalled client would stall every meter;
// - it sizes a frame from the function code and ignores the MBAP length field.
// Other 3.1.6 behaviour this file works around:
// - modbus_set_float_abcd()/_cdab() put the bytes of each register in the wrong order on a
//   little-endian host (libmodbus issue #611; set_float_abcd(230.0f) gives 0x6643 0x0000, not
//   0x4366 0x0000). Floats are therefore encoded with std::bit_cast and shifts like the integers.
// - modbus_reply() answers an illegal quantity by sleeping for the response timeout (0.5 s by
//   default) and then discarding whatever the socket holds; it does not implement FC 7 and
//   returns -1 without answering. Both are answered here before modbus_reply() sees them.
// - modbus_reply() over TCP answers every unit id (0 and 255 included) and echoes it back, as a
//   Modbus TCP server should; the simulator relies on that and does not filter unit ids.

#include <arpa/inet.h>
#include <fcntl.h>
#include <modbus/modbus.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
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
#include <deque>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tools/sim/sim_cli.h"
#include "tools/sim/sim_meter.h"

namespace gw::sim {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kMaxDevices = 10000;
constexpr int kRegisterCount = 21;
constexpr int kMaxTickMs = 3600 * 1000;
constexpr int kMaxSlowMs = 60 * 1000;
constexpr int kListenBacklog = 128;
// Descriptors besides the listeners: epoll, signalfd, values log, spare, stdio.
constexpr rlim_t kFdHeadroom = 64;

// MBAP header: transaction id (2), protocol id (2), length (2), unit id (1).
constexpr size_t kMbapLength = 7;
constexpr size_t kMaxAdu = MODBUS_TCP_MAX_ADU_LENGTH;  // 260
// The MBAP length field counts the unit id and the PDU (at least a function code, at most 253).
constexpr unsigned kMinMbapLengthField = 2;
constexpr unsigned kMaxMbapLengthField = 1 + MODBUS_MAX_PDU_LENGTH;

constexpr int kMaxEvents = 256;
constexpr int kMaxAcceptsPerWakeup = 64;
// Replies queued for one client of a --slow meter; a client that pipelines more is flooding.
constexpr int kMaxPendingPerClient = 32;
constexpr size_t kDrainChunk = 4096;

constexpr uint64_t kListenerTag = uint64_t{1} << 62;
constexpr uint64_t kSignalTag = uint64_t{1} << 61;

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;

constexpr const char* kUsage =
    R"(Usage: modbus_tcp_sim [options]
Serves N simulated Modbus TCP energy meters from one thread (register map: tools/sim/README.md).

  --devices N         number of meters, 1..10000 (default 1)
  --bind ADDR         IPv4 address to listen on (default 127.0.0.1)
  --base-port P       meter i listens on P+i; 0 = a kernel-chosen port per meter (default 0)
  --tick-ms MS        value update period, 1..3600000 (default 1000)
  --ports-file FILE   also write the "listening INDEX PORT" lines to FILE (via FILE.tmp + rename)
  --values-log FILE   one JSON line per meter and tick with the values just stored (truncated
                      at start, each line flushed)
  --duration-s S      exit 0 after S seconds (decimals allowed); 0 = until SIGINT/SIGTERM
                      (default 0)
  --dead I,J,...      these meters accept connections but never answer
  --slow I,J,...      these meters answer --slow-ms late (other meters are not delayed)
  --slow-ms M         reply delay of the --slow meters, 1..60000
  --intervals-log F   at exit, write one "T_MS INDEX INTERVAL_US" line per request that
                      followed an earlier one to the same meter (benchmarks: poll intervals)
  -h, --help          print this help and exit

Once every meter listens, prints "listening INDEX PORT" per meter on stdout. Exit status: 0 after
--duration-s or on SIGINT/SIGTERM, 1 on a runtime failure (bind, descriptor limit, log write),
2 on a bad command line.
)";

struct Options {
  int devices = 1;
  std::string bind = "127.0.0.1";
  int base_port = 0;
  int tick_ms = 1000;
  std::string ports_file;
  std::string values_log;
  double duration_s = 0;
  std::vector<int> dead;
  std::vector<int> slow;
  int slow_ms = 0;
  std::string intervals_log;
};


// Indices are checked against --devices after all flags are read (flag order is free).
std::vector<int> parse_index_list(std::string_view flag, std::string_view text) {
  std::vector<int> indices;
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    const std::string_view item = text.substr(
        start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    indices.push_back(parse_int(flag, item, 0, kMaxDevices - 1));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return indices;
}

Options parse_options(int argc, char** argv) {
  Options options;
  bool slow_ms_given = false;
  for (gw::sim::FlagReader args(argc, argv, kUsage); args.next();) {
    const std::string_view flag = args.flag();
    if (flag == "--devices") {
      options.devices = parse_int(flag, args.value(), 1, kMaxDevices);
    } else if (flag == "--bind") {
      options.bind = args.value();
      in_addr unused{};
      if (inet_pton(AF_INET, options.bind.c_str(), &unused) != 1) {
        usage_error("--bind: '" + options.bind + "' is not an IPv4 address");
      }
    } else if (flag == "--base-port") {
      options.base_port = parse_int(flag, args.value(), 0, 65535);
    } else if (flag == "--tick-ms") {
      options.tick_ms = parse_int(flag, args.value(), 1, kMaxTickMs);
    } else if (flag == "--ports-file") {
      options.ports_file = args.value();
      if (options.ports_file.empty()) usage_error("--ports-file: empty file name");
    } else if (flag == "--values-log") {
      options.values_log = args.value();
      if (options.values_log.empty()) usage_error("--values-log: empty file name");
    } else if (flag == "--duration-s") {
      options.duration_s = parse_seconds(flag, args.value());
    } else if (flag == "--dead") {
      options.dead = parse_index_list(flag, args.value());
    } else if (flag == "--slow") {
      options.slow = parse_index_list(flag, args.value());
    } else if (flag == "--intervals-log") {
      options.intervals_log = args.value();
      if (options.intervals_log.empty()) usage_error("--intervals-log: empty file name");
    } else if (flag == "--slow-ms") {
      options.slow_ms = parse_int(flag, args.value(), 1, kMaxSlowMs);
      slow_ms_given = true;
    } else {
      usage_error("unknown flag '" + std::string(flag) + "'");
    }
  }

  if (options.base_port != 0 && options.base_port + options.devices - 1 > 65535) {
    usage_error("--base-port: " + std::to_string(options.base_port) + " + " +
                std::to_string(options.devices) + " devices runs past port 65535");
  }
  for (const auto* list : {&options.dead, &options.slow}) {
    const char* flag = list == &options.dead ? "--dead" : "--slow";
    for (int index : *list) {
      if (index >= options.devices) {
        usage_error(std::string(flag) + ": device index " + std::to_string(index) +
                    " is out of range (--devices " + std::to_string(options.devices) + ")");
      }
    }
  }
  for (int index : options.slow) {
    if (std::find(options.dead.begin(), options.dead.end(), index) != options.dead.end()) {
      usage_error("device index " + std::to_string(index) + " is both --dead and --slow");
    }
  }
  if (!options.slow.empty() && !slow_ms_given) usage_error("--slow needs --slow-ms");
  return options;
}


// One line of the values log.
std::string format_values_line(int64_t t_ms, int index, int port, int64_t tick,
                               const MeterValues& v) {
  return "{\"t_ms\":" + std::to_string(t_ms) + ",\"device\":" + std::to_string(index) +
         ",\"port\":" + std::to_string(port) + ",\"tick\":" + std::to_string(tick) +
         ",\"values\":" + meter_values_json(v) + "}\n";
}

// Checks a request PDU (function code onwards) before modbus_reply() sees it. Returns 0 when
// modbus_reply() may answer it, else the exception code to send. Covering the length and quantity
// checks here keeps modbus_reply() off its sleep-then-flush path (see the file comment).
int precheck_pdu(const uint8_t* pdu, size_t size) {
  const auto u16 = [pdu](size_t at) { return (pdu[at] << 8) | pdu[at + 1]; };
  const auto quantity_ok = [](int quantity, int max) { return quantity >= 1 && quantity <= max; };
  switch (pdu[0]) {
    case MODBUS_FC_READ_COILS:
    case MODBUS_FC_READ_DISCRETE_INPUTS:
      if (size != 5 || !quantity_ok(u16(3), MODBUS_MAX_READ_BITS)) break;
      return 0;
    case MODBUS_FC_READ_HOLDING_REGISTERS:
    case MODBUS_FC_READ_INPUT_REGISTERS:
      if (size != 5 || !quantity_ok(u16(3), MODBUS_MAX_READ_REGISTERS)) break;
      return 0;
    case MODBUS_FC_WRITE_SINGLE_COIL:
    case MODBUS_FC_WRITE_SINGLE_REGISTER:
      if (size != 5) break;
      return 0;
    case MODBUS_FC_WRITE_MULTIPLE_COILS:
      if (size < 6 || size != 6u + pdu[5] || !quantity_ok(u16(3), MODBUS_MAX_WRITE_BITS) ||
          pdu[5] != (u16(3) + 7) / 8) {
        break;
      }
      return 0;
    case MODBUS_FC_WRITE_MULTIPLE_REGISTERS:
      if (size < 6 || size != 6u + pdu[5] || !quantity_ok(u16(3), MODBUS_MAX_WRITE_REGISTERS) ||
          pdu[5] != 2 * u16(3)) {
        break;
      }
      return 0;
    case MODBUS_FC_REPORT_SLAVE_ID:
      if (size != 1) break;
      return 0;
    case MODBUS_FC_MASK_WRITE_REGISTER:
      if (size != 7) break;
      return 0;
    case MODBUS_FC_WRITE_AND_READ_REGISTERS:
      if (size < 10 || size != 10u + pdu[9] || !quantity_ok(u16(3), MODBUS_MAX_WR_READ_REGISTERS) ||
          !quantity_ok(u16(7), MODBUS_MAX_WR_WRITE_REGISTERS) || pdu[9] != 2 * u16(7)) {
        break;
      }
      return 0;
    default:
      // Includes FC 7 (read exception status), which 3.1.6 leaves unanswered.
      return MODBUS_EXCEPTION_ILLEGAL_FUNCTION;
  }
  return MODBUS_EXCEPTION_ILLEGAL_DATA_VALUE;
}

int64_t unix_ms_now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Owns every socket, libmodbus context and mapping. Single-threaded by design: run() is the only
// loop and nothing else touches the state, so nothing is locked.
class Simulator {
 public:
  explicit Simulator(Options options) : options_(std::move(options)) {}
  ~Simulator();
  Simulator(const Simulator&) = delete;
  Simulator& operator=(const Simulator&) = delete;

  // Binds every meter, stores tick 0, announces the ports. False (after saying why on stderr)
  // when the simulator cannot run.
  bool start();
  // Serves until --duration-s elapses or a signal arrives; returns the exit status.
  int run();
  // --intervals-log: writes the request intervals recorded while serving.
  void write_intervals() const;

 private:
  enum class Behaviour { kNormal, kDead, kSlow };

  struct Device {
    int index = 0;
    int port = 0;
    int listen_fd = -1;
    Behaviour behaviour = Behaviour::kNormal;
    modbus_t* ctx = nullptr;
    modbus_mapping_t* mapping = nullptr;
    Clock::time_point last_request{};  // --intervals-log only
  };

  struct Interval {
    uint32_t t_ms;      // since start
    uint32_t index;
    uint32_t interval_us;
  };

  struct Client {
    int fd = -1;
    int device = 0;
    int pending = 0;  // replies queued for a --slow meter
    size_t size = 0;
    std::array<uint8_t, kMaxAdu> buffer;
  };

  struct DelayedReply {
    Clock::time_point due;
    uint64_t client_id = 0;
    size_t size = 0;
    std::array<uint8_t, kMaxAdu> frame;
  };

  bool raise_fd_limit();
  bool open_listener(Device& device);
  bool announce_ports();
  bool apply_tick(int64_t tick);

  void on_listener_ready(Device& device);
  void on_client_ready(uint64_t id, uint32_t events);
  bool drain_dead_client(Client& client);
  bool handle_frame(uint64_t id, Client& client, const uint8_t* frame, size_t size);
  bool answer(const Device& device, int fd, const uint8_t* frame, size_t size);
  void run_due_replies(Clock::time_point now);
  void close_client(uint64_t id);
  void shed_connection(int listen_fd);
  bool on_signal();
  void note_request(Device& device);

  Options options_;
  std::vector<Device> devices_;
  std::unordered_map<uint64_t, Client> clients_;
  uint64_t next_client_id_ = 1;
  // Every --slow meter has the same delay, so arrival order is deadline order: a FIFO suffices.
  std::deque<DelayedReply> delayed_;
  int epoll_fd_ = -1;
  int signal_fd_ = -1;
  int log_fd_ = -1;
  // Kept open so that, with the descriptor table full, a connection can still be accepted and
  // closed; otherwise the level-triggered listener would wake the loop forever.
  int spare_fd_ = -1;
  Clock::time_point last_shed_warning_;
  Clock::time_point start_;
  int64_t tick_ = 0;
  std::vector<Interval> intervals_;
};

Simulator::~Simulator() {
  for (auto& entry : clients_) ::close(entry.second.fd);
  for (Device& device : devices_) {
    if (device.listen_fd >= 0) ::close(device.listen_fd);
    if (device.ctx != nullptr) {
      // The context only ever borrowed client sockets; modbus_free() must not see one.
      modbus_set_socket(device.ctx, -1);
      modbus_free(device.ctx);
    }
    if (device.mapping != nullptr) modbus_mapping_free(device.mapping);
  }
  for (int fd : {epoll_fd_, signal_fd_, log_fd_, spare_fd_}) {
    if (fd >= 0) ::close(fd);
  }
}

bool Simulator::raise_fd_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    std::perror("modbus_tcp_sim: getrlimit(RLIMIT_NOFILE)");
    return false;
  }
  // Clients need descriptors too, so take everything the hard limit allows, not just enough.
  if (limit.rlim_cur != limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0) {
      std::perror("modbus_tcp_sim: setrlimit(RLIMIT_NOFILE)");
      return false;
    }
  }
  const rlim_t needed = static_cast<rlim_t>(options_.devices) + kFdHeadroom;
  if (limit.rlim_cur < needed) {
    std::fprintf(stderr,
                 "modbus_tcp_sim: %d devices need about %llu file descriptors, but the hard "
                 "limit is %llu (raise it with ulimit -Hn or LimitNOFILE=)\n",
                 options_.devices, static_cast<unsigned long long>(needed),
                 static_cast<unsigned long long>(limit.rlim_cur));
    return false;
  }
  return true;
}

bool Simulator::open_listener(Device& device) {
  const int port = options_.base_port == 0 ? 0 : options_.base_port + device.index;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    std::fprintf(stderr, "modbus_tcp_sim: socket for device %d: %s\n", device.index,
                 std::strerror(errno));
    return false;
  }
  device.listen_fd = fd;
  // Lets a test restart the simulator on the same --base-port while old connections linger in
  // TIME_WAIT; it does not let two live listeners share a port.
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, options_.bind.c_str(), &addr.sin_addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(fd, kListenBacklog) != 0) {
    std::fprintf(stderr, "modbus_tcp_sim: device %d: cannot listen on %s:%d: %s\n", device.index,
                 options_.bind.c_str(), port, std::strerror(errno));
    return false;
  }
  socklen_t len = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    std::perror("modbus_tcp_sim: getsockname");
    return false;
  }
  device.port = ntohs(addr.sin_port);

  epoll_event event{};
  event.events = EPOLLIN;
  event.data.u64 = kListenerTag | static_cast<uint64_t>(device.index);
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) != 0) {
    std::perror("modbus_tcp_sim: epoll_ctl(listener)");
    return false;
  }
  return true;
}

bool Simulator::start() {
  if (!raise_fd_limit()) return false;

  // Blocked before anything else so that a SIGTERM during start-up waits in the signalfd
  // instead of killing the process halfway.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigprocmask(SIG_BLOCK, &signals, nullptr);
  // libmodbus sends with MSG_NOSIGNAL, but stdout may be a pipe whose reader went away.
  ::signal(SIGPIPE, SIG_IGN);

  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  signal_fd_ = signalfd(-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC);
  spare_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (epoll_fd_ < 0 || signal_fd_ < 0 || spare_fd_ < 0) {
    std::perror("modbus_tcp_sim: epoll/signalfd setup");
    return false;
  }
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.u64 = kSignalTag;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, signal_fd_, &event) != 0) {
    std::perror("modbus_tcp_sim: epoll_ctl(signalfd)");
    return false;
  }

  if (!options_.values_log.empty()) {
    log_fd_ = ::open(options_.values_log.c_str(),
                     O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd_ < 0) {
      std::fprintf(stderr, "modbus_tcp_sim: --values-log %s: %s\n", options_.values_log.c_str(),
                   std::strerror(errno));
      return false;
    }
  }

  devices_.resize(static_cast<size_t>(options_.devices));
  for (int index : options_.dead) devices_[static_cast<size_t>(index)].behaviour = Behaviour::kDead;
  for (int index : options_.slow) devices_[static_cast<size_t>(index)].behaviour = Behaviour::kSlow;
  for (int index = 0; index < options_.devices; ++index) {
    Device& device = devices_[static_cast<size_t>(index)];
    device.index = index;
    if (!open_listener(device)) return false;
    // The context is never connected: it only frames replies onto whichever client socket
    // modbus_set_socket() lends it.
    device.ctx = modbus_new_tcp(options_.bind.c_str(), device.port);
    device.mapping = modbus_mapping_new(1, 1, kRegisterCount, kRegisterCount);
    if (device.ctx == nullptr || device.mapping == nullptr) {
      std::fprintf(stderr, "modbus_tcp_sim: device %d: libmodbus allocation failed: %s\n", index,
                   modbus_strerror(errno));
      return false;
    }
    // Should a path of modbus_reply() still decide to sleep before flushing (precheck_pdu() is
    // meant to prevent it), it sleeps for this long. 0 is rejected by libmodbus.
    modbus_set_response_timeout(device.ctx, 0, 1);
  }

  start_ = Clock::now();
  if (!apply_tick(0)) return false;
  return announce_ports();
}

bool Simulator::announce_ports() {
  std::string lines;
  for (const Device& device : devices_) {
    lines += "listening " + std::to_string(device.index) + " " + std::to_string(device.port) + "\n";
  }
  std::fputs(lines.c_str(), stdout);
  std::fflush(stdout);
  if (options_.ports_file.empty()) return true;

  // Readers poll for the file; the rename makes it appear complete or not at all.
  const std::string tmp = options_.ports_file + ".tmp";
  std::FILE* file = std::fopen(tmp.c_str(), "w");
  bool ok = file != nullptr && std::fputs(lines.c_str(), file) >= 0;
  if (file != nullptr && std::fclose(file) != 0) ok = false;
  if (!ok || std::rename(tmp.c_str(), options_.ports_file.c_str()) != 0) {
    std::fprintf(stderr, "modbus_tcp_sim: --ports-file %s: %s\n", options_.ports_file.c_str(),
                 std::strerror(errno));
    return false;
  }
  return true;
}

bool Simulator::apply_tick(int64_t tick) {
  tick_ = tick;
  const int64_t t_ms = unix_ms_now();
  for (Device& device : devices_) {
    const MeterValues values =
        compute_meter_values(device.index, static_cast<uint16_t>(1000 + device.index), tick);
    std::array<uint16_t, kRegisterCount> regs{};
    encode_meter_registers(values, regs);
    std::copy(regs.begin(), regs.end(), device.mapping->tab_registers);
    std::copy(regs.begin(), regs.end(), device.mapping->tab_input_registers);
    device.mapping->tab_bits[0] = values.relay ? 1 : 0;
    device.mapping->tab_input_bits[0] = 0;
    if (log_fd_ < 0) continue;
    // One write() per line: a reader tailing the file never sees half a line from us.
    const std::string line = format_values_line(t_ms, device.index, device.port, tick, values);
    if (::write(log_fd_, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
      std::fprintf(stderr, "modbus_tcp_sim: --values-log write failed: %s\n", std::strerror(errno));
      return false;
    }
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
  std::array<epoll_event, kMaxEvents> events;

  while (true) {
    Clock::time_point now = Clock::now();
    if (end && now >= *end) return kExitOk;
    Clock::time_point deadline = start_ + (tick_ + 1) * tick_period;
    if (!delayed_.empty()) deadline = std::min(deadline, delayed_.front().due);
    if (end) deadline = std::min(deadline, *end);
    // Rounded up: waking before the deadline would spin until it arrives.
    const auto wait = std::chrono::ceil<std::chrono::milliseconds>(deadline - now);
    const int timeout_ms = static_cast<int>(std::max<int64_t>(0, wait.count()));

    const int n = epoll_wait(epoll_fd_, events.data(), kMaxEvents, timeout_ms);
    if (n < 0 && errno != EINTR) {
      std::perror("modbus_tcp_sim: epoll_wait");
      return kExitFailure;
    }
    for (int e = 0; e < n; ++e) {
      const uint64_t tag = events[static_cast<size_t>(e)].data.u64;
      if (tag == kSignalTag) {
        if (on_signal()) return kExitOk;
      } else if (tag & kListenerTag) {
        on_listener_ready(devices_[static_cast<size_t>(tag & ~kListenerTag)]);
      } else {
        on_client_ready(tag, events[static_cast<size_t>(e)].events);
      }
    }

    now = Clock::now();
    run_due_replies(now);
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

void Simulator::on_listener_ready(Device& device) {
  for (int accepted = 0; accepted < kMaxAcceptsPerWakeup; ++accepted) {
    const int fd = ::accept4(device.listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE) shed_connection(device.listen_fd);
      return;  // EAGAIN: backlog empty
    }
    // Requests and replies are single small segments; Nagle plus delayed ACK would add 40 ms.
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    const uint64_t id = next_client_id_++;
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.u64 = id;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) != 0) {
      ::close(fd);
      continue;
    }
    Client& client = clients_[id];
    client.fd = fd;
    client.device = device.index;
  }
}

void Simulator::shed_connection(int listen_fd) {
  const Clock::time_point now = Clock::now();
  if (now - last_shed_warning_ > std::chrono::seconds(5)) {
    std::fprintf(stderr, "modbus_tcp_sim: out of file descriptors (%zu clients): refusing\n",
                 clients_.size());
    last_shed_warning_ = now;
  }
  ::close(spare_fd_);
  const int fd = ::accept(listen_fd, nullptr, nullptr);
  if (fd >= 0) ::close(fd);
  spare_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
}

void Simulator::on_client_ready(uint64_t id, uint32_t events) {
  const auto it = clients_.find(id);
  if (it == clients_.end()) return;  // closed earlier in this batch of events
  Client& client = it->second;
  if (!(events & EPOLLIN)) {
    close_client(id);  // EPOLLERR / EPOLLHUP with nothing left to read
    return;
  }
  if (devices_[static_cast<size_t>(client.device)].behaviour == Behaviour::kDead) {
    if (!drain_dead_client(client)) close_client(id);
    return;
  }

  // One recv per wake-up keeps one chatty client from starving the others; level-triggered
  // epoll brings us back for the rest.
  const ssize_t got =
      ::recv(client.fd, client.buffer.data() + client.size, client.buffer.size() - client.size, 0);
  if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
    close_client(id);
    return;
  }
  if (got < 0) return;
  client.size += static_cast<size_t>(got);

  // Frames are delimited by the MBAP length field, as Modbus TCP defines them. A buffer that is
  // full always starts with a complete frame (a frame is at most kMaxAdu bytes), so the buffer
  // can never fill up without progress.
  size_t offset = 0;
  while (client.size - offset >= kMbapLength) {
    const uint8_t* frame = client.buffer.data() + offset;
    const unsigned protocol = (frame[2] << 8) | frame[3];
    const unsigned length = (frame[4] << 8) | frame[5];
    if (protocol != 0 || length < kMinMbapLengthField || length > kMaxMbapLengthField) {
      close_client(id);  // not Modbus TCP: nothing after this can be framed
      return;
    }
    const size_t frame_size = 6 + length;
    if (client.size - offset < frame_size) break;
    if (!handle_frame(id, client, frame, frame_size)) {
      close_client(id);
      return;
    }
    offset += frame_size;
  }
  std::memmove(client.buffer.data(), client.buffer.data() + offset, client.size - offset);
  client.size -= offset;
}

bool Simulator::drain_dead_client(Client& client) {
  std::array<uint8_t, kDrainChunk> sink;
  const ssize_t got = ::recv(client.fd, sink.data(), sink.size(), 0);
  return got > 0 || (got < 0 && (errno == EAGAIN || errno == EINTR));
}

// Kept in memory and written once at exit, so the log costs the served loop nothing but a push.
void Simulator::note_request(Device& device) {
  const Clock::time_point now = Clock::now();
  if (device.last_request != Clock::time_point{} && intervals_.size() < (size_t{64} << 20)) {
    intervals_.push_back(Interval{
        static_cast<uint32_t>(
            std::chrono::duration_cast<std::chrono::milliseconds>(now - start_).count()),
        static_cast<uint32_t>(device.index),
        static_cast<uint32_t>(
            std::chrono::duration_cast<std::chrono::microseconds>(now - device.last_request)
                .count())});
  }
  device.last_request = now;
}

void Simulator::write_intervals() const {
  if (options_.intervals_log.empty()) return;
  const std::string tmp = options_.intervals_log + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) {
    std::perror("modbus_tcp_sim: --intervals-log");
    return;
  }
  for (const Interval& i : intervals_) {
    std::fprintf(f, "%u %u %u\n", i.t_ms, i.index, i.interval_us);
  }
  if (std::fclose(f) != 0 || std::rename(tmp.c_str(), options_.intervals_log.c_str()) != 0) {
    std::perror("modbus_tcp_sim: --intervals-log");
  }
}

bool Simulator::handle_frame(uint64_t id, Client& client, const uint8_t* frame, size_t size) {
  Device& device = devices_[static_cast<size_t>(client.device)];
  if (!options_.intervals_log.empty()) note_request(device);
  if (device.behaviour != Behaviour::kSlow) return answer(device, client.fd, frame, size);
  if (client.pending >= kMaxPendingPerClient) return false;
  DelayedReply& reply = delayed_.emplace_back();
  reply.due = Clock::now() + std::chrono::milliseconds(options_.slow_ms);
  reply.client_id = id;
  reply.size = size;
  std::memcpy(reply.frame.data(), frame, size);
  ++client.pending;
  return true;
}

bool Simulator::answer(const Device& device, int fd, const uint8_t* frame, size_t size) {
  // modbus_reply() reads the address and quantity fields of every request, even those whose PDU
  // is one byte long; a zero-filled full-size copy keeps those reads inside the buffer.
  std::array<uint8_t, kMaxAdu> request{};
  std::memcpy(request.data(), frame, size);
  modbus_set_socket(device.ctx, fd);
  const int exception = precheck_pdu(request.data() + kMbapLength, size - kMbapLength);
  const int rc =
      exception == 0
          ? modbus_reply(device.ctx, request.data(), static_cast<int>(size), device.mapping)
          : modbus_reply_exception(device.ctx, request.data(), static_cast<unsigned>(exception));
  modbus_set_socket(device.ctx, -1);
  // -1 means the reply did not fit in the socket's send buffer or the peer is gone; a client that
  // does not read its replies is not worth buffering for.
  return rc != -1;
}

void Simulator::run_due_replies(Clock::time_point now) {
  while (!delayed_.empty() && delayed_.front().due <= now) {
    const DelayedReply reply = delayed_.front();
    delayed_.pop_front();
    const auto it = clients_.find(reply.client_id);
    if (it == clients_.end()) continue;  // the client left while we were "slow"
    Client& client = it->second;
    --client.pending;
    const Device& device = devices_[static_cast<size_t>(client.device)];
    if (!answer(device, client.fd, reply.frame.data(), reply.size)) close_client(reply.client_id);
  }
}

void Simulator::close_client(uint64_t id) {
  const auto it = clients_.find(id);
  if (it == clients_.end()) return;
  // close() alone removes the descriptor from the epoll set (we never dup client sockets).
  ::close(it->second.fd);
  clients_.erase(it);
}

}  // namespace
}  // namespace gw::sim

int main(int argc, char** argv) {
  gw::sim::set_program_name("modbus_tcp_sim");
  gw::sim::Simulator simulator(gw::sim::parse_options(argc, argv));
  if (!simulator.start()) return gw::sim::kExitFailure;
  const int status = simulator.run();
  simulator.write_intervals();
  return status;
}
