// The TLS entry point of a client connection (proxy/core/tls_stream.h): what a client sends
// after pgswitch answered 'S', fed in pieces to a server-side TlsStream over memory BIOs, as
// Conn feeds it; plus the tls-server-end-point hash on the same bytes as a DER certificate.
// The first input byte sets the piece size (0: all at once). Invariants: the plaintext queue
// grows by exactly what readInto reports, nothing is encrypted before the handshake, and once
// the stream failed it stays failed.
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cstdint>
#include <string>

#include "fuzz_check.h"
#include "protocol/buffer.h"
#include "protocol/channel_binding.h"
#include "proxy/core/tls_stream.h"

using namespace pgswitch;
using proxy::TlsStream;

namespace {

// A server context with a throwaway self-signed certificate, made once.
SSL_CTX* serverContext() {
  static SSL_CTX* ctx = [] {
    EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
    FUZZ_CHECK(key != nullptr);
    X509* x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME* name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
    X509_set_issuer_name(x, name);
    FUZZ_CHECK(X509_sign(x, key, EVP_sha256()) > 0);
    SSL_CTX* c = SSL_CTX_new(TLS_server_method());
    SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
    FUZZ_CHECK(SSL_CTX_use_certificate(c, x) == 1);
    FUZZ_CHECK(SSL_CTX_use_PrivateKey(c, key) == 1);
    X509_free(x);
    EVP_PKEY_free(key);
    return c;
  }();
  return ctx;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  size_t piece = data[0];
  std::span<const std::byte> rest(reinterpret_cast<const std::byte*>(data + 1), size - 1);
  (void)protocol::tlsServerEndPoint(rest);

  protocol::ChunkPool pool;
  protocol::ByteQueue in(pool);
  protocol::SliceQueue wire(pool), plain(pool);
  auto tls = TlsStream::make(serverContext(), TlsStream::Role::Accept, {}, {});
  FUZZ_CHECK(tls != nullptr);
  plain.pushCopy(std::string_view("Z\0\0\0\5I", 6));
  bool failed = false;
  if (piece == 0) piece = rest.size() ? rest.size() : 1;
  while (!rest.empty() && !failed) {
    size_t n = std::min(piece, rest.size());
    FUZZ_CHECK(tls->feed(rest.first(n)));
    rest = rest.subspan(n);
    size_t before = in.size(), produced = 0;
    TlsStream::Status st = tls->readInto(in, produced);
    FUZZ_CHECK(in.size() == before + produced);
    tls->drainTo(wire);
    if (!tls->handshakeDone()) {
      FUZZ_CHECK(tls->encrypt(plain) == TlsStream::Status::Ok);
      FUZZ_CHECK(plain.bytes() == 6);  // held until the handshake is done
    }
    if (st == TlsStream::Status::Failed) {
      FUZZ_CHECK(!tls->error().empty());
      failed = true;
    }
    if (st == TlsStream::Status::Closed) break;
  }
  if (failed) {
    size_t produced = 0;
    FUZZ_CHECK(tls->readInto(in, produced) != TlsStream::Status::Ok || produced == 0);
  }
  return 0;
}
