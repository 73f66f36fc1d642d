// tls-server-end-point from a DER certificate.
#include "protocol/channel_binding.h"

#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include <memory>

namespace pgswitch::protocol {

std::optional<std::string> tlsServerEndPoint(std::span<const std::byte> certDer) {
  const auto* p = reinterpret_cast<const unsigned char*>(certDer.data());
  std::unique_ptr<X509, decltype(&X509_free)> cert(
      d2i_X509(nullptr, &p, static_cast<long>(certDer.size())), &X509_free);
  // Trailing bytes would mean the hash covers something the peer never saw as a certificate.
  if (!cert || p != reinterpret_cast<const unsigned char*>(certDer.data()) + certDer.size())
    return std::nullopt;
  int digestNid = NID_undef;
  if (!OBJ_find_sigid_algs(X509_get_signature_nid(cert.get()), &digestNid, nullptr))
    return std::nullopt;
  if (digestNid == NID_md5 || digestNid == NID_sha1) digestNid = NID_sha256;
  const EVP_MD* md = EVP_get_digestbynid(digestNid);
  if (md == nullptr) return std::nullopt;
  unsigned char hash[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!EVP_Digest(certDer.data(), certDer.size(), hash, &len, md, nullptr)) return std::nullopt;
  return std::string(reinterpret_cast<const char*>(hash), len);
}

}  // namespace pgswitch::protocol
