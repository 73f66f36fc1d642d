// Unit tests for protocol/scram: base64, pg_authid secrets, the RFC 7677 vector, full and
// passthrough exchanges, and malformed or truncated messages on both sides.
#include "protocol/scram.h"

#include <gtest/gtest.h>
#include <openssl/hmac.h>

#include <random>
#include <string>
#include <vector>

namespace pgswitch::protocol {
namespace {

std::span<const std::byte> bytesOf(std::string_view s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

std::string decoded(std::string_view b64) {
  std::optional<std::string> raw = base64Decode(b64);
  EXPECT_TRUE(raw.has_value()) << b64;
  return raw.value_or("");
}

// RFC 7677 section 3.
constexpr std::string_view kRfcClientFirst = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
constexpr std::string_view kRfcServerNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
constexpr std::string_view kRfcServerFirst =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
constexpr std::string_view kRfcClientFinal =
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
constexpr std::string_view kRfcServerFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

// Computed once: PBKDF2 at 4096 iterations per call would dominate the fuzz loops.
const ScramSecret& rfcSecret() {
  static const ScramSecret secret =
      makeScramSecret("pencil", decoded("W22ZaJ0SNY7soEsUEjb6gQ=="), 4096);
  return secret;
}

ScramServer rfcServer() { return ScramServer(rfcSecret(), std::string(kRfcServerNonce)); }

// Runs client <-> server to the end; returns the first error, or "" on success.
std::string exchange(ScramClient& client, ScramServer& server) {
  auto serverFirst = server.handleClientFirst(client.clientFirst());
  if (!serverFirst) return "server first: " + serverFirst.error();
  auto clientFinal = client.handleServerFirst(*serverFirst);
  if (!clientFinal) return "client final: " + clientFinal.error();
  auto serverFinal = server.handleClientFinal(*clientFinal);
  if (!serverFinal) return "server final: " + serverFinal.error();
  auto verified = client.handleServerFinal(*serverFinal);
  if (!verified) return "client verify: " + verified.error();
  return *verified ? "" : "client verify: false";
}

// --- base64 ---------------------------------------------------------------------------------

std::string hex(const ScramKey& k) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (uint8_t b : k) {
    s += d[b >> 4];
    s += d[b & 15];
  }
  return s;
}

std::span<const uint8_t> u8(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// RFC 4231 test cases 1, 2 and 6 (a key longer than the block is hashed first).
TEST(HmacSha256, Rfc4231Vectors) {
  ScramKey out;
  ASSERT_TRUE(hmacSha256(u8(std::string(20, '\x0b')), "Hi There", out));
  EXPECT_EQ(hex(out), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  ASSERT_TRUE(hmacSha256(u8("Jefe"), "what do ya want for nothing?", out));
  EXPECT_EQ(hex(out), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  ASSERT_TRUE(hmacSha256(u8(std::string(131, '\xaa')),
                         "Test Using Larger Than Block-Size Key - Hash Key First", out));
  EXPECT_EQ(hex(out), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

// The same answer as OpenSSL's own HMAC() for keys and messages around the block size.
TEST(HmacSha256, MatchesOpenSslForAllKeyLengths) {
  std::mt19937 rng(7);
  for (size_t keyLen : {0, 1, 31, 32, 63, 64, 65, 200}) {
    for (size_t msgLen : {0, 1, 55, 56, 64, 1000}) {
      std::string key(keyLen, '\0'), msg(msgLen, '\0');
      for (char& c : key) c = static_cast<char>(rng());
      for (char& c : msg) c = static_cast<char>(rng());
      ScramKey ours, theirs;
      unsigned int len = 0;
      ASSERT_TRUE(hmacSha256(u8(key), msg, ours));
      ASSERT_NE(HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
                     reinterpret_cast<const unsigned char*>(msg.data()), msg.size(),
                     theirs.data(), &len),
                nullptr);
      EXPECT_EQ(hex(ours), hex(theirs)) << keyLen << " " << msgLen;
    }
  }
  ScramKey h;
  ASSERT_TRUE(sha256(u8("abc"), h));
  EXPECT_EQ(hex(h), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(RandomBytes, SmallAndLargeRequestsDiffer) {
  std::array<std::byte, 16> a{}, b{};
  ASSERT_TRUE(randomBytes(a));
  ASSERT_TRUE(randomBytes(b));
  EXPECT_NE(a, b);
  std::vector<std::byte> big(5000), big2(5000);
  for (int i = 0; i < 300; ++i) ASSERT_TRUE(randomBytes(a));  // through a buffer refill
  ASSERT_TRUE(randomBytes(big));
  ASSERT_TRUE(randomBytes(big2));
  EXPECT_NE(big, big2);
}

TEST(Base64, RoundTripsAllLengths) {
  std::string data;
  for (int i = 0; i < 70; ++i) {
    std::string text = base64Encode(bytesOf(data));
    EXPECT_EQ(text.size(), (data.size() + 2) / 3 * 4);
    EXPECT_EQ(base64Decode(text), data);
    data.push_back(static_cast<char>(i * 37 + 200));
  }
}

TEST(Base64, KnownValues) {
  EXPECT_EQ(base64Encode(bytesOf("n,,")), "biws");
  EXPECT_EQ(base64Encode(bytesOf("")), "");
  EXPECT_EQ(base64Decode("Zm9vYg=="), "foob");
  EXPECT_EQ(base64Decode("Zm9vYmE="), "fooba");
  EXPECT_EQ(base64Decode(""), "");
}

TEST(Base64, RejectsMalformed) {
  for (std::string_view bad :
       {"Zm9", "Zm9vY", "Zm9v YmE=", " Zm9v", "Zm9v\n", "Zm=v", "Z===", "====", "Zm9-", "Zm9_",
        "Zm9vYh==", "Zm9vYmF="}) {  // non-zero unused bits
    EXPECT_FALSE(base64Decode(bad).has_value()) << bad;
  }
  EXPECT_FALSE(base64Decode(std::string_view("Zm9\0", 4)).has_value());
}

TEST(Nonce, PrintableUniqueAndLongEnough) {
  std::string a = makeNonce(), b = makeNonce();
  EXPECT_EQ(a.size(), 24u);
  EXPECT_NE(a, b);
  for (char c : a) {
    EXPECT_TRUE(c >= 0x21 && c <= 0x7e && c != ',') << c;
  }
  std::array<std::byte, 64> buf{};
  EXPECT_TRUE(randomBytes(buf));
  EXPECT_TRUE(randomBytes({}));
}

// --- secrets --------------------------------------------------------------------------------

TEST(ScramSecret, MatchesPostgresGeneratedSecret) {
  // From PostgreSQL 15: SET password_encryption = 'scram-sha-256'; CREATE ROLE probe
  // PASSWORD 'pencil'; SELECT rolpassword FROM pg_authid WHERE rolname = 'probe';
  constexpr std::string_view kPg =
      "SCRAM-SHA-256$4096:HQOHESNPXgbUytcBnERGbA==$eTaNbk9vW+OkZEzt86iUVA5dTwrw/QDHUkhmQB4ULBM=:"
      "fiGx6gFSl5Qj+EHKFsllfkVjooDau6fcmOrz+lIVWSs=";
  std::optional<ScramSecret> parsed = parseScramSecret(kPg);
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->iterations, 4096);
  EXPECT_EQ(parsed->salt.size(), 16u);
  EXPECT_EQ(formatScramSecret(*parsed), kPg);
  ScramSecret made = makeScramSecret("pencil", parsed->salt, parsed->iterations);
  EXPECT_EQ(made.storedKey, parsed->storedKey);
  EXPECT_EQ(made.serverKey, parsed->serverKey);
}

TEST(ScramSecret, FormatParseRoundTrip) {
  ScramSecret s = makeScramSecret("secret", "0123456789abcdef", 17);
  std::string text = formatScramSecret(s);
  EXPECT_TRUE(text.starts_with("SCRAM-SHA-256$17:"));
  std::optional<ScramSecret> back = parseScramSecret(text);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->iterations, 17);
  EXPECT_EQ(back->salt, s.salt);
  EXPECT_EQ(back->storedKey, s.storedKey);
  EXPECT_EQ(back->serverKey, s.serverKey);
}

TEST(ScramSecret, RejectsMalformed) {
  const std::string key = base64Encode(bytesOf(std::string(32, 'k')));
  const std::string shortKey = base64Encode(bytesOf(std::string(31, 'k')));
  const std::string longKey = base64Encode(bytesOf(std::string(33, 'k')));
  const std::string salt = "c2FsdHNhbHQ=";
  ASSERT_TRUE(parseScramSecret("SCRAM-SHA-256$4096:" + salt + "$" + key + ":" + key));
  std::vector<std::string> bad = {
      "",
      "md5a3556571e93b0d20722ba62be61e8c2d",
      "SCRAM-SHA-1$4096:" + salt + "$" + key + ":" + key,
      "SCRAM-SHA-256 4096:" + salt + "$" + key + ":" + key,  // missing first $
      "SCRAM-SHA-256$4096:" + salt + key + ":" + key,        // missing second $
      "SCRAM-SHA-256$4096" + salt + "$" + key + ":" + key,   // missing first :
      "SCRAM-SHA-256$4096:" + salt + "$" + key + key,        // missing second :
      "SCRAM-SHA-256$:" + salt + "$" + key + ":" + key,
      "SCRAM-SHA-256$0:" + salt + "$" + key + ":" + key,
      "SCRAM-SHA-256$-1:" + salt + "$" + key + ":" + key,
      "SCRAM-SHA-256$+4096:" + salt + "$" + key + ":" + key,
      "SCRAM-SHA-256$4096x:" + salt + "$" + key + ":" + key,
      "SCRAM-SHA-256$99999999999:" + salt + "$" + key + ":" + key,
      "SCRAM-SHA-256$4096:$" + key + ":" + key,                    // empty salt
      "SCRAM-SHA-256$4096:c2Fsd!Nh$" + key + ":" + key,            // bad base64 salt
      "SCRAM-SHA-256$4096:" + salt + "$" + shortKey + ":" + key,   // 31-byte StoredKey
      "SCRAM-SHA-256$4096:" + salt + "$" + key + ":" + longKey,    // 33-byte ServerKey
      "SCRAM-SHA-256$4096:" + salt + "$" + key + ":" + key + "$",  // trailing junk
      "SCRAM-SHA-256$4096:" + salt + "$" + key + ":" + key + ":" + key,
      "SCRAM-SHA-256$4096:" + salt + "$" + key.substr(1) + ":" + key,
  };
  for (const std::string& s : bad) EXPECT_FALSE(parseScramSecret(s).has_value()) << s;
}

TEST(ScramSecret, MockIsDeterministicPerUserAndUnusable) {
  ScramSecret a = mockScramSecret("alice", "seed");
  ScramSecret a2 = mockScramSecret("alice", "seed");
  ScramSecret b = mockScramSecret("bob", "seed");
  EXPECT_EQ(a.salt, a2.salt);
  EXPECT_EQ(a.storedKey, a2.storedKey);
  EXPECT_NE(a.salt, b.salt);
  EXPECT_NE(a.salt, mockScramSecret("alice", "other").salt);
  EXPECT_EQ(a.salt.size(), 16u);
  EXPECT_EQ(a.iterations, 4096);
  EXPECT_TRUE(parseScramSecret(formatScramSecret(a)).has_value());
  for (std::string pw : {"", "alice", "seed", "password"}) {
    ScramClient client = ScramClient::withPassword(pw, makeNonce());
    ScramServer server(a, makeNonce());
    EXPECT_TRUE(exchange(client, server).starts_with("server final:")) << pw;
  }
}

// --- server: RFC 7677 vector ----------------------------------------------------------------

TEST(ScramServer, Rfc7677Vector) {
  ScramServer server = rfcServer();
  auto serverFirst = server.handleClientFirst(kRfcClientFirst);
  ASSERT_TRUE(serverFirst) << serverFirst.error();
  EXPECT_EQ(*serverFirst, kRfcServerFirst);
  auto serverFinal = server.handleClientFinal(kRfcClientFinal);
  ASSERT_TRUE(serverFinal) << serverFinal.error();
  EXPECT_EQ(*serverFinal, kRfcServerFinal);
  EXPECT_TRUE(server.succeeded());
  // ClientKey = HMAC(SaltedPassword, "Client Key"); StoredKey = H(ClientKey) is what matters.
  ScramClient again = ScramClient::withKeys(server.clientKey(), rfcSecret(), "againNonce");
  ScramServer second = rfcServer();
  EXPECT_EQ(exchange(again, second), "");
}

TEST(ScramServer, AcceptsEmptyUsernameAndYFlag) {
  for (std::string_view first : {"n,,n=,r=abc", "y,,n=,r=abc", "n,,n=someone,r=abc,x=ext"}) {
    ScramServer server(rfcSecret(), "XYZ");
    auto r = server.handleClientFirst(first);
    ASSERT_TRUE(r) << first << ": " << r.error();
    EXPECT_TRUE(r->starts_with("r=abcXYZ,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")) << *r;
  }
}

// --- full exchanges -------------------------------------------------------------------------

TEST(ScramExchange, PasswordLoginSucceeds) {
  ScramSecret secret = makeScramSecret("correct horse", "saltsaltsaltsalt");
  ScramClient client = ScramClient::withPassword("correct horse", makeNonce());
  ScramServer server(secret, makeNonce());
  EXPECT_EQ(exchange(client, server), "");
  EXPECT_TRUE(server.succeeded());
  ScramKey zero{};
  EXPECT_NE(server.clientKey(), zero);
}

TEST(ScramExchange, WrongPasswordFailsAtClientFinal) {
  ScramSecret secret = makeScramSecret("correct horse", "saltsaltsaltsalt");
  ScramClient client = ScramClient::withPassword("wrong horse", makeNonce());
  ScramServer server(secret, makeNonce());
  std::string err = exchange(client, server);
  EXPECT_TRUE(err.starts_with("server final:")) << err;
  EXPECT_FALSE(server.succeeded());
  EXPECT_EQ(server.clientKey(), ScramKey{});
  // A failed exchange stays failed.
  EXPECT_FALSE(server.handleClientFinal(kRfcClientFinal));
  EXPECT_FALSE(server.handleClientFirst(kRfcClientFirst));
}

TEST(ScramExchange, PassthroughWithRecoveredClientKey) {
  ScramSecret secret = makeScramSecret("pw", "0123456789abcdef");
  ScramClient client = ScramClient::withPassword("pw", makeNonce());
  ScramServer front(secret, makeNonce());
  ASSERT_EQ(exchange(client, front), "");

  ScramClient proxy = ScramClient::withKeys(front.clientKey(), secret, makeNonce());
  ScramServer backend(secret, makeNonce());
  EXPECT_EQ(exchange(proxy, backend), "");
  EXPECT_EQ(backend.clientKey(), front.clientKey());
}

TEST(ScramExchange, PassthroughRejectsDifferentSaltOrIterations) {
  ScramSecret secret = makeScramSecret("pw", "0123456789abcdef");
  ScramClient client = ScramClient::withPassword("pw", makeNonce());
  ScramServer front(secret, makeNonce());
  ASSERT_EQ(exchange(client, front), "");
  for (ScramSecret backendSecret : {makeScramSecret("pw", "fedcba9876543210"),
                                    makeScramSecret("pw", "0123456789abcdef", 4097)}) {
    ScramClient proxy = ScramClient::withKeys(front.clientKey(), secret, makeNonce());
    ScramServer backend(backendSecret, makeNonce());
    std::string err = exchange(proxy, backend);
    EXPECT_TRUE(err.starts_with("client final:")) << err;
    EXPECT_NE(err.find("salt or iteration count"), std::string::npos) << err;
  }
}

TEST(ScramExchange, PassthroughWithWrongKeyFailsAtServer) {
  ScramSecret secret = makeScramSecret("pw", "0123456789abcdef");
  ScramKey wrong{};
  wrong[0] = 1;
  ScramClient proxy = ScramClient::withKeys(wrong, secret, makeNonce());
  ScramServer backend(secret, makeNonce());
  EXPECT_TRUE(exchange(proxy, backend).starts_with("server final:"));
}

TEST(ScramExchange, EmptyNoncesAreRefused) {
  ScramSecret secret = makeScramSecret("pw", "0123456789abcdef", 1);
  ScramClient c1 = ScramClient::withPassword("pw", "");
  ScramServer s1(secret, makeNonce());
  EXPECT_FALSE(exchange(c1, s1).empty());
  ScramClient c2 = ScramClient::withPassword("pw", makeNonce());
  ScramServer s2(secret, "");
  EXPECT_TRUE(exchange(c2, s2).starts_with("server first:"));
}

// --- client side: what a hostile or broken server can send ----------------------------------

class ScramClientTest : public ::testing::Test {
 protected:
  ScramSecret secret_ = makeScramSecret("pw", "0123456789abcdef", 2);
  ScramClient client_ = ScramClient::withPassword("pw", "clientNonce");
  ScramServer server_{secret_, "srv"};

  std::string toClientFinal() {
    auto first = server_.handleClientFirst(client_.clientFirst());
    EXPECT_TRUE(first);
    auto serverFinal = client_.handleServerFirst(*first);
    EXPECT_TRUE(serverFinal);
    return *serverFinal;
  }
};

TEST_F(ScramClientTest, ClientFirstShape) {
  EXPECT_EQ(client_.clientFirst(), "n,,n=,r=clientNonce");
}

TEST_F(ScramClientTest, ServerFinalOkAndRepeatRejected) {
  auto serverFinal = server_.handleClientFinal(toClientFinal());
  ASSERT_TRUE(serverFinal);
  auto ok = client_.handleServerFinal(*serverFinal);
  ASSERT_TRUE(ok) << ok.error();
  EXPECT_TRUE(*ok);
  EXPECT_FALSE(client_.handleServerFinal(*serverFinal));
}

TEST_F(ScramClientTest, ServerErrorIsReported) {
  toClientFinal();
  auto r = client_.handleServerFinal("e=invalid-proof");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("invalid-proof"), std::string::npos);
}

TEST_F(ScramClientTest, ForgedServerSignatureRejected) {
  toClientFinal();
  auto r = client_.handleServerFinal(kRfcServerFinal);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("signature"), std::string::npos);
}

TEST_F(ScramClientTest, OutOfOrderCallsRejected) {
  ScramClient fresh = ScramClient::withPassword("pw", "n");
  EXPECT_FALSE(fresh.handleServerFirst("r=nX,s=c2FsdA==,i=1"));
  ScramClient fresh2 = ScramClient::withPassword("pw", "n");
  EXPECT_FALSE(fresh2.handleServerFinal(kRfcServerFinal));
}

TEST(ScramClient, RejectsMalformedServerFirst) {
  for (std::string_view bad : {
           "",
           "r=clientNonce,s=c2FsdA==,i=4096",  // nonce not extended
           "r=otherNonceX,s=c2FsdA==,i=4096",  // nonce does not start with ours
           "r=clientNonceX,s=,i=4096",         // empty salt
           "r=clientNonceX,s=c2Fsd,i=4096",    // bad base64
           "r=clientNonceX,s=c2FsdA==,i=0",    // bad iterations
           "r=clientNonceX,s=c2FsdA==,i=-1", "r=clientNonceX,s=c2FsdA==,i=",
           "r=clientNonceX,s=c2FsdA==,i=4x", "r=clientNonceX,s=c2FsdA==,i=99999999999",
           "s=c2FsdA==,r=clientNonceX,i=4096",  // wrong order
           "r=clientNonceX,i=4096,s=c2FsdA==",
           "m=ext,r=clientNonceX,s=c2FsdA==,i=4096",  // mandatory extension
           "r=clientNonceX,s=c2FsdA==,i=4096,",       // trailing comma
           "r=clientNonceX,s=c2FsdA==,i=4096,1=x",
           "r=clientNonce\x01,s=c2FsdA==,i=4096",  // unprintable nonce
       }) {
    ScramClient client = ScramClient::withPassword("pw", "clientNonce");
    client.clientFirst();
    EXPECT_FALSE(client.handleServerFirst(bad)) << bad;
  }
  ScramClient client = ScramClient::withPassword("pw", "clientNonce");
  client.clientFirst();
  EXPECT_FALSE(client.handleServerFirst(std::string_view("r=clientNonceX,s=c2FsdA==,i=1\0", 30)));
}

TEST(ScramClient, TruncatedServerMessagesNeverCrash) {
  ScramSecret secret = makeScramSecret("pw", "0123456789abcdef", 2);
  ScramServer server(secret, "srv");
  ScramClient probe = ScramClient::withPassword("pw", "clientNonce");
  std::string serverFirst = *server.handleClientFirst(probe.clientFirst());
  std::string serverFinal = *server.handleClientFinal(*probe.handleServerFirst(serverFirst));
  for (size_t n = 0; n < serverFirst.size(); ++n) {
    ScramClient client = ScramClient::withPassword("pw", "clientNonce");
    client.clientFirst();
    auto r = client.handleServerFirst(serverFirst.substr(0, n));
    if (r) {  // only a shorter iteration count ("i=" kept at least one digit) can still parse
      EXPECT_GT(n, serverFirst.find(",i=") + 3) << n;
      EXPECT_FALSE(client.handleServerFinal(serverFinal));
    }
  }
  for (size_t n = 0; n < serverFinal.size(); ++n) {
    ScramClient client = ScramClient::withPassword("pw", "clientNonce");
    client.clientFirst();
    ASSERT_TRUE(client.handleServerFirst(serverFirst));
    EXPECT_FALSE(client.handleServerFinal(serverFinal.substr(0, n))) << n;
  }
}

// --- server side: what a hostile or broken client can send ----------------------------------

TEST(ScramServer, RejectsMalformedClientFirst) {
  for (std::string_view bad : {
           "",
           "n",
           "n,",
           "n,,",
           "x,,n=,r=abc",                       // bad cbind flag
           "p=tls-server-end-point,,n=,r=abc",  // channel binding
           "p,,n=,r=abc",
           "n,a=admin,n=,r=abc",  // authzid
           "n,zz,n=,r=abc",
           "n,,r=abc",  // missing username
           "n,,n=",     // missing nonce
           "n,,n=,",
           "n,,n=,r=",           // empty nonce
           "n,,r=abc,n=",        // wrong order
           "n,,m=ext,n=,r=abc",  // mandatory extension
           "n,,n=,r=abc,",       // trailing comma
           "n,,n=,r=abc,=x",
           "n,,n=,r=ab\x7f",  // unprintable nonce
           "nn,,n=,r=abc",
       }) {
    ScramServer server(rfcSecret(), "srv");
    EXPECT_FALSE(server.handleClientFirst(bad)) << bad;
  }
  ScramServer server(rfcSecret(), "srv");
  EXPECT_FALSE(server.handleClientFirst(std::string_view("n,,n=,r=ab\0c", 12)));
}

TEST(ScramServer, ChannelBindingErrorIsClear) {
  ScramServer server(rfcSecret(), "srv");
  auto r = server.handleClientFirst("p=tls-server-end-point,,n=,r=abc");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("channel binding"), std::string::npos);
}

TEST(ScramServer, RejectsMalformedClientFinal) {
  const std::string nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
  const std::string proof = "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
  std::vector<std::string> bad = {
      "",
      "c=biws",
      "c=biws,r=" + nonce,                // missing proof
      "r=" + nonce + ",c=biws," + proof,  // wrong order
      "c=biws," + proof + ",r=" + nonce,
      "c=eSws,r=" + nonce + "," + proof,  // c= does not match "n,,"
      "c=cD10bHMtc2VydmVyLWVuZC1wb2ludCws,r=" + nonce + "," + proof,
      "c=bi!s,r=" + nonce + "," + proof,         // bad base64 binding
      "c=biws,r=" + nonce + "X," + proof,        // nonce mismatch
      "c=biws,r=rOprNGfwEbeRWgbNEkqO," + proof,  // only the client's part
      "c=biws,r=" + nonce + ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ",   // bad base64
      "c=biws,r=" + nonce + ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndQ==",  // 31 bytes
      "c=biws,r=" + nonce + ",p=",
      "c=biws,r=" + nonce + "," + proof + ",x=trailing",
      "c=biws,r=" + nonce + "," + proof + ",",
      "c=biws,r=" + nonce + ",1=x," + proof,                                    // bad extension
      "c=biws,r=" + nonce + ",," + proof,                                       // empty one
      "c=biws,r=" + nonce + ",x=ext,," + proof,
      "c=biws,r=" + nonce + ",p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",  // wrong proof
  };
  for (const std::string& msg : bad) {
    ScramServer server = rfcServer();
    ASSERT_TRUE(server.handleClientFirst(kRfcClientFirst));
    EXPECT_FALSE(server.handleClientFinal(msg)) << msg;
    EXPECT_FALSE(server.succeeded());
  }
  // Extensions before the proof are allowed (PostgreSQL skips them) but are part of the
  // AuthMessage, so the RFC proof no longer verifies: still an error, a verification one.
  ScramServer server = rfcServer();
  ASSERT_TRUE(server.handleClientFirst(kRfcClientFirst));
  auto r = server.handleClientFinal("c=biws,r=" + nonce + ",x=ext," + proof);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("proof verification failed"), std::string::npos) << r.error();
}

TEST(ScramServer, OutOfOrderCallsRejected) {
  ScramServer server = rfcServer();
  EXPECT_FALSE(server.handleClientFinal(kRfcClientFinal));
  ScramServer server2 = rfcServer();
  ASSERT_TRUE(server2.handleClientFirst(kRfcClientFirst));
  EXPECT_FALSE(server2.handleClientFirst(kRfcClientFirst));
  ScramServer server3 = rfcServer();
  ASSERT_TRUE(server3.handleClientFirst(kRfcClientFirst));
  ASSERT_TRUE(server3.handleClientFinal(kRfcClientFinal));
  EXPECT_FALSE(server3.handleClientFinal(kRfcClientFinal));
}

TEST(ScramServer, TruncatedClientMessagesNeverCrash) {
  const size_t nonceStart = kRfcClientFirst.find(",r=") + 3;
  for (size_t n = 0; n < kRfcClientFirst.size(); ++n) {
    ScramServer server = rfcServer();
    auto r = server.handleClientFirst(kRfcClientFirst.substr(0, n));
    // A prefix is well-formed only if it keeps at least one nonce character.
    EXPECT_EQ(r.ok(), n > nonceStart) << n;
    if (r) {
      EXPECT_FALSE(server.handleClientFinal(kRfcClientFinal));
    }
  }
  for (size_t n = 0; n < kRfcClientFinal.size(); ++n) {
    ScramServer server = rfcServer();
    ASSERT_TRUE(server.handleClientFirst(kRfcClientFirst));
    EXPECT_FALSE(server.handleClientFinal(kRfcClientFinal.substr(0, n))) << n;
  }
}

TEST(ScramServer, SeededRandomInputNeverCrashesOrVerifies) {
  std::mt19937 rng(12345);
  const std::string alphabet("nypcrmsvie=,+/abcXYZ019\0\x80\xff", 26);
  std::string clientFinal(kRfcClientFinal);
  for (int round = 0; round < 2000; ++round) {
    std::string msg(rng() % 80, '\0');
    for (char& c : msg) c = alphabet[rng() % alphabet.size()];
    ScramServer server = rfcServer();
    (void)server.handleClientFirst(msg);
    ScramServer server2 = rfcServer();
    ASSERT_TRUE(server2.handleClientFirst(kRfcClientFirst));
    EXPECT_FALSE(server2.handleClientFinal(msg));
    // Any single-byte change to a valid client-final fails.
    std::string mutated = clientFinal;
    size_t pos = rng() % mutated.size();
    char replacement = alphabet[rng() % alphabet.size()];
    if (mutated[pos] == replacement) continue;
    mutated[pos] = replacement;
    ScramServer server3 = rfcServer();
    ASSERT_TRUE(server3.handleClientFirst(kRfcClientFirst));
    EXPECT_FALSE(server3.handleClientFinal(mutated)) << mutated;
  }
}

}  // namespace
}  // namespace pgswitch::protocol
