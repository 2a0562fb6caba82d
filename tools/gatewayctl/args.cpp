#include "tools/gatewayctl/args.h"

namespace gw::ctl {

namespace {

std::string normalize_option(const std::string& token) {
  return token == "-h" ? std::string("--help") : token;
}

bool is_option(const std::string& token) { return token.size() > 1 && token[0] == '-'; }

std::vector<std::string_view> option_names(const CommandSpec* command) {
  std::vector<std::string_view> names;
  if (command) {
    for (const OptionSpec& o : command->options) names.push_back(o.name);
  }
  for (const OptionSpec& o : global_options()) names.push_back(o.name);
  return names;
}

std::string unknown_option_message(const CommandSpec* command, const std::string& name) {
  std::string msg = command ? std::string(command->name) + ": " : std::string();
  msg += "unknown option '" + name + "'";
  std::string near = closest_match(name, option_names(command));
  if (!near.empty()) msg += "; did you mean " + near + "?";
  msg += command ? " (gatewayctl " + std::string(command->name) + " --help lists its options)"
                 : std::string(" (gatewayctl help lists the options)");
  return msg;
}

}  // namespace

std::optional<std::string> Invocation::get(const std::string& name) const {
  auto it = options.find(name);
  if (it == options.end()) return std::nullopt;
  return it->second;
}

std::string Invocation::command_name() const {
  return command ? std::string(command->name) : std::string();
}

Result<Invocation> parse_arguments(const std::vector<std::string>& argv) {
  Invocation inv;

  // Pass 1: find the command word. An option's value is never the command, so options that
  // take a value (for any command) skip the next token.
  std::size_t command_at = argv.size();
  for (std::size_t i = 0; i < argv.size(); ++i) {
    const std::string& t = argv[i];
    if (t == "--") {
      if (i + 1 < argv.size()) command_at = i + 1;
      break;
    }
    if (is_option(t)) {
      const std::string name = normalize_option(t.substr(0, t.find('=')));
      if (t.find('=') == std::string::npos && option_takes_value_anywhere(name)) ++i;
      continue;
    }
    command_at = i;
    break;
  }

  std::size_t sub_at = argv.size();  // the token that named a sub-command, if any
  if (command_at < argv.size()) {
    const std::string& word = argv[command_at];
    inv.command = find_command(word);
    if (!inv.command || word.find(' ') != std::string::npos) {
      std::string msg = "unknown command '" + word + "'";
      std::string near = closest_match(word, command_names());
      if (!near.empty()) msg += "; did you mean '" + near + "'?";
      msg += " (gatewayctl help lists the commands)";
      return Status::invalid(msg);
    }
    // A sub-command ("buffer export") is the first positional word after its parent.
    for (std::size_t i = command_at + 1; i < argv.size(); ++i) {
      const std::string& t = argv[i];
      if (t == "--") break;
      if (is_option(t)) {
        const std::string name = normalize_option(t.substr(0, t.find('=')));
        if (t.find('=') == std::string::npos && option_takes_value_anywhere(name)) ++i;
        continue;
      }
      if (const CommandSpec* sub = find_command(word + " " + t)) {
        inv.command = sub;
        sub_at = i;
      }
      break;
    }
  }

  // Pass 2: options against the command's table (and the globals), positionals in order.
  bool options_done = false;
  for (std::size_t i = 0; i < argv.size(); ++i) {
    if (i == command_at || i == sub_at) continue;
    const std::string& t = argv[i];
    if (!options_done && t == "--") {
      options_done = true;
      continue;
    }
    if (options_done || !is_option(t)) {
      inv.args.push_back(t);
      continue;
    }
    const std::size_t eq = t.find('=');
    const std::string name = normalize_option(t.substr(0, eq));
    if (name == "--version" && !inv.command) {
      inv.version = true;
      continue;
    }
    const OptionSpec* spec = nullptr;
    if (inv.command) {
      spec = find_option(*inv.command, name);
    } else {
      for (const OptionSpec& o : global_options()) {
        if (o.name == name) spec = &o;
      }
      // Before the command is known, any command's option is accepted here and checked below.
      if (!spec && (option_takes_value_anywhere(name) || name == "--json")) {
        if (eq != std::string::npos) {
          inv.options[name] = t.substr(eq + 1);
        } else if (option_takes_value_anywhere(name) && i + 1 < argv.size()) {
          inv.options[name] = argv[++i];
        } else {
          inv.options[name] = "";
        }
        continue;
      }
    }
    if (!spec) return Status::invalid(unknown_option_message(inv.command, name));
    if (spec->name == "--help") {
      inv.help = true;
      continue;
    }
    if (spec->value.empty()) {
      if (eq != std::string::npos) {
        return Status::invalid("option '" + name + "' takes no value (got '" + t + "')");
      }
      inv.options[name] = "";
      continue;
    }
    if (eq != std::string::npos) {
      inv.options[name] = t.substr(eq + 1);
    } else if (i + 1 < argv.size() && i + 1 != command_at) {
      inv.options[name] = argv[++i];
    } else {
      return Status::invalid("option '" + name + "' needs a value (" + std::string(spec->value) +
                             ")");
    }
    if (inv.options[name].empty()) {
      return Status::invalid("option '" + name + "' needs a non-empty value (" +
                             std::string(spec->value) + ")");
    }
  }

  if (!inv.command) {
    if (!inv.args.empty()) {
      return Status::invalid("unknown command '" + inv.args[0] +
                             "' (gatewayctl help lists the commands)");
    }
    for (const auto& [name, value] : inv.options) {
      bool global = false;
      for (const OptionSpec& o : global_options()) global = global || o.name == name;
      if (!global) {
        return Status::invalid("option '" + name +
                               "' needs a command (gatewayctl help lists them)");
      }
    }
    return inv;
  }
  if (inv.help) return inv;

  const CommandSpec& c = *inv.command;
  // Options given before the command were accepted provisionally; check them now.
  for (const auto& [name, value] : inv.options) {
    if (!find_option(c, name)) return Status::invalid(unknown_option_message(&c, name));
  }
  if (static_cast<int>(inv.args.size()) > c.max_args) {
    const std::string& extra = inv.args[static_cast<std::size_t>(c.max_args)];
    std::string msg = std::string(c.name) + ": unexpected argument '" + extra + "'";
    if (c.name == "buffer") {
      msg += " (buffer takes no arguments; did you mean 'buffer export FILE'?)";
    } else {
      msg += " (usage: " + usage_line(c) + ")";
    }
    return Status::invalid(msg);
  }
  if (static_cast<int>(inv.args.size()) < c.min_args) {
    // Name the first missing word of the synopsis ("DEVICE POINT" -> POINT when one was given).
    std::vector<std::string> words;
    std::string_view syn = c.synopsis;
    while (!syn.empty()) {
      const std::size_t sp = syn.find(' ');
      words.emplace_back(syn.substr(0, sp));
      if (sp == std::string_view::npos) break;
      syn.remove_prefix(sp + 1);
    }
    const std::size_t missing = inv.args.size();
    const std::string what = missing < words.size() ? words[missing] : std::string("an argument");
    return Status::invalid(std::string(c.name) + ": missing " + what + " (usage: " + usage_line(c) +
                           ")");
  }
  return inv;
}

}  // namespace gw::ctl
