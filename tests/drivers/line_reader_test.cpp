// serial_line and tcp_line against real pseudo-terminals and real loopback sockets: the test plays
// the card reader (writes frames on the pty master, or serves TCP) and checks the events, link
// changes and rejections the driver reports — including a reader that is unplugged and plugged
// back in, and a TCP reader that goes silent.
#include "drivers/line_reader/line_reader.h"

#include <fcntl.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

using namespace gw::drivers;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace cr = gw::protocols::card_reader;
namespace v1 = campus::gateway::v1;

namespace {

// What the driver reported, in order.
struct Seen {
  std::vector<v1::AccessBody> swipes;
  std::vector<std::pair<bool, std::string>> links;
  std::vector<std::pair<std::string, std::string>> bad;
  std::size_t traced_bytes = 0;
  std::vector<std::string> notes;

  std::vector<std::string> cards() const {
    std::vector<std::string> out;
    for (const auto& s : swipes) out.push_back(s.credential());
    return out;
  }
  std::size_t downs() const {
    return static_cast<std::size_t>(
        std::count_if(links.begin(), links.end(), [](const auto& l) { return !l.first; }));
  }
  bool up() const { return !links.empty() && links.back().first; }
  bool down() const { return !links.empty() && !links.back().first; }
};

SourceCallbacks record(Seen& seen) {
  SourceCallbacks cb;
  cb.event = [&seen](SourceEvent e) {
    REQUIRE(e.event.has_access());
    CHECK(e.cursor.empty());
    seen.swipes.push_back(e.event.access());
  };
  cb.link = [&seen](bool up, const std::string& why) { seen.links.emplace_back(up, why); };
  cb.bad_input = [&seen](std::string_view kind, const std::string& message) {
    seen.bad.emplace_back(std::string(kind), message);
  };
  cb.trace = [&seen](bool tx, std::span<const uint8_t> bytes, const std::string& note) {
    CHECK_FALSE(tx);
    seen.traced_bytes += bytes.size();
    seen.notes.push_back(note);
  };
  return cb;
}

struct Rig {
  asio::io_context io;
  Seen seen;
  std::shared_ptr<LineReader> reader;

  void start(LineReaderSettings s) {
    REQUIRE(validate(s));
    reader = std::make_shared<LineReader>(io.get_executor(), std::move(s));
    reader->start(record(seen), "");
  }
  ~Rig() {
    if (reader) reader->stop();
    io.run_for(20ms);
  }
  template <typename Pred>
  bool run_until(Pred done, std::chrono::milliseconds limit) {
    const auto end = Clock::now() + limit;
    while (!done() && Clock::now() < end) io.run_for(5ms);
    return done();
  }
  void run_for(std::chrono::milliseconds d) {
    const auto end = Clock::now() + d;
    while (Clock::now() < end) io.run_for(5ms);
  }
};

// A card reader on the far side of a pseudo-terminal, reached through a stable symlink the way
// udev's /dev/serial/by-id/... names reach a USB adapter.
class PtyReader {
 public:
  explicit PtyReader(std::string link) : link_(std::move(link)) { plug_in(); }
  ~PtyReader() { unplug(); }

  void plug_in() {
    char name[128];
    REQUIRE(openpty(&master_, &slave_, name, nullptr, nullptr) == 0);
    termios tio{};
    REQUIRE(tcgetattr(slave_, &tio) == 0);
    cfmakeraw(&tio);  // no echo, no CR/LF translation before the driver sets its own mode
    REQUIRE(tcsetattr(slave_, TCSANOW, &tio) == 0);
    REQUIRE(fcntl(master_, F_SETFL, fcntl(master_, F_GETFL) | O_NONBLOCK) == 0);
    std::filesystem::remove(link_);
    std::filesystem::create_symlink(name, link_);
  }
  // The adapter is pulled out: its tty goes away and so does the by-id link.
  void unplug() {
    if (master_ >= 0) close(master_);
    if (slave_ >= 0) close(slave_);
    master_ = slave_ = -1;
    std::error_code ec;
    std::filesystem::remove(link_, ec);
  }
  // Writes everything, letting `rig` read meanwhile (the pty holds only a few KiB).
  void send(Rig& rig, std::string_view bytes) {
    std::size_t off = 0;
    const auto end = Clock::now() + 10s;
    while (off < bytes.size() && Clock::now() < end) {
      const ssize_t n = write(master_, bytes.data() + off, bytes.size() - off);
      if (n > 0) {
        off += static_cast<std::size_t>(n);
      } else {
        rig.io.run_for(1ms);
      }
    }
    REQUIRE(off == bytes.size());
  }
  const std::string& link() const { return link_; }

 private:
  std::string link_;
  int master_ = -1, slave_ = -1;
};

std::string temp_link(const std::string& name) {
  return (std::filesystem::temp_directory_path() / (name + "-" + std::to_string(getpid())))
      .string();
}

LineReaderSettings serial_settings(const std::string& path) {
  LineReaderSettings s;
  s.device_id = "reader-1";
  s.device_path = path;
  s.door = "north-gate-1";
  s.direction = v1::IN;
  s.reopen_min = 20ms;
  s.reopen_max = 100ms;
  return s;
}

std::string em_frame(std::string_view hex10, int checksum_delta = 0) {
  unsigned x = 0;
  for (std::size_t i = 0; i < hex10.size(); i += 2) {
    x ^= static_cast<unsigned>(std::stoul(std::string(hex10.substr(i, 2)), nullptr, 16));
  }
  char cs[3];
  std::snprintf(cs, sizeof cs, "%02X", (x + static_cast<unsigned>(checksum_delta)) & 0xFF);
  return "\x02" + std::string(hex10) + cs + "\x03";
}

// The card reader's TCP side (a networked reader, or a serial server's raw port).
class TcpReader {
 public:
  explicit TcpReader(asio::io_context& io) : io_(io), acceptor_(io) { listen(); }

  void listen(uint16_t port = 0) {
    acceptor_.open(asio::ip::tcp::v4());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind({asio::ip::make_address("127.0.0.1"), port});
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    accept();
  }
  // Stops taking connections (the reader's server process hangs or is gone) without touching
  // connections already made.
  void stop_listening() { acceptor_.close(); }
  void send(std::string bytes) {
    REQUIRE(!clients_.empty());
    auto buf = std::make_shared<std::string>(std::move(bytes));
    asio::async_write(*clients_.back(), asio::buffer(*buf),
                      [buf](const boost::system::error_code&, std::size_t) {});
  }
  void close_client() {
    REQUIRE(!clients_.empty());
    clients_.back()->close();
  }
  uint16_t port() const { return port_; }
  std::size_t accepted() const { return clients_.size(); }

 private:
  void accept() {
    acceptor_.async_accept([this](const boost::system::error_code& ec, asio::ip::tcp::socket s) {
      if (ec) return;
      clients_.push_back(std::make_shared<asio::ip::tcp::socket>(std::move(s)));
      accept();
    });
  }
  asio::io_context& io_;
  asio::ip::tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  std::vector<std::shared_ptr<asio::ip::tcp::socket>> clients_;
};

LineReaderSettings tcp_settings(uint16_t port) {
  LineReaderSettings s;
  s.device_id = "reader-tcp";
  s.host = "127.0.0.1";
  s.port = port;
  s.door = "lab-door";
  s.direction = v1::OUT;
  s.reopen_min = 20ms;
  s.reopen_max = 100ms;
  return s;
}

}  // namespace

TEST_CASE("serial_line: swipes on a pty become access events", "[line_reader]") {
  PtyReader pty(temp_link("gw-reader-a"));
  Rig rig;
  auto s = serial_settings(pty.link());
  s.framing.type = cr::FramingType::kStxEtx;
  s.format = cr::CardFormat::kDecimal;
  rig.start(s);
  REQUIRE(rig.run_until([&] { return rig.seen.up(); }, 2s));
  CHECK(rig.seen.links.size() == 1);

  // A good frame, one with a bad checksum, garbage, a good frame cut into single bytes.
  pty.send(rig, em_frame("0F00A1B2C3") + em_frame("0F00A1B2C4", 1) + "\xff\xfe junk");
  for (char c : em_frame("62E3086CED")) {
    pty.send(rig, std::string(1, c));
    rig.run_for(2ms);
  }
  REQUIRE(rig.run_until([&] { return rig.seen.swipes.size() == 2; }, 2s));
  CHECK(rig.seen.cards() == std::vector<std::string>{"0010597059", "3808980205"});
  const auto& swipe = rig.seen.swipes[0];
  CHECK(swipe.door() == "north-gate-1");
  CHECK(swipe.direction() == v1::IN);
  CHECK(swipe.result() == v1::RESULT_UNKNOWN);
  REQUIRE(rig.seen.bad.size() == 2);
  CHECK(rig.seen.bad[0].first == "checksum");
  CHECK(rig.seen.bad[1].first == "framing");
  for (const auto& [kind, message] : rig.seen.bad) {
    CHECK(message.find("A1B2") == std::string::npos);
  }
  // Every byte read was traced, frames noted as cards.
  CHECK(rig.seen.traced_bytes == 14 * 3 + 7);
  CHECK(std::count(rig.seen.notes.begin(), rig.seen.notes.end(), "card") == 2);
  CHECK(rig.reader->stats().swipes == 2);
}

TEST_CASE("serial_line: an unplugged reader is reopened when it comes back", "[line_reader]") {
  PtyReader pty(temp_link("gw-reader-b"));
  Rig rig;
  auto s = serial_settings(pty.link());
  s.framing = cr::Framing{cr::FramingType::kLine, "\r\n", 64, 0};
  rig.start(s);
  REQUIRE(rig.run_until([&] { return rig.seen.up(); }, 2s));
  pty.send(rig, "1001\r\n");
  REQUIRE(rig.run_until([&] { return rig.seen.swipes.size() == 1; }, 2s));

  // A half-sent line, then the adapter is pulled out.
  pty.send(rig, "10");
  rig.run_for(20ms);
  pty.unplug();
  REQUIRE(rig.run_until([&] { return rig.seen.down(); }, 2s));
  CHECK_THAT(rig.seen.links.back().second, Catch::Contains(pty.link()));
  // Gone for a while: the driver keeps polling for the path, reporting the outage once.
  rig.run_for(400ms);
  CHECK(rig.seen.downs() == 1);
  const auto failures = rig.reader->stats().open_failures;
  CHECK(failures >= 3);

  pty.plug_in();
  REQUIRE(rig.run_until([&] { return rig.seen.up(); }, 2s));
  pty.send(rig, "1002\r\n");
  REQUIRE(rig.run_until([&] { return rig.seen.swipes.size() == 2; }, 2s));
  // The half line from before the unplug did not glue onto the new one.
  CHECK(rig.seen.cards() == std::vector<std::string>{"1001", "1002"});
  CHECK(rig.seen.bad.empty());
  CHECK(rig.reader->stats().opens == 2);
}

TEST_CASE("serial_line: a reader plugged in after start is opened", "[line_reader]") {
  const std::string link = temp_link("gw-reader-c");
  std::filesystem::remove(link);
  Rig rig;
  rig.start(serial_settings(link));
  REQUIRE(rig.run_until([&] { return rig.seen.down(); }, 2s));
  CHECK_THAT(rig.seen.links[0].second, Catch::Contains("unplugged?"));
  PtyReader pty(link);
  REQUIRE(rig.run_until([&] { return rig.seen.up(); }, 2s));
  pty.send(rig, "77\r\n");
  REQUIRE(rig.run_until([&] { return rig.seen.swipes.size() == 1; }, 2s));
}

TEST_CASE("serial_line: an endless line is bounded, counted once, and resynced", "[line_reader]") {
  PtyReader pty(temp_link("gw-reader-d"));
  Rig rig;
  auto s = serial_settings(pty.link());
  s.framing = cr::Framing{cr::FramingType::kLine, "\r\n", 64, 0};
  rig.start(s);
  REQUIRE(rig.run_until([&] { return rig.seen.up(); }, 2s));
  std::size_t max_buffered = 0;
  const std::string block(4096, 'Z');
  for (int i = 0; i < 256; ++i) {  // 1 MiB without a delimiter
    pty.send(rig, block);
    rig.io.poll();
    max_buffered = std::max(max_buffered, rig.reader->buffered());
  }
  pty.send(rig, "\r\n4242\r\n");
  REQUIRE(rig.run_until([&] { return rig.seen.swipes.size() == 1; }, 5s));
  CHECK(rig.seen.cards() == std::vector<std::string>{"4242"});
  REQUIRE(rig.seen.bad.size() == 1);
  CHECK(rig.seen.bad[0].first == "overflow");
  CHECK(max_buffered <= 64 + cr::kMaxDelimiter + cr::kMaxSkipPiece);
}

TEST_CASE("serial_line: fixed frames; a pause drops a partial frame", "[line_reader]") {
  PtyReader pty(temp_link("gw-reader-e"));
  Rig rig;
  auto s = serial_settings(pty.link());
  s.framing = cr::Framing{cr::FramingType::kFixed, "", 4, 4};
  s.format = cr::CardFormat::kWiegand26;
  s.fixed_frame_gap = 50ms;
  rig.start(s);
  REQUIRE(rig.run_until([&] { return rig.seen.up(); }, 2s));
  // 26 bits right-aligned: facility 90, card 324 (00101101000000001010001000).
  const std::string frame("\x00\xB4\x02\x88", 4);
  pty.send(rig, frame.substr(0, 3));  // a stray partial frame
  rig.run_for(150ms);
  pty.send(rig, frame + frame);
  REQUIRE(rig.run_until([&] { return rig.seen.swipes.size() == 2; }, 2s));
  CHECK(rig.seen.cards() == std::vector<std::string>{"90:324", "90:324"});
  REQUIRE(rig.seen.bad.size() == 1);
  CHECK(rig.seen.bad[0].first == "framing");
}

TEST_CASE("tcp_line: swipes, then the peer closes and the driver reconnects", "[line_reader]") {
  Rig rig;
  TcpReader peer(rig.io);
  rig.start(tcp_settings(peer.port()));
  REQUIRE(rig.run_until([&] { return rig.seen.up() && peer.accepted() == 1; }, 2s));
  peer.send("0001\r\n00");
  peer.send("02\r\nnot a card\r\n");
  REQUIRE(rig.run_until([&] { return rig.seen.swipes.size() == 2; }, 2s));
  CHECK(rig.seen.cards() == std::vector<std::string>{"0001", "0002"});
  CHECK(rig.seen.swipes[0].door() == "lab-door");
  CHECK(rig.seen.swipes[0].direction() == v1::OUT);
  REQUIRE(rig.run_until([&] { return rig.seen.bad.size() == 1; }, 2s));
  CHECK(rig.seen.bad[0].first == "format");

  peer.close_client();
  REQUIRE(rig.run_until([&] { return rig.seen.down(); }, 2s));
  CHECK_THAT(rig.seen.links.back().second, Catch::Contains("closed by the reader"));
  REQUIRE(rig.run_until([&] { return rig.seen.up() && peer.accepted() == 2; }, 2s));
  peer.send("0003\r\n");
  REQUIRE(rig.run_until([&] { return rig.seen.swipes.size() == 3; }, 2s));
}

TEST_CASE("tcp_line: a silent peer is detected by idle_timeout", "[line_reader]") {
  Rig rig;
  TcpReader peer(rig.io);
  auto s = tcp_settings(peer.port());
  s.idle_timeout = 300ms;
  rig.start(s);
  REQUIRE(rig.run_until([&] { return rig.seen.up() && peer.accepted() == 1; }, 2s));

  // Traffic keeps the connection: no reconnect while bytes flow.
  for (int i = 0; i < 10; ++i) {
    peer.send("5\r\n");
    rig.run_for(100ms);
  }
  CHECK(peer.accepted() == 1);
  CHECK(rig.seen.swipes.size() == 10);

  // Silence: the driver reconnects, quietly, because the reader still answers.
  REQUIRE(rig.run_until([&] { return peer.accepted() == 2; }, 2s));
  CHECK(rig.reader->stats().idle_reconnects == 1);
  CHECK(rig.seen.links.size() == 1);

  // Silence again, and now the reader takes no connections: that is an outage.
  peer.stop_listening();
  REQUIRE(rig.run_until([&] { return rig.seen.down(); }, 2s));
  CHECK_THAT(rig.seen.links.back().second,
             Catch::Contains("no data for 300ms") && Catch::Contains("reconnecting failed"));
  CHECK(rig.seen.downs() == 1);
}

TEST_CASE("tcp_line: an unreachable reader is reported down once, retried with backoff",
          "[line_reader]") {
  Rig rig;
  uint16_t port = 0;
  {
    TcpReader closed(rig.io);
    port = closed.port();
    closed.stop_listening();
  }
  rig.start(tcp_settings(port));
  REQUIRE(rig.run_until([&] { return rig.seen.down(); }, 2s));
  CHECK_THAT(rig.seen.links[0].second, Catch::Contains("connect to 127.0.0.1:"));
  rig.run_for(500ms);
  CHECK(rig.seen.links.size() == 1);
  // 20ms doubling to 100ms (jittered half to full): a handful of attempts, not hundreds.
  const auto attempts = rig.reader->stats().open_failures;
  CHECK(attempts >= 4);
  CHECK(attempts <= 40);
  TcpReader back(rig.io);  // a new port: the old one is gone for good; just check stop() is clean
  rig.reader->stop();
  const auto links = rig.seen.links.size();
  rig.run_for(200ms);
  CHECK(rig.seen.links.size() == links);
}

TEST_CASE("validate names what is wrong", "[line_reader]") {
  LineReaderSettings s;
  s.device_id = "r";
  CHECK_THAT(validate(s).message(), Catch::Contains("serial port or a bus"));
  s.device_path = "/dev/ttyUSB0";
  CHECK(validate(s));
  s.framing.type = cr::FramingType::kStxEtx;
  s.format = cr::CardFormat::kWiegand34;
  CHECK_THAT(validate(s).message(), Catch::Contains("no Wiegand parity"));
  s.format = cr::CardFormat::kHex;
  s.framing.type = cr::FramingType::kFixed;
  s.framing.length = 0;
  CHECK_FALSE(validate(s));
}

// ---- the simulator against the driver ----------------------------------------------------------
// card_reader_sim builds frames, checksums and Wiegand parity on its own; here its swipes go
// through the driver over a real socket or pty and must come out as exactly its cards file.

namespace {

class SimProcess {
 public:
  explicit SimProcess(std::vector<std::string> args) {
    args.insert(args.begin(), std::string(GW_BINARY_DIR) + "/tools/sim/card_reader_sim");
    int out[2];
    REQUIRE(pipe(out) == 0);
    pid_ = fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      dup2(out[1], 1);
      close(out[0]);
      close(out[1]);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(out[1]);
    out_ = fdopen(out[0], "r");
    char line[256];
    REQUIRE(fgets(line, sizeof line, out_) != nullptr);  // "listening PORT" or "pty PATH"
    first_line_ = line;
    first_line_.pop_back();
  }
  ~SimProcess() {
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    fclose(out_);
  }
  // The value after the first word of the first line.
  std::string endpoint() const { return first_line_.substr(first_line_.find(' ') + 1); }

 private:
  pid_t pid_ = -1;
  FILE* out_ = nullptr;
  std::string first_line_;
};

std::vector<std::string> read_lines(const std::string& path) {
  std::vector<std::string> out;
  FILE* f = fopen(path.c_str(), "r");
  if (!f) return out;
  char line[256];
  while (fgets(line, sizeof line, f)) {
    std::string s(line);
    if (!s.empty() && s.back() == '\n') s.pop_back();
    out.push_back(s);
  }
  fclose(f);
  return out;
}

struct SimCase {
  const char* framing;
  const char* format;
  cr::FramingType type;
  cr::CardFormat card;
  std::size_t length;                      // fixed
  std::vector<std::string> faults;         // extra sim flags
  std::map<std::string, std::size_t> bad;  // expected bad_input kinds for 120 swipes
};

}  // namespace

TEST_CASE("card_reader_sim's swipes decode to exactly its cards file", "[line_reader][sim]") {
  using F = cr::FramingType;
  using C = cr::CardFormat;
  const std::vector<SimCase> cases = {
      {"line", "decimal", F::kLine, C::kDecimal, 0, {"--garbage-every", "7"}, {{"format", 17}}},
      {"line", "hex", F::kLine, C::kHex, 0, {"--garbage-every", "7"}, {{"format", 17}}},
      {"line",
       "wiegand26",
       F::kLine,
       C::kWiegand26,
       0,
       {"--garbage-every", "7", "--bad-parity-every", "5"},
       {{"format", 17}, {"parity", 24}}},
      {"line",
       "wiegand34",
       F::kLine,
       C::kWiegand34,
       0,
       {"--bad-parity-every", "5"},
       {{"parity", 24}}},
      {"stx_etx",
       "decimal",
       F::kStxEtx,
       C::kDecimal,
       0,
       {"--garbage-every", "7", "--bad-checksum-every", "5"},
       {{"framing", 17}, {"checksum", 24}}},
      {"stx_etx", "hex", F::kStxEtx, C::kHex, 0, {}, {}},
      {"fixed", "decimal", F::kFixed, C::kDecimal, 4, {"--garbage-every", "40"}, {{"framing", 3}}},
      {"fixed", "hex", F::kFixed, C::kHex, 4, {}, {}},
      {"fixed",
       "wiegand26",
       F::kFixed,
       C::kWiegand26,
       4,
       {"--bad-parity-every", "5"},
       {{"parity", 24}}},
      {"fixed",
       "wiegand34",
       F::kFixed,
       C::kWiegand34,
       5,
       {"--bad-parity-every", "5"},
       {{"parity", 24}}},
  };
  for (const SimCase& c : cases) {
    for (const bool pty : {false, true}) {
      // Every combination over TCP; the pty once per framing.
      if (pty && std::string(c.format) != "decimal") continue;
      DYNAMIC_SECTION(c.framing << " " << c.format << (pty ? " pty" : " tcp")) {
        const std::string cards = temp_link("gw-sim-cards");
        std::vector<std::string> args = {pty ? "--pty" : "--tcp",
                                         "--framing",
                                         c.framing,
                                         "--format",
                                         c.format,
                                         "--count",
                                         "120",
                                         "--rate",
                                         "0",
                                         "--seed",
                                         "3000000123",
                                         "--fixed-gap-ms",
                                         "150",
                                         "--cards-file",
                                         cards};
        args.insert(args.end(), c.faults.begin(), c.faults.end());
        SimProcess sim(args);
        Rig rig;
        LineReaderSettings s;
        s.device_id = "sim-reader";
        if (pty) {
          s.device_path = sim.endpoint();
        } else {
          s.host = "127.0.0.1";
          s.port = static_cast<uint16_t>(std::stoi(sim.endpoint()));
        }
        s.framing.type = c.type;
        s.framing.length = c.length;
        s.framing.max_length = std::max<std::size_t>(64, c.length);
        s.format = c.card;
        s.fixed_frame_gap = 50ms;
        rig.start(s);
        REQUIRE(rig.run_until([&] { return rig.seen.swipes.size() >= 120; }, 10s));
        rig.run_for(100ms);  // nothing more may come
        const auto expected = read_lines(cards);
        REQUIRE(expected.size() == 120);
        CHECK(rig.seen.cards() == expected);
        std::map<std::string, std::size_t> bad;
        for (const auto& b : rig.seen.bad) ++bad[b.first];
        CHECK(bad == c.bad);
        std::filesystem::remove(cards);
      }
    }
  }
}
