// PostgreSQL MD5 password authentication: pg_authid "md5..." hashes and the salted response to
// AuthenticationMD5Password. Pure: no I/O, no exceptions.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

namespace pgswitch::protocol {

// 32 lowercase hex characters. Empty only if the MD5 digest is unavailable (e.g. a FIPS-only
// OpenSSL provider), which makes every comparison against it fail.
std::string md5Hex(std::string_view data);

// "md5" + md5Hex(password + user), as stored in pg_authid.
std::string md5PasswordHash(std::string_view password, std::string_view user);

// True if text has the shape of a stored MD5 hash: "md5" + 32 lowercase hex characters
// (PostgreSQL's get_password_type rule).
bool isMd5PasswordHash(std::string_view text);

// The response to AuthenticationMD5Password: "md5" + md5Hex(md5Hex(password + user) + salt).
// storedOrPassword may be the plaintext password or an already-hashed "md5..." value, which is
// then used directly. As in PostgreSQL, a plaintext password that itself looks like an MD5 hash
// is taken as one.
std::string md5SaltedResponse(std::string_view storedOrPassword, std::string_view user,
                              std::span<const std::byte, 4> salt);

// Compares in time independent of the contents (the length is not secret).
bool constantTimeEquals(std::string_view a, std::string_view b);

}  // namespace pgswitch::protocol
