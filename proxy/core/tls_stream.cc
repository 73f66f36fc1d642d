// TLS over memory BIOs. Why memory BIOs rather than a socket BIO: libuv owns the socket and
// its readiness; OpenSSL only ever sees bytes, so a TLS connection is driven by the same read
// and write callbacks as a plaintext one.
#include "proxy/core/tls_stream.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <array>

namespace pgswitch::proxy {

namespace {

bool isIpAddress(std::string_view host) {
  std::string h(host);
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, h.c_str(), buf) == 1 || inet_pton(AF_INET6, h.c_str(), buf) == 1;
}

// Records are at most 16 KiB of plaintext: asking for a little more space than that lets one
// SSL_read deliver a whole record into the input queue.
constexpr size_t kRecordRoom = 16 * 1024 + 256;

}  // namespace

std::unique_ptr<TlsStream> TlsStream::make(SSL_CTX* ctx, Role role, std::string_view verifyHost,
                                           std::string_view sni) {
  SSL* ssl = SSL_new(ctx);
  if (ssl == nullptr) return nullptr;
  std::unique_ptr<TlsStream> t(new TlsStream(ssl));
  t->rbio_ = BIO_new(BIO_s_mem());
  t->wbio_ = BIO_new(BIO_s_mem());
  if (t->rbio_ == nullptr || t->wbio_ == nullptr) {
    BIO_free(t->rbio_);
    BIO_free(t->wbio_);
    t->rbio_ = t->wbio_ = nullptr;
    return nullptr;
  }
  // An empty read BIO means "wait for the socket", not end of file.
  BIO_set_mem_eof_return(t->rbio_, -1);
  SSL_set_bio(ssl, t->rbio_, t->wbio_);
  if (role == Role::Accept || role == Role::AcceptDirect) {
    if (role == Role::AcceptDirect) SSL_set_app_data(ssl, directMarker());
    SSL_set_accept_state(ssl);
    return t;
  }
  SSL_set_connect_state(ssl);
  if (!sni.empty() && !isIpAddress(sni)) SSL_set_tlsext_host_name(ssl, std::string(sni).c_str());
  if (!verifyHost.empty()) {
    std::string host(verifyHost);
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    // Like libpq's verify-full: the name must match a SAN (or the CN when there is none).
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    int ok = isIpAddress(host) ? X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str())
                               : X509_VERIFY_PARAM_set1_host(param, host.c_str(), 0);
    if (ok != 1) return nullptr;
  }
  return t;
}

TlsStream::~TlsStream() { SSL_free(ssl_); }

void* TlsStream::directMarker() {
  static char marker;
  return &marker;
}

bool TlsStream::feed(std::span<const std::byte> cipher) {
  if (cipher.empty()) return true;
  return BIO_write(rbio_, cipher.data(), static_cast<int>(cipher.size())) ==
         static_cast<int>(cipher.size());
}

bool TlsStream::handshakeDone() const { return SSL_is_init_finished(ssl_) == 1; }

TlsStream::Status TlsStream::fail(int rc) {
  int e = SSL_get_error(ssl_, rc);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return Status::Ok;
  if (e == SSL_ERROR_ZERO_RETURN) return Status::Closed;
  error_.clear();
  unsigned long code;
  char buf[256];
  while ((code = ERR_get_error()) != 0) {
    ERR_error_string_n(code, buf, sizeof(buf));
    if (!error_.empty()) error_ += "; ";
    error_ += buf;
  }
  long verify = SSL_get_verify_result(ssl_);
  if (verify != X509_V_OK) {
    if (!error_.empty()) error_ += ": ";
    error_ += "certificate verify failed: ";
    error_ += X509_verify_cert_error_string(verify);
  }
  if (error_.empty())
    error_ = e == SSL_ERROR_SYSCALL ? "unexpected end of TLS stream" : "TLS error";
  ERR_clear_error();
  return Status::Failed;
}

TlsStream::Status TlsStream::handshake() {
  if (handshakeDone()) return Status::Ok;
  int rc = SSL_do_handshake(ssl_);
  return rc == 1 ? Status::Ok : fail(rc);
}

TlsStream::Status TlsStream::readInto(protocol::ByteQueue& in, size_t& produced) {
  produced = 0;
  if (!handshakeDone()) {
    Status s = handshake();
    if (s != Status::Ok || !handshakeDone()) return s;
    // The ALPN callback only runs when the client offers ALPN at all: a direct TLS client
    // that offered none is refused here.
    const unsigned char* alpn = nullptr;
    unsigned int alpnLen = 0;
    SSL_get0_alpn_selected(ssl_, &alpn, &alpnLen);
    if (SSL_get_app_data(ssl_) == directMarker() && alpnLen == 0) {
      error_ = "direct TLS connection without ALPN \"postgresql\"";
      return Status::Failed;
    }
  }
  for (;;) {
    std::span<std::byte> room = in.writable(kRecordRoom);
    size_t n = 0;
    int rc = SSL_read_ex(ssl_, room.data(), room.size(), &n);
    if (rc != 1) {
      in.commit(0);
      return fail(rc);
    }
    in.commit(n);
    produced += n;
  }
}

TlsStream::Status TlsStream::encrypt(protocol::SliceQueue& plain) {
  if (!handshakeDone()) return Status::Ok;
  while (!plain.empty()) {
    std::array<protocol::SliceQueue::IoVec, 16> v;
    size_t cnt = plain.gather(v);
    size_t done = 0;
    for (size_t i = 0; i < cnt; ++i) {
      size_t n = 0;
      // A memory BIO grows as needed, so a write succeeds whole or fails for good.
      int rc = SSL_write_ex(ssl_, v[i].base, v[i].len, &n);
      if (rc != 1) {
        plain.consume(done);
        fail(rc);
        return Status::Failed;
      }
      done += n;
    }
    plain.consume(done);
  }
  return Status::Ok;
}

void TlsStream::drainTo(protocol::SliceQueue& wire) {
  // Read straight into the queue's chunk: one copy out of the BIO, none in between.
  for (size_t pending = BIO_ctrl_pending(wbio_); pending > 0; pending = BIO_ctrl_pending(wbio_)) {
    std::span<std::byte> room = wire.copySpace();
    int n = BIO_read(wbio_, room.data(), static_cast<int>(std::min(room.size(), pending)));
    if (n <= 0) return;
    wire.commitCopy(static_cast<size_t>(n));
  }
}

void TlsStream::shutdown() {
  if (handshakeDone()) SSL_shutdown(ssl_);
  ERR_clear_error();
}

std::string TlsStream::describe() const {
  const char* cipher = SSL_get_cipher_name(ssl_);
  return std::string(SSL_get_version(ssl_)) + " " + (cipher ? cipher : "?");
}

bool TlsStream::peerVerified() const {
  X509* cert = SSL_get0_peer_certificate(ssl_);
  return cert != nullptr && SSL_get_verify_result(ssl_) == X509_V_OK;
}

std::optional<std::string> TlsStream::peerCommonName() const {
  X509* cert = SSL_get0_peer_certificate(ssl_);
  if (!cert) return std::nullopt;
  X509_NAME* subject = X509_get_subject_name(cert);
  int i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (i < 0) return std::nullopt;
  const ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i));
  unsigned char* utf8 = nullptr;
  int n = ASN1_STRING_to_UTF8(&utf8, data);
  if (n < 0) return std::nullopt;
  std::string cn(reinterpret_cast<const char*>(utf8), static_cast<size_t>(n));
  OPENSSL_free(utf8);
  if (cn.find('\0') != std::string::npos) return std::nullopt;
  return cn;
}

}  // namespace pgswitch::proxy
