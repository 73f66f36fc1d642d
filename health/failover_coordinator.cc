// Failover on the health thread. Ordering matters in two places: the old primary is fenced
// only once the candidate has left recovery (a failed promotion leaves the old primary
// usable if it returns), and a switchover's writes pause is lifted by the TopologyBuilder
// in the very snapshot that names the new primary, so held work never lands on the old one.
#include "health/failover_coordinator.h"

#include <spdlog/spdlog.h>

#include "health/probe_query.h"

namespace pgswitch::health {

namespace {

using std::chrono::milliseconds;

int64_t msBetween(FailoverCoordinator::Clock::time_point a,
                  FailoverCoordinator::Clock::time_point b) {
  return std::chrono::duration_cast<milliseconds>(b - a).count();
}

}  // namespace

// Runner messages cross to the health thread as posted closures tagged with the op id.
class FailoverCoordinator::Sink final : public RunnerSink {
 public:
  Sink(FailoverCoordinator& c, uint64_t id) : c_(c), id_(id) {}
  void chosen(int cand, std::string d) override {
    post([&c = c_, id = id_, cand, d] { c.onChosen(id, cand, d); });
  }
  void refused(Refusal why, std::string d) override {
    post([&c = c_, id = id_, why, d] { c.onRefused(id, why, d); });
  }
  void failed(std::string d) override {
    post([&c = c_, id = id_, d] { c.onFailed(id, d); });
  }
  void promoted(int cand, std::string d) override {
    post([&c = c_, id = id_, cand, d] { c.onPromoted(id, cand, d); });
  }
  void repointed(int i, bool ok, std::string d) override {
    post([&c = c_, id = id_, i, ok, d] { c.onRepointed(id, i, ok, d); });
  }
  void finished(int cand, std::string d) override {
    post([&c = c_, id = id_, cand, d] { c.onFinished(id, cand, d); });
  }

 private:
  // The closures capture the coordinator and the op id, never the sink (it dies with the
  // helper thread, possibly before they run).
  void post(std::function<void()> fn) { c_.host_.post(std::move(fn)); }
  FailoverCoordinator& c_;
  uint64_t id_;
};

FailoverCoordinator::FailoverCoordinator(Host& host, const HealthSettings& health,
                                         FailoverSettings failover, std::vector<BackendSpec> specs)
    : host_(host), health_(health), fs_(std::move(failover)), specs_(std::move(specs)) {
  fs_.failoverAfter = std::max(1, fs_.failoverAfter);
  fs_.promoteTimeoutMs = std::max(100, fs_.promoteTimeoutMs);
  fs_.statementTimeoutMs = std::max(100, fs_.statementTimeoutMs);
  fs_.switchoverTimeoutMs = std::max(100, fs_.switchoverTimeoutMs);
  if (fs_.user.empty()) {
    fs_.user = health_.login.user;
    fs_.password = health_.login.password;
  }
  if (fs_.replicationUser.empty()) fs_.replicationUser = fs_.user;
  failedAt_.assign(specs_.size(), Clock::time_point{});
}

FailoverCoordinator::~FailoverCoordinator() { shutdown(); }

Event FailoverCoordinator::event(EventType type, int i, std::string detail) const {
  Event e;
  e.type = type;
  e.backend = i;
  if (i >= 0 && i < static_cast<int>(specs_.size())) {
    e.name = specs_[i].name;
    e.host = specs_[i].host;
    e.port = specs_[i].port;
    e.role = routing::toString(host_.builder().track(i).role);
  }
  e.detail = std::move(detail);
  return e;
}

void FailoverCoordinator::onCheckDone(int i, bool ok) {
  if (i < 0 || i >= static_cast<int>(specs_.size())) return;
  const BackendTrack& t = host_.builder().track(i);
  if (ok) {
    if (i == lastPrimary_) lastRefusal_ = Refusal::None;
    return;
  }
  if (t.failStreak == 1) failedAt_[i] = Clock::now();
  if (!fs_.autoFailover || stopped_ || op_ || i != lastPrimary_ || t.fenced) return;
  if (t.failStreak < fs_.failoverAfter || Clock::now() < retryAt_) return;
  // Someone else already promoted a replica: nothing to replace.
  if (publishedPrimary_ >= 0 && publishedPrimary_ != i) return;
  // [coordination]: only the leader promotes; the others wait for its decision. Said once per
  // reason and outage.
  if (std::string why = host_.promotionBlocker(); !why.empty()) {
    if (lastRefusal_ != Refusal::NotCoordinated || why != lastBlocker_) {
      host_.report(event(EventType::FailoverRefused, i,
                         "primary " + specs_[i].name + " failed " + std::to_string(t.failStreak) +
                             " consecutive checks; " + why));
    }
    lastRefusal_ = Refusal::NotCoordinated;
    lastBlocker_ = why;
    return;
  }
  start(OpKind::AutoFailover, i, -1, 0, {});
}

void FailoverCoordinator::onPublished(const routing::Topology& t) {
  publishedPrimary_ = t.primary;
  if (t.primary >= 0 && t.primary != lastPrimary_) {
    lastPrimary_ = t.primary;
    lastRefusal_ = Refusal::None;
  }
  if (pausing_ && !t.writesPaused) {
    pausing_ = false;
    spdlog::info("switchover: writes resumed after {} ms, primary {}",
                 msBetween(pausedAt_, Clock::now()),
                 t.primary >= 0 ? specs_[t.primary].name : std::string("none"));
    if (op_ && op_->runnerDone) complete(true, op_->detail);
  }
}

void FailoverCoordinator::onTick() {
  if (pausing_ && Clock::now() >= pauseDeadline_) resume("the pause deadline passed");
}

void FailoverCoordinator::resume(const char* why) {
  if (!pausing_) return;
  pausing_ = false;
  host_.builder().resumeWrites();
  spdlog::warn("switchover: writes resumed after {} ms: {}", msBetween(pausedAt_, Clock::now()),
               why);
  host_.publishNow();
  if (op_ && op_->runnerDone) {
    complete(false, "promoted " + specs_[op_->candidate].name +
                        " but no check saw it as the primary before the pause deadline");
  }
}

std::string FailoverCoordinator::notPromotable(int i) const {
  if (i < 0 || i >= static_cast<int>(specs_.size()) || specs_[i].removed) return "no such backend";
  const BackendTrack& t = host_.builder().track(i);
  const std::string& n = specs_[i].name;
  if (t.fenced) return n + " is fenced";
  if (t.health != Health::Up || !t.haveSample) return n + " is not up";
  if (!t.sample.inRecovery) return n + " is not a replica";
  if (t.disabled) return n + " is disabled";
  return "";
}

std::string FailoverCoordinator::cannotStart() const {
  if (stopped_) return "health monitor stopped";
  if (op_) return std::string("a ") + toString(op_->kind) + " is already running";
  return "";
}

bool FailoverCoordinator::refused(std::string why, const OperationDone& done) const {
  if (why.empty()) why = host_.promotionBlocker();
  if (why.empty()) return false;
  if (done) done(OperationResult{false, why, -1, ""});
  return true;
}

void FailoverCoordinator::promote(int i, OperationDone done) {
  std::string why = cannotStart();
  if (why.empty()) why = notPromotable(i);
  if (refused(std::move(why), done)) return;
  int old = publishedPrimary_ >= 0 && publishedPrimary_ != i ? publishedPrimary_
            : lastPrimary_ != i                              ? lastPrimary_
                                                             : -1;
  start(OpKind::Promote, old, i, 0, std::move(done));
}

void FailoverCoordinator::switchover(int i, int timeoutMs, OperationDone done) {
  const int p = publishedPrimary_;
  std::string why = cannotStart();
  if (why.empty() && p < 0) why = "no primary to switch over from (PROMOTE promotes without one)";
  if (why.empty() && p == i) why = specs_[i].name + " is already the primary";
  if (why.empty()) why = notPromotable(i);
  if (refused(std::move(why), done)) return;
  start(OpKind::Switchover, p, i, timeoutMs > 0 ? timeoutMs : fs_.switchoverTimeoutMs,
        std::move(done));
}

FailoverPlan FailoverCoordinator::plan(OpKind kind, int oldPrimary, int candidate,
                                       int timeoutMs) const {
  const TopologyBuilder& b = host_.builder();
  PgLogin as = health_.login;
  as.user = fs_.user;
  as.password = fs_.password;
  FailoverPlan p;
  p.kind = kind;
  p.oldPrimary = oldPrimary;
  p.candidate = candidate;
  if (oldPrimary >= 0) {
    const BackendTrack& t = b.track(oldPrimary);
    p.oldName = specs_[oldPrimary].name;
    p.oldHost = specs_[oldPrimary].host;
    p.oldPort = specs_[oldPrimary].port;
    p.oldConninfo =
        connectionString(as, specs_[oldPrimary].host, specs_[oldPrimary].port, "pgswitch_failover");
    if (t.haveSample && !t.sample.inRecovery) p.oldPrimaryLsn = t.sample.currentLsn;
    if (t.failStreak > 0 && failedAt_[oldPrimary] != Clock::time_point{}) {
      p.haveFailedAt = true;
      p.failedAt = failedAt_[oldPrimary];
    }
  }
  for (int i = 0; i < static_cast<int>(specs_.size()); ++i) {
    // A removed backend is neither a candidate nor a replica to re-point: it is not ours.
    if (i == oldPrimary || specs_[i].removed) continue;
    const BackendTrack& t = b.track(i);
    PlanBackend pb;
    pb.index = i;
    pb.name = specs_[i].name;
    pb.host = specs_[i].host;
    pb.port = specs_[i].port;
    pb.priority = specs_[i].priority;
    pb.conninfo = connectionString(as, specs_[i].host, specs_[i].port, "pgswitch_failover");
    pb.upReplica = t.health == Health::Up && t.haveSample && t.sample.inRecovery && !t.fenced;
    if (hasTag(specs_[i], kNoPromoteTag)) {
      pb.excluded = "tagged no_promote";
    } else if (t.disabled) {
      pb.excluded = "disabled";
    } else if (t.draining) {
      pb.excluded = "draining";
    }
    pb.eligible = pb.upReplica && pb.excluded.empty();
    p.backends.push_back(std::move(pb));
  }
  p.maxLagBytes = fs_.maxFailoverLagBytes;
  p.repoint = fs_.repointReplicas;
  p.replicationUser = fs_.replicationUser;
  p.promoteTimeoutMs = fs_.promoteTimeoutMs;
  p.statementTimeoutMs = fs_.statementTimeoutMs;
  p.catchUpTimeoutMs = timeoutMs > 0 ? timeoutMs : fs_.switchoverTimeoutMs;
  p.refuseIfPromoted = host_.coordinated();
  return p;
}

void FailoverCoordinator::start(OpKind kind, int oldPrimary, int candidate, int timeoutMs,
                                OperationDone done) {
  joinRunner();
  FailoverPlan p = plan(kind, oldPrimary, candidate, timeoutMs);
  p.id = nextId_++;
  Op op;
  op.id = p.id;
  op.kind = kind;
  op.oldPrimary = oldPrimary;
  op.candidate = candidate;
  op.done = std::move(done);
  op.start = Clock::now();
  op_ = std::move(op);
  const std::string from = oldPrimary >= 0 ? specs_[oldPrimary].name : std::string("none");
  switch (kind) {
    case OpKind::AutoFailover:
      spdlog::warn("failover: primary {} failed {} consecutive checks ({}); choosing a replica",
                   from, host_.builder().track(oldPrimary).failStreak,
                   host_.builder().track(oldPrimary).lastError);
      break;
    case OpKind::Promote:
      host_.report(event(EventType::FailoverStarted, candidate,
                         "promotion requested by operator; old primary " + from));
      break;
    case OpKind::Switchover:
      pausing_ = true;
      pausedAt_ = Clock::now();
      // Bounds the pause even if the promoted candidate never answers a check.
      pauseDeadline_ = pausedAt_ + milliseconds(p.catchUpTimeoutMs + fs_.promoteTimeoutMs +
                                                3 * fs_.statementTimeoutMs + 1000);
      host_.builder().pauseWrites(candidate);
      host_.report(event(EventType::SwitchoverStarted, candidate,
                         "from " + from + "; new writes held until " + specs_[candidate].name +
                             " has caught up and is promoted"));
      host_.publishNow();
      break;
  }
  cancel_.store(false);
  runner_ = std::thread([this, p = std::move(p)] {
    Sink sink(*this, p.id);
    runFailoverPlan(p, sink, cancel_);
  });
}

void FailoverCoordinator::joinRunner() {
  if (runner_.joinable()) runner_.join();
}

void FailoverCoordinator::complete(bool ok, const std::string& text) {
  if (!op_) return;
  Op op = std::move(*op_);
  op_.reset();
  joinRunner();
  const bool sw = op.kind == OpKind::Switchover;
  if (ok) {
    host_.report(
        event(sw ? EventType::SwitchoverDone : EventType::FailoverDone, op.candidate, text));
  }
  if (op.done) {
    OperationResult r;
    r.ok = ok;
    r.newPrimary = ok ? op.candidate : -1;
    (ok ? r.detail : r.error) = text;
    op.done(r);
  }
}

void FailoverCoordinator::onChosen(uint64_t id, int cand, const std::string& detail) {
  if (!op_ || op_->id != id) return;
  op_->candidate = cand;
  const int old = op_->oldPrimary;
  const BackendTrack& t = host_.builder().track(old);
  host_.report(event(EventType::FailoverStarted, cand,
                     "primary " + specs_[old].name + " failed " + std::to_string(t.failStreak) +
                         " consecutive checks (" + t.lastError + "); promoting " + detail));
}

void FailoverCoordinator::onRefused(uint64_t id, Refusal why, const std::string& detail) {
  if (!op_ || op_->id != id) return;
  // Retried at the next failed check; reported once per reason and outage.
  if (why != lastRefusal_) host_.report(event(EventType::FailoverRefused, op_->oldPrimary, detail));
  lastRefusal_ = why;
  complete(false, detail);
}

void FailoverCoordinator::onFailed(uint64_t id, const std::string& detail) {
  if (!op_ || op_->id != id) return;
  const bool sw = op_->kind == OpKind::Switchover;
  host_.report(
      event(sw ? EventType::SwitchoverFailed : EventType::FailoverFailed, op_->candidate, detail));
  if (op_->kind == OpKind::AutoFailover) retryAt_ = Clock::now() + milliseconds(fs_.retryAfterMs);
  if (sw && pausing_) {
    pausing_ = false;
    host_.builder().resumeWrites();
    host_.publishNow();
  }
  complete(false, detail);
}

void FailoverCoordinator::onPromoted(uint64_t id, int cand, const std::string& detail) {
  if (!op_ || op_->id != id) return;
  op_->promoted = true;
  const int old = op_->oldPrimary;
  host_.report(event(EventType::Promoted, cand, detail));
  if (old >= 0) {
    const char* how = op_->kind == OpKind::Switchover ? "switched over to " : "failed over to ";
    host_.builder().fence(old, how + specs_[cand].name);
  }
  host_.publishNow();  // the fence now; the new primary as soon as its check says so
  host_.checkNow(cand);
  host_.onPromotion(old, cand);
}

void FailoverCoordinator::onRepointed(uint64_t id, int i, bool ok, const std::string& detail) {
  if (!op_ || op_->id != id) return;
  host_.report(event(ok ? EventType::Repointed : EventType::RepointFailed, i, detail));
}

void FailoverCoordinator::onFinished(uint64_t id, int cand, const std::string& detail) {
  if (!op_ || op_->id != id) return;
  joinRunner();
  op_->runnerDone = true;
  op_->detail = detail;
  if (op_->kind == OpKind::Switchover && pausing_) return;  // completes when writes resume
  complete(true, detail);
}

void FailoverCoordinator::shutdown() {
  stopped_ = true;
  cancel_.store(true);
  joinRunner();
  pausing_ = false;
  if (op_) {
    Op op = std::move(*op_);
    op_.reset();
    if (op.done) op.done(OperationResult{false, "health monitor stopped", -1, ""});
  }
}

}  // namespace pgswitch::health
