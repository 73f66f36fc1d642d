// ClientSession: one application connection, from its startup packet to its close. Keeps
// the state machine (client_state.h) and owns the parts that do the work: Login (startup and
// authentication), SessionState (settings, pinning), RequestRoute (where the next request
// goes), Relay (bytes both ways, with the ServerExchange and StatementMap inside) and, for the
// admin database, a ConsoleSession; client_login.cc drives the login, client_access.cc decides
// who may log in. It links and releases the server connection and decides what a client sees
// when that connection fails. In session mode the server stays linked until the client
// leaves; the pool decides what happens to it then. With session_reads (session mode)
// requests are routed as in transaction mode, and the client's own primary server is kept
// (parked) while a read runs on a replica (session_reads.cc).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "proxy/admin/console_session.h"
#include "proxy/core/client_handle.h"
#include "proxy/core/conn.h"
#include "proxy/core/pool.h"
#include "proxy/core/server_conn.h"
#include "proxy/core/worker.h"
#include "proxy/session/client_state.h"
#include "proxy/session/login.h"
#include "proxy/session/relay.h"
#include "proxy/session/request_route.h"
#include "proxy/session/session_state.h"

namespace pgswitch::proxy {

class ClientSession final : public Conn::Owner,
                            public ServerUser,
                            public PoolWaiter,
                            public ConsoleHost,
                            public ClientHandle {
 public:
  using State = ClientState;

  // The worker's SessionFactory: a session for the next connection on `listener`.
  static void accept(Worker& w, int fd);
  ClientSession(Worker& w, std::shared_ptr<const Config> cfg);
  ~ClientSession() override;

  // ClientHandle
  void janitor(uint64_t nowMs) override;
  void retryHold() override;
  void replicaWaitCheck(uint64_t nowMs) override;
  void terminate(std::string_view sqlstate, std::string_view message) override;
  void abort() override;
  bool quiescent() const override;
  ClientInfo info(uint64_t nowMs) const override;
  // Conn::Owner (the client's socket)
  void onConnRead(Conn& c) noexcept override;
  void onConnError(Conn& c, int status) noexcept override;
  void onConnDrained(Conn& c) noexcept override;
  void onConnClosed(Conn& c) noexcept override;
  // ServerUser (the linked server connection)
  void onServerRead(ServerConn& s) noexcept override;
  void onServerDrained(ServerConn& s) noexcept override;
  void onServerLost(ServerConn& s, int status) noexcept override;
  void onInternalDone(ServerConn& s, bool ok, const std::string& error) noexcept override;
  // PoolWaiter
  void onServerAssigned(ServerConn& s) noexcept override;
  void onServerUnavailable(const PoolError& e) noexcept override;
  // ConsoleHost
  void consoleEnd(std::string_view sqlstate, std::string_view message) override;

 private:
  // Checks the edge, runs the leave and enter actions (leaving Queued cancels the pool wait,
  // Holding registers with the worker, entering Closing releases everything).
  void transitionTo(State next);
  void onLogin();
  void continueLogin(Login::Outcome o, std::string& out);  // sends `out`, acts on `o`
  // [auth]: the user has no [[user]] entry and auth.query may know its password.
  bool needsSecretLookup() const;
  std::string& loginOut();  // the worker's scratch for a login's answers, emptied
  void lookUpSecret();
  void onSecret(const health::SecretAnswer& a);  // on this worker's thread
  // client_access.cc. After the startup packet: what hba_file says for `user` (its
  // [[user]] entry, or what auth.query found; null: unknown) — false: refused, the session
  // is ending; `method` is set when it decides the authentication method.
  bool checkAccess(std::optional<AuthMethod>& method, const UserConfig* user);
  // Database "pgswitch": admin_users act, stats_users only look (false: refused, ending).
  bool admitToConsole();
  // The log line of a refused login; `reason` must not hold a secret.
  void loginFailed(std::string_view reason);
  // After 'S' went out, or (direct) with the ClientHello already read; false: the session is
  // ending.
  bool startTls(bool direct);
  void requestServer();
  void configure();  // Configure: SET what differs, then (first time) finish the login
  void startRelaying(ServerConn& s);          // Active: the request goes to the server
  void queueFor(int backend);       // asks the pool of the backend picked for a server
  void awaitReplica(int backend);   // a read waits for the replica to replay its floor
  void watchReplicasReach(uint64_t lsn);  // a commit moved the floor: ask the replicas now
  void pump();       // client input in Idle and Active
  // Tells the cancel slot whether a request is in flight (cancels of idle clients are
  // dropped).
  void noteInFlight();
  bool onRelayEvent(const Relay::Event& ev);  // false: the relay must stop
  void afterTransaction();                    // transaction mode: read back, commit LSN, or release
  void releaseServer(bool reusable = true);
  // session_reads (session_reads.cc). parkPrimary: releaseServer keeps the client's primary
  // server instead of giving it back (true: kept). takeParked: the parked server, when the
  // request goes to its pool; a request for another primary (failover) releases it.
  bool parkPrimary(ServerConn& s, bool clean);
  ServerConn* takeParked(Pool& to, bool forPrimary);
  void releaseParked();
  bool parkedLost(ServerConn& s);  // onServerLost of the parked server: true when it was
  void noteSessionReadsFallback();  // the session got pinned: only the primary from now on
  // Transaction replay (failover_replay.cc). lostServerTo: the server was lost (already
  // unlinked) and the session is not ending; true when a replay of the transaction starts or
  // goes on (the request is routed to the primary). replayAnswered: after server bytes went to
  // the client; false when the replay ended with the client's error (the server is gone).
  // giveUpReplay: the error the client would have got when the server was lost, and on.
  enum class ReplayEnd { Mismatch, Abandoned };
  bool replayLost(bool replayable, bool owed, bool ended, bool commitInFlight, bool autocommit);
  bool replayAnswered();
  void giveUpReplay(ReplayEnd why, std::string_view reason);
  // session_rebuild.cc. The server was lost: whether the session can go to another server,
  // and (true) getting ready to rebuild its journal there. rebuildStep: the next step of
  // that rebuild on the linked server (true: one runs; configure() comes back when done).
  bool prepareRebuild();
  // Idle after the server was lost: the next request (or, for a listening client, at once)
  // goes to a new server.
  void idleAfterLoss();
  bool rebuildStep(ServerConn& s);
  // Session mode: a SET of an unreported parameter is read back after its transaction, so
  // that it can be carried to a new server after a failover (true: the read-back runs).
  bool readBackSetting(ServerConn& s);
  void countSessionRead();          // a request of this session runs on a replica
  void fatal(std::string_view sqlstate, std::string_view message, std::string_view detail = {},
             std::string_view hint = {});
  void end(bool afterFlush);     // the one way out: Closing, then the socket closes
  // Closed for stopping mid-message (client_stall_timeout_ms); its server is discarded.
  void stalled(uint64_t forMs);

  static constexpr uint64_t kShrinkIdleAfterMs = 2000;  // see janitor()

  // First: four bytes fit in the tail of ClientHandle's part (issue 14).
  const bool transactionPooling_;  // requests routed one by one (also session_reads)
  const bool sessionReads_;        // session mode with routing.session_reads
  bool lookedUp_ = false;          // logged in with what auth.query found (Worker::lookedUpUser)
  bool counted_ = false;           // in Runtime::clients
  Worker& worker_;
  std::shared_ptr<const Config> cfg_;
  // The small fields side by side (issue 14: padding is paid once per client).
  bool loggedIn_ = false;          // the client got its first ReadyForQuery
  bool lostTxnPending_ = false;    // its transaction died while idle: fail the next request
  ConsoleRole consoleRole_ = ConsoleRole::Admin;
  bool fallbackNoted_ = false;     // session_reads: counted in session_reads_fallbacks
  bool inFlightShown_ = false;     // what the cancel slot was last told
  bool onReplica_ = false;         // the server picked last is a replica
  bool rerouteNext_ = false;  // pgswitch closed a Flush-ended batch: route the next request
  std::optional<bool> countAs_;     // the request is to be counted as a write (or a read)
  State state_ = State::Startup;
  // What OwnQuery runs: the commit's LSN, a SET's read-back, or a replica's replay position.
  enum class Own : uint8_t { CommitLsn, Readback } own_ = Own::CommitLsn;
  ServerConn* parked_ = nullptr;   // session_reads: the client's primary server, not linked
  Conn client_;  // the socket: closed before the session is retired (onConnClosed)
  uint64_t startedMs_ = 0;
  uint64_t lastActivityMs_ = 0;  // last bytes from the client
  uint64_t holdSinceMs_ = 0;     // entered Holding

  // What only logging in needs: the exchange (startup packet, SCRAM, TLS answers) and what
  // the session decides around it. Freed once the client is authenticated (issue 14: ~650
  // bytes an idle client does not need); what outlives it is below.
  struct LoggingIn {
    Login login;
    std::shared_ptr<const TlsContexts> tls;  // as loaded when the client connected
    std::shared_ptr<int> secretToken;     // a password lookup is in flight (its answer checks it)
    std::optional<AuthMethod> hbaMethod;  // the method hba_file's line gives, if any
    // Found by auth.query (Login points into it); the worker keeps it once authenticated.
    std::shared_ptr<const UserConfig> lookedUpUser;
  };
  std::unique_ptr<LoggingIn> login_ = std::make_unique<LoggingIn>();
  // Who the client is (its startup packet's user and database, the worker's shared copy
  // from StartupDone on). The SCRAM ClientKey it proved goes to the worker
  // (Worker::noteClientKey).
  std::shared_ptr<const ClientNames> names_;
  const std::string& user() const;
  const std::string& database() const;
  SessionState settings_;
  RequestRoute route_;
  Relay relay_;
  std::unique_ptr<ConsoleSession> console_;
  Pool* pool_ = nullptr;  // of the linked server, or the one being waited on
  int outstandingBackend_ = -1;  // counted in Worker::outstanding while a server is linked
  int awaitBackend_ = -1;           // AwaitReplica: the replica the read waits for
  uint64_t awaitUntilMs_ = 0;       // ... until then (health::ReplayWatcher::nowMs())

  int32_t cancelPid_ = 0, cancelKey_ = 0;   // what the client got in BackendKeyData
  CancelSlot cancelSlot_;  // where a cancel for this client goes (registered once cancelPid_)
  // What only a session whose server was lost uses. Made at the loss, given back by the idle
  // shrink once nothing in it is pending (issue 14: ~50 bytes no other session carries).
  struct AfterLoss {
    std::string serverFatal;  // the FATAL the lost server sent, for the client's error
    // A replay runs: what the client was owed when the server was lost (an answer; the
    // request had ended), and since when (janitor: failover_wait_ms).
    bool replayOwed = false, replayEnded = false;
    int replayReadyOwed = 0;
    uint64_t replayStartMs = 0;
    // The journal's state is being rebuilt on the new server (configure()): the index of the
    // next step, and whether the internal query running is one.
    bool rebuildPending = false;
    bool rebuildStepRunning = false;
    uint32_t rebuildNext = 0;
  };
  std::unique_ptr<AfterLoss> afterLoss_;
  AfterLoss& afterLoss();  // made on first use
};

}  // namespace pgswitch::proxy
