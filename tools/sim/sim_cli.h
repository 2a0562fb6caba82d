// Command-line helpers shared by the simulators: a bad flag ends the program with exit 2 and a
// message naming the flag and its value.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace gw::sim {

inline constexpr int kExitUsage = 2;

// Set once by main(): the program name used in messages.
void set_program_name(const char* name);
[[noreturn]] void usage_error(const std::string& message);
int parse_int(std::string_view flag, std::string_view text, int min, int max);
// Seconds as a decimal number in 0..31 days.
double parse_seconds(std::string_view flag, std::string_view text);

// Walks the command line as "--flag value" or "--flag=value". --help (or -h) prints `usage` and
// exits 0; an argument that is not a flag, or a flag without its value, is a usage error.
class FlagReader {
 public:
  FlagReader(int argc, char** argv, const char* usage) : argc_(argc), argv_(argv), usage_(usage) {}
  // Moves to the next flag; false after the last.
  bool next();
  std::string_view flag() const { return flag_; }
  // The flag's value: what follows '=', else the next argument (consumed).
  std::string_view value();

 private:
  int argc_;
  char** argv_;
  const char* usage_;
  int i_ = 0;
  std::string_view flag_;
  std::optional<std::string_view> inline_value_;
};

}  // namespace gw::sim
