#include "common/config_hash.h"

#include <openssl/evp.h>

#include <cstdio>
#include <cstdlib>

namespace ablate {

std::string Sha256Hex(std::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), digest, &length, EVP_sha256(), nullptr) != 1) {
    // Only a broken OpenSSL installation fails here; there is no sensible fallback.
    std::fprintf(stderr, "EVP_Digest(SHA-256) failed\n");
    std::abort();
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(2 * length);
  for (unsigned int i = 0; i < length; ++i) {
    hex += kHex[digest[i] >> 4];
    hex += kHex[digest[i] & 0xf];
  }
  return hex;
}

std::string ConfigHash(const RunConfig& config) {
  return Sha256Hex(config.ToJson().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

}  // namespace ablate
