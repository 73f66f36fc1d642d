// Transaction replay, the session's side (docs/failover.md): when the server of a transaction
// on the primary is lost, the transaction is run again on the new primary and the client
// goes on if the replay gives the answers it already has (TxnReplay compares them); else the
// replayed transaction is rolled back and the client gets the retryable error it got before
// replays existed. Never for what may have committed: a COMMIT in flight, an autocommit
// statement in flight.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "proxy/session/client_session.h"
#include "proxy/session/session_errors.h"

namespace pgswitch::proxy {

namespace {

// Lost again while verifying this many times: the replay is given up.
constexpr int kMaxReplayAttempts = 3;

}  // namespace

bool ClientSession::replayLost(bool replayable, bool owed, bool ended, bool commitInFlight,
                               bool autocommit) {
  TxnReplay& rp = relay_.replayLog();
  auto& counts = worker_.runtime().replays;
  if (rp.replaying()) {
    // Lost again before the replay was verified (the pool handed out a connection to the old
    // primary that had not been noticed dead, or the new one went too): start over.
    if (rp.attempts() >= kMaxReplayAttempts) {
      giveUpReplay(ReplayEnd::Abandoned, "the server was lost again during each replay");
      return true;
    }
    rp.again(client_.in());
  } else if (replayable && rp.attempts() < kMaxReplayAttempts) {
    rp.replay(client_.in());
    AfterLoss& al = afterLoss();
    al.replayOwed = owed;
    al.replayEnded = ended;
    al.replayStartMs = worker_.nowMs();
    ++counts.attempted;
    spdlog::info("client {}: server lost inside a transaction; replaying it on the primary",
                 client_.peerName());
  } else {
    if (replayable) {
      // Replayed already, and lost again once it went on: the server dies at this point.
      ++counts.abandoned;
      spdlog::info("client {}: transaction replay refused: lost again after {} replays",
                   client_.peerName(), rp.attempts());
    } else if (rp.recording()) {
      // Counted only where the client has something to lose: a transaction, or a request in
      // flight.
      if (commitInFlight || (owed && rp.spoiled() == TxnReplay::Spoiled::CommitSent)) {
        ++counts.commitInFlight;
      } else if (rp.spoiled() == TxnReplay::Spoiled::TooLarge) {
        ++counts.tooLarge;
      } else if (owed || autocommit) {
        ++counts.notReplayable;
      }
    }
    rp.stop();
    return false;
  }
  route_.replayOnPrimary();
  transitionTo(State::Idle);
  requestServer();
  return true;
}

bool ClientSession::replayAnswered() {
  TxnReplay& rp = relay_.replayLog();
  if (!rp.replaying() || state_ != State::Active) return true;
  switch (rp.verdict()) {
    case TxnReplay::Verdict::Match:
      rp.finish(client_.in());
      ++worker_.runtime().replays.succeeded;
      spdlog::info("client {}: transaction replayed on the primary; the client goes on",
                   client_.peerName());
      if (!client_.inputEmpty()) pump();  // what the client sent meanwhile
      return state_ == State::Active;
    case TxnReplay::Verdict::Mismatch:
      giveUpReplay(ReplayEnd::Mismatch, "its answers differ from what the client already got");
      return false;
    case TxnReplay::Verdict::Pending:
      break;
  }
  // Everything replayed is answered and the answers fell short of what the client had.
  ServerConn* s = relay_.server();
  if (rp.holdsInput() && !relay_.exchange().owed() && s && s->conn().inputEmpty()) {
    giveUpReplay(ReplayEnd::Mismatch, "it gave fewer answers than the client already got");
    return false;
  }
  return true;
}

void ClientSession::giveUpReplay(ReplayEnd why, std::string_view reason) {
  auto& counts = worker_.runtime().replays;
  ++(why == ReplayEnd::Mismatch ? counts.mismatched : counts.abandoned);
  spdlog::info("client {}: transaction replay refused: {}", client_.peerName(), reason);
  relay_.dropReplay();  // the replayed bytes still unread are the client's lost request
  if (relay_.server()) releaseServer(false);  // closed: the replayed transaction rolls back
  AfterLoss& al = afterLoss();
  if (al.replayOwed) {
    relay_.answerError(lostServerError(*cfg_, LostWork::Transaction, {}), al.replayEnded,
                       std::max(0, al.replayReadyOwed - 1));
  } else {
    lostTxnPending_ = true;  // told at its next request
  }
  al.replayOwed = al.replayEnded = false;
  if (state_ == State::Closing) return;
  transitionTo(State::Idle);
  if (!client_.inputEmpty()) pump();
}

}  // namespace pgswitch::proxy
