// MD5 hex digests through the EVP interface (MD5() is deprecated in OpenSSL 3) and the
// PostgreSQL md5 password formats built on them.
#include "protocol/md5auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>

namespace pgswitch::protocol {
namespace {

constexpr std::string_view kMd5Prefix = "md5";
constexpr size_t kMd5HexLength = 32;

}  // namespace

std::string md5Hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), digest, &len, EVP_md5(), nullptr) != 1 || len != 16) {
    return {};
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(kMd5HexLength, '0');
  for (unsigned int i = 0; i < len; ++i) {
    out[2 * i] = kHex[digest[i] >> 4];
    out[2 * i + 1] = kHex[digest[i] & 0x0f];
  }
  return out;
}

std::string md5PasswordHash(std::string_view password, std::string_view user) {
  std::string input(password);
  input += user;
  return std::string(kMd5Prefix) + md5Hex(input);
}

bool isMd5PasswordHash(std::string_view text) {
  if (text.size() != kMd5Prefix.size() + kMd5HexLength || !text.starts_with(kMd5Prefix)) {
    return false;
  }
  return std::all_of(text.begin() + kMd5Prefix.size(), text.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::string md5SaltedResponse(std::string_view storedOrPassword, std::string_view user,
                              std::span<const std::byte, 4> salt) {
  std::string inner = isMd5PasswordHash(storedOrPassword)
                          ? std::string(storedOrPassword.substr(kMd5Prefix.size()))
                          : md5PasswordHash(storedOrPassword, user).substr(kMd5Prefix.size());
  inner.append(reinterpret_cast<const char*>(salt.data()), salt.size());
  return std::string(kMd5Prefix) + md5Hex(inner);
}

bool constantTimeEquals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace pgswitch::protocol
