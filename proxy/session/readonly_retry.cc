// The retry decision for a read that wrote on a replica (or met a conflict with recovery
// there): only a 25006 or 40001 that comes before any
// byte of the answer reached the client, in a request that ends alone and leaves the server
// outside a transaction, is taken back.
#include "proxy/session/readonly_retry.h"

#include "protocol/messages.h"

namespace pgswitch::proxy {

ReadOnlyRetry::Step ReadOnlyRetry::release() {
  // Whatever was said to Hold (a RowDescription, the error) goes out first.
  Step s = heldAny_ || state_ == State::Failed ? Step::Release : Step::Forward;
  state_ = State::Off;
  rowDescHeld_ = heldAny_ = false;
  return s;  // held() stays readable until the next arm()/disarm()
}

ReadOnlyRetry::Step ReadOnlyRetry::onMessage(char type, bool complete, size_t total,
                                             std::string_view sqlstate, char readyStatus,
                                             bool requestAlone) {
  switch (state_) {
    case State::Off:
      return Step::Forward;
    case State::Armed:
      // PostgreSQL describes the result before it runs the statement (and, in an extended
      // batch, confirms Parse and Bind first): keep that until it is known whether the
      // statement fails. One RowDescription only: a second one is the next statement of a
      // multi-statement Query, after the first ran.
      if (complete && held_.size() + total <= kHoldLimit &&
          ((type == protocol::be::RowDescription && !rowDescHeld_) ||
           type == protocol::be::ParseComplete || type == protocol::be::BindComplete ||
           type == protocol::be::ParameterDescription || type == protocol::be::NoData)) {
        rowDescHeld_ |= type == protocol::be::RowDescription;
        heldAny_ = true;
        return Step::Hold;
      }
      // 25006: the read wrote after all. 40001 on a replica: a conflict with recovery
      // (replayed WAL removed rows or locks the read needed) cancelled it.
      if (type == protocol::be::ErrorResponse && complete &&
          (sqlstate == "25006" || sqlstate == "40001")) {
        state_ = State::Failed;
        recoveryConflict_ = sqlstate == "40001";
        return Step::Hold;
      }
      return release();
    case State::Failed:
      // 'I': the implicit transaction ended with the error; the request may run elsewhere.
      // Inside an explicit transaction (or with more owed) the client must see the error.
      if (type == protocol::be::ReadyForQuery && readyStatus == 'I' && requestAlone) {
        state_ = State::Off;
        rowDescHeld_ = heldAny_ = false;
        held_.clear();
        return Step::Retry;
      }
      return release();
  }
  return Step::Forward;
}

}  // namespace pgswitch::proxy
