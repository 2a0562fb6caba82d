#include "gateway/privacy.h"

#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;
using gw::CredentialProtector;
using gw::config::PrivacySection;

namespace {
std::string write_key(const std::string& name, const std::string& bytes, mode_t mode) {
  const fs::path p = fs::temp_directory_path() / ("gw-privacy-" + std::to_string(::getpid()) + name);
  std::ofstream(p, std::ios::binary) << bytes;
  ::chmod(p.c_str(), mode);
  return p.string();
}
PrivacySection hmac_with(const std::string& key_file) {
  PrivacySection s;
  s.card_id = PrivacySection::CardId::kHmac;
  s.key_file = key_file;
  return s;
}
}  // namespace

TEST_CASE("raw mode keeps the card id as read") {
  auto p = CredentialProtector::load(PrivacySection{});
  REQUIRE(p);
  CHECK_FALSE(p->hashing());
  CHECK(p->protect("0004213371") == "0004213371");
}

TEST_CASE("hmac mode gives h: + HMAC-SHA256 under the key without its final newline") {
  // Expected value from Python: hmac.new(key, b"0004213371", hashlib.sha256).hexdigest()
  const std::string key = write_key("ok", "0123456789abcdef-campus-key\n", 0600);
  auto p = CredentialProtector::load(hmac_with(key));
  REQUIRE(p);
  CHECK(p->hashing());
  CHECK(p->protect("0004213371") ==
        "h:2c191041b502fee22bdf38c4a3d75c3b6e257d75a7ddf1987c4766efdc0968e6");
  CHECK(p->protect("0004213372") != p->protect("0004213371"));
  fs::remove(key);
}

TEST_CASE("a key readable by every user, a short key or a missing key file is refused") {
  const std::string open_key = write_key("open", "0123456789abcdef-campus-key", 0644);
  auto p = CredentialProtector::load(hmac_with(open_key));
  REQUIRE_FALSE(p);
  CHECK(p.status().message().find("readable by every user") != std::string::npos);
  CHECK(p.status().message().find(open_key) != std::string::npos);

  const std::string short_key = write_key("short", "tiny", 0600);
  auto q = CredentialProtector::load(hmac_with(short_key));
  REQUIRE_FALSE(q);
  CHECK(q.status().message().find("fewer than 16 bytes") != std::string::npos);

  auto r = CredentialProtector::load(hmac_with("/nonexistent/card.key"));
  REQUIRE_FALSE(r);
  CHECK(r.status().code() == gw::Status::Code::kUnavailable);
  fs::remove(open_key);
  fs::remove(short_key);
}
