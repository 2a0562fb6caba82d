// Command-line helpers shared by the simulators: a bad flag ends the program with exit 2 and a
// message naming the flag and its value.
#pragma once

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

}  // namespace gw::sim
