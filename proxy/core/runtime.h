// Runtime: the state shared by all worker threads: the current config and topology
// snapshots (swapped whole, read under a short lock), the cancel-key registry and global
// counters. Everything else belongs to exactly one worker.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "health/catalog_watcher.h"
#include "health/replay_watcher.h"
#include "health/secret_lookup.h"
#include "health/health_monitor.h"
#include "proxy/config/config.h"
#include "proxy/core/address_rate_limit.h"
#include "proxy/core/listener.h"
#include "proxy/core/pause.h"
#include "proxy/core/pool_budget.h"
#include "proxy/core/tls_context.h"
#include "proxy/core/write_floor.h"
#include "routing/topology.h"

namespace pgswitch::proxy {

// Where a client's cancel request must go: the server connection currently serving it.
struct CancelTarget {
  std::string host;
  int port = 0;
  int32_t pid = 0;
  int32_t key = 0;
  // The client's own key, to check just before sending that the request the cancel was
  // meant for is still the one running (CancelRegistry::inFlight).
  int32_t clientPid = 0, clientKey = 0;
  uint64_t request = 0;
};

// Which server connection a client is using right now, written by the client's own worker
// at every link and unlink (each transaction in transaction mode): two atomic stores, no
// lock. A cancel arriving on another worker reads it. The server's (pid, key) is one 64-bit
// value, so it is never torn; read together with the backend across a relink, the worst
// case is a cancel the wrong server ignores (the key does not match), as when it arrives
// just after the query ended.
class CancelSlot {
 public:
  void set(int backend, int32_t serverPid, int32_t serverKey) {
    backend_.store(backend, std::memory_order_relaxed);
    server_.store((uint64_t(uint32_t(serverPid)) << 32) | uint32_t(serverKey),
                  std::memory_order_release);
  }
  void clear() {
    server_.store(0, std::memory_order_release);
    inFlight_.store(0, std::memory_order_release);
  }
  // Whether the client has a request the server is working on, as a number that changes
  // with every request (0: none). PostgreSQL ignores a cancel for an idle backend; a cancel
  // forwarded late would hit the client's next query instead, so the forwarder checks it
  // when the cancel arrives and again just before sending it. Owner thread only.
  void requestStarted() {
    if (++requests_ == 0) ++requests_;  // wrapped: 0 means none
    inFlight_.store(requests_, std::memory_order_release);
  }
  void requestEnded() { inFlight_.store(0, std::memory_order_release); }
  uint64_t inFlight() const { return inFlight_.load(std::memory_order_acquire); }
  // False when no server is linked.
  bool get(int& backend, int32_t& serverPid, int32_t& serverKey) const {
    uint64_t v = server_.load(std::memory_order_acquire);
    if (v == 0) return false;
    backend = backend_.load(std::memory_order_relaxed);
    serverPid = int32_t(uint32_t(v >> 32));
    serverKey = int32_t(uint32_t(v));
    return true;
  }

 private:
  std::atomic<uint64_t> server_{0};
  std::atomic<uint32_t> inFlight_{0};
  std::atomic<int> backend_{-1};
  uint32_t requests_ = 0;  // written by the owner thread only
};

// Client cancel keys -> their CancelSlot, which lives in the client's session (issue 14: not
// a shared allocation per client). The map changes only at login and logout; a slot is read
// by other threads only under the lock, and its session removes it (under the lock) before
// the slot goes away.
class CancelRegistry {
 public:
  struct Entry {
    int32_t pid = 0, key = 0;  // what the client gets in BackendKeyData
  };
  // A fresh (pid, key) pair for `slot`, a new client's; pid is unique in this process.
  Entry add(CancelSlot* slot);
  void remove(int32_t pid, int32_t key);
  // What a cancel for a known key needs, read from its slot: false for an unknown key or a
  // client with no server linked.
  struct Busy {
    int backend = -1;
    int32_t serverPid = 0, serverKey = 0;
    uint64_t request = 0;  // CancelSlot::inFlight(): 0 when nothing runs
  };
  bool read(int32_t pid, int32_t key, Busy& out) const;
  // The slot's inFlight() (0 for an unknown key: the client is gone).
  uint64_t inFlight(int32_t pid, int32_t key) const;

 private:
  static uint64_t k(int32_t pid, int32_t key) {
    return (uint64_t(uint32_t(pid)) << 32) | uint32_t(key);
  }
  mutable std::mutex mu_;
  std::unordered_map<uint64_t, CancelSlot*> map_;
  std::atomic<int32_t> nextPid_{1};
};

class ProxyControl;
class Worker;

class Runtime {
 public:
  explicit Runtime(std::shared_ptr<const Config> cfg, routing::TopologyPtr topo)
      : config_(std::move(cfg)), topology_(std::move(topo)) {}

  std::shared_ptr<const Config> config() const {
    std::lock_guard g(mu_);
    return config_;
  }
  void setConfig(std::shared_ptr<const Config> c) {
    std::lock_guard g(mu_);
    config_ = std::move(c);
    configGen_.fetch_add(1, std::memory_order_release);
  }
  // Change with every setConfig / setTopology: a worker compares them at each use (Worker::
  // config(), topology()) instead of taking the lock and a reference count other cores write.
  uint64_t configGeneration() const { return configGen_.load(std::memory_order_acquire); }
  // The TLS contexts of the current configuration (replaced whole by a reload).
  std::shared_ptr<const TlsContexts> tls() const {
    std::lock_guard g(mu_);
    return tls_;
  }
  void setTls(std::shared_ptr<const TlsContexts> t) {
    std::lock_guard g(mu_);
    tls_ = std::move(t);
  }
  routing::TopologyPtr topology() const {
    std::lock_guard g(mu_);
    return topology_;
  }
  void setTopology(routing::TopologyPtr t) {
    std::lock_guard g(mu_);
    topology_ = std::move(t);
    topologyGen_.fetch_add(1, std::memory_order_release);
  }
  uint64_t topologyGeneration() const { return topologyGen_.load(std::memory_order_acquire); }

  CancelRegistry& cancels() { return cancels_; }
  // The health thread, when running (null in tools and tests without one).
  health::HealthMonitor* health = nullptr;
  // A server connection to backend i failed or died: check it now.
  void backendTrouble(int i) {
    if (health) health->recheck(i);
  }
  std::atomic<int> clients{0};
  std::atomic<int> ioUringWorkers{0};  // workers whose loop runs on a Ring
  std::atomic<uint64_t> authFailures{0};
  std::atomic<uint64_t> authLookupFailures{0};  // logins refused: auth.query could not run
  std::atomic<uint64_t> failovers{0};       // primary changed (failover or switchover)
  std::atomic<uint64_t> nextServerId{1};    // server connection ids, unique in the process
  // Guards against clients that never get anywhere (SHOW TOTALS, /metrics).
  std::atomic<int> loginClients{0};          // sockets accepted, login not finished
  std::atomic<uint64_t> loginRefused{0};     // turned away: max_login_clients reached
  std::atomic<uint64_t> loginTimeouts{0};    // closed: client_login_timeout_ms passed
  std::atomic<uint64_t> stalledClients{0};   // closed: stopped mid-message (client_stall_timeout_ms)
  std::atomic<uint64_t> accessRefused{0};    // hba_file refused, or console user lists
  std::atomic<uint64_t> rateLimited{0};      // max_connections_per_second_per_address
  std::atomic<uint64_t> clientsHandedOver{0};  // accepted by one worker, served by another
  AddressRateLimit connectRate;              // ... its per-address counts
  AcceptCounters accepts;                    // descriptor exhaustion
  std::atomic<uint64_t> poolsDropped{0};     // unused or failed pools removed
  std::atomic<uint64_t> readonlyRetries{0};  // reads that wrote on a replica, rerun on primary
  std::atomic<uint64_t> recoveryConflictRetries{0};  // reads a replica's replay cancelled
  std::atomic<uint64_t> volatileFunctionRoutes{0};   // reads sent to the primary: volatile fn
  // Transactions run again on a new primary after their server was lost (docs/failover.md).
  struct ReplayCounters {
    std::atomic<uint64_t> attempted{0};      // replays started
    std::atomic<uint64_t> succeeded{0};      // the replay gave the client's answers again
    std::atomic<uint64_t> mismatched{0};     // ... gave other answers: rolled back, 08006
    std::atomic<uint64_t> abandoned{0};      // no primary in time, or lost again too often
    std::atomic<uint64_t> tooLarge{0};       // not replayed: over failover.replay_buffer_bytes
    std::atomic<uint64_t> commitInFlight{0};  // not replayed: COMMIT in flight (08007)
    std::atomic<uint64_t> notReplayable{0};  // not replayed: a statement name defined in it, an
                                             // autocommit statement in flight, session state
  } replays;
  std::atomic<uint64_t> sessionsRebuilt{0};    // after a failover: LISTEN, prepared statements
  std::atomic<uint64_t> sessionsUnmovable{0};  // ended: state no other server can be given
  // The primary moved (Controller): in kFailoverReportMs a failover_clients event tells what
  // the clients went through (replays, rebuilt and ended sessions) since the previous one.
  void noteFailover(std::string newPrimary);
  // Worker 0, once a second: raises that event when it is due.
  void reportFailoverClients();
  static constexpr uint64_t kFailoverReportMs = 5000;
  std::atomic<uint64_t> sessionReads{0};  // session_reads: session-mode reads run on a replica
  std::atomic<uint64_t> sessionReadsFallbacks{0};  // ... sessions left on the primary alone
  // Reads each database's volatile functions (null in tests without a controller).
  health::CatalogWatcher* catalog = nullptr;
  health::ReplayWatcher* replayWatcher = nullptr;  // set by Controller::start, valid after stop
  // Passwords of users without a [[user]] entry ([auth]; null in tests without a controller).
  health::SecretLookup* secrets = nullptr;
  PauseState pause;                         // PAUSE / RESUME
  PoolBudgets budgets;                      // server connections per pool key, all workers
  WriteFloors floors;                       // consistency = strong: what reads must see
  ReplayPositions replay;                   // replay LSNs learned from the replicas themselves
  std::atomic<uint64_t> replicaWaits{0};    // reads that waited for a replica's position
  std::atomic<uint64_t> replicaWaitFallbacks{0};  // ... and went to the primary after all
  std::atomic<uint64_t> readsOnPrimary{0};  // reads no replica could take, at once
  // Every worker, set once before they start (a pool short of connections asks the others
  // to give up idle ones). Empty in tests with a lone worker.
  std::vector<Worker*> workers;
  // The console's and /metrics' access to the whole process (null in loop tests).
  ProxyControl* control = nullptr;

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const Config> config_;
  std::atomic<uint64_t> configGen_{0};
  std::shared_ptr<const TlsContexts> tls_ = std::make_shared<const TlsContexts>();
  routing::TopologyPtr topology_;
  std::atomic<uint64_t> topologyGen_{0};
  CancelRegistry cancels_;
  struct FailoverCounts {
    uint64_t attempted = 0, succeeded = 0, mismatched = 0, abandoned = 0, tooLarge = 0,
             commitInFlight = 0, notReplayable = 0, rebuilt = 0, unmovable = 0;
  };
  FailoverCounts failoverCounts() const;
  std::mutex failoverMu_;
  uint64_t failoverReportAtMs_ = 0;  // steady clock; 0 = nothing due
  std::string failoverPrimary_;
  FailoverCounts failoverBaseline_;
};

}  // namespace pgswitch::proxy
