// gatewayctl: the ops CLI (CONTRACT.md, "Control socket and gatewayctl"). This file only
// gathers what the process knows (argv, whether stdout is a terminal and how wide, NO_COLOR);
// the commands live in commands.cpp and the command table in help.cpp.
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "tools/gatewayctl/commands.h"

int main(int argc, char** argv) {
  std::ios::sync_with_stdio(true);
  const std::vector<std::string> args(argv + 1, argv + argc);
  const bool tty = ::isatty(STDOUT_FILENO) == 1;
  const char* no_color = std::getenv("NO_COLOR");
  const char* term = std::getenv("TERM");
  gw::ctl::Context ctx{std::cout, std::cerr};
  ctx.color = tty && !(no_color && *no_color) && !(term && std::string(term) == "dumb");
  if (tty) {
    winsize ws{};
    if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) ctx.width = ws.ws_col;
  }
  const int rc = gw::ctl::run(args, ctx);
  std::cout.flush();
  return rc;
}
