// Unit tests for proxy/config: the documented minimal config, defaults, and validation errors
// reported as "path:line: reason" on the right line, several at once.
#include "proxy/config/config.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/scram.h"

namespace pgswitch::proxy {
namespace {

constexpr const char* kPath = "/etc/pgswitch/test.toml";

constexpr std::string_view kMinimal = R"toml([server]
listen = "127.0.0.1:6432"
pool_mode = "session"
admin_users = ["admin"]
[health]
period_ms = 500
[[backend]]
name = "pg1"
host = "127.0.0.1"
port = 5432
weight = 1
tags = ["reporting"]
[[user]]
name = "app"
password = "app"
)toml";

// 1-based line of the nth (0-based) line containing needle.
int lineOf(std::string_view text, std::string_view needle, int nth = 0) {
  int line = 1;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    if (text.substr(start, end - start).find(needle) != std::string_view::npos && nth-- == 0)
      return line;
    ++line;
    start = end + 1;
  }
  ADD_FAILURE() << "no line with " << needle;
  return -1;
}

std::shared_ptr<const Config> parseOk(std::string_view text) {
  auto r = parseConfig(text, kPath);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().joined());
  return r.ok() ? r.value() : nullptr;
}

std::vector<std::string> parseErrors(std::string_view text) {
  auto r = parseConfig(text, kPath);
  EXPECT_FALSE(r.ok()) << "config unexpectedly valid:\n" << text;
  return r.ok() ? std::vector<std::string>{} : r.error().messages;
}

// True if some error is exactly "<kPath>:<line>: ..." and mentions `what`.
::testing::AssertionResult hasError(const std::vector<std::string>& errors, int line,
                                    std::string_view what) {
  std::string prefix = std::string(kPath) + ":" + std::to_string(line) + ": ";
  for (const auto& e : errors)
    if (e.rfind(prefix, 0) == 0 && e.find(what) != std::string::npos)
      return ::testing::AssertionSuccess();
  auto failure = ::testing::AssertionFailure();
  failure << "no error \"" << prefix << "...(" << what << ")...\" among:";
  for (const auto& e : errors) failure << "\n  " << e;
  return failure;
}

// The minimal config with `extra` appended (later tables and keys).
std::string minimalPlus(std::string_view extra) {
  return std::string(kMinimal) + std::string(extra);
}

std::string scramSecretText() {
  static const std::string s =
      protocol::formatScramSecret(protocol::makeScramSecret("s3cret", "0123456789abcdef", 4096));
  return s;
}

// ---- valid configs ----

TEST(Config, MinimalExampleParses) {
  auto c = parseOk(kMinimal);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->path, kPath);
  EXPECT_EQ(c->listenHost, "127.0.0.1");
  EXPECT_EQ(c->listenPort, 6432);
  EXPECT_EQ(c->poolMode, PoolMode::Session);
  EXPECT_EQ(c->adminUsers, std::vector<std::string>{"admin"});
  EXPECT_TRUE(c->isAdmin("admin"));
  EXPECT_FALSE(c->isAdmin("app"));
  EXPECT_EQ(c->health.periodMs, 500);

  ASSERT_EQ(c->backends.size(), 1u);
  const BackendConfig& b = c->backends[0];
  EXPECT_EQ(b.name, "pg1");
  EXPECT_EQ(b.host, "127.0.0.1");
  EXPECT_EQ(b.port, 5432);
  EXPECT_EQ(b.weight, 1);
  EXPECT_EQ(b.tags, std::vector<std::string>{"reporting"});

  ASSERT_EQ(c->users.size(), 1u);
  const UserConfig* u = c->findUser("app");
  ASSERT_NE(u, nullptr);
  EXPECT_EQ(u->password, "app");
  EXPECT_EQ(u->auth, AuthMethod::ScramSha256);
  EXPECT_TRUE(u->passwordIsPlaintext());
  EXPECT_TRUE(u->scram.has_value());
  EXPECT_EQ(c->findUser("nobody"), nullptr);
}

TEST(Config, Defaults) {
  auto c = parseOk(kMinimal);
  ASSERT_TRUE(c);
  Config d;  // the header's defaults, for everything the minimal file leaves out
  EXPECT_EQ(c->workers, 0);
  EXPECT_EQ(c->maxClientConn, 10000);
  EXPECT_EQ(c->logLevel, "info");
  EXPECT_EQ(c->logFile, "");
  EXPECT_EQ(c->maxMessageBytes, 64u * 1024 * 1024);
  EXPECT_EQ(c->metricsListen, "");
  EXPECT_EQ(c->poolSize, 20);
  EXPECT_EQ(c->minPoolSize, 0);
  EXPECT_EQ(c->reservePoolSize, 0);
  EXPECT_EQ(c->queryWaitTimeoutMs, d.queryWaitTimeoutMs);
  EXPECT_EQ(c->serverConnectTimeoutMs, d.serverConnectTimeoutMs);
  EXPECT_EQ(c->serverLoginRetryMs, d.serverLoginRetryMs);
  EXPECT_EQ(c->serverLifetimeS, d.serverLifetimeS);
  EXPECT_EQ(c->serverIdleTimeoutS, d.serverIdleTimeoutS);
  EXPECT_EQ(c->clientIdleTimeoutS, 0);
  EXPECT_EQ(c->idleTransactionTimeoutS, 0);
  EXPECT_EQ(c->serverCheckDelayS, d.serverCheckDelayS);
  EXPECT_EQ(c->serverResetQuery, "DISCARD ALL");
  EXPECT_EQ(c->maxPreparedStatements, d.maxPreparedStatements);
  EXPECT_EQ(c->health.connectTimeoutMs, 2000);
  EXPECT_EQ(c->health.queryTimeoutMs, 2000);
  EXPECT_EQ(c->health.fall, 3);
  EXPECT_EQ(c->health.rise, 2);
  EXPECT_EQ(c->health.user, "postgres");
  EXPECT_EQ(c->health.database, "postgres");
}

TEST(Config, DefaultsForOmittedSectionsAndBackendFields) {
  auto c = parseOk("[[backend]]\nhost = \"db.internal\"\n");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->listenHost, "127.0.0.1");
  EXPECT_EQ(c->listenPort, 6432);
  EXPECT_EQ(c->poolMode, PoolMode::Session);
  EXPECT_TRUE(c->adminUsers.empty());
  EXPECT_EQ(c->health.periodMs, 1000);
  ASSERT_EQ(c->backends.size(), 1u);
  EXPECT_EQ(c->backends[0].port, 5432);
  EXPECT_EQ(c->backends[0].weight, 1);
  EXPECT_EQ(c->backends[0].name, "db.internal:5432");  // derived from host:port
  EXPECT_TRUE(c->backends[0].tags.empty());
  EXPECT_TRUE(c->users.empty());
}

TEST(Config, OtherValidValues) {
  auto c = parseOk(R"toml([server]
listen = "[::1]:7000"
pool_mode = "transaction"
workers = 4
log_level = "debug"
[pool]
pool_size = 5
min_pool_size = 2
[[backend]]
host = "a"
[[backend]]
host = "b"
port = 5433
weight = 3
[[user]]
name = "m"
password = "m"
auth = "md5"
[[user]]
name = "t"
auth = "trust"
)toml");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->listenHost, "::1");
  EXPECT_EQ(c->listenPort, 7000);
  EXPECT_EQ(c->poolMode, PoolMode::Transaction);
  EXPECT_EQ(c->workers, 4);
  EXPECT_EQ(c->logLevel, "debug");
  EXPECT_EQ(c->poolSize, 5);
  EXPECT_EQ(c->minPoolSize, 2);
  ASSERT_EQ(c->backends.size(), 2u);
  EXPECT_EQ(c->backends[1].name, "b:5433");
  EXPECT_EQ(c->backends[1].weight, 3);
  const UserConfig* m = c->findUser("m");
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->auth, AuthMethod::Md5);
  EXPECT_FALSE(m->scram.has_value());  // md5 users need no SCRAM secret
  const UserConfig* t = c->findUser("t");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->auth, AuthMethod::Trust);
  EXPECT_STREQ(toString(PoolMode::Transaction), "transaction");
  EXPECT_STREQ(toString(AuthMethod::Md5), "md5");
}

TEST(Config, ScramSecretPasswordParsesIntoUserScram) {
  std::string text =
      minimalPlus("[[user]]\nname = \"s\"\npassword = \"" + scramSecretText() + "\"\n");
  auto c = parseOk(text);
  ASSERT_TRUE(c);
  const UserConfig* u = c->findUser("s");
  ASSERT_NE(u, nullptr);
  EXPECT_TRUE(u->passwordIsScram());
  ASSERT_TRUE(u->scram.has_value());
  auto expect = protocol::makeScramSecret("s3cret", "0123456789abcdef", 4096);
  EXPECT_EQ(u->scram->iterations, 4096);
  EXPECT_EQ(u->scram->salt, "0123456789abcdef");
  EXPECT_EQ(u->scram->storedKey, expect.storedKey);
  EXPECT_EQ(u->scram->serverKey, expect.serverKey);
}

TEST(Config, PlaintextPasswordWithScramAuthGetsDerivedSecret) {
  auto c = parseOk(kMinimal);
  ASSERT_TRUE(c);
  const UserConfig* u = c->findUser("app");
  ASSERT_NE(u, nullptr);
  ASSERT_TRUE(u->scram.has_value());
  EXPECT_EQ(u->scram->salt.size(), 16u);
  EXPECT_GE(u->scram->iterations, 1);
  // The secret is the one the plaintext gives with that salt.
  auto again = protocol::makeScramSecret("app", u->scram->salt, u->scram->iterations);
  EXPECT_EQ(u->scram->storedKey, again.storedKey);
  EXPECT_EQ(u->scram->serverKey, again.serverKey);
  // The salt is random per load.
  auto c2 = parseOk(kMinimal);
  ASSERT_TRUE(c2);
  EXPECT_NE(c2->findUser("app")->scram->salt, u->scram->salt);
}

// ---- errors, each on its line ----

TEST(ConfigErrors, UnknownKey) {
  std::string text = minimalPlus("bogus_top = 1\n");
  // toml: keys after [[user]] belong to it.
  auto errors = parseErrors(text);
  EXPECT_TRUE(hasError(errors, lineOf(text, "bogus_top"), "unknown key \"bogus_top\""));

  std::string server =
      "[server]\nlisten = \"127.0.0.1:1\"\nlistne = \"x\"\n[[backend]]\nhost = \"h\"\n";
  errors = parseErrors(server);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_TRUE(hasError(errors, 3, "unknown key \"listne\" in [server]"));

  std::string top = "pool_mode = \"session\"\n[[backend]]\nhost = \"h\"\n";
  errors = parseErrors(top);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_TRUE(hasError(errors, 1, "unknown key \"pool_mode\" in top level"));

  std::string backend = "[[backend]]\nhost = \"h\"\n\nhots = \"x\"\n";
  errors = parseErrors(backend);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_TRUE(hasError(errors, 4, "unknown key \"hots\""));
}

TEST(ConfigErrors, BadPoolMode) {
  std::string text(kMinimal);
  text.replace(text.find("\"session\""), 9, "\"statement\"");
  auto errors = parseErrors(text);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_TRUE(hasError(errors, lineOf(text, "pool_mode"), "pool_mode"));
}

TEST(ConfigErrors, PortOutOfRange) {
  for (std::string_view bad : {"70000", "0", "-1", "65536", "99999999999"}) {
    std::string text(kMinimal);
    text.replace(text.find("port = 5432"), 11, "port = " + std::string(bad));
    auto errors = parseErrors(text);
    ASSERT_EQ(errors.size(), 1u) << bad;
    EXPECT_TRUE(hasError(errors, lineOf(text, "port = "), "port")) << bad;
  }
  std::string text(kMinimal);
  text.replace(text.find("port = 5432"), 11, "port = \"5432\"");
  EXPECT_TRUE(hasError(parseErrors(text), lineOf(text, "port = "), "must be an integer"));
}

// A number that is not a TOML integer is refused, however large: toml++'s own float-to-integer
// conversion is undefined for floats out of int64 range (the config fuzzer found 1e300).
TEST(ConfigErrors, FloatsAreNotIntegers) {
  for (std::string_view bad : {"5432.0", "1e300", "-1e300", "inf", "nan", "true"}) {
    std::string text(kMinimal);
    text.replace(text.find("port = 5432"), 11, "port = " + std::string(bad));
    EXPECT_TRUE(hasError(parseErrors(text), lineOf(text, "port = "), "must be an integer")) << bad;
    text = kMinimal;
    text.replace(text.find("period_ms = 500"), 15, "period_ms = " + std::string(bad));
    EXPECT_TRUE(hasError(parseErrors(text), lineOf(text, "period_ms = "), "must be an integer"))
        << bad;
  }
  std::string text = minimalPlus("[routing]\nread_write_split = 1\n");
  EXPECT_TRUE(hasError(parseErrors(text), lineOf(text, "read_write_split"), "true or false"));
}

TEST(ConfigErrors, MissingBackendHost) {
  std::string text = minimalPlus("[[backend]]\nname = \"pg2\"\nport = 5433\n");
  auto errors = parseErrors(text);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_TRUE(hasError(errors, lineOf(text, "[[backend]]", 1), "needs a host"));
}

TEST(ConfigErrors, DuplicateBackendName) {
  std::string text = minimalPlus("[[backend]]\nname = \"pg1\"\nhost = \"10.0.0.2\"\n");
  auto errors = parseErrors(text);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_TRUE(hasError(errors, lineOf(text, "[[backend]]", 1), "duplicate backend name \"pg1\""));

  // Derived names collide too.
  std::string derived = "[[backend]]\nhost = \"h\"\n[[backend]]\nhost = \"h\"\nport = 5432\n";
  EXPECT_TRUE(hasError(parseErrors(derived), 3, "duplicate backend name \"h:5432\""));
}

TEST(ConfigErrors, BadListen) {
  for (std::string_view bad :
       {"localhost", "127.0.0.1:", ":6432", "127.0.0.1:abc", "127.0.0.1:65536", "127.0.0.1:64x"}) {
    std::string text(kMinimal);
    std::string quoted = std::string(1, '"').append(bad).append(1, '"');
    text.replace(text.find("\"127.0.0.1:6432\""), 16, quoted);
    auto errors = parseErrors(text);
    ASSERT_EQ(errors.size(), 1u) << bad;
    EXPECT_TRUE(hasError(errors, lineOf(text, "listen"), "listen must be")) << bad;
  }
}

TEST(ConfigErrors, Md5AuthWithScramSecret) {
  std::string text = minimalPlus("[[user]]\nname = \"s\"\npassword = \"" + scramSecretText() +
                                 "\"\n\nauth = \"md5\"\n");
  auto errors = parseErrors(text);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_TRUE(hasError(errors, lineOf(text, "auth = \"md5\""), "SCRAM secret"));
}

TEST(ConfigErrors, ScramAuthWithMd5HashAndBadSecret) {
  std::string md5 =
      minimalPlus("[[user]]\nname = \"h\"\npassword = \"md5" + std::string(32, 'a') + "\"\n");
  auto errors = parseErrors(md5);
  ASSERT_EQ(errors.size(), 1u);
  // The line is checked in Md5HashWithDefaultAuthHasALine (today it is 0).
  EXPECT_NE(errors[0].find("not md5"), std::string::npos) << errors[0];

  std::string bad = minimalPlus("[[user]]\nname = \"b\"\npassword = \"SCRAM-SHA-256$x\"\n");
  errors = parseErrors(bad);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_TRUE(hasError(errors, lineOf(bad, "SCRAM-SHA-256$x"), "not a valid SCRAM"));
}

// With auth left at its default the error is reported as "path:0: ..." because it is
// attached to the missing auth key; it should point at the user. Enable once fixed.
TEST(ConfigErrors, Md5HashWithDefaultAuthHasALine) {
  std::string text =
      minimalPlus("[[user]]\nname = \"h\"\npassword = \"md5" + std::string(32, 'a') + "\"\n");
  auto errors = parseErrors(text);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_TRUE(hasError(errors, lineOf(text, "[[user]]", 1), "not md5") ||
              hasError(errors, lineOf(text, "password = \"md5"), "not md5"))
      << errors[0];
}

TEST(ConfigErrors, TomlSyntaxError) {
  std::string text = "[server]\nlisten = \"127.0.0.1:6432\"\npool_mode = \"session\n[[backend]]\n";
  auto errors = parseErrors(text);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_TRUE(hasError(errors, 3, "")) << errors[0];

  std::string noValue = "[server]\n\n\n\nlisten =\n";
  errors = parseErrors(noValue);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_TRUE(hasError(errors, 5, "")) << errors[0];
}

TEST(ConfigErrors, SeveralReportedAtOnce) {
  std::string text = R"toml([server]
listen = "127.0.0.1:6432"
pool_mode = "sessions"
colour = "blue"
[[backend]]
name = "pg1"
host = "127.0.0.1"
port = 70000
[[backend]]
name = "pg1"
host = "127.0.0.2"
[[user]]
name = "app"
password = "md5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
auth = "scram-sha-256"
)toml";
  auto errors = parseErrors(text);
  EXPECT_EQ(errors.size(), 5u);
  EXPECT_TRUE(hasError(errors, 3, "pool_mode"));
  EXPECT_TRUE(hasError(errors, 4, "unknown key \"colour\""));
  EXPECT_TRUE(hasError(errors, 8, "port must be between 1 and 65535"));
  EXPECT_TRUE(hasError(errors, 9, "duplicate backend name"));
  EXPECT_TRUE(hasError(errors, 15, "not md5"));
  ConfigError e{errors};
  std::string joined = e.joined();
  for (const auto& m : errors) EXPECT_NE(joined.find(m + "\n"), std::string::npos);
}

TEST(ConfigErrors, NoBackendAndMissingFile) {
  auto errors = parseErrors("[server]\nlisten = \"127.0.0.1:6432\"\n");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("no [[backend]]"), std::string::npos);

  auto r = loadConfig("/nonexistent/pgswitch-test.toml");
  ASSERT_FALSE(r.ok());
  ASSERT_EQ(r.error().messages.size(), 1u);
  EXPECT_EQ(r.error().messages[0], "/nonexistent/pgswitch-test.toml:0: cannot open file");
}

// ---- secrets from files and the environment, [auth] ----

std::string writeTemp(const std::string& name, const std::string& content) {
  std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path, std::ios::binary) << content;
  return path;
}

constexpr std::string_view kBackendOnly = "[[backend]]\nhost = \"127.0.0.1\"\n";

TEST(Config, SecretsFromFilesAndEnvironment) {
  std::string userFile = writeTemp("pgswitch-user-pw", "from-file\r\n");
  std::string authFile = writeTemp("pgswitch-auth-pw", "auth-secret\n");
  setenv("PGSWITCH_UNIT_HEALTH_PW", "from-env", 1);
  auto c = parseOk(std::string(kBackendOnly) + "[[user]]\nname = \"filed\"\npassword_file = \"" +
                   userFile + "\"\n[health]\n" +
                   "password_env = \"PGSWITCH_UNIT_HEALTH_PW\"\n[auth]\nuser = \"lookup\"\n" +
                   "password_file = \"" + authFile + "\"\n");
  unsetenv("PGSWITCH_UNIT_HEALTH_PW");
  ASSERT_TRUE(c);
  ASSERT_NE(c->findUser("filed"), nullptr);
  EXPECT_EQ(c->findUser("filed")->password, "from-file");  // the line break is not part of it
  EXPECT_TRUE(c->findUser("filed")->scram.has_value());
  EXPECT_EQ(c->health.password, "from-env");
  EXPECT_EQ(c->auth.password, "auth-secret");
  EXPECT_TRUE(c->auth.enabled());
  EXPECT_EQ(c->auth.query, "SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = $1");
  EXPECT_EQ(c->auth.cacheMs, 60000);
}

TEST(ConfigErrors, SecretSources) {
  unsetenv("PGSWITCH_UNIT_UNSET");
  std::string empty = writeTemp("pgswitch-empty-pw", "\n");
  std::string text = std::string(kBackendOnly) +
                     "[[user]]\nname = \"both\"\npassword = \"x\"\npassword_file = \"/x\"\n"
                     "[[user]]\nname = \"missing\"\npassword_file = \"/nonexistent/pw\"\n"
                     "[[user]]\nname = \"blank\"\npassword_file = \"" + empty + "\"\n"
                     "[health]\npassword_env = \"PGSWITCH_UNIT_UNSET\"\n"
                     "[auth]\nquery = \"SELECT 'x', 'y'\"\n";
  auto errors = parseErrors(text);
  EXPECT_TRUE(hasError(errors, lineOf(text, "password_file = \"/x\""),
                       "set only one of password, password_file and password_env"));
  EXPECT_TRUE(hasError(errors, lineOf(text, "/nonexistent/pw"), "cannot read"));
  EXPECT_TRUE(hasError(errors, lineOf(text, empty), "is empty"));
  EXPECT_TRUE(hasError(errors, lineOf(text, "PGSWITCH_UNIT_UNSET"), "is not set or empty"));
  EXPECT_TRUE(hasError(errors, lineOf(text, "SELECT 'x'"), "must take the user name as $1"));
}

TEST(Config, LookedUpUsersFollowTheStoredFormat) {
  auto scram = lookedUpUser("a", scramSecretText());
  ASSERT_TRUE(scram);
  EXPECT_EQ(scram->auth, AuthMethod::ScramSha256);
  EXPECT_TRUE(scram->scram.has_value());
  auto md5 = lookedUpUser("b", "md5" + std::string(32, 'a'));
  ASSERT_TRUE(md5);
  EXPECT_EQ(md5->auth, AuthMethod::Md5);
  auto plain = lookedUpUser("c", "old-plaintext");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->auth, AuthMethod::ScramSha256);
  EXPECT_TRUE(plain->scram.has_value());
  EXPECT_EQ(lookedUpUser("d", "SCRAM-SHA-256$garbage"), nullptr);
}

}  // namespace
}  // namespace pgswitch::proxy
