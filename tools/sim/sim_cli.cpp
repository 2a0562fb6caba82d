#include "tools/sim/sim_cli.h"

#include <charconv>
#include <cstdio>
#include <cstdlib>

namespace gw::sim {
namespace {
const char* g_program = "sim";
}  // namespace

void set_program_name(const char* name) { g_program = name; }

void usage_error(const std::string& message) {
  std::fprintf(stderr, "%s: %s\nTry '%s --help'.\n", g_program, message.c_str(), g_program);
  std::exit(kExitUsage);
}

int parse_int(std::string_view flag, std::string_view text, int min, int max) {
  int value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < min || value > max) {
    usage_error(std::string(flag) + ": '" + std::string(text) + "' is not an integer in " +
                std::to_string(min) + ".." + std::to_string(max));
  }
  return value;
}

bool FlagReader::next() {
  if (++i_ >= argc_) return false;
  const std::string_view arg = argv_[i_];
  if (arg == "-h" || arg == "--help") {
    std::fputs(usage_, stdout);
    std::exit(0);
  }
  if (arg.substr(0, 2) != "--") usage_error("unexpected argument '" + std::string(arg) + "'");
  flag_ = arg;
  inline_value_.reset();
  if (const std::size_t eq = arg.find('='); eq != std::string_view::npos) {
    flag_ = arg.substr(0, eq);
    inline_value_ = arg.substr(eq + 1);
  }
  return true;
}

std::string_view FlagReader::value() {
  if (inline_value_) return *inline_value_;
  if (i_ + 1 >= argc_) usage_error(std::string(flag_) + " needs a value");
  return argv_[++i_];
}

double parse_seconds(std::string_view flag, std::string_view text) {
  double value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  // A month bounds the value far below what the steady clock can add without overflow.
  if (ec != std::errc() || end != text.data() + text.size() || !(value >= 0) ||
      value > 31 * 86400.0) {
    usage_error(std::string(flag) + ": '" + std::string(text) +
                "' is not a number of seconds in 0..2678400");
  }
  return value;
}

}  // namespace gw::sim
