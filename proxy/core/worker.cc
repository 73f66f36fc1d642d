// Worker loop plumbing: listener with SO_REUSEPORT, deferred deletion on the check phase,
// cross-thread posts through uv_async, and the once-a-second janitor.
#include "proxy/core/worker.h"

#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <stdexcept>

#include "proxy/core/pool.h"

namespace pgswitch::proxy {

Worker::Worker(int id, Runtime& rt, SessionFactory sessions)
    : id_(id), rt_(rt), sessions_(sessions) {
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
}

Worker::~Worker() {
  join();
  for (auto* r : graveyard_) delete r;
  graveyard_.clear();
  int rc = uv_loop_close(&loop_);
  if (rc != 0) spdlog::error("worker {}: loop closed with open handles", id_);
}

void Worker::listen(const std::string& host, int port) {
  sockaddr_storage addr{};
  int rc = uv_ip4_addr(host.c_str(), port, reinterpret_cast<sockaddr_in*>(&addr));
  if (rc != 0) rc = uv_ip6_addr(host.c_str(), port, reinterpret_cast<sockaddr_in6*>(&addr));
  if (rc != 0) throw std::runtime_error("invalid listen address " + host);
  // libuv 1.44 has no UV_TCP_REUSEPORT, so the socket is made by hand and given to libuv.
  int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket() failed");
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  socklen_t len = addr.ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    int e = errno;
    ::close(fd);
    throw std::runtime_error("cannot listen on " + host + ":" + std::to_string(port) + ": " +
                             strerror(e));
  }
  uv_tcp_init(&loop_, &listener_);
  listener_.data = this;
  uv_tcp_open(&listener_, fd);
  rc = uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 1024, &Worker::onConnection);
  if (rc != 0) throw std::runtime_error(std::string("listen failed: ") + uv_strerror(rc));
  listening_ = true;
}

int Worker::boundPort() const {
  sockaddr_storage ss{};
  int len = sizeof(ss);
  if (uv_tcp_getsockname(&listener_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return 0;
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
}

void Worker::start() {
  workerCount_ = workerCount_ < 1 ? 1 : workerCount_;
  thread_ = std::thread([this] { runHere(); });
}

void Worker::runHere() {
  uv_run(&loop_, UV_RUN_DEFAULT);
  finished_ = true;
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
  if (listening_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
    listening_ = false;
  }
  stopAtMs_ = nowMs();
  auto clients = clients_;
  for (auto* c : clients) c->terminate("57P01", "terminating connection due to administrator command");
  for (auto& [k, p] : pools_) p->closeAll();
  // The loop's own handles close once every session and server is gone (see onCheck); the
  // janitor forces that after kShutdownGraceMs if a client does not read its goodbye.
}

void Worker::onConnection(uv_stream_t* s, int status) {
  Worker* w = static_cast<Worker*>(s->data);
  if (status < 0 || w->stopping_) return;
  w->sessions_(*w, s);
}

void Worker::onCheck(uv_check_t* h) {
  Worker* w = static_cast<Worker*>(h->data);
  if (!w->graveyard_.empty()) {
    auto dead = std::move(w->graveyard_);
    w->graveyard_.clear();
    for (auto* r : dead) delete r;
  }
  if (w->stopping_ && w->clients_.empty()) {
    bool serversLeft = false;
    for (auto& [k, p] : w->pools_) serversLeft |= p->totalCount() > 0;
    if (!serversLeft && !uv_is_closing(reinterpret_cast<uv_handle_t*>(&w->check_))) {
      w->pools_.clear();
      uv_close(reinterpret_cast<uv_handle_t*>(&w->janitor_), nullptr);
      {
        std::lock_guard g(w->postMu_);
        w->asyncClosed_ = true;
      }
      uv_close(reinterpret_cast<uv_handle_t*>(&w->async_), nullptr);
      uv_close(reinterpret_cast<uv_handle_t*>(&w->check_), nullptr);
    }
  }
}

void Worker::onAsync(uv_async_t* h) { static_cast<Worker*>(h->data)->drainPosted(); }

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
  for (auto& [k, p] : w->pools_) p->janitor(now);
  if (w->draining_) w->endQuiescentClients();
  auto clients = w->clients_;
  for (auto* c : clients) c->janitor(now);
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
  if (!classifier_ || classifierFunctions_ != cfg.routing.writeFunctions) {
    routing::ClassifierOptions o;
    o.extraWriteFunctions = cfg.routing.writeFunctions;
    classifier_ = std::make_unique<routing::Classifier>(std::move(o));
    classifierFunctions_ = cfg.routing.writeFunctions;
  }
  return *classifier_;
}

void Worker::addHolding(ClientHandle* c) {
  if (std::find(holding_.begin(), holding_.end(), c) == holding_.end()) holding_.push_back(c);
}

void Worker::removeHolding(ClientHandle* c) {
  holding_.erase(std::remove(holding_.begin(), holding_.end(), c), holding_.end());
}

void Worker::addClient(ClientHandle* c) { clients_.push_back(c); }

void Worker::removeClient(ClientHandle* c) {
  for (size_t i = 0; i < clients_.size(); ++i) {
    if (clients_[i] == c) {
      clients_[i] = clients_.back();
      clients_.pop_back();
      return;
    }
  }
}

Pool& Worker::pool(int backend, const std::string& database, const std::string& user) {
  auto key = std::make_tuple(backend, database, user);
  auto it = pools_.find(key);
  if (it == pools_.end())
    it = pools_.emplace(key, std::make_unique<Pool>(*this, backend, database, user)).first;
  return *it->second;
}

int Worker::workerShare(int total) const {
  if (total <= 0) return 0;
  int share = (total + workerCount_ - 1) / workerCount_;
  return share < 1 ? 1 : share;
}

}  // namespace pgswitch::proxy
