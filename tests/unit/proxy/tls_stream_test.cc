// TlsStream on bytes: a client and a server stream (both roles pgswitch plays) wired to each
// other through their memory BIOs, no sockets. Handshake, a megabyte each way in uneven
// pieces, output held until the handshake is done, name verification (verify-full) for a
// DNS name and an IP address, garbage instead of a ClientHello, and close_notify.
#include "proxy/core/tls_stream.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <string>

namespace pgswitch::proxy {
namespace {

using Status = TlsStream::Status;

struct Pki {
  EVP_PKEY* key = nullptr;
  X509* cert = nullptr;
  Pki() {
    key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
    cert = X509_new();
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 3);
    X509_gmtime_adj(X509_getm_notBefore(cert), -60);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
    X509_set_issuer_name(cert, name);
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, cert, cert, nullptr, nullptr, 0);
    X509_EXTENSION* san = X509V3_EXT_conf_nid(nullptr, &v3, NID_subject_alt_name,
                                              "DNS:localhost,IP:127.0.0.1");
    X509_add_ext(cert, san, -1);
    X509_EXTENSION_free(san);
    X509_sign(cert, key, EVP_sha256());
  }
  ~Pki() {
    X509_free(cert);
    EVP_PKEY_free(key);
  }
  SSL_CTX* server() const {
    SSL_CTX* c = SSL_CTX_new(TLS_server_method());
    SSL_CTX_use_certificate(c, cert);
    SSL_CTX_use_PrivateKey(c, key);
    return c;
  }
  // Trusts the self-signed certificate, as verify-ca / verify-full do with server_ca_file.
  SSL_CTX* client(bool verify) const {
    SSL_CTX* c = SSL_CTX_new(TLS_client_method());
    X509_STORE_add_cert(SSL_CTX_get_cert_store(c), cert);
    SSL_CTX_set_verify(c, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
    return c;
  }
};

const Pki& pki() {
  static const Pki p;
  return p;
}

struct Pair {
  protocol::ChunkPool pool;
  protocol::ByteQueue clientIn{pool}, serverIn{pool};
  protocol::SliceQueue toServer{pool}, toClient{pool};  // ciphertext in flight
  std::unique_ptr<TlsStream> client, server;
  Status clientStatus = Status::Ok, serverStatus = Status::Ok;

  Pair(bool verify, std::string_view host) {
    SSL_CTX* s = pki().server();
    SSL_CTX* c = pki().client(verify);
    server = TlsStream::make(s, TlsStream::Role::Accept, {}, {});
    client = TlsStream::make(c, TlsStream::Role::Connect, host, host);
    SSL_CTX_free(s);  // each SSL keeps its context alive
    SSL_CTX_free(c);
  }
  // Moves ciphertext from one queue into the other stream, `piece` bytes at a time.
  static void deliver(protocol::SliceQueue& q, TlsStream& to, size_t piece) {
    while (!q.empty()) {
      std::array<protocol::SliceQueue::IoVec, 1> v;
      q.gather(v);
      size_t n = std::min(v[0].len, piece);
      ASSERT_TRUE(to.feed(std::span(v[0].base, n)));
      q.consume(n);
    }
  }
  // One round trip of whatever is pending, both ways.
  void pump(size_t piece = 1 << 20) {
    for (int i = 0; i < 20; ++i) {
      client->drainTo(toServer);
      deliver(toServer, *server, piece);
      size_t n = 0;
      serverStatus = server->readInto(serverIn, n);
      server->drainTo(toClient);
      deliver(toClient, *client, piece);
      clientStatus = client->readInto(clientIn, n);
      client->drainTo(toServer);
      if (toServer.empty() && toClient.empty()) return;
    }
  }
  std::string take(protocol::ByteQueue& q) {
    std::string s(q.size(), '\0');
    q.copyOut(0, std::as_writable_bytes(std::span(s.data(), s.size())));
    q.consume(q.size());
    return s;
  }
};

TEST(TlsStream, HandshakeThenDataBothWaysInPieces) {
  Pair p(true, "localhost");
  ASSERT_TRUE(p.client && p.server);
  // The startup packet is queued before the handshake: it must wait, not go out in clear.
  protocol::SliceQueue plain(p.pool);
  plain.pushCopy(std::string_view("startup packet"));
  ASSERT_EQ(p.client->handshake(), Status::Ok);
  EXPECT_EQ(p.client->encrypt(plain), Status::Ok);
  EXPECT_EQ(plain.bytes(), 14u);
  p.pump(7);
  ASSERT_TRUE(p.client->handshakeDone());
  ASSERT_TRUE(p.server->handshakeDone());
  EXPECT_EQ(p.clientStatus, Status::Ok);
  ASSERT_EQ(p.client->encrypt(plain), Status::Ok);
  EXPECT_TRUE(plain.empty());
  p.pump(3);
  EXPECT_EQ(p.take(p.serverIn), "startup packet");

  std::string big(1 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = char(i * 131 + (i >> 9));
  protocol::SliceQueue out(p.pool);
  out.pushCopy(big);
  ASSERT_EQ(p.server->encrypt(out), Status::Ok);
  p.pump(4093);
  EXPECT_EQ(p.take(p.clientIn), big);
  out.pushCopy(big.substr(0, 100000));
  ASSERT_EQ(p.client->encrypt(out), Status::Ok);
  p.pump(1 << 16);
  EXPECT_EQ(p.take(p.serverIn), big.substr(0, 100000));
  EXPECT_NE(p.server->describe().find("TLS"), std::string::npos);
}

TEST(TlsStream, VerifyFullChecksTheName) {
  {
    Pair p(true, "127.0.0.1");  // IP SAN
    ASSERT_EQ(p.client->handshake(), Status::Ok);
    p.pump();
    EXPECT_TRUE(p.client->handshakeDone());
  }
  {
    Pair p(true, "db.example.com");
    ASSERT_EQ(p.client->handshake(), Status::Ok);
    p.pump();
    EXPECT_EQ(p.clientStatus, Status::Failed);
    EXPECT_NE(p.client->error().find("certificate verify failed"), std::string::npos)
        << p.client->error();
    EXPECT_FALSE(p.client->handshakeDone());
  }
  {
    Pair p(false, "");  // require: no verification
    ASSERT_EQ(p.client->handshake(), Status::Ok);
    p.pump();
    EXPECT_TRUE(p.client->handshakeDone());
  }
}

TEST(TlsStream, GarbageInsteadOfClientHelloFails) {
  Pair p(false, "");
  std::string startup("\0\0\0\x08\x04\xd2\x16\x2f", 8);
  ASSERT_TRUE(p.server->feed(std::as_bytes(std::span(startup.data(), startup.size()))));
  size_t n = 0;
  EXPECT_EQ(p.server->readInto(p.serverIn, n), Status::Failed);
  EXPECT_EQ(n, 0u);
  EXPECT_FALSE(p.server->error().empty());
}

TEST(TlsStream, CloseNotifyReadsAsClosed) {
  Pair p(false, "");
  ASSERT_EQ(p.client->handshake(), Status::Ok);
  p.pump();
  ASSERT_TRUE(p.server->handshakeDone());
  p.client->shutdown();
  p.pump();
  EXPECT_EQ(p.serverStatus, Status::Closed);
}

}  // namespace
}  // namespace pgswitch::proxy
