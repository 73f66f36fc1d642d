// Pool mechanics. Why LIFO for idle servers: the most recently used connection has warm
// caches and lets the rest age out under server_idle_timeout when load drops.
#include "proxy/core/pool.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "protocol/builder.h"
#include "protocol/messages.h"

namespace pgswitch::proxy {

Pool::Pool(Worker& w, int backend, std::string database, std::string user)
    : worker_(w),
      backend_(backend),
      database_(std::move(database)),
      user_(std::move(user)),
      lastAcquireMs_(w.nowMs()),
      budget_(w.runtime().budgets.get(PoolKey{backend_, database_, user_})) {
  budget_->join(w.id());
}

Pool::~Pool() { budget_->leave(worker_.id()); }

int Pool::limit() const { return worker_.runtime().config()->poolSize; }

bool Pool::trySpawn(int limit) {
  if (worker_.stopping() || leavesUnitToPeer() || !budget_->tryTake(limit)) return false;
  spawn();
  return true;
}

// Every worker's pool of this key, to ask for idle connections or announce a free unit.
// Looked up by key on the other thread: the pool may have been dropped meanwhile.
void Pool::tellPeers(bool freed) {
  PoolKey key{backend_, database_, user_};
  for (Worker* w : worker_.runtime().workers) {
    if (w == &worker_ && !freed) continue;
    w->post([w, key, freed] {
      if (Pool* p = w->findPool(key)) {
        if (freed) {
          p->budgetFreed();
        } else {
          p->yieldIdle();
        }
      }
    });
  }
}

// The total is reached while sessions wait here. Other workers may keep idle connections of
// this key: they close one, and the unit it frees is announced to every worker.
void Pool::askPeers() {
  short_ = true;
  budget_->wanted = true;
  tellPeers(false);
}

// Within its share of the total a worker keeps a connection it used a moment ago: it is
// busy too, and giving it up would only make it the one that is short next.
bool Pool::overShare() const {
  return static_cast<int>(servers_.size()) > worker_.workerShare(limit());
}

// A free unit is another worker's when this one holds its share and either that worker asks
// (and this one does not) or this one gave a connection away a moment ago. Taking the unit
// back because a session arrived meanwhile (the close that freed it takes a loop turn, and
// the asking worker's flag drops whenever its queue empties for an instant) made two busy
// workers trade connections, a server login each, for as long as both had sessions waiting.
bool Pool::leavesUnitToPeer() const {
  if (static_cast<int>(servers_.size()) < worker_.workerShare(limit())) return false;
  if (yieldedMs_ != 0 && worker_.nowMs() - yieldedMs_ < kRegrowAfterYieldMs) return true;
  return budget_->wanted.load(std::memory_order_relaxed) && !short_;
}

void Pool::yieldToPeer(ServerConn& s) {
  yieldedMs_ = worker_.nowMs();
  s.close();
}

void Pool::yieldIdle() {
  if (!waiters_.empty() || idle_.empty()) return;
  ServerConn* s = idle_.front();  // the least recently used
  if (!overShare() && worker_.nowMs() - s->lastUsedMs() < kYieldIdleAfterMs) return;
  idle_.pop_front();
  yieldToPeer(*s);
}

void Pool::budgetFreed() {
  if (waiters_.empty() || connectingCount() >= waiters_.size()) return;
  if (!trySpawn(limit())) askPeersSoon();
}

void Pool::askPeersSoon() {
  if (short_ || askSoon_) return;
  askSoon_ = true;
  worker_.askPeersSoon(this);
}

void Pool::askPeersIfStillShort() {
  askSoon_ = false;
  if (waiters_.empty() || connectingCount() >= waiters_.size() || trySpawn(limit())) return;
  askPeers();
  trySpawn(limit());  // short now, it may take a unit it left to a peer a moment ago
}

// Nobody waits here any more: stop asking the others for connections (another short worker
// asks again on its next janitor tick).
void Pool::noLongerShort() {
  if (!short_) return;
  short_ = false;
  budget_->wanted = false;
}

ServerConn* Pool::acquire(PoolWaiter* w) {
  const Config& cfg = worker_.config();  // once per transaction: no lock
  uint64_t now = worker_.nowMs();
  lastAcquireMs_ = now;
  if (!loginError_.empty() && servers_.empty() &&
      now - loginFailedMs_ < static_cast<uint64_t>(cfg.serverLoginRetryMs)) {
    w->onServerUnavailable(PoolError{PoolError::Kind::LoginFailed, loginError_,
                                     "server login failed (server_login_retry_ms)"});
    return nullptr;
  }
  while (!idle_.empty()) {
    ServerConn* s = idle_.back();
    idle_.pop_back();
    if (s->state() != ServerConn::State::Idle) continue;
    // A connection unused for server_check_delay may have died quietly (firewall, server
    // restart): prove it alive before a client's query depends on it.
    if (cfg.serverCheckDelayS > 0 && !cfg.serverCheckQuery.empty() &&
        now - s->lastUsedMs() >= uint64_t(cfg.serverCheckDelayS) * 1000) {
      waiters_.push_back(Waiter{w, now});
      s->runInternal(cfg.serverCheckQuery);
      return nullptr;
    }
    return s;
  }
  waiters_.push_back(Waiter{w, worker_.nowMs()});
  if (connectingCount() < waiters_.size() && !trySpawn(limit())) askPeersSoon();
  return nullptr;
}

size_t Pool::connectingCount() const {
  size_t n = 0;
  for (const auto& s : servers_)
    n += s->state() == ServerConn::State::Connecting || s->state() == ServerConn::State::Tls ||
         s->state() == ServerConn::State::Login;
  return n;
}

void Pool::cancelWait(PoolWaiter* w) {
  waiters_.erase(std::remove_if(waiters_.begin(), waiters_.end(),
                                [w](const Waiter& x) { return x.w == w; }),
                 waiters_.end());
  if (waiters_.empty()) noLongerShort();
}

bool Pool::resolve(sockaddr_storage& out) {
  auto topo = worker_.runtime().topology();
  if (backend_ < 0 || backend_ >= static_cast<int>(topo->backends.size())) return false;
  const auto& b = topo->backends[backend_];
  std::memset(&out, 0, sizeof(out));
  std::string host = b.host == "localhost" ? "127.0.0.1" : b.host;
  if (uv_ip4_addr(host.c_str(), b.port, reinterpret_cast<sockaddr_in*>(&out)) == 0) return true;
  if (uv_ip6_addr(host.c_str(), b.port, reinterpret_cast<sockaddr_in6*>(&out)) == 0) return true;
  // A host name: resolve synchronously (rare: only when opening a server connection).
  uv_getaddrinfo_t req;
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  if (uv_getaddrinfo(worker_.loop(), &req, nullptr, host.c_str(),
                     std::to_string(b.port).c_str(), &hints) != 0)
    return false;
  bool ok = req.addrinfo != nullptr;
  if (ok) std::memcpy(&out, req.addrinfo->ai_addr, req.addrinfo->ai_addrlen);
  uv_freeaddrinfo(req.addrinfo);
  return ok;
}

void Pool::spawn() {
  auto cfg = worker_.runtime().config();
  const UserConfig* u = cfg->findUser(user_);
  if (!u) u = lookedUpUser_.get();
  LoginInfo li;
  li.user = user_;
  li.database = database_;
  if (u) {
    li.password = u->password;
    li.scram = u->scram;
  }
  if (const auto* key = worker_.clientKey(user_)) li.clientKey = *key;
  li.tls = worker_.runtime().tls();
  if (auto topo = worker_.runtime().topology();
      backend_ >= 0 && backend_ < int(topo->backends.size()))
    li.host = topo->backends[backend_].host;
  sockaddr_storage addr;
  if (!resolve(addr)) {
    budget_->give();
    auto waiters = std::move(waiters_);
    waiters_.clear();
    PoolError e{PoolError::Kind::NoBackend, {}, "cannot resolve backend address"};
    for (auto& w : waiters) w.w->onServerUnavailable(e);
    return;
  }
  auto s = std::make_unique<ServerConn>(worker_, *this, std::move(li),
                                         worker_.runtime().nextServerId.fetch_add(1));
  ServerConn* raw = s.get();
  servers_.push_back(std::move(s));
  raw->connect(reinterpret_cast<sockaddr*>(&addr));
}

void Pool::handOut(ServerConn& s) {
  s.touch(worker_.nowMs());
  if (!waiters_.empty()) {
    Waiter w = waiters_.front();
    waiters_.pop_front();
    if (waiters_.empty()) noLongerShort();
    s.setState(ServerConn::State::Active);
    w.w->onServerAssigned(s);
    return;
  }
  if (short_) {
    noLongerShort();
  } else if (budget_->wanted.load(std::memory_order_relaxed) && overShare()) {
    yieldToPeer(s);  // another worker is short of a connection of this key: it gets the unit
    return;
  }
  s.setState(ServerConn::State::Idle);
  s.conn().startReading();  // notice an idle server that goes away
  idle_.push_back(&s);
}

void Pool::release(ServerConn& s, bool reusable, bool reset) {
  s.unlink();
  if (!reusable || worker_.stopping() || s.state() == ServerConn::State::Closing) {
    s.close();
    return;
  }
  if (reset) {
    auto cfg = worker_.runtime().config();
    if (!cfg->serverResetQuery.empty()) {
      s.appliedGucs().clear();
      s.statements().clear();
      s.runInternal(cfg->serverResetQuery);
      return;
    }
  }
  handOut(s);
}

void Pool::onLoginDone(ServerConn& s) {
  spdlog::debug("server {} logged in to backend {} ({}/{})", s.id(), backend_, database_, user_);
  loginError_.clear();
  worker_.databaseInUse(database_);
  handOut(s);
}

void Pool::onLoginFailed(ServerConn& s, const std::string& errorMessage) {
  // The reason, from the ErrorResponse (the server's, or pgswitch's for a connection that
  // failed); its text is the server's, so it is cut.
  std::string why = "unknown reason";
  if (errorMessage.size() > 5) {
    auto f = protocol::parseErrorFields(protocol::asBytes(errorMessage).subspan(5));
    if (f) why = std::string(f->code) + " " + std::string(f->message.substr(0, 200));
  }
  spdlog::warn("login to backend {} as {} on {} failed: {}", backend_, user_, database_, why);
  loginError_ = errorMessage;
  loginFailedMs_ = worker_.nowMs();
  // Every waiter of this pool asked for the same database and user: they would all get the
  // same answer, so they all get it now rather than one connect attempt each.
  auto waiters = std::move(waiters_);
  waiters_.clear();
  noLongerShort();
  PoolError e{PoolError::Kind::LoginFailed, errorMessage, "server login failed"};
  for (auto& w : waiters) w.w->onServerUnavailable(e);
}

void Pool::onInternalDone(ServerConn& s, bool ok, const std::string& error) {
  if (!ok || s.txnStatus() != 'I') {
    s.close();
    return;
  }
  handOut(s);
}

void Pool::onServerClosed(ServerConn& s) {
  idle_.erase(std::remove(idle_.begin(), idle_.end(), &s), idle_.end());
  for (auto it = servers_.begin(); it != servers_.end(); ++it) {
    if (it->get() == &s) {
      worker_.retire(it->release());
      servers_.erase(it);
      budget_->give();
      break;
    }
  }
  if (!waiters_.empty() && connectingCount() < waiters_.size() && trySpawn(limit())) return;
  if (budget_->wanted.exchange(false)) tellPeers(true);
}

bool Pool::disposable(uint64_t now, uint64_t loginRetryMs) const {
  if (!servers_.empty() || !waiters_.empty()) return false;
  if (!loginError_.empty()) return now - loginFailedMs_ >= loginRetryMs;
  return now - lastAcquireMs_ >= kUnusedDropMs;
}

void Pool::prewarm(size_t n) {
  for (size_t k = servers_.size(); k < n && trySpawn(limit()); ++k) {
  }
}

void Pool::janitor(uint64_t now) {
  auto cfg = worker_.runtime().config();
  // Waiters past query_wait_timeout get a clean error.
  if (cfg->queryWaitTimeoutMs > 0) {
    while (!waiters_.empty() &&
           now - waiters_.front().sinceMs >= static_cast<uint64_t>(cfg->queryWaitTimeoutMs)) {
      Waiter w = waiters_.front();
      waiters_.pop_front();
      w.w->onServerUnavailable(
          PoolError{PoolError::Kind::Timeout, {},
                    "query_wait_timeout: no server connection became free within " +
                        std::to_string(cfg->queryWaitTimeoutMs) + " ms"});
    }
    if (waiters_.empty()) noLongerShort();
  }
  // Still short of connections (the request to the other workers may have found none idle
  // then): ask again.
  if (!waiters_.empty() && connectingCount() < waiters_.size() && !trySpawn(limit())) {
    if (short_ || now - waiters_.front().sinceMs >= kAskPeersAfterMs) {
      askPeers();
    } else {
      askPeersSoon();
    }
  }
  // Reserve: extra connections once the oldest waiter has waited reserve_pool_timeout.
  if (!waiters_.empty() && cfg->reservePoolSize > 0 &&
      now - waiters_.front().sinceMs >= static_cast<uint64_t>(cfg->reservePoolTimeoutMs) &&
      connectingCount() < waiters_.size() && trySpawn(limit() + cfg->reservePoolSize)) {
    spdlog::info("pool {}/{}: using reserve connection", database_, user_);
  }
  // Pre-warm up to min_pool_size, only towards a backend that is up (not one down, fenced,
  // draining, disabled or removed: the topology change closed those connections).
  size_t minSize = static_cast<size_t>(budget_->share(worker_.id(), cfg->minPoolSize));
  if (servers_.size() < minSize && !worker_.stopping() && !worker_.draining()) {
    auto topo = worker_.runtime().topology();
    bool up = backend_ >= 0 && backend_ < static_cast<int>(topo->backends.size()) &&
              topo->backends[backend_].state == routing::BackendState::Up;
    for (size_t n = servers_.size(); up && n < minSize && trySpawn(limit()); ++n) {
    }
  }
  // Logins that take too long.
  for (auto& s : servers_) {
    auto st = s->state();
    if ((st == ServerConn::State::Connecting || st == ServerConn::State::Tls ||
         st == ServerConn::State::Login) &&
        now - s->createdMs() >= static_cast<uint64_t>(cfg->serverConnectTimeoutMs)) {
      std::string err;
      protocol::appendError(err, {"FATAL", "08006", "timeout while connecting to the server"});
      s->close();
      onLoginFailed(*s, err);
    }
  }
  // Idle servers past their idle timeout or lifetime, keeping min_pool_size.
  size_t keep = static_cast<size_t>(budget_->share(worker_.id(), cfg->minPoolSize));
  for (size_t i = 0; i < idle_.size();) {
    ServerConn* s = idle_[i];
    bool old = cfg->serverLifetimeS > 0 &&
               now - s->createdMs() >= uint64_t(cfg->serverLifetimeS) * 1000;
    bool idle = cfg->serverIdleTimeoutS > 0 &&
                now - s->lastUsedMs() >= uint64_t(cfg->serverIdleTimeoutS) * 1000;
    if ((old || idle) && servers_.size() > keep) {
      idle_.erase(idle_.begin() + static_cast<std::ptrdiff_t>(i));
      s->close();
      continue;
    }
    ++i;
  }
}

void Pool::closeIdle() {
  auto idle = idle_;
  idle_.clear();
  for (auto* s : idle) s->close();
}

// A server linked to a client is closed like one that dropped: its client is told (an
// error for work in flight, a quiet move between transactions). Closing it silently would
// leave the client waiting forever on a server that is gone. The clients and waiters are
// told only after every server is closed: what they do next (route again, open a
// connection) may add to this pool.
void Pool::closeAll(PoolError::Kind why) {
  auto waiters = std::move(waiters_);
  waiters_.clear();
  idle_.clear();
  std::vector<std::pair<ServerConn*, ServerUser*>> linked;
  std::vector<ServerConn*> all;
  all.reserve(servers_.size());
  for (auto& s : servers_) all.push_back(s.get());
  for (ServerConn* s : all) {
    if (s->state() == ServerConn::State::Closing) continue;
    ServerUser* u = s->user();
    s->unlink();
    s->close();
    if (u) linked.emplace_back(s, u);
  }
  // At shutdown the clients are being closed as well; nothing to route again.
  // Otherwise: closed above, but the memory lives until the connection's close callback runs.
  if (why != PoolError::Kind::Shutdown)
    for (auto& [s, u] : linked) u->onServerLost(*s, UV_ECONNRESET);
  PoolError e{why, {},
              why == PoolError::Kind::Shutdown ? "pgswitch is shutting down" : "backend is down"};
  for (auto& w : waiters) w.w->onServerUnavailable(e);
}

}  // namespace pgswitch::proxy
