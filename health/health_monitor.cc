// The health thread: rounds of checks on a private uv_loop, snapshots and events out, commands
// in through a mutex-guarded queue and a uv_async. Rounds publish when their last check ends
// (so a snapshot compares samples taken together); a check still running when the next period
// starts no longer holds the others back.
#include "health/health_monitor.h"

#include <spdlog/spdlog.h>
#include <uv.h>

#include <algorithm>
#include <utility>
#include <chrono>
#include <deque>
#include <mutex>
#include <thread>

#include "health/etcd_coordination.h"
#include "health/event_hook.h"
#include "health/failover_coordinator.h"
#include "health/patroni_source.h"
#include "health/pg_probe.h"

namespace pgswitch::health {

namespace {

int64_t wallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

BuilderThresholds thresholdsOf(const HealthSettings& s) {
  BuilderThresholds t;
  t.fall = s.fall;
  t.rise = s.rise;
  t.maxLagBytes = s.maxLagBytes;
  t.maxLagMs = s.maxLagMs;
  return t;
}

}  // namespace

class HealthMonitor::Impl final : public ProbeListener,
                                  public FailoverCoordinator::Host,
                                  public PatroniSource::Host,
                                  public EtcdCoordination::Host {
 public:
  Impl(HealthSettings settings, std::vector<BackendSpec> backends, Publish publish)
      : settings_(std::move(settings)),
        specs_(std::move(backends)),
        publish_(std::move(publish)),
        builder_(specs_, thresholdsOf(settings_)) {
    settings_.periodMs = std::max(1, settings_.periodMs);
    settings_.connectTimeoutMs = std::max(1, settings_.connectTimeoutMs);
    settings_.queryTimeoutMs = std::max(1, settings_.queryTimeoutMs);
    current_ = builder_.initial();
    for (size_t i = 0; i < builder_.size(); ++i) status_.push_back(builder_.track(int(i)));
  }
  // Requests queued on a monitor that never started still get their answer.
  ~Impl() {
    for (auto& fn : posted_) fn();
  }

  enum class Kind { Recheck, Fence, Attach, Disable, Drain };
  struct Command {
    Kind kind;
    int index;
    bool on;
  };

  void start();
  void stop();
  void enqueue(Kind kind, int index, bool on = false);

  // ProbeListener (health thread)
  void onCheckDone(int index, ProbeResult result) override;
  void onConnectionLost(int index) override;

  // FailoverCoordinator::Host (health thread, except post)
  TopologyBuilder& builder() override { return builder_; }
  void publishNow() override { buildAndPublish(); }
  void checkNow(int i) override;
  void report(Event e) override;
  bool post(std::function<void()> fn) override;
  std::string promotionBlocker() override;
  bool coordinated() override { return etcd_ != nullptr; }
  void onPromotion(int oldPrimary, int candidate) override;

  // EtcdCoordination::Host (health thread)
  void onDecision(const etcd::Decision& d) override;
  int backendAt(const std::string& host, int port) const;
  void coordinate(const routing::Topology& t);

  // PatroniSource::Host (health thread)
  void onPatroniView(const PatroniView& view) override;
  void onPatroniReachability(bool ok, const std::string& detail) override;
  void patroniSwitchover(int i, OperationDone done);

  HealthSettings settings_;
  FailoverSettings failover_;
  PatroniSettings patroni_;
  CoordinationSettings coordination_;
  std::vector<BackendSpec> specs_;
  Publish publish_;
  EventListener listener_;

  // Shared with other threads, under mu_.
  mutable std::mutex mu_;
  routing::TopologyPtr current_;
  std::deque<Event> recent_;
  std::vector<BackendTrack> status_;
  CoordinationStatus coordStatus_;
  std::vector<Command> commands_;
  std::vector<std::function<void()>> posted_;  // to run on the health thread
  bool running_ = false;                       // wake_ may be sent to
  bool stopRequested_ = false;
  bool clean_ = true;

  // Lifecycle, under lifecycleMu_.
  std::mutex lifecycleMu_;
  bool started_ = false;
  bool stopped_ = false;
  std::thread thread_;

  // Health thread only.
  TopologyBuilder builder_;
  uv_loop_t loop_;
  uv_timer_t tick_;
  uv_timer_t confirm_;  // re-checks of a backend that just failed a check (scheduleConfirm)
  uv_async_t wake_;
  std::vector<std::unique_ptr<PgProbe>> probes_;
  std::unique_ptr<EventHookRunner> hooks_;
  std::unique_ptr<FailoverCoordinator> failover_coord_;
  std::unique_ptr<PatroniSource> patroni_src_;
  std::unique_ptr<EtcdCoordination> etcd_;
  PatroniView patroniView_;  // the last /cluster answer
  bool patroniSwitching_ = false;
  bool shuttingDown_ = false;
  uint64_t pauseDeadline_ = 0;  // uv_now() after which a Patroni switchover's pause is lifted
  int roundPending_ = 0;
  std::vector<char> inRound_;
  std::vector<char> extraUsed_;
  std::vector<char> checkAfter_;  // checkNow() while a check ran: another one when it ends
  std::vector<char> confirmWanted_;  // to re-check when confirm_ fires

  // [coordination]: our promotion, written to etcd once a snapshot names it; the last primary
  // any snapshot named (a new one the leader did not promote is written too).
  int decidedOld_ = -1, decidedNew_ = -1;
  int namedPrimary_ = -1;

 private:
  static void onTick(uv_timer_t* h) noexcept;
  static void onConfirm(uv_timer_t* h) noexcept;
  // A backend failed a check and has not failed enough in a row to be down (or failed over):
  // it is checked again after a quarter period instead of a whole one, so a dead primary is
  // known in about half a period (the count of failures asked for stays the same).
  void scheduleConfirm(int i);
  static void onWake(uv_async_t* h) noexcept;
  void run();
  void startRound();
  void requestExtraCheck(int i);
  void buildAndPublish();
  void announce(const Event& e);  // log line, listener, hook (the ring is filled by callers)
  void shutdown();
};

void HealthMonitor::Impl::start() {
  std::lock_guard lg(lifecycleMu_);
  if (started_) return;
  started_ = true;
  routing::TopologyPtr initial;
  {
    std::lock_guard g(mu_);
    initial = current_;
  }
  if (publish_) publish_(initial);

  uv_loop_init(&loop_);
  uv_timer_init(&loop_, &tick_);
  tick_.data = this;
  uv_timer_init(&loop_, &confirm_);
  confirm_.data = this;
  uv_async_init(&loop_, &wake_, onWake);
  wake_.data = this;
  const int n = static_cast<int>(specs_.size());
  for (int i = 0; i < n; ++i) {
    // A removed backend keeps its index but gets no probe: no connection, no check.
    probes_.push_back(specs_[i].removed
                          ? nullptr
                          : std::make_unique<PgProbe>(
                                &loop_, i,
                                connectionString(settings_.login, specs_[i].host, specs_[i].port),
                                settings_.connectTimeoutMs, settings_.queryTimeoutMs, *this));
  }
  inRound_.assign(n, 0);
  extraUsed_.assign(n, 0);
  confirmWanted_.assign(n, 0);
  checkAfter_.assign(n, 0);
  hooks_ = std::make_unique<EventHookRunner>(&loop_, settings_.onEvent);
  if (patroni_.enabled()) {
    // Two managers promoting the same cluster would fight; Patroni holds the leader lock.
    if (failover_.autoFailover) {
      spdlog::warn(
          "patroni: [patroni] is set, so pgswitch never promotes: "
          "failover.auto_failover is ignored");
    }
    failover_.autoFailover = false;
    builder_.setPatroniManaged();
    patroni_src_ = std::make_unique<PatroniSource>(&loop_, patroni_, specs_, *this);
    spdlog::info("patroni: following {} REST API(s) every {} ms; promotion is left to Patroni",
                 patroni_.urls.size(), patroni_.periodMs);
  }
  if (coordination_.enabled()) {
    if (patroni_src_) {
      spdlog::warn("coordination: [patroni] is set, so Patroni decides: [coordination] is ignored");
    } else {
      etcd_ = std::make_unique<EtcdCoordination>(&loop_, coordination_, *this);
    }
  }
  failover_coord_ = std::make_unique<FailoverCoordinator>(*this, settings_, failover_, specs_);
  uv_timer_start(&tick_, onTick, 0, static_cast<uint64_t>(settings_.periodMs));
  if (patroni_src_) patroni_src_->start();
  if (etcd_) etcd_->start();
  {
    std::lock_guard g(mu_);
    running_ = true;
    if (!commands_.empty() || !posted_.empty()) uv_async_send(&wake_);
  }
  thread_ = std::thread([this] { run(); });
}

void HealthMonitor::Impl::run() {
  uv_run(&loop_, UV_RUN_DEFAULT);
  int rc = uv_loop_close(&loop_);
  if (rc != 0) {
    uv_walk(
        &loop_,
        [](uv_handle_t* h, void*) {
          spdlog::error("health: handle still open at shutdown: {}", uv_handle_type_name(h->type));
        },
        nullptr);
    spdlog::error("health: uv_loop_close failed: {}", uv_strerror(rc));
  }
  {
    std::lock_guard g(mu_);
    clean_ = rc == 0;
  }
  probes_.clear();
  hooks_.reset();
  failover_coord_.reset();
  patroni_src_.reset();
  etcd_.reset();
}

void HealthMonitor::Impl::stop() {
  std::lock_guard lg(lifecycleMu_);
  if (!started_ || stopped_) return;
  stopped_ = true;
  {
    std::lock_guard g(mu_);
    stopRequested_ = true;
    if (running_) uv_async_send(&wake_);
  }
  thread_.join();
}

void HealthMonitor::Impl::enqueue(Kind kind, int index, bool on) {
  if (index < 0 || index >= static_cast<int>(specs_.size())) return;
  std::lock_guard g(mu_);
  if (stopRequested_) return;
  commands_.push_back(Command{kind, index, on});
  if (running_) uv_async_send(&wake_);
}

void HealthMonitor::Impl::onTick(uv_timer_t* h) noexcept {
  auto* self = static_cast<Impl*>(h->data);
  self->failover_coord_->onTick();
  // A Patroni switchover whose new leader never showed up must not hold writes forever.
  if (self->pauseDeadline_ && uv_now(&self->loop_) >= self->pauseDeadline_) {
    self->pauseDeadline_ = 0;
    if (self->builder_.writesPaused()) {
      spdlog::warn("patroni: switchover pause lifted after its deadline");
      self->builder_.resumeWrites();
    }
  }
  self->startRound();
}

void HealthMonitor::Impl::startRound() {
  // A check from the previous round is overdue (it ends by its timeout): publish what the
  // others found rather than wait; it reports as an out-of-round check when it ends.
  if (roundPending_ > 0) buildAndPublish();
  std::fill(inRound_.begin(), inRound_.end(), 0);
  std::fill(extraUsed_.begin(), extraUsed_.end(), 0);
  roundPending_ = 1;  // guard: a check may finish synchronously inside check()
  for (size_t i = 0; i < probes_.size(); ++i) {
    if (!probes_[i] || probes_[i]->busy()) continue;
    inRound_[i] = 1;
    ++roundPending_;
    probes_[i]->check();
  }
  if (--roundPending_ == 0) buildAndPublish();
}

void HealthMonitor::Impl::requestExtraCheck(int i) {
  if (!probes_[i] || probes_[i]->busy() || extraUsed_[i]) return;
  extraUsed_[i] = 1;
  inRound_[i] = 0;
  probes_[i]->check();
}

void HealthMonitor::Impl::onCheckDone(int i, ProbeResult r) {
  if (!r.ok) spdlog::debug("health: check of {} failed: {}", specs_[i].name, r.error);
  const bool ok = r.ok;
  bool significant = builder_.record(i, r);
  if (inRound_[i]) {
    inRound_[i] = 0;
    if (--roundPending_ == 0) buildAndPublish();
    // else: the round publishes when its last check ends, so that one snapshot compares
    // samples taken together (lag = primary LSN - replica replay LSN).
  } else if (significant) {
    buildAndPublish();
  }
  failover_coord_->onCheckDone(i, ok);
  if (!ok) {
    const int streak = builder_.track(i).failStreak;
    if (streak > 0 && streak < std::max(settings_.fall, failover_.failoverAfter))
      scheduleConfirm(i);
  }
  // A backend left (or entered) recovery: ask Patroni now rather than at its next period,
  // since the primary is only published once Patroni also names it leader.
  if (significant && patroni_src_) patroni_src_->pollSoon();
  if (checkAfter_[i] && !probes_[i]->busy()) {
    checkAfter_[i] = 0;
    inRound_[i] = 0;
    probes_[i]->check();
  }
}

void HealthMonitor::Impl::scheduleConfirm(int i) {
  confirmWanted_[i] = 1;
  if (shuttingDown_ || uv_is_active(reinterpret_cast<uv_handle_t*>(&confirm_))) return;
  uv_timer_start(&confirm_, onConfirm, static_cast<uint64_t>(std::max(10, settings_.periodMs / 4)),
                 0);
}

void HealthMonitor::Impl::onConfirm(uv_timer_t* h) noexcept {
  auto* self = static_cast<Impl*>(h->data);
  for (size_t i = 0; i < self->confirmWanted_.size(); ++i) {
    if (!std::exchange(self->confirmWanted_[i], 0)) continue;
    self->checkNow(static_cast<int>(i));
  }
}

void HealthMonitor::Impl::checkNow(int i) {
  if (i < 0 || i >= static_cast<int>(probes_.size()) || !probes_[i]) return;
  if (probes_[i]->busy()) {
    checkAfter_[i] = 1;
    return;
  }
  extraUsed_[i] = 1;
  inRound_[i] = 0;
  probes_[i]->check();
}

bool HealthMonitor::Impl::post(std::function<void()> fn) {
  std::lock_guard g(mu_);
  if (stopRequested_) return false;
  posted_.push_back(std::move(fn));
  if (running_) uv_async_send(&wake_);
  return true;
}

void HealthMonitor::Impl::onConnectionLost(int i) { requestExtraCheck(i); }

void HealthMonitor::Impl::onPatroniView(const PatroniView& view) {
  const int before = builder_.patroniLeader();
  const bool first = !builder_.havePatroniView();
  patroniView_ = view;
  if (builder_.setPatroniView(view)) buildAndPublish();
  const int leader = builder_.patroniLeader();
  if (leader != before || first) {
    spdlog::info("patroni: leader is {}{}", view.leaderName.empty() ? "(none)" : view.leaderName,
                 leader >= 0 ? " (backend " + specs_[leader].name + ")"
                             : std::string(view.leaderName.empty() ? "" : " (no backend)"));
    // Check the new leader now: its promotion is published by the next sample, not the
    // next round.
    if (leader >= 0) checkNow(leader);
  }
}

void HealthMonitor::Impl::onPatroniReachability(bool ok, const std::string& detail) {
  Event e;
  e.type = ok ? EventType::PatroniReachable : EventType::PatroniUnreachable;
  e.detail = detail;
  report(std::move(e));
}

void HealthMonitor::Impl::patroniSwitchover(int i, OperationDone done) {
  auto fail = [&](std::string why) {
    if (done) done(OperationResult{false, std::move(why), -1, ""});
  };
  if (!builder_.havePatroniView()) return fail("no answer from Patroni's REST API yet");
  if (patroniSwitching_) return fail("a switchover is already running");
  if (patroniView_.leaderName.empty()) return fail("Patroni reports no leader");
  const int m =
      i >= 0 && i < static_cast<int>(patroniView_.memberOf.size()) ? patroniView_.memberOf[i] : -1;
  if (m < 0) return fail(specs_[i].name + " is not a Patroni member (no member at its address)");
  const std::string candidate = patroniView_.members[m].name;
  if (candidate == patroniView_.leaderName)
    return fail(specs_[i].name + " is already Patroni's leader");
  patroniSwitching_ = true;
  Event e;
  e.type = EventType::SwitchoverStarted;
  e.backend = i;
  e.name = specs_[i].name;
  e.host = specs_[i].host;
  e.port = specs_[i].port;
  e.detail = "asking Patroni: leader " + patroniView_.leaderName + ", candidate " + candidate;
  report(e);
  // Hold new writes from now until the candidate is published as primary: they would only
  // meet the old leader shutting down. Transactions already running finish or fail there.
  builder_.pauseWrites(i);
  pauseDeadline_ = uv_now(&loop_) + static_cast<uint64_t>(patroni_.switchoverTimeoutMs) + 10000;
  buildAndPublish();
  patroni_src_->switchover(
      patroniView_.leaderName, candidate,
      [this, i, e, done = std::move(done)](PatroniSource::SwitchoverAnswer a) mutable {
        patroniSwitching_ = false;
        if (shuttingDown_) {
          if (done) done(OperationResult{false, "health monitor stopped", -1, ""});
          return;
        }
        Event r = e;
        r.detail = "Patroni: " + a.message;
        if (a.ok) {
          r.type = EventType::SwitchoverDone;
          report(r);
          patroni_src_->pollSoon();
          checkNow(i);
          if (done) done(OperationResult{true, "", i, "Patroni: " + a.message});
        } else {
          r.type = EventType::SwitchoverFailed;
          report(r);
          builder_.resumeWrites();
          pauseDeadline_ = 0;
          buildAndPublish();
          if (done) done(OperationResult{false, "Patroni: " + a.message, -1, ""});
        }
      });
}

void HealthMonitor::Impl::onWake(uv_async_t* h) noexcept {
  auto* self = static_cast<Impl*>(h->data);
  std::vector<Command> cmds;
  std::vector<std::function<void()>> posted;
  bool stop;
  {
    std::lock_guard g(self->mu_);
    cmds.swap(self->commands_);
    posted.swap(self->posted_);
    stop = self->stopRequested_;
    if (stop) self->running_ = false;  // nobody may send to wake_ once it closes
  }
  if (stop) {
    self->shutdown();
    for (auto& fn : posted) fn();  // requests fail ("stopped"), runner news is stale
    return;
  }
  bool rebuild = false;
  for (const auto& c : cmds) {
    switch (c.kind) {
      case Kind::Recheck:
        self->requestExtraCheck(c.index);
        break;
      case Kind::Fence:
        self->builder_.fence(c.index, "fenced by operator");
        rebuild = true;
        break;
      case Kind::Attach:
        self->builder_.attach(c.index);
        spdlog::info("health: backend {} attached", self->specs_[c.index].name);
        rebuild = true;
        break;
      case Kind::Disable:
        self->builder_.setDisabled(c.index, c.on);
        rebuild = true;
        break;
      case Kind::Drain:
        self->builder_.setDraining(c.index, c.on);
        rebuild = true;
        break;
    }
  }
  if (rebuild) self->buildAndPublish();
  for (auto& fn : posted) fn();
}

// Events are reported just before the snapshot that reflects them.
void HealthMonitor::Impl::buildAndPublish() {
  auto out = builder_.build(wallMs());
  {
    std::lock_guard g(mu_);
    current_ = out.topology;
    status_.clear();
    for (size_t i = 0; i < builder_.size(); ++i) status_.push_back(builder_.track(int(i)));
    if (etcd_) {
      coordStatus_.enabled = true;
      coordStatus_.leader = etcd_->leader();
      coordStatus_.name = etcd_->name();
      coordStatus_.blocker = etcd_->blocker();
      const auto& d = etcd_->lastDecision();
      coordStatus_.lastDecision = d ? etcd::toJson(*d) : std::string();
    }
    for (const auto& e : out.events) {
      recent_.push_back(e);
      if (recent_.size() > kRecentEvents) recent_.pop_front();
    }
  }
  for (const auto& e : out.events) announce(e);
  if (publish_) publish_(out.topology);
  failover_coord_->onPublished(*out.topology);
  if (etcd_) coordinate(*out.topology);
}

std::string HealthMonitor::Impl::promotionBlocker() { return etcd_ ? etcd_->blocker() : ""; }

void HealthMonitor::Impl::onPromotion(int oldPrimary, int candidate) {
  if (!etcd_) return;
  decidedOld_ = oldPrimary;
  decidedNew_ = candidate;
}

int HealthMonitor::Impl::backendAt(const std::string& host, int port) const {
  for (size_t i = 0; i < specs_.size(); ++i) {
    if (!specs_[i].removed && specs_[i].host == host && specs_[i].port == port) return int(i);
  }
  return -1;
}

// The leader writes its promotion once a snapshot names the new primary (its timeline is
// known then), and also a new primary it merely observed (a leader that died after pg_promote
// left none): either way the others learn it from etcd rather than from their own checks.
void HealthMonitor::Impl::coordinate(const routing::Topology& t) {
  const int before = namedPrimary_;
  if (t.version > 1 && t.primary >= 0) namedPrimary_ = t.primary;
  if (t.primary < 0 || t.version <= 1) return;
  etcd::Decision d;
  const routing::BackendInfo& p = t.backends[t.primary];
  d.primary = p.name;
  d.host = p.host;
  d.port = p.port;
  d.timeline = p.timeline;
  d.timeMs = wallMs();
  if (decidedNew_ >= 0) {
    if (t.primary != decidedNew_) return;  // not published yet
    if (decidedOld_ >= 0) {
      d.fenced = specs_[decidedOld_].name;
      d.fencedHost = specs_[decidedOld_].host;
      d.fencedPort = specs_[decidedOld_].port;
    }
    decidedOld_ = decidedNew_ = -1;
    etcd_->writeDecision(std::move(d));
    return;
  }
  if (!etcd_->leader() || before < 0 || before == t.primary) return;
  const auto& last = etcd_->lastDecision();
  if (last && last->host == p.host && last->port == p.port) return;
  if (builder_.track(before).health != Health::Up) {
    d.fenced = specs_[before].name;
    d.fencedHost = specs_[before].host;
    d.fencedPort = specs_[before].port;
  }
  etcd_->writeDecision(std::move(d));
}

void HealthMonitor::Impl::onDecision(const etcd::Decision& d) {
  const int p = backendAt(d.host, d.port);
  const int old = d.fencedPort > 0 ? backendAt(d.fencedHost, d.fencedPort) : -1;
  Event e;
  e.type = EventType::DecisionAdopted;
  e.backend = p;
  if (p >= 0) {
    e.name = specs_[p].name;
    e.host = specs_[p].host;
    e.port = specs_[p].port;
    e.role = routing::toString(builder_.track(p).role);
  }
  std::string detail = "from " + d.by + ", seq " + std::to_string(d.seq) + ": primary " +
                       d.primary + " (" + d.host + ":" + std::to_string(d.port) + ")";
  if (p < 0) {
    e.detail = detail + " matches no [[backend]] host:port; ignored";
    report(std::move(e));
    return;
  }
  if (old >= 0 && old != p) {
    detail += ", " + specs_[old].name + " fenced";
    builder_.fence(old, "coordination: " + d.by + " failed over to " + specs_[p].name);
  }
  e.detail = detail;
  report(std::move(e));
  buildAndPublish();
  // Published as the primary as soon as this check sees it out of recovery.
  checkNow(p);
}

void HealthMonitor::Impl::announce(const Event& e) {
  if (isWarning(e.type)) {
    spdlog::warn("{}", formatLogfmt(e));
  } else {
    spdlog::info("{}", formatLogfmt(e));
  }
  if (listener_) listener_(e);
  hooks_->run(e);
}

void HealthMonitor::Impl::report(Event e) {
  e.timeMs = wallMs();
  {
    std::lock_guard g(mu_);
    recent_.push_back(e);
    if (recent_.size() > kRecentEvents) recent_.pop_front();
  }
  announce(e);
}

void HealthMonitor::Impl::shutdown() {
  shuttingDown_ = true;
  failover_coord_->shutdown();              // joins the helper thread; fails a pending callback
  if (patroni_src_) patroni_src_->close();  // fails a pending switchover's callback
  if (etcd_) etcd_->close();
  uv_timer_stop(&tick_);
  uv_close(reinterpret_cast<uv_handle_t*>(&tick_), nullptr);
  uv_timer_stop(&confirm_);
  uv_close(reinterpret_cast<uv_handle_t*>(&confirm_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&wake_), nullptr);
  for (auto& p : probes_)
    if (p) p->close();
  hooks_->close();
}

// ---------------------------------------------------------------------------------------------

HealthMonitor::HealthMonitor(HealthSettings settings, std::vector<BackendSpec> backends,
                             Publish publish)
    : impl_(std::make_unique<Impl>(std::move(settings), std::move(backends), std::move(publish))) {}

HealthMonitor::~HealthMonitor() { stop(); }

void HealthMonitor::setEventListener(EventListener listener) {
  impl_->listener_ = std::move(listener);
}

void HealthMonitor::setFailover(FailoverSettings failover) {
  impl_->failover_ = std::move(failover);
}

const FailoverSettings& HealthMonitor::failoverSettings() const { return impl_->failover_; }

void HealthMonitor::setPatroni(PatroniSettings patroni) { impl_->patroni_ = std::move(patroni); }

void HealthMonitor::setCoordination(CoordinationSettings coordination) {
  impl_->coordination_ = std::move(coordination);
}

HealthMonitor::CoordinationStatus HealthMonitor::coordinationStatus() const {
  std::lock_guard g(impl_->mu_);
  return impl_->coordStatus_;
}

namespace {

void failStopped(const OperationDone& done) {
  if (done) done(OperationResult{false, "health monitor stopped", -1, ""});
}

}  // namespace

void HealthMonitor::promote(int i, OperationDone done) {
  Impl* impl = impl_.get();
  auto shared = std::make_shared<OperationDone>(std::move(done));
  bool queued = impl->post([impl, i, shared] {
    if (impl->patroni_src_) {
      if (*shared)
        (*shared)(OperationResult{false,
                                  "Patroni manages this cluster: pgswitch does not promote "
                                  "(use SWITCHOVER TO, or patronictl failover)",
                                  -1, ""});
    } else if (impl->failover_coord_) {
      impl->failover_coord_->promote(i, std::move(*shared));
    } else {
      failStopped(*shared);
    }
  });
  if (!queued) failStopped(*shared);
}

void HealthMonitor::switchover(int i, int timeoutMs, OperationDone done) {
  Impl* impl = impl_.get();
  auto shared = std::make_shared<OperationDone>(std::move(done));
  bool queued = impl->post([impl, i, timeoutMs, shared] {
    if (impl->patroni_src_) {
      impl->patroniSwitchover(i, std::move(*shared));
    } else if (impl->failover_coord_) {
      impl->failover_coord_->switchover(i, timeoutMs, std::move(*shared));
    } else {
      failStopped(*shared);
    }
  });
  if (!queued) failStopped(*shared);
}

void HealthMonitor::start() { impl_->start(); }
void HealthMonitor::stop() { impl_->stop(); }

bool HealthMonitor::stoppedCleanly() const {
  std::lock_guard g(impl_->mu_);
  return impl_->clean_;
}

void HealthMonitor::recheck(int i) { impl_->enqueue(Impl::Kind::Recheck, i); }
void HealthMonitor::fence(int i) { impl_->enqueue(Impl::Kind::Fence, i); }
void HealthMonitor::attach(int i) { impl_->enqueue(Impl::Kind::Attach, i); }
void HealthMonitor::setDisabled(int i, bool on) { impl_->enqueue(Impl::Kind::Disable, i, on); }
void HealthMonitor::setDraining(int i, bool on) { impl_->enqueue(Impl::Kind::Drain, i, on); }

routing::TopologyPtr HealthMonitor::snapshot() const {
  std::lock_guard g(impl_->mu_);
  return impl_->current_;
}

void HealthMonitor::addEvent(Event e) {
  Impl* impl = impl_.get();
  impl->post([impl, e = std::move(e)]() mutable {
    if (!impl->shuttingDown_) impl->report(std::move(e));
  });
}

std::vector<Event> HealthMonitor::recentEvents() const {
  std::lock_guard g(impl_->mu_);
  return {impl_->recent_.begin(), impl_->recent_.end()};
}

void HealthMonitor::carryEvents(const std::vector<Event>& older) {
  std::lock_guard g(impl_->mu_);
  auto& r = impl_->recent_;
  for (auto it = older.rbegin(); it != older.rend() && r.size() < kRecentEvents; ++it)
    r.push_front(*it);
}

std::vector<BackendTrack> HealthMonitor::backendStatus() const {
  std::lock_guard g(impl_->mu_);
  return impl_->status_;
}

const HealthSettings& HealthMonitor::settings() const { return impl_->settings_; }

}  // namespace pgswitch::health
