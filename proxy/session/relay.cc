// The relay: moves messages between a client and its server by byte range. Only the 5-byte
// header of most messages is read; a message is assembled only when the proxy must look
// inside (ReadyForQuery, ParameterStatus, CommandComplete, Terminate, and in transaction
// mode the statement names of Parse/Bind/Describe/Close). Everything else is forwarded as
// slices of the chunks it was read into, even before the whole message arrived, so a 1 GB
// row never sits in pgswitch's memory.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <optional>

#include "protocol/builder.h"
#include "protocol/framing.h"
#include "protocol/messages.h"
#include "proxy/session/client_session.h"
#include "proxy/admin/console_session.h"

namespace pgswitch::proxy {

using namespace protocol;

namespace {

// Moves up to n bytes from the front of `from` to `to` without copying; returns how many.
size_t forward(ByteQueue& from, Conn& to, size_t n, std::vector<Slice>& tmp) {
  n = std::min(n, from.size());
  if (n == 0) return 0;
  from.sliceFront(n, tmp);
  to.out().pushSlices(tmp);
  from.consume(n);
  return n;
}

bool isExtended(char t) {
  return t == fe::Parse || t == fe::Bind || t == fe::Describe || t == fe::Execute ||
         t == fe::Close || t == fe::Flush;
}

}  // namespace

// The first word of the Query message at the front of `in`, upper-cased into `word` (empty
// if it does not start with a letter). Only the first bytes are looked at: enough to tell an
// in-flight COMMIT from other work at failover, and a SET from other statements.
static std::string_view queryFirstWord(const ByteQueue& in, size_t total,
                                       std::array<char, 16>& word) {
  std::array<std::byte, 48> buf;
  size_t n = std::min(buf.size(), total > 5 ? total - 5 : 0);
  if (!in.copyOut(5, std::span(buf.data(), n))) return {};
  size_t i = 0;
  while (i < n && std::isspace(static_cast<unsigned char>(buf[i]))) ++i;
  size_t k = 0;
  while (i + k < n && k < word.size() && std::isalpha(static_cast<unsigned char>(buf[i + k]))) {
    word[k] = static_cast<char>(std::toupper(static_cast<unsigned char>(buf[i + k])));
    ++k;
  }
  return std::string_view(word.data(), k);
}

// ASCII case-insensitive substring test (needle in lower case).
static bool containsNoCase(std::string_view hay, std::string_view needle) {
  if (needle.size() > hay.size()) return false;
  for (size_t i = 0; i + needle.size() <= hay.size(); ++i) {
    size_t k = 0;
    while (k < needle.size() &&
           std::tolower(static_cast<unsigned char>(hay[i + k])) == needle[k])
      ++k;
    if (k == needle.size()) return true;
  }
  return false;
}

// A cheap filter in front of the classifier for statements relayed mid-transaction (and every
// statement in session mode): only these can set or create session state. Most queries are
// SELECTs without "advisory" or "temp" in them and skip classification.
bool ClientSession::mayCreateSessionState(std::string_view sql) {
  size_t i = sql.find_first_not_of(" \t\r\n(");
  if (i == sql.npos) return false;
  std::array<char, 8> w{};
  size_t n = 0;
  while (i + n < sql.size() && n < w.size() && std::isalpha(static_cast<unsigned char>(sql[i + n]))) {
    w[n] = static_cast<char>(std::toupper(static_cast<unsigned char>(sql[i + n])));
    ++n;
  }
  std::string_view first(w.data(), n);
  if (first == "SET" || first == "RESET" || first == "CREATE" || first == "DECLARE")
    return true;
  return containsNoCase(sql, "advisory") || containsNoCase(sql, "temp");
}

// Transaction mode, a statement inside a transaction or a SET: SET LOCAL and SET TRANSACTION
// end with their transaction (the SET heuristic at ReadyForQuery counts them out); temporary
// tables and session advisory locks outlive it (the client is pinned to its server).
void ClientSession::noteStatementEffects(std::string_view sql) {
  routing::Classification c = worker_.classifier(*cfg_).classify(sql);
  bool txnScoped = c.kind == routing::StatementKind::LocalSet ||
                   (c.kind == routing::StatementKind::SetTxnReadOnly &&
                    c.setName == "transaction_read_only");
  // pgjdbc runs "SET extra_float_digits = 3" on connect: since PostgreSQL 12 every value > 0
  // prints floats alike (shortest exact), so it need not pin (0 or negative values still do).
  bool harmless = c.kind == routing::StatementKind::SessionSet &&
                  c.setName == "extra_float_digits" && sql.find_first_of("-0") == sql.npos;
  if (txnScoped || harmless) {
    ++scopedSets_;
  } else if (transactionPooling_ && c.kind == routing::StatementKind::SessionSet &&
             !c.multiStatement && carryableSetting(c.setName)) {
    // A session SET (or RESET) of a setting PostgreSQL does not report: read its value back
    // after the transaction and carry it to other servers like a reported one (no pinning).
    // Only SET tags are counted by the pinning heuristic, so only SETs are counted here.
    size_t i = sql.find_first_not_of(" \t\r\n");
    bool isReset = i != sql.npos && sql.size() >= i + 5 && (sql[i] | 0x20) == 'r' &&
                   (sql[i + 1] | 0x20) == 'e' && (sql[i + 2] | 0x20) == 's';
    if (!isReset) ++carriedSets_;
    if (std::find(readback_.begin(), readback_.end(), c.setName) == readback_.end())
      readback_.push_back(c.setName);
  }
  const char* reason = c.createsTempTable      ? "temporary table"
                       : c.sessionAdvisoryLock ? "session advisory lock"
                       : c.withHoldCursor      ? "WITH HOLD cursor"
                                               : nullptr;
  if (reason && !pinned_) {
    pinned_ = true;
    pinReason_ = reason;
  }
}

void ClientSession::relayClientToServer() {
  ByteQueue& in = client_->in();
  while (swallowUntilSync_) {
    // The rest of a batch whose server was lost: PostgreSQL would skip it until Sync.
    Frame f = readFrame(in, cfg_->maxMessageBytes);
    if (f.status != FrameStatus::Complete) return;
    in.consume(f.total);
    if (f.type == fe::Sync || f.type == fe::Query || f.type == fe::FunctionCall) {
      swallowUntilSync_ = false;
      client_->send(std::string_view("Z\0\0\0\5I", 6));
      client_->flush();
    }
  }
  if (state_ == State::Idle && lostTxnPending_ && !in.empty()) {
    // The first request after the transaction was lost with its server gets the error.
    Frame f = readFrame(in, cfg_->maxMessageBytes);
    if (f.status == FrameStatus::NeedMore) return;
    lostTxnPending_ = false;
    std::string err;
    appendLostServerError(err);
    commitInFlight_ = false;
    failRequestWith(err);
  }
  if (state_ == State::Idle) {
    std::array<std::byte, 1> first;
    if (in.copyOut(0, first) && !fe::validAfterLogin(static_cast<char>(first[0]))) {
      fatal("08P01", "invalid frontend message type " + std::to_string(uint8_t(first[0])));
      return;
    }
    // Transaction mode: the first byte of the next request asks for a server, unless it is
    // a Parse+Sync of a statement known to parse, which pgswitch answers itself.
    while (!in.empty() &&
           (answerParseLocally() || answerDeallocateLocally('I') || answerTxnEndLocally())) {
    }
    if (!in.empty() && state_ == State::Idle) {
      if (decideRoute()) {
        requestServer();
      } else {
        client_->startReading();  // the request is still arriving
      }
    }
    client_->flush();
    return;
  }
  if (state_ != State::Active || !server_ || lsnPending_ || readbackPending_) return;
  // A client pinned to a replica (session state made inside a read-only transaction that ran
  // there) cannot write on it. A request that needs the primary gets an error that says why,
  // rather than the replica's "cannot execute ... in a read-only transaction".
  while (pinned_ && transactionPooling_ && !in.empty() && c2sPassthrough_ == 0 &&
         expect_.empty() && !unsynced_ && server_->txnStatus() == 'I' && pinnedOnReplica()) {
    int w = firstStatementWrites();
    if (w < 0) return;  // the first message is still arriving
    if (w == 0) break;
    auto topo = worker_.runtime().topology();
    int b = pool_->backend();
    std::string name =
        b >= 0 && b < static_cast<int>(topo->backends.size()) ? topo->backends[b].name : "?";
    failRequest("0A000",
                "this connection is pinned to replica " + name + " (" + pinReason_ +
                    ") and cannot run statements that need the primary",
                "The session state was created inside a read-only transaction that pgswitch "
                "routed to a replica. Create it outside read-only transactions (or with "
                "/* pgswitch: primary */), or reconnect.");
    if (swallowUntilSync_) return;
  }
  Conn& sc = server_->conn();
  bool answeredLocally = false;
  while (!in.empty() && server_) {
    if (c2sPassthrough_ > 0) {
      c2sPassthrough_ -= forward(in, sc, c2sPassthrough_, slices_);
      continue;
    }
    Frame f = readFrame(in, cfg_->maxMessageBytes);
    if (f.status == FrameStatus::Invalid) {
      sc.flush();
      releaseServer();
      fatal("08P01", std::string("invalid frontend message: ") + f.error);
      return;
    }
    if (f.total == 0) break;  // not even a header yet
    const char t = f.type;
    const bool complete = f.status == FrameStatus::Complete;
    if (!fe::validAfterLogin(t)) {
      // Never forwarded: the server would end its session with a FATAL that pgswitch treats
      // as a lost server, and the client would wait for an answer that never comes.
      sc.flush();
      releaseServer();
      fatal("08P01", "invalid frontend message type " + std::to_string(uint8_t(t)));
      return;
    }
    if (t == fe::Terminate) {
      if (!complete) break;
      in.consume(f.total);
      sc.flush();
      releaseServer();
      transitionTo(State::Closing);
      client_->close();
      return;
    }
    if (discardUntilSync_ && t != fe::Sync) {
      // The server ignores everything until Sync after an extended-protocol error; so do
      // we (nothing is owed for these messages).
      c2sPassthrough_ = f.total - forward(in, sc, f.total, slices_);
      continue;
    }
    if (transactionPooling_) {
      bool handled = false;
      switch (t) {
        case fe::Parse:
          if (!complete) goto done;
          if (expect_.empty() && !unsynced_ && s2cPassthrough_ == 0 &&
              server_->txnStatus() != 'E' && answerDeallocateLocally(server_->txnStatus())) {
            answeredLocally = true;
            continue;
          }
          handled = rewriteParse(f.total);
          break;
        case fe::Bind:
          if (!complete && in.size() < std::min<size_t>(f.total, 1024)) goto done;
          handled = rewriteBind(f.total);
          break;
        case fe::Describe:
          if (!complete) goto done;
          handled = rewriteDescribe(f.total);
          break;
        case fe::Close:
          if (!complete) goto done;
          handled = rewriteClose(f.total);
          break;
        default:
          break;
      }
      if (state_ == State::Closing) return;
      if (handled) {
        countIn(f.total);
        if (isExtended(t)) unsynced_ = true;
        continue;
      }
    }
    switch (t) {
      case fe::Query: {
        if (transactionPooling_ && complete && expect_.empty() && !unsynced_ &&
            s2cPassthrough_ == 0 &&
            server_->txnStatus() != 'E' && answerDeallocateLocally(server_->txnStatus())) {
          answeredLocally = true;
          continue;
        }
        expect_.push_back({Expect::Kind::Query});
        std::array<char, 16> w;
        std::string_view first = queryFirstWord(in, f.total, w);
        if (server_->txnStatus() != 'I') commitInFlight_ = first == "COMMIT" || first == "END";
        if (complete && !pinned_ &&
            (!transactionPooling_ || first == "SET" || first == "RESET" ||
             server_->txnStatus() != 'I')) {
          // Look for session state the statement creates: in transaction mode only inside a
          // transaction (the request-start classification saw the rest); in session mode
          // always (state decides whether a failover may move the client).
          auto msg = in.contiguous(f.total, scratch_);
          std::string_view sql(reinterpret_cast<const char*>(msg.data()) + 5, f.total - 6);
          if (mayCreateSessionState(sql)) noteStatementEffects(sql);
        }
        break;
      }
      case fe::FunctionCall: expect_.push_back({Expect::Kind::FunctionCall}); break;
      case fe::Sync:
        expect_.push_back({Expect::Kind::Sync});
        discardUntilSync_ = false;
        unsynced_ = false;
        break;
      case fe::Parse: {
        expect_.push_back({Expect::Kind::Parse});
        // Session mode: a named statement is session state a failover cannot carry over.
        std::array<std::byte, 1> first{};
        if (!transactionPooling_ && !pinned_ && in.copyOut(5, first) && first[0] != std::byte{0}) {
          pinned_ = true;
          pinReason_ = "named prepared statement";
        }
        break;
      }
      case fe::Bind: expect_.push_back({Expect::Kind::Bind}); break;
      case fe::Describe: expect_.push_back({Expect::Kind::Describe}); break;
      case fe::Execute: expect_.push_back({Expect::Kind::Execute}); break;
      case fe::Close: expect_.push_back({Expect::Kind::Close}); break;
      default: break;
    }
    if (isExtended(t)) unsynced_ = true;
    countIn(f.total);
    c2sPassthrough_ = f.total - forward(in, sc, f.total, slices_);
  }
done:
  if (!server_) return;
  sc.flush();
  if (s2cPassthrough_ == 0) emitFakes();
  client_->flush();
  if (sc.aboveHighWater()) client_->stopReading();
  if (answeredLocally) maybeReleaseAfterTransaction();
}

void ClientSession::relayServerToClient() {
  if (!server_) return;
  ByteQueue& in = server_->conn().in();
  Conn& cc = *client_;
  if (!in.empty()) retryable_ = false;  // the server has started answering
  while (server_ && !in.empty()) {
    if (s2cPassthrough_ > 0) {
      s2cPassthrough_ -= forward(in, cc, s2cPassthrough_, slices_);
      continue;
    }
    emitFakes();
    Frame f = readFrame(in, 0x7fffffff);
    if (f.status == FrameStatus::Invalid) {
      protocolDesync(f.error);
      return;
    }
    if (f.total == 0) break;
    if (!be::validAfterLogin(f.type)) {
      protocolDesync("a message type the server may not send on an established session");
      return;
    }
    const bool complete = f.status == FrameStatus::Complete;
    bool swallow = false;
    switch (f.type) {
      case be::ReadyForQuery: {
        if (!complete) goto done;
        auto msg = in.contiguous(f.total, scratch_);
        auto st = parseReadyForQuery(msg.subspan(5));
        if (!st) {  // the pool decides on this status: never guess it
          protocolDesync("malformed ReadyForQuery");
          return;
        }
        server_->setTxnStatus(*st);
        if (!popFor(be::ReadyForQuery)) return;
        countReady(*st);
        inCopy_ = false;
        commitInFlight_ = false;
        if (setTags_ > reportedChanges_ + scopedSets_ + carriedSets_ && !pinned_) {
          // A SET whose effect PostgreSQL does not report: the setting lives only on this
          // server, so the client stays on it.
          pinned_ = true;
          pinReason_ = "SET of a parameter PostgreSQL does not report";
        }
        if (pinned_) readback_.clear();
        setTags_ = reportedChanges_ = scopedSets_ = carriedSets_ = 0;
        break;
      }
      case be::ParameterStatus: {
        if (!complete) goto done;
        auto msg = in.contiguous(f.total, scratch_);
        auto ps = parseParameterStatus(msg.subspan(5));
        if (ps) {
          server_->setParam(ps->name, ps->value);
          sentParams_[std::string(ps->name)] = std::string(ps->value);
          if (ps->name != "in_hot_standby") {
            // The client changed a reported setting: it follows the client to other servers.
            std::string name(ps->name);
            for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            bool mine = false;
            for (auto& [k, v] : gucs_) {
              if (k == name) {
                v = std::string(ps->value);
                mine = true;
              }
            }
            if (!mine) gucs_.emplace_back(name, std::string(ps->value));
            gucsHash_ = 0;
            server_->appliedGucs()[name] = std::string(ps->value);
            if (name == "application_name") resolveSessionTag();
            ++reportedChanges_;
          }
        }
        break;
      }
      case be::CommandComplete: {
        if (!complete) goto done;
        auto msg = in.contiguous(f.total, scratch_);
        auto tag = parseQuery(msg.subspan(5));  // same layout: one string
        if (tag) onCommandTag(tag->sql);
        if (!popFor(f.type)) return;
        break;
      }
      case be::ParseComplete:
      case be::CloseComplete: {
        bool hidden = !expect_.empty() && (expect_.front().kind == Expect::Kind::HiddenParse ||
                                           expect_.front().kind == Expect::Kind::HiddenClose);
        if (!popFor(f.type)) return;
        swallow = hidden;
        break;
      }
      case be::BindComplete:
      case be::NoData:
      case be::RowDescription:
      case be::EmptyQuery:
      case be::PortalSuspended:
        if (!popFor(f.type)) return;
        break;
      case be::ErrorResponse: {
        if (!complete) goto done;
        auto msg = in.contiguous(f.total, scratch_);
        auto ef = parseErrorFields(msg.subspan(5));
        if (!ef) {
          protocolDesync("malformed ErrorResponse");
          return;
        }
        if (loggedIn_ && (ef->severity == "FATAL" || ef->severity == "PANIC")) {
          // The server is going away (postmaster died, shutdown, pg_terminate_backend):
          // the client keeps its connection and gets a plain ERROR instead.
          serverFatal_ = std::string(ef->code) + ": " + std::string(ef->message);
          in.consume(f.total);
          cc.flush();  // what came before the FATAL (often a complete answer) goes out first
          server_->abandon(UV_ECONNRESET);
          return;
        }
        popAfterError(ef->code);
        break;
      }
      case be::CopyInResponse:
      case be::CopyOutResponse:
      case be::CopyBothResponse:
        inCopy_ = true;
        break;
      default:
        break;
    }
    if (swallow) {
      if (!complete) goto done;
      in.consume(f.total);
      continue;
    }
    countOut(f.total);
    s2cPassthrough_ = f.total - forward(in, cc, f.total, slices_);
  }
done:
  if (s2cPassthrough_ == 0) emitFakes();
  cc.flush();
  if (!server_) return;
  if (cc.aboveHighWater()) server_->conn().stopReading();
  maybeReleaseAfterTransaction();
}

// Parse+Sync between transactions, of a statement some server already parsed: answering it
// here saves a round trip and, more importantly, lets a client that prepares synchronously
// (libpq's PQprepare, as pgbench does) proceed without waiting for a free server. The
// statement is prepared on a server when the client first uses it.
bool ClientSession::answerParseLocally() {
  ByteQueue& in = client_->in();
  Frame f = readFrame(in, cfg_->maxMessageBytes);
  if (f.status != FrameStatus::Complete || f.type != fe::Parse) return false;
  std::array<std::byte, 5> hdr;
  if (!in.copyOut(f.total, hdr)) return false;
  Frame sync = readFrame(hdr, 8);
  if (sync.status != FrameStatus::Complete || sync.type != fe::Sync || sync.length != 4)
    return false;
  auto msg = in.contiguous(f.total, scratch_);
  auto pv = parseParse(msg.subspan(5));
  if (!pv || pv->name.empty() || stmts_.find(pv->name)) return false;
  std::string_view tail = asText(msg.subspan(5 + pv->name.size() + 1));
  uint64_t h = statementHash(asBytes(tail));
  if (!worker_.knownStatement(h)) return false;
  stmts_.put(pv->name, ClientStatement{h, std::string(tail)});
  in.consume(f.total + sync.total);
  client_->send(std::string_view("1\0\0\0\4Z\0\0\0\5I", 11));
  return true;
}

// "DEALLOCATE [PREPARE] name" -> name (folded to lower case unless quoted); nullopt for
// DEALLOCATE ALL and anything else.
static std::optional<std::string> deallocateTarget(std::string_view sql) {
  size_t i = 0;
  auto skipSpace = [&] {
    while (i < sql.size() && std::isspace(static_cast<unsigned char>(sql[i]))) ++i;
  };
  auto word = [&] {
    size_t b = i;
    while (i < sql.size() && (std::isalnum(static_cast<unsigned char>(sql[i])) || sql[i] == '_' ||
                              sql[i] == '$'))
      ++i;
    std::string r(sql.substr(b, i - b));
    for (auto& c : r) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return r;
  };
  skipSpace();
  if (word() != "deallocate") return std::nullopt;
  skipSpace();
  size_t save = i;
  std::string name = word();
  bool quoted = false;
  if (name == "prepare") {
    skipSpace();
    save = i;
    name = word();
  }
  if (name.empty() && i < sql.size() && sql[i] == '"') {
    quoted = true;
    i = save + 1;
    while (i < sql.size()) {
      if (sql[i] == '"') {
        if (i + 1 < sql.size() && sql[i + 1] == '"') {
          name += '"';
          i += 2;
          continue;
        }
        break;
      }
      name += sql[i++];
    }
    if (i >= sql.size()) return std::nullopt;
    ++i;
  }
  skipSpace();
  if (i < sql.size() && sql[i] == ';') ++i;
  skipSpace();
  if (i != sql.size() || name.empty() || (!quoted && name == "all")) return std::nullopt;
  return name;
}

// SQL DEALLOCATE of a protocol-level statement in transaction mode: the name is the
// client's, its server-side twin is pgsw_<hash> and may be shared, so the server cannot
// run it. psycopg 3 (libpq < 17) evicts its statement cache this way, as a simple Query or
// as an unnamed Parse/Bind/[Describe]/Execute/Sync batch. Answered here when nothing is
// pending ahead of it, so replies stay in order.
bool ClientSession::answerDeallocateLocally(char txnStatus) {
  ByteQueue& in = client_->in();
  Frame f = readFrame(in, cfg_->maxMessageBytes);
  if (f.status != FrameStatus::Complete || f.total > 512) return false;
  if (f.type != fe::Query && f.type != fe::Parse) return false;
  auto msg = in.contiguous(f.total, scratch_);
  std::string_view sql;
  if (f.type == fe::Query) {
    sql = std::string_view(reinterpret_cast<const char*>(msg.data()) + 5, f.total - 6);
  } else {
    auto pv = parseParse(msg.subspan(5));
    if (!pv || !pv->name.empty() || pv->paramCount != 0) return false;
    sql = pv->sql;
  }
  auto name = deallocateTarget(sql);
  if (!name || !stmts_.find(*name)) return false;
  std::string out;
  size_t total = f.total;
  if (f.type == fe::Parse) {
    // The rest of the batch must be exactly: Bind "" "" (no parameters), optional
    // Describe portal "", Execute "", Sync.
    out += std::string_view("1\0\0\0\4", 5);
    bool bound = false, executed = false;
    for (;;) {
      std::array<std::byte, 5> hdr;
      if (!in.copyOut(total, hdr)) return false;
      Frame g = readFrame(hdr, 512);
      if (g.status == FrameStatus::Invalid || total + g.total > in.size() || g.total > 64)
        return false;
      std::array<std::byte, 64> body{};
      in.copyOut(total + 5, std::span(body.data(), g.total - 5));
      if (g.type == fe::Bind && !bound) {
        // "" portal, "" statement, int16 0 formats, int16 0 params, int16 result formats...
        if (g.total < 5 + 2 + 4 || body[0] != std::byte{0} || body[1] != std::byte{0} ||
            body[2] != std::byte{0} || body[3] != std::byte{0} || body[4] != std::byte{0} ||
            body[5] != std::byte{0})
          return false;
        out += std::string_view("2\0\0\0\4", 5);
        bound = true;
      } else if (g.type == fe::Describe && bound && !executed) {
        if (body[0] != std::byte{'P'}) return false;
        out += std::string_view("n\0\0\0\4", 5);
      } else if (g.type == fe::Execute && bound && !executed) {
        executed = true;
        appendCommandComplete(out, "DEALLOCATE");
      } else if (g.type == fe::Sync && executed) {
        total += g.total;
        break;
      } else {
        return false;
      }
      total += g.total;
    }
  } else {
    appendCommandComplete(out, "DEALLOCATE");
  }
  stmts_.erase(*name);
  in.consume(total);
  appendReadyForQuery(out, txnStatus);
  client_->send(out);
  return true;
}

// COMMIT / ROLLBACK (ABORT, END; optional WORK or TRANSACTION) while the client has no
// transaction: PostgreSQL only warns (25P01). Answered here without taking a server, which
// also lets a client clean up after a failover before any primary is back.
bool ClientSession::answerTxnEndLocally() {
  ByteQueue& in = client_->in();
  Frame f = readFrame(in, cfg_->maxMessageBytes);
  if (f.status != FrameStatus::Complete || f.type != fe::Query || f.total > 64) return false;
  std::array<char, 64> text{};
  size_t n = f.total - 6;
  if (!in.copyOut(5, std::span(reinterpret_cast<std::byte*>(text.data()), n))) return false;
  std::string_view sql(text.data(), n);
  std::string words[3];
  size_t count = 0, i = 0;
  while (i < sql.size()) {
    char c = sql[i];
    if (std::isspace(static_cast<unsigned char>(c)) || c == ';') {
      ++i;
      continue;
    }
    if (!std::isalpha(static_cast<unsigned char>(c)) || count == 3) return false;
    while (i < sql.size() && std::isalpha(static_cast<unsigned char>(sql[i])))
      words[count] += static_cast<char>(std::toupper(static_cast<unsigned char>(sql[i++])));
    ++count;
  }
  if (count == 0 || count > 2) return false;
  const std::string& w = words[0];
  bool rollback = w == "ROLLBACK" || w == "ABORT";
  if (!rollback && w != "COMMIT" && w != "END") return false;
  if (count == 2 && words[1] != "WORK" && words[1] != "TRANSACTION") return false;
  in.consume(f.total);
  std::string out;
  appendNotice(out, ErrorSpec{"WARNING", "25P01", "there is no transaction in progress"});
  appendCommandComplete(out, rollback ? "ROLLBACK" : "COMMIT");
  appendReadyForQuery(out, 'I');
  client_->send(out);
  return true;
}

bool ClientSession::idleBetweenTransactions() const {
  return server_ && expect_.empty() && !unsynced_ && !inCopy_ && s2cPassthrough_ == 0 &&
         c2sPassthrough_ == 0 && server_->txnStatus() == 'I' && !discardUntilSync_;
}

void ClientSession::maybeReleaseAfterTransaction() {
  if (!transactionPooling_ || pinned_ || state_ != State::Active) return;
  if (!idleBetweenTransactions() || !server_->conn().in().empty()) return;
  if (!readback_.empty()) {
    readSettingBack();
    return;
  }
  if (needCommitLsn()) {
    fetchCommitLsn();
    return;
  }
  // A pipelining client already sent its next request: keep the server for it.
  if (!client_->in().empty()) {
    relayClientToServer();
    return;
  }
  releaseServer();
  transitionTo(State::Idle);
  client_->startReading();
}

void ClientSession::protocolDesync(const char* what) {
  spdlog::warn("client {}: server {} protocol error: {}", client_->peerName(),
               server_ ? server_->id() : 0, what);
  if (server_) {
    ServerConn* s = server_;
    server_ = nullptr;
    if (cancelSlot_) cancelSlot_->clear();
    s->conn().in().clear();
    s->conn().stopReading();
    pool_->release(*s, false, false);
  }
  fatal("08P01", std::string("protocol error between pgswitch and the server: ") + what);
}

void ClientSession::onConnRead(Conn& c) noexcept {
  lastActivityMs_ = worker_.nowMs();
  switch (state_) {
    case State::Startup:
      handleStartup();
      return;
    case State::Auth:
      handleAuthMessage();
      return;
    case State::WaitServer:
    case State::Configure:
      // Pipelined requests wait in the buffer; stop reading until a server is linked.
      client_->stopReading();
      return;
    case State::Active:
    case State::Idle:
      relayClientToServer();
      return;
    case State::Console:
      console_->onRead();
      return;
    case State::Closing:
      client_->in().clear();
      return;
  }
}

void ClientSession::onServerRead(ServerConn& s) noexcept {
  if (state_ == State::Active) relayServerToClient();
}

// The client's write queue drained: let the server talk again.
void ClientSession::onConnDrained(Conn& c) noexcept {
  if (state_ != State::Active || !server_) return;
  server_->conn().startReading();
  if (!server_->conn().in().empty()) relayServerToClient();
}

// The server's write queue drained: let the client talk again.
void ClientSession::onServerDrained(ServerConn& s) noexcept {
  if (state_ != State::Active) return;
  client_->startReading();
  if (!client_->in().empty()) relayClientToServer();
}

}  // namespace pgswitch::proxy
