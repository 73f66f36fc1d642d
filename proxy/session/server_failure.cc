// What a client sees when its server fails: a server lost while linked (error, EOF, FATAL
// it sent) and a pool that cannot provide one. Between transactions the client never
// notices; a lone read is retried elsewhere; inside a transaction it gets an error and stays
// connected; only session state on the lost server ends the session.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>

#include "protocol/builder.h"
#include "protocol/messages.h"
#include "proxy/session/client_session.h"
#include "proxy/session/session_errors.h"

namespace pgswitch::proxy {

using namespace protocol;

namespace {

// A login failure that says nothing about the client: no connection, or the server is
// shutting down / starting up / in recovery.
bool connectionLevelFailure(const std::string& serverError) {
  if (serverError.empty()) return true;
  auto f = parseErrorFields(asBytes(serverError).subspan(serverError.size() >= 5 ? 5 : 0));
  if (!f) return false;
  return f->code == "08006" || f->code == "08001" || f->code == "57P01" || f->code == "57P02" ||
         f->code == "57P03";
}

}  // namespace

void ClientSession::onServerLost(ServerConn& s, int status) noexcept {
  if (parkedLost(s)) return;
  spdlog::debug("client {}: server {} lost in state {} ({})", cancelPid_, s.id(), toString(state_),
                uv_strerror(status));
  const bool relaying = state_ == State::Active || state_ == State::OwnQuery;
  const ServerExchange& x = relay_.exchange();
  const bool wasIdle = x.quiet() && !x.inCopy() && s.txnStatus() == 'I';
  const bool midMessage = relay_.midMessage();
  // Only pgswitch's own question about a statement's result shape was out: the request it
  // was for has not started, and nothing is owed to the client.
  const bool notStarted =
      relaying && relay_.heldForShape() && relay_.sentNothing() && s.txnStatus() == 'I';
  const bool owed = x.owed() && !notStarted;
  const bool ended = x.owesReadyForQuery();  // a ReadyForQuery-ending request is outstanding
  const int readyOwed = x.readyForQueriesOwed();
  const bool commitInFlight = x.commitInFlight();
  // Outside a transaction block with a request in flight (other than a lone BEGIN, which the
  // replay takes): it may have taken effect (an autocommit write).
  const bool autocommit = owed && s.txnStatus() == 'I' && route_.forWrite();
  const bool replayable = loggedIn_ && relaying && !midMessage && settings_.movable() &&
                          relay_.replayable(s.txnStatus(), commitInFlight);
  relay_.unlinkLost();
  pool_ = nullptr;  // the server was its link to the pool
  worker_.addOutstanding(outstandingBackend_, -1);
  outstandingBackend_ = -1;
  if (cancelPid_) cancelSlot_.clear();
  inFlightShown_ = false;
  settings_.readbackLost();  // a session SET not read back yet cannot follow the client
  if (relay_.readyHeld()) {
    // The commit was acknowledged (its ReadyForQuery is here, held back until the LSN is
    // known); only its LSN is unknown. The client gets its answer, and reads go to the
    // primary until a replica has replayed everything the primary had when the LSN was last
    // known. Not only while asking for the LSN: a server that sends its FATAL (a fenced old
    // primary's backends are terminated) right behind the ReadyForQuery is lost before the
    // question is asked, and the client waited for that ReadyForQuery forever.
    route_.lsnLost(worker_.nowMs(), *cfg_);
    relay_.releaseReady();
  }
  if (state_ == State::Closing) return;
  AfterLoss& al = afterLoss();
  std::string serverSaid = std::exchange(al.serverFatal, std::string());
  if (replayable) prepareRebuild();
  if (!relay_.replay().replaying()) al.replayReadyOwed = readyOwed;  // the original loss's
  if (replayLost(replayable, owed, ended, commitInFlight, autocommit && !replayable)) return;
  // Lost while being brought to the client's settings, or while only pgswitch's question
  // was out: nothing of the request reached it, so it is routed again, away from that backend.
  const bool beforeRequest = state_ == State::Configure || notStarted;
  if (loggedIn_ && settings_.movable() && beforeRequest) {
    prepareRebuild();  // it may have been rebuilding there
    route_.retryElsewhere(s.pool().backend());
    idleAfterLoss();
    return;
  }
  // The client survives a lost server when it has no session state there: between
  // transactions it never notices; in a transaction it gets an error and stays connected.
  if (loggedIn_ && !settings_.pinned() && !midMessage && relaying && transactionPooling_ &&
      route_.retryLostRead(client_.in(), s.pool().backend())) {
    spdlog::info("client {}: read lost with backend {}; retrying it on another backend",
                 client_.peerName(), s.pool().backend());
    transitionTo(State::Idle);
    pump();
    return;
  }
  if (loggedIn_ && !settings_.movable()) {
    ++worker_.runtime().sessionsUnmovable;
    fatal("08006", "server connection lost",
          "The connection to the backend ended (" + std::string(uv_strerror(status)) +
              ") and this session had state no other server can be given: " +
              settings_.unmovableReason() + ".",
          "Reconnect and create it again.");
    return;
  }
  if (!loggedIn_ || midMessage || !relaying) {
    fatal("08006", "server connection lost",
          std::string("the connection to backend ended: ") + uv_strerror(status));
    return;
  }
  prepareRebuild();
  if (owed) {
    LostWork what = commitInFlight ? LostWork::CommitInFlight
                    : autocommit   ? LostWork::Autocommit
                                   : LostWork::Transaction;
    relay_.answerError(lostServerError(*cfg_, what, serverSaid), ended,
                       std::max(0, readyOwed - 1));
  } else if (!wasIdle) {
    // Idle inside a transaction: nothing is owed now. The transaction is gone; the client
    // learns it from the answer to its next request (as PostgreSQL would report it then).
    lostTxnPending_ = true;
  }
  idleAfterLoss();
}

void ClientSession::idleAfterLoss() {
  transitionTo(State::Idle);
  if (!client_.inputEmpty()) {
    pump();
  } else if (settings_.journal().listens()) {
    // A listening client may send nothing for long: its channels are listened to again on
    // the new primary now, so that notifications sent there from now on reach it.
    route_.toPrimary();
    requestServer();
  }
}

void ClientSession::onServerUnavailable(const PoolError& e) noexcept {
  spdlog::debug("client {}: no server ({}): {}", cancelPid_, int(e.kind), e.text);
  // The pool is done with this session (it may be deleted once empty).
  Pool* from = std::exchange(pool_, nullptr);
  if (state_ == State::Closing) return;
  switch (e.kind) {
    case PoolError::Kind::LoginFailed:
      if (connectionLevelFailure(e.serverError)) {
        // The backend is unreachable or going away (a failover in progress): wait for the
        // health thread to say where to go instead of failing the client. Reads avoid it.
        if (from) route_.avoid(from->backend());
        transitionTo(State::Holding);
        return;
      }
      if (!e.serverError.empty()) {
        client_.send(e.serverError);
        end(true);
        return;
      }
      fatal("08006", e.text);
      return;
    case PoolError::Kind::Timeout:
      if (relay_.replay().replaying()) {
        giveUpReplay(ReplayEnd::Abandoned, e.text);
        return;
      }
      if (loggedIn_ && !client_.inputEmpty()) {
        // The request is answered with an error and the connection stays usable (the client
        // may retry); a client still logging in is turned away, and so is a listening one
        // whose channels were to be restored (idleAfterLoss): it asked nothing to answer.
        relay_.failRequest(
            errorResponse("53300", e.text, "raise pool_size or query_wait_timeout_ms"));
        transitionTo(State::Idle);
        pump();  // requests pipelined behind the failed one
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
      requestServer();  // the backend went away while we waited for it: route again
      return;
  }
}

}  // namespace pgswitch::proxy
