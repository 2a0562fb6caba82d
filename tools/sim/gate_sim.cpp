// gate_sim: a simulated gate controller with an event log of bounded size, as a Modbus TCP gate
// and/or a UHPPOTE UT0311-L0x controller on UDP (tools/sim/gate_sim_core.h; README.md here).
// It prints where it listens, then takes commands on stdin, one per line, and answers each
// with one "ok ..." (or "error ...") line:
//   pass N            record N passages now          door open|closed
//   reset             clear both logs (indices restart at 1)
//   mute | unmute     stop / resume answering        rate R   automatic passages per second
//   delay MS          answer every request MS late (a slow controller)
//   status            counts, without changing anything
// Exit: 0 on SIGINT/SIGTERM or after --duration-s, 1 when a socket cannot be bound, 2 on a bad
// command line.
#include <poll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <string_view>

#include "tools/sim/gate_sim_core.h"
#include "tools/sim/sim_cli.h"

namespace {

using gw::sim::usage_error;

constexpr const char* kHelp = R"(usage: gate_sim [options]

Simulates a gate controller: a Modbus TCP gate (register layout of the modbus_gate driver)
and/or a UHPPOTE UT0311-L0x controller on UDP, each with an event log of bounded size.

  --gates LIST          modbus, uhppote or modbus,uhppote (default both)
  --bind ADDR           IPv4 address to listen on (default 127.0.0.1)
  --modbus-port P       Modbus TCP port (default 0: kernel-chosen)
  --status-base A       Modbus status block address (default 0)
  --log-base A          Modbus log window address (default 100)
  --log-size N          Modbus log records kept, 1..8000 (default 64)
  --uhppote-port P      UHPPOTE UDP port (default 0: kernel-chosen)
  --serial-number S     UHPPOTE controller serial number (default 405419896)
  --uhppote-log-size N  UHPPOTE log entries kept, 1..1000000 (default 1000)
  --listener IP:PORT    push each UHPPOTE event there (the controller's set-listener)
  --seed S              card ids are a function of (seed, passage number) (default 1)
  --rate R              automatic passages per second, 0..10000 (default 0: on command)
  --passages-log FILE   one JSON line per passage recorded
  --delay-ms M          answer every request M ms late, 0..10000 (a slow controller)
  --duration-s S        exit after S seconds (default: until SIGINT/SIGTERM)
  --help                this text

Prints "modbus ADDR PORT", "uhppote ADDR PORT serial S", then "ready"; then reads commands on
stdin: pass N | door open|closed | reset | mute | unmute | rate R | delay MS | status
)";

std::string_view value_of(int& i, int argc, char** argv, std::string_view flag) {
  if (i + 1 >= argc) usage_error(std::string(flag) + ": needs a value");
  return argv[++i];
}

double parse_rate(std::string_view text, bool& ok) {
  char* end = nullptr;
  const std::string s(text);
  const double v = std::strtod(s.c_str(), &end);
  ok = !s.empty() && end == s.c_str() + s.size() && v >= 0 && v <= 10000;
  return v;
}

std::string counts(const gw::sim::GateSim& sim) {
  return "passages=" + std::to_string(sim.passages()) +
         " modbus_newest=" + std::to_string(sim.modbus_newest()) +
         " uhppote_newest=" + std::to_string(sim.uhppote_newest()) +
         " requests=" + std::to_string(sim.requests());
}

std::string command(gw::sim::GateSim& sim, const std::string& line) {
  std::istringstream in(line);
  std::string verb, arg;
  in >> verb >> arg;
  if (verb == "pass") {
    char* end = nullptr;
    const long long n = arg.empty() ? 1 : std::strtoll(arg.c_str(), &end, 10);
    if ((end && *end) || n < 0 || n > 10000000)
      return "error pass: '" + arg + "' is not a count in 0..10000000";
    sim.pass(static_cast<uint64_t>(n));
  } else if (verb == "door" && (arg == "open" || arg == "closed")) {
    sim.set_door(arg == "open");
  } else if (verb == "reset") {
    sim.reset_logs();
  } else if (verb == "mute" || verb == "unmute") {
    sim.set_mute(verb == "mute");
  } else if (verb == "rate") {
    bool ok = false;
    const double r = parse_rate(arg, ok);
    if (!ok) return "error rate: '" + arg + "' is not a number in 0..10000";
    sim.set_rate(r);
  } else if (verb == "delay") {
    char* end = nullptr;
    const long ms = std::strtol(arg.c_str(), &end, 10);
    if (arg.empty() || *end || ms < 0 || ms > 10000) {
      return "error delay: '" + arg + "' is not a number of milliseconds in 0..10000";
    }
    sim.set_reply_delay(static_cast<int>(ms));
  } else if (verb != "status") {
    return "error unknown command '" + line +
           "' (pass N, door open|closed, reset, mute, unmute, rate R, delay MS, status)";
  }
  return "ok " + verb + " " + counts(sim);
}

}  // namespace

int main(int argc, char** argv) {
  gw::sim::set_program_name("gate_sim");
  gw::sim::GateSimOptions o;
  double duration_s = 0;
  for (int i = 1; i < argc; ++i) {
    std::string_view flag = argv[i];
    std::string inline_value;
    bool has_inline = false;
    if (const auto eq = flag.find('='); flag.starts_with("--") && eq != std::string_view::npos) {
      inline_value = std::string(flag.substr(eq + 1));
      flag = flag.substr(0, eq);
      has_inline = true;
    }
    auto value = [&]() -> std::string_view {
      return has_inline ? std::string_view(inline_value) : value_of(i, argc, argv, flag);
    };
    if (flag == "--help") {
      std::fputs(kHelp, stdout);
      return 0;
    } else if (flag == "--gates") {
      const std::string_view v = value();
      o.modbus = v == "modbus" || v == "modbus,uhppote" || v == "uhppote,modbus";
      o.uhppote = v == "uhppote" || v == "modbus,uhppote" || v == "uhppote,modbus";
      if (!o.modbus && !o.uhppote)
        usage_error("--gates: '" + std::string(v) + "' is not modbus, uhppote or modbus,uhppote");
    } else if (flag == "--bind") {
      o.bind = std::string(value());
    } else if (flag == "--modbus-port") {
      o.modbus_port = static_cast<uint16_t>(gw::sim::parse_int(flag, value(), 0, 65535));
    } else if (flag == "--status-base") {
      o.status_base = static_cast<uint16_t>(gw::sim::parse_int(flag, value(), 0, 65535 - 8));
    } else if (flag == "--log-base") {
      o.log_base = static_cast<uint16_t>(gw::sim::parse_int(flag, value(), 0, 65535));
    } else if (flag == "--log-size") {
      o.log_size = static_cast<uint32_t>(gw::sim::parse_int(flag, value(), 1, 8000));
    } else if (flag == "--uhppote-port") {
      o.uhppote_port = static_cast<uint16_t>(gw::sim::parse_int(flag, value(), 0, 65535));
    } else if (flag == "--serial-number") {
      const std::string v(value());
      char* end = nullptr;
      const unsigned long long s = std::strtoull(v.c_str(), &end, 10);
      if (v.empty() || *end || s == 0 || s > 0xFFFFFFFFull)
        usage_error("--serial-number: '" + v + "' is not in 1..4294967295");
      o.serial_number = static_cast<uint32_t>(s);
    } else if (flag == "--uhppote-log-size") {
      o.uhppote_log_size = static_cast<uint32_t>(gw::sim::parse_int(flag, value(), 1, 1000000));
    } else if (flag == "--listener") {
      o.listener = std::string(value());
    } else if (flag == "--seed") {
      o.seed = static_cast<uint32_t>(gw::sim::parse_int(flag, value(), 0, 1000000000));
    } else if (flag == "--rate") {
      bool ok = false;
      o.rate = parse_rate(value(), ok);
      if (!ok) usage_error("--rate: '" + std::string(value()) + "' is not a number in 0..10000");
    } else if (flag == "--passages-log") {
      o.passages_log = std::string(value());
    } else if (flag == "--delay-ms") {
      o.reply_delay_ms = gw::sim::parse_int(flag, value(), 0, 10000);
    } else if (flag == "--duration-s") {
      duration_s = gw::sim::parse_seconds(flag, value());
    } else {
      usage_error("unknown option '" + std::string(argv[i]) + "'");
    }
  }
  if (o.modbus && uint32_t{o.log_base} + o.log_size * 8u > 65536u) {
    usage_error("--log-base " + std::to_string(o.log_base) + " + 8 x --log-size " +
                std::to_string(o.log_size) + " runs past register 65535");
  }

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigprocmask(SIG_BLOCK, &signals, nullptr);
  const int signal_fd = signalfd(-1, &signals, SFD_CLOEXEC);

  gw::sim::GateSim sim(o);
  if (gw::Status s = sim.start(); !s) {
    std::fprintf(stderr, "gate_sim: %s\n", s.message().c_str());
    return 1;
  }
  if (o.modbus) std::printf("modbus %s %u\n", o.bind.c_str(), sim.modbus_port());
  if (o.uhppote)
    std::printf("uhppote %s %u serial %u\n", o.bind.c_str(), sim.uhppote_port(), o.serial_number);
  std::printf("ready\n");
  std::fflush(stdout);

  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(static_cast<int64_t>(duration_s * 1000));
  std::string pending;
  bool stdin_open = true;
  for (;;) {
    pollfd fds[2] = {{signal_fd, POLLIN, 0}, {stdin_open ? 0 : -1, POLLIN, 0}};
    int timeout_ms = -1;
    if (duration_s > 0) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      timeout_ms = static_cast<int>(left.count());
    }
    if (::poll(fds, 2, timeout_ms) < 0) continue;
    if (fds[0].revents) break;
    if (fds[1].revents) {
      char buf[4096];
      const ssize_t n = read(0, buf, sizeof buf);
      if (n <= 0) {
        stdin_open = false;  // stdin closed: keep serving until a signal or the duration
        continue;
      }
      pending.append(buf, static_cast<std::size_t>(n));
      for (std::size_t nl; (nl = pending.find('\n')) != std::string::npos;) {
        std::string line = pending.substr(0, nl);
        pending.erase(0, nl + 1);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.empty()) continue;
        std::printf("%s\n", command(sim, line).c_str());
        std::fflush(stdout);
      }
      if (pending.size() > 4096) pending.clear();  // not a command line
    }
  }
  sim.stop();
  return 0;
}
