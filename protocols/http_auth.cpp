#include "protocols/http_auth.h"

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cstdio>

namespace gw::protocols::http_auth {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string hex_digest(std::string_view data, const EVP_MD* md) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, md, nullptr) != 1) return {};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i) {
    hex += kHex[out[i] >> 4];
    hex += kHex[out[i] & 0xF];
  }
  return hex;
}

// Reads `name[=value]` pairs separated by commas, starting at `pos`. Stops before a token that
// is not followed by '=' (the next challenge's scheme) and returns where it stopped.
std::size_t read_params(std::string_view s, std::size_t pos,
                        std::map<std::string, std::string>& out) {
  while (pos < s.size()) {
    while (pos < s.size() && (is_space(s[pos]) || s[pos] == ',')) ++pos;
    if (pos >= s.size()) break;
    std::size_t end = pos;
    while (end < s.size() && !is_space(s[end]) && s[end] != ',' && s[end] != '=') ++end;
    std::size_t eq = end;
    while (eq < s.size() && is_space(s[eq])) ++eq;
    if (eq >= s.size() || s[eq] != '=') return pos;  // a new scheme starts here
    const std::string name = lower(s.substr(pos, end - pos));
    pos = eq + 1;
    while (pos < s.size() && is_space(s[pos])) ++pos;
    std::string value;
    if (pos < s.size() && s[pos] == '"') {
      for (++pos; pos < s.size() && s[pos] != '"'; ++pos) {
        if (s[pos] == '\\' && pos + 1 < s.size()) ++pos;
        value += s[pos];
      }
      if (pos < s.size()) ++pos;  // closing quote
    } else {
      const std::size_t start = pos;
      while (pos < s.size() && s[pos] != ',' && !is_space(s[pos])) ++pos;
      value = std::string(s.substr(start, pos - start));
    }
    if (!name.empty()) out[name] = value;
  }
  return pos;
}

std::string quoted(std::string_view v) {
  std::string out = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string base64(std::string_view in) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const uint32_t n = (static_cast<uint8_t>(in[i]) << 16) |
                       (static_cast<uint8_t>(in[i + 1]) << 8) | static_cast<uint8_t>(in[i + 2]);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
    out += kAlphabet[n & 63];
  }
  if (i + 1 == in.size()) {
    const uint32_t n = static_cast<uint8_t>(in[i]) << 16;
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    const uint32_t n = (static_cast<uint8_t>(in[i]) << 16) | (static_cast<uint8_t>(in[i + 1]) << 8);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
    out += '=';
  }
  return out;
}

}  // namespace

std::string Challenge::param(const std::string& name) const {
  auto it = params.find(name);
  return it == params.end() ? std::string() : it->second;
}

std::vector<Challenge> parse_challenges(std::string_view header_value) {
  std::vector<Challenge> out;
  std::size_t pos = 0;
  while (pos < header_value.size()) {
    while (pos < header_value.size() &&
           (is_space(header_value[pos]) || header_value[pos] == ',')) {
      ++pos;
    }
    if (pos >= header_value.size()) break;
    std::size_t end = pos;
    while (end < header_value.size() && !is_space(header_value[end]) &&
           header_value[end] != ',') {
      ++end;
    }
    Challenge c;
    c.scheme = lower(header_value.substr(pos, end - pos));
    const std::size_t next = read_params(header_value, end, c.params);
    out.push_back(std::move(c));
    if (next <= pos) break;  // cannot happen (end > pos); guards against a loop regardless
    pos = next;
  }
  return out;
}

std::map<std::string, std::string> parse_params(std::string_view text) {
  std::map<std::string, std::string> out;
  read_params(text, 0, out);
  return out;
}

std::string basic_authorization(std::string_view username, std::string_view password) {
  std::string pair(username);
  pair += ':';
  pair += password;
  return "Basic " + base64(pair);
}

std::string md5_hex(std::string_view data) { return hex_digest(data, EVP_md5()); }
std::string sha256_hex(std::string_view data) { return hex_digest(data, EVP_sha256()); }

Result<std::string> digest_authorization(const Challenge& ch, const DigestInput& in) {
  if (ch.scheme != "digest") return Status::invalid("not a Digest challenge");
  const std::string realm = ch.param("realm");
  const std::string nonce = ch.param("nonce");
  if (nonce.empty()) return Status::invalid("Digest challenge without a nonce");
  // The challenge's values go back into our request header: a CR or LF in them (found by
  // fuzzing) would split that header and let whoever answers inject headers of their own.
  for (const char* name : {"realm", "nonce", "opaque"}) {
    const std::string value = ch.param(name);
    if (std::any_of(value.begin(), value.end(),
                    [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; })) {
      return Status::invalid(std::string("Digest challenge with a control character in its ") +
                             name);
    }
  }
  const std::string algorithm = ch.param("algorithm").empty() ? "MD5" : ch.param("algorithm");
  const std::string alg = lower(algorithm);
  const bool sha = alg == "sha-256" || alg == "sha-256-sess";
  const bool sess = alg == "md5-sess" || alg == "sha-256-sess";
  if (!sha && alg != "md5" && alg != "md5-sess") {
    return Status::invalid("Digest algorithm '" + algorithm.substr(0, 32) + "' is not supported");
  }
  auto H = [&](std::string_view data) { return sha ? sha256_hex(data) : md5_hex(data); };

  std::string qop;
  if (ch.params.count("qop")) {
    // "auth,auth-int": pick auth.
    std::string_view offered = ch.params.at("qop");
    bool auth = false;
    std::size_t pos = 0;
    while (pos <= offered.size()) {
      std::size_t comma = offered.find(',', pos);
      if (comma == std::string_view::npos) comma = offered.size();
      std::string_view tok = offered.substr(pos, comma - pos);
      while (!tok.empty() && is_space(tok.front())) tok.remove_prefix(1);
      while (!tok.empty() && is_space(tok.back())) tok.remove_suffix(1);
      if (lower(tok) == "auth") auth = true;
      pos = comma + 1;
    }
    if (!auth) {
      return Status::invalid("Digest qop '" + std::string(offered.substr(0, 32)) +
                             "' offers no 'auth' (auth-int is not supported)");
    }
    qop = "auth";
  }
  char nc[9];
  std::snprintf(nc, sizeof nc, "%08x", in.nc);

  std::string a1;
  a1.append(in.username).append(":").append(realm).append(":").append(in.password);
  std::string ha1 = H(a1);
  if (sess) ha1 = H(ha1 + ":" + nonce + ":" + std::string(in.cnonce));
  std::string a2;
  a2.append(in.method).append(":").append(in.uri);
  const std::string ha2 = H(a2);
  const std::string response =
      qop.empty()
          ? H(ha1 + ":" + nonce + ":" + ha2)
          : H(ha1 + ":" + nonce + ":" + nc + ":" + std::string(in.cnonce) + ":" + qop + ":" + ha2);

  std::string out = "Digest username=" + quoted(in.username) + ", realm=" + quoted(realm) +
                    ", nonce=" + quoted(nonce) + ", uri=" + quoted(in.uri) +
                    ", algorithm=" + algorithm + ", response=" + quoted(response);
  if (ch.params.count("opaque")) out += ", opaque=" + quoted(ch.param("opaque"));
  if (!qop.empty()) {
    out += ", qop=" + qop + ", nc=" + nc + ", cnonce=" + quoted(in.cnonce);
  }
  return out;
}

}  // namespace gw::protocols::http_auth
