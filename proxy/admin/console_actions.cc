// ProxyControl: snapshots for the console and /metrics, and the console's actions. Actions
// run on the console session's worker; the ones that only flip shared state return at once,
// and anything that must touch another worker's sessions or pools is posted to it.
#include "proxy/admin/console_actions.h"

#include <spdlog/spdlog.h>

#include <condition_variable>

#include "health/events.h"
#include "proxy/config/settings.h"
#include "proxy/core/controller.h"
#include "proxy/core/heap_counter.h"
#include "proxy/core/runtime.h"
#include "proxy/core/snapshot_collect.h"
#include "proxy/core/worker.h"

namespace pgswitch::proxy {

ProxyControl::ProxyControl(Runtime& rt, Controller& ctl, std::vector<Worker*> workers)
    : rt_(rt), ctl_(ctl), workers_(std::move(workers)) {}

Snapshot ProxyControl::base() const {
  Snapshot s;
  s.config = rt_.config();
  s.topology = rt_.topology();
  for (const health::Event& e : ctl_.recentEvents()) {
    s.events.push_back(EventRecord{static_cast<uint64_t>(e.timeMs), health::toString(e.type),
                                   e.name, e.detail});
  }
  {
    auto cs = ctl_.coordinationStatus();
    s.coordination = {cs.enabled, cs.leader, cs.name, cs.blocker, cs.lastDecision};
  }
  s.uptimeMs = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                         std::chrono::steady_clock::now() - started_)
                                         .count());
  s.authFailures = rt_.authFailures.load();
  s.failovers = rt_.failovers.load();
  s.clientsTotal = static_cast<uint64_t>(std::max(0, rt_.clients.load()));
  s.loginClients = static_cast<uint64_t>(std::max(0, rt_.loginClients.load()));
  s.loginRefused = rt_.loginRefused.load();
  s.loginTimeouts = rt_.loginTimeouts.load();
  s.stalledClients = rt_.stalledClients.load();
  s.accessRefused = rt_.accessRefused.load();
  s.rateLimited = rt_.rateLimited.load();
  s.clientsHandedOver = rt_.clientsHandedOver.load();
  s.acceptFdExhausted = rt_.accepts.fdExhausted.load();
  s.acceptTurnedAway = rt_.accepts.turnedAway.load();
  s.poolsDropped = rt_.poolsDropped.load();
  s.readonlyRetries = rt_.readonlyRetries.load();
  s.replicaWaits = rt_.replicaWaits.load();
  s.replicaWaitFallbacks = rt_.replicaWaitFallbacks.load();
  s.readsOnPrimary = rt_.readsOnPrimary.load();
  s.replicaPositionQuestions = rt_.replayWatcher ? rt_.replayWatcher->questions() : 0;
  s.recoveryConflictRetries = rt_.recoveryConflictRetries.load();
  s.sessionReads = rt_.sessionReads.load();
  s.replays = {rt_.replays.attempted.load(),  rt_.replays.succeeded.load(),
               rt_.replays.mismatched.load(), rt_.replays.abandoned.load(),
               rt_.replays.tooLarge.load(),   rt_.replays.commitInFlight.load(),
               rt_.replays.notReplayable.load()};
  s.sessionsRebuilt = rt_.sessionsRebuilt.load();
  s.sessionsUnmovable = rt_.sessionsUnmovable.load();
  s.sessionReadsFallbacks = rt_.sessionReadsFallbacks.load();
  s.volatileFunctionRoutes = rt_.volatileFunctionRoutes.load();
  s.functionCatalogReads = rt_.catalog ? rt_.catalog->reads() : 0;
  s.authLookups = rt_.secrets ? rt_.secrets->queries() : 0;
  s.authLookupFailures = rt_.authLookupFailures.load();
  s.workerAllocations = gWorkerAllocations.load(std::memory_order_relaxed);
  s.ioUringWorkers = rt_.ioUringWorkers.load();
  s.serversOpened = rt_.nextServerId.load() - 1;
  s.paused = rt_.pause.any();
  return s;
}

void ProxyControl::gather(Worker& home, std::function<void(Snapshot)> done) {
  Worker* h = &home;
  collectSnapshot(workers_, base(), [h, done = std::move(done)](Snapshot snap) mutable {
    // Hop back to the asking worker: the continuation touches its session.
    auto shared = std::make_shared<Snapshot>(std::move(snap));
    h->post([done = std::move(done), shared]() mutable { done(std::move(*shared)); });
  });
}

Snapshot ProxyControl::gatherBlocking(std::chrono::milliseconds timeout) {
  struct Wait {
    std::mutex mu;
    std::condition_variable cv;
    bool ready = false;
    Snapshot snap;
  };
  auto w = std::make_shared<Wait>();
  Snapshot fallback = base();
  collectSnapshot(workers_, fallback, [w](Snapshot s) {
    std::lock_guard g(w->mu);
    w->snap = std::move(s);
    w->ready = true;
    w->cv.notify_all();
  });
  std::unique_lock l(w->mu);
  if (!w->cv.wait_for(l, timeout, [&] { return w->ready; })) {
    spdlog::warn("snapshot: not every worker answered within {} ms", timeout.count());
    return fallback;
  }
  return std::move(w->snap);
}

// Sessions held by PAUSE (or waiting for a primary) try again; Worker::onTopologyChanged
// does exactly that besides re-checking its pools against the current topology.
void ProxyControl::retryHeldSessions() {
  for (Worker* w : workers_) w->post([w] { w->onTopologyChanged(); });
}

std::string ProxyControl::pause(std::string_view db) {
  rt_.pause.pause(db);
  spdlog::info("console: PAUSE {}", db.empty() ? "(all databases)" : logValue(db));
  return "";
}

std::string ProxyControl::resume(std::string_view db) {
  std::string err = rt_.pause.resume(db);
  if (!err.empty()) return err;
  spdlog::info("console: RESUME {}", db.empty() ? "(all databases)" : logValue(db));
  retryHeldSessions();
  return "";
}

std::string ProxyControl::reload() {
  std::string err = ctl_.reload();
  if (!err.empty()) {
    while (!err.empty() && err.back() == '\n') err.pop_back();
    return "configuration file refused, the running configuration stays:\n" + err;
  }
  return "";
}

int ProxyControl::index(std::string_view name, std::string& err) const {
  int i = ctl_.backendIndex(name);
  if (i < 0) err = "backend \"" + std::string(name) + "\" is not in the configuration";
  return i;
}

std::string ProxyControl::enableBackend(std::string_view name) {
  std::string err;
  int i = index(name, err);
  if (i < 0) return err;
  err = ctl_.setDisabled(i, false);
  if (err.empty()) err = ctl_.setDraining(i, false);
  if (err.empty()) spdlog::info("console: ENABLE {}", name);
  return err;
}

std::string ProxyControl::disableBackend(std::string_view name) {
  std::string err;
  int i = index(name, err);
  if (i < 0) return err;
  err = ctl_.setDisabled(i, true);
  if (err.empty()) spdlog::info("console: DISABLE {}", name);
  return err;
}

std::string ProxyControl::drainBackend(std::string_view name) {
  std::string err;
  int i = index(name, err);
  if (i < 0) return err;
  err = ctl_.setDraining(i, true);
  if (err.empty()) spdlog::info("console: DRAIN {}", name);
  return err;
}

std::string ProxyControl::attachBackend(std::string_view name) {
  std::string err;
  int i = index(name, err);
  if (i < 0) return err;
  err = ctl_.attach(i);
  if (err.empty()) spdlog::info("console: ATTACH {}", name);
  return err;
}

namespace {
thread_local std::optional<ProxyControl::PendingOp> tPending;
}  // namespace

std::string ProxyControl::checkPromotable(std::string_view name, int& i) const {
  std::string err;
  i = index(name, err);
  if (i < 0) return err;
  auto topo = rt_.topology();
  if (i >= static_cast<int>(topo->backends.size())) return "no health information yet";
  const routing::BackendInfo& b = topo->backends[i];
  if (topo->primary == i) return b.name + " is already the primary";
  if (b.role != routing::Role::Replica) {
    return b.name + " is not a replica (role " + routing::toString(b.role) + ")";
  }
  if (b.state != routing::BackendState::Up && b.state != routing::BackendState::Draining) {
    return b.name + " is " + routing::toString(b.state);
  }
  return "";
}

std::string ProxyControl::promoteBackend(std::string_view name) {
  int i = -1;
  std::string err = checkPromotable(name, i);
  if (!err.empty()) return err;
  tPending = PendingOp{false, i, std::string(name)};
  return "";
}

std::string ProxyControl::switchoverTo(std::string_view name) {
  int i = -1;
  std::string err = checkPromotable(name, i);
  if (!err.empty()) return err;
  if (rt_.topology()->primary < 0) return "there is no primary to switch over from: use PROMOTE";
  tPending = PendingOp{true, i, std::string(name)};
  return "";
}

std::optional<ProxyControl::PendingOp> ProxyControl::takePending() {
  auto op = std::move(tPending);
  tPending.reset();
  return op;
}

void ProxyControl::runPending(const PendingOp& op, Worker& home,
                              std::function<void(std::string)> done) {
  spdlog::info("console: {} {}", op.switchover ? "SWITCHOVER TO" : "PROMOTE", op.name);
  Worker* h = &home;
  auto cb = [h, done = std::move(done), what = std::string(op.switchover ? "SWITCHOVER" : "PROMOTE")](
                const health::OperationResult& r) mutable {
    std::string err = r.ok ? "" : (r.error.empty() ? what + " failed" : r.error);
    if (r.ok) spdlog::info("console: {} done: {}", what, r.detail);
    h->post([done = std::move(done), err] { done(err); });
  };
  if (op.switchover) {
    ctl_.switchover(op.backend, std::move(cb));
  } else {
    ctl_.promote(op.backend, std::move(cb));
  }
}

SetResult ProxyControl::set(std::string_view key, std::string_view value) {
  std::lock_guard g(setMu_);
  auto next = std::make_shared<Config>(*rt_.config());
  SetResult r = trySetting(*next, key, value);
  if (!r.error.empty()) return r;
  ctl_.apply(next);
  const Setting* s = findSetting(key);
  spdlog::info("console: SET {} = {}", logValue(key),
               s && s->secret ? std::string("********") : logValue(value));
  return r;
}

std::string ProxyControl::shutdown(bool wait) {
  if (!shutdown_) return "shutdown is not available here";
  spdlog::info("console: SHUTDOWN{}", wait ? " WAIT" : "");
  shutdown_(wait);
  return "";
}

}  // namespace pgswitch::proxy
