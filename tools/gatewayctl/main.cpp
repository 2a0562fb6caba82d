// gatewayctl: the ops CLI (CONTRACT.md). This version offers the commands that need no running
// daemon: check-config (the daemon's own validation and messages) and buffer (a look into a
// data_dir's buffer, safe while the daemon writes it: WAL readers never block the writer).
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "gateway/config.h"
#include "gateway/driver_registry.h"
#include "protocols/topics.h"
#include "storage/event_buffer.h"

namespace {

namespace v1 = campus::gateway::v1;
constexpr int kExitConfig = 78;
constexpr int kExitUnavailable = 69;
constexpr int kExitFailure = 1;

void usage(std::ostream& out) {
  out << "usage: gatewayctl check-config FILE\n"
         "       gatewayctl buffer (--data-dir DIR | --config FILE) [--json]\n"
         "       gatewayctl --version\n";
}

int check_config(const std::vector<std::string>& args) {
  if (args.size() != 1) {
    std::cerr << "gatewayctl check-config: expects exactly one FILE\n";
    return kExitFailure;
  }
  gw::config::LoadResult loaded = gw::config::load_config(args[0]);
  auto errors = loaded.errors;
  if (loaded.config) {
    auto more = gw::check_drivers(*loaded.config);
    errors.insert(errors.end(), more.begin(), more.end());
  }
  for (const auto& e : errors) std::cerr << "gatewayctl: config error: " << e.to_string() << "\n";
  if (!errors.empty()) return kExitConfig;
  std::cout << loaded.config->source_path << ": OK (" << loaded.config->devices.size()
            << " devices, " << loaded.config->buses.size() << " buses)\n";
  return 0;
}

int buffer(const std::vector<std::string>& args) {
  std::string data_dir;
  bool json = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--json") {
      json = true;
    } else if ((args[i] == "--data-dir" || args[i] == "--config") && i + 1 < args.size()) {
      if (args[i] == "--data-dir") {
        data_dir = args[++i];
      } else {
        gw::config::LoadResult loaded = gw::config::load_config(args[++i]);
        for (const auto& e : loaded.errors) std::cerr << "gatewayctl: config error: " << e.to_string() << "\n";
        if (!loaded.config) return kExitConfig;
        data_dir = loaded.config->gateway.data_dir;
      }
    } else {
      std::cerr << "gatewayctl buffer: unexpected argument '" << args[i] << "'\n";
      usage(std::cerr);
      return kExitFailure;
    }
  }
  if (data_dir.empty()) {
    std::cerr << "gatewayctl buffer: give --data-dir DIR or --config FILE\n";
    return kExitFailure;
  }
  const std::string path = (std::filesystem::path(data_dir) / "buffer.db").string();
  if (!std::filesystem::exists(path)) {
    std::cerr << "gatewayctl buffer: no buffer at " << path << "\n";
    return kExitUnavailable;
  }
  auto insp = gw::storage::inspect_buffer(path);
  if (!insp) {
    std::cerr << "gatewayctl buffer: " << insp.status().message() << "\n";
    return kExitFailure;
  }
  const int64_t now_us = std::chrono::duration_cast<std::chrono::microseconds>(
                             std::chrono::system_clock::now().time_since_epoch()).count();
  auto age_s = [&](const gw::storage::ClassStats& s) -> int64_t {
    return s.oldest_time_us ? std::max<int64_t>(0, (now_us - s.oldest_time_us) / 1000000) : 0;
  };
  uint64_t total = 0;
  for (auto cls : {v1::ACCESS, v1::ALARM, v1::TELEMETRY, v1::STATUS}) total += insp->classes[cls].pending;
  if (json) {
    std::cout << "{\"path\":\"" << path << "\",\"schema_version\":" << insp->schema_version
              << ",\"next_seq\":" << insp->next_seq << ",\"pending\":" << total << ",\"classes\":{";
    bool first = true;
    for (auto cls : {v1::ACCESS, v1::ALARM, v1::TELEMETRY, v1::STATUS}) {
      const auto& s = insp->classes[cls];
      std::cout << (first ? "" : ",") << "\"" << gw::protocols::class_name(cls)
                << "\":{\"pending\":" << s.pending << ",\"bytes\":" << s.bytes
                << ",\"oldest_age_s\":" << age_s(s) << "}";
      first = false;
    }
    std::cout << "}}\n";
    return 0;
  }
  std::cout << "buffer " << path << "\n"
            << "  pending " << total << " events, next seq " << insp->next_seq << "\n";
  std::printf("  %-10s %10s %12s %14s\n", "class", "pending", "bytes", "oldest age");
  for (auto cls : {v1::ACCESS, v1::ALARM, v1::TELEMETRY, v1::STATUS}) {
    const auto& s = insp->classes[cls];
    std::printf("  %-10s %10llu %12llu %13llds\n", std::string(gw::protocols::class_name(cls)).c_str(),
                static_cast<unsigned long long>(s.pending), static_cast<unsigned long long>(s.bytes),
                static_cast<long long>(age_s(s)));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    usage(std::cerr);
    return kExitFailure;
  }
  const std::string command = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  if (command == "--version" || command == "version") {
    std::cout << "gatewayctl " << GW_VERSION << "\n";
    return 0;
  }
  if (command == "--help" || command == "-h" || command == "help") {
    usage(std::cout);
    return 0;
  }
  if (command == "check-config") return check_config(args);
  if (command == "buffer") return buffer(args);
  std::cerr << "gatewayctl: unknown command '" << command << "'\n";
  usage(std::cerr);
  return kExitFailure;
}
