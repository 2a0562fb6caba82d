#include "tools/gatewayctl/args.h"

#include <catch2/catch.hpp>

namespace gw::ctl {
namespace {

Invocation parse_ok(std::vector<std::string> argv) {
  Result<Invocation> r = parse_arguments(argv);
  INFO((r ? std::string() : r.status().message()));
  REQUIRE(r.is_ok());
  return r.value();
}

std::string parse_error(std::vector<std::string> argv) {
  Result<Invocation> r = parse_arguments(argv);
  REQUIRE_FALSE(r.is_ok());
  return r.status().message();
}

TEST_CASE("global options go before or after the command") {
  const Invocation before = parse_ok({"--socket", "/tmp/s.sock", "status", "--json"});
  const Invocation after = parse_ok({"status", "--json", "--socket", "/tmp/s.sock"});
  for (const Invocation& inv : {before, after}) {
    REQUIRE(inv.command != nullptr);
    CHECK(inv.command_name() == "status");
    CHECK(inv.get("--socket") == "/tmp/s.sock");
    CHECK(inv.has("--json"));
    CHECK(inv.args.empty());
  }
}

TEST_CASE("an option written name=value works like name value") {
  const Invocation inv = parse_ok({"tail", "--device=meter-b1-01", "--class", "alarm"});
  CHECK(inv.get("--device") == "meter-b1-01");
  CHECK(inv.get("--class") == "alarm");
}

TEST_CASE("a command's own option may come before the command") {
  const Invocation inv = parse_ok({"--device", "meter-1", "tail"});
  CHECK(inv.command_name() == "tail");
  CHECK(inv.get("--device") == "meter-1");
}

TEST_CASE("an option value that looks like a command is still the value") {
  const Invocation inv = parse_ok({"--socket", "status", "version"});
  CHECK(inv.command_name() == "version");
  CHECK(inv.get("--socket") == "status");
}

TEST_CASE("negative numbers are option values") {
  const Invocation inv =
      parse_ok({"probe", "tcp://h", "--type", "int16", "--scale", "-0.1", "--offset=-40"});
  CHECK(inv.get("--scale") == "-0.1");
  CHECK(inv.get("--offset") == "-40");
}

TEST_CASE("positional arguments are collected in order") {
  const Invocation inv = parse_ok({"read", "meter-b1-01", "--json", "voltage_l1"});
  REQUIRE(inv.args.size() == 2);
  CHECK(inv.args[0] == "meter-b1-01");
  CHECK(inv.args[1] == "voltage_l1");
}

TEST_CASE("a double dash ends the options") {
  const Invocation inv = parse_ok({"check-config", "--", "--odd-name.yaml"});
  REQUIRE(inv.args.size() == 1);
  CHECK(inv.args[0] == "--odd-name.yaml");
}

TEST_CASE("buffer export is a sub-command with its own options") {
  const Invocation inv = parse_ok(
      {"--data-dir", "/var/lib/gatewayd", "buffer", "export", "out.jsonl", "--class", "access"});
  CHECK(inv.command_name() == "buffer export");
  REQUIRE(inv.args.size() == 1);
  CHECK(inv.args[0] == "out.jsonl");
  CHECK(inv.get("--data-dir") == "/var/lib/gatewayd");
  // Plain `buffer` does not take --class.
  CHECK_THAT(parse_error({"buffer", "--class", "access"}),
             Catch::Contains("unknown option '--class'"));
}

TEST_CASE("an unknown command suggests the closest one") {
  CHECK(parse_error({"stauts"}) ==
        "unknown command 'stauts'; did you mean 'status'? (gatewayctl help lists the commands)");
  CHECK_THAT(parse_error({"device"}), Catch::Contains("did you mean 'devices'?"));
  CHECK_THAT(parse_error({"chek-config", "f.yaml"}),
             Catch::Contains("did you mean 'check-config'?"));
  const std::string far = parse_error({"frobnicate"});
  CHECK_THAT(far, Catch::Contains("unknown command 'frobnicate'"));
  CHECK_THAT(far, !Catch::Contains("did you mean"));
}

TEST_CASE("an unknown option is named, with the nearest option of that command") {
  CHECK(parse_error({"tail", "--devise", "m"}) ==
        "tail: unknown option '--devise'; did you mean --device? (gatewayctl tail --help lists "
        "its options)");
  CHECK_THAT(parse_error({"status", "--jsno"}), Catch::Contains("did you mean --json?"));
}

TEST_CASE("a missing option value is named") {
  CHECK(parse_error({"tail", "--device"}) == "option '--device' needs a value (DEVICE)");
  CHECK(parse_error({"status", "--socket="}) == "option '--socket' needs a non-empty value (PATH)");
}

TEST_CASE("a flag given a value is an error") {
  CHECK_THAT(parse_error({"status", "--json=yes"}), Catch::Contains("'--json' takes no value"));
}

TEST_CASE("missing and extra positional arguments name the argument") {
  CHECK(parse_error({"read", "meter-1"}) ==
        "read: missing POINT (usage: gatewayctl read DEVICE POINT [--json])");
  CHECK_THAT(parse_error({"trace"}), Catch::Contains("trace: missing DEVICE"));
  CHECK_THAT(parse_error({"status", "now"}), Catch::Contains("status: unexpected argument 'now'"));
  CHECK_THAT(parse_error({"buffer", "exprot", "f"}),
             Catch::Contains("did you mean 'buffer export FILE'?"));
}

TEST_CASE("help and version need no command") {
  CHECK(parse_ok({"--help"}).help);
  CHECK(parse_ok({"-h"}).help);
  CHECK(parse_ok({"--version"}).version);
  const Invocation cmd_help = parse_ok({"probe", "--help"});
  CHECK(cmd_help.help);
  CHECK(cmd_help.command_name() == "probe");
  // Help wins over missing arguments: `read --help` must not complain about DEVICE.
  CHECK(parse_ok({"read", "-h"}).help);
}

TEST_CASE("no command at all is not an error for the parser, but command options are") {
  const Invocation inv = parse_ok({"--socket", "/x"});
  CHECK(inv.command == nullptr);
  CHECK_THAT(parse_error({"--json"}), Catch::Contains("needs a command"));
}

}  // namespace
}  // namespace gw::ctl
