// card_reader_sim plays a card reader that streams what it reads: on a pseudo-terminal (the
// gateway's serial_line) or as a TCP server on loopback (tcp_line, like a serial-to-Ethernet
// converter). It sends `--count` swipes at `--rate` per second, card numbers sequential from
// `--seed` so a test can predict them, in any framing and card format the gateway reads, and
// injects faults on request: random bytes between frames, frames with a bad checksum or bad
// Wiegand parity, and one endless line without a delimiter.
//
// Independence: frames, checksums and Wiegand parity are built here, apart from
// protocols/card_reader.* (this file must not include it), so the gateway's decoder is checked
// against a second implementation. `--cards-file` gets, for every good swipe written, the card id
// exactly as the gateway prints it in raw mode (README.md of this folder) — faults never appear
// there, so the file is what the central side must receive, in order.
//
// One thread; blocking writes with a poll timeout so SIGINT/SIGTERM end it promptly. A TCP client
// that disconnects loses the swipes sent while nobody was connected (as with a real converter);
// the next client gets the rest.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "tools/sim/sim_cli.h"

namespace {

using Clock = std::chrono::steady_clock;
using gw::sim::usage_error;

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;

constexpr char kUsage[] =
    R"(usage: card_reader_sim (--pty [--link PATH] | --tcp [--bind ADDR] [--port P])
                       [--framing line|stx_etx|fixed] [--delimiter ESC] [--length N]
                       [--format decimal|hex|wiegand26|wiegand34] [--digits N]
                       [--seed N] [--count N] [--rate R] [--cards-file FILE]
                       [--garbage-every K] [--garbage-bytes N] [--bad-checksum-every K]
                       [--bad-parity-every K] [--endless-line N] [--endless-after M]
                       [--fixed-gap-ms MS] [--exit-when-done]

A card reader streaming swipes, for the gateway's serial_line / tcp_line drivers.

  --pty                 serve on a new pseudo-terminal; prints "pty SLAVE_PATH"
  --link PATH           also symlink the pty's slave to PATH (replaced if it is a symlink)
  --tcp                 serve one TCP client at a time; prints "listening PORT"; sending starts
                        when the first client connects ("connected" is printed each time)
  --bind ADDR           IPv4 address to listen on (default 127.0.0.1)
  --port P              TCP port (default 0: the kernel picks one)
  --framing F           line (default) | stx_etx (EM4100: STX, 10 hex, 2 hex XOR, ETX) | fixed
  --delimiter ESC       line delimiter, C escapes allowed (default "\r\n")
  --length N            fixed frame length in bytes (default: 4 for wiegand26, 5 for wiegand34,
                        4 otherwise)
  --format F            decimal (default) | hex | wiegand26 | wiegand34
  --digits N            line decimal/hex: zero-pad card numbers to N digits (default 10 / 8)
  --seed N              first card number (default 1000000); card i is seed + i
  --count N             swipes to send (default 100); 0 = until stopped
  --rate R              swipes per second, decimals allowed (default 10); 0 = as fast as the
                        reader takes them
  --cards-file FILE     write each good swipe's card id, as the gateway prints it, one per line
  --garbage-every K     after every K-th swipe, send garbage (not counted as a swipe):
                        line: one junk line (0xFF then random bytes, then the delimiter);
                        stx_etx: random bytes outside any frame (never STX);
                        fixed: a partial frame, then a pause of --fixed-gap-ms
  --garbage-bytes N     garbage size (default 16; fixed: capped at length - 1)
  --bad-checksum-every K  stx_etx: after every K-th swipe, a frame with a wrong XOR checksum
  --bad-parity-every K  wiegand formats: after every K-th swipe, a frame with one bit flipped
  --endless-line N      once, send N bytes without a delimiter (line: 'Z's, then one delimiter
                        so the next swipe starts a new line; stx_etx: STX then 'A's, no ETX),
                        then resume with the next swipe
  --endless-after M     ... after M swipes (default: half of --count)
  --fixed-gap-ms MS     pause after a fixed-framing partial frame (default 300)
  --exit-when-done      exit 0 once every swipe is sent (default: keep the line open until
                        SIGINT/SIGTERM, so the gateway does not see the reader go away)

After the last swipe it prints "done N" (N = good swipes written). Exit status: 0 on
SIGINT/SIGTERM or --exit-when-done, 1 on a runtime failure, 2 on a bad command line.
)";

enum class Framing { kLine, kStxEtx, kFixed };
enum class Format { kDecimal, kHex, kWiegand26, kWiegand34 };

struct Options {
  bool pty = false;
  std::string link;
  bool tcp = false;
  std::string bind = "127.0.0.1";
  int port = 0;
  Framing framing = Framing::kLine;
  std::string delimiter = "\r\n";
  int length = 0;
  Format format = Format::kDecimal;
  int digits = 0;
  uint64_t seed = 1000000;
  uint64_t count = 100;
  double rate = 10;
  std::string cards_file;
  uint64_t garbage_every = 0;
  int garbage_bytes = 16;
  uint64_t bad_checksum_every = 0;
  uint64_t bad_parity_every = 0;
  uint64_t endless_line = 0;
  std::optional<uint64_t> endless_after;
  int fixed_gap_ms = 300;
  bool exit_when_done = false;
};

volatile sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

uint64_t parse_u64(std::string_view flag, std::string_view text, uint64_t max) {
  uint64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v > max) {
    usage_error(std::string(flag) + ": '" + std::string(text) + "' is not an integer in 0.." +
                std::to_string(max));
  }
  return v;
}

std::string unescape(std::string_view flag, std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\') {
      out += s[i];
      continue;
    }
    if (++i >= s.size()) usage_error(std::string(flag) + ": trailing backslash");
    switch (s[i]) {
      case 'r':
        out += '\r';
        break;
      case 'n':
        out += '\n';
        break;
      case 't':
        out += '\t';
        break;
      case '\\':
        out += '\\';
        break;
      case 'x': {
        if (i + 2 >= s.size()) usage_error(std::string(flag) + ": \\x needs two hex digits");
        unsigned v = 0;
        const auto [end, ec] = std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16);
        if (ec != std::errc() || end != s.data() + i + 3) {
          usage_error(std::string(flag) + ": \\x needs two hex digits");
        }
        out += static_cast<char>(v);
        i += 2;
        break;
      }
      default:
        usage_error(std::string(flag) + ": unknown escape \\" + std::string(1, s[i]));
    }
  }
  return out;
}

Options parse_options(int argc, char** argv) {
  Options o;
  for (gw::sim::FlagReader args(argc, argv, kUsage); args.next();) {
    const std::string_view flag = args.flag();
    auto positive = [&](uint64_t max) { return parse_u64(flag, args.value(), max); };
    if (flag == "--pty") {
      o.pty = true;
    } else if (flag == "--link") {
      o.link = std::string(args.value());
    } else if (flag == "--tcp") {
      o.tcp = true;
    } else if (flag == "--bind") {
      o.bind = std::string(args.value());
    } else if (flag == "--port") {
      o.port = gw::sim::parse_int(flag, args.value(), 0, 65535);
    } else if (flag == "--framing") {
      const auto v = args.value();
      if (v == "line")
        o.framing = Framing::kLine;
      else if (v == "stx_etx")
        o.framing = Framing::kStxEtx;
      else if (v == "fixed")
        o.framing = Framing::kFixed;
      else
        usage_error("--framing: '" + std::string(v) + "' is not line, stx_etx or fixed");
    } else if (flag == "--delimiter") {
      o.delimiter = unescape(flag, args.value());
      if (o.delimiter.empty() || o.delimiter.size() > 8) usage_error("--delimiter: 1..8 bytes");
    } else if (flag == "--length") {
      o.length = gw::sim::parse_int(flag, args.value(), 1, 64);
    } else if (flag == "--format") {
      const auto v = args.value();
      if (v == "decimal")
        o.format = Format::kDecimal;
      else if (v == "hex")
        o.format = Format::kHex;
      else if (v == "wiegand26")
        o.format = Format::kWiegand26;
      else if (v == "wiegand34")
        o.format = Format::kWiegand34;
      else
        usage_error("--format: '" + std::string(v) +
                    "' is not decimal, hex, wiegand26 or wiegand34");
    } else if (flag == "--digits") {
      o.digits = gw::sim::parse_int(flag, args.value(), 1, 20);
    } else if (flag == "--seed") {
      o.seed = positive(UINT64_MAX / 2);
    } else if (flag == "--count") {
      o.count = positive(UINT64_MAX / 2);
    } else if (flag == "--rate") {
      const auto v = args.value();
      const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), o.rate);
      if (ec != std::errc() || end != v.data() + v.size() || !(o.rate >= 0) || o.rate > 1e6) {
        usage_error("--rate: '" + std::string(v) + "' is not a number in 0..1000000");
      }
    } else if (flag == "--cards-file") {
      o.cards_file = std::string(args.value());
    } else if (flag == "--garbage-every") {
      o.garbage_every = positive(UINT32_MAX);
    } else if (flag == "--garbage-bytes") {
      o.garbage_bytes = gw::sim::parse_int(flag, args.value(), 1, 1 << 20);
    } else if (flag == "--bad-checksum-every") {
      o.bad_checksum_every = positive(UINT32_MAX);
    } else if (flag == "--bad-parity-every") {
      o.bad_parity_every = positive(UINT32_MAX);
    } else if (flag == "--endless-line") {
      o.endless_line = positive(uint64_t{1} << 34);
    } else if (flag == "--endless-after") {
      o.endless_after = positive(UINT64_MAX / 2);
    } else if (flag == "--fixed-gap-ms") {
      o.fixed_gap_ms = gw::sim::parse_int(flag, args.value(), 1, 60000);
    } else if (flag == "--exit-when-done") {
      o.exit_when_done = true;
    } else {
      usage_error("unknown flag '" + std::string(flag) + "'");
    }
  }
  if (o.pty == o.tcp) usage_error("give exactly one of --pty and --tcp");
  if (!o.link.empty() && !o.pty) usage_error("--link goes with --pty");
  const bool wiegand = o.format == Format::kWiegand26 || o.format == Format::kWiegand34;
  if (o.framing == Framing::kStxEtx && wiegand) {
    usage_error("--format: stx_etx frames carry decimal or hex cards, not Wiegand");
  }
  if (o.bad_checksum_every && o.framing != Framing::kStxEtx) {
    usage_error("--bad-checksum-every needs --framing stx_etx (the others have no checksum)");
  }
  if (o.bad_parity_every && !wiegand) usage_error("--bad-parity-every needs a wiegand --format");
  if (o.endless_line && o.framing == Framing::kFixed) {
    usage_error("--endless-line needs --framing line or stx_etx (fixed frames have no end marker)");
  }
  if (o.framing == Framing::kFixed) {
    const int need = o.format == Format::kWiegand26 ? 4 : o.format == Format::kWiegand34 ? 5 : 1;
    if (o.length == 0) o.length = std::max(need, 4);
    if (o.length < need) usage_error("--length: wiegand needs at least " + std::to_string(need));
    if (o.format == Format::kDecimal && o.length > 8) usage_error("--length: decimal needs <= 8");
  } else if (o.length != 0) {
    usage_error("--length goes with --framing fixed");
  }
  if (o.digits == 0) o.digits = o.format == Format::kHex ? 8 : 10;
  if (!o.endless_after) o.endless_after = o.count / 2;
  return o;
}

// ---- frames ----

std::string hex_upper(uint64_t v, int digits) {
  std::string out(static_cast<std::size_t>(digits), '0');
  for (int i = digits - 1; i >= 0 && v; --i, v >>= 4)
    out[static_cast<std::size_t>(i)] = "0123456789ABCDEF"[v & 15];
  return out;
}

// Wiegand H10301 (26) / H10306 (34): even parity over the first half, odd over the second.
uint64_t wiegand(uint64_t facility, uint64_t card, int n) {
  const int data_bits = n - 2;
  const uint64_t data = (facility << 16) | card;
  const int half = data_bits / 2;
  const uint64_t high = data >> half, low = data & ((uint64_t{1} << half) - 1);
  const uint64_t even = static_cast<uint64_t>(__builtin_popcountll(high) & 1);
  const uint64_t odd = static_cast<uint64_t>((__builtin_popcountll(low) & 1) ^ 1);
  return (even << (n - 1)) | (data << 1) | odd;
}

class Reader {
 public:
  explicit Reader(Options o) : o_(std::move(o)), rng_(o_.seed ^ 0x5eed) {}

  // The frame for card number v, and the id the gateway prints for it.
  std::pair<std::string, std::string> swipe(uint64_t v) const {
    switch (o_.framing) {
      case Framing::kLine:
        return line_swipe(v);
      case Framing::kStxEtx:
        return stx_swipe(v);
      case Framing::kFixed:
        return fixed_swipe(v);
    }
    return {};
  }

  std::string garbage() {
    const std::size_t n = static_cast<std::size_t>(o_.garbage_bytes);
    std::string out;
    switch (o_.framing) {
      case Framing::kLine: {
        out += '\xff';  // never a valid card line
        while (out.size() < n) {
          const char c = static_cast<char>(rng_());
          if (o_.delimiter.find(c) == std::string::npos) out += c;
        }
        return out + o_.delimiter;
      }
      case Framing::kStxEtx:
        while (out.size() < n) {
          const char c = static_cast<char>(rng_());
          if (c != '\x02') out += c;
        }
        return out;
      case Framing::kFixed:
        while (out.size() < std::min<std::size_t>(n, static_cast<std::size_t>(o_.length - 1))) {
          out += static_cast<char>(rng_());
        }
        return out;
    }
    return out;
  }

  std::string bad_checksum(uint64_t v) const {
    std::string f = stx_swipe(v).first;
    f[12] = f[12] == '0' ? '1' : '0';  // low digit of the checksum
    return f;
  }

  std::string bad_parity(uint64_t v) {
    const int n = bits();
    const uint64_t flipped =
        wiegand_value(v) ^ (uint64_t{1} << (rng_() % static_cast<unsigned>(n)));
    return encode_bits(flipped).first;
  }

 private:
  int bits() const { return o_.format == Format::kWiegand26 ? 26 : 34; }
  uint64_t wiegand_value(uint64_t v) const {
    const uint64_t fac_mask = o_.format == Format::kWiegand26 ? 0xFF : 0xFFFF;
    return wiegand((v >> 16) & fac_mask, v & 0xFFFF, bits());
  }
  std::string wiegand_id(uint64_t v) const {
    const uint64_t fac_mask = o_.format == Format::kWiegand26 ? 0xFF : 0xFFFF;
    return std::to_string((v >> 16) & fac_mask) + ":" + std::to_string(v & 0xFFFF);
  }
  // Wiegand bits in the framing's encoding: a '0'/'1' line, or right-aligned fixed bytes.
  std::pair<std::string, std::string> encode_bits(uint64_t w) const {
    if (o_.framing == Framing::kLine) {
      std::string s;
      for (int i = bits() - 1; i >= 0; --i) s += ((w >> i) & 1) ? '1' : '0';
      return {s + o_.delimiter, ""};
    }
    return {big_endian(w), ""};
  }
  std::string big_endian(uint64_t w) const {
    std::string out(static_cast<std::size_t>(o_.length), '\0');
    for (int i = o_.length - 1; i >= 0 && i >= o_.length - 8; --i, w >>= 8) {
      out[static_cast<std::size_t>(i)] = static_cast<char>(w & 0xFF);
    }
    return out;
  }

  std::pair<std::string, std::string> line_swipe(uint64_t v) const {
    switch (o_.format) {
      case Format::kDecimal: {
        std::string d = std::to_string(v);
        if (d.size() < static_cast<std::size_t>(o_.digits)) {
          d.insert(0, static_cast<std::size_t>(o_.digits) - d.size(), '0');
        }
        return {d + o_.delimiter, d};
      }
      case Format::kHex: {
        int digits = o_.digits;
        while (digits < 16 && (v >> (4 * digits))) ++digits;
        const std::string h = hex_upper(v, digits);
        return {h + o_.delimiter, h};
      }
      case Format::kWiegand26:
      case Format::kWiegand34:
        return {encode_bits(wiegand_value(v)).first, wiegand_id(v)};
    }
    return {};
  }

  std::pair<std::string, std::string> stx_swipe(uint64_t v) const {
    const uint64_t data = v & 0xFFFFFFFFFFull;  // 5 bytes: version + 32-bit tag
    uint8_t x = 0;
    for (int i = 0; i < 5; ++i) x ^= static_cast<uint8_t>(data >> (8 * i));
    const std::string hex = hex_upper(data, 10);
    const std::string frame = "\x02" + hex + hex_upper(x, 2) + "\x03";
    if (o_.format == Format::kHex) return {frame, hex};
    char dec[16];
    std::snprintf(dec, sizeof dec, "%010u", static_cast<unsigned>(data & 0xFFFFFFFFu));
    return {frame, dec};
  }

  std::pair<std::string, std::string> fixed_swipe(uint64_t v) const {
    switch (o_.format) {
      case Format::kDecimal: {
        const uint64_t masked = o_.length >= 8 ? v : v & ((uint64_t{1} << (8 * o_.length)) - 1);
        return {big_endian(masked), std::to_string(masked)};
      }
      case Format::kHex: {
        const std::string frame = big_endian(v);
        std::string id;
        for (char c : frame) id += hex_upper(static_cast<uint8_t>(c), 2);
        return {frame, id};
      }
      case Format::kWiegand26:
      case Format::kWiegand34:
        return {big_endian(wiegand_value(v)), wiegand_id(v)};
    }
    return {};
  }

  Options o_;
  std::mt19937_64 rng_;
};

// ---- the line ----

class Line {
 public:
  explicit Line(const Options& o) : o_(o) {}
  ~Line() {
    if (!o_.link.empty() && link_made_) ::unlink(o_.link.c_str());
  }

  bool open() { return o_.pty ? open_pty() : open_tcp(); }

  // Writes all of `bytes` to the reader's peer. False when the peer went away (TCP) or on
  // SIGINT/SIGTERM; `gone` tells which.
  bool send(std::string_view bytes, bool& gone) {
    gone = false;
    if (!o_.pty && client_ < 0 && !accept_client()) return false;
    const int fd = o_.pty ? master_ : client_;
    std::size_t off = 0;
    while (off < bytes.size()) {
      if (g_stop) return false;
      const ssize_t n = o_.pty ? ::write(fd, bytes.data() + off, bytes.size() - off)
                               : ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (n > 0) {
        off += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        pollfd p{fd, POLLOUT, 0};
        ::poll(&p, 1, 100);
        continue;
      }
      if (o_.pty) {
        std::fprintf(stderr, "card_reader_sim: write to the pty: %s\n", std::strerror(errno));
        std::exit(kExitFailure);
      }
      std::fprintf(stderr, "card_reader_sim: client gone (%s)\n", std::strerror(errno));
      ::close(client_);
      client_ = -1;
      gone = true;
      return false;
    }
    drain_input();
    return true;
  }

  // For TCP: blocks until a client connects (or a signal). Sending starts then.
  bool accept_client() {
    while (!g_stop) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      client_ = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (client_ < 0) continue;
      std::printf("connected\n");
      std::fflush(stdout);
      return true;
    }
    return false;
  }

  // Holds the line open until a signal; a TCP client that leaves is replaced by the next one.
  void linger() {
    while (!g_stop) {
      if (!o_.pty && client_ < 0) {
        accept_client();
        continue;
      }
      pollfd p{o_.pty ? master_ : client_, POLLIN, 0};
      if (::poll(&p, 1, 100) > 0) {
        char buf[512];
        const ssize_t n = ::read(p.fd, buf, sizeof buf);
        if (n == 0 && !o_.pty) {
          ::close(client_);
          client_ = -1;
        }
      }
    }
  }

 private:
  // Whatever the reader's side sends (nothing, normally) is read and dropped.
  void drain_input() {
    char buf[512];
    const int fd = o_.pty ? master_ : client_;
    while (::read(fd, buf, sizeof buf) > 0) {
    }
  }

  bool open_pty() {
    master_ = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
    if (master_ < 0 || ::grantpt(master_) != 0 || ::unlockpt(master_) != 0) {
      std::fprintf(stderr, "card_reader_sim: posix_openpt: %s\n", std::strerror(errno));
      return false;
    }
    char name[128];
    if (::ptsname_r(master_, name, sizeof name) != 0) return false;
    // Our own descriptor of the slave keeps the pty alive (and its raw mode) while the gateway
    // closes and reopens its end; bytes written meanwhile wait in the slave's input queue.
    hold_ = ::open(name, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    termios tio{};
    if (hold_ < 0 || ::tcgetattr(hold_, &tio) != 0) {
      std::fprintf(stderr, "card_reader_sim: open %s: %s\n", name, std::strerror(errno));
      return false;
    }
    cfmakeraw(&tio);
    tio.c_cflag |= CLOCAL | CREAD;
    if (::tcsetattr(hold_, TCSANOW, &tio) != 0) return false;
    if (!o_.link.empty()) {
      struct stat st {};
      if (::lstat(o_.link.c_str(), &st) == 0 && !S_ISLNK(st.st_mode)) {
        std::fprintf(stderr, "card_reader_sim: --link %s exists and is not a symlink\n",
                     o_.link.c_str());
        return false;
      }
      const std::string tmp = o_.link + ".tmp" + std::to_string(::getpid());
      ::unlink(tmp.c_str());
      if (::symlink(name, tmp.c_str()) != 0 || ::rename(tmp.c_str(), o_.link.c_str()) != 0) {
        std::fprintf(stderr, "card_reader_sim: --link %s: %s\n", o_.link.c_str(),
                     std::strerror(errno));
        return false;
      }
      link_made_ = true;
    }
    std::printf("pty %s\n", name);
    std::fflush(stdout);
    return true;
  }

  bool open_tcp() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(o_.port));
    if (::inet_pton(AF_INET, o_.bind.c_str(), &a.sin_addr) != 1) {
      usage_error("--bind: '" + o_.bind + "' is not an IPv4 address");
    }
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(listen_fd_, 4) != 0) {
      std::fprintf(stderr, "card_reader_sim: listen on %s:%d: %s\n", o_.bind.c_str(), o_.port,
                   std::strerror(errno));
      return false;
    }
    socklen_t len = sizeof a;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    std::printf("listening %u\n", ntohs(a.sin_port));
    std::fflush(stdout);
    return true;
  }

  const Options& o_;
  int master_ = -1, hold_ = -1, listen_fd_ = -1, client_ = -1;
  bool link_made_ = false;
};

// Sleeps in slices so that SIGINT/SIGTERM end the program promptly.
void sleep_until(Clock::time_point t) {
  while (!g_stop && Clock::now() < t) {
    std::this_thread::sleep_until(std::min(t, Clock::now() + std::chrono::milliseconds(100)));
  }
}

// The endless line: N bytes that never end a frame (line: 'Z's; stx_etx: STX then 'A's), then,
// for line framing, a delimiter so that the next swipe starts on a line of its own.
bool send_endless(Line& line, const Options& o) {
  bool gone = false;
  const bool stx = o.framing == Framing::kStxEtx;
  uint64_t left = o.endless_line;
  if (stx) {
    if (!line.send("\x02", gone)) return gone;
    --left;
  }
  const std::string block(std::size_t{1} << 16, stx ? 'A' : 'Z');
  while (left > 0) {
    const std::size_t n = static_cast<std::size_t>(std::min<uint64_t>(left, block.size()));
    if (!line.send(std::string_view(block).substr(0, n), gone)) return gone;
    left -= n;
  }
  if (!stx && !line.send(o.delimiter, gone)) return gone;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  gw::sim::set_program_name("card_reader_sim");
  const Options o = parse_options(argc, argv);
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  FILE* cards = nullptr;
  if (!o.cards_file.empty()) {
    cards = std::fopen(o.cards_file.c_str(), "w");
    if (!cards) {
      std::fprintf(stderr, "card_reader_sim: --cards-file %s: %s\n", o.cards_file.c_str(),
                   std::strerror(errno));
      return kExitFailure;
    }
  }
  Line line(o);
  if (!line.open()) return kExitFailure;
  if (o.tcp && !line.accept_client()) return kExitOk;

  Reader reader(o);
  const auto start = Clock::now();
  uint64_t sent = 0;
  bool endless_done = o.endless_line == 0;
  std::string batch;
  std::vector<std::string> batch_ids;
  // Sends what is batched; false only on a signal.
  auto flush = [&]() {
    if (batch.empty()) return true;
    bool gone = false;
    const bool ok = line.send(batch, gone);
    if (ok && cards) {
      for (const auto& id : batch_ids) std::fprintf(cards, "%s\n", id.c_str());
      std::fflush(cards);
    }
    if (ok) sent += batch_ids.size();
    batch.clear();
    batch_ids.clear();
    return ok || gone;  // a client that left loses this batch; the next one gets the rest
  };

  for (uint64_t i = 0; (o.count == 0 || i < o.count) && !g_stop; ++i) {
    if (o.rate > 0) {
      const auto due = start + std::chrono::duration_cast<Clock::duration>(
                                   std::chrono::duration<double>(static_cast<double>(i) / o.rate));
      if (due > Clock::now()) {
        if (!flush()) break;
        sleep_until(due);
      }
    }
    if (!endless_done && i == *o.endless_after) {
      if (!flush()) break;
      if (!send_endless(line, o)) break;
      endless_done = true;
    }
    auto [frame, id] = reader.swipe(o.seed + i);
    batch += frame;
    batch_ids.push_back(std::move(id));
    const uint64_t n = i + 1;
    if (o.garbage_every && n % o.garbage_every == 0) {
      batch += reader.garbage();
      if (o.framing == Framing::kFixed) {
        if (!flush()) break;
        sleep_until(Clock::now() + std::chrono::milliseconds(o.fixed_gap_ms));
      }
    }
    if (o.bad_checksum_every && n % o.bad_checksum_every == 0) {
      batch += reader.bad_checksum(o.seed + i);
    }
    if (o.bad_parity_every && n % o.bad_parity_every == 0) {
      batch += reader.bad_parity(o.seed + i);
    }
    if (batch.size() >= 4096 && !flush()) break;
  }
  flush();
  if (cards) std::fclose(cards);
  if (g_stop) return kExitOk;
  std::printf("done %llu\n", static_cast<unsigned long long>(sent));
  std::fflush(stdout);
  if (!o.exit_when_done) line.linger();
  return kExitOk;
}
