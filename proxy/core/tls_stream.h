// TlsStream: one connection's TLS session (OpenSSL over two memory BIOs), owned by its Conn.
// Conn moves ciphertext between the socket and the BIOs; TlsStream turns it into plaintext in
// the Conn's input ByteQueue and encrypts the Conn's output slices. It never touches a socket,
// so it runs the same way on a client's connection and on a server's.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "protocol/buffer.h"

namespace pgswitch::proxy {

class TlsStream {
 public:
  // AcceptDirect: a client that began with its ClientHello (no SSLRequest); the stream
  // then fails unless it negotiated ALPN "postgresql", as PostgreSQL 17 requires.
  enum class Role { Accept, AcceptDirect, Connect };
  enum class Status { Ok, Closed, Failed };  // Closed: the peer sent close_notify

  // Connect role: verifyHost non-empty checks the peer certificate's name against it (an IP
  // address is matched against IP SANs); sni is sent when it is a host name. The context
  // decides whether the peer is verified at all. Null when OpenSSL cannot allocate.
  static std::unique_ptr<TlsStream> make(SSL_CTX* ctx, Role role, std::string_view verifyHost,
                                         std::string_view sni);
  ~TlsStream();
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;

  // Ciphertext read from the socket. False only when OpenSSL cannot store it.
  bool feed(std::span<const std::byte> cipher);
  // Runs the handshake while it is unfinished, then decrypts what it can into `in`'s own
  // writable space (no buffer of ours in between). `produced` says how many plaintext bytes.
  Status readInto(protocol::ByteQueue& in, size_t& produced);
  // After the handshake: encrypts everything in `plain` and consumes it (the bytes are now in
  // the write BIO, so the slices can go back to their chunks at once).
  Status encrypt(protocol::SliceQueue& plain);
  // Starts or continues the handshake (Connect role: the ClientHello).
  Status handshake();
  // Moves what OpenSSL wants sent (records, alerts, handshake messages) to `wire`.
  void drainTo(protocol::SliceQueue& wire);
  // Queues a close_notify alert (drainTo sends it).
  void shutdown();

  bool handshakeDone() const;
  // Set on the SSL of an AcceptDirect stream (SSL_get_app_data): the context's ALPN callback
  // refuses a client that does not ask for "postgresql".
  static void* directMarker();
  SSL* ssl() const { return ssl_; }
  // Why the last Failed happened (OpenSSL's reason, and the verification result if any).
  const std::string& error() const { return error_; }
  // "TLSv1.3 TLS_AES_256_GCM_SHA384", for logs.
  std::string describe() const;
  // After the handshake: the peer sent a certificate and it verified (the context asks for
  // one only when a CA is configured; one that fails verification fails the handshake).
  bool peerVerified() const;
  // Its subject's common name; nullopt without a certificate, without a CN, or when the CN is
  // not a clean string (an embedded NUL, as PostgreSQL refuses it).
  std::optional<std::string> peerCommonName() const;

 private:
  explicit TlsStream(SSL* ssl) : ssl_(ssl) {}
  Status fail(int rc);

  SSL* ssl_;
  BIO* rbio_ = nullptr;  // owned by ssl_
  BIO* wbio_ = nullptr;  // owned by ssl_
  std::string error_;
};

}  // namespace pgswitch::proxy
