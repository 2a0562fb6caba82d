#include "tools/gatewayctl/probe.h"

#include <arpa/inet.h>
#include <modbus/modbus.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <thread>

namespace gw::ctl {
namespace {

using protocols::RegisterTable;
using protocols::ValueType;
using protocols::WordOrder;

Result<ProbeRequest> probe_args(std::vector<std::string> argv) {
  argv.insert(argv.begin(), "probe");
  Result<Invocation> inv = parse_arguments(argv);
  if (!inv) return inv.status();
  return parse_probe_request(*inv);
}

std::string probe_error(std::vector<std::string> argv) {
  Result<ProbeRequest> r = probe_args(std::move(argv));
  REQUIRE_FALSE(r);
  return r.status().message();
}

TEST_CASE("probe targets: tcp with and without port, IPv6, rtu with line settings") {
  auto t = parse_probe_target("tcp://10.0.3.21:1502");
  REQUIRE(t);
  CHECK(t->host == "10.0.3.21");
  CHECK(t->port == 1502);
  CHECK(parse_probe_target("tcp://meter.local")->port == 502);
  auto v6 = parse_probe_target("tcp://[fe80::1]:503");
  REQUIRE(v6);
  CHECK(v6->host == "fe80::1");
  CHECK(v6->text() == "tcp://[fe80::1]:503");
  auto rtu = parse_probe_target("rtu:/dev/ttyUSB0");
  REQUIRE(rtu);
  CHECK(rtu->kind == ProbeTarget::Kind::kRtu);
  CHECK(rtu->text() == "rtu:/dev/ttyUSB0:9600:8N1");
  auto rtu_e = parse_probe_target("rtu:/dev/ttyS1:19200:8e1");
  REQUIRE(rtu_e);
  CHECK(rtu_e->baud == 19200);
  CHECK(rtu_e->parity == 'E');
  CHECK(rtu_e->text() == "rtu:/dev/ttyS1:19200:8E1");
}

TEST_CASE("bad probe targets say what a good one looks like") {
  CHECK_THAT(parse_probe_target("10.0.3.21").status().message(),
             Catch::Contains("must be tcp://HOST[:PORT] or rtu:DEVICE[:BAUD[:FRAME]]"));
  CHECK_THAT(parse_probe_target("tcp://h:70000").status().message(),
             Catch::Contains("port must be 1..65535 (got '70000')"));
  CHECK_THAT(parse_probe_target("tcp://fe80::1").status().message(),
             Catch::Contains("IPv6 address in brackets"));
  CHECK_THAT(parse_probe_target("rtu:/dev/ttyUSB0:fast").status().message(),
             Catch::Contains("baud rate"));
  CHECK_THAT(parse_probe_target("rtu:/dev/ttyUSB0:9600:8X1").status().message(),
             Catch::Contains("e.g. 8N1 or 8E1 (got '8X1')"));
  CHECK_THAT(parse_probe_target("rtu:").status().message(), Catch::Contains("no serial port"));
}

TEST_CASE("probe options: defaults and the full modpoll-like set") {
  auto d = probe_args({"tcp://h"});
  REQUIRE(d);
  CHECK(d->unit == 1);
  CHECK(d->table == RegisterTable::kHolding);
  CHECK(d->address == 0);
  CHECK(d->count == 1);
  CHECK(d->timeout_ms == 1000);
  CHECK_FALSE(d->type);

  auto r = probe_args({"tcp://h", "--unit", "3", "--table", "input", "--address", "0x5000",
                       "--count", "4", "--type", "float32", "--word-order", "little", "--scale",
                       "0.01", "--offset", "-1", "--timeout", "250ms"});
  REQUIRE(r);
  CHECK(r->unit == 3);
  CHECK(r->table == RegisterTable::kInput);
  CHECK(r->address == 0x5000);
  CHECK(r->count == 4);
  CHECK(r->type == ValueType::kFloat32);
  CHECK(r->word_order == WordOrder::kLittle);
  CHECK(r->scale == 0.01);
  CHECK(r->offset == -1);
  CHECK(r->timeout_ms == 250);

  // --type alone reads exactly one value.
  CHECK(probe_args({"tcp://h", "--type", "uint64"})->count == 4);
}

TEST_CASE("probe counts are bounded by the protocol before libmodbus sees them") {
  CHECK(probe_error({"tcp://h", "--count", "126"}) ==
        "probe: --count must be 1..125 for the holding table (got '126')");
  CHECK(probe_args({"tcp://h", "--table", "coil", "--count", "2000"}));
  CHECK_THAT(probe_error({"tcp://h", "--table", "coil", "--count", "2001"}),
             Catch::Contains("1..2000"));
  CHECK_THAT(probe_error({"tcp://h", "--count", "0"}), Catch::Contains("1..125"));
  CHECK_THAT(probe_error({"tcp://h", "--count", "-5"}), Catch::Contains("1..125"));
  CHECK_THAT(probe_error({"tcp://h", "--address", "65535", "--count", "2"}),
             Catch::Contains("runs past the last address (65535)"));
  CHECK_THAT(probe_error({"tcp://h", "--address", "65536"}), Catch::Contains("0..65535"));
}

TEST_CASE("probe option values are checked and named") {
  CHECK_THAT(probe_error({"tcp://h", "--unit", "256"}), Catch::Contains("--unit must be 0..255"));
  CHECK_THAT(probe_error({"rtu:/dev/ttyUSB0", "--unit", "248"}), Catch::Contains("0..247"));
  CHECK_THAT(probe_error({"rtu:/dev/ttyUSB0", "--unit", "0"}), Catch::Contains("broadcast"));
  CHECK_THAT(probe_error({"tcp://h", "--table", "holdings"}),
             Catch::Contains("--table must be holding, input, coil or discrete (got 'holdings')"));
  CHECK_THAT(probe_error({"tcp://h", "--type", "float"}), Catch::Contains("(got 'float')"));
  CHECK_THAT(probe_error({"tcp://h", "--type", "int16", "--scale", "abc"}),
             Catch::Contains("--scale must be a number"));
  CHECK_THAT(probe_error({"tcp://h", "--scale", "2"}), Catch::Contains("need --type"));
  CHECK_THAT(probe_error({"tcp://h", "--type", "float32", "--count", "3"}),
             Catch::Contains("not a whole number of float32 values"));
  CHECK_THAT(probe_error({"tcp://h", "--table", "coil", "--type", "int16"}),
             Catch::Contains("must have type bool"));
  CHECK_THAT(probe_error({"tcp://h", "--timeout", "5"}),
             Catch::Contains("--timeout must be a duration"));
}

TEST_CASE("probe output: registers in decimal and hex, decoded values at their first register") {
  ProbeRequest r = *probe_args({"tcp://10.0.3.21", "--address", "2", "--count", "4", "--type",
                                "float32", "--word-order", "big"});
  ProbeResult res;
  res.registers = {0x4367, 0x7ae1, 0x7fc0, 0x0000};  // 231.48, then NaN
  res.latency_ms = 12.34;
  CHECK(format_probe(r, res, Style{false}) ==
        "tcp://10.0.3.21:502 unit 1, holding 2..5: 4 registers in 12.3 ms\n"
        "decoded as float32, word order big\n"
        "  ADDRESS              DEC     HEX              float32\n"
        "        2  (0x0002)  17255  0x4367               231.48\n"
        "        3  (0x0003)  31457  0x7ae1\n"
        "        4  (0x0004)  32704  0x7fc0  NaN (not a reading)\n"
        "        5  (0x0005)      0  0x0000\n");
}

TEST_CASE("probe output for bits, and as JSON") {
  ProbeRequest r =
      *probe_args({"tcp://h:1502", "--table", "coil", "--address", "10", "--count", "3"});
  ProbeResult res;
  res.bits = {1, 0, 1};
  res.latency_ms = 3;
  CHECK(format_probe(r, res, Style{false}) ==
        "tcp://h:1502 unit 1, coil 10..12: 3 bits in 3.0 ms\n"
        "  ADDRESS            BIT\n"
        "       10  (0x000a)    1\n"
        "       11  (0x000b)    0\n"
        "       12  (0x000c)    1\n");
  CHECK(
      probe_json(r, res).dump() ==
      R"({"target":"tcp://h:1502","unit":1,"table":"coil","address":10,"count":3,"latency_ms":3.0,"bits":[1,0,1]})");
}

TEST_CASE("Modbus exceptions are explained") {
  ProbeRequest r = *probe_args({"tcp://h", "--address", "100", "--count", "10"});
  CHECK(modbus_exception_text(2, r) ==
        "Modbus exception 2 (illegal data address): unit 1 has no holding 100..109; check "
        "--address and --count (addresses are zero-based: a manual's 40001 is --address 0)");
  CHECK_THAT(modbus_exception_text(1, r), Catch::Contains("function 3"));
  CHECK_THAT(modbus_exception_text(11, r), Catch::Contains("got no answer from unit 1 behind it"));
}

// A libmodbus server on an ephemeral loopback port serving `connections` clients.
class ModbusServer {
 public:
  explicit ModbusServer(int connections) {
    ctx_ = modbus_new_tcp("127.0.0.1", 0);
    map_ = modbus_mapping_new(16, 16, 16, 16);
    for (int i = 0; i < 16; ++i) map_->tab_registers[i] = static_cast<uint16_t>(1000 + i);
    map_->tab_registers[0] = 0x4367;
    map_->tab_registers[1] = 0x7ae1;
    listen_ = modbus_tcp_listen(ctx_, 4);
    sockaddr_in addr{};
    socklen_t len = sizeof addr;
    getsockname(listen_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this, connections] {
      for (int c = 0; c < connections; ++c) {
        int s = listen_;
        if (modbus_tcp_accept(ctx_, &s) < 0) return;
        uint8_t query[MODBUS_TCP_MAX_ADU_LENGTH];
        for (;;) {
          const int n = modbus_receive(ctx_, query);
          if (n <= 0) break;
          modbus_reply(ctx_, query, n, map_);
        }
        modbus_close(ctx_);
      }
    });
  }
  ~ModbusServer() {
    thread_.join();
    ::close(listen_);
    modbus_mapping_free(map_);
    modbus_free(ctx_);
  }
  int port() const { return port_; }

 private:
  modbus_t* ctx_;
  modbus_mapping_t* map_;
  int listen_ = -1;
  int port_ = 0;
  std::thread thread_;
};

TEST_CASE("probe reads a real Modbus TCP server and decodes with the register-map code") {
  ModbusServer server(2);
  const std::string target = "tcp://127.0.0.1:" + std::to_string(server.port());
  ProbeRequest r = *probe_args({target, "--count", "2", "--type", "float32"});
  ProbeFailure failure;
  Result<ProbeResult> res = run_probe(r, &failure);
  REQUIRE(res);
  CHECK(res->registers == std::vector<uint16_t>{0x4367, 0x7ae1});
  CHECK(probe_json(r, *res)["values"][0]["value"].get<double>() == Approx(231.48).epsilon(1e-6));

  ProbeRequest beyond = *probe_args({target, "--address", "10", "--count", "10"});
  Result<ProbeResult> exc = run_probe(beyond, &failure);
  REQUIRE_FALSE(exc);
  CHECK_FALSE(failure.unreachable);
  CHECK_THAT(failure.message, Catch::StartsWith("Modbus exception 2 (illegal data address)"));
}

TEST_CASE("probe: nothing listening, and a device that never answers") {
  // Bind and close to find a free port nobody listens on.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const int port = ntohs(addr.sin_port);
  ProbeFailure failure;
  {
    ::close(fd);
    ProbeRequest r = *probe_args({"tcp://127.0.0.1:" + std::to_string(port)});
    REQUIRE_FALSE(run_probe(r, &failure));
    CHECK(failure.unreachable);
    CHECK_THAT(failure.message, Catch::Contains("connection refused by tcp://127.0.0.1:"));
  }
  {
    // Listening but silent: the TCP connect succeeds, the Modbus answer never comes.
    const int silent = ::socket(AF_INET, SOCK_STREAM, 0);
    addr.sin_port = 0;
    REQUIRE(::bind(silent, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(silent, 1) == 0);
    len = sizeof addr;
    getsockname(silent, reinterpret_cast<sockaddr*>(&addr), &len);
    ProbeRequest r = *probe_args({"tcp://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)),
                                  "--unit", "7", "--timeout", "200ms"});
    REQUIRE_FALSE(run_probe(r, &failure));
    CHECK(failure.unreachable);
    CHECK_THAT(failure.message, Catch::StartsWith("no answer from unit 7 at tcp://127.0.0.1:"));
    CHECK_THAT(failure.message, Catch::Contains("within 200ms"));
    ::close(silent);
  }
  {
    ProbeRequest r = *probe_args({"rtu:/dev/gwctl-no-such-port"});
    REQUIRE_FALSE(run_probe(r, &failure));
    CHECK(failure.unreachable);
    CHECK_THAT(failure.message, Catch::Contains("no serial port /dev/gwctl-no-such-port"));
  }
}

}  // namespace
}  // namespace gw::ctl
