// The session's clocks, run by the worker's janitor once a second: login timeout, the
// deadline of a held request (failover, PAUSE), a client stalled in the middle of a message,
// a replay that does not finish, and PostgreSQL's idle timeouts.
#include <spdlog/spdlog.h>

#include "proxy/session/client_session.h"
#include "proxy/session/session_errors.h"

namespace pgswitch::proxy {

void ClientSession::janitor(uint64_t now) {
  auto cfg = worker_.runtime().config();
  switch (state_) {
    case State::Startup:
    case State::Auth:
      // A client that never finishes logging in (PostgreSQL's authentication_timeout).
      if (now - startedMs_ >= static_cast<uint64_t>(cfg->clientLoginTimeoutMs)) {
        ++worker_.runtime().loginTimeouts;
        abort();
      }
      return;
    case State::Holding: {
      // PAUSE holds a request up to query_wait_timeout_ms (0: until RESUME), a failover up
      // to failover_wait_ms.
      const bool paused = worker_.runtime().pause.paused(database());
      const uint64_t limit = static_cast<uint64_t>(paused ? cfg->queryWaitTimeoutMs
                                                          : cfg->failover.failoverWaitMs);
      if ((paused && limit == 0) || now - holdSinceMs_ < limit) {
        retryHold();
        return;
      }
      const char* code = paused ? "53300" : "57P03";
      std::string msg = paused ? "query_wait_timeout: database \"" + database() +
                                     "\" is paused (PAUSE) since " +
                                     std::to_string(now - holdSinceMs_) + " ms"
                               : "no primary server is available";
      const char* hint = paused ? "An operator paused the database; it accepts requests again "
                                  "after RESUME."
                                : "pgswitch waited failover_wait_ms for a primary";
      if (!loggedIn_) {
        fatal(code, msg, {}, hint);
        return;
      }
      if (relay_.replay().replaying()) {
        giveUpReplay(ReplayEnd::Abandoned, "no primary within failover_wait_ms");
        return;
      }
      if (client_.inputEmpty()) {
        // No request of the client's waits: a listening client was to get its channels back
        // on a new server (idleAfterLoss). An error now would answer nothing it asked.
        fatal(code, msg, "Its LISTEN could not be restored on another server.", hint);
        return;
      }
      relay_.failRequest(errorResponse(code, msg, hint));
      transitionTo(State::Idle);
      pump();  // requests pipelined behind the failed one
      return;
    }
    case State::Queued:
    case State::AwaitReplica:  // the worker's replica-wait timer ends it within max_wait_ms
    case State::Configure:
    case State::OwnQuery:
    case State::Closing:
      return;
    case State::Active:
    case State::Idle:
      // Stopped in the middle of a message (reading, so not held back by pgswitch): any
      // server it holds waits for bytes that may never come.
      if (client_.reading() && now - lastActivityMs_ >= uint64_t(cfg->clientStallTimeoutMs) &&
          relay_.clientMidMessage()) {
        stalled(now - lastActivityMs_);
        return;
      }
      if (state_ == State::Active && relay_.replay().verifying() &&
          now - afterLoss().replayStartMs >= uint64_t(cfg->failover.failoverWaitMs)) {
        giveUpReplay(ReplayEnd::Abandoned, "not done within failover_wait_ms");
        return;
      }
      if (state_ == State::Active && relay_.exchange().pending() > 0) return;  // answer owed
      break;
    case State::Console:
      break;
  }
  // A read whose bytes the server's socket took only later (uv_write, not uv_try_write) left
  // its emptied chunk here; an idle client holds none (Conn::onRead gives back the rest).
  client_.releaseDrainedInput();
  uint64_t quiet = now - std::max(lastActivityMs_, startedMs_);
  bool inTxn = relay_.server() && relay_.server()->txnStatus() != 'I';
  if (inTxn && cfg->idleTransactionTimeoutS > 0 &&
      quiet >= uint64_t(cfg->idleTransactionTimeoutS) * 1000) {
    terminate("25P03", "terminating connection due to idle-in-transaction timeout");
    return;
  }
  if (!inTxn && cfg->clientIdleTimeoutS > 0 && quiet >= uint64_t(cfg->clientIdleTimeoutS) * 1000) {
    terminate("57P05", "terminating connection due to idle-session timeout");
    return;
  }
  // Quiet for a while with no server: the lists kept so that the next request allocates
  // nothing go back (issue 14: memory per idle client). Not sooner, so that a client sending
  // a request every few milliseconds still allocates nothing per request.
  if (state_ == State::Idle && !relay_.server() && quiet >= kShrinkIdleAfterMs) {
    if (afterLoss_ && !afterLoss_->rebuildPending && !afterLoss_->rebuildStepRunning &&
        !afterLoss_->replayOwed && !relay_.replay().replaying())
      afterLoss_.reset();
    client_.shrinkIdle();
    relay_.shrinkIdle();
    route_.shrinkIdle();
  }
}

void ClientSession::stalled(uint64_t forMs) {
  ++worker_.runtime().stalledClients;
  spdlog::warn("client {}: no bytes for {} ms in the middle of a message; closing it",
               client_.peerName(), forMs);
  releaseServer(false);  // it holds part of a message: unusable
  fatal("08P01", "incomplete message from client",
        "No bytes arrived for " + std::to_string(forMs) +
            " ms in the middle of a message (client_stall_timeout_ms).");
}

}  // namespace pgswitch::proxy
