// Command-line parsing for gatewayctl, driven by the command table (help.h): options may come
// before or after the command, as `--name VALUE` or `--name=VALUE`; `--` ends the options.
// Errors name the offending argument and suggest the nearest command or option. No I/O.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "protocols/status.h"
#include "tools/gatewayctl/help.h"

namespace gw::ctl {

struct Invocation {
  const CommandSpec* command = nullptr;        // null: no command given (overview, or --version)
  std::vector<std::string> args;               // positional arguments after the command
  std::map<std::string, std::string> options;  // "--device" -> "meter-1"; flags -> ""
  bool help = false;                           // --help / -h anywhere
  bool version = false;                        // --version without a command

  bool has(const std::string& name) const { return options.count(name) != 0; }
  std::optional<std::string> get(const std::string& name) const;
  std::string command_name() const;
};

// argv without the program name. A failure's message is ready to print after "gatewayctl: ".
Result<Invocation> parse_arguments(const std::vector<std::string>& argv);

}  // namespace gw::ctl
