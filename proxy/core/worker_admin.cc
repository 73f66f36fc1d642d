// The admin side of a worker: its part of a Snapshot (SHOW CLIENTS/SERVERS/POOLS/STATS,
// /metrics) and the graceful stop behind SHUTDOWN WAIT. Everything runs on the worker's own
// thread; stopGraceful() gets there through post().
#include <spdlog/spdlog.h>

#include <unordered_map>

#include "proxy/core/pool.h"
#include "proxy/core/snapshot_collect.h"
#include "proxy/core/worker.h"

namespace pgswitch::proxy {

namespace {

const char* serverStateName(ServerConn::State s) {
  switch (s) {
    case ServerConn::State::Connecting: return "connecting";
    case ServerConn::State::Tls: return "tls";
    case ServerConn::State::Login: return "login";
    case ServerConn::State::Idle: return "idle";
    case ServerConn::State::Active: return "active";
    case ServerConn::State::Internal: return "internal";
    case ServerConn::State::Closing: return "closing";
  }
  return "?";
}

}  // namespace

BackendCounters& Worker::countersSlow(int backend) {
  if (backend < 0) return spareCounters_;
  counters_.resize(static_cast<size_t>(backend) + 1);
  return counters_[backend];
}

void Worker::collectInto(WorkerPart& part) {
  uint64_t now = nowMs();
  auto topo = rt_.topology();
  auto cfg = rt_.config();
  auto backendName = [&](int b) {
    if (b >= 0 && b < static_cast<int>(topo->backends.size())) return topo->backends[b].name;
    return "#" + std::to_string(b);
  };
  std::unordered_map<uint64_t, int32_t> clientOfServer;
  part.clients.reserve(clients_.size());
  for (ClientHandle* c : clients_) {
    part.clients.push_back(c->info(now));
    if (part.clients.back().serverId) {
      clientOfServer[part.clients.back().serverId] = part.clients.back().id;
    }
    if (part.clients.back().parkedServerId) {
      clientOfServer[part.clients.back().parkedServerId] = part.clients.back().id;
    }
  }
  for (auto& [key, p] : pools_) {
    PoolInfo pi;
    pi.backend = backendName(p->backend());
    pi.database = p->database();
    pi.user = p->user();
    pi.mode = toString(cfg->poolMode);
    pi.clientsWaiting = static_cast<int>(p->waitingCount());
    pi.serversIdle = static_cast<int>(p->idleCount());
    pi.serversConnecting = static_cast<int>(p->connectingCount());
    pi.serversTotal = static_cast<int>(p->totalCount());
    pi.serversActive = pi.serversTotal - pi.serversIdle - pi.serversConnecting;
    pi.poolSize = cfg->poolSize;
    uint64_t since = p->oldestWaitSinceMs();
    pi.maxWaitMs = since && now > since ? now - since : 0;
    for (const auto& s : p->servers()) {
      if (s->user()) ++pi.clientsActive;
      ServerInfo si;
      si.worker = id_;
      si.id = s->id();
      si.backend = pi.backend;
      si.database = pi.database;
      si.user = pi.user;
      si.state = serverStateName(s->state());
      si.txnStatus = s->txnStatus();
      si.ageMs = now - std::min(now, s->createdMs());
      si.idleMs = s->state() == ServerConn::State::Idle ? now - std::min(now, s->lastUsedMs()) : 0;
      auto it = clientOfServer.find(s->id());
      si.clientId = it == clientOfServer.end() ? 0 : it->second;
      si.backendPid = s->backendPid();
      si.preparedStatements = s->statements().size();
      part.servers.push_back(std::move(si));
    }
    part.pools.push_back(std::move(pi));
  }
  part.counters = counters_;
}

void Worker::stopGraceful() {
  post([this] {
    if (stopping_ || draining_) return;
    draining_ = true;
    takesClients_ = false;
    listener_.close();
    spdlog::info("worker {}: SHUTDOWN WAIT: not accepting; {} clients finish their transactions",
                 id_, clients_.size());
    endQuiescentClients();
  });
}

// Sessions between transactions end now; the others are looked at again on the next
// janitor tick. When none is left the worker stops as on SIGTERM.
void Worker::endQuiescentClients() {
  auto clients = clients_;
  for (ClientHandle* c : clients) {
    if (c->quiescent()) c->terminate("57P01", "terminating connection due to administrator command");
  }
  if (clients_.empty()) shutdownNow();
}

}  // namespace pgswitch::proxy
