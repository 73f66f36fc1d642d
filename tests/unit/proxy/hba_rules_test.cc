// Unit tests for hba_file (proxy/config/hba_rules.*): pg_hba.conf tokens, fields and lists,
// every refusal at load with its line, matching (type, address, database, user, first line
// wins) and the decisions with PostgreSQL 15's exact FATAL texts.
#include "proxy/config/hba_rules.h"

#include <gtest/gtest.h>

#include "proxy/config/config.h"

namespace pgswitch::proxy {
namespace {

std::shared_ptr<const HbaRules> rulesOf(std::string_view text) {
  auto p = HbaRules::parse(text, "hba.conf");
  EXPECT_TRUE(p.errors.empty()) << (p.errors.empty() ? "" : p.errors[0]);
  return p.rules;
}

std::vector<std::string> errorsOf(std::string_view text) {
  auto p = HbaRules::parse(text, "hba.conf");
  EXPECT_EQ(p.rules, nullptr);
  return p.errors;
}

HbaConnection conn(std::string_view addr, std::string_view db, std::string_view user,
                   bool ssl = false) {
  return HbaConnection{addr, ssl, db, user};
}

// The line number of the matching rule, 0 for none.
int lineFor(const HbaRules& r, const HbaConnection& c) {
  const HbaRule* m = r.match(c);
  return m ? m->line : 0;
}

TEST(HbaRules, ParsesFieldsListsQuotesAndComments) {
  auto r = rulesOf(
      "# comment line\n"
      "\n"
      "host  appdb,\"all\"  alice, bob  10.0.0.0/8  scram-sha-256  # trailing comment\n"
      "hostssl all sameuser 192.168.1.0 255.255.255.0 md5\n"
      "local all all trust\n"
      "hostnossl \"my db\" all ::1/128 trust\n"
      "host all all all reject\n");
  ASSERT_NE(r, nullptr);
  ASSERT_EQ(r->rules().size(), 5u);
  const HbaRule& a = r->rules()[0];
  EXPECT_EQ(a.line, 3);
  ASSERT_EQ(a.databases.size(), 2u);
  EXPECT_EQ(a.databases[0].text, "appdb");
  EXPECT_FALSE(a.databases[0].quoted);
  EXPECT_EQ(a.databases[1].text, "all");
  EXPECT_TRUE(a.databases[1].quoted);
  ASSERT_EQ(a.users.size(), 2u);
  EXPECT_EQ(a.users[1].text, "bob");
  EXPECT_EQ(a.family, 4);
  EXPECT_EQ(a.method, HbaMethod::ScramSha256);
  EXPECT_EQ(r->rules()[1].type, HbaConnType::HostSsl);
  EXPECT_EQ(r->rules()[1].method, HbaMethod::Md5);
  EXPECT_EQ(r->rules()[2].type, HbaConnType::Local);
  EXPECT_EQ(r->rules()[3].databases[0].text, "my db");
  EXPECT_EQ(r->rules()[3].family, 6);
  EXPECT_TRUE(r->rules()[4].anyAddress);
}

TEST(HbaRules, EveryBadLineIsReportedWithItsNumber) {
  auto e = errorsOf(
      "host all all 127.0.0.1/32 trust\n"
      "hots all all 127.0.0.1/32 trust\n"                 // 2
      "host all all 127.0.0.1/33 trust\n"                 // 3
      "host all all 127.0.0.1/32 ident\n"                 // 4
      "host all all 127.0.0.1/32 foo\n"                   // 5
      "host all +admins 127.0.0.1/32 trust\n"             // 6
      "host @dbs all 127.0.0.1/32 trust\n"                // 7
      "host all all db.example.com trust\n"               // 8
      "host all all 127.0.0.1\n"                          // 9
      "host all all 127.0.0.1/32 md5 ldapserver=x\n"      // 10
      "host all all 127.0.0.1/32 cert\n"                  // 11
      "hostssl all all 127.0.0.1/32 cert clientcert=verify-ca\n"  // 12
      "host all\n"                                        // 13
      "host all all samenet trust\n"                      // 14
      "host,hostssl all all all trust\n"                  // 15
      "host samerole all all trust\n");                   // 16
  ASSERT_EQ(e.size(), 15u);
  for (size_t i = 0; i < e.size(); ++i)
    EXPECT_EQ(e[i].rfind("hba.conf:" + std::to_string(i + 2) + ": ", 0), 0u) << e[i];
  EXPECT_NE(e[0].find("invalid connection type \"hots\""), std::string::npos);
  EXPECT_NE(e[2].find("\"ident\" is not supported"), std::string::npos);
  EXPECT_NE(e[4].find("group membership"), std::string::npos);
  EXPECT_NE(e[5].find("@file"), std::string::npos);
  EXPECT_NE(e[6].find("host name"), std::string::npos);
  EXPECT_NE(e[9].find("only supported on hostssl"), std::string::npos);
}

TEST(HbaRules, EmptyFileHasNoRulesAndRefusesEveryone) {
  auto r = rulesOf("# nothing\n\n   \n");
  ASSERT_NE(r, nullptr);
  EXPECT_TRUE(r->rules().empty());
  EXPECT_EQ(r->match(conn("127.0.0.1", "db", "u")), nullptr);
}

TEST(HbaRules, AddressMatching) {
  auto r = rulesOf(
      "host all all 127.0.0.1/32 trust\n"
      "host all all 10.1.0.0/16 trust\n"
      "host all all 192.168.0.0 255.255.0.0 trust\n"
      "host all all fd00::/8 trust\n"
      "host all all 0.0.0.0/0 reject\n");
  EXPECT_EQ(lineFor(*r, conn("127.0.0.1", "d", "u")), 1);
  EXPECT_EQ(lineFor(*r, conn("10.1.200.3", "d", "u")), 2);
  EXPECT_EQ(lineFor(*r, conn("10.2.0.1", "d", "u")), 5);
  EXPECT_EQ(lineFor(*r, conn("192.168.7.7", "d", "u")), 3);
  EXPECT_EQ(lineFor(*r, conn("fd12::1", "d", "u")), 4);
  EXPECT_EQ(lineFor(*r, conn("::1", "d", "u")), 0);  // IPv6 matches no IPv4 line
  // An IPv4 client seen on an IPv6 socket matches IPv4 lines.
  EXPECT_EQ(lineFor(*r, conn("::ffff:10.1.0.9", "d", "u")), 2);
  EXPECT_EQ(lineFor(*r, conn("not an address", "d", "u")), 0);
}

TEST(HbaRules, DatabaseAndUserKeywords) {
  auto r = rulesOf(
      "host sameuser all all trust\n"
      "host \"all\" all all trust\n"
      "host replication all all trust\n"
      "host appdb,otherdb alice,\"sameuser\" all md5\n"
      "host all \"all\" all scram-sha-256\n");
  EXPECT_EQ(lineFor(*r, conn("1.2.3.4", "bob", "bob")), 1);
  EXPECT_EQ(lineFor(*r, conn("1.2.3.4", "all", "x")), 2);  // a database named all
  EXPECT_EQ(lineFor(*r, conn("1.2.3.4", "otherdb", "alice")), 4);
  EXPECT_EQ(lineFor(*r, conn("1.2.3.4", "appdb", "sameuser")), 4);  // quoted: a name
  EXPECT_EQ(lineFor(*r, conn("1.2.3.4", "appdb", "all")), 5);       // a user named all
  EXPECT_EQ(lineFor(*r, conn("1.2.3.4", "appdb", "carol")), 0);
  EXPECT_EQ(lineFor(*r, conn("1.2.3.4", "replication", "carol")), 0);
}

TEST(HbaRules, ConnectionTypes) {
  auto r = rulesOf(
      "local all all trust\n"
      "hostgssenc all all all trust\n"
      "hostssl all tls all trust\n"
      "hostnossl all plain all trust\n"
      "hostnogssenc all any all trust\n");
  EXPECT_EQ(lineFor(*r, conn("1.2.3.4", "d", "tls", true)), 3);
  EXPECT_EQ(lineFor(*r, conn("1.2.3.4", "d", "tls", false)), 0);
  EXPECT_EQ(lineFor(*r, conn("1.2.3.4", "d", "plain", false)), 4);
  EXPECT_EQ(lineFor(*r, conn("1.2.3.4", "d", "plain", true)), 0);
  EXPECT_EQ(lineFor(*r, conn("1.2.3.4", "d", "any", true)), 5);
  EXPECT_EQ(lineFor(*r, conn("1.2.3.4", "d", "other", true)), 0);  // local/gssenc never
}

TEST(HbaRules, FirstMatchingLineWins) {
  auto r = rulesOf(
      "host appdb evil 127.0.0.1/32 reject\n"
      "host all all 127.0.0.1/32 trust\n");
  EXPECT_EQ(lineFor(*r, conn("127.0.0.1", "appdb", "evil")), 1);
  EXPECT_EQ(lineFor(*r, conn("127.0.0.1", "other", "evil")), 2);
}

UserConfig user(std::string name, std::string password, AuthMethod auth) {
  UserConfig u;
  u.name = std::move(name);
  u.password = std::move(password);
  u.auth = auth;
  return u;
}

TEST(HbaDecide, NoRulesKeepsTheUsersOwnMethod) {
  UserConfig u = user("x", "pw", AuthMethod::Md5);
  HbaDecision d = decideAccess(nullptr, conn("1.2.3.4", "d", "x"), &u, {});
  EXPECT_EQ(d.kind, HbaDecision::Kind::Authenticate);
  EXPECT_EQ(d.method, AuthMethod::Md5);
  d = decideAccess(nullptr, conn("1.2.3.4", "d", "nobody"), nullptr, {});
  EXPECT_EQ(d.method, AuthMethod::ScramSha256);
}

TEST(HbaDecide, PostgresTextsForNoEntryAndReject) {
  auto r = rulesOf("host appdb x 127.0.0.1/32 reject\nhostssl all all all scram-sha-256\n");
  HbaDecision d = decideAccess(r.get(), conn("127.0.0.1", "y", "x"), nullptr, {});
  EXPECT_EQ(d.kind, HbaDecision::Kind::Refuse);
  EXPECT_EQ(d.sqlstate, "28000");
  EXPECT_EQ(d.message,
            "no pg_hba.conf entry for host \"127.0.0.1\", user \"x\", database \"y\", no "
            "encryption");
  EXPECT_FALSE(d.authFailure);
  d = decideAccess(r.get(), conn("127.0.0.1", "appdb", "x", true), nullptr, {});
  EXPECT_EQ(d.message,
            "pg_hba.conf rejects connection for host \"127.0.0.1\", user \"x\", database "
            "\"appdb\", SSL encryption");
  d = decideAccess(r.get(), conn("10.0.0.1", "appdb", "x", true), nullptr, {});
  EXPECT_EQ(d.kind, HbaDecision::Kind::Authenticate);
  EXPECT_EQ(d.method, AuthMethod::ScramSha256);
}

TEST(HbaDecide, MethodsOverrideTheUsersAuth) {
  auto r = rulesOf(
      "host all t all trust\n"
      "host all m all md5\n"
      "host all s all scram-sha-256\n");
  UserConfig t = user("t", "pw", AuthMethod::ScramSha256);
  EXPECT_EQ(decideAccess(r.get(), conn("1.1.1.1", "d", "t"), &t, {}).method, AuthMethod::Trust);
  UserConfig plain = user("m", "pw", AuthMethod::ScramSha256);
  EXPECT_EQ(decideAccess(r.get(), conn("1.1.1.1", "d", "m"), &plain, {}).method,
            AuthMethod::Md5);
  // md5 with a password stored as a SCRAM secret runs SCRAM, as in PostgreSQL.
  UserConfig scram = user("m", "SCRAM-SHA-256$4096:c2FsdA==$a2V5:a2V5", AuthMethod::Md5);
  EXPECT_EQ(decideAccess(r.get(), conn("1.1.1.1", "d", "m"), &scram, {}).method,
            AuthMethod::ScramSha256);
  UserConfig s = user("s", "pw", AuthMethod::Trust);
  EXPECT_EQ(decideAccess(r.get(), conn("1.1.1.1", "d", "s"), &s, {}).method,
            AuthMethod::ScramSha256);
}

TEST(HbaDecide, CertificateRules) {
  auto r = rulesOf(
      "hostssl all alice all cert\n"
      "hostssl all bob all scram-sha-256 clientcert=verify-full\n"
      "hostssl all carol all md5 clientcert=verify-ca\n");
  HbaPeerCert none;
  HbaPeerCert aliceCert{true, std::string("alice")};
  HbaPeerCert noCn{true, std::nullopt};
  auto alice = conn("1.1.1.1", "d", "alice", true);
  HbaDecision d = decideAccess(r.get(), alice, nullptr, aliceCert);
  EXPECT_EQ(d.kind, HbaDecision::Kind::Authenticate);
  EXPECT_EQ(d.method, AuthMethod::Trust);
  d = decideAccess(r.get(), alice, nullptr, none);
  EXPECT_EQ(d.kind, HbaDecision::Kind::Refuse);
  EXPECT_EQ(d.message, "connection requires a valid client certificate");
  EXPECT_TRUE(d.authFailure);
  d = decideAccess(r.get(), alice, nullptr, noCn);
  EXPECT_EQ(d.message, "certificate authentication failed for user \"alice\"");
  d = decideAccess(r.get(), alice, nullptr, HbaPeerCert{true, std::string("mallory")});
  EXPECT_EQ(d.message, "certificate authentication failed for user \"alice\"");
  EXPECT_EQ(d.sqlstate, "28000");

  auto bob = conn("1.1.1.1", "d", "bob", true);
  d = decideAccess(r.get(), bob, nullptr, aliceCert);
  EXPECT_EQ(d.message,
            "certificate validation (clientcert=verify-full) failed for user \"bob\": CN "
            "mismatch");
  d = decideAccess(r.get(), bob, nullptr, HbaPeerCert{true, std::string("bob")});
  EXPECT_EQ(d.method, AuthMethod::ScramSha256);

  auto carol = conn("1.1.1.1", "d", "carol", true);
  EXPECT_EQ(decideAccess(r.get(), carol, nullptr, aliceCert).method, AuthMethod::Md5);
  EXPECT_EQ(decideAccess(r.get(), carol, nullptr, none).kind, HbaDecision::Kind::Refuse);
}

}  // namespace
}  // namespace pgswitch::proxy
