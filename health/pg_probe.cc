// Non-blocking libpq on libuv. Why the poll handle is recreated at every connect step: libpq
// may close and reopen its socket inside PQconnectPoll (next address, SSL fallback), possibly
// under the same fd number, and libuv must never keep watching a descriptor libpq closed.
#include "health/pg_probe.h"

#include <libpq-fe.h>
#include <spdlog/spdlog.h>

namespace pgswitch::health {

namespace {

void ignoreNotice(void*, const char*) {}

// libpq messages end in newlines and may span lines; keep one tidy line.
std::string oneLine(const char* msg) {
  std::string out;
  bool space = false;
  for (const char* p = msg ? msg : ""; *p; ++p) {
    char c = *p;
    if (c == '\n' || c == '\r' || c == '\t' || c == ' ') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out.empty() ? "unknown libpq error" : out;
}

}  // namespace

PgProbe::PgProbe(uv_loop_t* loop, int index, std::string conninfo, int connectTimeoutMs,
                 int queryTimeoutMs, ProbeListener& listener, ProbeStatement statement)
    : loop_(loop),
      index_(index),
      conninfo_(std::move(conninfo)),
      connectTimeoutMs_(connectTimeoutMs),
      queryTimeoutMs_(queryTimeoutMs),
      listener_(listener),
      statement_(statement) {
  uv_timer_init(loop_, &timer_);
  timer_.data = this;
}

PgProbe::~PgProbe() {
  // close() ran on the loop thread; only the libpq object could still be here if it did not.
  if (conn_ != nullptr) PQfinish(conn_);
}

std::string PgProbe::connError() const {
  return conn_ ? oneLine(PQerrorMessage(conn_)) : std::string("no connection");
}

void PgProbe::check() {
  switch (state_) {
    case State::Idle:
      retried_ = false;
      startConnect();
      return;
    case State::Ready:
      retried_ = false;
      sendQuery();
      return;
    case State::Connecting:
    case State::Querying:
    case State::Closed:
      return;
  }
}

void PgProbe::startConnect() {
  conn_ = PQconnectStart(conninfo_.c_str());
  if (conn_ == nullptr) {
    fail("out of memory creating a libpq connection");
    return;
  }
  PQsetNoticeProcessor(conn_, ignoreNotice, nullptr);
  if (PQstatus(conn_) == CONNECTION_BAD) {
    fail(connError());
    return;
  }
  state_ = State::Connecting;
  uv_timer_start(&timer_, onTimer, static_cast<uint64_t>(connectTimeoutMs_), 0);
  // As libpq documents: before the first PQconnectPoll, behave as if it returned WRITING.
  if (!watch(UV_WRITABLE, true)) fail("cannot watch the libpq socket");
}

void PgProbe::continueConnect() {
  switch (PQconnectPoll(conn_)) {
    case PGRES_POLLING_OK:
      uv_timer_stop(&timer_);
      if (PQsetnonblocking(conn_, 1) != 0) {
        fail(connError());
        return;
      }
      state_ = State::Ready;
      if (!watch(UV_READABLE, true)) {
        fail("cannot watch the libpq socket");
        return;
      }
      sendQuery();
      return;
    case PGRES_POLLING_READING:
      if (!watch(UV_READABLE, true)) fail("cannot watch the libpq socket");
      return;
    case PGRES_POLLING_WRITING:
      if (!watch(UV_WRITABLE, true)) fail("cannot watch the libpq socket");
      return;
    case PGRES_POLLING_FAILED:
    case PGRES_POLLING_ACTIVE:  // unused by libpq
      fail(connError());
      return;
  }
}

void PgProbe::sendQuery() {
  const char* sql = statement_.sql;
  if (statement_.onConnect && !setUp_) {
    firstSql_ = std::string(statement_.onConnect) + "; " + sql;
    sql = firstSql_.c_str();
  }
  if (PQstatus(conn_) != CONNECTION_OK || PQsendQuery(conn_, sql) == 0) {
    // The idle connection went stale without us noticing: one fresh connection per check.
    dropConnection();
    if (!retried_) {
      retried_ = true;
      startConnect();
    } else {
      fail("connection lost");
    }
    return;
  }
  state_ = State::Querying;
  haveResult_ = false;
  result_ = ProbeResult{};
  uv_timer_start(&timer_, onTimer, static_cast<uint64_t>(queryTimeoutMs_), 0);
  int f = PQflush(conn_);
  if (f < 0) {
    fail(connError());
    return;
  }
  if (!watch(f == 1 ? UV_READABLE | UV_WRITABLE : UV_READABLE, false)) {
    fail("cannot watch the libpq socket");
  }
}

void PgProbe::onQueryIo(int events) {
  if (events & UV_WRITABLE) {
    int f = PQflush(conn_);
    if (f < 0) {
      fail(connError());
      return;
    }
    if (f == 0 && !watch(UV_READABLE, false)) {
      fail("cannot watch the libpq socket");
      return;
    }
  }
  if (!(events & UV_READABLE)) return;
  if (PQconsumeInput(conn_) == 0) {
    fail(connError());
    return;
  }
  while (PQisBusy(conn_) == 0) {
    PGresult* res = PQgetResult(conn_);
    if (res == nullptr) {
      if (!haveResult_) result_ = probeFailure("probe returned no result");
      finishCheck(std::move(result_));
      return;
    }
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_COMMAND_OK && statement_.onConnect && !setUp_) {
      PQclear(res);  // the connection's setup statements
      continue;
    }
    if (!haveResult_) {
      haveResult_ = true;
      if (st == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        std::vector<std::optional<std::string>> cols;
        for (int c = 0; c < PQnfields(res); ++c) {
          if (PQgetisnull(res, 0, c)) {
            cols.emplace_back(std::nullopt);
          } else {
            cols.emplace_back(std::string(PQgetvalue(res, 0, c), PQgetlength(res, 0, c)));
          }
        }
        result_ = statement_.parse(cols);
      } else if (st == PGRES_TUPLES_OK) {
        result_ = probeFailure("probe returned " + std::to_string(PQntuples(res)) + " rows");
      } else {
        result_ = probeFailure(oneLine(PQresultErrorMessage(res)));
      }
    }
    PQclear(res);
  }
  if (PQstatus(conn_) == CONNECTION_BAD) fail(connError());
}

void PgProbe::onIdleIo() {
  // Between checks the server only speaks to say goodbye (or to send a notice/parameter).
  if (PQconsumeInput(conn_) == 0 || PQstatus(conn_) == CONNECTION_BAD) {
    spdlog::debug("health: connection to backend {} lost: {}", index_, connError());
    dropConnection();
    listener_.onConnectionLost(index_);
    return;
  }
  while (PQisBusy(conn_) == 0) {
    PGresult* res = PQgetResult(conn_);
    if (res == nullptr) break;
    PQclear(res);
  }
  while (PGnotify* n = PQnotifies(conn_)) PQfreemem(n);
}

bool PgProbe::watch(int events, bool freshHandle) {
  int fd = PQsocket(conn_);
  if (fd < 0) return false;
  if (poll_ != nullptr && !freshHandle) {
    if (events != pollEvents_) {
      pollEvents_ = events;
      return uv_poll_start(poll_, events, onPoll) == 0;
    }
    return true;
  }
  closePoll();
  poll_ = new uv_poll_t;
  if (uv_poll_init_socket(loop_, poll_, fd) != 0) {
    delete poll_;
    poll_ = nullptr;
    return false;
  }
  poll_->data = this;
  pollEvents_ = events;
  return uv_poll_start(poll_, events, onPoll) == 0;
}

void PgProbe::closePoll() {
  if (poll_ == nullptr) return;
  poll_->data = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(poll_),
           [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
  poll_ = nullptr;
  pollEvents_ = 0;
}

void PgProbe::dropConnection() {
  // The poll handle goes first: libuv must stop watching before libpq closes the socket.
  closePoll();
  if (conn_ != nullptr) {
    PQfinish(conn_);
    conn_ = nullptr;
  }
  setUp_ = false;
  if (state_ != State::Closed) state_ = State::Idle;
}

void PgProbe::finishCheck(ProbeResult r) {
  uv_timer_stop(&timer_);
  if (r.ok) setUp_ = true;
  state_ = State::Ready;
  if (!watch(UV_READABLE, false)) {
    dropConnection();
  }
  listener_.onCheckDone(index_, std::move(r));
}

void PgProbe::fail(std::string error) {
  uv_timer_stop(&timer_);
  dropConnection();
  if (state_ == State::Closed) return;
  listener_.onCheckDone(index_, probeFailure(std::move(error)));
}

void PgProbe::close() {
  if (state_ == State::Closed) return;
  state_ = State::Closed;
  dropConnection();
  uv_timer_stop(&timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
}

void PgProbe::onPoll(uv_poll_t* h, int status, int events) noexcept {
  auto* self = static_cast<PgProbe*>(h->data);
  if (self == nullptr) return;
  // On a poll error let libpq find out what happened by trying the operation.
  if (status < 0) events = UV_READABLE | UV_WRITABLE;
  switch (self->state_) {
    case State::Connecting:
      self->continueConnect();
      return;
    case State::Querying:
      self->onQueryIo(events);
      return;
    case State::Ready:
      if (events & UV_READABLE) self->onIdleIo();
      return;
    case State::Idle:
    case State::Closed:
      return;
  }
}

void PgProbe::onTimer(uv_timer_t* h) noexcept {
  auto* self = static_cast<PgProbe*>(h->data);
  switch (self->state_) {
    case State::Connecting:
      self->fail("connect timeout after " + std::to_string(self->connectTimeoutMs_) + " ms");
      return;
    case State::Querying:
      self->fail("query timeout after " + std::to_string(self->queryTimeoutMs_) + " ms");
      return;
    case State::Idle:
    case State::Ready:
    case State::Closed:
      return;
  }
}

}  // namespace pgswitch::health
