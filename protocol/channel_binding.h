// Channel binding data for SCRAM-SHA-256-PLUS: tls-server-end-point (RFC 5929 section 4.1),
// the hash of the server's certificate. Pure: DER bytes in, bytes out (OpenSSL crypto only).
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>

namespace pgswitch::protocol {

// The certificate's hash with the digest of its signature algorithm, except that MD5 and
// SHA-1 become SHA-256 (RFC 5929); what PostgreSQL's be_tls_get_certificate_hash and libpq
// compute. nullopt when the bytes are not one DER certificate or the signature algorithm has
// no single digest (Ed25519, RSASSA-PSS without parameters): PostgreSQL then offers no -PLUS.
std::optional<std::string> tlsServerEndPoint(std::span<const std::byte> certDer);

}  // namespace pgswitch::protocol
