// The relay's two directions. Forwarding moves slices from one connection's input queue to
// the other's output queue without copying; backpressure stops reading the side that feeds a
// queue above its high watermark.
#include "proxy/session/relay.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>

#include "protocol/builder.h"
#include "protocol/command_tag.h"
#include "protocol/framing.h"
#include "protocol/messages.h"
#include "proxy/session/local_answers.h"
#include "proxy/session/session_errors.h"
#include "routing/session_sql.h"

namespace pgswitch::proxy {

using namespace protocol;

namespace {

// Moves up to n bytes from the front of `from` to `to` without copying; returns how many.
// (Nothing to move: `to` is not asked for its output queue, which it may only be holding
// while bytes move.)
size_t forward(ByteQueue& from, Conn& to, size_t n) {
  return n == 0 || from.empty() ? 0 : from.moveTo(to.out(), n);
}

// Microseconds, monotonic (uv_hrtime reads the vDSO clock: no syscall).
uint64_t nowUs() { return uv_hrtime() / 1000; }

}  // namespace

Relay::Relay(Worker& w, const Config& cfg, Conn& client, SessionState& state)
    : worker_(w),
      cfg_(cfg),
      client_(client),
      state_(state),
      transactionPooling_(cfg.routesRequests()),
      sessionReads_(cfg.sessionReads()) {}

void Relay::makeBusy() {
  busy_ = std::make_unique<Busy>(static_cast<size_t>(cfg_.failover.replayBufferBytes));
}

const Relay::Busy& Relay::nothingInFlight() {
  static const Busy kNothing(0);
  return kNothing;
}

void Relay::shrinkIdle() {
  if (server_ || !busy_ || busy_->exchange.pending() != 0) return;
  if (!busy_->replay.recording() && !busy_->replay.replaying()) {
    busy_.reset();
    return;
  }
  busy_->exchange.shrink();
  busy_->retry.shrink();
}

void Relay::link(ServerConn& s, int backend) {
  server_ = &s;
  backend_ = backend;
}

void Relay::unlink() {
  client_.in().setConsumeTap(nullptr);
  client_.out().setPushTap(nullptr);
  if (busy_) busy_->replay.stop();
  unlinkKeepingReplay();
}

void Relay::unlinkKeepingReplay() {
  server_ = nullptr;
  heldForShape_ = false;
  reqStartUs_ = 0;
  holdReady_ = false;
  if (busy_) {
    busy_->exchange.reset();
    busy_->retry.disarm();
  }
  c2sPassthrough_ = s2cPassthrough_ = 0;
}

void Relay::unlinkLost() {
  client_.in().setConsumeTap(nullptr);
  client_.out().setPushTap(nullptr);
  skip_ += c2sPassthrough_;
  unlinkKeepingReplay();
}

void Relay::recordTransaction() {
  TxnReplay& r = busy().replay;
  if (!r.enabled()) return;
  r.start();
  client_.in().setConsumeTap(&r);
  client_.out().setPushTap(&r);
}

void Relay::dropReplay() {
  client_.in().setConsumeTap(nullptr);
  client_.out().setPushTap(nullptr);
  if (!busy_) return;
  busy_->replay.finish(client_.in());
  busy_->replay.stop();
}

bool Relay::replayable(char txnStatus, bool commitInFlight) const {
  return view().replay.recording() && view().replay.spoiled() == TxnReplay::Spoiled::No &&
         (txnStatus == 'T' || txnStatus == 'E' ||
          (txnStatus == 'I' && view().replay.startsWithBegin())) &&
         !commitInFlight && c2sPassthrough_ == 0 &&
         s2cPassthrough_ == 0 && skip_ == 0 && !readyHeld_ && !dropping_ &&
         !view().retry.active();
}

std::string_view Relay::queryHead(size_t total, HeadBuf& buf) {
  size_t n = std::min(buf.size(), total - 5);
  client_.in().copyOut(5, std::as_writable_bytes(std::span(buf.data(), n)));
  if (n == total - 5 && n > 0) --n;  // the whole text: drop its NUL
  return std::string_view(buf.data(), n);
}

bool Relay::idle() const {
  return server_ && view().exchange.idle() && s2cPassthrough_ == 0 && c2sPassthrough_ == 0 &&
         server_->txnStatus() == 'I';
}

bool Relay::batchAwaitsSync() const {
  // A message waiting for its statement's result shape is the batch going on, not a new one.
  return server_ && view().exchange.answeredUnsynced() && !heldForShape_ && c2sPassthrough_ == 0 &&
         s2cPassthrough_ == 0 && server_->txnStatus() == 'I';
}

void Relay::flushBatch() {
  if (!server_ || view().exchange.flushAsked() || !view().exchange.batchOpen() ||
      view().exchange.pending() == 0)
    return;
  busy().exchange.flushSent();
  std::string flush;
  appendFlush(flush);
  server_->conn().send(flush);
  server_->conn().flush();
}

void Relay::closeBatch() {
  std::string sync;
  appendSync(sync);
  server_->conn().send(sync);
  server_->conn().flush();
  busy().exchange.syncedByUs();
}

bool Relay::atRequestStart() const {
  return server_ && c2sPassthrough_ == 0 && view().exchange.quiet() && server_->txnStatus() == 'I';
}

bool Relay::clientMidMessage() {
  if (c2sPassthrough_ > 0 || skip_ > 0) return true;
  const ByteQueue& in = client_.in();
  std::array<std::byte, 5> hdr;
  for (size_t off = 0; off < in.size();) {
    if (!in.copyOut(off, hdr)) return true;  // part of a header
    Frame f = readFrame(hdr, cfg_.maxMessageBytes);
    if (f.status == FrameStatus::Invalid) return false;  // reported when it is read
    if (off + f.total > in.size()) return true;
    off += f.total;
  }
  return false;
}

// Forwards the client message at the front (all of it that has arrived; the rest follows as
// it comes).
void Relay::forwardWhole(size_t total, char type) {
  busy().exchange.forwarded(type);
  counters().bytesIn += total;
  if (reqStartUs_ == 0) reqStartUs_ = nowUs();
  c2sPassthrough_ = total - forward(client_.in(), server_->conn(), total);
}

// Session state a statement may create: in transaction mode for statements inside a
// transaction and SETs (the request's classification saw the rest); in session mode always
// (state decides whether a failover may move the client). With session_reads every statement
// that may make state is looked at: a pipelined one skips the request's classification, and
// set_config() and RESET ALL leave the session on the primary (what they change is neither
// reported nor read back, so the replicas' connections could not be brought to it).
void Relay::noteStatement(std::string_view sql) {
  const routing::Classification& c = worker_.classifier(cfg_).classify(sql);
  // Unreported SETs are read back after their transaction in both modes: they follow the
  // client to another server (transaction mode) or after a failover (session mode).
  state_.noteStatement(c, sql, server_->params(), true);
  if (routing::mayMakeCommitAsync(c, sql)) asyncCommitPossible_ = true;
  if (!sessionReads_) return;
  if (c.callsSetConfig) state_.pin("set_config()");
  if (c.kind == routing::StatementKind::SessionSet && c.setName == "all") state_.pin("RESET ALL");
}

Relay::Event Relay::toServer() {
  Busy& b = busy();
  Event ev;
  if (!server_) return ev;
  emptyScratch();
  heldForShape_ = false;
  ByteQueue& in = client_.in();
  Conn& sc = server_->conn();
  while (!in.empty() && server_) {
    if (c2sPassthrough_ > 0) {
      c2sPassthrough_ -= forward(in, sc, c2sPassthrough_);
      continue;
    }
    // A replay being verified: what the client sent after the lost transaction waits until
    // the replay is known to have given the same answers.
    if (b.replay.holdsInput()) break;
    // A statement's result shape was asked for: the message that needs it waits.
    if (b.exchange.askingShape()) {
      heldForShape_ = true;
      break;
    }
    Frame f = readFrame(in, cfg_.maxMessageBytes);
    if (f.status == FrameStatus::Invalid) {
      sc.flush();
      ev.kind = Event::Kind::ClientError;
      ev.message = std::string("invalid frontend message: ") + f.error;
      return ev;
    }
    if (f.total == 0) break;  // not even a header yet
    const char t = f.type;
    const bool complete = f.status == FrameStatus::Complete;
    if (!fe::validAfterLogin(t)) {
      // Never forwarded: the server would end its session with a FATAL that pgswitch treats
      // as a lost server, and the client would wait for an answer that never comes.
      sc.flush();
      ev.kind = Event::Kind::ClientError;
      ev.message = "invalid frontend message type " + std::to_string(uint8_t(t));
      return ev;
    }
    if (t == fe::Terminate) {
      if (!complete) break;
      in.consume(f.total);
      sc.flush();
      ev.kind = Event::Kind::Terminate;
      return ev;
    }
    if (b.exchange.discarding() && t != fe::Sync) {
      // The server ignores everything until Sync after an extended-protocol error; so do
      // we (nothing is owed for these messages).
      c2sPassthrough_ = f.total - forward(in, sc, f.total);
      continue;
    }
    if (b.exchange.copyInOpen() && t != fe::CopyData) {
      // Never a statement on this server: the COPY IN ignores it or ends with an error and
      // discards it (ServerExchange::forwarded).
      forwardWhole(f.total, t);
      continue;
    }
    const char txn = server_->txnStatus();
    if (transactionPooling_ &&
        (t == fe::Parse || t == fe::Bind || t == fe::Describe || t == fe::Close)) {
      // Bind needs only its names (up to 1 KiB); the others are read whole.
      if (t == fe::Bind ? !complete && in.size() < std::min<size_t>(f.total, 1024) : !complete)
        break;
      if (t == fe::Parse && deallocateAnswered(txn, ev)) continue;
      StatementTarget target{scratch().toServer,
                             server_->statements(),
                             worker_.staleStatements(),
                             static_cast<size_t>(cfg_.maxPreparedStatements),
                             b.exchange,
                             scratch().statementBytes,
                             txn};
      StatementMap::Result r;
      switch (t) {
        case fe::Parse:
          r = statements_.parse(in, f.total, target);
          break;
        case fe::Bind:
          r = statements_.bind(in, f.total, target);
          break;
        case fe::Describe:
          r = statements_.describe(in, f.total, target);
          break;
        default:
          r = statements_.close(in, f.total, target);
          break;
      }
      if (r.outcome == StatementMap::Outcome::Invalid) {
        in.consume(f.total);
        ev.kind = Event::Kind::ClientError;
        ev.message = r.error;
        return ev;
      }
      if (r.outcome == StatementMap::Outcome::AwaitShape) {
        sc.send(scratch().toServer);
        scratch().toServer.clear();
        heldForShape_ = true;
        break;
      }
      if (t == fe::Parse && txn == 'I' && b.exchange.quiet() && b.replay.recording())
        b.replay.firstStatement(routing::isLoneBegin(r.sql));
      // A client name defined or closed: run again, the map would no longer agree.
      if ((t == fe::Parse || t == fe::Close) && r.outcome != StatementMap::Outcome::Forward)
        b.replay.spoil(TxnReplay::Spoiled::StatementNames);
      // A COMMIT prepared (or bound) in a transaction: its outcome is unknown if the server
      // is lost before the answer (pgjdbc commits this way). Whatever the status, what went
      // before it is never replayed.
      if ((t == fe::Parse || t == fe::Bind) && routing::isCommit(r.sql)) {
        b.exchange.commitSent(true);
        b.replay.spoil(TxnReplay::Spoiled::CommitSent);
      }
      // SETs of statements prepared with the extended protocol, and (inside a transaction, or
      // always with session_reads) whatever may create session state.
      if (!r.sql.empty()) {
        bool look = t == fe::Parse
                        ? state_.movable() && ((r.outcome == StatementMap::Outcome::Forward &&
                                                routing::startsWithSet(r.sql)) ||
                                               ((txn != 'I' || sessionReads_) &&
                                                routing::mayTouchSessionState(r.sql)))
                        : routing::startsWithSet(r.sql);
        if (look) noteStatement(r.sql);
      }
      if (r.outcome != StatementMap::Outcome::Forward) {
        sc.send(scratch().toServer);
        scratch().toServer.clear();
        in.consume(f.total - r.passthrough);
        c2sPassthrough_ = r.passthrough;
        counters().bytesIn += f.total;
        if (reqStartUs_ == 0) reqStartUs_ = nowUs();
        continue;
      }
    }
    if (t == fe::Query) {
      if (transactionPooling_ && complete && deallocateAnswered(txn, ev)) continue;
      if (complete && f.total > 5) {
        // The head tells a COMMIT (what a lost server makes "outcome unknown") and a SET; the
        // whole text is assembled only where session state may be made.
        HeadBuf headBuf;
        std::string_view head = queryHead(f.total, headBuf);
        const bool headIsCommit = routing::isCommit(head);
        if (b.replay.recording()) {
          if (txn == 'I' && b.exchange.quiet())
            b.replay.firstStatement(head.size() == f.total - 6 && routing::isLoneBegin(head));
          // Also outside a transaction: a pipelined "BEGIN", "...", "COMMIT" is sent while
          // the status still says idle.
          if (headIsCommit) b.replay.spoil(TxnReplay::Spoiled::CommitSent);
          if (txn != 'I') {
            auto msg = in.contiguous(f.total, scratch().bytes);
            if (routing::mayHoldSeveralStatements(
                    std::string_view(reinterpret_cast<const char*>(msg.data()) + 5, f.total - 5)))
              b.replay.spoil(TxnReplay::Spoiled::SeveralStatements);
          }
        }
        {
          // A head cut inside its first word ("COMMITTED...") is not a COMMIT. Also outside
          // a transaction: pipelined behind its BEGIN, a COMMIT goes out while the status
          // still says idle.
          bool cut = head.size() < f.total - 6;
          b.exchange.commitSent(headIsCommit &&
                               (!cut || routing::isCommit(head.substr(0, head.size() - 1))));
        }
        if (state_.movable() && (!transactionPooling_ || sessionReads_ || txn != 'I' ||
                                 routing::startsWithSetOrReset(head))) {
          auto msg = in.contiguous(f.total, scratch().bytes);
          std::string_view sql(reinterpret_cast<const char*>(msg.data()) + 5, f.total - 6);
          if (routing::mayTouchSessionState(sql)) noteStatement(sql);
        }
        if (state_.movable() && routing::mayMakeSessionObject(head)) {
          // LISTEN, PREPARE and their undoing, kept to be rebuilt after a failover.
          auto msg = in.contiguous(f.total, scratch().bytes);
          state_.journal().statement(
              std::string_view(reinterpret_cast<const char*>(msg.data()) + 5, f.total - 6));
        }
      } else if (txn != 'I') {
        // Too long to be read in place yet: whatever it is, it is not a bare COMMIT (but it
        // may hold one after a ';').
        b.exchange.commitSent(false);
        b.replay.spoil(TxnReplay::Spoiled::SeveralStatements);
      }
    } else if (t == fe::Parse && !transactionPooling_) {
      // Session mode: a named statement lives on this server; the journal keeps its Parse to
      // prepare it again after a failover.
      std::array<std::byte, 1> first{};
      if (state_.movable() && in.copyOut(5, first) && first[0] != std::byte{0}) {
        state_.pinRebuildable("named prepared statement");
        bool kept = false;
        if (complete) {
          auto msg = in.contiguous(f.total, scratch().bytes);
          if (auto pv = parseParse(msg.subspan(5))) {
            state_.journal().parse(pv->name, msg);
            kept = true;
          }
        }
        if (!kept) state_.journal().incomplete("a named prepared statement pgswitch could not read");
      }
      if (complete && (txn != 'I' || b.replay.recording())) {  // a COMMIT in flight
        auto pv = parseParse(in.contiguous(f.total, scratch().bytes).subspan(5));
        if (pv && routing::isCommit(pv->sql)) {
          b.exchange.commitSent(true);
          b.replay.spoil(TxnReplay::Spoiled::CommitSent);
        }
      } else if (!complete) {
        b.replay.spoil(TxnReplay::Spoiled::CommitSent);  // unread: it may be one
      }
    }
    if (t == fe::Close && !transactionPooling_ && complete && state_.movable()) {
      auto cv = parseDescribeClose(in.contiguous(f.total, scratch().bytes).subspan(5));
      if (cv && cv->kind == 'S' && !cv->name.empty()) state_.journal().closeStatement(cv->name);
    }
    forwardWhole(f.total, t);
    if (stopAtRequestEnd_ && complete && (t == fe::Query || t == fe::Sync) && !in.empty()) {
      ev.requestEnded = true;
      break;
    }
  }
  if (!server_) return ev;
  sc.flush();
  if (s2cPassthrough_ == 0) {
    b.exchange.appendFakes(scratch().toClient, statements_.names());
    client_.send(scratch().toClient);
    scratch().toClient.clear();
  }
  client_.flush();
  if (sc.aboveHighWater()) client_.stopReading();
  return ev;
}

void Relay::countReady(char status) {
  BackendCounters& k = counters();
  ++k.queries;
  if (status == 'I') ++k.transactions;
  uint64_t now = nowUs();
  if (reqStartUs_) k.latency.add(now - reqStartUs_);
  // A pipelining client already sent its next request: it has been waiting since now.
  reqStartUs_ = busy().exchange.pending() == 0 ? 0 : now;
}

Relay::Event Relay::toClient() {
  Busy& b = busy();
  ByteQueue& in = server_->conn().in();
  Conn& cc = client_;
  Event ev;
  emptyScratch();
  auto desync = [&](std::string what) {
    ev.kind = Event::Kind::ServerError;
    ev.message = std::move(what);
    return ev;
  };
  while (server_ && !in.empty()) {
    if (s2cPassthrough_ > 0) {
      s2cPassthrough_ -= forward(in, cc, s2cPassthrough_);
      continue;
    }
    b.exchange.appendFakes(scratch().toClient, statements_.names());
    if (!scratch().toClient.empty()) {
      cc.send(scratch().toClient);
      scratch().toClient.clear();
    }
    Frame f = readFrame(in, 0x7fffffff);
    if (f.status == FrameStatus::Invalid) return desync(f.error);
    if (f.total == 0) break;
    if (!be::validAfterLogin(f.type))
      return desync("a message type the server may not send on an established session");
    const bool complete = f.status == FrameStatus::Complete;
    // The messages pgswitch reads are small; they are assembled whole before acting on them.
    bool read = f.type == be::ReadyForQuery || f.type == be::ParameterStatus ||
                f.type == be::CommandComplete || f.type == be::ErrorResponse ||
                (f.type == be::RowDescription && b.exchange.describing()) ||
                (b.retry.active() && f.total <= ReadOnlyRetry::kHoldLimit &&
                 (f.type == be::RowDescription || f.type == be::ParseComplete ||
                  f.type == be::BindComplete || f.type == be::ParameterDescription ||
                  f.type == be::NoData));
    if (read && !complete) break;
    std::span<const std::byte> whole, body;
    if (read) {
      whole = in.contiguous(f.total, scratch().bytes);
      body = whole.subspan(5);
    }
    std::string_view errCode;
    ServerExchange::Response resp;
    switch (f.type) {
      case be::ReadyForQuery: {
        auto st = parseReadyForQuery(body);
        if (!st) return desync("malformed ReadyForQuery");  // the pool decides on it: no guess
        server_->setTxnStatus(*st);
        // A transaction ended: unless nothing follows it (restartReplayWhenIdle, below),
        // what is recorded mixes it with the requests behind it.
        if (*st == 'I') b.replay.spoil(TxnReplay::Spoiled::Pipelined);
        resp = b.exchange.onResponse(f.type);
        if (resp.verdict == ServerExchange::Verdict::Desync)
          return desync("unexpected response from server");
        if (resp.verdict == ServerExchange::Verdict::Swallow) break;  // our own Sync's
        if (cancelSlot_ && !b.exchange.owed()) cancelSlot_->requestEnded();
        countReady(*st);
        state_.onReadyForQuery();
        if (holdReady_ && *st == 'I' && b.exchange.quiet() && c2sPassthrough_ == 0 &&
            !b.retry.active()) {
          readyHeld_ = true;
          in.consume(f.total);
          continue;
        }
        break;
      }
      case be::ParameterStatus: {
        if (auto ps = parseParameterStatus(body)) {
          server_->setParam(ps->name, ps->value);
          if (ps->name != "in_hot_standby") {
            // The client changed a reported setting: it follows the client to other servers.
            std::string name(ps->name);
            for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            server_->appliedGucs()[name] = std::string(ps->value);
          }
          ev.applicationNameChanged |= state_.onParameterStatus(ps->name, ps->value);
        }
        break;
      }
      case be::CommandComplete: {
        if (auto tag = parseCommandComplete(body)) {
          switch (state_.onCommandTag(commandTagKind(*tag), transactionPooling_)) {
            case SessionState::TagEffect::None:
              break;
            case SessionState::TagEffect::ForgetAllStatements:
              statements_.names().clear();
              // This server reset its settings to its own defaults (DISCARD ALL): the next
              // link brings it to the client's.
              if (commandTagKind(*tag) == CommandTag::DiscardAll) server_->appliedGucs().clear();
              [[fallthrough]];
            case SessionState::TagEffect::ForgetServerStatements:
              server_->statements().clear();
              break;
          }
        }
        resp = b.exchange.onResponse(f.type);
        break;
      }
      case be::ErrorResponse: {
        auto ef = parseErrorFields(body);
        if (!ef) return desync("malformed ErrorResponse");
        if (ef->severity == "FATAL" || ef->severity == "PANIC") {
          // The server is going away (postmaster died, shutdown, pg_terminate_backend): the
          // client keeps its connection and gets a plain ERROR instead.
          ev.kind = Event::Kind::ServerFatal;
          ev.message = std::string(ef->code) + ": " + std::string(ef->message);
          in.consume(f.total);
          cc.flush();  // what came before the FATAL (often a complete answer) goes out first
          return ev;
        }
        if (b.exchange.failingForShape() && ef->code == "26000") {
          // The Bind or Describe pgswitch made fail: the client hears PostgreSQL's words.
          b.exchange.error(ef->code, StatementBooks{statements_.names(), &server_->statements(),
                                                    &worker_.staleStatements()});
          in.consume(f.total);
          if (b.retry.active()) {  // not an error a read is retried for: what it held goes
            cc.send(b.retry.held());
            b.retry.disarm();
          }
          appendResultTypeChanged(scratch().toClient);
          counters().bytesOut += scratch().toClient.size();
          cc.send(scratch().toClient);
          scratch().toClient.clear();
          continue;
        }
        errCode = ef->code;
        b.exchange.error(ef->code, StatementBooks{statements_.names(), &server_->statements(),
                                                 &worker_.staleStatements()});
        break;
      }
      case be::RowDescription:
      case be::NoData: {
        // The answer to a Describe of a named statement: its shape on this server, and what
        // the client (if it asked) now knows.
        if (const Expect* d = b.exchange.describing()) {
          KnownShape shape{kNoRowsShape, worker_.staleStatements().nextLearned()};
          if (f.type == be::RowDescription) {
            auto s = resultShape(body);
            if (!s) return desync("malformed RowDescription");
            shape.shape = *s;
          }
          server_->statements().setShape(d->hash, shape);
          if (!d->clientName.empty()) statements_.names().setShape(d->clientName, d->hash, shape);
        }
        resp = b.exchange.onResponse(f.type);
        break;
      }
      default:
        resp = b.exchange.onResponse(f.type);
        break;
    }
    if (resp.verdict == ServerExchange::Verdict::Desync)
      return desync("unexpected response from server");
    if (resp.parsed) worker_.rememberStatement(resp.parsed);
    if (resp.verdict == ServerExchange::Verdict::Swallow) {
      if (!complete) break;
      in.consume(f.total);
      continue;
    }
    if (b.retry.active()) {
      // Only while a lone read runs on a replica: nothing reaches the client before it is
      // known whether the read must run on the primary instead.
      char ready = f.type == be::ReadyForQuery ? server_->txnStatus() : 0;
      bool alone = b.exchange.quiet() && c2sPassthrough_ == 0;
      switch (b.retry.onMessage(f.type, complete, f.total, errCode, ready, alone)) {
        case ReadOnlyRetry::Step::Forward:
          break;
        case ReadOnlyRetry::Step::Hold:
          b.retry.hold(whole);
          in.consume(f.total);
          continue;
        case ReadOnlyRetry::Step::Release:
          cc.send(b.retry.held());
          b.retry.disarm();
          break;
        case ReadOnlyRetry::Step::Retry:
          in.consume(f.total);
          ev.kind = Event::Kind::RetryOnPrimary;
          ev.recoveryConflict = b.retry.recoveryConflict();
          return ev;
      }
    }
    counters().bytesOut += f.total;
    s2cPassthrough_ = f.total - forward(in, cc, f.total);
  }
  if (s2cPassthrough_ == 0) b.exchange.appendFakes(scratch().toClient, statements_.names());
  if (!scratch().toClient.empty()) {
    cc.send(scratch().toClient);
    scratch().toClient.clear();
  }
  if (!readyHeld_) cc.flush();  // else the answer goes out with its ReadyForQuery
  if (server_ && cc.aboveHighWater()) server_->conn().stopReading();
  restartReplayWhenIdle();
  return ev;
}

void Relay::releaseReady() {
  if (!std::exchange(readyHeld_, false)) return;
  appendReadyForQuery(scratch().toClient, 'I');
  client_.send(scratch().toClient);
  scratch().toClient.clear();
  client_.flush();
  restartReplayWhenIdle();
}

void Relay::emptyScratch() {
  scratch().toServer.clear();
  scratch().toClient.clear();
}

void Relay::restartReplayWhenIdle() {
  // Between transactions, once the client has the ReadyForQuery that says so (strong
  // consistency holds it back for a moment): nothing recorded so far can be needed again.
  if (busy_ && busy_->replay.recording() && !readyHeld_ && idle()) busy_->replay.restart();
}

void Relay::failRequest(std::string_view err) {
  answerError(err, dropRequest(client_.in(), cfg_.maxMessageBytes));
}

void Relay::answerError(std::string_view err, bool ended, int more) {
  client_.send(err);
  for (int i = 0; ended && i < more; ++i) {
    appendReadyForQuery(scratch().toClient, 'I');
    client_.send(scratch().toClient);
    scratch().toClient.clear();
    client_.send(err);
  }
  if (ended) {
    appendReadyForQuery(scratch().toClient, 'I');
    client_.send(scratch().toClient);
    scratch().toClient.clear();
  } else {
    dropping_ = true;
  }
  client_.flush();
}

bool Relay::dropFailedRequest() {
  if (skip_ > 0) {
    size_t n = std::min(skip_, client_.in().size());
    client_.in().consume(n);
    skip_ -= n;
    if (skip_ > 0) return false;
  }
  if (!dropping_) return true;
  if (!dropRequest(client_.in(), cfg_.maxMessageBytes)) return false;
  dropping_ = false;
  appendReadyForQuery(scratch().toClient, 'I');
  client_.send(scratch().toClient);
  scratch().toClient.clear();
  client_.flush();
  return true;
}

bool Relay::deallocateAnswered(char txn, Event& ev) {
  Busy& b = busy();
  if (!b.exchange.quiet() || s2cPassthrough_ != 0 || txn == 'E' ||
      !answerDeallocate(client_.in(), cfg_.maxMessageBytes, statements_.names(), txn,
                        scratch().bytes, scratch().toClient)) {
    return false;
  }
  b.replay.spoil(TxnReplay::Spoiled::StatementNames);
  client_.send(scratch().toClient);
  scratch().toClient.clear();
  ev.answeredLocally = true;
  return true;
}

bool Relay::answerLocally(char txnStatus) {
  ByteQueue& in = client_.in();
  bool any = false;
  emptyScratch();
  while (!in.empty() && (answerParse(
                             in, cfg_.maxMessageBytes, statements_.names(),
                             [this](uint64_t h) { return worker_.knownStatement(h); },
                             scratch().bytes, scratch().toClient) ||
                         answerDeallocate(in, cfg_.maxMessageBytes, statements_.names(), txnStatus,
                                          scratch().bytes, scratch().toClient) ||
                         answerTxnEnd(in, cfg_.maxMessageBytes, scratch().toClient))) {
    any = true;
  }
  if (!scratch().toClient.empty()) {
    client_.send(scratch().toClient);
    scratch().toClient.clear();
  }
  return any;
}

}  // namespace pgswitch::proxy
