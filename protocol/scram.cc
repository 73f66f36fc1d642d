// SCRAM-SHA-256 secrets, message parsing and the server and client exchanges. The key algebra
// (RFC 5802 section 3): StoredKey = H(ClientKey), proof = ClientKey XOR HMAC(StoredKey, AuthMsg).
#include "protocol/scram.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <charconv>
#include <climits>
#include <memory>
#include <vector>

namespace pgswitch::protocol {
namespace {

constexpr std::string_view kSecretPrefix = "SCRAM-SHA-256$";
constexpr size_t kMockSaltLength = 16;  // PostgreSQL's SCRAM_DEFAULT_SALT_LEN
constexpr size_t kNonceBytes = 18;

std::span<const std::byte> bytesOf(std::string_view s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}
std::span<const std::byte> bytesOf(const ScramKey& k) { return std::as_bytes(std::span(k)); }
const unsigned char* uchars(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

ScramKey xorKeys(const ScramKey& a, const ScramKey& b) {
  ScramKey r;
  for (size_t i = 0; i < r.size(); ++i) r[i] = a[i] ^ b[i];
  return r;
}

bool keysEqual(const ScramKey& a, const ScramKey& b) {
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::optional<size_t> base64Padding(std::string_view text);

// The length of the base64 of n bytes (padded).
constexpr size_t base64Length(size_t n) { return (n + 2) / 3 * 4; }

bool decodeKey(std::string_view text, ScramKey& out) {
  std::optional<size_t> padding = base64Padding(text);
  if (!padding || text.size() / 4 * 3 - *padding != out.size()) return false;
  std::array<unsigned char, sizeof(ScramKey) + 2> raw{};  // with the padding's bytes
  bool ok = EVP_DecodeBlock(raw.data(), uchars(text), static_cast<int>(text.size())) ==
            static_cast<int>(text.size() / 4 * 3);
  if (ok) std::copy_n(raw.begin(), out.size(), out.begin());
  OPENSSL_cleanse(raw.data(), raw.size());
  return ok;
}

// Keys from SaltedPassword: ClientKey = HMAC(SP, "Client Key"), ServerKey = HMAC(SP, "Server
// Key"). Raw password bytes: see the SASLprep note in scram.h.
bool saltPassword(std::string_view password, std::string_view salt, int iterations,
                  ScramKey& clientKey, ScramKey& serverKey) {
  ScramKey salted{};
  bool ok = PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()), uchars(salt),
                              static_cast<int>(salt.size()), iterations, EVP_sha256(),
                              static_cast<int>(salted.size()), salted.data()) == 1 &&
            hmacSha256(salted, "Client Key", clientKey) &&
            hmacSha256(salted, "Server Key", serverKey);
  OPENSSL_cleanse(salted.data(), salted.size());
  return ok;
}

// RFC 5802 "printable": %x21-2B / %x2D-7E, i.e. visible ASCII except ','.
bool isPrintable(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x21 && c <= 0x7e && c != ','; });
}

// The comma-separated attributes of a SCRAM message, one at a time: "" is one empty
// attribute, "a,b," three. Reads in place, so a login allocates nothing to parse.
class AttributeReader {
 public:
  explicit AttributeReader(std::string_view s) : rest_(s) {}
  bool more() const { return more_; }
  // What next() has not returned yet (valid while more()).
  std::string_view rest() const { return rest_; }
  std::optional<std::string_view> next() {
    if (!more_) return std::nullopt;
    size_t comma = rest_.find(',');
    std::string_view part = rest_.substr(0, comma);
    if (comma == std::string_view::npos) {
      more_ = false;
      rest_ = {};
    } else {
      rest_.remove_prefix(comma + 1);
    }
    return part;
  }

 private:
  std::string_view rest_;
  bool more_ = true;
};

// All of them at once, for the client side (once per server connection, not per login).
std::vector<std::string_view> splitAttributes(std::string_view s) {
  std::vector<std::string_view> parts;
  AttributeReader reader(s);
  while (std::optional<std::string_view> part = reader.next()) parts.push_back(*part);
  return parts;
}

// Strict base64 (see base64Decode): how many '=' end `text`, or nullopt when it is not
// canonical base64.
std::optional<size_t> base64Padding(std::string_view text) {
  // EVP_DecodeBlock skips surrounding whitespace and does not report padding, so validate the
  // alphabet and padding here and subtract the padding from its length.
  if (text.size() % 4 != 0) return std::nullopt;
  size_t padding = 0;
  if (!text.empty() && text.back() == '=')
    padding = text.size() >= 2 && text[text.size() - 2] == '=' ? 2 : 1;
  int lastValue = 0;
  for (size_t i = 0; i < text.size() - padding; ++i) {
    char c = text[i];
    if (c >= 'A' && c <= 'Z') {
      lastValue = c - 'A';
    } else if (c >= 'a' && c <= 'z') {
      lastValue = c - 'a' + 26;
    } else if (c >= '0' && c <= '9') {
      lastValue = c - '0' + 52;
    } else if (c == '+' || c == '/') {
      lastValue = c == '+' ? 62 : 63;
    } else {
      return std::nullopt;
    }
  }
  // Canonical only: the bits the padding makes unused must be zero, so that every byte string
  // has exactly one accepted encoding (RFC 4648 section 3.5).
  if ((padding == 1 && (lastValue & 0x3) != 0) || (padding == 2 && (lastValue & 0xf) != 0)) {
    return std::nullopt;
  }
  return padding;
}

// Appends the base64 of `bytes` to `out`, written in place.
void appendBase64(std::string& out, std::span<const std::byte> bytes) {
  // EVP_EncodeBlock takes an int length: encode in chunks that are a multiple of 3 bytes so the
  // pieces concatenate without padding in the middle.
  constexpr size_t kChunk = 3u << 20;
  for (size_t done = 0; done < bytes.size(); done += kChunk) {
    size_t n = std::min(kChunk, bytes.size() - done);
    size_t at = out.size();
    out.resize(at + base64Length(n) + 1);  // + the NUL EVP_EncodeBlock writes
    int len = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data() + at),
                              reinterpret_cast<const unsigned char*>(bytes.data() + done),
                              static_cast<int>(n));
    out.resize(at + static_cast<size_t>(len));
  }
}

// "<name>=<value>"; the value is everything after '='.
std::optional<std::string_view> attribute(std::string_view part, char name) {
  if (part.size() < 2 || part[0] != name || part[1] != '=') return std::nullopt;
  return part.substr(2);
}

// RFC 5802 extensions: a letter, '=', a value. We understand none, so they are ignored.
bool isExtension(std::string_view part) {
  return part.size() >= 2 &&
         ((part[0] >= 'a' && part[0] <= 'z') || (part[0] >= 'A' && part[0] <= 'Z')) &&
         part[1] == '=';
}

// Decimal integer in [1, INT_MAX], digits only (no sign, no spaces).
std::optional<int> parseIterations(std::string_view text) {
  if (text.empty() ||
      !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  int value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < 1) return std::nullopt;
  return value;
}

// The messages travel as C strings in PostgreSQL (SASLResponse data is checked with strlen).
bool hasNul(std::string_view s) { return s.find('\0') != std::string_view::npos; }

}  // namespace

// SHA-256 through a digest fetched once and one context per thread. OpenSSL 3's one-shot
// SHA256() and HMAC() look the algorithm up in the provider store on every call: ~9 µs per
// HMAC, most of the crypto of a SCRAM login (issue 14). They fail only on allocation failure
// or a broken provider; the callers turn that into an error rather than carry on with a zero
// key.
static EVP_MD_CTX* digestContext() {
  static EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  thread_local std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(),
                                                                           &EVP_MD_CTX_free);
  if (!md || !ctx || EVP_DigestInit_ex2(ctx.get(), md, nullptr) != 1) return nullptr;
  return ctx.get();
}

static bool digestFinal(EVP_MD_CTX* c, ScramKey& out) {
  unsigned int len = 0;
  return EVP_DigestFinal_ex(c, out.data(), &len) == 1 && len == out.size();
}

bool sha256(std::span<const uint8_t> data, ScramKey& out) {
  EVP_MD_CTX* c = digestContext();
  return c && EVP_DigestUpdate(c, data.data(), data.size()) == 1 && digestFinal(c, out);
}

// HMAC-SHA256 (RFC 2104), written out over the digest above for the reason given there:
// H((K ^ opad) || H((K ^ ipad) || message)), K the key padded to the 64-byte block (hashed
// first when longer). Checked against OpenSSL's HMAC() and RFC 4231's vectors in
// tests/unit/protocol/scram_test.cc.
bool hmacSha256(std::span<const uint8_t> key, std::string_view message, ScramKey& out) {
  constexpr size_t kBlock = 64;
  std::array<uint8_t, kBlock> k{};
  if (key.size() > kBlock) {
    ScramKey hashed;
    if (!sha256(key, hashed)) return false;
    std::copy(hashed.begin(), hashed.end(), k.begin());
  } else {
    std::copy(key.begin(), key.end(), k.begin());
  }
  std::array<uint8_t, kBlock> pad;
  for (size_t i = 0; i < kBlock; ++i) pad[i] = k[i] ^ 0x36;
  ScramKey inner;
  EVP_MD_CTX* c = digestContext();
  bool ok = c && EVP_DigestUpdate(c, pad.data(), pad.size()) == 1 &&
            EVP_DigestUpdate(c, message.data(), message.size()) == 1 && digestFinal(c, inner);
  for (size_t i = 0; i < kBlock; ++i) pad[i] = k[i] ^ 0x5c;
  c = ok ? digestContext() : nullptr;
  ok = c && EVP_DigestUpdate(c, pad.data(), pad.size()) == 1 &&
       EVP_DigestUpdate(c, inner.data(), inner.size()) == 1 && digestFinal(c, out);
  OPENSSL_cleanse(k.data(), k.size());
  OPENSSL_cleanse(pad.data(), pad.size());
  OPENSSL_cleanse(inner.data(), inner.size());
  return ok;
}

// --- secrets -------------------------------------------------------------------------------

std::optional<ScramSecret> parseScramSecret(std::string_view text) {
  if (!text.starts_with(kSecretPrefix)) return std::nullopt;
  text.remove_prefix(kSecretPrefix.size());
  size_t dollar = text.find('$');
  if (dollar == std::string_view::npos) return std::nullopt;
  std::string_view iterAndSalt = text.substr(0, dollar);
  std::string_view keys = text.substr(dollar + 1);
  size_t colon1 = iterAndSalt.find(':');
  size_t colon2 = keys.find(':');
  if (colon1 == std::string_view::npos || colon2 == std::string_view::npos) return std::nullopt;

  ScramSecret secret;
  std::optional<int> iterations = parseIterations(iterAndSalt.substr(0, colon1));
  std::optional<std::string> salt = base64Decode(iterAndSalt.substr(colon1 + 1));
  if (!iterations || !salt || salt->empty()) return std::nullopt;
  secret.iterations = *iterations;
  secret.salt = std::move(*salt);
  if (!decodeKey(keys.substr(0, colon2), secret.storedKey) ||
      !decodeKey(keys.substr(colon2 + 1), secret.serverKey)) {
    return std::nullopt;
  }
  return secret;
}

std::string formatScramSecret(const ScramSecret& secret) {
  std::string out(kSecretPrefix);
  out += std::to_string(secret.iterations);
  out += ':';
  out += base64Encode(bytesOf(secret.salt));
  out += '$';
  out += base64Encode(bytesOf(secret.storedKey));
  out += ':';
  out += base64Encode(bytesOf(secret.serverKey));
  return out;
}

ScramSecret makeScramSecret(std::string_view password, std::string_view rawSalt, int iterations) {
  ScramSecret secret;
  secret.iterations = std::max(iterations, 1);
  secret.salt = std::string(rawSalt);
  ScramKey clientKey{};
  // On a crypto failure the keys stay zero: no ClientKey hashes to a zero StoredKey, so such a
  // secret can never be logged in to.
  if (saltPassword(password, rawSalt, secret.iterations, clientKey, secret.serverKey)) {
    sha256(clientKey, secret.storedKey);
  }
  OPENSSL_cleanse(clientKey.data(), clientKey.size());
  return secret;
}

ScramSecret mockScramSecret(std::string_view user, std::string_view seed) {
  ScramSecret secret;
  std::string seeded = std::string(seed) + std::string(user);
  ScramKey digest{};
  sha256(std::span(reinterpret_cast<const uint8_t*>(seeded.data()), seeded.size()), digest);
  secret.salt.assign(reinterpret_cast<const char*>(digest.data()), kMockSaltLength);
  // Keys are HMAC outputs, never H(x) for a computable x: a StoredKey of SHA256(known) would let
  // anyone knowing the seed log in as a non-existent user with ClientKey = known.
  std::span<const uint8_t> key(reinterpret_cast<const uint8_t*>(seed.data()), seed.size());
  hmacSha256(key, "pgswitch mock StoredKey " + std::string(user), secret.storedKey);
  hmacSha256(key, "pgswitch mock ServerKey " + std::string(user), secret.serverKey);
  return secret;
}

// --- randomness and base64 ------------------------------------------------------------------

bool randomBytes(std::span<std::byte> out) {
  // Small requests (a login's nonce, a cancel key, an MD5 salt) come from a per-thread
  // buffer filled 4 KiB at a time: a RAND_bytes call costs ~7 µs here, most of it fixed
  // (locks, and a getpid for OpenSSL's fork check) (issue 14). Bytes handed out are wiped
  // from the buffer.
  constexpr size_t kBuffer = 4096;
  constexpr size_t kFromBuffer = 256;
  struct Buffer {
    std::array<std::byte, kBuffer> bytes;
    size_t left = 0;
    ~Buffer() { OPENSSL_cleanse(bytes.data(), bytes.size()); }
  };
  thread_local Buffer buf;
  if (out.size() <= kFromBuffer) {
    if (buf.left < out.size()) {
      if (RAND_bytes(reinterpret_cast<unsigned char*>(buf.bytes.data()), kBuffer) != 1) return false;
      buf.left = kBuffer;
    }
    std::byte* from = buf.bytes.data() + (kBuffer - buf.left);
    std::copy(from, from + out.size(), out.begin());
    OPENSSL_cleanse(from, out.size());
    buf.left -= out.size();
    return true;
  }
  constexpr size_t kChunk = INT_MAX;
  for (size_t done = 0; done < out.size(); done += kChunk) {
    size_t n = std::min(kChunk, out.size() - done);
    if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data() + done), static_cast<int>(n)) != 1) {
      return false;
    }
  }
  return true;
}

std::string makeNonce() {
  std::array<std::byte, kNonceBytes> raw{};
  if (!randomBytes(raw)) return {};
  return base64Encode(raw);
}

std::string base64Encode(std::span<const std::byte> bytes) {
  std::string out;
  out.reserve(base64Length(bytes.size()) + 1);
  appendBase64(out, bytes);
  return out;
}

std::optional<std::string> base64Decode(std::string_view text) {
  std::optional<size_t> padding = base64Padding(text);
  if (!padding) return std::nullopt;
  constexpr size_t kChunk = 4u << 20;  // a multiple of 4: only the last chunk has padding
  std::string out(text.size() / 4 * 3, '\0');
  for (size_t done = 0; done < text.size(); done += kChunk) {
    size_t n = std::min(kChunk, text.size() - done);
    int len = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data() + done / 4 * 3),
                              uchars(text.substr(done, n)), static_cast<int>(n));
    if (len < 0 || static_cast<size_t>(len) != n / 4 * 3) return std::nullopt;
  }
  out.resize(out.size() - *padding);
  return out;
}

// --- server ---------------------------------------------------------------------------------

ScramServer::ScramServer(ScramSecret secret, std::string serverNonce)
    : secret_(std::move(secret)), serverNonce_(std::move(serverNonce)) {}

Result<std::string, AuthError> ScramServer::fail(AuthError reason) {
  state_ = State::Failed;
  clientKey_.fill(0);
  return Err{std::move(reason)};
}

Result<std::string, AuthError> ScramServer::handleClientFirst(std::string_view msg,
                                                              bool plusSelected) {
  if (state_ != State::ExpectClientFirst) return fail("unexpected SCRAM client-first-message");
  if (serverNonce_.empty() || !isPrintable(serverNonce_)) return fail("no usable server nonce");
  if (msg.empty()) return fail("malformed SCRAM message: empty client-first-message");
  if (hasNul(msg)) return fail("malformed SCRAM message: NUL byte in client-first-message");

  // gs2-header = gs2-cbind-flag "," [authzid] ","
  size_t comma1 = msg.find(',');
  if (comma1 == std::string_view::npos) return fail("malformed SCRAM message: no gs2 header");
  std::string_view cbindFlag = msg.substr(0, comma1);
  if (plusSelected && cbindData_.empty()) {
    return fail("SCRAM-SHA-256-PLUS was selected but channel binding was not offered");
  }
  // The checks PostgreSQL makes (read_client_first_message): the flag must agree with the
  // mechanism the client chose, and "y" on a connection that can bind is a downgrade.
  if (cbindFlag.starts_with("p=")) {
    if (cbindData_.empty()) {
      return fail("channel binding is not supported (SCRAM-SHA-256-PLUS was not offered)");
    }
    if (!plusSelected) {
      return fail(
          "malformed SCRAM message: the client selected SCRAM-SHA-256 without channel "
          "binding, but the SCRAM message includes channel binding data");
    }
    if (cbindFlag.substr(2) != kTlsServerEndPoint) {
      return fail("unsupported SCRAM channel-binding type \"" + std::string(cbindFlag.substr(2)) +
                  "\"");
    }
    bound_ = true;
  } else if (cbindFlag == "n" || cbindFlag == "y") {
    if (plusSelected) {
      return fail(
          "malformed SCRAM message: the client selected SCRAM-SHA-256-PLUS, but the "
          "SCRAM message does not include channel binding data");
    }
    if (cbindFlag == "y" && !cbindData_.empty()) {
      return fail(
          "SCRAM channel binding negotiation error: the client supports channel binding "
          "but thinks the server does not, while this server does");
    }
  } else {
    return fail("malformed SCRAM message: bad channel binding flag");
  }
  size_t comma2 = msg.find(',', comma1 + 1);
  if (comma2 == std::string_view::npos) return fail("malformed SCRAM message: no gs2 header");
  std::string_view authzid = msg.substr(comma1 + 1, comma2 - comma1 - 1);
  if (!authzid.empty()) {
    return fail(authzid.starts_with("a=") ? "SCRAM authorization identity is not supported"
                                          : "malformed SCRAM message: bad authzid");
  }
  std::string_view bare = msg.substr(comma2 + 1);

  // client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
  AttributeReader parts(bare);
  std::string_view username = *parts.next();
  if (attribute(username, 'm')) return fail("SCRAM mandatory extensions are not supported");
  if (!attribute(username, 'n')) return fail("malformed SCRAM message: expected username (n=)");
  std::optional<std::string_view> noncePart = parts.next();
  if (!noncePart) return fail("malformed SCRAM message: expected nonce (r=)");
  std::optional<std::string_view> clientNonce = attribute(*noncePart, 'r');
  if (!clientNonce) return fail("malformed SCRAM message: expected nonce (r=)");
  if (clientNonce->empty() || !isPrintable(*clientNonce)) {
    return fail("malformed SCRAM message: bad client nonce");
  }
  while (std::optional<std::string_view> part = parts.next()) {
    if (!isExtension(*part)) return fail("malformed SCRAM message: bad attribute");
  }

  // The AuthMessage is built in one string, sized for the client-final part still to come:
  // client-first-message-bare "," server-first-message "," client-final-without-proof.
  gs2Header_ = std::string(msg.substr(0, comma2 + 1));
  nonceLength_ = clientNonce->size() + serverNonce_.size();
  authMessage_.clear();
  authMessage_.reserve(bare.size() + 2 * nonceLength_ + base64Length(secret_.salt.size()) +
                       base64Length(gs2Header_.size() + cbindData_.size()) + 64);
  authMessage_ += bare;
  authMessage_ += ',';
  serverFirstAt_ = authMessage_.size();
  authMessage_ += "r=";
  authMessage_ += *clientNonce;
  authMessage_ += serverNonce_;
  authMessage_ += ",s=";
  appendBase64(authMessage_, bytesOf(secret_.salt));
  authMessage_ += ",i=";
  char digits[16];
  authMessage_.append(digits, std::to_chars(digits, digits + sizeof digits, secret_.iterations).ptr);
  state_ = State::ExpectClientFinal;
  return std::string(std::string_view(authMessage_).substr(serverFirstAt_));
}

Result<std::string, AuthError> ScramServer::handleClientFinal(std::string_view msg) {
  if (state_ != State::ExpectClientFinal) return fail("unexpected SCRAM client-final-message");
  if (msg.empty()) return fail("malformed SCRAM message: empty client-final-message");
  if (hasNul(msg)) return fail("malformed SCRAM message: NUL byte in client-final-message");

  // client-final-message = channel-binding "," nonce ["," extensions] "," proof
  AttributeReader parts(msg);
  std::optional<std::string_view> binding = attribute(*parts.next(), 'c');
  if (!binding) return fail("malformed SCRAM message: expected channel binding (c=)");
  std::optional<std::string> bindingRaw = base64Decode(*binding);
  if (!bindingRaw) return fail("malformed SCRAM message: bad channel binding encoding");
  // Bound: c= carries the gs2 header and the hash of our certificate as the client saw it; a
  // man in the middle with another certificate cannot produce it.
  std::string_view cbind = bound_ ? std::string_view(cbindData_) : std::string_view();
  if (bindingRaw->size() != gs2Header_.size() + cbind.size() ||
      (CRYPTO_memcmp(bindingRaw->data(), gs2Header_.data(), gs2Header_.size()) |
       CRYPTO_memcmp(bindingRaw->data() + gs2Header_.size(), cbind.data(), cbind.size())) != 0) {
    return fail(bound_ ? "SCRAM channel binding check failed"
                       : "SCRAM channel binding check failed: c= does not match the gs2 header");
  }
  std::optional<std::string_view> noncePart = parts.next();
  if (!noncePart || !parts.more()) return fail("malformed SCRAM message: expected nonce and proof");
  std::optional<std::string_view> nonce = attribute(*noncePart, 'r');
  if (!nonce) return fail("malformed SCRAM message: expected nonce (r=)");
  if (*nonce != std::string_view(authMessage_).substr(serverFirstAt_ + 2, nonceLength_))
    return fail("SCRAM nonce mismatch");
  // What follows the nonce: extensions, then the proof after the last ','.
  std::string_view rest = parts.rest();
  size_t lastComma = rest.rfind(',');
  std::string_view last = lastComma == std::string_view::npos ? rest : rest.substr(lastComma + 1);
  if (lastComma != std::string_view::npos) {
    AttributeReader extensions(rest.substr(0, lastComma));
    while (std::optional<std::string_view> part = extensions.next()) {
      if (!isExtension(*part)) return fail("malformed SCRAM message: bad attribute");
    }
  }
  std::optional<std::string_view> proofText = attribute(last, 'p');
  if (!proofText) return fail("malformed SCRAM message: expected proof (p=) last");
  ScramKey proof{};
  if (!decodeKey(*proofText, proof)) return fail("malformed SCRAM message: bad proof encoding");

  authMessage_ += ',';
  authMessage_ += msg.substr(0, msg.size() - last.size() - 1);  // without the proof
  ScramKey clientSignature{}, storedKey{}, serverSignature{};
  if (!hmacSha256(secret_.storedKey, authMessage_, clientSignature)) return fail("crypto failure");
  ScramKey clientKey = xorKeys(proof, clientSignature);
  if (!sha256(clientKey, storedKey)) return fail("crypto failure");
  if (!keysEqual(storedKey, secret_.storedKey)) return fail("SCRAM proof verification failed");
  if (!hmacSha256(secret_.serverKey, authMessage_, serverSignature)) return fail("crypto failure");

  clientKey_ = clientKey;
  state_ = State::Succeeded;
  std::string serverFinal = "v=";
  serverFinal.reserve(2 + base64Length(serverSignature.size()) + 1);
  appendBase64(serverFinal, bytesOf(serverSignature));
  return serverFinal;
}

// --- client ---------------------------------------------------------------------------------

ScramClient ScramClient::withPassword(std::string password, std::string clientNonce) {
  ScramClient c(std::move(clientNonce));
  c.password_ = std::move(password);
  return c;
}

ScramClient ScramClient::withKeys(ScramKey clientKey, ScramSecret secret, std::string clientNonce) {
  ScramClient c(std::move(clientNonce));
  c.clientKey_ = clientKey;
  c.secret_ = std::move(secret);
  return c;
}

template <class T>
Result<T, AuthError> ScramClient::fail(AuthError reason) {
  state_ = State::Failed;
  return Err{std::move(reason)};
}

std::string ScramClient::clientFirst() {
  clientFirstBare_ = "n=,r=" + clientNonce_;
  if (state_ == State::Initial) state_ = State::SentClientFirst;
  return "n,," + clientFirstBare_;
}

Result<std::string, AuthError> ScramClient::handleServerFirst(std::string_view msg) {
  using R = std::string;
  if (state_ != State::SentClientFirst) return fail<R>("unexpected SCRAM server-first-message");
  if (clientNonce_.empty() || !isPrintable(clientNonce_)) return fail<R>("no usable client nonce");
  if (hasNul(msg)) return fail<R>("malformed SCRAM message: NUL byte in server-first-message");

  // server-first-message = [reserved-mext ","] nonce "," salt "," iteration-count ["," ext]
  std::vector<std::string_view> parts = splitAttributes(msg);
  if (attribute(parts[0], 'm')) return fail<R>("SCRAM mandatory extensions are not supported");
  if (parts.size() < 3) return fail<R>("malformed SCRAM server-first-message");
  std::optional<std::string_view> nonce = attribute(parts[0], 'r');
  std::optional<std::string_view> saltText = attribute(parts[1], 's');
  std::optional<std::string_view> iterText = attribute(parts[2], 'i');
  if (!nonce || !saltText || !iterText) return fail<R>("malformed SCRAM server-first-message");
  if (!nonce->starts_with(clientNonce_) || nonce->size() == clientNonce_.size() ||
      !isPrintable(*nonce)) {
    return fail<R>("SCRAM server nonce does not extend the client nonce");
  }
  std::optional<std::string> salt = base64Decode(*saltText);
  if (!salt || salt->empty()) return fail<R>("malformed SCRAM server-first-message: bad salt");
  std::optional<int> iterations = parseIterations(*iterText);
  if (!iterations) return fail<R>("malformed SCRAM server-first-message: bad iteration count");
  if (password_ && *iterations > kMaxServerScramIterations) {
    return fail<R>("the server asked for " + std::to_string(*iterations) +
                   " SCRAM iterations, more than pgswitch accepts (" +
                   std::to_string(kMaxServerScramIterations) + ")");
  }
  for (size_t i = 3; i < parts.size(); ++i) {
    if (!isExtension(parts[i])) return fail<R>("malformed SCRAM server-first-message");
  }

  ScramKey serverKey{};
  if (password_) {
    if (!saltPassword(*password_, *salt, *iterations, clientKey_, serverKey)) {
      return fail<R>("crypto failure");
    }
  } else {
    if (*salt != secret_->salt || *iterations != secret_->iterations) {
      return fail<R>(
          "the server's SCRAM salt or iteration count differs from the configured secret: "
          "passthrough needs the backend to store the same SCRAM secret");
    }
    serverKey = secret_->serverKey;
  }

  std::string withoutProof = "c=biws,r=" + std::string(*nonce);
  std::string authMessage = clientFirstBare_ + "," + std::string(msg) + "," + withoutProof;
  ScramKey storedKey{}, clientSignature{};
  if (!sha256(clientKey_, storedKey) || !hmacSha256(storedKey, authMessage, clientSignature) ||
      !hmacSha256(serverKey, authMessage, expectedServerSignature_)) {
    return fail<R>("crypto failure");
  }
  ScramKey proof = xorKeys(clientKey_, clientSignature);
  state_ = State::SentClientFinal;
  return withoutProof + ",p=" + base64Encode(bytesOf(proof));
}

Result<bool, AuthError> ScramClient::handleServerFinal(std::string_view msg) {
  if (state_ != State::SentClientFinal) return fail<bool>("unexpected SCRAM server-final-message");
  if (hasNul(msg)) return fail<bool>("malformed SCRAM message: NUL byte in server-final-message");
  // server-final-message = (server-error / verifier) ["," extensions]
  std::vector<std::string_view> parts = splitAttributes(msg);
  if (std::optional<std::string_view> error = attribute(parts[0], 'e')) {
    return fail<bool>("server reported SCRAM error: " + std::string(*error));
  }
  std::optional<std::string_view> verifier = attribute(parts[0], 'v');
  if (!verifier) return fail<bool>("malformed SCRAM server-final-message");
  for (size_t i = 1; i < parts.size(); ++i) {
    if (!isExtension(parts[i])) return fail<bool>("malformed SCRAM server-final-message");
  }
  ScramKey signature{};
  if (!decodeKey(*verifier, signature)) {
    return fail<bool>("malformed SCRAM server-final-message: bad signature encoding");
  }
  if (!keysEqual(signature, expectedServerSignature_)) {
    return fail<bool>("SCRAM server signature mismatch: the server does not know the secret");
  }
  state_ = State::Done;
  return true;
}

}  // namespace pgswitch::protocol
