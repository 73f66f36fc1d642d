// Worker loop plumbing: the listener (listener.cc), deferred deletion on the check phase,
// cross-thread posts through uv_async, and the once-a-second janitor.
#include "proxy/core/worker.h"

#include "health/replay_watcher.h"

#include "proxy/core/heap_counter.h"

#include <utility>
#include <malloc.h>
#include <pthread.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <stdexcept>

#include "protocol/builder.h"
#include "proxy/core/pool.h"
#include "proxy/core/ring.h"

namespace pgswitch::proxy {

Worker::Worker(int id, Runtime& rt, SessionFactory sessions)
    : id_(id),
      rt_(rt),
      sessions_(sessions),
      listener_(&loop_, rt.accepts, &Worker::onAccepted, this) {
  turnConfigGen_ = rt.configGeneration();
  turnConfig_ = rt.config();
  turnTopologyGen_ = rt.topologyGeneration();
  turnTopology_ = rt.topology();
  superseded_.reserve(4);  // takeConfig/takeTopology then never allocate (one change a turn)
  rng_ ^= static_cast<uint64_t>(id + 1) * 0xbf58476d1ce4e5b9ull ^
          static_cast<uint64_t>(reinterpret_cast<uintptr_t>(this));
  uv_loop_init(&loop_);
  loop_.data = this;
  uv_check_init(&loop_, &check_);
  check_.data = this;
  uv_check_start(&check_, &Worker::onCheck);
  uv_async_init(&loop_, &async_, &Worker::onAsync);
  async_.data = this;
  uv_timer_init(&loop_, &janitor_);
  janitor_.data = this;
  uv_timer_start(&janitor_, &Worker::onJanitor, 1000, 1000);
  uv_timer_init(&loop_, &replicaWaitTimer_);
  replicaWaitTimer_.data = this;
  uv_timer_init(&loop_, &askPeersTimer_);
  askPeersTimer_.data = this;
}

Worker::~Worker() {
  join();
  for (auto* r : graveyard_) delete r;
  graveyard_.clear();
  int rc = uv_loop_close(&loop_);
  if (rc != 0) spdlog::error("worker {}: loop closed with open handles", id_);
}

void Worker::listen(const std::string& host, int port, int deferAcceptS) {
  listener_.open(host, port, deferAcceptS);
}

int Worker::boundPort() const { return listener_.boundPort(); }

void Worker::start() {
  workerCount_ = workerCount_ < 1 ? 1 : workerCount_;
  thread_ = std::thread([this] {
    tCountAllocations = true;  // SHOW TOTALS worker_allocations
    const std::string name = "pgsw-worker-" + std::to_string(id_);  // top -H, perf, taskset
    pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
    runHere();
  });
}

void Worker::runHere() {
  if (rt_.config()->ioUring) {
    std::string why;
    ring_ = Ring::make(chunks_, why);
    if (ring_) {
      ++rt_.ioUringWorkers;
      spdlog::debug("worker {}: connections through io_uring", id_);
    } else {
      spdlog::warn("worker {}: io_uring unavailable ({}): connections through epoll", id_, why);
    }
  }
  if (ring_) {
    runRing();
  } else {
    uv_run(&loop_, UV_RUN_DEFAULT);
  }
  finished_ = true;
}

namespace {

// A descriptor libuv was asked to watch (uv_tcp_connect, a listener resumed) joins its epoll set
// only in libuv's next poll phase, and libuv 1.44's uv_backend_timeout does not count such
// pending watchers (later versions do): without this check the ring would sleep on without it.
bool watchersPending(const uv_loop_t& loop) {
#if UV_VERSION_HEX >= ((1 << 16) | (45 << 8))
  return loop.watcher_queue.next != &loop.watcher_queue;
#else
  return loop.watcher_queue[0] != &loop.watcher_queue;
#endif
}

}  // namespace

void Worker::runRing() {
  const int backend = uv_backend_fd(&loop_);
  listener_.useRing(ring_.get());
  ring_->onMessage(&Worker::onRingMessage, this);
  ringFd_.store(ring_->fd(), std::memory_order_release);
  uv_run(&loop_, UV_RUN_NOWAIT);
  ring_->poll(backend);
  for (;;) {
    ring_->runSends();  // may close connections: libuv then has close callbacks to run
    const bool alive = uv_loop_alive(&loop_);
    if (!alive && ring_->pending() == 0) break;
    // The loop's time was updated at the end of the previous turn. With libuv's handles all
    // closed (shutdown), only ring operations are left: wait for them without a limit.
    const int timeout = watchersPending(loop_) ? 0 : alive ? uv_backend_timeout(&loop_) : -1;
    Ring::Turn t = ring_->wait(timeout);
    onCheck(&check_);  // what libuv's check phase does after each turn (deferred deletes)
    uv_update_time(&loop_);
    // libuv runs when its descriptor is readable, a watcher waits to join its epoll set, or it
    // has something due now (a timer, a close callback); otherwise it is not asked.
    if (t.pollFired || watchersPending(loop_) ||
        (uv_loop_alive(&loop_) && uv_backend_timeout(&loop_) == 0)) {
      uv_run(&loop_, UV_RUN_NOWAIT);
      if (t.pollFired) ring_->poll(backend);
    }
  }
  // A socket passed to this ring after its last turn is lost with it (its descriptor stays
  // open): the loop ends only when the process stops, after takesClients_ turned false.
  ringFd_.store(-1, std::memory_order_release);
  listener_.useRing(nullptr);
  ring_.reset();
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

bool Worker::post(std::function<void()> fn) {
  // The send stays under the lock: once onCheck closed async_, nothing may signal it.
  std::lock_guard g(postMu_);
  if (asyncClosed_) return false;
  posted_.push_back(std::move(fn));
  uv_async_send(&async_);
  return true;
}

void Worker::stop() {
  post([this] { shutdownNow(); });
}

void Worker::shutdownNow() {
  if (stopping_) return;
  stopping_ = true;
  takesClients_ = false;
  listener_.close();
  stopAtMs_ = nowMs();
  auto clients = clients_;
  for (auto* c : clients) c->terminate("57P01", "terminating connection due to administrator command");
  for (auto& [k, p] : pools_) p->closeAll();
  // The loop's own handles close once every session and server is gone (see onCheck); the
  // janitor forces that after kShutdownGraceMs if a client does not read its goodbye.
}

// Over max_connections_per_second_per_address: PostgreSQL's "too many connections" class
// (53300), which drivers and poolers treat as "try again later", said before the client's
// first byte is read (as for max_login_clients), then the socket closes. Logged at most once
// per kRateLogEveryMs per worker, with the count since, so that a flood cannot flood the log.
void Worker::rateLimited(int fd, const std::string& host, int perSecond) {
  ++rt_.rateLimited;
  std::string out;
  protocol::appendError(
      out, {"FATAL", "53300", "sorry, too many connections from host \"" + host + "\"",
            "More than " + std::to_string(perSecond) +
                " new connections per second came from this address "
                "(max_connections_per_second_per_address)."});
  refuseWith(fd, out);
  ++rateLimitedSinceLog_;
  uint64_t now = nowMs();
  if (now - rateLogMs_ >= kRateLogEveryMs || rateLogMs_ == 0) {
    spdlog::warn("connections from {} over max_connections_per_second_per_address ({}): {} "
                 "refused with 53300 (this worker, since the last such line)",
                 host, perSecond, rateLimitedSinceLog_);
    rateLogMs_ = now;
    rateLimitedSinceLog_ = 0;
  }
}

void Worker::onAccepted(void* self, int fd) {
  Worker* w = static_cast<Worker*>(self);
  auto cfg = w->rt_.config();
  if (cfg->maxConnectionsPerSecondPerAddress > 0 && !w->stopping_) {
    std::string host = peerHost(fd);
    if (!w->rt_.connectRate.admit(host, w->nowMs(), cfg->maxConnectionsPerSecondPerAddress)) {
      w->rateLimited(fd, host, cfg->maxConnectionsPerSecondPerAddress);
      return;
    }
  }
  // Sockets that have not logged in are not clients yet (max_client_conn does not see
  // them) but hold a descriptor each: their own limit keeps a flood of silent connections
  // from taking every descriptor the logged-in clients' servers need.
  if (w->stopping_ || w->rt_.loginClients.load(std::memory_order_relaxed) >= cfg->maxLoginClients) {
    ++w->rt_.loginRefused;
    refuseConnection(fd, w->rt_.accepts);
    return;
  }
  // The admission checks above are done once, here; the worker it goes to only serves it.
  Worker* to = w->fillTarget(cfg->workerFill);
  if (to != w && w->handOver(*to, fd)) {
    ++w->rt_.clientsHandedOver;
    return;
  }
  w->sessions_(*w, fd);
}

Worker* Worker::fillTarget(int fill) {
  if (rt_.workers.size() < 2) return this;
  Worker* least = nullptr;
  int leastCount = 0;
  for (Worker* w : rt_.workers) {
    if (!w->takesClients_.load(std::memory_order_relaxed)) continue;
    const int count = w->occupancy();
    if (count < fill && w->busyPermille() < kBusyPermille) return w;
    if (!least || count < leastCount) {
      least = w;
      leastCount = count;
    }
  }
  return least ? least : this;
}

namespace {

// What PostgreSQL tells a client while it shuts down: for a handed-over socket that arrives
// at a worker that stopped or drains meanwhile.
void refuseShuttingDown(int fd) {
  static const std::string kShuttingDown = [] {
    std::string out;
    protocol::appendError(out, {"FATAL", "57P03", "the database system is shutting down"});
    return out;
  }();
  refuseWith(fd, kShuttingDown);
}

// A socket on its way through a post (epoll workers) from the worker that accepted it to the
// one that serves it. It counts as logging in from the moment it was admitted
// (max_login_clients sees it). Dropped unserved (the target stopped after the caller looked,
// or its loop closed with the post unrun), it is refused as shutting down.
class HandedSocket {
 public:
  HandedSocket(int fd, Runtime& rt) : fd_(fd), rt_(rt) { ++rt_.loginClients; }
  HandedSocket(const HandedSocket&) = delete;
  HandedSocket& operator=(const HandedSocket&) = delete;
  ~HandedSocket() {
    if (fd_ < 0) return;
    --rt_.loginClients;
    refuseShuttingDown(fd_);
  }
  // The session takes the socket (and counts its login itself).
  int take() {
    --rt_.loginClients;
    return std::exchange(fd_, -1);
  }

 private:
  int fd_;
  Runtime& rt_;  // outlives the workers, and so whatever a worker's post list still holds
};

// A socket's message between rings: its descriptor, the worker it goes to, Op::Message.
constexpr uint64_t kWorkerIdMask = (uint64_t{1} << 29) - 1;

uint64_t handedMessage(int fd, int workerId) {
  return uint64_t{static_cast<uint32_t>(fd)} << 32 |
         (static_cast<uint64_t>(workerId) & kWorkerIdMask) << 3 |
         static_cast<uint64_t>(Ring::Op::Message);
}

}  // namespace

bool Worker::handOver(Worker& to, int fd) {
  if (!to.takesClients_.load(std::memory_order_relaxed)) return false;
  to.incoming_.fetch_add(1, std::memory_order_relaxed);
  // Ring to ring, the socket is a completion the kernel posts in the other worker's ring,
  // which wakes that loop straight from its io_uring_enter: no post list, and none of a
  // post's eventfd write and read and libuv epoll_wait (issue 14). onRingMessage takes it
  // on either side.
  const int toRing = ring_ ? to.ringFd_.load(std::memory_order_acquire) : -1;
  if (toRing >= 0) {
    ++rt_.loginClients;
    ring_->message(toRing, handedMessage(fd, to.id_), static_cast<unsigned>(fd));
    return true;
  }
  // Shared, not unique: std::function wants a copyable callable.
  auto socket = std::make_shared<HandedSocket>(fd, rt_);
  Worker* target = &to;
  bool posted = to.post([target, socket] {
    target->incoming_.fetch_sub(1, std::memory_order_relaxed);
    target->serveHanded(socket->take());
  });
  if (!posted) {
    to.incoming_.fetch_sub(1, std::memory_order_relaxed);
    socket->take();  // the caller keeps it
  }
  return posted;
}

void Worker::onRingMessage(void* self, uint64_t data, int res) {
  Worker* w = static_cast<Worker*>(self);
  const int fd = static_cast<int>(data >> 32);
  const auto to = static_cast<size_t>((data >> 3) & kWorkerIdMask);
  // Arrived: `to` is this worker. Refused on the way (the other ring closed, or its completion
  // queue full): `to` is the other one, and this worker serves the socket itself.
  if (to < w->rt_.workers.size())
    w->rt_.workers[to]->incoming_.fetch_sub(1, std::memory_order_relaxed);
  --w->rt_.loginClients;
  if (res < 0)
    spdlog::debug("worker {}: passing a client to worker {} failed ({}); serving it here",
                  w->id_, to, std::strerror(-res));
  w->serveHanded(fd);
}

void Worker::serveHanded(int fd) {
  if (stopping_ || draining_) {
    refuseShuttingDown(fd);
    return;
  }
  sessions_(*this, fd);
}

void Worker::measureBusy() {
  timespec ts{};
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return;
  const uint64_t cpu = uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
  const uint64_t wall = uv_hrtime();
  if (busyWallNs_ != 0 && wall > busyWallNs_) {
    busyPermille_.store(static_cast<int>(std::min<uint64_t>(
                            1000, (cpu - busyCpuNs_) * 1000 / (wall - busyWallNs_))),
                        std::memory_order_relaxed);
  }
  busyCpuNs_ = cpu;
  busyWallNs_ = wall;
}

void Worker::onCheck(uv_check_t* h) {
  Worker* w = static_cast<Worker*>(h->data);
  w->superseded_.clear();
  if (!w->graveyard_.empty()) {
    // Swapped, not moved: both lists keep their capacity (no allocation per retirement). A
    // destructor that retires something puts it on graveyard_ for the next turn.
    w->burying_.swap(w->graveyard_);
    for (auto* r : w->burying_) delete r;
    w->burying_.clear();
  }
  if (w->stopping_ && w->clients_.empty()) {
    bool serversLeft = false;
    for (auto& [k, p] : w->pools_) serversLeft |= p->totalCount() > 0;
    if (!serversLeft && !uv_is_closing(reinterpret_cast<uv_handle_t*>(&w->check_))) {
      w->pools_.clear();
      uv_close(reinterpret_cast<uv_handle_t*>(&w->janitor_), nullptr);
      uv_close(reinterpret_cast<uv_handle_t*>(&w->replicaWaitTimer_), nullptr);
      uv_close(reinterpret_cast<uv_handle_t*>(&w->askPeersTimer_), nullptr);
      std::vector<std::function<void()>> unrun;  // posted after the loop's last drain
      {
        std::lock_guard g(w->postMu_);
        w->asyncClosed_ = true;
        unrun.swap(w->posted_);
      }
      unrun.clear();  // now, not at ~Worker: a handed-over socket is answered and closed
      uv_close(reinterpret_cast<uv_handle_t*>(&w->async_), nullptr);
      uv_close(reinterpret_cast<uv_handle_t*>(&w->check_), nullptr);
    }
  }
}

void Worker::takeConfig() {
  const uint64_t gen = rt_.configGeneration();  // before the pointer: a later change is seen
  superseded_.push_back(std::move(turnConfig_));  // may throw: then nothing has changed
  turnConfig_ = rt_.config();
  turnConfigGen_ = gen;
}

void Worker::takeTopology() {
  const uint64_t gen = rt_.topologyGeneration();
  superseded_.push_back(std::move(turnTopology_));
  turnTopology_ = rt_.topology();
  turnTopologyGen_ = gen;
}

void Worker::onAsync(uv_async_t* h) {
  auto* w = static_cast<Worker*>(h->data);
  w->drainPosted();
  if (w->replayNews_.exchange(false)) w->checkReplicaWaiters();
}

void Worker::drainPosted() {
  std::vector<std::function<void()>> fns;
  {
    std::lock_guard g(postMu_);
    fns.swap(posted_);
  }
  for (auto& f : fns) f();
}

void Worker::onJanitor(uv_timer_t* t) {
  Worker* w = static_cast<Worker*>(t->data);
  uint64_t now = w->nowMs();
  if (w->stopping_) {
    if (now - w->stopAtMs_ >= kShutdownGraceMs) {
      auto clients = w->clients_;
      for (auto* c : clients) c->abort();
      for (auto& [k, p] : w->pools_) p->closeAll();
    }
    return;
  }
  w->measureBusy();
  auto cfg = w->rt_.config();
  for (auto it = w->pools_.begin(); it != w->pools_.end();) {
    it->second->janitor(now);
    if (it->second->disposable(now, static_cast<uint64_t>(cfg->serverLoginRetryMs))) {
      std::erase_if(w->askPeersSoon_,
                    [p = it->second.get()](const ShortPool& s) { return s.pool == p; });
      it = w->pools_.erase(it);
      ++w->rt_.poolsDropped;
    } else {
      ++it;
    }
  }
  if (w->draining_) w->endQuiescentClients();
  // From the back, without a copy of the list: a session that leaves it (its close completes
  // on a later loop turn, but whatever the order) is replaced by the last one, which has been
  // seen already (at worst seen twice, which a janitor check allows).
  for (size_t i = w->clients_.size(); i-- > 0;)
    if (i < w->clients_.size()) w->clients_[i]->janitor(now);
  w->sharedParams_.sweep();
  w->clientNames_.sweep();
  w->startupSettings_.sweep();
  if (now - w->lastTrimMs_ >= kTrimEveryMs) w->giveMemoryBack(now);
  if (w->id_ == 0) w->rt_.reportFailoverClients();
}

// After a burst of clients the memory they used is free inside the process but not returned:
// the chunk pool keeps its idle chunks and malloc keeps freed pages in its arenas. Both are
// trimmed on a timer (malloc_trim walks every arena, so only worker 0 calls it).
uv_write_t* Worker::takeWriteReq() {
  if (freeWriteReqs_.empty()) return new uv_write_t;
  uv_write_t* r = freeWriteReqs_.back().release();
  freeWriteReqs_.pop_back();
  return r;
}

void Worker::giveWriteReq(uv_write_t* req) { freeWriteReqs_.emplace_back(req); }

void Worker::giveMemoryBack(uint64_t now) {
  lastTrimMs_ = now;
  chunks_.trim(std::max<size_t>(kKeepFreeChunks, chunks_.liveChunks() / 4));
  if (freeWriteReqs_.size() > kKeepFreeChunks) freeWriteReqs_.resize(kKeepFreeChunks);
  if (id_ != 0) return;
  struct mallinfo2 mi = mallinfo2();
  if (mi.fordblks >= kTrimAboveBytes) malloc_trim(0);
}

void Worker::onTopologyChanged() {
  if (stopping_) return;
  auto topo = rt_.topology();
  // The primary moved (failover, switchover): open as many connections to the new one as
  // the old one had, per (database, user), so the first writes after the move do not all
  // wait for logins.
  if (topo->primary >= 0 && lastPrimary_ >= 0 && topo->primary != lastPrimary_) {
    std::vector<std::tuple<std::string, std::string, size_t>> warm;
    for (auto& [k, p] : pools_)
      if (p->backend() == lastPrimary_ && p->totalCount() > 0)
        warm.emplace_back(p->database(), p->user(), p->totalCount());
    for (auto& [db, user, n] : warm) pool(topo->primary, db, user).prewarm(n);
  }
  if (topo->primary >= 0) lastPrimary_ = topo->primary;
  for (auto& [k, p] : pools_) {
    int b = p->backend();
    if (b < 0 || b >= static_cast<int>(topo->backends.size())) {
      p->closeAll(PoolError::Kind::BackendDown);
      continue;
    }
    auto st = topo->backends[b].state;
    if (st == routing::BackendState::Down || st == routing::BackendState::Fenced ||
        st == routing::BackendState::Disabled) {
      p->closeAll(PoolError::Kind::BackendDown);
    } else if (st == routing::BackendState::Draining || st == routing::BackendState::Removed) {
      p->closeIdle();  // removed by a reload: a busy server goes on a later round, once released
    }
  }
  // Sessions holding for a usable backend (e.g. during a failover) try again now.
  auto holding = holding_;
  holding_.clear();
  for (auto* c : holding) c->retryHold();
}

routing::Classifier& Worker::classifier(const Config& cfg) {
  if (!classifier_ || classifierFunctions_ != cfg.routing.writeFunctions ||
      classifierReadOnly_ != cfg.routing.readOnlyFunctions) {
    routing::ClassifierOptions o;
    o.extraWriteFunctions = cfg.routing.writeFunctions;
    o.readOnlyFunctions = cfg.routing.readOnlyFunctions;
    classifier_ = std::make_unique<routing::Classifier>(std::move(o));
    classifierFunctions_ = cfg.routing.writeFunctions;
    classifierReadOnly_ = cfg.routing.readOnlyFunctions;
  }
  return *classifier_;
}

void Worker::addHolding(ClientHandle* c) {
  if (std::find(holding_.begin(), holding_.end(), c) == holding_.end()) holding_.push_back(c);
}

void Worker::removeHolding(ClientHandle* c) {
  holding_.erase(std::remove(holding_.begin(), holding_.end(), c), holding_.end());
}

void Worker::addReplicaWaiter(ClientHandle* c, uint64_t deadlineMs) {
  replicaWaiters_.push_back({c, deadlineMs});
  replicaWaiterCount_.store(static_cast<int>(replicaWaiters_.size()));
  if (!uv_is_active(reinterpret_cast<uv_handle_t*>(&replicaWaitTimer_))) {
    uint64_t now = health::ReplayWatcher::nowMs();
    uv_timer_start(&replicaWaitTimer_, &Worker::onReplicaWaitTimer,
                   deadlineMs > now ? deadlineMs - now : 0, 0);
  }
}

void Worker::removeReplicaWaiter(ClientHandle* c) {
  for (size_t i = 0; i < replicaWaiters_.size(); ++i) {
    if (replicaWaiters_[i].client == c) {
      replicaWaiters_.erase(replicaWaiters_.begin() + static_cast<ptrdiff_t>(i));
      break;
    }
  }
  replicaWaiterCount_.store(static_cast<int>(replicaWaiters_.size()));
  if (replicaWaiters_.empty()) uv_timer_stop(&replicaWaitTimer_);
}

void Worker::replayLearned() {
  // Most answers find no read waiting on this worker: no wake-up then. A read that starts
  // waiting after this check looks at the positions itself once it is listed.
  if (replicaWaiterCount_.load() == 0 || replayNews_.exchange(true)) return;
  std::lock_guard g(postMu_);
  if (!asyncClosed_) uv_async_send(&async_);
}

void Worker::onReplicaWaitTimer(uv_timer_t* t) {
  auto* w = static_cast<Worker*>(t->data);
  w->checkReplicaWaiters();
  // Deadlines come in order (one max_wait_ms for all, but a reload may change it): the
  // earliest left decides when to look again.
  if (w->replicaWaiters_.empty()) return;
  uint64_t next = UINT64_MAX;
  for (const auto& r : w->replicaWaiters_) next = std::min(next, r.deadlineMs);
  uint64_t now = health::ReplayWatcher::nowMs();
  uv_timer_start(&w->replicaWaitTimer_, &Worker::onReplicaWaitTimer, next > now ? next - now : 1,
                 0);
}

void Worker::askPeersSoon(Pool* p) {
  askPeersSoon_.push_back({p, nowMs()});
  if (!uv_is_active(reinterpret_cast<uv_handle_t*>(&askPeersTimer_)))
    uv_timer_start(&askPeersTimer_, &Worker::onAskPeersTimer, Pool::kAskPeersAfterMs, 0);
}

// One timer for all of the worker's short pools: those listed kAskPeersAfterMs ago are
// asked (listed in order, so they are at the front); the timer then waits for the next.
void Worker::onAskPeersTimer(uv_timer_t* t) {
  auto* w = static_cast<Worker*>(t->data);
  const uint64_t now = w->nowMs();
  size_t due = 0;
  while (due < w->askPeersSoon_.size() &&
         now - w->askPeersSoon_[due].sinceMs >= Pool::kAskPeersAfterMs)
    ++due;
  auto& ask = w->askPeersDue_;  // reused: no allocation per shortage
  ask.assign(w->askPeersSoon_.begin(), w->askPeersSoon_.begin() + due);
  w->askPeersSoon_.erase(w->askPeersSoon_.begin(), w->askPeersSoon_.begin() + due);
  if (!w->askPeersSoon_.empty()) {
    uint64_t left = Pool::kAskPeersAfterMs - (now - w->askPeersSoon_.front().sinceMs);
    uv_timer_start(&w->askPeersTimer_, &Worker::onAskPeersTimer, left, 0);
  }
  for (const ShortPool& s : ask) s.pool->askPeersIfStillShort();
}

void Worker::checkReplicaWaiters() {
  // A copy: each check may end the wait (the session leaves the list) or start another.
  replicaWaitersCopy_.assign(replicaWaiters_.begin(), replicaWaiters_.end());
  const uint64_t now = health::ReplayWatcher::nowMs();
  for (const auto& r : replicaWaitersCopy_) r.client->replicaWaitCheck(now);
}

void Worker::addClient(ClientHandle* c) {
  c->workerIndex_ = static_cast<uint32_t>(clients_.size());
  clients_.push_back(c);
  clientsShared_.store(static_cast<int>(clients_.size()), std::memory_order_relaxed);
}

void Worker::removeClient(ClientHandle* c) {
  const uint32_t i = std::exchange(c->workerIndex_, UINT32_MAX);
  if (i >= clients_.size() || clients_[i] != c) return;  // not registered
  clients_[i] = clients_.back();
  clients_[i]->workerIndex_ = i;
  clients_.pop_back();
  clientsShared_.store(static_cast<int>(clients_.size()), std::memory_order_relaxed);
}

Pool& Worker::pool(int backend, const std::string& database, const std::string& user) {
  auto it = pools_.find(std::tuple<int, std::string_view, std::string_view>(backend, database, user));
  if (it == pools_.end())
    it = pools_.emplace(PoolKey(backend, database, user),
                        std::make_unique<Pool>(*this, backend, database, user)).first;
  return *it->second;
}

void Worker::databaseInUse(const std::string& database) {
  if (!rt_.catalog || watchedDatabases_.count(database) != 0) return;
  watchedDatabases_.insert(database);
  rt_.catalog->watch(database);
}

Pool* Worker::findPool(const PoolKey& key) {
  auto it = pools_.find(key);
  return it == pools_.end() ? nullptr : it->second.get();
}

int Worker::workerShare(int total) const {
  if (total <= 0) return 0;
  int n = workerCount_ < 1 ? 1 : workerCount_;
  return total / n + (id_ % n < total % n ? 1 : 0);
}

}  // namespace pgswitch::proxy
