// Extended protocol in transaction mode: client statement names are mapped to per-server
// names derived from the statement's hash, statements are prepared lazily on whichever
// server the client lands on, and the response stream is kept exactly as the client would
// see it from one PostgreSQL session (ParseComplete/CloseComplete added or swallowed in
// the right places, entries dropped after an error as PostgreSQL skips until Sync).
#include <spdlog/spdlog.h>

#include "protocol/builder.h"
#include "protocol/messages.h"
#include "proxy/session/client_session.h"

namespace pgswitch::proxy {

using namespace protocol;

namespace {
void putLength(std::string& b, size_t at) {
  uint32_t len = static_cast<uint32_t>(b.size() - at);
  for (int i = 0; i < 4; ++i) b[at + i] = static_cast<char>((len >> (24 - 8 * i)) & 0xff);
}
}  // namespace

void ClientSession::sendServerParse(uint64_t hash, std::string_view tail, Expect::Kind kind,
                                    std::string_view clientName) {
  Conn& sc = server_->conn();
  auto evicted = server_->statements().add(hash, static_cast<size_t>(cfg_->maxPreparedStatements),
                                           worker_.staleStatements().epoch());
  if (evicted) {
    build_.clear();
    MessageBuilder(build_).begin('C').u8('S').cstr(serverStatementName(*evicted)).finish();
    sc.send(build_);
    expect_.push_back({Expect::Kind::HiddenClose, *evicted});
  }
  build_.clear();
  build_.push_back('P');
  build_.append(4, '\0');
  build_ += serverStatementName(hash);
  build_.push_back('\0');
  build_.append(tail);
  putLength(build_, 1);
  sc.send(build_);
  expect_.push_back({kind, hash, std::string(clientName)});
}

// Whether this server has a usable copy of statement h. A copy prepared before h went stale
// (its result type changed: StaleStatements) is dropped here and closed on the server, ahead
// of the Parse the caller sends next.
bool ClientSession::serverHasStatement(uint64_t h) {
  ServerStatementCache& cache = server_->statements();
  if (!cache.contains(h)) return false;
  if (!worker_.staleStatements().isStale(h, cache.preparedAt(h))) {
    cache.touch(h);
    return true;
  }
  cache.erase(h);
  build_.clear();
  MessageBuilder(build_).begin('C').u8('S').cstr(serverStatementName(h)).finish();
  server_->conn().send(build_);
  expect_.push_back({Expect::Kind::HiddenClose, h});  // undone by restore(): stale again
  return false;
}

void ClientSession::ensureOnServer(const ClientStatement& cs) {
  if (serverHasStatement(cs.hash)) return;
  sendServerParse(cs.hash, cs.parseTail, Expect::Kind::HiddenParse, {});
}

namespace {

// Cheap pre-check before classifying: does the statement start with SET (any case)?
bool startsWithSet(std::string_view sql) {
  size_t i = 0;
  while (i < sql.size() && std::isspace(static_cast<unsigned char>(sql[i]))) ++i;
  return sql.size() >= i + 4 && (sql[i] | 0x20) == 's' && (sql[i + 1] | 0x20) == 'e' &&
         (sql[i + 2] | 0x20) == 't' && std::isspace(static_cast<unsigned char>(sql[i + 3]));
}

}  // namespace

bool ClientSession::rewriteParse(size_t total) {
  ByteQueue& in = client_->in();
  auto msg = in.contiguous(total, scratch_);
  auto body = msg.subspan(5);
  auto pv = parseParse(body);
  if (!pv) {
    in.consume(total);
    releaseServer();
    fatal("08P01", pv.error());
    return true;
  }
  if (pv->name.empty()) {  // the unnamed statement lives within one batch
    if (!pinned_ && (startsWithSet(pv->sql) ||
                     (server_->txnStatus() != 'I' && mayCreateSessionState(pv->sql))))
      noteStatementEffects(pv->sql);
    return false;
  }
  if (server_->txnStatus() != 'I' && !pinned_ && mayCreateSessionState(pv->sql))
    noteStatementEffects(pv->sql);
  std::string name(pv->name);
  std::string_view tail = asText(body.subspan(name.size() + 1));
  if (const ClientStatement* existing = stmts_.find(name)) {
    // PostgreSQL refuses to redefine a name (42P05): let the server say so, about the
    // statement that name stands for.
    ClientStatement copy = *existing;
    ensureOnServer(copy);
    build_.clear();
    build_.push_back('P');
    build_.append(4, '\0');
    build_ += serverStatementName(copy.hash);
    build_.push_back('\0');
    build_.append(tail);
    putLength(build_, 1);
    server_->conn().send(build_);
    expect_.push_back({Expect::Kind::Parse});
  } else {
    uint64_t h = statementHash(asBytes(tail));
    stmts_.put(name, ClientStatement{h, std::string(tail)});
    if (serverHasStatement(h)) {
      expect_.push_back({Expect::Kind::FakeParse, h, name});
    } else {
      sendServerParse(h, tail, Expect::Kind::Parse, name);
    }
  }
  in.consume(total);
  return true;
}

bool ClientSession::rewriteBind(size_t total) {
  ByteQueue& in = client_->in();
  size_t avail = std::min(total, in.size());
  auto prefix = in.contiguous(avail, scratch_);
  auto head = parseBindHead(prefix.subspan(5));
  if (!head) {
    if (avail == total) {
      in.consume(total);
      releaseServer();
      fatal("08P01", head.error());
      return true;
    }
    return false;  // names longer than the prefix: forward untouched
  }
  if (head->statement.empty()) return false;
  const ClientStatement* cs = stmts_.find(head->statement);
  // Unknown names go through unchanged: the server answers 26000 with the client's name.
  if (!cs) return false;
  if (startsWithSet(cs->parseTail)) {
    std::string_view t = cs->parseTail;
    noteStatementEffects(t.substr(0, t.find('\0')));
  }
  ensureOnServer(*cs);
  size_t restLen = total - 5 - head->restOffset;
  build_.clear();
  build_.push_back('B');
  build_.append(4, '\0');
  build_.append(head->portal);
  build_.push_back('\0');
  build_ += serverStatementName(cs->hash);
  build_.push_back('\0');
  uint32_t len = static_cast<uint32_t>(build_.size() - 1 + restLen);
  for (int i = 0; i < 4; ++i) build_[1 + i] = static_cast<char>((len >> (24 - 8 * i)) & 0xff);
  server_->conn().send(build_);
  expect_.push_back({Expect::Kind::Bind, cs->hash});
  in.consume(5 + head->restOffset);
  c2sPassthrough_ = restLen;  // parameters are forwarded by reference, not copied
  return true;
}

bool ClientSession::rewriteDescribe(size_t total) {
  ByteQueue& in = client_->in();
  auto msg = in.contiguous(total, scratch_);
  auto dv = parseDescribeClose(msg.subspan(5));
  if (!dv) {
    in.consume(total);
    releaseServer();
    fatal("08P01", dv.error());
    return true;
  }
  if (dv->kind != 'S' || dv->name.empty()) return false;
  const ClientStatement* cs = stmts_.find(dv->name);
  if (!cs) return false;
  if (startsWithSet(cs->parseTail)) {
    std::string_view t = cs->parseTail;
    noteStatementEffects(t.substr(0, t.find('\0')));
  }
  ensureOnServer(*cs);
  build_.clear();
  MessageBuilder(build_).begin('D').u8('S').cstr(serverStatementName(cs->hash)).finish();
  server_->conn().send(build_);
  expect_.push_back({Expect::Kind::Describe, cs->hash});
  in.consume(total);
  return true;
}

bool ClientSession::rewriteClose(size_t total) {
  ByteQueue& in = client_->in();
  auto msg = in.contiguous(total, scratch_);
  auto cv = parseDescribeClose(msg.subspan(5));
  if (!cv) {
    in.consume(total);
    releaseServer();
    fatal("08P01", cv.error());
    return true;
  }
  if (cv->kind != 'S' || cv->name.empty()) return false;
  // The server keeps the statement for other clients (bounded by the LRU); the client's
  // name is gone, which is all PostgreSQL promises. Until CloseComplete goes out the name is
  // kept aside: an error earlier in the batch means PostgreSQL skipped this Close.
  bool pending = false;
  for (const auto& e : expect_) pending |= e.kind == Expect::Kind::FakeClose;
  if (!pending) stmts_.clearCloses();  // leftovers of requests that were never answered
  stmts_.close(cv->name);
  expect_.push_back({Expect::Kind::FakeClose});
  in.consume(total);
  return true;
}

void ClientSession::emitFakes() {
  while (!expect_.empty()) {
    auto k = expect_.front().kind;
    if (k == Expect::Kind::FakeParse) {
      client_->send(std::string_view("1\0\0\0\4", 5));
    } else if (k == Expect::Kind::FakeClose) {
      client_->send(std::string_view("3\0\0\0\4", 5));
      stmts_.forgetOldestClose();
    } else {
      return;
    }
    expect_.pop_front();
  }
}

// Matches one completing response with the request it answers.
bool ClientSession::popFor(char type) {
  using K = Expect::Kind;
  auto front = expect_.empty() ? std::optional<K>() : std::optional<K>(expect_.front().kind);
  bool ok = false;
  bool pop = true;
  switch (type) {
    case be::ReadyForQuery:
      ok = front && (*front == K::Query || *front == K::Sync || *front == K::FunctionCall);
      break;
    case be::ParseComplete:
      ok = front && (*front == K::Parse || *front == K::HiddenParse);
      break;
    case be::BindComplete:
      ok = front == K::Bind;
      break;
    case be::CloseComplete:
      ok = front && (*front == K::Close || *front == K::HiddenClose);
      break;
    case be::NoData:
      ok = front == K::Describe;
      break;
    case be::RowDescription:
      // Also the header of a simple query's result set.
      ok = front && (*front == K::Describe || *front == K::Query);
      pop = front == K::Describe;
      break;
    case be::CommandComplete:
    case be::EmptyQuery:
      ok = front && (*front == K::Execute || *front == K::Query);
      pop = front == K::Execute;
      break;
    case be::PortalSuspended:
      ok = front == K::Execute;
      break;
    default:
      ok = true;
      pop = false;
  }
  if (!ok) {
    protocolDesync("unexpected response from server");
    return false;
  }
  if (pop) {
    const Expect& e = expect_.front();
    if (type == be::ParseComplete && e.hash) worker_.rememberStatement(e.hash);
    expect_.pop_front();
  }
  return true;
}

void ClientSession::popAfterError(std::string_view sqlstate) {
  using K = Expect::Kind;
  if (expect_.empty()) return;  // e.g. FATAL on an idle connection
  K f = expect_.front().kind;
  if (f == K::Query || f == K::FunctionCall || f == K::Sync) return;  // ReadyForQuery follows
  if ((f == K::Bind || f == K::Describe) && expect_.front().hash && server_) {
    uint64_t h = expect_.front().hash;
    // 0A000 "cached plan must not change result type": DDL changed the statement's result
    // type, so every copy prepared before now is unusable, on this server and on the others
    // of this worker; each is prepared again before its next use, and the client's retry
    // (pgjdbc retries once) works as on PostgreSQL. 26000: this server does not have it.
    if (sqlstate == "0A000") worker_.staleStatements().markStale(h);
    if (sqlstate == "26000") server_->statements().erase(h);
  }
  // An extended-protocol error: the server skips everything up to Sync, so what pgswitch
  // recorded for those messages is undone, newest first (a skipped "Close s; Parse s" must
  // leave the old s).
  size_t n = 0;
  while (n < expect_.size() && expect_[n].kind != K::Sync) ++n;
  for (size_t i = n; i-- > 0;) {
    const Expect& e = expect_[i];
    switch (e.kind) {
      case K::Parse:
      case K::HiddenParse:
      case K::FakeParse:
        if (e.kind != K::FakeParse && e.hash && server_) server_->statements().erase(e.hash);
        if (!e.clientName.empty()) stmts_.erase(e.clientName);
        break;
      case K::HiddenClose:
        // pgswitch's eviction did not happen: the server still has the statement.
        if (e.hash && server_) server_->statements().restore(e.hash);
        break;
      case K::FakeClose:
        stmts_.undoLastClose();
        break;
      default:
        break;
    }
  }
  expect_.erase(expect_.begin(), expect_.begin() + static_cast<std::ptrdiff_t>(n));
  if (expect_.empty()) discardUntilSync_ = true;
}

void ClientSession::onCommandTag(std::string_view tag) {
  if (tag == "SET") {
    ++setTags_;
    return;
  }
  if (!transactionPooling_) {
    if (tag == "DISCARD ALL" || tag == "DEALLOCATE ALL") server_->statements().clear();
  }
  if (transactionPooling_ && (tag == "DISCARD ALL" || tag == "DEALLOCATE ALL")) {
    server_->statements().clear();
    stmts_.clear();
    if (tag == "DISCARD ALL") {
      // As on PostgreSQL: back to the startup packet's settings, everything SET since is
      // gone. This server reset to its own defaults; the next link brings it to these.
      server_->appliedGucs().clear();
      gucs_ = startupGucs_;
      gucsHash_ = 0;
      readback_.clear();
    }
    return;
  }
  const char* reason = nullptr;
  if (tag == "PREPARE") reason = "SQL-level PREPARE";
  if (tag == "LISTEN") reason = "LISTEN";
  // DECLARE CURSOR pins only WITH HOLD (the classifier sees that, relay.cc): a plain cursor
  // ends with its transaction.
  if (reason && !pinned_) {
    pinned_ = true;
    pinReason_ = reason;
    spdlog::debug("client {} pinned to server {}: {}", client_->peerName(), server_->id(), reason);
  }
}

}  // namespace pgswitch::proxy
