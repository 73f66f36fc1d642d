// ClientSession: one application connection, from its startup packet to its close. Owns
// the client socket, the login (client_auth.cc), the relay to and from its server
// connection (relay.cc) and its explicit state machine. In session mode the server stays
// linked until the client leaves; the pool decides what happens to it then.
#pragma once

#include <array>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "protocol/scram.h"
#include "proxy/admin/console_session.h"
#include "proxy/core/client_handle.h"
#include "proxy/core/conn.h"
#include "proxy/session/expect_queue.h"
#include "proxy/core/pool.h"
#include "proxy/core/prepared_statements.h"
#include "proxy/core/server_conn.h"
#include "proxy/core/worker.h"
#include "routing/route_policy.h"

namespace pgswitch::proxy {

class ClientSession final : public Conn::Owner,
                            public ServerUser,
                            public PoolWaiter,
                            public ConsoleHost,
                            public ClientHandle {
 public:
  enum class State {
    Startup,      // waiting for StartupMessage (SSLRequest answered on the way)
    Auth,         // authentication exchange with the client
    WaitServer,   // waiting for a server connection (at login, or for the next transaction)
    Configure,    // server linked, applying the client's parameters to it
    Active,       // linked and relaying
    Idle,         // transaction mode: logged in, between transactions, no server linked
    Console,      // the admin console (database "pgswitch"): console_ answers, no server
    Closing,
  };

  ClientSession(Worker& w, std::shared_ptr<const Config> cfg);
  ~ClientSession() override;

  int accept(uv_stream_t* listener);
  void start();
  // Ends the session now (shutdown, admin kill): optional FATAL message first.
  void terminate(std::string_view sqlstate, std::string_view message) override;
  State state() const { return state_; }
  // Closes the socket without a word (accept failed, shutdown grace expired).
  void abort() override;
  // Once a second: client_idle_timeout, idle_transaction_timeout, login timeout, hold.
  void janitor(uint64_t nowMs) override;
  // The topology changed while this session waited for a usable backend.
  void retryHold() override;
  // Observability (session_stats.cc): the SHOW CLIENTS row; whether SHUTDOWN WAIT may end
  // the session now (between transactions, nothing in flight).
  ClientInfo info(uint64_t nowMs) const override;
  bool quiescent() const override;

  // Conn::Owner
  void onConnRead(Conn& c) noexcept override;
  void onConnError(Conn& c, int status) noexcept override;
  void onConnDrained(Conn& c) noexcept override;
  void onConnClosed(Conn& c) noexcept override;
  // ServerUser
  void onServerRead(ServerConn& s) noexcept override;
  void onServerDrained(ServerConn& s) noexcept override;
  void onServerLost(ServerConn& s, int status) noexcept override;
  void onInternalDone(ServerConn& s, bool ok, const std::string& error) noexcept override;
  // ConsoleHost
  void consoleFatal(std::string_view sqlstate, std::string_view message) override {
    fatal(sqlstate, message);
  }
  void consoleEnd(bool afterFlush) override {
    transitionTo(State::Closing);
    if (afterFlush) {
      client_->closeAfterFlush();
    } else {
      client_->close();
    }
  }
  bool consoleOpen() const override { return state_ == State::Console; }
  // PoolWaiter
  void onServerAssigned(ServerConn& s) noexcept override;
  void onServerUnavailable(const PoolError& e) noexcept override;

 private:
  void transitionTo(State next);
  // startup and auth (client_auth.cc)
  void handleStartup();
  bool processStartup(std::span<const std::byte> body);
  void beginAuth();
  void handleAuthMessage();
  void authSucceeded();
  void authFailed();
  void fatal(std::string_view sqlstate, std::string_view message,
             std::string_view detail = {}, std::string_view hint = {});
  void handleCancel(int32_t pid, int32_t key);
  // server assignment and configuration (client_session.cc)
  void requestServer();
  // routing (route_request.cc)
  bool decideRoute();   // false: the request is not complete enough to classify yet
  int chooseBackend();  // -1: nothing usable now (hold); -2: refused (fallback = error)
  void resolveSessionTag();
  std::string_view settingValue(std::string_view name) const;
  bool needCommitLsn() const;
  bool pinnedOnReplica() const;
  // Whether the request at the front of the client's input starts with a statement that
  // writes (1) or not (0), or -1 while its first message is incomplete. Only Query, Parse and
  // Bind of a tracked statement are looked at; anything else counts as not writing.
  int firstStatementWrites();
  void fetchCommitLsn();
  void onCommitLsn();
  void trackOutstanding(int backend);
  bool retryLostRead(int lostBackend);
  void failRequest(std::string_view sqlstate, std::string_view message,
                   std::string_view detail = {});
  void failRequestWith(std::string_view errorResponse);
  void holdForBackend();
  static bool connectionLevelFailure(const std::string& serverError);
  void configureServer();
  void configured();
  void finishLogin();
  void releaseServer();
  void sendChangedParams();
  // admin console (console_session.cc) and per-backend counters (session_stats.cc)
  void startConsole();
  void countIn(size_t bytes);
  void countOut(size_t bytes);
  void countReady(char txnStatus);
  // relay (relay.cc)
  void relayClientToServer();
  void relayServerToClient();
  bool idleBetweenTransactions() const;
  bool answerParseLocally();
  bool answerDeallocateLocally(char txnStatus);
  bool answerTxnEndLocally();
  void maybeReleaseAfterTransaction();
  void protocolDesync(const char* what);
  // extended protocol in transaction mode (relay_extended.cc)
  bool rewriteParse(size_t total);
  bool rewriteBind(size_t total);
  bool rewriteDescribe(size_t total);
  bool rewriteClose(size_t total);
  bool serverHasStatement(uint64_t h);
  void ensureOnServer(const ClientStatement& cs);
  void sendServerParse(uint64_t hash, std::string_view tail, Expect::Kind kind,
                       std::string_view clientName);
  void emitFakes();
  bool popFor(char type);
  void popAfterError(std::string_view sqlstate);
  void onCommandTag(std::string_view tag);

  Worker& worker_;
  std::shared_ptr<const Config> cfg_;
  std::unique_ptr<Conn> client_;
  State state_ = State::Startup;
  uint64_t startedMs_ = 0;
  uint64_t lastActivityMs_ = 0;  // last bytes from the client

  // login
  std::string user_, database_;
  std::vector<std::pair<std::string, std::string>> gucs_;  // from startup packet + options
  uint64_t gucsHash_ = 0;  // of gucs_, 0 = recompute (set to 0 whenever gucs_ changes)
  static uint64_t hashGucs(const std::vector<std::pair<std::string, std::string>>& g);
  const UserConfig* userCfg_ = nullptr;
  std::optional<protocol::ScramServer> scram_;
  int authStep_ = 0;
  std::array<std::byte, 4> md5Salt_{};
  int32_t cancelPid_ = 0, cancelKey_ = 0;
  std::shared_ptr<CancelSlot> cancelSlot_;  // where a cancel for this client goes
  // The settings of the startup packet: DISCARD ALL returns the session to these.
  std::vector<std::pair<std::string, std::string>> startupGucs_;
  bool counted_ = false;

  // server side
  Pool* pool_ = nullptr;
  ServerConn* server_ = nullptr;
  bool waiting_ = false;
  bool holding_ = false;  // no usable backend: waiting for the topology to change
  uint64_t holdSinceMs_ = 0;
  bool swallowUntilSync_ = false;  // a failed request: drop its messages up to Sync/Query
  bool commitInFlight_ = false;    // a COMMIT was sent and not yet answered
  std::string serverFatal_;        // the FATAL the lost server sent, for the client's error
  bool lostTxnPending_ = false;    // its transaction died while idle: fail the next request
  void appendLostServerError(std::string& out);
  std::map<std::string, std::string> sentParams_;  // ParameterStatus values the client saw
  uint64_t paramsSyncedServer_ = 0, paramsSyncedGen_ = 0;  // sentParams_ checked against

  // routing
  routing::RouteRequest route_;  // of the request waiting for a server (tag points below)
  std::string routeTag_;
  std::string sessionTag_;        // from [[routing.rule]]
  bool routedWrite_ = true;       // the current server was chosen for a write
  uint64_t rywLsn_ = 0;           // read-your-writes: primary LSN after this client's commit
  bool lsnPending_ = false;       // the commit-LSN query runs on the server
  uint64_t rywSetMs_ = 0;         // when rywLsn_ became "unknown" (UINT64_MAX)
  static constexpr uint64_t kRywBlindMs = 30000;
  int outstandingBackend_ = -1;   // counted in Worker::outstanding while a server is linked
  std::vector<std::byte> routeScratch_;
  std::vector<std::byte> retryBuf_;  // copy of a lone read Query, for one retry elsewhere
  bool retryable_ = false;          // no answer byte has reached the client yet
  bool retryPending_ = false;       // the next request is a retry (never retried again)
  int avoidBackend_ = -1;
  const char* pinOnServer_ = nullptr;  // the pending request creates session state
  static constexpr size_t kRetryCopyLimit = 64 * 1024;

  bool loggedIn_ = false;
  bool transactionPooling_ = false;

  // relay state
  size_t c2sPassthrough_ = 0;  // bytes of the current client message still to forward
  size_t s2cPassthrough_ = 0;
  ExpectQueue expect_;         // responses the server still owes, in order
  bool discardUntilSync_ = false;  // the server skips messages until Sync after an error
  bool unsynced_ = false;          // extended-protocol messages sent since the last Sync
  bool inCopy_ = false;
  bool pinned_ = false;            // session state on the server: keep it until the end
  std::string pinReason_;
  int setTags_ = 0, reportedChanges_ = 0;  // SET statements vs ParameterStatus since last Z
  int scopedSets_ = 0;                     // of those, SET LOCAL / SET TRANSACTION
  void noteStatementEffects(std::string_view sql);
  static bool mayCreateSessionState(std::string_view sql);  // cheap pre-filter
  // Session SETs of unreported settings (transaction mode): read back, then carried.
  bool carryableSetting(std::string_view name) const;
  void readSettingBack();
  void onSettingRead(bool ok);
  std::vector<std::string> readback_;  // names still to read back on the current server
  int carriedSets_ = 0;                // SET tags expected for them since the last Z
  bool readbackPending_ = false;
  ClientStatements stmts_;
  std::vector<protocol::Slice> slices_;
  std::vector<std::byte> scratch_;
  std::string build_;  // reused buffer for rewritten messages
  std::unique_ptr<ConsoleSession> console_;
  uint64_t reqStartUs_ = 0;  // first request sent since the server was last idle (latency)
};

// Worker's SessionFactory: a ClientSession for a connection on `listener`.
void acceptClientSession(Worker& w, uv_stream_t* listener);

}  // namespace pgswitch::proxy
