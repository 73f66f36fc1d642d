// Unit tests for SCRAM-SHA-256-PLUS on bytes: tls-server-end-point data of certificates made
// here (each signature digest), the server side of a bound exchange (right and wrong binding
// data, downgrades, mismatched flags), and the cap on a server's iteration count.
#include "protocol/channel_binding.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "protocol/scram.h"

namespace pgswitch::protocol {
namespace {

// A self-signed certificate signed with `md` (nullptr: Ed25519, whose signature has no
// separate digest), as DER.
std::vector<std::byte> makeCert(const EVP_MD* md, bool ed25519 = false) {
  EVP_PKEY* key = ed25519 ? EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519")
                          : EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  EXPECT_NE(key, nullptr);
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
  X509_gmtime_adj(X509_getm_notBefore(x), 0);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_set_pubkey(x, key);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
  X509_set_issuer_name(x, name);
  EXPECT_GT(X509_sign(x, key, md), 0);
  unsigned char* der = nullptr;
  int len = i2d_X509(x, &der);
  std::vector<std::byte> out(reinterpret_cast<std::byte*>(der),
                             reinterpret_cast<std::byte*>(der) + len);
  OPENSSL_free(der);
  X509_free(x);
  EVP_PKEY_free(key);
  return out;
}

std::string digest(const std::vector<std::byte>& der, const EVP_MD* md) {
  unsigned char h[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(der.data(), der.size(), h, &n, md, nullptr);
  return std::string(reinterpret_cast<char*>(h), n);
}

TEST(TlsServerEndPoint, HashFollowsTheSignatureDigest) {
  auto sha256Cert = makeCert(EVP_sha256());
  EXPECT_EQ(tlsServerEndPoint(sha256Cert), digest(sha256Cert, EVP_sha256()));
  auto sha384Cert = makeCert(EVP_sha384());
  EXPECT_EQ(tlsServerEndPoint(sha384Cert), digest(sha384Cert, EVP_sha384()));
  auto sha512Cert = makeCert(EVP_sha512());
  EXPECT_EQ(tlsServerEndPoint(sha512Cert)->size(), 64u);
}

TEST(TlsServerEndPoint, Sha1SignedCertificatesUseSha256) {
  // RFC 5929 4.1: MD5 and SHA-1 are replaced by SHA-256.
  auto sha1Cert = makeCert(EVP_sha1());
  EXPECT_EQ(tlsServerEndPoint(sha1Cert), digest(sha1Cert, EVP_sha256()));
}

TEST(TlsServerEndPoint, NoDigestOrNoCertificateGivesNothing) {
  EXPECT_FALSE(tlsServerEndPoint(makeCert(nullptr, true)).has_value());  // Ed25519
  auto der = makeCert(EVP_sha256());
  EXPECT_FALSE(tlsServerEndPoint(std::span(der).first(der.size() - 1)).has_value());
  der.push_back(std::byte{0});  // trailing garbage
  EXPECT_FALSE(tlsServerEndPoint(der).has_value());
  EXPECT_FALSE(tlsServerEndPoint({}).has_value());
  // Every truncation and single-byte flip is refused or hashed, never a crash.
  auto good = makeCert(EVP_sha256());
  for (size_t i = 0; i < good.size(); i += 7) {
    auto bad = good;
    bad[i] ^= std::byte{0x5a};
    (void)tlsServerEndPoint(bad);
    (void)tlsServerEndPoint(std::span(good).first(i));
  }
}

// --- the server side of SCRAM-SHA-256-PLUS -------------------------------------------------

using Key = std::array<uint8_t, 32>;

Key hmac(std::span<const uint8_t> key, std::string_view msg) {
  Key out{};
  unsigned int n = 0;
  HMAC(EVP_sha256(), key.data(), int(key.size()),
       reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), out.data(), &n);
  return out;
}

// A client of our own that speaks channel binding: what libpq sends with
// channel_binding=require, from the password's PBKDF2 output.
struct PlusClient {
  std::string password = "pencil";
  std::string gs2 = "p=tls-server-end-point,,";
  std::string cbind;  // what the client saw as the server certificate's hash
  std::string nonce = "clientnonce123";
  std::string first() const { return gs2 + "n=,r=" + nonce; }
  std::string final(std::string_view serverFirst, const ScramSecret& secret) const {
    Key salted{};
    PKCS5_PBKDF2_HMAC(password.data(), int(password.size()),
                      reinterpret_cast<const unsigned char*>(secret.salt.data()),
                      int(secret.salt.size()), secret.iterations, EVP_sha256(), 32, salted.data());
    Key clientKey = hmac(salted, "Client Key");
    Key stored{};
    SHA256(clientKey.data(), clientKey.size(), stored.data());
    std::string r(serverFirst.substr(2, serverFirst.find(',') - 2));
    std::string bind = gs2 + cbind;
    std::string withoutProof =
        "c=" + base64Encode(std::as_bytes(std::span(bind.data(), bind.size()))) + ",r=" + r;
    std::string auth = "n=,r=" + nonce + "," + std::string(serverFirst) + "," + withoutProof;
    Key sig = hmac(stored, auth);
    Key proof{};
    for (size_t i = 0; i < 32; ++i) proof[i] = clientKey[i] ^ sig[i];
    return withoutProof + ",p=" + base64Encode(std::as_bytes(std::span(proof)));
  }
};

const ScramSecret& secret() {
  static const ScramSecret s = makeScramSecret("pencil", "0123456789abcdef", 4096);
  return s;
}

const std::string kCbind = std::string(32, '\x42');

TEST(ScramPlus, BoundExchangeSucceeds) {
  ScramServer server(secret(), "servernonce");
  server.offerChannelBinding(kCbind);
  PlusClient c;
  c.cbind = kCbind;
  auto sf = server.handleClientFirst(c.first(), true);
  ASSERT_TRUE(sf) << sf.error();
  EXPECT_TRUE(server.channelBound());
  auto fin = server.handleClientFinal(c.final(*sf, secret()));
  ASSERT_TRUE(fin) << fin.error();
  EXPECT_TRUE(server.succeeded());
}

TEST(ScramPlus, OtherCertificateHashFails) {
  // A man in the middle with its own certificate: the client hashes that one.
  ScramServer server(secret(), "servernonce");
  server.offerChannelBinding(kCbind);
  PlusClient c;
  c.cbind = std::string(32, '\x43');
  auto sf = server.handleClientFirst(c.first(), true);
  ASSERT_TRUE(sf);
  auto fin = server.handleClientFinal(c.final(*sf, secret()));
  ASSERT_FALSE(fin);
  EXPECT_NE(fin.error().find("channel binding"), std::string::npos) << fin.error();
  EXPECT_FALSE(server.succeeded());
}

TEST(ScramPlus, FlagAndMechanismMustAgree) {
  struct Case {
    std::string gs2;
    bool plusSelected;
    bool offered;
    const char* why;
  };
  const Case cases[] = {
      {"y,,", false, true, "negotiation error"},  // downgrade: the server can bind
      {"n,,", true, true, "does not include"},    // -PLUS chosen without binding
      {"p=tls-server-end-point,,", false, true, "includes channel binding data"},
      {"p=tls-unique,,", true, true, "unsupported"},  // only tls-server-end-point
      {"p=tls-server-end-point,,", true, false, "not offered"},
      {"p=tls-server-end-point,,", false, false, "not supported"},
  };
  for (const Case& k : cases) {
    ScramServer server(secret(), "servernonce");
    if (k.offered) server.offerChannelBinding(kCbind);
    auto r = server.handleClientFirst(k.gs2 + "n=,r=abc", k.plusSelected);
    ASSERT_FALSE(r) << k.gs2;
    EXPECT_NE(r.error().find(k.why), std::string::npos) << k.gs2 << ": " << r.error();
  }
  // Offered but not chosen: a client without channel binding support ("n") still logs in.
  ScramServer server(secret(), "servernonce");
  server.offerChannelBinding(kCbind);
  PlusClient c;
  c.gs2 = "n,,";
  auto sf = server.handleClientFirst(c.first(), false);
  ASSERT_TRUE(sf) << sf.error();
  EXPECT_FALSE(server.channelBound());
  ASSERT_TRUE(server.handleClientFinal(c.final(*sf, secret())));
}

TEST(ScramPlus, UnboundClientFinalCannotClaimBinding) {
  // "n,," in client-first, then c= carrying binding data: refused.
  ScramServer server(secret(), "servernonce");
  server.offerChannelBinding(kCbind);
  PlusClient c;
  c.gs2 = "n,,";
  auto sf = server.handleClientFirst(c.first(), false);
  ASSERT_TRUE(sf);
  c.cbind = kCbind;
  EXPECT_FALSE(server.handleClientFinal(c.final(*sf, secret())));
}

TEST(ScramClientCap, HostileIterationCountIsRefusedAtOnce) {
  auto client = ScramClient::withPassword("pw", "clientnonce");
  client.clientFirst();
  auto t0 = std::chrono::steady_clock::now();
  auto r = client.handleServerFirst("r=clientnonceSERVER,s=c2FsdA==,i=2147483647");
  auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("2147483647"), std::string::npos) << r.error();
  EXPECT_NE(r.error().find("1000000"), std::string::npos) << r.error();
  EXPECT_LT(took, std::chrono::seconds(1));
  // At the cap it still runs (not measured: 1,000,000 rounds take about a second).
  auto ok = ScramClient::withPassword("pw", "clientnonce");
  ok.clientFirst();
  EXPECT_TRUE(ok.handleServerFirst("r=clientnonceSERVER,s=c2FsdA==,i=4096"));
}

}  // namespace
}  // namespace pgswitch::protocol
