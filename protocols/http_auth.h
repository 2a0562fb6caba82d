// HTTP authentication as IP cameras speak it: parsing WWW-Authenticate challenges and building
// Authorization values for Basic (RFC 7617) and Digest (RFC 7616, which keeps RFC 2617's MD5):
// algorithms MD5, MD5-sess, SHA-256 and SHA-256-sess, qop=auth or no qop (RFC 2069 style).
// qop=auth-int and userhash are not supported (no camera we know asks for them). The client
// nonce and nonce count are passed in, so results are reproducible. Pure; any thread.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "protocols/status.h"

namespace gw::protocols::http_auth {

struct Challenge {
  std::string scheme;                         // lower-cased: "digest", "basic", ...
  std::map<std::string, std::string> params;  // names lower-cased, values unquoted
  std::string param(const std::string& name) const;
};

// One WWW-Authenticate value, which may hold several challenges ("Digest ..., Basic ...").
std::vector<Challenge> parse_challenges(std::string_view header_value);
// `name=value, name="quoted value", ...` (an Authorization value after its scheme).
std::map<std::string, std::string> parse_params(std::string_view text);

std::string basic_authorization(std::string_view username, std::string_view password);

struct DigestInput {
  std::string_view method;  // "GET"
  std::string_view uri;     // the request target as sent: "/ISAPI/Event/notification/alertStream"
  std::string_view username;
  std::string_view password;
  uint32_t nc = 1;          // nonce count: 1 for the first use of a nonce, then 2, 3, ...
  std::string_view cnonce;  // client nonce (random, per request)
};
// The Authorization value answering `challenge` (scheme digest). Fails for an algorithm or qop
// we cannot do, or a challenge without realm or nonce.
Result<std::string> digest_authorization(const Challenge& challenge, const DigestInput& in);

// Lower-case hex digests (OpenSSL).
std::string md5_hex(std::string_view data);
std::string sha256_hex(std::string_view data);

}  // namespace gw::protocols::http_auth
