// Statement name mapping for transaction mode: lazily prepared pgsw_<hash> statements, stale
// copies closed and prepared again, the per-server LRU.
#include "proxy/session/statement_map.h"

#include "protocol/builder.h"
#include "protocol/messages.h"

namespace pgswitch::proxy {

using namespace protocol;

namespace {

std::string_view untilNul(std::string_view s) { return s.substr(0, s.find('\0')); }

// A statement name no server has: a Bind or Describe sent under it fails as PostgreSQL's does
// when the statement's result type changed, and the server skips to Sync as it would then.
constexpr std::string_view kResultTypeChanged = "pgsw_result_type_changed";

StatementMap::Result invalid(const char* why) {
  StatementMap::Result r;
  r.outcome = StatementMap::Outcome::Invalid;
  r.error = why;
  return r;
}

}  // namespace

void StatementMap::prepare(uint64_t h, std::string_view tail, Expect::Kind kind,
                           std::string_view clientName, const StatementTarget& t) {
  auto evicted = t.cache.add(h, t.capacity, t.stale.epoch());
  if (evicted) {
    appendClose(t.toServer, 'S', serverStatementName(*evicted));
    t.exchange.expect({Expect::Kind::HiddenClose, *evicted});
  }
  appendParse(t.toServer, serverStatementName(h), tail);
  t.exchange.expect({kind, h, std::string(clientName)});
}

// Whether the server has a usable copy of statement h. A copy prepared before h went stale
// (its result type changed: StaleStatements) is dropped here and closed on the server, ahead
// of the Parse the caller sends next.
bool StatementMap::onServer(uint64_t h, const StatementTarget& t) {
  if (!t.cache.contains(h)) return false;
  if (!t.stale.isStale(h, t.cache.preparedAt(h))) {
    t.cache.touch(h);
    return true;
  }
  t.cache.erase(h);
  appendClose(t.toServer, 'S', serverStatementName(h));
  t.exchange.expect({Expect::Kind::HiddenClose, h});  // undone by restore(): stale again
  return false;
}

StatementMap::Shape StatementMap::shapeOnServer(const ClientStatement& cs,
                                                const StatementTarget& t) {
  if (cs.shape.shape == 0 || t.txnStatus == 'E') return Shape::Same;
  const KnownShape copy = t.cache.shape(cs.hash);
  if (copy.shape == 0) return Shape::Unknown;
  if (copy.shape == cs.shape.shape) return Shape::Same;
  return copy.learned > cs.shape.learned ? Shape::Changed : Shape::Outdated;
}

StatementMap::Shape StatementMap::checkShape(const ClientStatement& cs, const StatementTarget& t) {
  if (!onServer(cs.hash, t)) prepare(cs.hash, cs.parseTail, Expect::Kind::HiddenParse, {}, t);
  Shape shape = shapeOnServer(cs, t);
  if (shape == Shape::Outdated) {
    // Every copy prepared before now, here and on the worker's other servers, is closed and
    // prepared again before its next use (as after a 0A000); this one at once.
    t.stale.markStale(cs.hash);
    if (!onServer(cs.hash, t)) prepare(cs.hash, cs.parseTail, Expect::Kind::HiddenParse, {}, t);
    shape = Shape::Unknown;
  }
  return shape;
}

StatementMap::Result StatementMap::askShape(uint64_t h, const StatementTarget& t) {
  appendDescribe(t.toServer, 'S', serverStatementName(h));
  t.exchange.expect({Expect::Kind::HiddenDescribe, h});
  t.exchange.batchOpened();
  appendFlush(t.toServer);
  t.exchange.flushSent();
  Result r;
  r.outcome = Outcome::AwaitShape;
  return r;
}

StatementMap::Result StatementMap::parse(ByteQueue& in, size_t total, const StatementTarget& t) {
  auto msg = in.contiguous(total, t.scratch);
  auto body = msg.subspan(5);
  auto pv = parseParse(body);
  if (!pv) return invalid(pv.error());
  if (pv->name.empty()) return {Outcome::Forward, 0, nullptr, pv->sql};  // lives in one batch
  std::string name(pv->name);
  std::string_view tail = asText(body.subspan(name.size() + 1));
  if (const ClientStatement* existing = names_.find(name)) {
    // PostgreSQL refuses to redefine a name (42P05): let the server say so, about the
    // statement that name stands for.
    uint64_t h = existing->hash;
    if (!onServer(h, t)) prepare(h, existing->parseTail, Expect::Kind::HiddenParse, {}, t);
    appendParse(t.toServer, serverStatementName(h), tail);
    t.exchange.expect({Expect::Kind::Parse});
  } else {
    uint64_t h = statementHash(asBytes(tail));
    names_.put(name, ClientStatement{h, std::string(tail), {}});
    if (onServer(h, t)) {
      t.exchange.expect({Expect::Kind::FakeParse, h, name});
    } else {
      prepare(h, tail, Expect::Kind::Parse, name, t);
    }
  }
  t.exchange.batchOpened();
  return {Outcome::Rewritten, 0, nullptr, pv->sql};
}

StatementMap::Result StatementMap::bind(ByteQueue& in, size_t total, const StatementTarget& t) {
  size_t avail = std::min(total, in.size());
  auto prefix = in.contiguous(avail, t.scratch);
  auto head = parseBindHead(prefix.subspan(5));
  if (!head) {
    // Names longer than the prefix: forward untouched.
    if (avail == total) return invalid(head.error());
    return {};
  }
  if (head->statement.empty()) return {};
  const ClientStatement* cs = names_.find(head->statement);
  // Unknown names go through unchanged: the server answers 26000 with the client's name.
  if (!cs) return {};
  const Shape shape = checkShape(*cs, t);
  if (shape == Shape::Unknown) return askShape(cs->hash, t);
  size_t restLen = total - 5 - head->restOffset;
  const bool changed = shape == Shape::Changed;
  const std::string name = serverStatementName(cs->hash);
  if (!appendBindHead(t.toServer, head->portal, changed ? kResultTypeChanged : name, restLen))
    return invalid("Bind message too long");
  Expect e(Expect::Kind::Bind, cs->hash);
  e.resultTypeChanged = changed;
  t.exchange.expect(std::move(e));
  t.exchange.batchOpened();
  // Parameters are forwarded by reference, not copied.
  return {Outcome::Partial, restLen, nullptr, untilNul(cs->parseTail)};
}

StatementMap::Result StatementMap::describe(ByteQueue& in, size_t total, const StatementTarget& t) {
  auto msg = in.contiguous(total, t.scratch);
  auto dv = parseDescribeClose(msg.subspan(5));
  if (!dv) return invalid(dv.error());
  if (dv->kind != 'S' || dv->name.empty()) return {};
  const ClientStatement* cs = names_.find(dv->name);
  if (!cs) return {};
  const Shape shape = checkShape(*cs, t);
  if (shape == Shape::Unknown) return askShape(cs->hash, t);
  // The answer tells the client the statement's shape (ClientStatement::shape).
  Expect e(Expect::Kind::Describe, cs->hash, std::string(dv->name));
  if (shape == Shape::Changed) {
    // PostgreSQL sends the parameters' types before it finds the result changed.
    appendDescribe(t.toServer, 'S', serverStatementName(cs->hash));
    t.exchange.expect({Expect::Kind::DescribeParams, cs->hash});
    appendDescribe(t.toServer, 'S', kResultTypeChanged);
    e.resultTypeChanged = true;
  } else {
    appendDescribe(t.toServer, 'S', serverStatementName(cs->hash));
  }
  t.exchange.expect(std::move(e));
  t.exchange.batchOpened();
  return {Outcome::Rewritten, 0, nullptr, untilNul(cs->parseTail)};
}

StatementMap::Result StatementMap::close(ByteQueue& in, size_t total, const StatementTarget& t) {
  auto msg = in.contiguous(total, t.scratch);
  auto cv = parseDescribeClose(msg.subspan(5));
  if (!cv) return invalid(cv.error());
  if (cv->kind != 'S' || cv->name.empty()) return {};
  // The server keeps the statement for other clients (bounded by the LRU); the client's name
  // is gone, which is all PostgreSQL promises. Until CloseComplete goes out the name is kept
  // aside: an error earlier in the batch means PostgreSQL skipped this Close.
  if (!t.exchange.closePending()) names_.clearCloses();  // leftovers never answered
  names_.close(cv->name);
  t.exchange.expect({Expect::Kind::FakeClose});
  t.exchange.batchOpened();
  return {Outcome::Rewritten, 0, nullptr, {}};
}

}  // namespace pgswitch::proxy
