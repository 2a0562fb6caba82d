// The one table of gatewayctl's commands and options, and everything generated from it: the
// overview (`gatewayctl help`), per-command help (`gatewayctl COMMAND --help`), the bash
// completion script (`gatewayctl completion bash`) and the man page (`gatewayctl man`). The
// argument parser (args.h) reads the same table, so help and behaviour cannot drift apart.
// Pure functions over static data; any thread.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace gw::ctl {

// What a shell may offer for an option's value or a positional argument.
enum class Complete {
  kNone,
  kFile,
  kDir,
  kDevice,  // device ids of the running daemon (`gatewayctl devices --json`)
  kPoint,   // point names of the device given before it
  kCommand,
  kClass,        // access alarm telemetry status
  kTable,        // holding input coil discrete
  kType,         // int16 ... bool
  kWordOrder,    // big little
  kShell,        // bash
  kProbeTarget,  // tcp://  rtu:/dev/tty...
  kSubcommand,   // the words after the command that name a sub-command (buffer export)
};

struct OptionSpec {
  std::string_view name;   // "--device"
  std::string_view value;  // "DEVICE"; empty for a flag
  std::string_view help;   // one sentence, no trailing period needed
  Complete complete = Complete::kNone;
};

struct CommandSpec {
  std::string_view name;      // "status", or "buffer export" for a sub-command
  std::string_view synopsis;  // positional part: "DEVICE POINT", "[COMMAND]"
  int min_args = 0;           // positional arguments
  int max_args = 0;
  std::vector<Complete> positional;  // completion per positional argument
  std::string_view summary;          // one line for the overview
  std::string_view description;      // paragraphs separated by "\n\n"
  std::vector<OptionSpec> options;   // besides the global options
  std::vector<std::string_view> examples;
  bool uses_daemon = false;  // talks to the running gatewayd
};

const std::vector<CommandSpec>& command_table();
const std::vector<OptionSpec>& global_options();

const CommandSpec* find_command(std::string_view name);
// The command's own option or a global one; null when neither knows it.
const OptionSpec* find_option(const CommandSpec& command, std::string_view name);
// Whether `name` takes a value for any command (the parser needs it before it knows the command).
bool option_takes_value_anywhere(std::string_view name);

// The candidate nearest to `word` (edit distance, prefixes count as close), or "" when none is
// close enough to be a plausible typo.
std::string closest_match(std::string_view word, const std::vector<std::string_view>& candidates);
std::vector<std::string_view> command_names();

std::string overview_help();
std::string command_help(const CommandSpec& command);
std::string usage_line(const CommandSpec& command);
std::string bash_completion();
// date: "2024-05-01"; shown in the page footer.
std::string man_page(std::string_view version, std::string_view date);

// Exit statuses, as the contract names them.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUnavailable = 69;
inline constexpr int kExitConfig = 78;

}  // namespace gw::ctl
