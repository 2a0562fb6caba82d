// Gateway is the daemon: it opens the buffer, starts the uplink and one poller per device, and
// runs the core loop until SIGTERM or SIGINT. Then it stops polling, commits what was read,
// lets in-flight publishes finish for a moment, publishes the retained offline state and exits.
// run() returns the process exit code (CONTRACT.md): 0, 69 when the data dir or buffer cannot
// be used, 1 otherwise.
//
// Under systemd (Type=notify) it reports READY=1 once the buffer is open and everything has
// started, feeds the watchdog from the core loop, and reports RELOADING=1 and STOPPING=1
// (gateway/sd_notify.h).
#pragma once

#include <functional>

#include "drivers/asio.h"
#include "gateway/config.h"

namespace gw {

// Test seam, unused by gatewayd: on_ready runs on the core thread right after READY=1, with the
// core loop's io_context. tests/gateway/gatewayd_freeze_main.cpp uses it to freeze the loop on
// purpose; no production binary links that file.
struct RunHooks {
  std::function<void(asio::io_context&)> on_ready;
};

int run_gateway(config::Config config, const RunHooks& hooks = {});

}  // namespace gw
