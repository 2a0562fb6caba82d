// CredentialProtector applies `privacy.card_id` to access credentials before an event is stored:
// raw keeps the card id as read; hmac replaces it with "h:" + lowercase hex HMAC-SHA256(key, id),
// so central servers can still match swipes by card without ever seeing the number
// (CONTRACT.md). The key is key_file's bytes without a final newline.
#pragma once

#include <string>
#include <string_view>

#include "gateway/config.h"
#include "protocols/status.h"

namespace gw {

class CredentialProtector {
 public:
  // Reads the key for hmac mode. Fails when the file is missing, empty, or readable by others.
  static Result<CredentialProtector> load(const config::PrivacySection& privacy);
  static CredentialProtector raw() { return CredentialProtector(); }

  bool hashing() const { return hashing_; }
  std::string protect(std::string_view card_id) const;

 private:
  bool hashing_ = false;
  std::string key_;
};

}  // namespace gw
