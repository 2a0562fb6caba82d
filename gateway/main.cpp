// gatewayd: the daemon's entry point (CONTRACT.md, "Binaries"). Parses flags, loads and checks
// the config (exit 78 with every problem named), then runs the gateway.
#include <cstring>
#include <iostream>
#include <string>
#include <utility>

#include "gateway/config.h"
#include "gateway/driver_registry.h"
#include "gateway/gateway.h"
#include "gateway/log.h"

namespace {

constexpr int kExitConfig = 78;
constexpr int kExitUsage = 1;

void usage(std::ostream& out) {
  out << "usage: gatewayd --config FILE [--log-level error|warn|notice|info|debug]\n"
         "       gatewayd --check-config FILE\n"
         "       gatewayd --version\n";
}

// Loads and fully checks a config; prints every problem. Returns nullopt when there were any.
std::optional<gw::config::Config> load(const std::string& path) {
  gw::config::LoadResult loaded = gw::config::load_config(path);
  std::vector<gw::config::ConfigError> errors = loaded.errors;
  if (loaded.config) {
    auto driver_errors = gw::check_drivers(*loaded.config);
    errors.insert(errors.end(), driver_errors.begin(), driver_errors.end());
  }
  for (const auto& e : errors) std::cerr << "gatewayd: config error: " << e.to_string() << "\n";
  if (!errors.empty()) return std::nullopt;
  return std::move(loaded.config);
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path;
  std::string check_path;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](const char* flag) -> std::string {
      if (i + 1 >= argc) {
        std::cerr << "gatewayd: " << flag << " needs a value\n";
        std::exit(kExitUsage);
      }
      return argv[++i];
    };
    if (arg == "--config") {
      config_path = value("--config");
    } else if (arg == "--check-config") {
      check_path = value("--check-config");
    } else if (arg == "--log-level") {
      const std::string level = value("--log-level");
      using gw::log::Level;
      if (level == "error") gw::log::set_min_level(Level::kError);
      else if (level == "warn") gw::log::set_min_level(Level::kWarning);
      else if (level == "notice") gw::log::set_min_level(Level::kNotice);
      else if (level == "info") gw::log::set_min_level(Level::kInfo);
      else if (level == "debug") gw::log::set_min_level(Level::kDebug);
      else {
        std::cerr << "gatewayd: --log-level: unknown level '" << level
                  << "' (error, warn, notice, info, debug)\n";
        return kExitUsage;
      }
    } else if (arg == "--version") {
      std::cout << "gatewayd " << GW_VERSION << "\n";
      return 0;
    } else if (arg == "--help" || arg == "-h") {
      usage(std::cout);
      return 0;
    } else {
      std::cerr << "gatewayd: unknown argument '" << arg << "'\n";
      usage(std::cerr);
      return kExitUsage;
    }
  }
  if (!check_path.empty()) {
    auto config = load(check_path);
    if (!config) return kExitConfig;
    std::cout << config->source_path << ": OK (" << config->devices.size() << " devices, "
              << config->buses.size() << " buses)\n";
    return 0;
  }
  if (config_path.empty()) {
    usage(std::cerr);
    return kExitUsage;
  }
  auto config = load(config_path);
  if (!config) return kExitConfig;
  return gw::run_gateway(std::move(*config));
}
