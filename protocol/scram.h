// SCRAM-SHA-256 (RFC 5802 / RFC 7677) as PostgreSQL speaks it: pg_authid secrets, the server
// side (pgswitch authenticating a client) and the client side (pgswitch logging in to a backend,
// with a password or with keys recovered from a client's login). Pure: no I/O, no exceptions.
//
// SASLprep limitation: passwords are used as raw bytes. That is exact for ASCII passwords (where
// SASLprep is the identity) and for passwords on which SASLprep fails (PostgreSQL then also uses
// the raw bytes), but a non-ASCII password that SASLprep would normalize gives a different secret
// than PostgreSQL's. Such secrets should be created by PostgreSQL and copied, not made here.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "protocol/result.h"

namespace pgswitch::protocol {

// A human-readable reason. Only proxy/ decides what the peer is told (CONVENTIONS 9).
using AuthError = std::string;

using ScramKey = std::array<uint8_t, 32>;

struct ScramSecret {
  int iterations = 4096;
  std::string salt;  // raw bytes
  ScramKey storedKey{};
  ScramKey serverKey{};
};

// "SCRAM-SHA-256$<iter>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>" as in pg_authid.
// Rejects anything else: iterations must be a decimal integer in [1, INT_MAX], the salt
// non-empty, each key exactly 32 bytes.
std::optional<ScramSecret> parseScramSecret(std::string_view text);
std::string formatScramSecret(const ScramSecret& secret);

// PBKDF2-HMAC-SHA-256 over the password's raw bytes (see the SASLprep note above). CPU-bound for
// large iteration counts: call it at configuration time, not on an event loop. iterations < 1 is
// treated as 1 (and stored so).
ScramSecret makeScramSecret(std::string_view password, std::string_view rawSalt,
                            int iterations = 4096);

// A deterministic fake secret for an unknown user, so that a probe cannot tell an unknown user
// from a wrong password (PostgreSQL's scram_mock_salt): salt = first 16 bytes of
// SHA256(seed || user), 4096 iterations (set .iterations to match the real secrets if they use
// another count). The keys are HMAC outputs nobody knows a SHA-256 preimage of, so no proof can
// ever verify against it. The seed should be a per-process random value.
ScramSecret mockScramSecret(std::string_view user, std::string_view seed);

// SHA-256 and HMAC-SHA256 (false only if OpenSSL fails). The HMAC is written out over
// OpenSSL's digest, which is fetched once (scram.cc says why).
bool sha256(std::span<const uint8_t> data, ScramKey& out);
bool hmacSha256(std::span<const uint8_t> key, std::string_view message, ScramKey& out);

// Cryptographically strong random bytes (RAND_bytes, small requests through a per-thread
// buffer); false if the generator failed.
bool randomBytes(std::span<std::byte> out);
// 18 random bytes in base64: 24 printable characters, never ','. Empty if the generator failed;
// ScramServer and ScramClient refuse to run with an empty nonce.
std::string makeNonce();

std::string base64Encode(std::span<const std::byte> bytes);
// Strict: standard alphabet, length a multiple of 4, '=' padding only at the end, unused bits
// zero, no whitespace.
std::optional<std::string> base64Decode(std::string_view text);

inline constexpr std::string_view kScramSha256 = "SCRAM-SHA-256";
inline constexpr std::string_view kScramSha256Plus = "SCRAM-SHA-256-PLUS";
inline constexpr std::string_view kTlsServerEndPoint = "tls-server-end-point";
// The most PBKDF2 iterations pgswitch runs for a server's SCRAM challenge. PostgreSQL's default
// is 4096; a hostile or misconfigured server asking for 2^31 would hold a worker thread for
// hours, so more than this is refused.
inline constexpr int kMaxServerScramIterations = 1'000'000;

// Server side: pgswitch authenticating a client, as PostgreSQL does it (auth-scram.c).
// Without offerChannelBinding() it accepts gs2 headers "n,," and "y,," and refuses "p=".
// With it (SCRAM-SHA-256-PLUS was offered on a TLS connection), "p=tls-server-end-point" is
// accepted when the client chose the -PLUS mechanism and its c= must carry the gs2 header
// followed by the channel binding data; "y,," is then a downgrade and refused (the client
// thinks the server cannot bind). Authorization identities and mandatory extensions are
// refused. The username in client-first is ignored, as PostgreSQL does (it comes from the
// startup packet). Attribute order is strict. One object per exchange; after any error every
// later call fails too.
class ScramServer {
 public:
  // serverNonce: printable, no ','; appended to the client's nonce (use makeNonce()).
  ScramServer(ScramSecret secret, std::string serverNonce);

  // SCRAM-SHA-256-PLUS was offered; cbindData is the tls-server-end-point data of the TLS
  // connection (tlsServerEndPoint() of the server's certificate). Call before the exchange.
  void offerChannelBinding(std::string cbindData) { cbindData_ = std::move(cbindData); }

  // client-first-message -> server-first-message "r=<nonce>,s=<salt>,i=<iterations>".
  // plusSelected: the client chose SCRAM-SHA-256-PLUS in its SASLInitialResponse (only valid
  // after offerChannelBinding()).
  Result<std::string, AuthError> handleClientFirst(std::string_view clientFirst,
                                                   bool plusSelected = false);
  // True when the exchange uses channel binding (the client sent "p=tls-server-end-point").
  bool channelBound() const { return bound_; }
  // client-final-message -> server-final-message "v=<ServerSignature>". Verifies the proof in
  // constant time; a wrong password is an error.
  Result<std::string, AuthError> handleClientFinal(std::string_view clientFinal);

  // True once handleClientFinal verified the proof.
  bool succeeded() const { return state_ == State::Succeeded; }
  // After a successful handleClientFinal: ClientKey = ClientProof XOR ClientSignature. Lets
  // pgswitch log in to a backend whose SCRAM secret equals this one without knowing the password
  // (PgBouncer does the same). All zeros before success.
  const ScramKey& clientKey() const { return clientKey_; }

 private:
  enum class State { ExpectClientFirst, ExpectClientFinal, Succeeded, Failed };

  Result<std::string, AuthError> fail(AuthError reason);

  State state_ = State::ExpectClientFirst;
  ScramSecret secret_;
  std::string serverNonce_;
  std::string cbindData_;        // non-empty: -PLUS was offered
  bool bound_ = false;           // the client uses channel binding
  std::string gs2Header_;  // client-final's c= must carry this (+ cbindData_ if bound_)
  // client-first-message-bare "," server-first-message, and after the client-final-message
  // "," its part without the proof: the AuthMessage the signatures cover.
  std::string authMessage_;
  size_t serverFirstAt_ = 0;  // where server-first-message starts in authMessage_
  size_t nonceLength_ = 0;    // of client nonce + server nonce, after server-first's "r="
  ScramKey clientKey_{};
};

// Client side: pgswitch logging in to a PostgreSQL server. Sends gs2 header "n,," and an empty
// username (PostgreSQL takes the user from the startup packet).
class ScramClient {
 public:
  static ScramClient withPassword(std::string password, std::string clientNonce);
  // Passthrough: ClientKey recovered from a client's login (ScramServer::clientKey()) plus the
  // secret it was checked against (for ServerKey, salt, iterations). The server's salt and
  // iterations must equal the secret's, else handleServerFirst fails with a clear reason.
  static ScramClient withKeys(ScramKey clientKey, ScramSecret secret, std::string clientNonce);

  // "n,,n=,r=<nonce>".
  std::string clientFirst();
  // server-first-message -> client-final-message "c=biws,r=<nonce>,p=<ClientProof>".
  // With a password this runs PBKDF2 at the server's iteration count (CPU-bound), so more
  // than kMaxServerScramIterations is refused.
  Result<std::string, AuthError> handleServerFirst(std::string_view serverFirst);
  // Verifies the server signature "v=..." in constant time, or reports the server's "e=..." error.
  // Every failure, including a wrong signature, is an error: the value is always true, so
  // checking ok() is enough.
  Result<bool, AuthError> handleServerFinal(std::string_view serverFinal);

 private:
  enum class State { Initial, SentClientFirst, SentClientFinal, Done, Failed };

  explicit ScramClient(std::string clientNonce) : clientNonce_(std::move(clientNonce)) {}
  template <class T>
  Result<T, AuthError> fail(AuthError reason);

  State state_ = State::Initial;
  std::string clientNonce_;
  std::optional<std::string> password_;  // password mode
  std::optional<ScramSecret> secret_;    // keys mode
  ScramKey clientKey_{};
  std::string clientFirstBare_;
  ScramKey expectedServerSignature_{};
};

}  // namespace pgswitch::protocol
