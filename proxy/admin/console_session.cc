// The admin console session (admission is the client session's: client_access.cc), the login's
// ParameterStatus set, and the Query loop. Reading stops while a Snapshot is gathered, so a
// pipelining client's next Query waits in the input buffer and answers stay in order.
#include "proxy/admin/console_session.h"

#include <spdlog/spdlog.h>

#include "protocol/builder.h"
#include "protocol/framing.h"
#include "protocol/messages.h"
#include "proxy/core/conn.h"
#include "proxy/core/worker.h"
#include "proxy/admin/console_actions.h"
#include "proxy/admin/console_internal.h"

namespace pgswitch::proxy {

using namespace protocol;

namespace {

// PROMOTE and SWITCHOVER are answered when the health thread is done; to keep that answer
// unambiguous they must be the only command of their Query.
bool operationNotAlone(std::string_view sql) {
  std::vector<console::Token> tokens;
  console::ParseError err;
  if (!console::tokenize(sql, tokens, err)) return false;  // runConsole reports it
  int statements = 0;
  bool operation = false, first = true;
  for (const console::Token& t : tokens) {
    if (t.kind == console::Token::Kind::Semicolon) {
      first = true;
      continue;
    }
    if (first) {
      ++statements;
      operation |= t.isKeyword("PROMOTE") || t.isKeyword("SWITCHOVER");
    }
    first = false;
  }
  return operation && statements > 1;
}

}  // namespace

ConsoleSession::ConsoleSession(ConsoleHost& owner, Worker& w, Conn& client)
    : owner_(owner), worker_(w), client_(client) {}

ConsoleSession::~ConsoleSession() = default;

void ConsoleSession::start(std::string_view user, std::string_view applicationName,
                           std::string_view clientEncoding, int32_t pid, int32_t key,
                           ConsoleRole role) {
  role_ = role;
  std::string out;
  // What PostgreSQL reports at login, so that drivers and psql are content. The console's
  // text is ASCII, so whatever encoding the client asked for is fine.
  std::string version = "15.0 (pgswitch " + std::string(kPgswitchVersion) + ")";
  std::string encoding = clientEncoding.empty() || clientEncoding == "auto"
                             ? std::string("UTF8")
                             : std::string(clientEncoding);
  const std::pair<std::string_view, std::string_view> params[] = {
      {"server_version", version},
      {"server_encoding", "UTF8"},
      {"client_encoding", encoding},
      {"application_name", applicationName},
      {"DateStyle", "ISO, MDY"},
      {"IntervalStyle", "postgres"},
      {"TimeZone", "UTC"},
      {"integer_datetimes", "on"},
      {"standard_conforming_strings", "on"},
      {"is_superuser", "on"},
      {"session_authorization", user},
  };
  for (const auto& [k, v] : params) appendParameterStatus(out, k, v);
  appendBackendKeyData(out, pid, key);
  reply(std::move(out));
}

void ConsoleSession::onRead() {
  ByteQueue& in = client_.in();
  auto cfg = worker_.runtime().config();
  while (!busy_ && !closed_) {
    Frame f = readFrame(in, cfg->maxMessageBytes);
    if (f.status == FrameStatus::NeedMore) return;
    if (f.status == FrameStatus::Invalid) {
      closed_ = true;
      owner_.consoleEnd("08P01", std::string("invalid frontend message: ") + f.error);
      return;
    }
    const char t = f.type;
    switch (t) {
      case fe::Query: {
        auto msg = in.contiguous(f.total, scratch_);
        auto q = parseQuery(msg.subspan(5));
        std::string sql = q ? std::string(q->sql) : std::string();
        in.consume(f.total);
        if (!q) {
          closed_ = true;
          owner_.consoleEnd("08P01", "invalid Query message");
          return;
        }
        if (skipToSync_) continue;  // as PostgreSQL: ignored until Sync after an error
        runQuery(std::move(sql));
        continue;
      }
      case fe::Sync:
        in.consume(f.total);
        skipToSync_ = false;
        reply({});
        continue;
      case fe::Terminate:
        in.consume(f.total);
        closed_ = true;
        owner_.consoleEnd({}, {});
        return;
      case fe::Parse:
      case fe::Bind:
      case fe::Describe:
      case fe::Execute:
      case fe::Close:
      case fe::Flush: {
        in.consume(f.total);
        if (skipToSync_ || t == fe::Flush) continue;
        skipToSync_ = true;
        std::string out;
        appendError(out, ErrorSpec{"ERROR", "0A000",
                                   "the pgswitch admin console supports only the simple query "
                                   "protocol",
                                   {},
                                   "psql works; with a driver, send the command as a simple "
                                   "query (e.g. psycopg 3: a ClientCursor, asyncpg: "
                                   "execute() without arguments)"});
        client_.send(out);
        client_.flush();
        continue;
      }
      case fe::FunctionCall: {
        in.consume(f.total);
        std::string out;
        appendError(out, ErrorSpec{"ERROR", "0A000",
                                   "the pgswitch admin console has no functions to call"});
        reply(std::move(out));
        continue;
      }
      case fe::CopyData:
      case fe::CopyDone:
      case fe::CopyFail:
        in.consume(f.total);  // no COPY is ever running: PostgreSQL ignores these too
        continue;
      default:
        closed_ = true;
        owner_.consoleEnd("08P01", "invalid frontend message type " +
                                  std::to_string(static_cast<unsigned char>(t)));
        return;
    }
  }
}

void ConsoleSession::runQuery(std::string sql) {
  ProxyControl* ctl = worker_.runtime().control;
  if (!ctl) {
    std::string out;
    appendError(out, ErrorSpec{"ERROR", "55000", "the admin console is not available here"});
    reply(std::move(out));
    return;
  }
  busy_ = true;
  client_.stopReading();
  std::weak_ptr<int> alive = alive_;
  ctl->gather(worker_, [this, alive, sql = std::move(sql)](Snapshot snap) {
    if (alive.expired()) return;  // the session ended while the workers answered
    answer(snap, sql);
  });
}

void ConsoleSession::answer(const Snapshot& snap, const std::string& sql) {
  busy_ = false;
  if (closed_) return;
  ProxyControl* ctl = worker_.runtime().control;
  if (operationNotAlone(sql)) {
    std::string out;
    appendError(out, ErrorSpec{"ERROR", "0A000",
                               "PROMOTE and SWITCHOVER must be sent as a query of their own"});
    reply(std::move(out));
    onRead();
    return;
  }
  ConsoleReply r = runConsole(sql, snap, *ctl, role_);
  if (auto op = ctl->takePending()) {
    // Answered once the health thread has promoted (or refused): reading stays stopped.
    busy_ = true;
    std::weak_ptr<int> alive = alive_;
    ctl->runPending(*op, worker_,
                    [this, alive, msgs = std::move(r.messages)](std::string err) mutable {
                      if (alive.expired()) return;
                      busy_ = false;
                      if (closed_) return;
                      if (!err.empty()) {
                        msgs.clear();
                        appendError(msgs, ErrorSpec{"ERROR", console::kNotInPrerequisiteState, err});
                      }
                      reply(std::move(msgs));
                      onRead();
                    });
    return;
  }
  if (r.closeAfter) {
    // SHUTDOWN: the whole answer (ReadyForQuery too, so that `psql -c "SHUTDOWN WAIT"`
    // exits 0), then the connection ends: the process is going away.
    closed_ = true;
    appendReadyForQuery(r.messages, 'I');
    client_.send(r.messages);
    owner_.consoleEnd({}, {});
    return;
  }
  reply(std::move(r.messages));
  onRead();
}

void ConsoleSession::reply(std::string out) {
  appendReadyForQuery(out, 'I');
  client_.send(out);
  client_.flush();
  if (!busy_ && !closed_) client_.startReading();
}

}  // namespace pgswitch::proxy
