// Login: the client's side of logging in, as a state machine over bytes: the startup packet
// (SSL/GSS negotiation, cancel requests, protocol version, "options"), then SCRAM-SHA-256,
// md5 or trust against pgswitch's user list. Unknown users go through the same exchange as
// known ones with a mock secret, so the answer never reveals whether a user exists (as
// PostgreSQL does). With TLS it answers SSLRequest 'S', refuses plaintext logins when TLS is
// required and offers SCRAM-SHA-256-PLUS on encrypted connections; the caller runs the TLS
// handshake itself. Pure: the client's input in, bytes for the client out.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "protocol/buffer.h"
#include "protocol/messages.h"
#include "protocol/scram.h"
#include "proxy/config/config.h"
#include "proxy/session/session_state.h"

namespace pgswitch::proxy {

// What Login knows about encryption: set by the session at accept and after the handshake.
struct LoginTls {
  bool offered = false;   // answer SSLRequest 'S' (client_tls allow/require with a cert)
  bool required = false;  // a plaintext startup packet gets FATAL 28000
  bool active = false;    // the connection is encrypted now
  std::string cbindData;  // active: tls-server-end-point data, "" = no SCRAM-SHA-256-PLUS
  std::string peerHost;   // for the 28000 message, as PostgreSQL names the host
};

class Login {
 public:
  enum class Step {
    NeedMore,       // wait for more bytes (what `out` holds goes to the client first)
    StartupDone,    // startup packet accepted: the caller admits the client, then begin()s
    Authenticated,  // the client proved who it is
    Cancel,         // a CancelRequest: cancelPid/cancelKey; the connection then closes
    Close,          // close quietly (bad startup length, Terminate during login)
    StartTls,       // write `out` ('S'), then start the TLS handshake and feed again
    DirectTls,      // the client began with a TLS ClientHello (no SSLRequest): start TLS
                    // with the bytes already read, then feed again
    Fatal,          // FATAL with sqlstate/message/detail/hint, then close
    AuthFailed,     // wrong password: FATAL 28P01 (counted by the caller)
  };
  struct Outcome {
    Step step = Step::NeedMore;
    std::string sqlstate, message, detail, hint;
    int32_t cancelPid = 0, cancelKey = 0;
  };

  void setTls(LoginTls t) { tls_ = std::move(t); }
  const LoginTls& tls() const { return tls_; }

  // Reads what it can from `in` and appends its answers to `out`.
  Outcome feed(protocol::ByteQueue& in, const Config& cfg, std::string& out);
  // After StartupDone: the first authentication request (Trust: Authenticated at once).
  // `lookedUp`: the user as auth.query found it, when it has no [[user]] entry (the caller
  // keeps it alive). `method` is what hba_file decided (decideAccess); without it, the
  // user's `auth`.
  Outcome begin(const Config& cfg, std::string& out, const UserConfig* lookedUp = nullptr,
                std::optional<AuthMethod> method = std::nullopt);

  const std::string& user() const { return user_; }
  const std::string& database() const { return database_; }
  // The settings of the startup packet and its "options", for SessionState::start().
  Settings& settings() { return settings_; }
  // The SCRAM ClientKey the client proved (passthrough to backends), if it used SCRAM. After
  // Authenticated the session keeps it and frees the Login (a logged-in client needs nothing
  // else of the exchange).
  std::optional<std::array<uint8_t, 32>> clientKey() const;

 private:
  enum class Phase { Startup, AuthFirst, AuthFinal, Done };
  Outcome startup(std::span<const std::byte> body, std::string& out);
  Outcome encryptionRequest(protocol::StartupKind kind, std::string& out);
  Outcome password(std::span<const std::byte> body, std::string& out);
  // The first n bytes of `in`, consumed, as a span that stays valid until the next call.
  std::span<const std::byte> takeMessage(protocol::ByteQueue& in, size_t n);

  Phase phase_ = Phase::Startup;
  LoginTls tls_;
  std::string user_, database_;
  Settings settings_;
  const UserConfig* userCfg_ = nullptr;  // into the Config the session keeps alive
  AuthMethod method_ = AuthMethod::ScramSha256;  // chosen by begin()
  std::optional<protocol::ScramServer> scram_;
  std::array<std::byte, 4> md5Salt_{};
  std::vector<std::byte> packet_;  // the message being read (takeMessage)
};

}  // namespace pgswitch::proxy
