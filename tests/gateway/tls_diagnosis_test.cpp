// The reasons an operator reads when the broker's TLS does not work out. The lines fed here are
// the ones Paho C 1.3 and OpenSSL 3.0 produce (seen in tests/integration/test_tls.py runs).
#include "gateway/tls_diagnosis.h"

#include <catch2/catch.hpp>

using Catch::Matchers::Contains;
using gw::diagnose_tls_failure;
using gw::TlsAttempt;

namespace {

TlsAttempt attempt(std::vector<std::string> trace, bool client_cert = false) {
  TlsAttempt a;
  a.host = "127.0.0.1";
  a.ca_file = "/etc/gatewayd/ca.crt";
  a.client_cert = client_cert;
  a.trace = std::move(trace);
  return a;
}

}  // namespace

TEST_CASE("a server certificate from another CA names ca_file", "[tls]") {
  const auto why = diagnose_tls_failure(
      attempt({"20261122 201500.000 SSL alert write:fatal:unknown CA"}));
  CHECK_THAT(why, Contains("not signed by a CA in ca_file /etc/gatewayd/ca.crt"));
}

TEST_CASE("an expired server certificate says so", "[tls]") {
  CHECK_THAT(diagnose_tls_failure(attempt({"SSL alert write:fatal:certificate expired"})),
             Contains("server certificate has expired"));
}

TEST_CASE("a host name mismatch names the host of mqtt.uri", "[tls]") {
  // The handshake succeeded; Paho's own check failed as a DNS name and as an IP address.
  CHECK_THAT(diagnose_tls_failure(attempt({"X509_check_host for hostname 127.0.0.1 failed, rc 0",
                                           "rc from X509_check_ip_asc is 0"})),
             Contains("does not match the host name 127.0.0.1"));
  // An IP address in the certificate's subjectAltName matches: that is no mismatch.
  CHECK(diagnose_tls_failure(attempt({"X509_check_host for hostname 127.0.0.1 failed, rc 0",
                                      "rc from X509_check_ip_asc is 1"}))
            .empty());
}

TEST_CASE("a broker that wants a client certificate", "[tls]") {
  const auto none = diagnose_tls_failure(attempt({"SSL alert read:fatal:certificate required"}));
  CHECK_THAT(none, Contains("requires a client certificate and none is configured"));
  // OpenSSL 3.0 names TLS 1.3's certificate_required alert "unknown".
  CHECK_THAT(diagnose_tls_failure(attempt({"X509_check_host for hostname 127.0.0.1 failed, rc 0",
                                           "rc from X509_check_ip_asc is 1",
                                           "SSL alert read:fatal:unknown"})),
             Contains("requires a client certificate"));
  // The request for a certificate, even when the broker's alert was lost to a reset.
  CHECK_THAT(diagnose_tls_failure(attempt(
                 {"SSL state connect:SSLv3/TLS read server certificate request:TLS_AES_256_GCM_SHA384"})),
             Contains("requires a client certificate and none is configured"));
  const auto refused = diagnose_tls_failure(
      attempt({"SSL alert read:fatal:unknown CA"}, /*client_cert=*/true));
  CHECK_THAT(refused, Contains("rejected the gateway's client certificate"));
}

TEST_CASE("a broker below TLS 1.2", "[tls]") {
  CHECK_THAT(diagnose_tls_failure(attempt({"SSL alert write:fatal:protocol version"})),
             Contains("TLS 1.2 or newer"));
}

TEST_CASE("nothing about TLS: the caller keeps Paho's text", "[tls]") {
  CHECK(diagnose_tls_failure(attempt({"some other trace line"})).empty());
  // A close_notify warning is no reason.
  CHECK(diagnose_tls_failure(attempt({"SSL alert read:warning:close notify"})).empty());
}
