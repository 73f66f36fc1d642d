// Session state carried across a failover (docs/failover.md, "Session state"): a session-mode
// client (or a pinned transaction-mode client) whose server was lost gets its settings
// (SessionState: startup, reported and read-back SETs), its prepared statements (SQL PREPARE
// and, in session mode, protocol-level named statements) and its LISTEN channels rebuilt on
// the next server, before its next request runs there. State no other server can be given
// (temporary tables, advisory locks, WITH HOLD cursors) still ends the session, saying which.
#include <spdlog/spdlog.h>

#include "protocol/builder.h"
#include "proxy/session/client_session.h"
#include "routing/session_sql.h"

namespace pgswitch::proxy {

bool ClientSession::prepareRebuild() {
  if (!settings_.movable()) return false;
  if (!settings_.journal().empty()) {
    AfterLoss& al = afterLoss();
    al.rebuildPending = true;
    al.rebuildNext = 0;
  }
  return true;
}

bool ClientSession::rebuildStep(ServerConn& s) {
  if (!afterLoss_ || !afterLoss_->rebuildPending) return false;
  AfterLoss& al = *afterLoss_;
  const auto& entries = settings_.journal().entries();
  if (al.rebuildNext >= entries.size()) {
    al.rebuildPending = false;
    spdlog::info("client {}: session state rebuilt on server {} ({} LISTEN and prepared "
                 "statements)",
                 client_.peerName(), s.id(), entries.size());
    ++worker_.runtime().sessionsRebuilt;
    return false;
  }
  const SessionJournal::Entry& e = entries[al.rebuildNext++];
  al.rebuildStepRunning = true;
  if (e.kind == SessionJournal::Entry::Kind::Parse) {
    thread_local std::string out;
    out.assign(e.bytes);
    protocol::appendSync(out);
    s.runInternalMessages(out);
  } else {
    s.runInternal(e.bytes);
  }
  return true;
}

bool ClientSession::readBackSetting(ServerConn& s) {
  if (!settings_.readbackDue() || !settings_.movable()) return false;
  own_ = Own::Readback;
  transitionTo(State::OwnQuery);
  client_.stopReading();
  s.runInternal(routing::currentSettingQuery(settings_.nextReadback()));
  return true;
}

}  // namespace pgswitch::proxy
