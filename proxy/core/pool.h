// Pool: the server connections of one (backend, database, user) on one worker. Hands idle
// connections to sessions, opens new ones up to the pool size, queues sessions FIFO when
// none is free, and takes connections back (reset in session mode) when sessions let go.
#pragma once

#include <deque>
#include <list>
#include <memory>
#include <optional>
#include <string>

#include "proxy/core/pool_budget.h"
#include "proxy/core/server_conn.h"

namespace pgswitch::proxy {

// Why a pool could not provide a server connection. Only proxy/ sessions turn this into an
// ErrorResponse (they know whether the client is still logging in or between queries).
struct PoolError {
  enum class Kind { LoginFailed, Timeout, Shutdown, NoBackend, BackendDown };
  Kind kind;
  std::string serverError;  // LoginFailed: the server's (or our) whole ErrorResponse message
  std::string text;         // human-readable reason
};

// A session waiting for a server connection.
class PoolWaiter {
 public:
  virtual void onServerAssigned(ServerConn& s) noexcept = 0;
  virtual void onServerUnavailable(const PoolError& e) noexcept = 0;

 protected:
  ~PoolWaiter() = default;
};

class Pool {
 public:
  Pool(Worker& w, int backend, std::string database, std::string user);
  ~Pool();

  // Gives an idle server at once (returned) or queues w (returns nullptr) and calls it back.
  ServerConn* acquire(PoolWaiter* w);
  void cancelWait(PoolWaiter* w);
  // A session is done with s. reusable: its protocol state is clean (idle, no pending
  // request); the pool resets it (session mode) and reuses it, else closes it.
  void release(ServerConn& s, bool reusable, bool reset);

  // ServerConn callbacks.
  void onLoginDone(ServerConn& s);
  void onLoginFailed(ServerConn& s, const std::string& errorMessage);
  void onInternalDone(ServerConn& s, bool ok, const std::string& error);
  void onServerClosed(ServerConn& s);

  // Periodic: timeouts of waiters, idle and old servers.
  void janitor(uint64_t nowMs);
  // Closes every server; waiting sessions are told why (kind Shutdown or BackendDown).
  void closeAll(PoolError::Kind why = PoolError::Kind::Shutdown);
  void closeIdle();
  // Opens connections until the pool has n (bounded by its size): a new primary after a
  // failover gets the old one's working set before the first writes arrive.
  void prewarm(size_t n);
  // Another worker of this key is short of a connection: close an idle one (if nobody here
  // waits), freeing its unit of the budget.
  void yieldIdle();
  // A unit of the budget was freed somewhere: open a connection if sessions wait here.
  void budgetFreed();
  // The worker's timer, kAskPeersAfterMs after this pool first could not serve a session:
  // if sessions still wait and no unit is free, other workers are asked for one.
  void askPeersIfStillShort();
  // A session that finds every connection here busy and the total reached usually gets one
  // of this worker's own connections within a transaction's time. Only a shortage that
  // lasts this long takes a connection from another worker (which closes one, and this one
  // opens one): asking at once made the workers trade connections back and forth, a new
  // server login each time, whenever a burst went over the total.
  static constexpr uint64_t kAskPeersAfterMs = 10;
  // Asked for a connection while holding no more than its share (pool_size / workers), a
  // worker gives up only one that has been idle this long (the janitor asks again each
  // second): two busy workers must not hand connections back and forth.
  static constexpr uint64_t kYieldIdleAfterMs = 100;
  // Having closed a connection for another worker, a pool does not grow past its share again
  // for this long, whoever asks: the unit is the other worker's to take.
  static constexpr uint64_t kRegrowAfterYieldMs = 1000;

  // A user without a [[user]] entry: its password as auth.query found it, for backend logins.
  void setLookedUpUser(std::shared_ptr<const UserConfig> u) { lookedUpUser_ = std::move(u); }

  int backend() const { return backend_; }
  const std::string& database() const { return database_; }
  const std::string& user() const { return user_; }
  size_t idleCount() const { return idle_.size(); }
  size_t activeCount() const { return servers_.size() - idle_.size() - connectingCount(); }
  size_t waitingCount() const { return waiters_.size(); }
  size_t totalCount() const { return servers_.size(); }
  // Servers still connecting or logging in, read off their states (a counter kept beside
  // them went wrong whenever one was closed mid-login).
  size_t connectingCount() const;
  // Since when the longest-waiting session waits (0: nobody waits).
  uint64_t oldestWaitSinceMs() const { return waiters_.empty() ? 0 : waiters_.front().sinceMs; }
  // Nothing in it and nobody waiting, and either unused for kUnusedDropMs or its last login
  // was refused longer than server_login_retry_ms ago: the worker may delete it. (A database
  // or user that does not exist must not leave a pool behind per attempt.)
  bool disposable(uint64_t nowMs, uint64_t loginRetryMs) const;
  static constexpr uint64_t kUnusedDropMs = 60000;
  // Every server of the pool, for SHOW SERVERS.
  const std::list<std::unique_ptr<ServerConn>>& servers() const { return servers_; }

 private:
  void spawn();  // opens a connection; the caller took its unit of the budget
  bool trySpawn(int limit);  // takes a unit (at most `limit` over all workers) and spawns
  void tellPeers(bool freed);
  void askPeers();
  void askPeersSoon();
  bool overShare() const;
  bool leavesUnitToPeer() const;
  void yieldToPeer(ServerConn& s);
  void noLongerShort();
  void handOut(ServerConn& s);
  int limit() const;
  bool resolve(sockaddr_storage& out);

  Worker& worker_;
  int backend_;
  std::string database_, user_;
  std::list<std::unique_ptr<ServerConn>> servers_;  // every server of this pool
  std::deque<ServerConn*> idle_;                    // most recently used at the back
  struct Waiter {
    PoolWaiter* w;
    uint64_t sinceMs;
  };
  std::deque<Waiter> waiters_;
  std::shared_ptr<const UserConfig> lookedUpUser_;
  uint64_t lastAcquireMs_ = 0;
  std::shared_ptr<PoolBudget> budget_;  // pool_size over all workers
  bool short_ = false;  // this pool raised budget_->wanted and still has waiters
  bool askSoon_ = false;  // listed on the worker's timer (askPeersSoon)
  uint64_t yieldedMs_ = 0;  // when this pool last closed a connection for another worker
  // The last login failure (the ErrorResponse, or ours for a connection failure). For
  // server_login_retry_ms after it, new requests get the same answer at once instead of a
  // connection attempt each: a storm of logins to a missing database costs the backend one
  // attempt per interval.
  std::string loginError_;
  uint64_t loginFailedMs_ = 0;
};

}  // namespace pgswitch::proxy
