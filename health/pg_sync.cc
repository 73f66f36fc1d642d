// Deadline-bound libpq: the non-blocking API driven by poll() in slices, so that a server
// that stops answering (or a shutdown) never holds the helper thread past its deadline.
#include "health/pg_sync.h"

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>

namespace pgswitch::health {

namespace {

constexpr auto kSlice = std::chrono::milliseconds(50);  // how often cancel is looked at

void ignoreNotice(void*, const char*) {}

std::string oneLine(const char* msg) {
  std::string out;
  for (const char* p = msg ? msg : ""; *p; ++p) {
    char c = *p;
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
    if (c == ' ' && (out.empty() || out.back() == ' ')) continue;
    out += c;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out.empty() ? "unknown libpq error" : out;
}

}  // namespace

std::optional<std::string> SyncConn::Result::at(size_t r, size_t c) const {
  if (r >= rows.size() || c >= rows[r].size()) return std::nullopt;
  return rows[r][c];
}

SyncConn::~SyncConn() { close(); }

void SyncConn::close() {
  if (conn_ != nullptr) PQfinish(conn_);
  conn_ = nullptr;
}

bool SyncConn::fail(std::string why) {
  error_ = std::move(why);
  close();
  return false;
}

bool SyncConn::wait(bool forWrite, Clock::time_point deadline) {
  for (;;) {
    if (cancel_.load()) return fail("cancelled (shutting down)");
    auto now = Clock::now();
    if (now >= deadline) return fail("timed out");
    auto slice = std::min<Clock::duration>(deadline - now, kSlice);
    pollfd p{PQsocket(conn_), static_cast<short>(forWrite ? POLLOUT : POLLIN), 0};
    if (p.fd < 0) return fail("connection has no socket");
    int ms = static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(slice).count());
    int rc = poll(&p, 1, std::max(1, ms));
    if (rc > 0) return true;  // ready, or an error libpq will find when it tries
    if (rc < 0 && errno != EINTR) return fail("poll failed");
  }
}

bool SyncConn::connect(const std::string& conninfo, Clock::time_point deadline) {
  close();
  error_.clear();
  conn_ = PQconnectStart(conninfo.c_str());
  if (conn_ == nullptr) return fail("out of memory creating a libpq connection");
  PQsetNoticeProcessor(conn_, ignoreNotice, nullptr);
  if (PQstatus(conn_) == CONNECTION_BAD) return fail(oneLine(PQerrorMessage(conn_)));
  PostgresPollingStatusType st = PGRES_POLLING_WRITING;
  for (;;) {
    switch (st) {
      case PGRES_POLLING_OK:
        if (PQsetnonblocking(conn_, 1) != 0) return fail(oneLine(PQerrorMessage(conn_)));
        return true;
      case PGRES_POLLING_READING:
      case PGRES_POLLING_WRITING:
        if (!wait(st == PGRES_POLLING_WRITING, deadline)) {
          error_ = "connect: " + error_;
          return false;
        }
        break;
      case PGRES_POLLING_FAILED:
      case PGRES_POLLING_ACTIVE:
        return fail(oneLine(PQerrorMessage(conn_)));
    }
    st = PQconnectPoll(conn_);
  }
}

SyncConn::Result SyncConn::exec(const std::string& sql, Clock::time_point deadline) {
  Result out;
  if (conn_ == nullptr) {
    out.error = error_.empty() ? "not connected" : error_;
    return out;
  }
  if (PQsendQuery(conn_, sql.c_str()) == 0) {
    fail(oneLine(PQerrorMessage(conn_)));
    out.error = error_;
    return out;
  }
  return finish(deadline);
}

SyncConn::Result SyncConn::exec(const std::string& sql, const std::vector<std::string>& params,
                                Clock::time_point deadline) {
  Result out;
  if (conn_ == nullptr) {
    out.error = error_.empty() ? "not connected" : error_;
    return out;
  }
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const std::string& p : params) values.push_back(p.c_str());
  if (PQsendQueryParams(conn_, sql.c_str(), static_cast<int>(values.size()), nullptr,
                        values.data(), nullptr, nullptr, 0) == 0) {
    fail(oneLine(PQerrorMessage(conn_)));
    out.error = error_;
    return out;
  }
  return finish(deadline);
}

SyncConn::Result SyncConn::finish(Clock::time_point deadline) {
  Result out;
  for (;;) {
    int f = PQflush(conn_);
    if (f < 0) {
      fail(oneLine(PQerrorMessage(conn_)));
      out.error = error_;
      return out;
    }
    if (f == 0) break;
    if (!wait(true, deadline)) {
      out.error = error_;
      return out;
    }
  }
  std::string firstError;
  for (;;) {
    while (PQisBusy(conn_)) {
      if (!wait(false, deadline) || PQconsumeInput(conn_) == 0) {
        if (conn_ != nullptr) fail(oneLine(PQerrorMessage(conn_)));
        out.error = error_;
        return out;
      }
    }
    PGresult* res = PQgetResult(conn_);
    if (res == nullptr) break;
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_TUPLES_OK) {
      out.rows.clear();
      for (int r = 0; r < PQntuples(res); ++r) {
        std::vector<std::optional<std::string>> row;
        for (int c = 0; c < PQnfields(res); ++c) {
          if (PQgetisnull(res, r, c)) {
            row.emplace_back(std::nullopt);
          } else {
            row.emplace_back(std::string(PQgetvalue(res, r, c), PQgetlength(res, r, c)));
          }
        }
        out.rows.push_back(std::move(row));
      }
    } else if (st != PGRES_COMMAND_OK && st != PGRES_EMPTY_QUERY && firstError.empty()) {
      firstError = oneLine(PQresultErrorMessage(res));
    }
    PQclear(res);
  }
  if (PQstatus(conn_) == CONNECTION_BAD) {
    fail(oneLine(PQerrorMessage(conn_)));
    out.error = firstError.empty() ? error_ : firstError;
    return out;
  }
  out.ok = firstError.empty();
  out.error = std::move(firstError);
  return out;
}

std::string SyncConn::literal(std::string_view v) {
  if (conn_ == nullptr) return {};
  char* s = PQescapeLiteral(conn_, v.data(), v.size());
  if (s == nullptr) return {};
  std::string out = s;
  PQfreemem(s);
  return out;
}

}  // namespace pgswitch::health
