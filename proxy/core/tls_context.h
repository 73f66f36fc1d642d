// TlsContexts: the OpenSSL contexts built from [tls], one immutable set per configuration
// load. Built (and its files read) at start-up and at each RELOAD; a new set is used by new
// connections only, since each TLS connection holds a reference to the context it began with.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>

#include "protocol/result.h"
#include "proxy/config/config.h"

namespace pgswitch::proxy {

struct SslCtxFree {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;

struct TlsContexts {
  // For clients connecting to pgswitch; null when client TLS is not offered.
  SslCtxPtr clients;
  ClientTls clientTls = ClientTls::Disable;
  // tls-server-end-point data of cert_file's certificate, "" when it has none (then
  // SCRAM-SHA-256-PLUS is not offered, as in PostgreSQL).
  std::string cbindData;
  // For pgswitch's pooled connections to backends; null when server_sslmode = disable.
  SslCtxPtr backends;
  ServerSslMode serverSslMode = ServerSslMode::Disable;
};

// Reads the files [tls] names and builds the contexts; the error names the file and
// OpenSSL's reason.
Result<std::shared_ptr<const TlsContexts>, std::string> buildTlsContexts(const TlsConfig& c);

}  // namespace pgswitch::proxy
