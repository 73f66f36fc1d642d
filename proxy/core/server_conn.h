// ServerConn: pgswitch's connection to one PostgreSQL backend, as a client of it. Owns the
// socket and the login (startup, SCRAM/MD5/password auth), tracks what the server reported
// (ParameterStatus, BackendKeyData, transaction status) and runs internal queries (reset,
// SET of client parameters) whose results are not relayed. While linked to a client
// session, reads are handed to that session's relay.
#pragma once

#include <array>
#include <map>
#include <optional>
#include <string>

#include "protocol/scram.h"
#include "proxy/core/conn.h"
#include "proxy/core/prepared_statements.h"
#include "proxy/core/tls_context.h"
#include "proxy/core/worker.h"

namespace pgswitch::proxy {

class Pool;

struct LoginInfo {
  std::string user;
  std::string database;
  std::string password;  // plaintext, md5 hash or SCRAM secret, as configured
  std::optional<protocol::ScramSecret> scram;
  std::optional<std::array<uint8_t, 32>> clientKey;  // SCRAM passthrough
  std::string host;                                  // as configured: verify-full, SNI
  std::shared_ptr<const TlsContexts> tls;            // server_sslmode and its context
};

// What a linked client session hears from its server.
class ServerUser {
 public:
  virtual void onServerRead(class ServerConn& s) noexcept = 0;
  virtual void onServerDrained(ServerConn& s) noexcept = 0;
  // The connection died while linked (error or EOF). The session must unlink.
  virtual void onServerLost(ServerConn& s, int status) noexcept = 0;
  // An internal query finished: ok, or the ErrorResponse message bytes it produced.
  virtual void onInternalDone(ServerConn& s, bool ok, const std::string& error) noexcept = 0;

 protected:
  ~ServerUser() = default;
};

class ServerConn final : public Conn::Owner, public Retirable {
 public:
  // Tls: SSLRequest sent, waiting for 'S' or 'N' (server_sslmode other than disable).
  enum class State { Connecting, Tls, Login, Idle, Active, Internal, Closing };

  ServerConn(Worker& w, Pool& pool, LoginInfo login, uint64_t id);
  ~ServerConn() override;

  void connect(const sockaddr* addr);
  State state() const { return state_; }
  void setState(State s) { state_ = s; }
  Conn& conn() { return *conn_; }
  Pool& pool() { return pool_; }
  uint64_t id() const { return id_; }

  void link(ServerUser* u) {
    user_ = u;
    state_ = State::Active;
  }
  void unlink() { user_ = nullptr; }
  ServerUser* user() const { return user_; }

  // Sends sql as a simple Query; results are swallowed until ReadyForQuery, then
  // onInternalDone is delivered to the linked user (or the pool when none).
  void runInternal(std::string_view sql);
  // The same with protocol messages built by the caller, ending with Sync (a Parse that
  // rebuilds a prepared statement after a failover).
  void runInternalMessages(std::string_view messages);
  // The server said FATAL (shutdown, crash, terminated backend): treat it as lost now, as a
  // read error would, instead of relaying the FATAL that would end the client's session.
  void abandon(int status);
  // First column of the first row the last internal query returned ("" if none or NULL).
  const std::string& internalValue() const { return internalValue_; }

  const std::map<std::string, std::string>& params() const { return params_; }
  void setParam(std::string_view name, std::string_view value) {
    auto it = params_.find(std::string(name));
    if (it != params_.end() && it->second == value) return;
    params_[std::string(name)] = std::string(value);
    ++paramsGen_;
    paramsDigest_ = toldDigest(params_);
  }
  // Changes whenever params() does: lets a session skip comparing them on every link.
  uint64_t paramsGen() const { return paramsGen_; }
  // toldDigest(params()), kept with them: a session whose client was told the same values
  // compares one number (issue 14: not ~14 string compares per transaction).
  uint64_t paramsDigest() const { return paramsDigest_; }
  int32_t backendPid() const { return pid_; }
  int32_t backendKey() const { return key_; }
  char txnStatus() const { return txnStatus_; }
  void setTxnStatus(char s) { txnStatus_ = s; }
  uint64_t createdMs() const { return createdMs_; }
  uint64_t lastUsedMs() const { return lastUsedMs_; }
  void touch(uint64_t now) { lastUsedMs_ = now; }
  // GUCs set with SET on this connection since its last reset (beyond server defaults).
  // Mutable access forgets which client settings the server was configured for.
  std::map<std::string, std::string>& appliedGucs() {
    configuredHash_ = 0;
    return applied_;
  }
  uint64_t configuredHash() const { return configuredHash_; }
  void setConfiguredHash(uint64_t h) { configuredHash_ = h; }
  ServerStatementCache& statements() { return statements_; }

  void close();

  // Conn::Owner
  void onConnRead(Conn& c) noexcept override;
  void onConnError(Conn& c, int status) noexcept override;
  void onConnConnected(Conn& c, int status) noexcept override;
  void onConnDrained(Conn& c) noexcept override;
  void onConnClosed(Conn& c) noexcept override;

 private:
  void handleLogin();
  void handleTlsAnswer();
  void sendStartup();
  void handleIdle();
  void handleInternal();
  void loginFailed(std::string errorMessage);
  bool handleAuth(std::span<const std::byte> body);

  Worker& worker_;
  Pool& pool_;
  LoginInfo login_;
  uint64_t id_;
  std::unique_ptr<Conn> conn_;
  State state_ = State::Connecting;
  ServerUser* user_ = nullptr;
  std::map<std::string, std::string> params_;
  std::map<std::string, std::string> applied_;
  ServerStatementCache statements_;
  int32_t pid_ = 0, key_ = 0;
  char txnStatus_ = 'I';
  uint64_t createdMs_ = 0, lastUsedMs_ = 0;
  std::optional<protocol::ScramClient> scram_;
  std::string internalError_;
  std::string internalValue_;
  uint64_t configuredHash_ = 0;
  uint64_t paramsDigest_ = toldDigest({});
  uint64_t paramsGen_ = 0;  // ClientSession::hashGucs of the settings applied, 0 = unknown
  std::vector<std::byte> scratch_;
};

}  // namespace pgswitch::proxy
