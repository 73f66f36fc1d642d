// Matching server responses to client requests, and undoing what an error makes the server
// skip.
#include "proxy/session/server_exchange.h"

#include <optional>

#include "protocol/builder.h"
#include "protocol/messages.h"

namespace pgswitch::proxy {

using namespace protocol;
using K = Expect::Kind;

void ServerExchange::push(K k, uint64_t h) {
  flushAsked_ = false;
  expect_.emplace_back(k, h).copyEnds = copyEnds_;
}

void ServerExchange::expect(Expect e) {
  e.copyEnds = copyEnds_;
  flushAsked_ = false;
  if (e.kind == K::HiddenDescribe) ++shapeQuestions_;
  expect_.push_back(std::move(e));
}

void ServerExchange::drop(size_t at, size_t n) {
  for (size_t i = at; i < at + n; ++i) shapeQuestions_ -= expect_[i].kind == K::HiddenDescribe;
  if (at == 0) {
    expect_.erase_front(n);
  } else {
    for (size_t i = 0; i < n; ++i) expect_.erase(at);
  }
}

bool ServerExchange::consumedByCopy(char type) {
  if (type == fe::CopyDone || type == fe::CopyFail) {
    ++copyEnds_;
    copyInOpen_ = false;
    return true;
  }
  if (!copyInOpen_) return false;
  if (type == fe::CopyData || type == fe::Sync || type == fe::Flush) return true;
  ++copyEnds_;  // ends the copy, with an error
  copyInOpen_ = false;
  return true;
}

void ServerExchange::forwarded(char type) {
  if (consumedByCopy(type)) return;
  switch (type) {
    case fe::Query:
      push(K::Query);
      return;
    case fe::FunctionCall:
      push(K::FunctionCall);
      return;
    case fe::Sync:
      push(K::Sync);
      discardUntilSync_ = false;
      unsynced_ = false;
      return;
    case fe::Parse:
      push(K::Parse);
      break;
    case fe::Bind:
      push(K::Bind);
      break;
    case fe::Describe:
      push(K::Describe);
      break;
    case fe::Execute:
      push(K::Execute);
      break;
    case fe::Close:
      push(K::Close);
      break;
    case fe::Flush:
      flushAsked_ = true;
      break;
    default:
      return;  // COPY data outside a copy (PostgreSQL ignores it) and the like
  }
  unsynced_ = true;
}

void ServerExchange::copyInStarted() {
  inCopy_ = true;
  if (expect_.empty()) return;
  // Entries sent behind the COPY and before any CopyDone/CopyFail reached the server while it
  // was copying.
  const uint32_t at = expect_.front().copyEnds;
  copyInOpen_ = copyEnds_ == at;
  for (size_t i = 1; i < expect_.size() && expect_[i].copyEnds == at;) {
    const K k = expect_[i].kind;
    if (k == K::Sync) {
      expect_.erase(i);  // ignored there
      if (commitReadies_ > 1) --commitReadies_;  // a COMMIT behind it: one ReadyForQuery less
      continue;
    }
    if (answeredByUs(k)) {  // never reached the server
      ++i;
      continue;
    }
    // The first other message ended the copy with an error and was discarded. (A client
    // name it defined stays in the books: its later use gets the server's 26000.)
    drop(i);
    copyInOpen_ = false;
    break;
  }
}

void ServerExchange::syncedByUs() {
  push(K::HiddenSync);
  discardUntilSync_ = false;
  unsynced_ = false;
}

ServerExchange::Response ServerExchange::onResponse(char type) {
  auto front = expect_.empty() ? std::optional<K>() : std::optional<K>(expect_.front().kind);
  bool ok = false;
  bool pop = true;
  Response r;
  switch (type) {
    case be::ReadyForQuery:
      ok = front && (*front == K::Query || *front == K::Sync || *front == K::FunctionCall ||
                     *front == K::HiddenSync);
      if (ok && *front == K::HiddenSync) r.verdict = Verdict::Swallow;
      inCopy_ = copyInOpen_ = false;
      if (commitReadies_ > 0) --commitReadies_;
      break;
    case be::ParseComplete:
      ok = front && (*front == K::Parse || *front == K::HiddenParse);
      if (ok && *front == K::HiddenParse) r.verdict = Verdict::Swallow;
      break;
    case be::BindComplete:
      ok = front == K::Bind;
      break;
    case be::CloseComplete:
      ok = front && (*front == K::Close || *front == K::HiddenClose);
      if (ok && *front == K::HiddenClose) r.verdict = Verdict::Swallow;
      break;
    case be::ParameterDescription:
      if (front == K::HiddenDescribe) r.verdict = Verdict::Swallow;
      return r;
    case be::NoData:
    case be::RowDescription: {
      const bool ours = front == K::HiddenDescribe || front == K::DescribeParams;
      // RowDescription is also the header of a simple query's result set.
      ok = front == K::Describe || ours || (type == be::RowDescription && front == K::Query);
      pop = front != K::Query;
      if (ours) r.verdict = Verdict::Swallow;
      break;
    }
    case be::CommandComplete:
    case be::EmptyQuery:
      ok = front && (*front == K::Execute || *front == K::Query);
      pop = front == K::Execute;
      break;
    case be::PortalSuspended:
      ok = front == K::Execute;
      break;
    case be::CopyInResponse:
      copyInStarted();
      return r;
    case be::CopyOutResponse:
    case be::CopyBothResponse:
      inCopy_ = true;
      return r;
    default:  // DataRow, notices, notifications, COPY data, ParameterStatus...
      return r;
  }
  if (!ok) {
    r.verdict = Verdict::Desync;
    return r;
  }
  if (pop) {
    if (type == be::ParseComplete) r.parsed = expect_.front().hash;
    drop(0);
  }
  return r;
}

void ServerExchange::error(std::string_view sqlstate, StatementBooks books) {
  copyInOpen_ = false;  // an error ends a COPY IN
  if (expect_.empty()) return;  // e.g. FATAL on an idle connection
  K f = expect_.front().kind;
  if (f == K::Query || f == K::FunctionCall || f == K::Sync || f == K::HiddenSync)
    return;  // ReadyForQuery follows
  if ((f == K::Bind || f == K::Describe || f == K::HiddenDescribe || f == K::DescribeParams) &&
      expect_.front().hash && books.server && !expect_.front().resultTypeChanged) {
    uint64_t h = expect_.front().hash;
    // 0A000 "cached plan must not change result type": DDL changed the statement's result
    // type, so every copy prepared before now is unusable, on this server and on the others
    // of this worker; each is prepared again before its next use, and the client's retry
    // (pgjdbc retries once) works as on PostgreSQL. 26000: this server does not have it.
    if (sqlstate == "0A000" && books.stale) books.stale->markStale(h);
    if (sqlstate == "26000") books.server->erase(h);
  }
  // The server skips everything up to Sync, so what pgswitch recorded for those messages is
  // undone, newest first (a skipped "Close s; Parse s" must leave the old s).
  size_t n = 0;
  while (n < expect_.size() && expect_[n].kind != K::Sync && expect_[n].kind != K::HiddenSync) ++n;
  for (size_t i = n; i-- > 0;) {
    const Expect& e = expect_[i];
    switch (e.kind) {
      case K::Parse:
      case K::HiddenParse:
      case K::FakeParse:
        if (e.kind != K::FakeParse && e.hash && books.server) books.server->erase(e.hash);
        if (!e.clientName.empty()) books.client.erase(e.clientName);
        break;
      case K::HiddenClose:
        // pgswitch's eviction did not happen: the server still has the statement.
        if (e.hash && books.server) books.server->restore(e.hash);
        break;
      case K::FakeClose:
        books.client.undoLastClose();
        break;
      default:
        break;
    }
  }
  drop(0, n);
  if (expect_.empty()) discardUntilSync_ = true;
}

void ServerExchange::appendOwedFakes(std::string& out, ClientStatements& client) {
  while (!expect_.empty() && answeredByUs(expect_.front().kind)) {
    if (expect_.front().kind == K::FakeParse) {
      appendParseComplete(out);
    } else {
      appendCloseComplete(out);
      client.forgetOldestClose();
    }
    expect_.pop_front();
  }
}

bool ServerExchange::syncingByUs() const {
  for (const auto& e : expect_)
    if (e.kind == K::HiddenSync) return true;
  return false;
}

bool ServerExchange::closePending() const {
  for (const auto& e : expect_)
    if (e.kind == K::FakeClose) return true;
  return false;
}

bool ServerExchange::idle() const {
  return expect_.empty() && !unsynced_ && !inCopy_ && !discardUntilSync_;
}

bool ServerExchange::owesReadyForQuery() const {
  for (const auto& e : expect_)
    if (e.kind == K::Query || e.kind == K::Sync || e.kind == K::FunctionCall) return true;
  return false;
}

int ServerExchange::readyForQueriesOwed() const {
  int n = 0;
  for (const auto& e : expect_)
    n += e.kind == K::Query || e.kind == K::Sync || e.kind == K::FunctionCall;
  return n;
}

void ServerExchange::reset() {
  expect_.clear();
  unsynced_ = discardUntilSync_ = inCopy_ = copyInOpen_ = flushAsked_ = false;
  copyEnds_ = 0;
  commitReadies_ = 0;
  shapeQuestions_ = 0;
}

}  // namespace pgswitch::proxy
