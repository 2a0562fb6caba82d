// Gateway is the daemon: it opens the buffer, starts the uplink and one poller per device, and
// runs the core loop until SIGTERM or SIGINT. Then it stops polling, commits what was read,
// lets in-flight publishes finish for a moment, publishes the retained offline state and exits.
// run() returns the process exit code (CONTRACT.md): 0, 69 when the data dir or buffer cannot
// be used, 1 otherwise.
#pragma once

#include "gateway/config.h"

namespace gw {

int run_gateway(const config::Config& config);

}  // namespace gw
