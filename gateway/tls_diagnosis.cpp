#include "gateway/tls_diagnosis.h"

#include <string_view>

namespace gw {

namespace {

bool contains(std::string_view text, std::string_view what) {
  return text.find(what) != std::string_view::npos;
}

// "... SSL alert write:fatal:certificate expired" -> "certificate expired" for dir "write".
std::string alert(const TlsAttempt& a, std::string_view dir) {
  const std::string marker = "SSL alert " + std::string(dir) + ":fatal:";
  for (const std::string& line : a.trace) {
    if (auto at = line.find(marker); at != std::string::npos) {
      std::string desc = line.substr(at + marker.size());
      while (!desc.empty() && (desc.back() == '\n' || desc.back() == ' ')) desc.pop_back();
      return desc;
    }
  }
  return {};
}

std::string lower(std::string s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return s;
}

}  // namespace

std::string diagnose_tls_failure(const TlsAttempt& a) {
  // Alerts we sent: our side refused the broker.
  if (const std::string sent = lower(alert(a, "write")); !sent.empty()) {
    if (sent == "unknown ca") {
      return "the broker's server certificate is not signed by a CA in ca_file " + a.ca_file;
    }
    if (sent == "certificate expired") {
      return "the broker's server certificate has expired (or its clock, or ours, is wrong)";
    }
    if (contains(sent, "protocol version")) {
      return "the broker does not offer TLS 1.2 or newer, the oldest this gateway accepts";
    }
    return "the gateway refused the broker's TLS handshake: " + sent;
  }
  // The broker asked for a client certificate and we have none: whatever it did next (an alert,
  // or closing so fast that its alert is lost in a reset), that is why.
  if (!a.client_cert) {
    for (const std::string& line : a.trace) {
      if (contains(line, "read server certificate request")) {
        return "the broker requires a client certificate and none is configured "
               "(mqtt.tls.cert_file and key_file)";
      }
    }
  }
  // Alerts the broker sent: it refused us. OpenSSL 3.0 prints TLS 1.3's certificate_required
  // (116), what mosquitto sends when a client certificate is missing, as "unknown".
  if (const std::string got = lower(alert(a, "read")); !got.empty()) {
    const bool about_cert = contains(got, "certificate") || got == "handshake failure" ||
                            got == "unknown ca" || got == "unknown";
    if (about_cert && !a.client_cert) {
      return "the broker requires a client certificate and none is configured "
             "(mqtt.tls.cert_file and key_file); its alert: " + got;
    }
    if (about_cert) return "the broker rejected the gateway's client certificate: " + got;
    if (contains(got, "protocol version")) {
      return "the broker does not offer TLS 1.2 or newer, the oldest this gateway accepts";
    }
    return "the broker ended the TLS handshake: " + got;
  }
  // The handshake itself went through; Paho's host-name check is the one left. It tries the
  // name as a DNS name, then as an IP address: only both failing is a mismatch.
  bool host_failed = false;
  bool ip_matched = false;
  for (const std::string& line : a.trace) {
    if (contains(line, "X509_check_host") && contains(line, "failed")) host_failed = true;
    if (contains(line, "X509_check_ip_asc is 1")) ip_matched = true;
  }
  if (host_failed && !ip_matched) {
    return "the broker's server certificate does not match the host name " + a.host +
           " of mqtt.uri (verify_hostname is on)";
  }
  return {};
}

}  // namespace gw
