#include "health/replay_watcher.h"

#include <spdlog/spdlog.h>
#include <uv.h>

#include <pthread.h>

#include <algorithm>

#include "health/pg_probe.h"
#include "health/probe_query.h"
#include "routing/session_sql.h"

namespace pgswitch::health {

// Everything that lives on the watcher's thread. Slots are made on first use and kept.
class ReplayWatcher::Loop final : public ProbeListener {
 public:
  explicit Loop(ReplayWatcher& owner) : owner_(owner) {
    uv_loop_init(&loop_);
    uv_async_init(&loop_, &wake_, onWake);
    wake_.data = this;
  }

  void run() {
    uv_run(&loop_, UV_RUN_DEFAULT);
    if (int rc = uv_loop_close(&loop_); rc != 0)
      spdlog::error("replay watcher: uv_loop_close failed: {}", uv_strerror(rc));
    slots_.clear();
    retired_.clear();  // their handles are closed now
  }

  // Any thread (under owner_.mu_, while the loop runs).
  void wake() { uv_async_send(&wake_); }
  void setBackends(std::vector<std::string> conninfos) {
    std::lock_guard g(mu_);
    pendingConninfos_ = std::move(conninfos);
    haveConninfos_ = true;
  }
  void requestStop() {
    std::lock_guard g(mu_);
    stop_ = true;
  }

 private:
  struct Slot {
    Loop* owner;
    int index;
    std::string conninfo;
    std::unique_ptr<PgProbe> probe;
    std::string sql;  // the question running
    uv_timer_t timer;  // the next question, kRepollMs or kRetryMs after the last
    bool timerArmed = false;
  };

  static void onWake(uv_async_t* h) { static_cast<Loop*>(h->data)->onWakeUp(); }
  static void onTimer(uv_timer_t* h) {
    auto* s = static_cast<Slot*>(h->data);
    s->timerArmed = false;
    s->owner->owner_.asking_[s->index].store(false);
    s->owner->askIfWanted(s);
  }

  void onWakeUp() {
    bool stop;
    std::vector<std::string> conninfos;
    bool haveConninfos;
    {
      std::lock_guard g(mu_);
      stop = stop_;
      haveConninfos = std::exchange(haveConninfos_, false);
      conninfos.swap(pendingConninfos_);
    }
    if (stop) {
      closeAll();
      return;
    }
    if (haveConninfos) applyConninfos(std::move(conninfos));
    for (size_t i = 0; i < slots_.size(); ++i) askIfWanted(slots_[i].get());
    // Slots not made yet: a read wants a backend the watcher has not asked before.
    for (size_t i = slots_.size(); i < conninfos_.size() && i < kSlots; ++i) {
      if (wanted(static_cast<int>(i))) askIfWanted(slot(static_cast<int>(i)));
    }
  }

  // Some read still waits for more than the last answer (waits end after max_wait_ms).
  bool wanted(int b) const {
    return owner_.wanted_[b].load(std::memory_order_acquire) >
               owner_.answered_[b].load(std::memory_order_acquire) &&
           owner_.wantedUntil_[b].load(std::memory_order_acquire) > nowMs();
  }

  Slot* slot(int b) {
    if (b < 0 || b >= kSlots || b >= static_cast<int>(conninfos_.size()) ||
        conninfos_[b].empty())
      return nullptr;
    if (static_cast<int>(slots_.size()) <= b) slots_.resize(b + 1);
    if (!slots_[b]) {
      auto s = std::make_unique<Slot>();
      s->owner = this;
      s->index = b;
      s->conninfo = conninfos_[b];
      uv_timer_init(&loop_, &s->timer);
      s->timer.data = s.get();
      s->probe = std::make_unique<PgProbe>(&loop_, b, s->conninfo, kTimeoutMs, kTimeoutMs, *this,
                                           ProbeStatement{kReplayQuery, parseReplayRow,
                                                          routing::kReplayWaitPrepare.data()});
      slots_[b] = std::move(s);
    }
    return slots_[b].get();
  }

  void askIfWanted(Slot* s) {
    if (!s || closed_ || s->timerArmed || s->probe->busy() || !wanted(s->index)) return;
    owner_.questions_.fetch_add(1, std::memory_order_relaxed);
    owner_.asking_[s->index].store(true);  // want() need not wake the loop meanwhile
    // The replica answers as soon as it has the newest LSN wanted, or after kWaitMs (less if
    // no read waits that long); a later, higher one is asked about in the next question.
    const uint64_t now = nowMs(), until = owner_.wantedUntil_[s->index].load();
    const uint64_t waitMs = std::clamp<uint64_t>(until > now ? until - now : 0, 1, kWaitMs);
    s->sql = routing::replayWaitQuery(owner_.wanted_[s->index].load(), waitMs);
    s->probe->setSql(s->sql.c_str());
    s->probe->check();
  }

  void onCheckDone(int b, ProbeResult r) override {
    Slot* s = b >= 0 && b < static_cast<int>(slots_.size()) ? slots_[b].get() : nullptr;
    if (!s || closed_) return;
    if (r.ok) {
      const uint64_t before = owner_.answered_[b].exchange(r.replayLsn);
      if (r.replayLsn > before) owner_.learned_(b, r.replayLsn);  // news for waiting reads
      // Cleared before looking at what is wanted: a want() that saw it set relies on this
      // look (both sequentially consistent).
      owner_.asking_[b].store(false);
      askIfWanted(s);  // a higher LSN was wanted meanwhile: the server paces the questions
      return;
    }
    // Unreachable or not a replica any more: reads waiting for it time out on their own.
    spdlog::debug("replay watcher: backend {}: {}", b, r.error);
    s->timerArmed = true;
    uv_timer_start(&s->timer, onTimer, kRetryMs, 0);
  }
  void onConnectionLost(int) override {}  // the next question reconnects

  void applyConninfos(std::vector<std::string> next) {
    for (size_t i = 0; i < slots_.size(); ++i) {
      if (!slots_[i]) continue;
      if (i < next.size() && next[i] == slots_[i]->conninfo) continue;
      closeSlot(std::move(slots_[i]));
      owner_.answered_[i].store(0, std::memory_order_release);
    }
    conninfos_ = std::move(next);
    // Connected ahead of the first read that waits: a login takes longer than max_wait_ms.
    for (size_t i = 0; i < conninfos_.size() && i < kSlots; ++i) {
      Slot* s = slot(static_cast<int>(i));
      if (s && !s->probe->connected() && !s->probe->busy()) s->probe->check();
    }
  }

  // The probe's handles and the timer finish closing on a later loop turn: the slot is kept
  // (retired_) until the loop has ended.
  void closeSlot(std::unique_ptr<Slot> s) {
    s->probe->close();
    uv_timer_stop(&s->timer);
    uv_close(reinterpret_cast<uv_handle_t*>(&s->timer), nullptr);
    retired_.push_back(std::move(s));
  }

  void closeAll() {
    if (closed_) return;
    closed_ = true;
    for (auto& s : slots_)
      if (s) closeSlot(std::move(s));
    slots_.clear();
    uv_close(reinterpret_cast<uv_handle_t*>(&wake_), nullptr);
  }

  ReplayWatcher& owner_;
  uv_loop_t loop_;
  uv_async_t wake_;
  bool closed_ = false;
  std::vector<std::string> conninfos_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::vector<std::unique_ptr<Slot>> retired_;  // closed by a reload (a few per reload)
  std::mutex mu_;  // what other threads hand over
  std::vector<std::string> pendingConninfos_;
  bool haveConninfos_ = false;
  bool stop_ = false;
};

ReplayWatcher::ReplayWatcher(Learned learned) : learned_(std::move(learned)) {}

ReplayWatcher::~ReplayWatcher() { stop(); }

void ReplayWatcher::start() {
  std::lock_guard g(mu_);
  if (loop_) return;
  loop_ = std::make_unique<Loop>(*this);
  stopped_ = false;
  thread_ = std::thread([l = loop_.get()] {
    pthread_setname_np(pthread_self(), "pgsw-replay");  // top -H, perf: whose CPU it is
    l->run();
  });
}

void ReplayWatcher::stop() {
  {
    std::lock_guard g(mu_);
    if (!loop_ || stopped_) return;
    stopped_ = true;  // the loop closes its wake handle: nothing may signal it any more
    loop_->requestStop();
    loop_->wake();
  }
  thread_.join();
  std::lock_guard g(mu_);
  loop_.reset();
}

void ReplayWatcher::setBackends(std::vector<std::string> conninfos) {
  std::lock_guard g(mu_);
  if (!loop_ || stopped_) return;
  loop_->setBackends(std::move(conninfos));
  loop_->wake();
}

namespace {

// Raises `a` to at least v; returns the value it had.
uint64_t raiseTo(std::atomic<uint64_t>& a, uint64_t v) {
  uint64_t cur = a.load(std::memory_order_relaxed);
  const uint64_t before = cur;
  while (cur < v &&
         !a.compare_exchange_weak(cur, v, std::memory_order_release, std::memory_order_relaxed)) {
  }
  return before;
}

}  // namespace

uint64_t ReplayWatcher::nowMs() { return uv_hrtime() / 1000000; }

void ReplayWatcher::want(int backend, uint64_t lsn, uint64_t untilMs) {
  if (backend < 0 || backend >= kSlots) return;
  const uint64_t until = raiseTo(wantedUntil_[backend], untilMs);
  const uint64_t before = raiseTo(wanted_[backend], lsn);
  if (answered_[backend].load(std::memory_order_acquire) >= lsn) return;
  // Already wanted and still asked about: the watcher's next answer serves this read too.
  if (before >= lsn && until > nowMs()) return;
  // A question (or its retry) is under way: its end looks at what is wanted by then.
  if (asking_[backend].load()) return;
  std::lock_guard g(mu_);
  if (loop_ && !stopped_) loop_->wake();
}

void ReplayWatcher::forget(int backend) {
  if (backend < 0 || backend >= kSlots) return;
  answered_[backend].store(0, std::memory_order_release);
}

}  // namespace pgswitch::health
