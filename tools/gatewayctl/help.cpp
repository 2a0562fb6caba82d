#include "tools/gatewayctl/help.h"

#include "gateway/edit_distance.h"

#include <algorithm>
#include <map>
#include <set>
#include <sstream>

#include "gateway/control_protocol.h"

namespace gw::ctl {

namespace {

constexpr OptionSpec kJson{"--json", "", "print gatewayd's answer as one JSON document, as sent",
                           Complete::kNone};
constexpr OptionSpec kShowCredentials{
    "--show-credentials", "",
    "ask for raw card ids; gatewayd honours it only when privacy.card_id is raw (otherwise card "
    "ids stay [redacted] or h:... hashes)",
    Complete::kNone};

std::vector<CommandSpec> make_table() {
  std::vector<CommandSpec> t;
  t.push_back({
      .name = "status",
      .synopsis = "",
      .positional = {},
      .summary = "one screen: is this gateway healthy, and if not, why",
      .description =
          "Asks the running gatewayd for its state and prints one screen. The first line is the "
          "verdict: the gateway id, OK or DEGRADED, and the reasons - MQTT down (since when, and "
          "why), events waiting in the buffer (and the age of the oldest), devices offline. "
          "DEGRADED means MQTT is not connected, a device is offline, or the oldest buffered "
          "event has waited more than 5 minutes.\n\n"
          "Then come MQTT, the buffer per event class, every offline device with its last error, "
          "the serial buses and gatewayd's most recent errors, newest first. Colours are used "
          "only when standard output is a terminal and NO_COLOR is not set.",
      .options = {kJson},
      .examples = {"gatewayctl status", "gatewayctl status --json | jq .buffer.pending"},
      .uses_daemon = true,
  });
  t.push_back({
      .name = "devices",
      .synopsis = "[DEVICE]",
      .max_args = 1,
      .positional = {Complete::kDevice},
      .summary = "the devices: state, poll rate, latency, errors; or one device in full",
      .description =
          "Without DEVICE: a table of every configured device - id, state, driver, address "
          "(host:port, or the bus and unit id), poll period configured/achieved, request latency "
          "last/average, failed polls and the last error.\n\n"
          "With DEVICE: every counter gatewayd keeps for that device, and the last value of each "
          "point with its quality and time.",
      .options = {{"--offline", "", "list only the devices that are not online", Complete::kNone},
                  kJson},
      .examples = {"gatewayctl devices", "gatewayctl devices --offline",
                   "gatewayctl devices meter-b1-01"},
      .uses_daemon = true,
  });
  t.push_back({
      .name = "tail",
      .synopsis = "",
      .positional = {},
      .summary = "stream the events as gatewayd commits them (Ctrl-C to stop)",
      .description =
          "Streams the events gatewayd commits to its buffer, one line each, as the central "
          "subscriber prints them: time, gateway, seq, device, class, then the values. Runs until "
          "Ctrl-C (exit status 0) or until gatewayd ends the stream. Card ids are shown as "
          "[redacted], or as their h:... hash when privacy.card_id is hmac.",
      .options = {{"--device", "DEVICE", "only this device's events", Complete::kDevice},
                  {"--class", "CLASS", "only one event class: access, alarm, telemetry or status",
                   Complete::kClass},
                  kShowCredentials,
                  {"--json", "",
                   "one JSON line per event: gatewayd's item as sent ({\"event\":{...}}, the "
                   "protobuf JSON form)",
                   Complete::kNone}},
      .examples = {"gatewayctl tail", "gatewayctl tail --device meter-b1-01",
                   "gatewayctl tail --class alarm"},
      .uses_daemon = true,
  });
  t.push_back({
      .name = "trace",
      .synopsis = "DEVICE",
      .min_args = 1,
      .max_args = 1,
      .positional = {Complete::kDevice},
      .summary = "stream the raw frames to and from one device, in hex (Ctrl-C to stop)",
      .description =
          "Streams the raw frames gatewayd exchanges with one device: time, tx (sent to the "
          "device) or rx (received from it), the bytes in hex, and gatewayd's note on the frame "
          "(what it asked for, the values it decoded from the answer, or what was wrong with "
          "it). Works for Modbus TCP, Modbus RTU and DL/T 645 devices, card readers, gates and "
          "cameras. On a shared RS-485 bus only this device's exchanges are shown. Card readers' "
          "and gates' bytes carry card numbers: they are hidden unless privacy.card_id is raw "
          "and --show-credentials is given. Runs until Ctrl-C.",
      .options = {kShowCredentials,
                  {"--json", "", "one JSON line per frame, gatewayd's item as sent",
                   Complete::kNone}},
      .examples = {"gatewayctl trace meter-b1-07"},
      .uses_daemon = true,
  });
  t.push_back({
      .name = "read",
      .synopsis = "DEVICE POINT",
      .min_args = 2,
      .max_args = 2,
      .positional = {Complete::kDevice, Complete::kPoint},
      .summary = "read one point now, through the running gatewayd",
      .description =
          "Reads one configured point now through the running gatewayd (on a shared bus it goes "
          "ahead of the periodic polls) and prints the value, its unit and the round-trip time. "
          "Exit status 1 when the device answered badly or not at all.",
      .options = {kJson},
      .examples = {"gatewayctl read meter-b1-01 voltage_l1"},
      .uses_daemon = true,
  });
  t.push_back({
      .name = "buffer",
      .synopsis = "",
      .positional = {Complete::kSubcommand},
      .summary = "the event buffer: pending events per class, oldest age, oldest events",
      .description =
          "Shows the durable event buffer: events waiting per class, their bytes, the age of the "
          "oldest, the next seq and the oldest events themselves. Asks the running gatewayd.\n\n"
          "With --data-dir DIR, or with --config FILE when gatewayd cannot be reached, it reads "
          "the buffer file (DIR/buffer.db) directly instead: read-only, and safe while gatewayd "
          "writes it.",
      .options = {{"--oldest", "N",
                   "how many of the oldest events of each class to show (default 5)",
                   Complete::kNone},
                  {"--data-dir", "DIR", "read the buffer file in DIR offline, without gatewayd",
                   Complete::kDir},
                  kJson},
      .examples = {"gatewayctl buffer", "gatewayctl buffer --data-dir /var/lib/gatewayd"},
      .uses_daemon = true,
  });
  t.push_back({
      .name = "buffer export",
      .synopsis = "FILE",
      .min_args = 1,
      .max_args = 1,
      .positional = {Complete::kFile},
      .summary = "write every buffered event to FILE as JSON lines (offline)",
      .description =
          "Writes every event still in the buffer file to FILE as JSON lines, in seq order: one "
          "campus.gateway.v1.Event per line in the protobuf JSON form (proto field names; 64-bit "
          "integers are strings). Reads the SQLite file read-only, so it works whether gatewayd "
          "runs or not. FILE - writes to standard output.\n\n"
          "The data directory is --data-dir DIR, or gateway.data_dir of --config FILE. Raw card "
          "ids are written as [redacted] unless --show-credentials is given.",
      .options = {{"--data-dir", "DIR", "the gateway's data_dir (holds buffer.db)", Complete::kDir},
                  {"--class", "CLASS", "only one event class: access, alarm, telemetry or status",
                   Complete::kClass},
                  {"--show-credentials", "", "write raw card ids as stored", Complete::kNone}},
      .examples =
          {"gatewayctl buffer export /tmp/backlog.jsonl --config /etc/gatewayd/gatewayd.yaml",
           "gatewayctl buffer export - --data-dir /var/lib/gatewayd --class access"},
      .uses_daemon = false,
  });
  t.push_back({
      .name = "reload",
      .synopsis = "",
      .positional = {},
      .summary = "make gatewayd re-read its configuration file",
      .description =
          "Asks gatewayd to re-read its configuration file and apply it. Devices added, removed "
          "or changed are started, stopped or restarted; the others keep running. A file with "
          "errors changes nothing and the errors are printed (check it first with check-config); "
          "a change gatewayd cannot apply while running is refused with restart_required: "
          "restart the service for it.",
      .options = {kJson},
      .examples = {"gatewayctl check-config /etc/gatewayd/gatewayd.yaml && gatewayctl reload"},
      .uses_daemon = true,
  });
  t.push_back({
      .name = "alarms",
      .synopsis = "",
      .positional = {},
      .summary = "active alarms, and the alarms raised and cleared lately",
      .description =
          "Lists the alarms the gateway's rules (alarms: in the config) hold active now - "
          "severity, rule, device, point, the value that raised it, the threshold and since "
          "when - most severe first, then the recent transitions (raised or cleared, newest "
          "first, with the seq of the alarm event the central receives). Alarms are evaluated "
          "at the gateway, so this is right even while the broker is unreachable.",
      .options = {{"--recent", "N", "how many recent transitions to show (default 10, at most 50)",
                   Complete::kNone},
                  kJson},
      .examples = {"gatewayctl alarms", "gatewayctl alarms --json | jq '.active[].rule'"},
      .uses_daemon = true,
  });
  t.push_back({
      .name = "check-config",
      .synopsis = "FILE",
      .min_args = 1,
      .max_args = 1,
      .positional = {Complete::kFile},
      .summary = "validate a configuration file as gatewayd would (exit 78 on errors)",
      .description =
          "Validates a configuration file exactly as gatewayd does at start-up, without starting "
          "anything. Every problem is printed on its own line as FILE:LINE: KEY_PATH: MESSAGE "
          "(got 'VALUE'); the exit status is 78 when there is any.",
      .options = {},
      .examples = {"gatewayctl check-config /etc/gatewayd/gatewayd.yaml"},
      .uses_daemon = false,
  });
  t.push_back({
      .name = "probe",
      .synopsis = "TARGET",
      .min_args = 1,
      .max_args = 1,
      .positional = {Complete::kProbeTarget},
      .summary = "one Modbus read without a daemon, for commissioning (like modpoll)",
      .description =
          "Reads registers or bits from a Modbus device directly, without gatewayd. TARGET is "
          "tcp://HOST[:PORT] (port 502 by default) or rtu:DEVICE[:BAUD[:FRAME]] for a serial "
          "port, e.g. rtu:/dev/ttyUSB0:9600:8N1 (defaults 9600 and 8N1; FRAME is data bits, "
          "parity N, E or O, stop bits).\n\n"
          "Prints each register in decimal and hex (bits as 0 or 1) and, with --type, the values "
          "decoded exactly as gatewayd decodes a point with that type, word order, scale and "
          "offset - so what you see here is what a point with these settings will report. "
          "Addresses are zero-based, as in the config: register 40001 of a manual's 4xxxx "
          "notation is --table holding --address 0. The device has --timeout to answer "
          "(default 1s).\n\n"
          "A serial port has one owner: stop gatewayd (or use read) before probing a line it "
          "polls.",
      .options = {{"--unit", "N", "unit (slave) id, 0..247, or 255 for TCP gateways (default 1)",
                   Complete::kNone},
                  {"--table", "TABLE", "holding, input, coil or discrete (default holding)",
                   Complete::kTable},
                  {"--address", "N",
                   "first register or bit, zero-based, decimal or 0x hex (default 0)",
                   Complete::kNone},
                  {"--count", "N",
                   "registers (1..125) or bits (1..2000) to read (default 1, or enough for one "
                   "--type value)",
                   Complete::kNone},
                  {"--type", "TYPE",
                   "decode as int16, uint16, int32, uint32, int64, uint64, float32, float64 or "
                   "bool",
                   Complete::kType},
                  {"--word-order", "ORDER",
                   "big (ABCD: first register most significant, the default) or little (CDAB)",
                   Complete::kWordOrder},
                  {"--scale", "X", "value = raw * scale + offset (default 1)", Complete::kNone},
                  {"--offset", "X", "added after scaling (default 0)", Complete::kNone},
                  {"--debug", "", "also print the raw frames (libmodbus debug output)",
                   Complete::kNone},
                  {"--json", "", "print the result as one JSON document", Complete::kNone}},
      .examples = {"gatewayctl probe tcp://10.0.3.21:502 --unit 1 --address 0 --count 10",
                   "gatewayctl probe tcp://10.0.3.21 --address 0x5000 --type float32 --word-order "
                   "little",
                   "gatewayctl probe rtu:/dev/ttyUSB0:9600:8E1 --unit 7 --table input --address 0 "
                   "--type float32"},
      .uses_daemon = false,
  });
  t.push_back({
      .name = "bundle",
      .synopsis = "FILE.tar.gz",
      .min_args = 1,
      .max_args = 1,
      .positional = {Complete::kFile},
      .summary = "collect status, devices, buffer, metrics, config and logs for support",
      .description =
          "Collects what support needs into one archive: gatewayd's status, devices and buffer "
          "(as JSON and as printed), the Prometheus metrics when the config has metrics.listen, "
          "the configuration and its device profiles with secrets redacted (the contents of "
          "password_file and key_file are never read; their paths are kept), the check-config "
          "result, and the last 2000 lines of journalctl -u gatewayd.\n\n"
          "It works when gatewayd is down too: whatever could not be collected is listed, with "
          "the reason, in the bundle's MANIFEST.txt. The config is --config FILE, else "
          "/etc/gatewayd/gatewayd.yaml when it exists.",
      .options = {},
      .examples = {"gatewayctl bundle /tmp/lib-gw-01.tar.gz"},
      .uses_daemon = true,
  });
  t.push_back({
      .name = "version",
      .synopsis = "",
      .positional = {},
      .summary = "gatewayctl's version, and gatewayd's when it answers",
      .description =
          "Prints gatewayctl's version and, when gatewayd answers on the control socket, the "
          "daemon's version, gateway id and protocol version. Exit status 0 either way.",
      .options = {kJson},
      .examples = {"gatewayctl version"},
      .uses_daemon = true,
  });
  t.push_back({
      .name = "help",
      .synopsis = "[COMMAND]",
      .max_args = 2,
      .positional = {Complete::kCommand, Complete::kNone},
      .summary = "the command list, or one command's options and examples",
      .description = "Prints the command list, or one command's usage, options and examples "
                     "(the same as gatewayctl COMMAND --help).",
      .options = {},
      .examples = {"gatewayctl help probe"},
  });
  t.push_back({
      .name = "completion",
      .synopsis = "SHELL",
      .min_args = 1,
      .max_args = 1,
      .positional = {Complete::kShell},
      .summary = "print the shell completion script (bash)",
      .description =
          "Prints a completion script for SHELL (bash is the one supported). It completes "
          "commands and options, and asks the running gatewayd for device ids and point names. "
          "Install it with: gatewayctl completion bash | sudo tee "
          "/usr/share/bash-completion/completions/gatewayctl",
      .options = {},
      .examples = {"source <(gatewayctl completion bash)"},
  });
  t.push_back({
      .name = "man",
      .synopsis = "",
      .positional = {},
      .summary = "print the manual page (roff)",
      .description =
          "Prints this manual as a roff man page. Read it with: gatewayctl man | man -l -",
      .options = {},
      .examples = {"gatewayctl man | man -l -"},
  });
  return t;
}

std::vector<OptionSpec> make_globals() {
  return {
      {"--socket", "PATH",
       "gatewayd's control socket (default: control.socket of --config, else "
       "/run/gatewayd/gatewayd.sock)",
       Complete::kFile},
      {"--config", "FILE",
       "gatewayd's configuration file: gives the socket, the data_dir for offline buffer "
       "commands and metrics.listen for bundle",
       Complete::kFile},
      {"--timeout", "DURATION",
       "how long to wait for an answer: from gatewayd (default 10s), or from the device for "
       "probe (default 1s)",
       Complete::kNone},
      {"--no-color", "", "no colours, even on a terminal (as does NO_COLOR=1)", Complete::kNone},
      {"--help", "", "help for the command (also -h)", Complete::kNone},
  };
}


constexpr std::size_t kWidth = 79;  // help text fits an 80-column terminal

// Wraps a paragraph to `width` columns, each line starting with `indent`.
std::string wrap(std::string_view text, std::size_t indent, std::size_t width) {
  std::string out;
  std::string line(indent, ' ');
  std::size_t line_len = indent;
  bool empty = true;
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && text[i] == ' ') ++i;
    std::size_t j = i;
    while (j < text.size() && text[j] != ' ') ++j;
    if (j == i) break;
    const std::string_view word = text.substr(i, j - i);
    if (!empty && line_len + 1 + word.size() > width) {
      out += line + "\n";
      line.assign(indent, ' ');
      line_len = indent;
      empty = true;
    }
    if (!empty) {
      line += ' ';
      ++line_len;
    }
    line += word;
    line_len += word.size();
    empty = false;
    i = j;
  }
  if (!empty) out += line + "\n";
  return out;
}

std::vector<std::string_view> paragraphs(std::string_view text) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (;;) {
    const std::size_t end = text.find("\n\n", start);
    out.push_back(text.substr(start, end - start));
    if (end == std::string_view::npos) return out;
    start = end + 2;
  }
}

std::string option_label(const OptionSpec& o) {
  std::string s(o.name);
  if (!o.value.empty()) s += " " + std::string(o.value);
  return s;
}

void append_options(std::string& out, const std::vector<OptionSpec>& options) {
  for (const OptionSpec& o : options) {
    const std::string label = "  " + option_label(o);
    if (label.size() < 24) {
      std::string first = wrap(o.help, 24, kWidth);
      out += label + first.substr(label.size());
    } else {
      out += label + "\n" + wrap(o.help, 24, kWidth);
    }
  }
}

// roff escaping: backslashes, and a leading '.' or '\'' that would read as a request.
std::string roff(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '\\') {
      out += "\\e";
    } else if (c == '-') {
      out += "\\-";
    } else {
      out += c;
    }
  }
  if (!out.empty() && (out[0] == '.' || out[0] == '\'')) out.insert(0, "\\&");
  return out;
}

std::string shell_words(const std::vector<std::string>& words) {
  std::string out;
  for (const std::string& w : words) {
    if (!out.empty()) out += ' ';
    out += w;
  }
  return out;
}

std::string complete_kind_name(Complete c) {
  switch (c) {
    case Complete::kNone:
      return "none";
    case Complete::kFile:
      return "file";
    case Complete::kDir:
      return "dir";
    case Complete::kDevice:
      return "device";
    case Complete::kPoint:
      return "point";
    case Complete::kCommand:
      return "command";
    case Complete::kClass:
      return "class";
    case Complete::kTable:
      return "table";
    case Complete::kType:
      return "type";
    case Complete::kWordOrder:
      return "word_order";
    case Complete::kShell:
      return "shell";
    case Complete::kProbeTarget:
      return "probe_target";
    case Complete::kSubcommand:
      return "subcommand";
  }
  return "none";
}

}  // namespace

const std::vector<CommandSpec>& command_table() {
  static const std::vector<CommandSpec> table = make_table();
  return table;
}

const std::vector<OptionSpec>& global_options() {
  static const std::vector<OptionSpec> globals = make_globals();
  return globals;
}

const CommandSpec* find_command(std::string_view name) {
  for (const CommandSpec& c : command_table()) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

const OptionSpec* find_option(const CommandSpec& command, std::string_view name) {
  for (const OptionSpec& o : command.options) {
    if (o.name == name) return &o;
  }
  for (const OptionSpec& o : global_options()) {
    if (o.name == name) return &o;
  }
  return nullptr;
}

bool option_takes_value_anywhere(std::string_view name) {
  for (const OptionSpec& o : global_options()) {
    if (o.name == name) return !o.value.empty();
  }
  for (const CommandSpec& c : command_table()) {
    for (const OptionSpec& o : c.options) {
      if (o.name == name) return !o.value.empty();
    }
  }
  return false;
}

std::string closest_match(std::string_view word, const std::vector<std::string_view>& candidates) {
  std::string best;
  std::size_t best_distance = SIZE_MAX;
  for (std::string_view c : candidates) {
    std::size_t d = edit_distance(word, c);
    if (word.size() >= 3 && c.starts_with(word)) d = std::min<std::size_t>(d, 1);
    if (d < best_distance) {
      best_distance = d;
      best = std::string(c);
    }
  }
  // Short words tolerate one typo, longer ones two: "stat" -> status, "xyz" -> nothing.
  const std::size_t limit = word.size() <= 4 ? 1 : (word.size() <= 8 ? 2 : 3);
  return best_distance <= limit ? best : std::string();
}

std::vector<std::string_view> command_names() {
  std::vector<std::string_view> names;
  for (const CommandSpec& c : command_table()) {
    if (c.name.find(' ') == std::string_view::npos) names.push_back(c.name);
  }
  return names;
}

std::string usage_line(const CommandSpec& c) {
  std::string s = "gatewayctl " + std::string(c.name);
  if (!c.synopsis.empty()) s += " " + std::string(c.synopsis);
  for (const OptionSpec& o : c.options) s += " [" + option_label(o) + "]";
  return s;
}

std::string overview_help() {
  std::string out =
      "gatewayctl - the ops CLI of the Campus Edge Gateway daemon (gatewayd)\n\n"
      "usage: gatewayctl [GLOBAL OPTIONS] COMMAND [ARGS] [OPTIONS]\n";
  auto section = [&](const char* title, bool daemon) {
    out += std::string("\n") + title + "\n";
    for (const CommandSpec& c : command_table()) {
      if (c.uses_daemon != daemon) continue;
      std::string label = "  " + std::string(c.name);
      if (!c.synopsis.empty()) label += " " + std::string(c.synopsis);
      const std::string summary = wrap(c.summary, 22, kWidth);
      if (label.size() < 22) {
        out += label + summary.substr(label.size());
      } else {
        out += label + "\n" + summary;
      }
    }
  };
  section("Talking to the running gatewayd (over its control socket):", true);
  section("Without a daemon, and help:", false);
  out += "\nGlobal options (before or after the command):\n";
  append_options(out, global_options());
  out += "\n" + wrap(
                    "Exit status: 0 ok; 1 error (bad argument, gatewayd refused, device answered "
                    "badly); 69 gatewayd or the device unavailable; 78 bad configuration.",
                    0, kWidth);
  out += wrap(
      "'gatewayctl help COMMAND' shows a command's options and examples; 'gatewayctl "
      "man | man -l -' the whole manual.",
      0, kWidth);
  return out;
}

std::string command_help(const CommandSpec& c) {
  // The usage line wraps with its continuation lines under the first option.
  std::string head = "usage: gatewayctl " + std::string(c.name);
  if (!c.synopsis.empty()) head += " " + std::string(c.synopsis);
  std::string out = head;
  std::size_t col = head.size();
  for (const OptionSpec& o : c.options) {
    const std::string part = "[" + option_label(o) + "]";
    if (col + 1 + part.size() > kWidth) {
      out += "\n" + std::string(head.size(), ' ');
      col = head.size();
    }
    out += " " + part;
    col += 1 + part.size();
  }
  out += "\n\n";
  for (std::string_view p : paragraphs(c.description)) out += wrap(p, 0, kWidth) + "\n";
  if (!c.options.empty()) {
    out += "Options:\n";
    append_options(out, c.options);
    out += "\n";
  }
  out += "Global options (before or after the command):\n";
  append_options(out, global_options());
  if (!c.examples.empty()) {
    out += "\nExamples:\n";
    for (std::string_view e : c.examples) out += "  " + std::string(e) + "\n";
  }
  return out;
}

std::string bash_completion() {
  // Everything the script knows is generated from the table; only the shell plumbing is fixed.
  std::vector<std::string> commands;
  for (std::string_view n : command_names()) commands.emplace_back(n);
  std::vector<std::string> globals;
  for (const OptionSpec& o : global_options()) globals.emplace_back(o.name);
  globals.emplace_back("-h");

  // Option name -> completion kind, and the options that take a value (their value is skipped
  // when the script looks for the command word).
  std::map<std::string, Complete> value_options;
  for (const OptionSpec& o : global_options()) {
    if (!o.value.empty()) value_options[std::string(o.name)] = o.complete;
  }
  for (const CommandSpec& c : command_table()) {
    for (const OptionSpec& o : c.options) {
      if (!o.value.empty()) value_options[std::string(o.name)] = o.complete;
    }
  }
  std::vector<std::string> value_names;
  value_names.reserve(value_options.size());
  for (const auto& [name, kind] : value_options) value_names.push_back(name);

  std::ostringstream s;
  s << "# bash completion for gatewayctl; generated by `gatewayctl completion bash`.\n"
       "# Device ids and point names come from the running gatewayd (2 s at most).\n\n"
       "_gatewayctl_ask() {\n"
       "  # Runs gatewayctl with the --socket/--config already typed on the command line.\n"
       "  local i w conn=()\n"
       "  for ((i = 1; i < cword; i++)); do\n"
       "    w=${words[i]}\n"
       "    case $w in\n"
       "      --socket|--config) conn+=(\"$w\" \"${words[i+1]}\"); ((i++)) ;;\n"
       "      --socket=*|--config=*) conn+=(\"$w\") ;;\n"
       "    esac\n"
       "  done\n"
       "  timeout 2 \"${words[0]}\" \"${conn[@]}\" --no-color \"$@\" 2>/dev/null\n"
       "}\n\n"
       "_gatewayctl_devices() {\n"
       "  _gatewayctl_ask devices --json | grep -o '\"id\":\"[^\"]*\"' | cut -d'\"' -f4\n"
       "}\n\n"
       "_gatewayctl_points() {\n"
       "  [[ -n $1 ]] || return\n"
       "  _gatewayctl_ask devices \"$1\" --json | grep -o '\"name\":\"[^\"]*\"' | cut -d'\"' -f4\n"
       "}\n\n"
       "_gatewayctl_value() {\n"
       "  # $1: what to complete; fills COMPREPLY.\n"
       "  case $1 in\n"
       "    file) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- \"$cur\")) ;;\n"
       "    dir) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -d -- \"$cur\")) ;;\n"
       "    device) COMPREPLY=($(compgen -W \"$(_gatewayctl_devices)\" -- \"$cur\")) ;;\n"
       "    point) COMPREPLY=($(compgen -W \"$(_gatewayctl_points \"${args[0]}\")\" -- \"$cur\")) "
       ";;\n"
       "    command) COMPREPLY=($(compgen -W \""
    << shell_words(commands)
    << "\" -- \"$cur\")) ;;\n"
       "    class) COMPREPLY=($(compgen -W \"access alarm telemetry status\" -- \"$cur\")) ;;\n"
       "    table) COMPREPLY=($(compgen -W \"holding input coil discrete\" -- \"$cur\")) ;;\n"
       "    type) COMPREPLY=($(compgen -W \"int16 uint16 int32 uint32 int64 uint64 float32 "
       "float64 bool\" -- \"$cur\")) ;;\n"
       "    word_order) COMPREPLY=($(compgen -W \"big little\" -- \"$cur\")) ;;\n"
       "    shell) COMPREPLY=($(compgen -W \"bash\" -- \"$cur\")) ;;\n"
       "    probe_target)\n"
       "      local ports=(/dev/ttyUSB* /dev/ttyACM* /dev/ttyS*) p targets=(\"tcp://\")\n"
       "      for p in \"${ports[@]}\"; do [[ -e $p ]] && targets+=(\"rtu:$p\"); done\n"
       "      compopt -o nospace 2>/dev/null\n"
       "      COMPREPLY=($(compgen -W \"${targets[*]}\" -- \"$cur\")) ;;\n";
  // Sub-commands: "buffer export" makes "export" a word to offer after "buffer".
  s << "    subcommand)\n      case $cmd in\n";
  std::map<std::string, std::vector<std::string>> subs;
  for (const CommandSpec& c : command_table()) {
    const std::size_t sp = c.name.find(' ');
    if (sp != std::string_view::npos) {
      subs[std::string(c.name.substr(0, sp))].emplace_back(c.name.substr(sp + 1));
    }
  }
  for (const auto& [parent, words] : subs) {
    s << "        " << parent << ") COMPREPLY=($(compgen -W \"" << shell_words(words)
      << "\" -- \"$cur\")) ;;\n";
  }
  s << "      esac ;;\n"
       "  esac\n"
       "}\n\n"
       "_gatewayctl() {\n"
       "  local cur prev words cword\n"
       "  if declare -F _init_completion >/dev/null 2>&1; then\n"
       "    _init_completion -n =: || return\n"
       "  else\n"
       "    words=(\"${COMP_WORDS[@]}\"); cword=$COMP_CWORD\n"
       "    cur=${COMP_WORDS[COMP_CWORD]}; prev=${COMP_WORDS[COMP_CWORD-1]}\n"
       "  fi\n"
       "  local cmd= i w args=()\n"
       "  for ((i = 1; i < cword; i++)); do\n"
       "    w=${words[i]}\n"
       "    case $w in\n"
       "      "
    <<
      [&] {
        std::string alts;
        for (const std::string& n : value_names) alts += (alts.empty() ? "" : "|") + n;
        return alts;
      }()
    << ") ((i++)) ;;\n"
       "      -*) ;;\n"
       "      *)\n"
       "        if [[ -z $cmd ]]; then cmd=$w\n"
       "        elif [[ ${#args[@]} -eq 0 && \" $(_gatewayctl_value_subs \"$cmd\") \" == *\" $w "
       "\"* ]]; then\n"
       "          cmd=\"$cmd $w\"\n"
       "        else args+=(\"$w\"); fi ;;\n"
       "    esac\n"
       "  done\n"
       "  if [[ $cur == --*=* ]]; then prev=${cur%%=*}; cur=${cur#*=}; fi\n"
       "  case $prev in\n";
  std::map<Complete, std::vector<std::string>> by_kind;
  for (const auto& [name, kind] : value_options) by_kind[kind].push_back(name);
  for (const auto& [kind, names] : by_kind) {
    std::string alts;
    for (const std::string& n : names) alts += (alts.empty() ? "" : "|") + n;
    if (kind == Complete::kNone) {
      s << "    " << alts << ") return ;;\n";
    } else {
      s << "    " << alts << ") _gatewayctl_value " << complete_kind_name(kind) << "; return ;;\n";
    }
  }
  s << "  esac\n"
       "  if [[ $cur == -* ]]; then\n"
       "    local opts=\""
    << shell_words(globals)
    << "\"\n"
       "    case $cmd in\n";
  for (const CommandSpec& c : command_table()) {
    std::vector<std::string> names;
    for (const OptionSpec& o : c.options) names.emplace_back(o.name);
    if (names.empty()) continue;
    s << "      \"" << c.name << "\") opts+=\" " << shell_words(names) << "\" ;;\n";
  }
  s << "    esac\n"
       "    COMPREPLY=($(compgen -W \"$opts\" -- \"$cur\"))\n"
       "    return\n"
       "  fi\n"
       "  if [[ -z $cmd ]]; then _gatewayctl_value command; return; fi\n"
       "  case \"$cmd:${#args[@]}\" in\n";
  for (const CommandSpec& c : command_table()) {
    for (std::size_t i = 0; i < c.positional.size(); ++i) {
      if (c.positional[i] == Complete::kNone) continue;
      s << "    \"" << c.name << ":" << i << "\") _gatewayctl_value "
        << complete_kind_name(c.positional[i]) << " ;;\n";
    }
  }
  s << "  esac\n"
       "  if declare -F __ltrim_colon_completions >/dev/null 2>&1; then\n"
       "    __ltrim_colon_completions \"$cur\"\n"
       "  fi\n"
       "}\n\n"
       "_gatewayctl_value_subs() {\n"
       "  case $1 in\n";
  for (const auto& [parent, words] : subs) {
    s << "    " << parent << ") echo \"" << shell_words(words) << "\" ;;\n";
  }
  s << "  esac\n"
       "}\n\n"
       "complete -F _gatewayctl gatewayctl\n";
  return s.str();
}

std::string man_page(std::string_view version, std::string_view date) {
  std::ostringstream s;
  s << ".\\\" Generated by `gatewayctl man` from gatewayctl's command table; do not edit.\n"
    << ".TH GATEWAYCTL 1 \"" << date << "\" \"gatewayctl " << version
    << "\" \"Campus Edge Gateway\"\n"
    << ".SH NAME\ngatewayctl \\- the ops CLI of the Campus Edge Gateway daemon\n"
    << ".SH SYNOPSIS\n.B gatewayctl\n[\\fIGLOBAL OPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR] "
       "[\\fIOPTIONS\\fR]\n"
    << ".SH DESCRIPTION\n"
    << roff(
           "gatewayctl talks to a running gatewayd over its control socket (a Unix socket, mode "
           "0660, owned by the daemon's user and group: members of that group may use it), and "
           "can also act without one: probe a Modbus device, validate a configuration, read or "
           "export the buffer file offline, collect a support bundle.")
    << "\n.PP\n"
    << roff("The socket is --socket PATH, else control.socket of --config FILE, else " +
            std::string(control::kDefaultSocket) +
            ". Options may come before or after the command. Every query command has --json, "
            "which prints gatewayd's answer as one JSON document.")
    << "\n.SH GLOBAL OPTIONS\n";
  auto option = [&](const OptionSpec& o) {
    s << ".TP\n.B " << roff(o.name);
    if (!o.value.empty()) s << " \\fI" << roff(o.value) << "\\fR";
    s << "\n" << roff(o.help) << ".\n";
  };
  for (const OptionSpec& o : global_options()) option(o);
  s << ".SH COMMANDS\n";
  for (const CommandSpec& c : command_table()) {
    s << ".SS \"" << roff(c.name);
    if (!c.synopsis.empty()) s << " " << roff(c.synopsis);
    s << "\"\n";
    s << roff(c.summary) << ".\n";
    for (std::string_view p : paragraphs(c.description)) s << ".PP\n" << roff(p) << "\n";
    for (const OptionSpec& o : c.options) option(o);
    if (!c.examples.empty()) {
      s << ".PP\nExamples:\n.RS\n.nf\n";
      for (std::string_view e : c.examples) s << roff(e) << "\n";
      s << ".fi\n.RE\n";
    }
  }
  s << ".SH EXIT STATUS\n"
    << ".TP\n.B 0\nSuccess.\n"
    << ".TP\n.B 1\n"
    << roff(
           "Anything else: a bad argument, an error answer from gatewayd (printed as "
           "gatewayctl: COMMAND: MESSAGE (CODE)), a device that answered badly, a lost stream.")
    << "\n.TP\n.B 69\n"
    << roff(
           "A required resource is unavailable: gatewayd not running or its socket not "
           "accessible, gatewayd answering unavailable, a device not answering a probe, a "
           "missing buffer file.")
    << "\n.TP\n.B 78\n"
    << roff("Bad configuration: the file, line, key path and offending value are printed.")
    << "\n.SH ENVIRONMENT\n.TP\n.B NO_COLOR\n"
    << roff(
           "When set (to anything), no colours. Colours are only used when standard output is a "
           "terminal.")
    << "\n.SH FILES\n.TP\n.I " << roff(control::kDefaultSocket) << "\n"
    << roff("The default control socket.") << "\n.TP\n.I /etc/gatewayd/gatewayd.yaml\n"
    << roff("The configuration bundle reads when no --config is given.") << "\n"
    << ".SH SEE ALSO\n.BR gatewayd (8),\n.BR journalctl (1)\n";
  return s.str();
}

}  // namespace gw::ctl
