// Why a TLS connection to the broker failed, in words an operator can act on.
//
// Paho reports every failed TLS connect as "TCP/TLS connect failure". What actually happened is
// only in Paho's protocol trace: the TLS alerts sent and received ("SSL alert
// write:fatal:certificate expired") and the result of its host-name check. The uplink collects
// the trace during a connect attempt and hands it here. Pure function; any thread.
#pragma once

#include <string>
#include <vector>

namespace gw {

struct TlsAttempt {
  std::string host;                  // as in mqtt.uri
  std::string ca_file;
  bool client_cert = false;          // cert_file/key_file configured
  std::vector<std::string> trace;    // Paho trace lines seen during the attempt
};

// One sentence naming the reason, or empty when the collected lines say nothing about TLS (a
// refused TCP connection, say): the caller then keeps Paho's own text.
std::string diagnose_tls_failure(const TlsAttempt& attempt);

}  // namespace gw
