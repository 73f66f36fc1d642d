// FailoverCoordinator: the health thread's side of failover. Decides when an automatic
// failover starts (the primary failed `failover_after` consecutive checks), accepts PROMOTE
// and SWITCHOVER requests, runs one operation at a time on a helper thread
// (failover_runner), and turns its progress into events, fencing, writes paused/resumed,
// immediate re-checks and the caller's completion callback. Health thread only.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "health/events.h"
#include "health/failover_runner.h"
#include "health/settings.h"
#include "health/topology_builder.h"
#include "routing/topology.h"

namespace pgswitch::health {

class FailoverCoordinator {
 public:
  // What the coordinator needs from the monitor.
  class Host {
   public:
    virtual ~Host() = default;
    virtual TopologyBuilder& builder() = 0;
    virtual void publishNow() = 0;     // build and publish a snapshot (health thread)
    virtual void checkNow(int i) = 0;  // check backend i at once (after a running check)
    virtual void report(Event e) = 0;  // log line, ring, listener, on_event (health thread)
    // From any thread: run fn on the health thread. False once stopping (fn is dropped).
    virtual bool post(std::function<void()> fn) = 0;
    // [coordination]: why this instance may not promote now ("" = it may). Asked before an
    // automatic failover, a PROMOTE or a SWITCHOVER starts.
    virtual std::string promotionBlocker() { return ""; }
    // [coordination] is on: another instance may promote too (see refuseIfPromoted).
    virtual bool coordinated() { return false; }
    // A candidate left recovery; `oldPrimary` (-1 = none) is being fenced.
    virtual void onPromotion(int /*oldPrimary*/, int /*candidate*/) {}
  };

  using Clock = std::chrono::steady_clock;

  FailoverCoordinator(Host& host, const HealthSettings& health, FailoverSettings failover,
                      std::vector<BackendSpec> specs);
  ~FailoverCoordinator();  // shutdown()
  FailoverCoordinator(const FailoverCoordinator&) = delete;
  FailoverCoordinator& operator=(const FailoverCoordinator&) = delete;

  // After every recorded check: may start an automatic failover.
  void onCheckDone(int i, bool ok);
  // After every published snapshot: follows the primary, notices writes resumed.
  void onPublished(const routing::Topology& t);
  // Once per period: the safety deadline of a writes pause.
  void onTick();

  void promote(int i, OperationDone done);
  void switchover(int i, int timeoutMs, OperationDone done);
  bool busy() const { return op_.has_value(); }

  // Cancels a running operation, joins its thread, fails its callback. Idempotent.
  void shutdown();

 private:
  struct Op {
    uint64_t id = 0;
    OpKind kind = OpKind::AutoFailover;
    int oldPrimary = -1;
    int candidate = -1;
    OperationDone done;
    Clock::time_point start;
    bool promoted = false;
    bool runnerDone = false;  // the helper thread finished; waiting for writes to resume
    std::string detail;
  };
  class Sink;

  void start(OpKind kind, int oldPrimary, int candidate, int timeoutMs, OperationDone done);
  FailoverPlan plan(OpKind kind, int oldPrimary, int candidate, int timeoutMs) const;
  // Why backend i cannot be promoted by request ("" = it can).
  std::string notPromotable(int i) const;
  // Why no PROMOTE or SWITCHOVER can start now ("" = one can).
  std::string cannotStart() const;
  // A request with a reason not to run (or the host's blocker) is answered with it: true.
  bool refused(std::string why, const OperationDone& done) const;
  Event event(EventType type, int i, std::string detail) const;
  void joinRunner();
  void complete(bool ok, const std::string& text);
  void resume(const char* why);

  // Runner messages, on the health thread.
  void onChosen(uint64_t id, int candidate, const std::string& detail);
  void onRefused(uint64_t id, Refusal why, const std::string& detail);
  void onFailed(uint64_t id, const std::string& detail);
  void onPromoted(uint64_t id, int candidate, const std::string& detail);
  void onRepointed(uint64_t id, int i, bool ok, const std::string& detail);
  void onFinished(uint64_t id, int candidate, const std::string& detail);

  Host& host_;
  HealthSettings health_;
  FailoverSettings fs_;
  std::vector<BackendSpec> specs_;

  std::optional<Op> op_;
  uint64_t nextId_ = 1;
  std::thread runner_;
  std::atomic<bool> cancel_{false};
  bool stopped_ = false;

  int publishedPrimary_ = -1;  // of the last snapshot
  int lastPrimary_ = -1;       // the last primary any snapshot named (what a failover replaces)
  std::vector<Clock::time_point> failedAt_;  // end of the first failed check of each streak
  Clock::time_point retryAt_{};
  Refusal lastRefusal_ = Refusal::None;  // one failover_refused event per reason and outage
  std::string lastBlocker_;              // with NotCoordinated: the reason last reported
  bool pausing_ = false;
  Clock::time_point pausedAt_{};
  Clock::time_point pauseDeadline_{};
};

}  // namespace pgswitch::health
