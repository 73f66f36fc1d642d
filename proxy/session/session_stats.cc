// A client session's observability: the per-backend counters the relay feeds (bytes each
// way, requests and transactions completed, latency from the first byte of a request to its
// ReadyForQuery), its SHOW CLIENTS row, and whether SHUTDOWN WAIT may end it now.
#include "proxy/session/client_session.h"

namespace pgswitch::proxy {

namespace {

// Microseconds, monotonic (uv_hrtime reads the vDSO clock: no syscall).
uint64_t nowUs() { return uv_hrtime() / 1000; }

const char* stateName(ClientSession::State s) {
  switch (s) {
    case ClientSession::State::Startup:
    case ClientSession::State::Auth: return "login";
    case ClientSession::State::WaitServer: return "waiting";
    case ClientSession::State::Configure:
    case ClientSession::State::Active: return "active";
    case ClientSession::State::Idle: return "idle";
    case ClientSession::State::Console: return "console";
    case ClientSession::State::Closing: return "closing";
  }
  return "?";
}

}  // namespace

void ClientSession::countIn(size_t bytes) {
  if (!pool_) return;
  worker_.counters(pool_->backend()).bytesIn += bytes;
  if (reqStartUs_ == 0) reqStartUs_ = nowUs();
}

void ClientSession::countOut(size_t bytes) {
  if (pool_) worker_.counters(pool_->backend()).bytesOut += bytes;
}

void ClientSession::countReady(char txnStatus) {
  if (!pool_) return;
  BackendCounters& k = worker_.counters(pool_->backend());
  ++k.queries;
  if (txnStatus == 'I') ++k.transactions;
  uint64_t now = nowUs();
  if (reqStartUs_) k.latency.add(now - reqStartUs_);
  // A pipelining client already sent its next request: it has been waiting since now.
  reqStartUs_ = expect_.empty() ? 0 : now;
}

ClientInfo ClientSession::info(uint64_t nowMs) const {
  ClientInfo ci;
  ci.worker = worker_.id();
  ci.id = cancelPid_;
  ci.user = user_;
  ci.database = database_;
  for (const auto& [k, v] : gucs_) {
    if (k == "application_name") ci.applicationName = v;
  }
  ci.addr = client_->peerName();
  ci.state = stateName(state_);
  ci.connectedMs = nowMs - std::min(nowMs, startedMs_);
  ci.serverId = server_ ? server_->id() : 0;
  ci.pinned = pinned_;
  ci.pinReason = pinReason_;
  return ci;
}

bool ClientSession::quiescent() const {
  switch (state_) {
    case State::Startup:
    case State::Auth:
    case State::Idle:
    case State::Console:
      return true;
    case State::WaitServer:
      // No request has reached a server yet; a login or a held request ends cleanly.
      return !server_;
    case State::Configure:
    case State::Closing:
      return false;
    case State::Active:
      return server_ && idleBetweenTransactions() && client_->in().empty() &&
             server_->conn().in().empty();
  }
  return false;
}

}  // namespace pgswitch::proxy
