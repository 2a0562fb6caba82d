// gatewayctl's commands: parse the arguments (args.h), find the socket (CONTRACT.md: --socket,
// else control.socket of --config, else the default), talk to gatewayd (client.h) and print
// (format.h), or act offline (offline.h, probe.h, bundle.h). run() is main() without the process:
// the streams, the terminal facts and the clock come in through Context, so tests drive every
// command against a fake daemon and compare the exact output. Never throws. One thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

namespace gw::ctl {

struct Context {
  std::ostream& out;
  std::ostream& err;
  bool color = false;     // stdout is a terminal and NO_COLOR is unset (--no-color still wins)
  std::size_t width = 0;  // terminal columns for cutting long table cells; 0: never cut
  int64_t now_us = 0;     // 0: the system clock
  // Streams (tail, trace) end cleanly when this descriptor becomes readable. -1: run() installs
  // SIGINT/SIGTERM handlers for the duration of the stream and uses its own pipe.
  int interrupt_fd = -1;
};

// argv without the program name; returns the exit status (0, 1, 69, 78).
int run(const std::vector<std::string>& argv, Context& ctx);

}  // namespace gw::ctl
