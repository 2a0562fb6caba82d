#include "gateway/privacy.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>

namespace gw {

Result<CredentialProtector> CredentialProtector::load(const config::PrivacySection& privacy) {
  CredentialProtector p;
  if (privacy.card_id != config::PrivacySection::CardId::kHmac) return p;
  struct stat st {};
  if (::stat(privacy.key_file.c_str(), &st) != 0) {
    return Status::unavailable("privacy.key_file " + privacy.key_file + " cannot be read");
  }
  if (st.st_mode & S_IROTH) {
    return Status::invalid("privacy.key_file " + privacy.key_file +
                           " is readable by every user; chmod o-r it (0600 or 0640)");
  }
  std::ifstream in(privacy.key_file, std::ios::binary);
  if (!in) return Status::unavailable("privacy.key_file " + privacy.key_file + " cannot be read");
  std::ostringstream text;
  text << in.rdbuf();
  std::string key = text.str();
  if (!key.empty() && key.back() == '\n') key.pop_back();
  if (!key.empty() && key.back() == '\r') key.pop_back();
  if (key.size() < 16) {
    return Status::invalid("privacy.key_file " + privacy.key_file +
                           " holds fewer than 16 bytes; use a random key, e.g. "
                           "`openssl rand -hex 32 > " + privacy.key_file + "`");
  }
  p.hashing_ = true;
  p.key_ = std::move(key);
  return p;
}

std::string CredentialProtector::protect(std::string_view card_id) const {
  if (!hashing_) return std::string(card_id);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()),
       reinterpret_cast<const unsigned char*>(card_id.data()), card_id.size(), mac, &len);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "h:";
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[mac[i] >> 4];
    out += kHex[mac[i] & 15];
  }
  return out;
}

}  // namespace gw
