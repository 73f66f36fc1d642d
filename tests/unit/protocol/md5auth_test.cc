// Unit tests for protocol/md5auth: known MD5 vectors and the PostgreSQL md5 password formats.
#include "protocol/md5auth.h"

#include <gtest/gtest.h>

#include <array>
#include <string>

namespace pgswitch::protocol {
namespace {

constexpr std::array<std::byte, 4> kSalt = {std::byte{1}, std::byte{2}, std::byte{3},
                                            std::byte{0xff}};

TEST(Md5Auth, Md5HexKnownVectors) {
  EXPECT_EQ(md5Hex(""), "d41d8cd98f00b204e9800998ecf8427e");
  EXPECT_EQ(md5Hex("abc"), "900150983cd24fb0d6963f7d28e17f72");
  EXPECT_EQ(md5Hex(std::string_view("a\0b", 3)).size(), 32u);
}

TEST(Md5Auth, PasswordHashMatchesPgAuthid) {
  EXPECT_EQ(md5PasswordHash("password", "postgres"), "md532e12f215ba27cb750c9e093ce4b5127");
}

TEST(Md5Auth, SaltedResponseKnownValue) {
  // "md5" + md5(md5hex("password" + "postgres") + "\x01\x02\x03\xff"), computed with Python.
  EXPECT_EQ(md5SaltedResponse("password", "postgres", kSalt),
            "md5c74d653ba3dd025a2b4ca331bc0672cd");
}

TEST(Md5Auth, SaltedResponsePlaintextEqualsPrehashed) {
  for (auto [password, user] : {std::pair{"password", "postgres"}, std::pair{"", "u"},
                                std::pair{"p\xc3\xa4ss", "\xc3\xbcser"}}) {
    std::string hash = md5PasswordHash(password, user);
    EXPECT_EQ(md5SaltedResponse(password, user, kSalt), md5SaltedResponse(hash, user, kSalt));
  }
  // The salt matters, and so does the user for a plaintext password.
  constexpr std::array<std::byte, 4> other = {};
  EXPECT_NE(md5SaltedResponse("password", "postgres", kSalt),
            md5SaltedResponse("password", "postgres", other));
  EXPECT_NE(md5SaltedResponse("password", "postgres", kSalt),
            md5SaltedResponse("password", "postgre", kSalt));
}

TEST(Md5Auth, RecognizesStoredHashShape) {
  EXPECT_TRUE(isMd5PasswordHash("md532e12f215ba27cb750c9e093ce4b5127"));
  EXPECT_FALSE(isMd5PasswordHash("md532E12F215BA27CB750C9E093CE4B5127"));  // PostgreSQL: lower
  EXPECT_FALSE(isMd5PasswordHash("md532e12f215ba27cb750c9e093ce4b512"));
  EXPECT_FALSE(isMd5PasswordHash("md532e12f215ba27cb750c9e093ce4b51270"));
  EXPECT_FALSE(isMd5PasswordHash("xx532e12f215ba27cb750c9e093ce4b5127"));
  EXPECT_FALSE(isMd5PasswordHash("md5"));
  // A non-hash "md5..." password is treated as plaintext.
  EXPECT_EQ(md5SaltedResponse("md5short", "u", kSalt),
            md5SaltedResponse(md5PasswordHash("md5short", "u"), "u", kSalt));
}

TEST(Md5Auth, ConstantTimeEquals) {
  EXPECT_TRUE(constantTimeEquals("", ""));
  EXPECT_TRUE(constantTimeEquals("abc", "abc"));
  EXPECT_FALSE(constantTimeEquals("abc", "abd"));
  EXPECT_FALSE(constantTimeEquals("abc", "ab"));
  EXPECT_FALSE(constantTimeEquals("", "a"));
  EXPECT_TRUE(constantTimeEquals(std::string_view("a\0b", 3), std::string_view("a\0b", 3)));
  EXPECT_FALSE(constantTimeEquals(std::string_view("a\0b", 3), std::string_view("a\0c", 3)));
}

}  // namespace
}  // namespace pgswitch::protocol
