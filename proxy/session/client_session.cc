// Client session lifecycle: state transitions, getting a server from the pool, applying the
// client's startup parameters to it, and giving it back.
#include "proxy/session/client_session.h"

#include <spdlog/spdlog.h>

#include "proxy/admin/console_session.h"

#include "protocol/builder.h"
#include "protocol/framing.h"
#include "protocol/messages.h"

namespace pgswitch::proxy {

using namespace protocol;

namespace {

bool validGucName(std::string_view n) {
  if (n.empty() || n.size() > 63 * 2 + 1) return false;
  for (char c : n)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.')) return false;
  return true;
}

std::string quoteLiteral(std::string_view v) {
  std::string q = "'";
  for (char c : v) {
    if (c == '\'') q += '\'';
    q += c;
  }
  q += '\'';
  return q;
}

std::string lower(std::string_view s) {
  std::string r(s);
  for (auto& c : r) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return r;
}

}  // namespace

ClientSession::ClientSession(Worker& w, std::shared_ptr<const Config> cfg)
    : worker_(w), cfg_(std::move(cfg)) {
  client_ = std::make_unique<Conn>(w, this);
  startedMs_ = w.nowMs();
  transactionPooling_ = cfg_->poolMode == PoolMode::Transaction;
}

ClientSession::~ClientSession() {
  if (cancelPid_) worker_.runtime().cancels().remove(cancelPid_, cancelKey_);
  if (counted_) --worker_.runtime().clients;
}

void acceptClientSession(Worker& w, uv_stream_t* listener) {
  auto* c = new ClientSession(w, w.runtime().config());
  // On failure the session's handle is initialised but unused: the close path frees it.
  if (c->accept(listener) != 0) {
    c->abort();
    return;
  }
  c->start();
}

int ClientSession::accept(uv_stream_t* listener) { return client_->accept(listener); }

void ClientSession::start() {
  worker_.addClient(this);
  client_->startReading();
}

void ClientSession::transitionTo(State next) {
  // Legal edges only; anything else is a bug in this file, not bad input.
  bool ok = next == State::Closing;
  switch (state_) {
    case State::Startup:
      ok |= next == State::Auth;
      break;
    case State::Auth:
      ok |= next == State::WaitServer || next == State::Console;
      break;
    case State::WaitServer:
      ok |= next == State::Configure || next == State::Idle;
      break;
    case State::Configure:
      ok |= next == State::Active || next == State::Idle;  // Idle: server lost while configuring
      break;
    case State::Active:
      ok |= next == State::Idle;
      break;
    case State::Idle:
      ok |= next == State::WaitServer;
      break;
    case State::Console:
    case State::Closing:
      break;
  }
  if (!ok) spdlog::error("client session: illegal transition {} -> {}", int(state_), int(next));
  state_ = next;
}

void ClientSession::requestServer() {
  if (state_ != State::WaitServer) transitionTo(State::WaitServer);
  // Reading goes on: usually a server is free right away, and toggling epoll interest twice
  // per transaction costs more than the rare read that arrives while we wait (onConnRead
  // stops reading then).
  // PAUSE holds new requests like a missing primary does, without the failover deadline.
  int b = worker_.runtime().pause.paused(database_) ? -1 : chooseBackend();
  if (b == -2) {
    holding_ = false;
    failRequest("57P03", "no replica can serve this read",
                "routing.fallback = \"error\" and no replica is up, within the lag limits and "
                "carrying the requested tag");
    transitionTo(State::Idle);
    client_->startReading();
    return;
  }
  if (b < 0) {
    spdlog::debug("client {}: no usable backend, holding", cancelPid_);
    holdForBackend();
    return;
  }
  holding_ = false;
  pool_ = &worker_.pool(b, database_, user_);
  if (userCfg_ && userCfg_->passwordIsScram() && scram_) pool_->setClientKey(scram_->clientKey());
  waiting_ = true;
  if (ServerConn* s = pool_->acquire(this)) onServerAssigned(*s);
}

// Hold, don't fail: during a failover there is briefly no primary (or the one the topology
// names is already gone). The session waits, up to failover_wait_ms, and tries again when the
// health thread publishes a new topology and once a second.
void ClientSession::holdForBackend() {
  if (!holding_) {
    holding_ = true;
    holdSinceMs_ = worker_.nowMs();
  }
  worker_.addHolding(this);
}

// A login failure that says nothing about the client: no connection, or the server is
// shutting down / starting up / in recovery.
bool ClientSession::connectionLevelFailure(const std::string& serverError) {
  if (serverError.empty()) return true;
  auto f = parseErrorFields(asBytes(serverError).subspan(serverError.size() >= 5 ? 5 : 0));
  if (!f) return false;
  return f->code == "08006" || f->code == "08001" || f->code == "57P01" ||
         f->code == "57P02" || f->code == "57P03";
}

void ClientSession::retryHold() {
  if (!holding_ || waiting_ || state_ != State::WaitServer) return;
  requestServer();
}

// Answers the client's pending request with an error instead of running it: its messages
// up to the next Query or Sync are dropped, then ErrorResponse and ReadyForQuery.
void ClientSession::failRequest(std::string_view sqlstate, std::string_view message,
                                std::string_view detail) {
  std::string err;
  appendError(err, ErrorSpec{"ERROR", sqlstate, message, detail});
  failRequestWith(err);
}

// Answers the pending request with `err` and drops its messages: up to the Query, Sync or
// FunctionCall that ends it (then ReadyForQuery), or, if that has not arrived yet, the rest
// are dropped as they come (swallowUntilSync_).
void ClientSession::failRequestWith(std::string_view err) {
  ByteQueue& in = client_->in();
  bool done = false;
  while (!done) {
    Frame f = readFrame(in, cfg_->maxMessageBytes);
    if (f.status != FrameStatus::Complete) break;
    done = f.type == fe::Query || f.type == fe::Sync || f.type == fe::FunctionCall;
    in.consume(f.total);
  }
  client_->send(err);
  if (done) {
    client_->send(std::string_view("Z\0\0\0\5I", 6));
  } else {
    swallowUntilSync_ = true;
  }
  client_->flush();
}

void ClientSession::onServerAssigned(ServerConn& s) noexcept {
  waiting_ = false;
  if (state_ == State::Closing) {
    pool_->release(s, s.txnStatus() == 'I', false);
    return;
  }
  server_ = &s;
  s.link(this);
  s.touch(worker_.nowMs());
  trackOutstanding(pool_->backend());
  if (pinOnServer_ && !pinned_) {
    pinned_ = true;
    pinReason_ = pinOnServer_;
  }
  if (cancelSlot_) cancelSlot_->set(pool_->backend(), s.backendPid(), s.backendKey());
  transitionTo(State::Configure);
  configureServer();
}

// Brings the server's settings to what the client asked for in its startup packet: SET for
// every parameter whose current value differs, RESET for leftovers of earlier clients.
void ClientSession::configureServer() {
  // Fast path, taken on almost every link in transaction mode: this server was last brought
  // to exactly this client's settings and nothing changed them since.
  if (gucsHash_ == 0) gucsHash_ = hashGucs(gucs_);
  if (server_->configuredHash() == gucsHash_) {
    configured();
    return;
  }
  std::string sql;
  auto& applied = server_->appliedGucs();
  std::map<std::string, std::string> wanted;
  for (auto& [k, v] : gucs_) wanted[lower(k)] = v;
  for (auto& [name, value] : wanted) {
    if (!validGucName(name)) {
      fatal("42704", "unrecognized configuration parameter \"" + name + "\"");
      return;
    }
    auto a = applied.find(name);
    if (a != applied.end() && a->second == value) continue;
    if (a == applied.end()) {
      // Reported parameters (client_encoding, DateStyle, ...) tell us the current value.
      bool same = false;
      for (auto& [pk, pv] : server_->params())
        if (lower(pk) == name && pv == value) same = true;
      if (same) continue;
    }
    // set_config takes the value as PostgreSQL takes a startup parameter: search_path
    // "a,public" is two schemas (SET search_path = 'a,public' would be one named "a,public").
    sql += "SELECT set_config(" + quoteLiteral(name) + ", " + quoteLiteral(value) + ", false);";
    applied[name] = value;
  }
  for (auto it = applied.begin(); it != applied.end();) {
    if (!wanted.count(it->first)) {
      sql += "RESET " + it->first + ";";
      it = applied.erase(it);
    } else {
      ++it;
    }
  }
  if (sql.empty()) {
    server_->setConfiguredHash(gucsHash_);
    configured();
    return;
  }
  server_->runInternal(sql);
  server_->setConfiguredHash(gucsHash_);  // cleared again if the SETs fail
}

uint64_t ClientSession::hashGucs(const std::vector<std::pair<std::string, std::string>>& g) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a over name=value pairs, in order
  for (auto& [k, v] : g) {
    for (char c : k) h = (h ^ static_cast<unsigned char>(std::tolower(static_cast<unsigned char>(c)))) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;
    for (char c : v) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
    h = (h ^ 0xfe) * 1099511628211ull;
  }
  return h == 0 ? 1 : h;
}

// Settings a client may SET at session level in transaction mode without being pinned: the
// value is read back and re-applied wherever the client goes. Identity switches stay pinned.
bool ClientSession::carryableSetting(std::string_view name) const {
  if (name.empty() || name == "all" || name == "role" || name == "session_authorization" ||
      name == "session authorization" || !server_)
    return false;
  for (auto& [k, v] : server_->params())  // reported ones follow through ParameterStatus
    if (lower(k) == name) return false;
  return validGucName(name);
}

void ClientSession::readSettingBack() {
  readbackPending_ = true;
  client_->stopReading();
  server_->runInternal("SELECT current_setting(" + quoteLiteral(readback_.front()) + ")");
}

void ClientSession::onSettingRead(bool ok) {
  readbackPending_ = false;
  std::string name = std::move(readback_.front());
  readback_.erase(readback_.begin());
  if (!ok || !server_) {
    pinned_ = true;
    pinReason_ = "SET of " + name + " (its value could not be read back)";
    readback_.clear();
  } else {
    const std::string& value = server_->internalValue();
    bool found = false;
    for (auto& [k, v] : gucs_) {
      if (lower(k) == name) {
        v = value;
        found = true;
      }
    }
    if (!found) gucs_.emplace_back(name, value);
    server_->appliedGucs()[name] = value;
    gucsHash_ = hashGucs(gucs_);
    server_->setConfiguredHash(gucsHash_);  // this server has exactly the client's settings
  }
  client_->startReading();
  maybeReleaseAfterTransaction();
}

void ClientSession::onInternalDone(ServerConn& s, bool ok, const std::string& error) noexcept {
  if (readbackPending_) {
    onSettingRead(ok);
    return;
  }
  if (lsnPending_) {
    onCommitLsn();
    return;
  }
  if (state_ == State::Configure) {
    if (!ok) {
      // A bad startup parameter: PostgreSQL would have refused the connection with FATAL.
      // (Later in a session this cannot fail: the same SET worked on another server.)
      auto f = parseErrorFields(asBytes(error).subspan(error.size() >= 5 ? 5 : error.size()));
      std::string code = f ? std::string(f->code) : "08P01";
      std::string msg = f ? std::string(f->message) : "invalid startup parameter";
      s.appliedGucs().clear();
      releaseServer();
      fatal(code, msg);
      return;
    }
    configured();
  }
}

void ClientSession::configured() {
  if (!loggedIn_) {
    finishLogin();
    return;
  }
  sendChangedParams();
  transitionTo(State::Active);
  server_->conn().startReading();
  client_->startReading();
  relayClientToServer();
}

// A client that lands on another server sees ParameterStatus for whatever differs from what
// it was last told (in_hot_standby is a property of the server, not of the session).
void ClientSession::sendChangedParams() {
  // Same server and nothing reported since the last comparison: nothing can differ.
  if (server_->id() == paramsSyncedServer_ && server_->paramsGen() == paramsSyncedGen_) return;
  paramsSyncedServer_ = server_->id();
  paramsSyncedGen_ = server_->paramsGen();
  std::string out;
  for (auto& [k, v] : server_->params()) {
    if (k == "in_hot_standby") continue;
    auto it = sentParams_.find(k);
    if (it != sentParams_.end() && it->second == v) continue;
    appendParameterStatus(out, k, v);
    sentParams_[k] = v;
  }
  if (!out.empty()) client_->send(out);
}

void ClientSession::finishLogin() {
  std::string out;
  for (auto& [k, v] : server_->params()) {
    appendParameterStatus(out, k, v);
    sentParams_[k] = v;
  }
  appendBackendKeyData(out, cancelPid_, cancelKey_);
  appendReadyForQuery(out, server_->txnStatus());
  client_->send(out);
  client_->flush();
  loggedIn_ = true;
  resolveSessionTag();
  transitionTo(State::Active);
  server_->conn().startReading();
  client_->startReading();
  if (!client_->in().empty()) {
    relayClientToServer();
  } else {
    maybeReleaseAfterTransaction();
  }
}

void ClientSession::onServerUnavailable(const PoolError& e) noexcept {
  waiting_ = false;
  spdlog::debug("client {}: no server ({}): {}", cancelPid_, int(e.kind), e.text);
  if (state_ == State::Closing) return;
  switch (e.kind) {
    case PoolError::Kind::LoginFailed:
      if (connectionLevelFailure(e.serverError)) {
        // The backend is unreachable or going away (a failover in progress): wait for the
        // health thread to say where to go instead of failing the client. Reads avoid it.
        if (pool_) avoidBackend_ = pool_->backend();
        holdForBackend();
        return;
      }
      if (!e.serverError.empty()) {
        client_->send(e.serverError);
        transitionTo(State::Closing);
        client_->closeAfterFlush();
        return;
      }
      fatal("08006", e.text);
      return;
    case PoolError::Kind::Timeout:
      if (loggedIn_) {
        // The request is answered with an error and the connection stays usable (the
        // client may retry); only a client still logging in is turned away.
        failRequest("53300", e.text, "raise pool_size or query_wait_timeout_ms");
        transitionTo(State::Idle);
        client_->startReading();
        return;
      }
      fatal("53300", e.text, {}, "raise pool_size or query_wait_timeout_ms");
      return;
    case PoolError::Kind::Shutdown:
      fatal("57P01", "terminating connection due to administrator command");
      return;
    case PoolError::Kind::NoBackend:
      fatal("08006", e.text);
      return;
    case PoolError::Kind::BackendDown:
      // The backend went away while we waited for it: route again (maybe hold).
      requestServer();
      return;
  }
}

// Gives the server back. It is reusable only when nothing is in flight and no transaction
// is open; the pool resets it (server_reset_query) before anyone else gets it.
void ClientSession::releaseServer() {
  if (!server_) return;
  // An internal query of ours still running (commit LSN, setting read-back): the server's
  // protocol state is not clean, so it is closed rather than reused.
  bool clean = idleBetweenTransactions() && server_->conn().in().empty() &&
               server_->state() != ServerConn::State::Closing &&
               server_->state() != ServerConn::State::Internal;
  ServerConn* s = server_;
  server_ = nullptr;
  trackOutstanding(-1);
  lsnPending_ = readbackPending_ = false;
  readback_.clear();
  if (cancelSlot_) cancelSlot_->clear();
  // The server keeps reading: an idle pooled server must notice when it goes away.
  // Between transactions in transaction mode the server is handed on as is; otherwise
  // (session mode, a pinned client leaving) it is reset first.
  bool reset = !transactionPooling_ || pinned_ || state_ == State::Closing;
  expect_.clear();
  unsynced_ = discardUntilSync_ = inCopy_ = false;
  c2sPassthrough_ = s2cPassthrough_ = 0;
  pool_->release(*s, clean, reset);
}

void ClientSession::onServerLost(ServerConn& s, int status) noexcept {
  spdlog::debug("client {}: server {} lost in state {} ({})", cancelPid_, s.id(), int(state_),
                uv_strerror(status));
  server_ = nullptr;
  trackOutstanding(-1);
  if (readbackPending_ || !readback_.empty()) {
    // A session SET whose value was not read back yet: it cannot follow the client.
    readbackPending_ = false;
    readback_.clear();
    pinned_ = true;
    pinReason_ = "SET whose value was lost with its server";
  }
  if (lsnPending_) {
    // The commit was acknowledged; only its LSN is unknown. Reads go to the primary until
    // a replica has replayed everything the primary had when the LSN was last known.
    lsnPending_ = false;
    rywLsn_ = UINT64_MAX;
    rywSetMs_ = worker_.nowMs();
  }
  if (cancelSlot_) cancelSlot_->clear();
  if (state_ == State::Closing) return;
  bool wasIdle = expect_.empty() && !unsynced_ && !inCopy_ && s.txnStatus() == 'I';
  bool midMessage = s2cPassthrough_ > 0;
  bool owed = !expect_.empty() || unsynced_;
  spdlog::debug("client {}: lost server: idle={} owed={} expect={} unsynced={} txn={} in={}",
                cancelPid_, wasIdle, owed, expect_.size(), unsynced_, s.txnStatus(),
                client_->in().size());
  bool ended = false;  // a ReadyForQuery-terminated request is outstanding
  for (auto& e : expect_)
    ended |= e.kind == Expect::Kind::Query || e.kind == Expect::Kind::Sync ||
             e.kind == Expect::Kind::FunctionCall;
  expect_.clear();
  unsynced_ = discardUntilSync_ = inCopy_ = false;
  c2sPassthrough_ = s2cPassthrough_ = 0;
  // Lost while being brought to the client's settings: nothing of the request reached it, so
  // the request is routed again, away from that backend.
  if (loggedIn_ && !pinned_ && transactionPooling_ && state_ == State::Configure) {
    avoidBackend_ = s.pool().backend();
    retryPending_ = true;
    commitInFlight_ = false;
    transitionTo(State::Idle);
    client_->startReading();
    relayClientToServer();
    return;
  }
  // The client survives a lost server when it has no session state there: between
  // transactions it never notices; in a transaction it gets an error and stays connected.
  if (loggedIn_ && !pinned_ && !midMessage && state_ == State::Active && pool_ &&
      retryLostRead(pool_->backend())) {
    commitInFlight_ = false;
    transitionTo(State::Idle);
    client_->startReading();
    relayClientToServer();
    return;
  }
  if (!loggedIn_ || pinned_ || midMessage || state_ != State::Active) {
    fatal("08006", "server connection lost", std::string("the connection to backend ended: ") +
                                                uv_strerror(status));
    return;
  }
  if (owed) {
    std::string out;
    appendLostServerError(out);
    if (ended) {
      appendReadyForQuery(out, 'I');
    } else {
      swallowUntilSync_ = true;
    }
    client_->send(out);
    client_->flush();
  } else if (!wasIdle) {
    // Idle inside a transaction: nothing is owed now. The transaction is gone; the client
    // learns it from the answer to its next request (as PostgreSQL would report it then).
    lostTxnPending_ = true;
  }
  serverFatal_.clear();
  commitInFlight_ = false;
  transitionTo(State::Idle);
  client_->startReading();
  if (!client_->in().empty()) relayClientToServer();
}

// The ErrorResponse for work lost with its server: 08007 when a COMMIT was in flight (the
// outcome is unknown), else 08006 or failover.retry_safe_as (nothing took effect).
void ClientSession::appendLostServerError(std::string& out) {
  std::string_view code = commitInFlight_ ? "08007" : "08006";
  if (!commitInFlight_ && !cfg_->failover.retrySafeAs.empty()) code = cfg_->failover.retrySafeAs;
  std::string detail = "pgswitch keeps this connection usable; the server connection behind it "
                       "ended";
  if (!serverFatal_.empty()) detail += " (server said " + serverFatal_ + ")";
  appendError(out, ErrorSpec{
      "ERROR", code,
      commitInFlight_ ? "connection to the server lost while COMMIT was in progress: the "
                        "transaction may or may not have committed"
                      : "connection to the server lost (failover?): the transaction was "
                        "rolled back and is safe to retry",
      detail});
}

void ClientSession::terminate(std::string_view sqlstate, std::string_view message) {
  if (state_ == State::Closing) return;
  releaseServer();
  if (waiting_ && pool_) pool_->cancelWait(this);
  waiting_ = false;
  fatal(sqlstate, message);
}

void ClientSession::janitor(uint64_t now) {
  if (state_ == State::Closing) return;
  auto cfg = worker_.runtime().config();
  if (holding_ && !worker_.runtime().pause.paused(database_) &&
      now - holdSinceMs_ >= static_cast<uint64_t>(cfg->failover.failoverWaitMs)) {
    holding_ = false;
    worker_.removeHolding(this);
    if (!loggedIn_) {
      fatal("57P03", "no primary server is available", {},
            "pgswitch waited failover_wait_ms for a primary");
      return;
    }
    failRequest("57P03", "no primary server is available",
                "pgswitch waited failover_wait_ms for a primary");
    transitionTo(State::Idle);
    client_->startReading();
    return;
  }
  if (holding_) {
    retryHold();
    return;
  }
  uint64_t quiet = now - std::max(lastActivityMs_, startedMs_);
  if (state_ == State::Startup || state_ == State::Auth) {
    // A client that never finishes logging in (PostgreSQL's authentication_timeout).
    if (now - startedMs_ >= 60000) abort();
    return;
  }
  bool inTxn = server_ && server_->txnStatus() != 'I';
  bool waitingOnUs = (state_ == State::Active && server_ && !expect_.empty()) ||
                     state_ == State::WaitServer || state_ == State::Configure;
  if (waitingOnUs) return;
  if (inTxn && cfg->idleTransactionTimeoutS > 0 &&
      quiet >= uint64_t(cfg->idleTransactionTimeoutS) * 1000) {
    terminate("25P03", "terminating connection due to idle-in-transaction timeout");
    return;
  }
  if (!inTxn && cfg->clientIdleTimeoutS > 0 && quiet >= uint64_t(cfg->clientIdleTimeoutS) * 1000)
    terminate("57P05", "terminating connection due to idle-session timeout");
}

void ClientSession::abort() {
  if (waiting_ && pool_) pool_->cancelWait(this);
  waiting_ = false;
  releaseServer();
  transitionTo(State::Closing);
  client_->close();
}

void ClientSession::onConnError(Conn& c, int status) noexcept {
  // The client went away (EOF or error): give the server back and close.
  if (waiting_ && pool_) pool_->cancelWait(this);
  waiting_ = false;
  releaseServer();
  transitionTo(State::Closing);
  client_->close();
}

void ClientSession::onConnClosed(Conn& c) noexcept {
  if (waiting_ && pool_) pool_->cancelWait(this);
  waiting_ = false;
  releaseServer();
  worker_.removeHolding(this);
  worker_.removeClient(this);
  worker_.retire(this);
}

void ClientSession::startConsole() {
  if (!cfg_->isAdmin(user_)) {
    spdlog::info("client {}: user \"{}\" is not in admin_users: console refused",
                 client_->peerName(), user_);
    fatal("42501", "permission denied for database \"" + std::string(kConsoleDatabase) + "\"",
          "Only the users listed in server.admin_users may use the pgswitch admin console.");
    return;
  }
  transitionTo(State::Console);
  std::string app, encoding;
  for (const auto& [k, v] : gucs_) {
    if (k == "application_name") app = v;
    if (k == "client_encoding") encoding = v;
  }
  console_ = std::make_unique<ConsoleSession>(*this, worker_, *client_);
  console_->start(user_, app, encoding, cancelPid_, cancelKey_);
}


}  // namespace pgswitch::proxy
