// `gatewayctl bundle FILE.tar.gz`: everything support asks for, in one archive, collected in a
// temporary folder and packed with /bin/tar. Each part is collected on its own: a daemon that is
// down, a config that does not load or a missing journalctl costs that part only, and the
// MANIFEST says why it is missing. Secrets never enter the folder: the config is copied with
// secret-looking values and URI passwords replaced, and password_file / key_file are never read.
// One thread; runs child processes (journalctl, tar) with deadlines.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>

namespace gw::ctl {

struct BundleInputs {
  std::string output;                      // FILE.tar.gz
  std::string socket;                      // resolved control socket
  std::optional<std::string> config_file;  // --config, or the default when it exists
  int timeout_ms = 5000;                   // per daemon request
  int64_t now_us = 0;
};

int run_bundle(const BundleInputs& in, std::ostream& out, std::ostream& err);

// Pure helpers, exposed for tests.
// Replaces the values of secret-looking keys (password, secret, token, psk, ... but not *_file,
// whose value is a path) and the user:password part of URIs with "<redacted>".
std::string redact_config_text(const std::string& yaml);
// "127.0.0.1:9108" -> {"127.0.0.1", 9108}; a wildcard listen address is reached via loopback.
struct HostPort {
  std::string host;
  int port = 0;
};
std::optional<HostPort> metrics_endpoint(const std::string& listen);
// A plain HTTP/1.0 GET with a deadline; the body on 200, else an error naming the status.
std::optional<std::string> http_get(const HostPort& where, const std::string& path, int timeout_ms,
                                    std::string* error);

}  // namespace gw::ctl
