#include "tools/gatewayctl/help.h"

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>

namespace gw::ctl {
namespace {

TEST_CASE("an option name has one meaning across the table") {
  // The parser decides whether an option takes a value before it knows the command, and the
  // completion script completes values by option name: both need this to hold.
  std::map<std::string_view, std::pair<bool, Complete>> seen;
  auto check = [&](const OptionSpec& o) {
    auto [it, inserted] = seen.emplace(o.name, std::make_pair(!o.value.empty(), o.complete));
    if (!inserted) {
      INFO(o.name);
      CHECK(it->second.first == !o.value.empty());
      CHECK(it->second.second == o.complete);
    }
  };
  for (const OptionSpec& o : global_options()) check(o);
  for (const CommandSpec& c : command_table()) {
    for (const OptionSpec& o : c.options) check(o);
  }
}

TEST_CASE("every command is documented and well-formed") {
  std::set<std::string_view> names;
  for (const CommandSpec& c : command_table()) {
    INFO(c.name);
    CHECK(names.insert(c.name).second);
    CHECK_FALSE(c.summary.empty());
    CHECK_FALSE(c.description.empty());
    CHECK(c.min_args <= c.max_args);
    CHECK(c.positional.size() >= static_cast<std::size_t>(c.max_args));
    for (const OptionSpec& o : c.options) {
      CHECK(o.name.starts_with("--"));
      CHECK_FALSE(o.help.empty());
    }
  }
  for (const char* required :
       {"status", "devices", "tail", "trace", "read", "buffer", "buffer export", "reload",
        "check-config", "probe", "bundle", "version", "help", "completion", "man"}) {
    INFO(required);
    CHECK(find_command(required) != nullptr);
  }
}

TEST_CASE("closest_match tolerates typos but not unrelated words") {
  const auto names = command_names();
  CHECK(closest_match("stauts", names) == "status");
  CHECK(closest_match("devcies", names) == "devices");
  CHECK(closest_match("relaod", names) == "reload");
  CHECK(closest_match("prob", names) == "probe");
  CHECK(closest_match("frobnicate", names).empty());
  CHECK(closest_match("x", names).empty());
}

TEST_CASE("help text is generated from the table") {
  const std::string overview = overview_help();
  for (const CommandSpec& c : command_table()) {
    INFO(c.name);
    CHECK_THAT(overview, Catch::Contains(std::string(c.name)));
    const std::string one = command_help(c);
    CHECK_THAT(one, Catch::StartsWith("usage: gatewayctl " + std::string(c.name)));
    for (const OptionSpec& o : c.options) CHECK_THAT(one, Catch::Contains(std::string(o.name)));
    for (const OptionSpec& o : global_options())
      CHECK_THAT(one, Catch::Contains(std::string(o.name)));
  }
  CHECK_THAT(overview, Catch::Contains("69"));
  CHECK_THAT(overview, Catch::Contains("78"));
  // Fits an 80-column terminal.
  std::size_t start = 0, widest = 0;
  for (std::size_t nl; (nl = overview.find('\n', start)) != std::string::npos; start = nl + 1) {
    widest = std::max(widest, nl - start);
  }
  CHECK(widest <= 79);
}

TEST_CASE("the bash completion knows every command, option and value list") {
  const std::string script = bash_completion();
  CHECK_THAT(script, Catch::Contains("complete -F _gatewayctl gatewayctl"));
  for (std::string_view name : command_names())
    CHECK_THAT(script, Catch::Contains(std::string(name)));
  for (const CommandSpec& c : command_table()) {
    for (const OptionSpec& o : c.options) {
      INFO(c.name << " " << o.name);
      CHECK_THAT(script, Catch::Contains(std::string(o.name)));
    }
  }
  CHECK_THAT(script, Catch::Contains("\"read:1\") _gatewayctl_value point"));
  CHECK_THAT(script, Catch::Contains("\"trace:0\") _gatewayctl_value device"));
  CHECK_THAT(script, Catch::Contains("--device) _gatewayctl_value device"));
  CHECK_THAT(script, Catch::Contains("buffer) COMPREPLY=($(compgen -W \"export\""));
  CHECK_THAT(script, Catch::Contains("devices --json"));
}

// Runs the generated script in bash with a stand-in gatewayctl, the way bash calls it on Tab.
std::string complete_in_bash(const std::string& line, const std::string& fake_devices_json) {
  const std::string dir = "/tmp/gwctl-completion-" + std::to_string(::getpid());
  std::system(("mkdir -p " + dir).c_str());
  std::ofstream(dir + "/gatewayctl.bash") << bash_completion();
  std::ofstream(dir + "/gatewayctl") << "#!/bin/sh\necho '" << fake_devices_json << "'\n";
  std::system(("chmod +x " + dir + "/gatewayctl").c_str());
  std::ofstream(dir + "/run.sh") << "source " << dir << "/gatewayctl.bash\n"
                                 << "COMP_LINE='" << line << "'\n"
                                 << "read -ra COMP_WORDS <<< \"$COMP_LINE\"\n"
                                 << "[[ $COMP_LINE == *' ' ]] && COMP_WORDS+=('')\n"
                                 << "COMP_WORDS[0]=" << dir << "/gatewayctl\n"
                                 << "COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))\n"
                                 << "_gatewayctl\n"
                                 << "printf '%s\\n' \"${COMPREPLY[@]}\" | sort | tr '\\n' ' '\n";
  FILE* p = ::popen(("bash " + dir + "/run.sh 2>&1").c_str(), "r");
  std::string out;
  char buf[512];
  while (p && std::fgets(buf, sizeof buf, p)) out += buf;
  if (p) ::pclose(p);
  std::system(("rm -rf " + dir).c_str());
  return out;
}

TEST_CASE("the bash completion completes commands, options and device ids") {
  if (std::system("command -v bash >/dev/null 2>&1") != 0) return;
  const std::string devices = R"({"devices":[{"id":"meter-b1-01"},{"id":"meter-b1-07"}]})";
  CHECK(complete_in_bash("gatewayctl sta", devices) == "status ");
  CHECK(complete_in_bash("gatewayctl tail --cl", devices) == "--class ");
  CHECK(complete_in_bash("gatewayctl tail --class a", devices) == "access alarm ");
  CHECK(complete_in_bash("gatewayctl trace ", devices) == "meter-b1-01 meter-b1-07 ");
  CHECK(complete_in_bash("gatewayctl --socket /x tail --device meter-b1-0", devices) ==
        "meter-b1-01 meter-b1-07 ");
  CHECK(complete_in_bash("gatewayctl buffer ex", devices) == "export ");
  const std::string one =
      R"({"devices":[{"id":"meter-b1-01","points":[{"name":"voltage_l1"},{"name":"energy_total"}]}]})";
  CHECK(complete_in_bash("gatewayctl read meter-b1-01 vol", one) == "voltage_l1 ");
  CHECK(complete_in_bash("gatewayctl read meter-b1-01 ", one) == "energy_total voltage_l1 ");
  CHECK(complete_in_bash("gatewayctl probe tcp://h --table ho", devices) == "holding ");
}

TEST_CASE("the man page is roff with every command and the exit statuses") {
  const std::string man = man_page("1.2.3", "2024-05-01");
  CHECK_THAT(man, Catch::StartsWith(".\\\" Generated"));
  CHECK_THAT(man, Catch::Contains(".TH GATEWAYCTL 1 \"2024-05-01\" \"gatewayctl 1.2.3\""));
  CHECK_THAT(man, Catch::Contains(".SH SYNOPSIS"));
  CHECK_THAT(man, Catch::Contains(".SH EXIT STATUS"));
  for (const CommandSpec& c : command_table()) {
    std::string escaped;
    for (char ch : c.name) escaped += ch == '-' ? std::string("\\-") : std::string(1, ch);
    CHECK_THAT(man, Catch::Contains(".SS \"" + escaped));
  }
  CHECK_THAT(man, Catch::Contains(".B \\-\\-show\\-credentials"));
  // No line may start with a '.' or '\'' that roff would read as a request, except requests.
  std::size_t start = 0;
  for (std::size_t nl; (nl = man.find('\n', start)) != std::string::npos; start = nl + 1) {
    const std::string line = man.substr(start, nl - start);
    if (line.empty() || line[0] != '.') continue;
    const std::string request = line.substr(
        1, line.find(' ') == std::string::npos ? std::string::npos : line.find(' ') - 1);
    INFO(line);
    CHECK(std::set<std::string>{"\\\"", "TH", "SH", "SS", "TP", "B", "BI", "BR", "I", "PP", "RS",
                                "RE", "nf", "fi"}
              .count(request) == 1);
  }
}

}  // namespace
}  // namespace gw::ctl
