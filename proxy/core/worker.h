// Worker: one event-loop thread. Owns its libuv loop, its chunk pool (worker 0 also the
// process's listening socket), every client session it serves (accepted on it, or handed
// over by worker 0: worker_fill) and the server pools those sessions use. Nothing here is
// touched by another thread except through post(), which wakes the loop with uv_async, a
// socket handed over through the rings (Ring::message, to ringFd_), and the atomics
// fillTarget reads.
#pragma once

#include <uv.h>

#include <array>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <tuple>
#include <unordered_set>
#include <vector>

#include "protocol/buffer.h"
#include "proxy/core/client_handle.h"
#include "proxy/core/login_facts.h"
#include "proxy/core/listener.h"
#include "proxy/core/prepared_statements.h"
#include "proxy/core/runtime.h"
#include "proxy/core/shared_params.h"
#include "proxy/core/stats.h"
#include "routing/classifier.h"
#include "routing/volatile_functions.h"

namespace pgswitch::proxy {

class Pool;
class Ring;
struct WorkerPart;

class Worker {
 public:
  Worker(int id, Runtime& rt, SessionFactory sessions);
  ~Worker();

  // Binds the listener (throws std::runtime_error at start-up on failure). Only worker 0
  // listens, and hands out what it accepts (fillTarget). With a socket per worker the kernel
  // spread new connections over all of them, and each one a worker accepted only to pass it
  // on cost that worker a wake-up: one more per login, which under connection churn made two
  // workers cost 1.07x PgBouncer's CPU where one cost 0.89x (docs/benchmarks.md). The
  // socket is still SO_REUSEPORT, for a second instance on the same port (docs/console.md).
  void listen(const std::string& host, int port, int deferAcceptS);
  int boundPort() const;
  void start();  // runs the loop on its own thread
  void runHere();  // runs the loop on the calling thread (tests)
  void stop();   // thread-safe: close the listener and all sessions, end the loop
  void join();
  // The topology changed (health thread): drop server connections to backends that are no
  // longer usable. Runs on this worker's thread (via post()).
  void onTopologyChanged();
  // Sessions waiting for a usable backend to appear (no primary during a failover).
  void addHolding(ClientHandle* c);
  void removeHolding(ClientHandle* c);
  // Runs fn on this worker's thread. False (fn dropped) once the loop is shutting down.
  bool post(std::function<void()> fn);
  // Reads waiting for their replica to replay what they must see (consistency "strong",
  // "read_your_writes"): each is asked ClientHandle::replicaWaitCheck when the ReplayWatcher
  // learned a position (replayLearned(), from its thread) and at its deadline (ms of
  // health::ReplayWatcher::nowMs()). No allocation once the list has grown.
  void addReplicaWaiter(ClientHandle* c, uint64_t deadlineMs);
  void removeReplicaWaiter(ClientHandle* c);
  void replayLearned();  // thread-safe; wakes the loop only when reads wait
  // `p` could not serve a session: Pool::askPeersIfStillShort in Pool::kAskPeersAfterMs.
  void askPeersSoon(Pool* p);

  // Observability and graceful stop (worker_admin.cc).
  // Counters per backend slot, written only on this thread. Routing counts reads/writes;
  // the relay counts transactions, queries, bytes and latency.
  // Called for every message: the rare growth is out of line, so the common case saves no
  // registers.
  BackendCounters& counters(int backend) {
    if (static_cast<size_t>(backend) < counters_.size()) return counters_[backend];
    return countersSlow(backend);
  }
  // This worker's part of a Snapshot (clients, servers, pools, counters). On this thread.
  void collectInto(WorkerPart& part);
  // SHUTDOWN WAIT: stop accepting; each session ends once it is between transactions; then
  // the worker shuts down as stop() does. Thread-safe.
  void stopGraceful();
  // The loop has returned (thread-safe).
  bool finished() const { return finished_.load(); }

  int id() const { return id_; }
  uv_loop_t* loop() { return &loop_; }
  // The io_uring its connections read and write through; null: libuv's epoll path
  // (server.io_uring = off, or the kernel refused; set when the loop starts).
  Ring* ring() { return ring_.get(); }
  protocol::ChunkPool& chunks() { return chunks_; }
  Runtime& runtime() { return rt_; }
  // The current configuration and topology without the Runtime's lock (and a reference count
  // other cores write too) per use: a generation number says when to take them again. What
  // they replace is kept until the turn ends, so a reference stays valid in its callback.
  const Config& config() {
    if (rt_.configGeneration() != turnConfigGen_) takeConfig();
    return *turnConfig_;
  }
  const routing::Topology& topology() {
    if (rt_.topologyGeneration() != turnTopologyGen_) takeTopology();
    return *turnTopology_;
  }
  uint64_t nowMs() { return uv_now(&loop_); }

  void retire(Retirable* r) { graveyard_.push_back(r); }
  void addClient(ClientHandle* c);
  void removeClient(ClientHandle* c);
  size_t clientCount() const { return clients_.size(); }

  // worker_fill (issue 14). Worker 0 alone listens (one socket per process, see Worker::listen)
  // and passes what it accepts to the first worker (by id) that has fewer than `fill`
  // clients, counting those on their way to it, and is not busy; when none has room, to the
  // one with the fewest (the lowest id of equals). Filling in order keeps a light load on one
  // loop: spread evenly, every worker wakes up for a fraction of the events, and each sleep
  // and wake costs more than the work it batches.
  Worker* fillTarget(int fill);
  // Passes a socket this worker accepted and admitted to `to` (on this worker's thread).
  // False: `to` no longer takes clients, and the caller keeps it.
  bool handOver(Worker& to, int fd);
  // Clients registered here plus sockets handed over and not yet registered (any thread).
  int occupancy() const {
    return clientsShared_.load(std::memory_order_relaxed) +
           incoming_.load(std::memory_order_relaxed);
  }
  // Share of the last janitor period (about a second) this thread spent on a CPU, in
  // thousandths; from kBusyPermille on, fillTarget passes it by.
  int busyPermille() const { return busyPermille_.load(std::memory_order_relaxed); }
  static constexpr int kBusyPermille = 700;

  // The pool for (backend, database, user), created on first use.
  Pool& pool(int backend, const std::string& database, const std::string& user);
  // This worker's pool of a key, if it has one.
  Pool* findPool(const PoolKey& key);
  // This worker's part of a total that is divided over every worker (a pool's share of
  // pool_size when peers ask for connections): the parts add up to the total exactly (5 over
  // 2 workers: 3 and 2). pool_size and reserve_pool_size themselves are not divided: the
  // workers share them through a PoolBudget, which also divides min_pool_size over the
  // workers that have a pool of the key (PoolBudget::share).
  int workerShare(int total) const;
  int workerCount() const { return workerCount_; }
  void setWorkerCount(int n) { workerCount_ = n; }
  bool stopping() const { return stopping_; }
  bool draining() const { return draining_; }  // SHUTDOWN WAIT: sessions end, none start

  // Read/write routing state of this worker: the statement classifier (rebuilt when the
  // configured write functions change), requests in flight per backend (the load that
  // replica choice balances), and a cheap PRNG for the choice.
  routing::Classifier& classifier(const Config& cfg);
  std::vector<int>& outstanding() { return outstanding_; }
  // The volatile functions of `database` as last read (null: not read yet), and the
  // snapshot they come from (CatalogWatcher, posted here when it changes).
  const routing::VolatileFunctions* volatileFunctions(std::string_view database) const {
    return functions_ ? functions_->find(database) : nullptr;
  }
  void setFunctionCatalog(routing::FunctionCatalogPtr c) {
    // Posts from two threads (a read, a reload turning the lookup off) may arrive out of order.
    if (!functions_ || c->version > functions_->version) functions_ = std::move(c);
  }
  // SCRAM passthrough: the ClientKey a client of `user` proved at its login on this worker,
  // the latest one (the same for every client of the user while its secret is unchanged).
  // Kept here, not in every session: a pool logging in to a server whose password pgswitch
  // knows only as a SCRAM secret takes it from here.
  void noteClientKey(const std::string& user, const std::array<uint8_t, 32>& key) {
    clientKeys_[user] = key;
  }
  const std::array<uint8_t, 32>* clientKey(const std::string& user) const {
    auto it = clientKeys_.find(user);
    return it == clientKeys_.end() ? nullptr : &it->second;
  }
  // auth.query: what the lookup at the latest login of `user` on this worker found (its
  // pools log in to servers with it). Here, not in every session of the user.
  void noteLookedUpUser(const std::string& user, std::shared_ptr<const UserConfig> u) {
    lookedUpUsers_[user] = std::move(u);
  }
  std::shared_ptr<const UserConfig> lookedUpUser(const std::string& user) const {
    auto it = lookedUpUsers_.find(user);
    return it == lookedUpUsers_.end() ? nullptr : it->second;
  }
  // A server login to `database` succeeded: its volatile functions are worth knowing (only
  // databases that exist and clients use; a name a client merely tried is never read).
  void databaseInUse(const std::string& database);
  // Function DDL for `database` passed through this worker: have its catalog read again.
  void functionsChanged(std::string_view database) {
    if (rt_.catalog) rt_.catalog->markStale(database);
  }
  void addOutstanding(int backend, int delta) {
    if (backend < 0) return;
    if (static_cast<size_t>(backend) >= outstanding_.size()) outstanding_.resize(backend + 1, 0);
    outstanding_[backend] += delta;
  }
  uint64_t random() {
    rng_ ^= rng_ << 13;
    rng_ ^= rng_ >> 7;
    rng_ ^= rng_ << 17;
    return rng_;
  }

  // Hashes of statements that parsed successfully on some server of this worker (bounded:
  // forgotten wholesale when it grows past kKnownStatementsMax).
  bool knownStatement(uint64_t h) const { return knownStatements_.count(h) != 0; }
  void rememberStatement(uint64_t h) {
    if (knownStatements_.size() >= kKnownStatementsMax) knownStatements_.clear();
    knownStatements_.insert(h);
  }
  // Statements whose result type changed (0A000): prepared again on each server of this worker.
  StaleStatements& staleStatements() { return staleStatements_; }
  // The ParameterStatus sets this worker's clients were told, one copy per distinct set.
  ParamsInterner& sharedParams() { return sharedParams_; }
  // What this worker's clients logged in with: user and database pairs, startup settings.
  ClientNamesInterner& clientNames() { return clientNames_; }
  SettingsInterner& startupSettings() { return startupSettings_; }
  // Buffers the sessions of this worker fill and empty within one call (a message assembled,
  // rewritten or answered by the relay): one set per worker, not a few hundred bytes (and
  // what they grew to) in every session (issue 14). A user is done with them before anything
  // that can run another session's relay (a flush may end a session and hand its server to
  // a waiting one).
  struct SessionScratch {
    std::vector<std::byte> bytes;           // a message assembled whole (Relay)
    std::vector<std::byte> statementBytes;  // StatementMap's, beside `bytes`
    std::string toServer, toClient;         // rewritten messages, pgswitch's own answers
    // A logging-in client's answers (ClientSession::continueLogin), and the ParameterStatus
    // run that ends a login (configure): each written out before the next use.
    std::string login, params;
  };
  SessionScratch& scratch() { return scratch_; }
  // uv_write requests, reused LIFO: a Conn holds one only while its uv_write is in flight
  // (no request in every idle connection, no allocation per write in the steady state).
  uv_write_t* takeWriteReq();
  void giveWriteReq(uv_write_t* req);

 private:
  static void onAccepted(void* self, int fd);
  // A socket handed over through the rings (handOver): arrived here (res >= 0), or refused by
  // the kernel on its way from here (res < 0), when this worker serves it itself.
  static void onRingMessage(void* self, uint64_t data, int res);
  // A socket handed over (by a post or through the rings) and no longer counted as on its
  // way: served, or refused as shutting down (57P03) once this worker stops or drains.
  void serveHanded(int fd);
  // fd came from `host` faster than max_connections_per_second_per_address: 53300, close.
  void rateLimited(int fd, const std::string& host, int perSecond);
  static void onCheck(uv_check_t* h);
  // The loop with a Ring: one io_uring_enter per turn, libuv run without blocking when its
  // descriptor is readable or a timer is due.
  void runRing();
  static void onAsync(uv_async_t* h);
  static void onJanitor(uv_timer_t* t);
  static void onReplicaWaitTimer(uv_timer_t* t);
  static void onAskPeersTimer(uv_timer_t* t);
  void drainPosted();
  void checkReplicaWaiters();
  void shutdownNow();
  void endQuiescentClients();  // SHUTDOWN WAIT, once a second
  void measureBusy();           // the janitor: busyPermille_ over the last period
  void giveMemoryBack(uint64_t now);

  int id_;
  Runtime& rt_;
  std::shared_ptr<const Config> turnConfig_;
  uint64_t turnConfigGen_ = 0;
  routing::TopologyPtr turnTopology_;
  uint64_t turnTopologyGen_ = 0;
  std::vector<std::shared_ptr<const void>> superseded_;  // until the turn ends (onCheck)
  void takeConfig();
  void takeTopology();
  SessionFactory sessions_;
  uv_loop_t loop_;
  protocol::ChunkPool chunks_;
  std::unique_ptr<Ring> ring_;  // its buffers are chunks_'s
  Listener listener_;
  uv_check_t check_;
  uv_async_t async_;
  uv_timer_t janitor_;
  std::thread thread_;
  std::mutex postMu_;
  std::vector<std::function<void()>> posted_;
  bool asyncClosed_ = false;  // under postMu_: post() must not touch async_ any more
  std::vector<Retirable*> graveyard_;
  std::vector<Retirable*> burying_;  // onCheck's list being deleted
  std::vector<ClientHandle*> clients_;
  // What fillTarget on other threads reads: clients_.size(), sockets handed over to this
  // worker and not yet registered, the busy share, and whether it takes clients at all
  // (not once it stops or drains).
  // Their own cache line: other workers' accepts write incoming_.
  alignas(64) std::atomic<int> clientsShared_{0};
  std::atomic<int> incoming_{0};
  std::atomic<int> busyPermille_{0};
  std::atomic<bool> takesClients_{true};
  std::atomic<int> ringFd_{-1};  // this worker's ring while its loop runs: handOver's address
  uint64_t busyCpuNs_ = 0;   // this thread's CPU time at the last measureBusy
  alignas(64) uint64_t busyWallNs_ = 0;  // uv_hrtime() then
  std::vector<ClientHandle*> holding_;
  struct ReplicaWaiter {
    ClientHandle* client;
    uint64_t deadlineMs;
  };
  std::vector<ReplicaWaiter> replicaWaiters_;
  std::vector<ReplicaWaiter> replicaWaitersCopy_;  // checkReplicaWaiters' copy, reused
  std::atomic<int> replicaWaiterCount_{0};         // read by replayLearned's thread
  std::atomic<bool> replayNews_{false};            // onAsync: check the waiters
  uv_timer_t replicaWaitTimer_;                    // the earliest deadline
  uv_timer_t askPeersTimer_;                       // Pool::kAskPeersAfterMs after the first
  struct ShortPool {
    Pool* pool;
    uint64_t sinceMs;
  };
  std::vector<ShortPool> askPeersSoon_;  // pools short of a connection, oldest first
  std::vector<ShortPool> askPeersDue_;   // onAskPeersTimer's list of those due, reused
  // Transparent: a request looks its pool up by views, without copying the two names.
  std::map<PoolKey, std::unique_ptr<Pool>, std::less<>> pools_;
  std::unordered_set<uint64_t> knownStatements_;
  StaleStatements staleStatements_;
  ParamsInterner sharedParams_;  // swept by the janitor
  ClientNamesInterner clientNames_;  // swept by the janitor
  SettingsInterner startupSettings_;  // swept by the janitor
  std::map<std::string, std::array<uint8_t, 32>, std::less<>> clientKeys_;  // one per user
  std::map<std::string, std::shared_ptr<const UserConfig>, std::less<>> lookedUpUsers_;
  SessionScratch scratch_;
  std::vector<std::unique_ptr<uv_write_t>> freeWriteReqs_;  // trimmed by giveMemoryBack
  static constexpr size_t kKnownStatementsMax = 65536;
  int workerCount_ = 1;
  std::unique_ptr<routing::Classifier> classifier_;
  std::vector<std::string> classifierFunctions_;
  std::vector<std::string> classifierReadOnly_;
  routing::FunctionCatalogPtr functions_;
  std::unordered_set<std::string> watchedDatabases_;  // told to the CatalogWatcher already
  std::vector<int> outstanding_;
  int lastPrimary_ = -1;  // primary of the last topology this worker saw
  [[gnu::noinline]] BackendCounters& countersSlow(int backend);
  std::vector<BackendCounters> counters_;
  uint64_t rng_ = 0x9e3779b97f4a7c15ull;
  bool stopping_ = false;
  bool draining_ = false;  // SHUTDOWN WAIT in progress
  std::atomic<bool> finished_{false};
  BackendCounters spareCounters_;
  uint64_t stopAtMs_ = 0;
  uint64_t lastTrimMs_ = 0;
  static constexpr uint64_t kTrimEveryMs = 5000;
  static constexpr size_t kKeepFreeChunks = 32;             // 1 MiB of 32 KiB chunks
  static constexpr size_t kTrimAboveBytes = 4 * 1024 * 1024;  // free in malloc's arenas
  static constexpr uint64_t kShutdownGraceMs = 3000;
  uint64_t rateLogMs_ = 0;             // last log line about rate-limited connections
  uint64_t rateLimitedSinceLog_ = 0;
  static constexpr uint64_t kRateLogEveryMs = 10000;
};

}  // namespace pgswitch::proxy
