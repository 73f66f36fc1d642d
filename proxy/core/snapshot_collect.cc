// Snapshot collection across workers. Each job writes only its own WorkerPart; the atomic
// countdown (acq_rel) makes every part visible to whichever thread finishes last.
#include "proxy/core/snapshot_collect.h"

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <tuple>

#include "proxy/core/worker.h"

namespace pgswitch::proxy {

namespace {

struct Collection {
  Snapshot base;
  std::vector<WorkerPart> parts;
  std::atomic<size_t> remaining{0};
  std::function<void(Snapshot)> done;

  void finishOne() {
    if (remaining.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    done(mergeParts(std::move(base), parts));
  }
};

}  // namespace

void collectSnapshot(const std::vector<Worker*>& workers, Snapshot base,
                     std::function<void(Snapshot)> done) {
  auto c = std::make_shared<Collection>();
  c->base = std::move(base);
  c->parts.resize(workers.size());
  c->done = std::move(done);
  // One extra count held by this function, so that `done` cannot run before every job is
  // posted (and runs here when no worker took one).
  c->remaining = workers.size() + 1;
  for (size_t i = 0; i < workers.size(); ++i) {
    Worker* w = workers[i];
    bool posted = w->post([c, w, i] {
      w->collectInto(c->parts[i]);
      c->finishOne();
    });
    if (!posted) c->finishOne();
  }
  c->finishOne();
}

Snapshot mergeParts(Snapshot s, std::vector<WorkerPart>& parts) {
  std::map<std::tuple<std::string, std::string, std::string>, PoolInfo> pools;
  for (WorkerPart& p : parts) {
    std::move(p.clients.begin(), p.clients.end(), std::back_inserter(s.clients));
    std::move(p.servers.begin(), p.servers.end(), std::back_inserter(s.servers));
    for (PoolInfo& pi : p.pools) {
      auto key = std::make_tuple(pi.backend, pi.database, pi.user);
      auto it = pools.find(key);
      if (it == pools.end()) {
        pools.emplace(key, std::move(pi));
        continue;
      }
      PoolInfo& m = it->second;
      m.clientsActive += pi.clientsActive;
      m.clientsWaiting += pi.clientsWaiting;
      m.serversActive += pi.serversActive;
      m.serversIdle += pi.serversIdle;
      m.serversConnecting += pi.serversConnecting;
      m.serversTotal += pi.serversTotal;
      m.maxWaitMs = std::max(m.maxWaitMs, pi.maxWaitMs);
    }
    if (s.perBackend.size() < p.counters.size()) s.perBackend.resize(p.counters.size());
    for (size_t i = 0; i < p.counters.size(); ++i) s.perBackend[i].merge(p.counters[i]);
  }
  // Every configured backend has a counter row, even before it served anything.
  size_t nb = s.topology ? s.topology->backends.size() : 0;
  if (s.perBackend.size() < nb) s.perBackend.resize(nb);
  for (auto& [k, pi] : pools) s.pools.push_back(std::move(pi));
  std::stable_sort(s.clients.begin(), s.clients.end(), [](const ClientInfo& a, const ClientInfo& b) {
    return std::tie(a.worker, a.id) < std::tie(b.worker, b.id);
  });
  std::stable_sort(s.servers.begin(), s.servers.end(),
                   [](const ServerInfo& a, const ServerInfo& b) { return a.id < b.id; });
  return s;
}

}  // namespace pgswitch::proxy
