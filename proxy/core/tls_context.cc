// SSL_CTX set-up. The choices follow PostgreSQL's server (be-secure-openssl.c) and libpq:
// TLS 1.2 or newer, no compression, no renegotiation, no session cache (a pooler's clients
// reconnect to any worker), ciphers from OpenSSL's HIGH set without anonymous or weak ones.
#include "proxy/core/tls_context.h"

#include <openssl/err.h>
#include <openssl/x509.h>

#include <cstring>
#include <vector>

#include "protocol/channel_binding.h"
#include "proxy/core/tls_stream.h"

namespace pgswitch::proxy {

namespace {

constexpr const char* kCiphers = "HIGH:!aNULL:!eNULL:!MD5:!3DES:!RC4:!SHA1";
// PostgreSQL's ALPN protocol name (PostgreSQL 17, libpq sends it in every ClientHello).
constexpr unsigned char kAlpnPostgresql[] = {10, 'p', 'o', 's', 't', 'g', 'r', 'e', 's', 'q', 'l'};

std::string opensslReason() {
  std::string out;
  unsigned long code;
  char buf[256];
  while ((code = ERR_get_error()) != 0) {
    ERR_error_string_n(code, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

bool common(SSL_CTX* ctx, std::string& err) {
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_cipher_list(ctx, kCiphers) != 1) {
    err = "cannot set TLS versions or ciphers: " + opensslReason();
    return false;
  }
  // Not SSL_MODE_RELEASE_BUFFERS: it would free and allocate the record buffers around
  // every message of an idle-then-busy connection (tens of KB kept per connection instead).
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  return true;
}

bool loadKeyPair(SSL_CTX* ctx, const std::string& cert, const std::string& key,
                 std::string_view what, std::string& err) {
  if (SSL_CTX_use_certificate_chain_file(ctx, cert.c_str()) != 1) {
    err = std::string(what) + "cert_file \"" + cert + "\": " + opensslReason();
    return false;
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) != 1) {
    err = std::string(what) + "key_file \"" + key + "\": " + opensslReason();
    return false;
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    err = std::string(what) + "key_file \"" + key + "\" does not match " + std::string(what) +
          "cert_file \"" + cert + "\"";
    return false;
  }
  return true;
}

int selectAlpn(SSL* ssl, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
               unsigned int inlen, void*) {
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, kAlpnPostgresql, sizeof(kAlpnPostgresql), in,
                            inlen) == OPENSSL_NPN_NEGOTIATED) {
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
  }
  // Direct TLS must name PostgreSQL's protocol (a TLS client of something else that reached
  // this port is refused); after SSLRequest, older libpq sends no ALPN and still gets TLS.
  if (SSL_get_app_data(ssl) == TlsStream::directMarker()) return SSL_TLSEXT_ERR_ALERT_FATAL;
  return SSL_TLSEXT_ERR_NOACK;
}

Result<SslCtxPtr, std::string> clientsContext(const TlsConfig& c, std::string& cbind) {
  SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  std::string err;
  if (!ctx) return Err{"cannot create a TLS context: " + opensslReason()};
  if (!common(ctx.get(), err) || !loadKeyPair(ctx.get(), c.certFile, c.keyFile, "", err))
    return Err{err};
  SSL_CTX_set_options(ctx.get(), SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_TICKET);
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(ctx.get(), 0);  // TLS 1.3 tickets nobody could use
  SSL_CTX_set_alpn_select_cb(ctx.get(), &selectAlpn, nullptr);
  if (!c.caFile.empty()) {
    if (SSL_CTX_load_verify_locations(ctx.get(), c.caFile.c_str(), nullptr) != 1)
      return Err{"ca_file \"" + c.caFile + "\": " + opensslReason()};
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(c.caFile.c_str());
    if (names) SSL_CTX_set_client_CA_list(ctx.get(), names);
    // A certificate is asked for and, when sent, must verify; none is still accepted.
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE, nullptr);
  }
  X509* leaf = SSL_CTX_get0_certificate(ctx.get());
  unsigned char* der = nullptr;
  int len = leaf ? i2d_X509(leaf, &der) : -1;
  if (len > 0) {
    auto h = protocol::tlsServerEndPoint(
        std::span<const std::byte>(reinterpret_cast<const std::byte*>(der), size_t(len)));
    if (h) cbind = *h;
  }
  OPENSSL_free(der);
  return ctx;
}

Result<SslCtxPtr, std::string> backendsContext(const TlsConfig& c) {
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  std::string err;
  if (!ctx) return Err{"cannot create a TLS context: " + opensslReason()};
  if (!common(ctx.get(), err)) return Err{err};
  if (!c.serverCertFile.empty() &&
      !loadKeyPair(ctx.get(), c.serverCertFile, c.serverKeyFile, "server_", err))
    return Err{err};
  bool verify =
      c.serverSslMode == ServerSslMode::VerifyCa || c.serverSslMode == ServerSslMode::VerifyFull;
  if (!c.serverCaFile.empty() &&
      SSL_CTX_load_verify_locations(ctx.get(), c.serverCaFile.c_str(), nullptr) != 1)
    return Err{"server_ca_file \"" + c.serverCaFile + "\": " + opensslReason()};
  SSL_CTX_set_verify(ctx.get(), verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
  if (SSL_CTX_set_alpn_protos(ctx.get(), kAlpnPostgresql, sizeof(kAlpnPostgresql)) != 0)
    return Err{"cannot set ALPN: " + opensslReason()};
  return ctx;
}

}  // namespace

Result<std::shared_ptr<const TlsContexts>, std::string> buildTlsContexts(const TlsConfig& c) {
  auto out = std::make_shared<TlsContexts>();
  out->clientTls = c.clientTls;
  out->serverSslMode = c.serverSslMode;
  ERR_clear_error();
  // Checked here rather than in the settings table, whose rules hold for each setting alone.
  if (c.certFile.empty() != c.keyFile.empty())
    return Err{std::string("[tls] cert_file and key_file must be set together")};
  if (c.serverCertFile.empty() != c.serverKeyFile.empty())
    return Err{std::string("[tls] server_cert_file and server_key_file must be set together")};
  if (c.clientTlsOffered()) {
    auto r = clientsContext(c, out->cbindData);
    if (!r) return Err{"[tls] " + r.error()};
    out->clients = std::move(*r);
  }
  if (c.serverSslMode != ServerSslMode::Disable) {
    auto r = backendsContext(c);
    if (!r) return Err{"[tls] " + r.error()};
    out->backends = std::move(*r);
  }
  return std::shared_ptr<const TlsContexts>(std::move(out));
}

}  // namespace pgswitch::proxy
