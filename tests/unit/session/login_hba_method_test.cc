// Login with the method hba_file decided (Login::begin's `method`): it replaces the user's own
// `auth` for the whole exchange, the password message included.
#include <gtest/gtest.h>

#include <cstring>

#include "protocol/builder.h"
#include "protocol/md5auth.h"
#include "proxy/session/login.h"

namespace pgswitch::proxy {
namespace {

using namespace protocol;

struct Client {
  ChunkPool pool;
  ByteQueue in{pool};
  std::string out;
  Login login;
  std::shared_ptr<const Config> cfg = [] {
    auto r = parseConfig(R"toml([server]
listen = "127.0.0.1:6432"
admin_users = ["scram"]
[[backend]]
name = "pg1"
host = "127.0.0.1"
[[user]]
name = "scram"
password = "secret"
[[user]]
name = "md5"
password = "pw"
auth = "md5"
)toml",
                         "/tmp/login_hba_method_test.toml");
    EXPECT_TRUE(r) << (r ? "" : r.error().joined());
    return *r;
  }();

  Login::Outcome startup(std::string_view user) {
    std::string m;
    std::vector<std::pair<std::string, std::string>> params{{"user", std::string(user)}};
    appendStartup(m, params);
    in.append(m);
    return login.feed(in, *cfg, out);
  }
  // The authentication request code of the one 'R' message in `out`.
  int32_t authCode() const {
    if (out.size() < 9 || out[0] != 'R') return -1;
    uint32_t v;
    std::memcpy(&v, out.data() + 5, 4);
    return static_cast<int32_t>(__builtin_bswap32(v));
  }
};

TEST(LoginHbaMethod, TrustSkipsTheUsersPassword) {
  Client c;
  ASSERT_EQ(c.startup("scram").step, Login::Step::StartupDone);
  EXPECT_EQ(c.login.begin(*c.cfg, c.out, nullptr, AuthMethod::Trust).step, Login::Step::Authenticated);
  EXPECT_EQ(c.authCode(), 0);  // AuthenticationOk
}

TEST(LoginHbaMethod, Md5ForAScramUserChecksTheMd5Answer) {
  for (bool right : {true, false}) {
    Client c;
    ASSERT_EQ(c.startup("scram").step, Login::Step::StartupDone);
    ASSERT_EQ(c.login.begin(*c.cfg, c.out, nullptr, AuthMethod::Md5).step, Login::Step::NeedMore);
    ASSERT_EQ(c.authCode(), 5);  // AuthenticationMD5Password
    std::array<std::byte, 4> salt;
    std::memcpy(salt.data(), c.out.data() + 9, 4);
    std::string pw;
    appendPasswordMessage(pw, md5SaltedResponse(right ? "secret" : "nope", "scram", salt));
    c.out.clear();
    c.in.append(pw);
    EXPECT_EQ(c.login.feed(c.in, *c.cfg, c.out).step,
              right ? Login::Step::Authenticated : Login::Step::AuthFailed);
  }
}

TEST(LoginHbaMethod, ScramForAnMd5User) {
  Client c;
  ASSERT_EQ(c.startup("md5").step, Login::Step::StartupDone);
  ASSERT_EQ(c.login.begin(*c.cfg, c.out, nullptr, AuthMethod::ScramSha256).step, Login::Step::NeedMore);
  EXPECT_EQ(c.authCode(), 10);  // AuthenticationSASL
}

TEST(LoginHbaMethod, WithoutADecisionTheUsersAuthStays) {
  Client c;
  ASSERT_EQ(c.startup("md5").step, Login::Step::StartupDone);
  ASSERT_EQ(c.login.begin(*c.cfg, c.out).step, Login::Step::NeedMore);
  EXPECT_EQ(c.authCode(), 5);
}

}  // namespace
}  // namespace pgswitch::proxy
