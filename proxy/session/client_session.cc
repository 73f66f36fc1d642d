// Client session lifecycle: the state machine, login, getting a server from the pool and
// bringing it to the client's settings, relaying, giving it back, and the one way out.
#include "proxy/session/client_session.h"

#include <spdlog/spdlog.h>

#include <cassert>

#include "health/probe_query.h"
#include "protocol/builder.h"
#include "protocol/framing.h"
#include "protocol/messages.h"
#include "proxy/session/session_errors.h"
#include "routing/session_sql.h"

namespace pgswitch::proxy {

using namespace protocol;

namespace {

// More than one backend (whatever their state now): a replica may serve reads, now or once it
// is back, so commits must raise the floor.
bool couldHaveReplicas(const routing::Topology& t) {
  int n = 0;
  for (const auto& b : t.backends) n += b.state != routing::BackendState::Removed;
  return n > 1;
}

}  // namespace

void ClientSession::accept(Worker& w, int fd) {
  auto* c = new ClientSession(w, w.runtime().config());
  // On failure the session's handle is initialised but unused: the close path frees it.
  if (c->client_.adopt(fd) != 0) {
    c->abort();
    return;
  }
  w.addClient(c);
  LoginTls t;
  t.offered = c->login_->tls->clients != nullptr;
  t.required = t.offered && c->login_->tls->clientTls == ClientTls::Require;
  if (t.required) {  // only the refusal names the host
    std::string peer = c->client_.peerName();
    t.peerHost = peer.substr(0, peer.rfind(':'));
  }
  c->login_->login.setTls(std::move(t));
  c->client_.startReading();
}

ClientSession::ClientSession(Worker& w, std::shared_ptr<const Config> cfg)
    : transactionPooling_(cfg->routesRequests()),
      sessionReads_(cfg->sessionReads()),
      worker_(w),
      cfg_(std::move(cfg)),
      client_(w, this),
      startedMs_(w.nowMs()),
      relay_(w, *cfg_, client_, settings_) {
  login_->tls = w.runtime().tls();
  ++w.runtime().loginClients;  // until the state leaves Startup/Auth (transitionTo)
}

namespace {
const std::string kNoName;  // before the startup packet named them
}  // namespace

const std::string& ClientSession::user() const { return names_ ? names_->user : kNoName; }
const std::string& ClientSession::database() const {
  return names_ ? names_->database : kNoName;
}

ClientSession::AfterLoss& ClientSession::afterLoss() {
  if (!afterLoss_) afterLoss_ = std::make_unique<AfterLoss>();
  return *afterLoss_;
}

ClientSession::~ClientSession() {
  if (cancelPid_) worker_.runtime().cancels().remove(cancelPid_, cancelKey_);
  if (counted_) --worker_.runtime().clients;
}

void ClientSession::transitionTo(State next) {
  if (next == state_) return;
  if (!legalTransition(state_, next)) {
    // A bug, not bad input. Release builds refuse the edge: a session already Closing (its
    // client vanished during a write a moment ago) must not come back to life.
    spdlog::error("client session: illegal transition {} -> {}", toString(state_), toString(next));
    assert(!"illegal client session transition");
    return;
  }
  if (loggingIn(state_) && !loggingIn(next)) --worker_.runtime().loginClients;
  switch (state_) {  // leave
    case State::Queued:
      if (pool_) pool_->cancelWait(this);  // nothing to cancel once assigned
      break;
    case State::Holding:
      worker_.removeHolding(this);
      break;
    case State::AwaitReplica:
      worker_.removeReplicaWaiter(this);
      break;
    default:
      break;
  }
  state_ = next;
  switch (next) {  // enter
    case State::Holding:
      holdSinceMs_ = worker_.nowMs();
      worker_.addHolding(this);
      break;
    case State::AwaitReplica:
      worker_.addReplicaWaiter(this, awaitUntilMs_);
      break;
    case State::Idle:
      client_.startReading();
      break;
    case State::Closing:
      releaseServer();
      if (console_) console_->detach();
      break;
    default:
      break;
  }
}

void ClientSession::end(bool afterFlush) {
  if (state_ != State::Closing) transitionTo(State::Closing);
  if (afterFlush) {
    client_.closeAfterFlush();
  } else {
    client_.close();
  }
}

void ClientSession::fatal(std::string_view sqlstate, std::string_view message,
                          std::string_view detail, std::string_view hint) {
  if (state_ == State::Closing) return;
  std::string out;
  appendError(out, ErrorSpec{"FATAL", sqlstate, message, detail, hint});
  client_.send(out);
  end(true);
}

void ClientSession::consoleEnd(std::string_view sqlstate, std::string_view message) {
  if (sqlstate.empty()) {
    end(true);
  } else {
    fatal(sqlstate, message);
  }
}

// Hold, don't fail: during a failover there is briefly no primary (or the one the topology
// names is already gone). The session waits, up to failover_wait_ms, and tries again when the
// health thread publishes a new topology and once a second. PAUSE holds new requests the
// same way, without the deadline.
void ClientSession::requestServer() {
  bool paused = worker_.runtime().pause.paused(database());
  routing::RoutePick pick;
  bool verify = false;
  if (!paused) {
    const routing::Topology& topo = worker_.topology();
    pick = route_.pick(topo, *cfg_, worker_.runtime().replay, worker_.outstanding(),
                       worker_.random());
    onReplica_ = pick.index >= 0 && pick.index < static_cast<int>(topo.backends.size()) &&
                 topo.backends[pick.index].role == routing::Role::Replica;
    verify = pick.verify && onReplica_ && loggedIn_;
  }
  if (paused || pick.outcome == routing::RoutePick::Outcome::Hold) {
    spdlog::debug("client {}: no usable backend, holding", cancelPid_);
    transitionTo(State::Holding);
    worker_.addHolding(this);  // again: a topology change empties the worker's list
    return;
  }
  if (pick.outcome == routing::RoutePick::Outcome::Refuse) {
    relay_.failRequest(errorResponse(
        "57P03", "no replica can serve this read",
        "routing.fallback = \"error\" and no replica is up, within the lag limits and "
        "carrying the requested tag"));
    bool fromIdle = state_ == State::Idle;  // pump() goes on with the next request itself
    transitionTo(State::Idle);
    if (!fromIdle) pump();  // requests pipelined behind the refused one
    return;
  }
  if (verify) {
    awaitReplica(pick.index);
    return;
  }
  // (After a wait the read was counted in replica_wait_fallbacks.)
  if (pick.fellBack && state_ != State::AwaitReplica) ++worker_.runtime().readsOnPrimary;
  queueFor(pick.index);
}

// Asks the pool of `backend` for a server (it may hand one over at once).
void ClientSession::queueFor(int backend) {
  countAs_ = route_.forWrite();  // counted once the request goes (startRelaying)
  pool_ = &worker_.pool(backend, database(), user());
  if (lookedUp_) pool_->setLookedUpUser(worker_.lookedUpUser(user()));
  // Reading goes on: usually a server is free right away, and toggling epoll interest twice
  // per transaction costs more than the rare read that arrives while we wait (onConnRead
  // stops reading then).
  transitionTo(State::Queued);
  if (ServerConn* s = sessionReads_ ? takeParked(*pool_, !onReplica_) : nullptr) {
    onServerAssigned(*s);
    return;
  }
  if (ServerConn* s = pool_->acquire(this)) onServerAssigned(*s);
}

void ClientSession::retryHold() {
  if (state_ == State::Holding) requestServer();
}

void ClientSession::onServerAssigned(ServerConn& s) noexcept {
  if (state_ == State::Closing) {
    pool_->release(s, s.txnStatus() == 'I', false);
    return;
  }
  s.link(this);
  s.touch(worker_.nowMs());
  int b = pool_->backend();
  relay_.link(s, b);
  if (transactionPooling_ && onReplica_ && route_.canRetryOnPrimary()) relay_.armReadOnlyRetry();
  relay_.holdFinalReady(transactionPooling_ && !onReplica_ && route_.holdsReady(*cfg_));
  outstandingBackend_ = b;
  worker_.addOutstanding(b, +1);
  settings_.linked();
  if (cancelPid_) cancelSlot_.set(b, s.backendPid(), s.backendKey());
  transitionTo(State::Configure);
  configure();
}

// Brings the server's settings to the client's: SET for every parameter whose value differs,
// RESET for leftovers of earlier clients. The fast path, taken on almost every link in
// transaction mode: this server was last brought to exactly these settings.
void ClientSession::configure() {
  ServerConn& s = *relay_.server();
  uint64_t h = settings_.settingsHash();
  if (s.configuredHash() != h) {
    std::string sql, badName;
    if (!settings_.configureSql(s.appliedGucs(), s.params(), sql, badName)) {
      fatal("42704", "unrecognized configuration parameter \"" + badName + "\"");
      return;
    }
    s.setConfiguredHash(h);  // cleared again if the SETs fail
    if (!sql.empty()) {
      s.runInternal(sql);  // onInternalDone comes back here
      return;
    }
  }
  if (rebuildStep(s)) return;  // after a failover: LISTEN, prepared statements
  std::string& out = worker_.scratch().params;
  out.clear();
  if (!loggedIn_) {
    settings_.appendAllParams(worker_.sharedParams().intern(s.params()), out);
    appendBackendKeyData(out, cancelPid_, cancelKey_);
    appendReadyForQuery(out, s.txnStatus());
    loggedIn_ = true;
    route_.resolveSessionTag(*cfg_, database(), user(), settings_.setting("application_name"));
    route_.useFloor(&worker_.runtime().floors.of(database()));
  } else {
    // A client that lands on another server sees ParameterStatus for whatever differs from
    // what it was last told.
    settings_.appendChangedParams(s.id(), s.paramsGen(), s.paramsDigest(), s.params(), out);
  }
  if (!out.empty()) {
    client_.send(out);
    // With a request waiting, this goes out with its answer; else now.
    if (client_.inputEmpty()) client_.flush();
    if (state_ != State::Configure) return;  // the write failed: the client is gone
  }
  startRelaying(s);
}

void ClientSession::startRelaying(ServerConn& s) {
  transitionTo(State::Active);
  if (!onReplica_) relay_.recordTransaction();  // a transaction there may be replayed
  if (auto b = pool_->backend(); loggedIn_ && b >= 0 && countAs_) {
    BackendCounters& c = worker_.counters(b);
    ++(*countAs_ ? c.writes : c.reads);
    if (sessionReads_ && onReplica_ && !*countAs_) countSessionRead();
  }
  countAs_.reset();
  s.conn().startReading();
  client_.startReading();
  if (!client_.inputEmpty()) {
    pump();
  } else {
    afterTransaction();
  }
}

void ClientSession::onInternalDone(ServerConn& s, bool ok, const std::string& error) noexcept {
  if (&s == parked_) return;  // never runs one (parked only when idle); not this session's
  switch (state_) {
    case State::Configure: {
      if (afterLoss_ && std::exchange(afterLoss_->rebuildStepRunning, false)) {
        // What failed to rebuild had failed for the client too (a PREPARE with an error is
        // kept like any other): it goes on without it.
        if (!ok) {
          // `error` is the server's whole ErrorResponse: its SQLSTATE and message are logged.
          auto body = std::as_bytes(std::span(error)).subspan(std::min<size_t>(error.size(), 5));
          auto f = protocol::parseErrorFields(body);
          spdlog::info("client {}: a step of rebuilding its session state failed on server "
                       "{}: {} {}",
                       client_.peerName(), s.id(), f ? f->code : "",
                       f ? f->message : std::string_view(error));
        }
        configure();
        return;
      }
      if (ok) {
        configure();
        return;
      }
      // A bad startup parameter: PostgreSQL would have refused the connection with FATAL.
      // (Later in a session this cannot fail: the same SET worked on another server.)
      auto f = parseErrorFields(asBytes(error).subspan(error.size() >= 5 ? 5 : error.size()));
      std::string code = f ? std::string(f->code) : "08P01";
      std::string msg = f ? std::string(f->message) : "invalid startup parameter";
      s.appliedGucs().clear();
      fatal(code, msg);
      return;
    }
    case State::OwnQuery:
      switch (own_) {
        case Own::Readback: {
          std::string name = settings_.nextReadback();
          settings_.onReadback(ok, s.internalValue());
          if (ok) {  // this server has exactly the client's settings
            s.appliedGucs()[name] = s.internalValue();
            s.setConfiguredHash(settings_.settingsHash());
          }
          break;
        }
        case Own::CommitLsn:
          // The floor moves before the client hears its commit is done (strong).
          if (auto lsn = ok ? health::parseLsn(s.internalValue()) : std::nullopt) {
            route_.commitLsn(health::insertLsnAsRecordEnd(*lsn), worker_.nowMs(), *cfg_);
            watchReplicasReach(health::insertLsnAsRecordEnd(*lsn));
          } else {
            route_.lsnLost(worker_.nowMs(), *cfg_);
          }
          relay_.holdFinalReady(route_.holdsReady(*cfg_));
          relay_.releaseReady();
          break;
      }
      transitionTo(State::Active);
      client_.startReading();
      afterTransaction();
      return;
    default:
      return;
  }
}

// Client input, between transactions (route it, ask for a server) or while linked (relay it).
void ClientSession::pump() {
  ByteQueue& in = client_.in();
  if (!relay_.dropFailedRequest()) return;  // the rest of a failed request is still coming
  if (state_ == State::Idle) {
    if (lostTxnPending_ && !in.empty()) {
      // The first request after the transaction was lost with its server gets the error.
      if (readFrame(in, cfg_->maxMessageBytes).status == FrameStatus::NeedMore) return;
      lostTxnPending_ = false;
      relay_.failRequest(lostServerError(*cfg_, LostWork::Transaction, {}));
      if (state_ != State::Idle) return;  // the write failed: the client is gone
    }
    // One request after the other: a refused one leaves the session Idle for the next.
    while (state_ == State::Idle && !in.empty() && !relay_.dropping()) {
      std::array<std::byte, 1> first;
      if (in.copyOut(0, first) && !fe::validAfterLogin(static_cast<char>(first[0]))) {
        fatal("08P01", "invalid frontend message type " + std::to_string(uint8_t(first[0])));
        return;
      }
      relay_.answerLocally('I');
      if (in.empty()) break;
      if (!route_.decide(in, *cfg_, worker_.classifier(*cfg_), relay_.statements().names(),
                         settings_, worker_.nowMs(), worker_.volatileFunctions(database()))) {
        client_.startReading();  // the request is still arriving
        break;
      }
      auto fn = route_.takeFunctionNotes();
      if (fn.toPrimary) ++worker_.runtime().volatileFunctionRoutes;
      if (fn.catalogChanged) worker_.functionsChanged(database());
      requestServer();
    }
    client_.flush();
    return;
  }
  if (state_ != State::Active) return;
  if (relay_.exchange().syncingByUs()) return;  // the request goes elsewhere after that
  // A client pinned to a replica (session state made inside a read-only transaction that ran
  // there) cannot write on it. A request that needs the primary gets an error that says why,
  // rather than the replica's "cannot execute ... in a read-only transaction".
  routing::TopologyPtr topo;
  int b = pool_->backend();
  if (settings_.pinned() && transactionPooling_ && relay_.atRequestStart()) {
    topo = worker_.runtime().topology();
  }
  while (topo && b >= 0 && b < static_cast<int>(topo->backends.size()) &&
         topo->backends[b].role == routing::Role::Replica && !in.empty() &&
         relay_.atRequestStart()) {
    int w = route_.firstStatementWrites(in, *cfg_, worker_.classifier(*cfg_),
                                        relay_.statements().names());
    if (w < 0) return;  // the first message is still arriving
    if (w == 0) break;
    relay_.failRequest(errorResponse(
        "0A000",
        "this connection is pinned to replica " + topo->backends[b].name + " (" +
            settings_.pinReason() + ") and cannot run statements that need the primary",
        "The session state was created inside a read-only transaction that pgswitch routed to "
        "a replica. Create it outside read-only transactions (or with /* pgswitch: primary "
        "*/), or reconnect."));
    if (relay_.dropping() || state_ != State::Active) return;
  }
  // A batch the client ended with Flush (no Sync) ran on a replica (asyncpg prepares with
  // Parse/Describe/Flush, then sends COPY, or Bind/Execute/Sync): the batch is closed there
  // with pgswitch's own Sync and the next request routed afresh once its ReadyForQuery is in
  // (afterTransaction): a write goes to the primary, a read gets its own retry copy and
  // consistency check. A request that goes on with what the batch left there (the unnamed
  // statement, a suspended portal) stays.
  if (transactionPooling_ && !settings_.pinned() && relay_.batchAwaitsSync() && !in.empty() &&
      onReplica_) {
    int w = route_.firstStatementWrites(in, *cfg_, worker_.classifier(*cfg_),
                                        relay_.statements().names(),
                                        worker_.volatileFunctions(database()));
    if (w < 0) return;  // its first message is still arriving
    if (w == 1 || !route_.continuesBatch(in)) {
      rerouteNext_ = true;
      relay_.closeBatch();
      return;
    }
  }
  // A client pinned to the primary keeps its server: each of its transactions may write.
  if (settings_.pinned() && transactionPooling_ && !onReplica_ && relay_.atRequestStart() &&
      !in.empty()) {
    route_.writingAgain();
    relay_.holdFinalReady(route_.holdsReady(*cfg_));
  }
  // On a replica, requests pipelined behind this one are forwarded only while they are reads;
  // the first that may write waits for this one's ReadyForQuery and is routed afresh. That
  // holds however the bytes arrived: also for a request read after the one in flight was sent.
  // Not while the server skips to Sync after an error: no ReadyForQuery comes before the
  // client's Sync, and what goes before it is skipped, whatever it is.
  if (transactionPooling_ && onReplica_ && !settings_.pinned() && !relay_.clientHalfSent() &&
      !relay_.heldForShape() && relay_.server()->txnStatus() == 'I' && !relay_.exchange().quiet() &&
      !relay_.exchange().discarding() &&
      route_.firstStatementWrites(in, *cfg_, worker_.classifier(*cfg_), relay_.statements().names(),
                                  worker_.volatileFunctions(database())) != 0) {
    // In a batch without Sync or Flush the server keeps its answers, and no ReadyForQuery
    // comes: ask for the answers, then the batch is closed above and this request rerouted.
    relay_.flushBatch();
    return;
  }
  relay_.stopAtRequestEnd(transactionPooling_ && onReplica_);
  for (;;) {
    Relay::Event ev = relay_.toServer();
    bool ok = onRelayEvent(ev);
    if (ok && ev.answeredLocally) afterTransaction();
    if (!ok || !ev.requestEnded || state_ != State::Active ||
        route_.firstStatementWrites(in, *cfg_, worker_.classifier(*cfg_),
                                    relay_.statements().names(),
                                    worker_.volatileFunctions(database())) != 0)
      break;
  }
  noteInFlight();
}



void ClientSession::noteInFlight() {
  bool busy = state_ == State::Active && relay_.exchange().owed();
  if (busy == inFlightShown_ || !cancelPid_) return;
  inFlightShown_ = busy;
  if (busy) {
    cancelSlot_.requestStarted();
  } else {
    cancelSlot_.requestEnded();
  }
}

bool ClientSession::onRelayEvent(const Relay::Event& ev) {
  if (ev.applicationNameChanged)
    route_.resolveSessionTag(*cfg_, database(), user(), settings_.setting("application_name"));
  switch (ev.kind) {
    case Relay::Event::Kind::Ok:
      return true;
    case Relay::Event::Kind::Terminate:
      end(false);
      return false;
    case Relay::Event::Kind::ClientError:
      releaseServer();
      fatal("08P01", ev.message);
      return false;
    case Relay::Event::Kind::ServerError:
      spdlog::warn("client {}: server {} protocol error: {}", client_.peerName(),
                   relay_.server() ? relay_.server()->id() : 0, ev.message);
      releaseServer(false);
      fatal("08P01", "protocol error between pgswitch and the server: " + ev.message);
      return false;
    case Relay::Event::Kind::RetryOnPrimary: {
      // The replica's error and ReadyForQuery were dropped; the server is idle and reusable.
      int b = pool_ ? pool_->backend() : -1;
      releaseServer();
      if (!route_.retryOnPrimary(client_.in())) {
        // cannot happen: armed only with a copy
        fatal("XX000", "internal error: read to retry on the primary has no copy");
        return false;
      }
      if (ev.recoveryConflict) {
        ++worker_.runtime().recoveryConflictRetries;
        spdlog::info("client {}: read on replica backend {} cancelled by a conflict with "
                     "recovery (40001); running it on the primary",
                     client_.peerName(), b);
      } else {
        ++worker_.runtime().readonlyRetries;
        spdlog::info("client {}: read on replica backend {} tried to write (25006 read-only "
                     "transaction); running it on the primary",
                     client_.peerName(), b);
      }
      transitionTo(State::Idle);
      pump();
      return false;
    }
    case Relay::Event::Kind::ServerFatal:
      afterLoss().serverFatal = ev.message;
      // onServerLost decides what the client sees (unless the client went first).
      if (ServerConn* s = relay_.server()) s->abandon(UV_ECONNRESET);
      return false;
  }
  return false;
}

void ClientSession::afterTransaction() {
  if (state_ != State::Active) return;
  ServerConn& s = *relay_.server();
  if (!relay_.idle() || !s.conn().inputEmpty()) return;
  if (!transactionPooling_) {
    // Session mode keeps its server; only SETs to carry after a failover are read back.
    if (!readBackSetting(s) && !client_.inputEmpty()) pump();
    return;
  }
  if (settings_.takeFunctionsChanged()) worker_.functionsChanged(database());
  // A write transaction ended: its LSN is asked for on the same server connection (strong:
  // while its ReadyForQuery waits; read-your-writes: after the client has it, so the client
  // waits only if it sends its next request within that round trip).
  if (route_.wantsCommitLsn(*cfg_)) {
    auto topo = worker_.runtime().topology();
    if (!couldHaveReplicas(*topo)) {
      route_.untrackedCommit(worker_.nowMs(), *cfg_);  // nothing to read stale data from
    } else if (pool_->backend() == topo->primary) {
      own_ = Own::CommitLsn;
      transitionTo(State::OwnQuery);
      client_.stopReading();
      // A session whose statements are not looked at (pinned) may have made it asynchronous.
      const bool async = relay_.takeAsyncCommitPossible() || !settings_.movable();
      s.runInternal(async ? routing::kAsyncCommitLsnQuery : routing::kCommitLsnQuery);
      return;
    } else {
      route_.lsnLost(worker_.nowMs(), *cfg_);  // the primary moved under it
    }
  }
  relay_.releaseReady();
  if (readBackSetting(s)) return;
  if (settings_.pinned()) {
    if (sessionReads_) noteSessionReadsFallback();
    return;
  }
  // A pipelining client already sent its next request: keep the server for it, unless it is
  // a replica and the request may need the primary (or has not fully arrived: it is routed
  // once it has).
  ByteQueue& in = client_.in();
  if (!in.empty() && !std::exchange(rerouteNext_, false) &&
      (!onReplica_ || route_.firstStatementWrites(in, *cfg_, worker_.classifier(*cfg_),
                                                  relay_.statements().names(),
                                                  worker_.volatileFunctions(database())) == 0)) {
    pump();
    return;
  }
  releaseServer();
  transitionTo(State::Idle);
  if (!in.empty()) pump();  // routed afresh
}

// Gives the server back. It is reusable only when nothing is in flight and no transaction is
// open; in session mode (or for a pinned client) the pool resets it first. A server still
// running our own query is closed rather than reused. With session_reads the client's primary
// server is kept (parked) until the client leaves.
void ClientSession::releaseServer(bool reusable) {
  ServerConn* s = relay_.server();
  if (!s) {
    if (state_ == State::Closing) releaseParked();
    return;
  }
  bool clean = reusable && relay_.idle() && s->conn().inputEmpty() &&
               s->state() != ServerConn::State::Closing &&
               s->state() != ServerConn::State::Internal;
  bool reset = !transactionPooling_ || settings_.pinned() || (sessionReads_ && !onReplica_);
  relay_.unlink();
  rerouteNext_ = false;
  worker_.addOutstanding(outstandingBackend_, -1);
  outstandingBackend_ = -1;
  if (cancelPid_) cancelSlot_.clear();
  inFlightShown_ = false;
  // The server keeps reading: an idle pooled server must notice when it goes away.
  Pool* from = std::exchange(pool_, nullptr);
  if (!(sessionReads_ && parkPrimary(*s, clean))) from->release(*s, clean, reset);
  if (state_ == State::Closing) releaseParked();
}

void ClientSession::terminate(std::string_view sqlstate, std::string_view message) {
  fatal(sqlstate, message);
}

void ClientSession::abort() { end(false); }

void ClientSession::onConnRead(Conn& c) noexcept {
  lastActivityMs_ = worker_.nowMs();
  switch (state_) {
    case State::Startup:
    case State::Auth:
      onLogin();
      return;
    case State::Queued:
    case State::Holding:
    case State::AwaitReplica:
    case State::Configure:
    case State::OwnQuery:
      // Pipelined requests wait in the buffer; stop reading until the server is ours again.
      client_.stopReading();
      return;
    case State::Active:
    case State::Idle:
      pump();
      return;
    case State::Console:
      console_->onRead();
      return;
    case State::Closing:
      client_.in().clear();
      return;
  }
}

void ClientSession::onServerRead(ServerConn& s) noexcept {
  if (state_ != State::Active || &s != relay_.server()) return;  // or: parked (session_reads)
  if (!s.conn().inputEmpty()) route_.answered();  // the server has started answering
  Relay::Event ev = relay_.toClient();
  if (!replayAnswered()) return;
  if (onRelayEvent(ev)) afterTransaction();
  // Requests held back at a request boundary (see pump) inside a transaction that stays on
  // this server, behind an error that makes the server skip to the client's Sync, or behind a
  // batch on a replica now answered in full (closed there, then routed afresh), and a message
  // that waited for its statement's result shape: they go now.
  if (state_ == State::Active &&
      (relay_.exchange().quiet() || relay_.exchange().discarding() || relay_.batchAwaitsSync() ||
       relay_.shapeAnswered()) &&
      !client_.inputEmpty())
    pump();
  noteInFlight();
}

// The client's write queue drained: let the server talk again.
void ClientSession::onConnDrained(Conn& c) noexcept {
  if (state_ != State::Active) return;
  ServerConn& s = *relay_.server();
  s.conn().startReading();
  if (!s.conn().inputEmpty()) onServerRead(s);
}

// The server's write queue drained: let the client talk again.
void ClientSession::onServerDrained(ServerConn& s) noexcept {
  if (state_ != State::Active || &s != relay_.server()) return;
  client_.startReading();
  if (!client_.inputEmpty()) pump();
}

// The client went away (EOF or error).
void ClientSession::onConnError(Conn& c, int status) noexcept {
  if (status == UV_EPROTO && c.tls() && !c.tls()->error().empty())
    spdlog::info("client {}: TLS: {}", c.peerName(), c.tls()->error());
  end(false);
}

void ClientSession::onConnClosed(Conn& c) noexcept {
  if (state_ != State::Closing) transitionTo(State::Closing);
  worker_.removeHolding(this);
  worker_.removeReplicaWaiter(this);
  worker_.removeClient(this);
  worker_.retire(this);
}

ClientInfo ClientSession::info(uint64_t nowMs) const {
  ClientInfo ci;
  ci.worker = worker_.id();
  ci.id = cancelPid_;
  ci.user = user();
  ci.database = database();
  ci.applicationName = std::string(settings_.setting("application_name"));
  ci.addr = client_.peerName();
  switch (state_) {
    case State::Startup:
    case State::Auth:
      ci.state = "login";
      break;
    case State::Queued:
    case State::Holding:
    case State::AwaitReplica:
      ci.state = "waiting";
      break;
    case State::Configure:
    case State::Active:
    case State::OwnQuery:
      ci.state = "active";
      break;
    case State::Idle:
      ci.state = "idle";
      break;
    case State::Console:
      ci.state = "console";
      break;
    case State::Closing:
      ci.state = "closing";
      break;
  }
  ci.connectedMs = nowMs - std::min(nowMs, startedMs_);
  // session_reads: between requests the client's primary server is parked, still its own.
  ci.serverId = relay_.server() ? relay_.server()->id() : parked_ ? parked_->id() : 0;
  ci.parkedServerId = parked_ ? parked_->id() : 0;
  ci.pinned = settings_.pinned();
  ci.pinReason = settings_.pinReason();
  return ci;
}

bool ClientSession::quiescent() const {
  switch (state_) {
    case State::Startup:
    case State::Auth:
    case State::Idle:
    case State::Console:
    case State::Queued:   // no request has reached a server yet: a login or a queued
    case State::Holding:  // request ends cleanly
    case State::AwaitReplica:
      return true;
    case State::Configure:
    case State::OwnQuery:
    case State::Closing:
      return false;
    case State::Active:
      return relay_.idle() && client_.inputEmpty() && relay_.server()->conn().inputEmpty();
  }
  return false;
}

}  // namespace pgswitch::proxy
