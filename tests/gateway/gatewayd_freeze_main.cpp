// gatewayd_freeze: gatewayd with one difference, for the watchdog test only
// (tests/integration/test_systemd.py): `--freeze-after MS` blocks the core loop MS milliseconds
// after READY=1, the way a deadlock or a stuck call would. Built only with the tests; no package
// or install rule ships it, so production gatewayd cannot be frozen on purpose.
#include <charconv>
#include <chrono>
#include <iostream>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include "gateway/config.h"
#include "gateway/driver_registry.h"
#include "gateway/gateway.h"

int main(int argc, char** argv) {
  std::string config_path;
  long freeze_after_ms = -1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string_view flag = argv[i];
    const std::string_view value = argv[i + 1];
    if (flag == "--config") {
      config_path = value;
    } else if (flag == "--freeze-after") {
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), freeze_after_ms);
      if (ec != std::errc() || end != value.data() + value.size() || freeze_after_ms < 0) {
        std::cerr << "gatewayd_freeze: --freeze-after: milliseconds, got '" << value << "'\n";
        return 1;
      }
    } else {
      std::cerr << "gatewayd_freeze: unknown argument '" << flag << "'\n";
      return 1;
    }
  }
  if (config_path.empty() || freeze_after_ms < 0 || argc % 2 == 0) {
    std::cerr << "usage: gatewayd_freeze --config FILE --freeze-after MS\n";
    return 1;
  }
  auto loaded = gw::config::load_config(config_path);
  auto errors = loaded.errors;
  if (loaded.config) {
    auto more = gw::check_drivers(*loaded.config);
    errors.insert(errors.end(), more.begin(), more.end());
  }
  for (const auto& e : errors)
    std::cerr << "gatewayd_freeze: config error: " << e.to_string() << "\n";
  if (!errors.empty()) return 78;

  gw::RunHooks hooks;
  hooks.on_ready = [freeze_after_ms](asio::io_context& core) {
    // The handler owns its timer, so both go with the io_context when the daemon exits.
    auto freeze =
        std::make_shared<asio::steady_timer>(core, std::chrono::milliseconds(freeze_after_ms));
    freeze->async_wait([freeze](const boost::system::error_code& e) {
      if (e) return;
      std::cerr << "gatewayd_freeze: freezing the core loop on purpose\n" << std::flush;
      for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
    });
  };
  return gw::run_gateway(std::move(*loaded.config), hooks);
}
