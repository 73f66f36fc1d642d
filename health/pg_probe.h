// One backend's health connection on a libuv loop: a persistent libpq connection made with
// PQconnectStart/PQconnectPoll, the probe statement sent with PQsendQuery, the socket watched
// with uv_poll_t, connect and query timeouts enforced with a uv timer. Each check ends in
// exactly one ProbeListener::onCheckDone() call.
#pragma once

#include <uv.h>

#include <string>

#include "health/probe_query.h"

struct pg_conn;

namespace pgswitch::health {

class ProbeListener {
 public:
  virtual ~ProbeListener() = default;
  // A check finished (successfully or not). May start another check from inside.
  virtual void onCheckDone(int index, ProbeResult result) = 0;
  // The idle connection died between checks (server restart, kill): a hint to check now.
  virtual void onConnectionLost(int index) = 0;
};

// What a check runs and how its one row becomes a ProbeResult: the health probe by default;
// the replay watcher asks only for the replay position.
struct ProbeStatement {
  const char* sql = kProbeQuery;
  ProbeResult (*parse)(const std::vector<std::optional<std::string>>& cols) = parseProbeRow;
  // Run once on each new connection, in front of its first check (e.g. a PREPARE the
  // checks EXECUTE); its results without rows are skipped. Null: nothing.
  const char* onConnect = nullptr;
};

class PgProbe {
 public:
  PgProbe(uv_loop_t* loop, int index, std::string conninfo, int connectTimeoutMs,
          int queryTimeoutMs, ProbeListener& listener, ProbeStatement statement = {});
  ~PgProbe();  // close() must have run and the loop must have run its close callbacks
  PgProbe(const PgProbe&) = delete;
  PgProbe& operator=(const PgProbe&) = delete;

  // Starts one check: connects first when there is no connection. No-op while one runs or
  // after close().
  void check();
  // The statement's text for the next checks (it must outlive them).
  void setSql(const char* sql) { statement_.sql = sql; }
  bool busy() const { return state_ == State::Connecting || state_ == State::Querying; }
  bool connected() const { return state_ == State::Ready || state_ == State::Querying; }

  // Finishes the connection and closes every handle (a running check reports nothing).
  void close();

 private:
  enum class State { Idle, Connecting, Ready, Querying, Closed };

  static void onPoll(uv_poll_t* h, int status, int events) noexcept;
  static void onTimer(uv_timer_t* h) noexcept;

  void startConnect();
  void continueConnect();
  void sendQuery();
  void onQueryIo(int events);
  void onIdleIo();
  bool watch(int events, bool freshHandle);
  void closePoll();
  void dropConnection();
  void finishCheck(ProbeResult r);
  void fail(std::string error);
  std::string connError() const;

  uv_loop_t* loop_;
  int index_;
  std::string conninfo_;
  int connectTimeoutMs_;
  int queryTimeoutMs_;
  ProbeListener& listener_;
  ProbeStatement statement_;

  State state_ = State::Idle;
  pg_conn* conn_ = nullptr;
  uv_poll_t* poll_ = nullptr;  // heap: freed in its close callback
  int pollEvents_ = 0;
  uv_timer_t timer_;
  bool retried_ = false;  // a check reconnects at most once after a stale connection
  bool haveResult_ = false;
  bool setUp_ = false;  // statement_.onConnect ran on this connection
  std::string firstSql_;  // onConnect + sql, for the first check of a connection
  ProbeResult result_;
};

}  // namespace pgswitch::health
