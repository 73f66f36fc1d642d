// Read scaling in session mode (routing.session_reads): the client's own primary server,
// parked while a read runs on a replica and taken back for everything else, and the fallback
// to that server alone once the session has state a replica cannot share. Routing, SET
// carrying and prepared statements are transaction mode's (Config::routesRequests).
#include <spdlog/spdlog.h>

#include <utility>

#include "proxy/session/client_session.h"

namespace pgswitch::proxy {

// The server stays linked to this session (ServerConn::user) while parked, so its loss
// reaches parkedLost; it is only unlinked from the relay. Only an idle, clean server on the
// primary is parked: one with something in flight, or a replica, goes back to its pool.
bool ClientSession::parkPrimary(ServerConn& s, bool clean) {
  if (onReplica_ || !clean || state_ == State::Closing || settings_.pinned()) return false;
  if (parked_ && parked_ != &s) releaseParked();  // cannot happen: one primary at a time
  parked_ = &s;
  return true;
}

ServerConn* ClientSession::takeParked(Pool& to, bool forPrimary) {
  if (!parked_) return nullptr;
  if (&parked_->pool() != &to) {
    // The primary moved (failover, switchover): the parked server is on the old one. Its
    // settings live in SessionState and follow the client to the new primary's server.
    if (forPrimary) releaseParked();
    return nullptr;
  }
  ServerConn* s = std::exchange(parked_, nullptr);
  if (!s->conn().inputEmpty() || s->txnStatus() != 'I' ||
      s->state() == ServerConn::State::Closing) {
    // It spoke while idle (a FATAL on its way, a notice): not trusted with the request.
    s->pool().release(*s, false, true);
    return nullptr;
  }
  return s;
}

// The client leaves (or its primary moved): the server goes back to its pool, reset first as
// in session mode.
void ClientSession::releaseParked() {
  ServerConn* s = std::exchange(parked_, nullptr);
  if (!s) return;
  const bool clean =
      s->conn().inputEmpty() && s->txnStatus() == 'I' && s->state() != ServerConn::State::Closing;
  s->pool().release(*s, clean, true);
}

// Parked, it held no transaction and no session state beyond what SessionState carries: the
// next request that needs the primary gets another server, brought to the client's settings.
bool ClientSession::parkedLost(ServerConn& s) {
  if (&s != parked_) return false;
  parked_ = nullptr;
  spdlog::debug("client {}: its parked primary server {} was lost; the next write gets another",
                cancelPid_, s.id());
  return true;
}

void ClientSession::noteSessionReadsFallback() {
  if (std::exchange(fallbackNoted_, true)) return;
  ++worker_.runtime().sessionReadsFallbacks;
  spdlog::info("client {}: {}: reads stay on the primary from now on (session_reads)",
               client_.peerName(), settings_.pinReason());
}

void ClientSession::countSessionRead() { ++worker_.runtime().sessionReads; }

}  // namespace pgswitch::proxy
