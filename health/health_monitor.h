// HealthMonitor: the health thread. Its own uv_loop runs one round of checks per period
// against every backend (one persistent libpq connection each), feeds the outcomes to a
// TopologyBuilder, publishes each new Topology snapshot through a callback and reports
// events (log line, on_event hook, a ring of recent ones). Thread-safe controls let the
// proxy and the console ask for an immediate re-check, fence, attach, disable or drain,
// promote a replica or switch over; with FailoverSettings::autoFailover it fails over by
// itself when the primary stops answering; with CoordinationSettings only when it holds the
// etcd leader key.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <vector>

#include "health/events.h"
#include "health/failover_policy.h"
#include "health/settings.h"
#include "health/topology_builder.h"
#include "routing/topology.h"

namespace pgswitch::health {

class HealthMonitor {
 public:
  // Called on the health thread for every new snapshot (and once from start(), on the caller's
  // thread, with the initial one). Must be quick: the proxy stores the pointer under a mutex.
  using Publish = std::function<void(routing::TopologyPtr)>;
  using EventListener = std::function<void(const Event&)>;

  static constexpr size_t kRecentEvents = 256;

  // Backends marked removed keep their index but get no probe (see BackendSpec::removed).
  HealthMonitor(HealthSettings settings, std::vector<BackendSpec> backends, Publish publish);
  ~HealthMonitor();  // stop()
  HealthMonitor(const HealthMonitor&) = delete;
  HealthMonitor& operator=(const HealthMonitor&) = delete;

  // Optional, before start(): also told about every event, on the health thread.
  void setEventListener(EventListener listener);
  // Optional, before start(): automatic failover and how promotions are run (default: off).
  void setFailover(FailoverSettings failover);
  const FailoverSettings& failoverSettings() const;
  // Optional, before start(): follow Patroni (docs/patroni.md). With urls set, only Patroni's
  // leader can be the primary, pgswitch never promotes (auto failover is forced off and
  // promote() is refused) and switchover() asks Patroni's /switchover.
  void setPatroni(PatroniSettings patroni);
  // Optional, before start(): several instances agree through etcd (docs/deploy.md). With
  // endpoints set, only the instance holding the etcd leader key promotes (automatic failover,
  // PROMOTE, SWITCHOVER); its decision is written to etcd and the others adopt it at once.
  // Ignored under [patroni].
  void setCoordination(CoordinationSettings coordination);
  struct CoordinationStatus {
    bool enabled = false;
    bool leader = false;
    std::string name;          // this instance
    std::string blocker;       // why it may not promote now ("" = it may)
    std::string lastDecision;  // the newest decision known, as JSON ("" = none)
  };
  // As of the end of the last health round.
  CoordinationStatus coordinationStatus() const;

  // Publishes the initial topology (first backend primary, the others replicas, all up)
  // synchronously, then starts the thread; the first round of checks runs at once.
  void start();
  // Closes every connection and handle, closes the loop and joins the thread. Idempotent.
  void stop();
  // After stop(): whether uv_loop_close() succeeded (every handle was closed).
  bool stoppedCleanly() const;

  // Passive signal from the proxy (a server connect failed, a server connection died): check
  // backend i now instead of at the next period. At most one extra check per backend and
  // period; ignored while a check of it is already running.
  void recheck(int backendIndex);

  // Console controls, applied on the health thread right away, followed by a new snapshot.
  void fence(int backendIndex);   // never route to it until attach()
  void attach(int backendIndex);  // lift a fence (manual or automatic)
  void setDisabled(int backendIndex, bool disabled);
  void setDraining(int backendIndex, bool draining);

  // PROMOTE: promotes replica i now (pg_promote), fences the old primary if there is one,
  // re-points the other replicas when configured. SWITCHOVER: pauses new writes
  // (Topology::writesPaused), waits up to timeoutMs (<= 0: the configured default) until
  // replica i has received everything the primary acknowledged, promotes it, fences the old
  // primary, resumes writes on it. One operation at a time. `done` runs exactly once, on the
  // health thread (or on the caller's when the monitor is stopped); keep it short.
  void promote(int backendIndex, OperationDone done = {});
  void switchover(int backendIndex, int timeoutMs, OperationDone done = {});

  // The last published snapshot (the initial one before the first round).
  routing::TopologyPtr snapshot() const;
  // The most recent events, oldest first (at most kRecentEvents).
  std::vector<Event> recentEvents() const;
  // An event raised outside the health thread (the proxy's failover_clients): logged, kept
  // with the others and given to the on_event hook, on the health thread.
  void addEvent(Event e);
  // Events of the monitor this one replaces (a reload restarts the checks): they stay in
  // recentEvents(), before this monitor's own. Not announced again.
  void carryEvents(const std::vector<Event>& older);
  // Per-backend detail as of the last snapshot: streaks, last error, last probe values.
  std::vector<BackendTrack> backendStatus() const;

  const HealthSettings& settings() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pgswitch::health
