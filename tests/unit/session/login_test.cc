// Login on bytes, no sockets: startup packets (SSL answer, cancel, protocol negotiation,
// "options"), then trust, md5 and SCRAM-SHA-256 exchanges driven by protocol/'s own client.
#include "proxy/session/login.h"

#include <gtest/gtest.h>

#include <cstring>

#include "protocol/builder.h"
#include "protocol/framing.h"
#include "protocol/md5auth.h"
#include "protocol/messages.h"

namespace pgswitch::proxy {
namespace {

using namespace protocol;

std::shared_ptr<const Config> config() {
  auto r = parseConfig(R"toml([server]
listen = "127.0.0.1:6432"
admin_users = ["admin"]
[[backend]]
name = "pg1"
host = "127.0.0.1"
port = 5432
[[user]]
name = "scram"
password = "secret"
[[user]]
name = "md5"
password = "pw"
auth = "md5"
[[user]]
name = "trusted"
auth = "trust"
)toml",
                       "/tmp/login_test.toml");
  EXPECT_TRUE(r) << (r ? "" : r.error().joined());
  return *r;
}

struct Client {
  ChunkPool pool;
  ByteQueue in{pool};
  std::string out;
  Login login;
  std::shared_ptr<const Config> cfg = config();

  Login::Outcome send(std::string_view bytes) {
    in.append(bytes);
    return login.feed(in, *cfg, out);
  }
  Login::Outcome startup(std::vector<std::pair<std::string, std::string>> params) {
    std::string m;
    appendStartup(m, params);
    return send(m);
  }
  // Backend messages pgswitch wrote, by type, and consumes them.
  std::vector<char> types() {
    std::vector<char> t;
    ByteQueue q(pool);
    q.append(out);
    for (;;) {
      Frame f = readFrame(q, 1 << 20);
      if (f.status != FrameStatus::Complete) break;
      t.push_back(f.type);
      q.consume(f.total);
    }
    return t;
  }
};

TEST(Login, SslRequestIsDeclinedAndStartupFollows) {
  Client c;
  std::string ssl;
  appendSslRequest(ssl);
  EXPECT_EQ(c.send(ssl).step, Login::Step::NeedMore);
  EXPECT_EQ(c.out, "N");
  c.out.clear();
  auto o = c.startup({{"user", "scram"}, {"database", "appdb"}, {"application_name", "x"}});
  EXPECT_EQ(o.step, Login::Step::StartupDone);
  EXPECT_EQ(c.login.user(), "scram");
  EXPECT_EQ(c.login.database(), "appdb");
  ASSERT_EQ(c.login.settings().size(), 1u);
  EXPECT_EQ(c.login.settings()[0].first, "application_name");
}

TEST(Login, DatabaseDefaultsToUserAndOptionsAreSplitLikePostgres) {
  Client c;
  auto o = c.startup({{"user", "u"}, {"options", "-c search_path=a,b --work-mem=8MB -cx=1\\ 2"}});
  ASSERT_EQ(o.step, Login::Step::StartupDone);
  EXPECT_EQ(c.login.database(), "u");
  auto& s = c.login.settings();
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0], (std::pair<std::string, std::string>{"search_path", "a,b"}));
  EXPECT_EQ(s[1], (std::pair<std::string, std::string>{"work_mem", "8MB"}));
  EXPECT_EQ(s[2], (std::pair<std::string, std::string>{"x", "1 2"}));
}

TEST(Login, StartupErrorsAreFatalWithPostgresCodes) {
  {
    Client c;
    auto o = c.startup({{"database", "d"}});
    EXPECT_EQ(o.step, Login::Step::Fatal);
    EXPECT_EQ(o.sqlstate, "28000");
  }
  {
    Client c;
    auto o = c.startup({{"user", "u"}, {"options", "-x"}});
    EXPECT_EQ(o.step, Login::Step::Fatal);
    EXPECT_EQ(o.sqlstate, "42601");
  }
  {
    Client c;
    auto o = c.startup({{"user", "u"}, {"replication", "database"}});
    EXPECT_EQ(o.step, Login::Step::Fatal);
    EXPECT_EQ(o.sqlstate, "0A000");
  }
}

TEST(Login, NewerMinorVersionIsNegotiatedDown) {
  Client c;
  std::string m;
  MessageBuilder(m).begin(0).i32(0x00030002).cstr("user").cstr("u").cstr("_pq_.x").cstr("1")
      .u8(0).finish();
  auto o = c.send(m);
  EXPECT_EQ(o.step, Login::Step::StartupDone);
  EXPECT_EQ(c.types(), std::vector<char>{'v'});  // NegotiateProtocolVersion
}

TEST(Login, CancelRequest) {
  Client c;
  std::string m;
  appendCancelRequest(m, 42, 7);
  auto o = c.send(m);
  EXPECT_EQ(o.step, Login::Step::Cancel);
  EXPECT_EQ(o.cancelPid, 42);
  EXPECT_EQ(o.cancelKey, 7);
}

TEST(Login, BadStartupLengthClosesQuietly) {
  Client c;
  EXPECT_EQ(c.send(std::string("\0\0\0\2", 4)).step, Login::Step::Close);
}

TEST(Login, Trust) {
  Client c;
  ASSERT_EQ(c.startup({{"user", "trusted"}}).step, Login::Step::StartupDone);
  EXPECT_EQ(c.login.begin(*c.cfg, c.out).step, Login::Step::Authenticated);
  EXPECT_EQ(c.types(), std::vector<char>{'R'});  // AuthenticationOk
}

TEST(Login, Md5RightAndWrong) {
  for (bool right : {true, false}) {
    Client c;
    ASSERT_EQ(c.startup({{"user", "md5"}}).step, Login::Step::StartupDone);
    ASSERT_EQ(c.login.begin(*c.cfg, c.out).step, Login::Step::NeedMore);
    // AuthenticationMD5Password: 'R', len 12, int32 5, 4-byte salt.
    ASSERT_EQ(c.out.size(), 13u);
    std::array<std::byte, 4> salt;
    std::memcpy(salt.data(), c.out.data() + 9, 4);
    std::string pw;
    appendPasswordMessage(pw, md5SaltedResponse(right ? "pw" : "nope", "md5", salt));
    c.out.clear();
    auto o = c.send(pw);
    EXPECT_EQ(o.step, right ? Login::Step::Authenticated : Login::Step::AuthFailed);
  }
}

TEST(Login, ScramWithTheClientKeyRecovered) {
  for (bool right : {true, false}) {
    Client c;
    ASSERT_EQ(c.startup({{"user", "scram"}}).step, Login::Step::StartupDone);
    ASSERT_EQ(c.login.begin(*c.cfg, c.out).step, Login::Step::NeedMore);
    c.out.clear();
    auto client = ScramClient::withPassword(right ? "secret" : "wrong", makeNonce());
    std::string m;
    appendSaslInitial(m, "SCRAM-SHA-256", client.clientFirst());
    ASSERT_EQ(c.send(m).step, Login::Step::NeedMore);
    // AuthenticationSASLContinue: the server-first-message after 'R', len, int32 11.
    std::string serverFirst = c.out.substr(9);
    c.out.clear();
    auto final = client.handleServerFirst(serverFirst);
    ASSERT_TRUE(final);
    m.clear();
    appendSaslResponse(m, *final);
    auto o = c.send(m);
    if (!right) {
      EXPECT_EQ(o.step, Login::Step::AuthFailed);
      continue;
    }
    EXPECT_EQ(o.step, Login::Step::Authenticated);
    EXPECT_EQ(c.types(), (std::vector<char>{'R', 'R'}));  // SASLFinal, AuthenticationOk
  }
}

TEST(Login, UnknownUserGoesThroughTheSameExchange) {
  Client c;
  ASSERT_EQ(c.startup({{"user", "nobody"}}).step, Login::Step::StartupDone);
  EXPECT_EQ(c.login.begin(*c.cfg, c.out).step, Login::Step::NeedMore);
  EXPECT_EQ(c.types(), std::vector<char>{'R'}) << "a SASL request, as for a real user";
}

TEST(Login, MessagesSplitAtEveryByteBoundary) {
  std::string m;
  appendStartup(m, std::vector<std::pair<std::string, std::string>>{{"user", "trusted"}});
  for (size_t cut = 1; cut < m.size(); ++cut) {
    Client c;
    EXPECT_EQ(c.send(m.substr(0, cut)).step, Login::Step::NeedMore) << cut;
    EXPECT_EQ(c.send(m.substr(cut)).step, Login::Step::StartupDone) << cut;
  }
}

TEST(Login, WrongMessageDuringAuth) {
  Client c;
  ASSERT_EQ(c.startup({{"user", "scram"}}).step, Login::Step::StartupDone);
  c.login.begin(*c.cfg, c.out);
  std::string q;
  appendQuery(q, "SELECT 1");
  auto o = c.send(q);
  EXPECT_EQ(o.step, Login::Step::Fatal);
  EXPECT_EQ(o.sqlstate, "08P01");
  Client t;
  t.startup({{"user", "scram"}});
  t.login.begin(*t.cfg, t.out);
  std::string x;
  appendTerminate(x);
  EXPECT_EQ(t.send(x).step, Login::Step::Close);
}

// --- TLS -------------------------------------------------------------------------------------

LoginTls offered(bool required = false) {
  LoginTls t;
  t.offered = true;
  t.required = required;
  t.peerHost = "127.0.0.1";
  return t;
}

TEST(LoginTls, SslRequestGetsSWhenOffered) {
  Client c;
  c.login.setTls(offered());
  std::string ssl;
  appendSslRequest(ssl);
  EXPECT_EQ(c.send(ssl).step, Login::Step::StartTls);
  EXPECT_EQ(c.out, "S");
}

TEST(LoginTls, BytesAfterSslRequestAreRefusedBeforeTheS) {
  // CVE-2021-23214: plaintext queued behind SSLRequest must not be read as if encrypted.
  // Split at every point, the injected startup packet arrives with or after the request.
  std::string ssl;
  appendSslRequest(ssl);
  std::string startup;
  appendStartup(startup, std::vector<std::pair<std::string, std::string>>{{"user", "scram"}});
  Client c;
  c.login.setTls(offered());
  auto o = c.send(ssl + startup);
  EXPECT_EQ(o.step, Login::Step::Fatal);
  EXPECT_EQ(o.sqlstate, "08P01");
  EXPECT_EQ(o.message, "received unencrypted data after SSL request");
  EXPECT_EQ(c.out, "");  // no 'S': the client reads a plain ErrorResponse
  for (size_t cut = 1; cut < ssl.size(); ++cut) {
    Client d;
    d.login.setTls(offered());
    EXPECT_EQ(d.send(ssl.substr(0, cut)).step, Login::Step::NeedMore);
    EXPECT_EQ(d.send(ssl.substr(cut) + "x").step, Login::Step::Fatal) << cut;
  }
}

TEST(LoginTls, ClientHelloFirstIsDirectTlsOnlyWhenOffered) {
  const std::string hello("\x16\x03\x01\x02\x00\x01", 6);
  Client c;
  c.login.setTls(offered());
  EXPECT_EQ(c.send(hello).step, Login::Step::DirectTls);
  EXPECT_EQ(c.out, "");
  EXPECT_EQ(c.in.size(), hello.size());  // left for the TLS handshake
  Client d;  // no TLS configured: an absurd startup length, closed as before
  EXPECT_EQ(d.send(hello).step, Login::Step::Close);
}

TEST(LoginTls, GssEncRequestStillGetsN) {
  Client c;
  c.login.setTls(offered());
  const std::string gss("\0\0\0\x08\x04\xd2\x16\x30", 8);  // GSSENCRequest, 80877104
  EXPECT_EQ(c.send(gss).step, Login::Step::NeedMore);
  EXPECT_EQ(c.out, "N");
}

TEST(LoginTls, RequiredRefusesPlaintextWith28000) {
  Client c;
  c.login.setTls(offered(true));
  auto o = c.startup({{"user", "scram"}, {"database", "appdb"}});
  EXPECT_EQ(o.step, Login::Step::Fatal);
  EXPECT_EQ(o.sqlstate, "28000");
  EXPECT_NE(o.message.find("host \"127.0.0.1\", user \"scram\", database \"appdb\", no encryption"),
            std::string::npos)
      << o.message;
  // Encrypted: accepted.
  Client d;
  LoginTls t = offered(true);
  t.active = true;
  d.login.setTls(t);
  EXPECT_EQ(d.startup({{"user", "scram"}}).step, Login::Step::StartupDone);
}

TEST(LoginTls, SecondSslRequestInsideTlsIsRefused) {
  Client c;
  LoginTls t = offered();
  t.active = true;
  c.login.setTls(t);
  std::string ssl;
  appendSslRequest(ssl);
  EXPECT_EQ(c.send(ssl).step, Login::Step::Fatal);
}

TEST(LoginTls, PlusIsOfferedOnlyWithTlsAndBindingData) {
  auto mechanisms = [](LoginTls t) {
    Client c;
    c.login.setTls(std::move(t));
    EXPECT_EQ(c.startup({{"user", "scram"}}).step, Login::Step::StartupDone);
    c.out.clear();
    c.login.begin(*c.cfg, c.out);
    return c.out;
  };
  LoginTls plain;
  EXPECT_EQ(mechanisms(plain).find("SCRAM-SHA-256-PLUS"), std::string::npos);
  LoginTls tls = offered();
  tls.active = true;
  EXPECT_EQ(mechanisms(tls).find("SCRAM-SHA-256-PLUS"), std::string::npos);  // no hash
  tls.cbindData = std::string(32, 'h');
  std::string out = mechanisms(tls);
  size_t plus = out.find("SCRAM-SHA-256-PLUS");
  ASSERT_NE(plus, std::string::npos);
  EXPECT_NE(out.find(std::string("SCRAM-SHA-256\0", 14), plus + 18), std::string::npos);
}

}  // namespace
}  // namespace pgswitch::proxy
