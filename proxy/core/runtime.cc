// Cancel-key registry. Keys are random so that a client cannot guess another's key.
#include "proxy/core/runtime.h"

#include <chrono>
#include <utility>

#include <array>
#include <cstring>

#include "protocol/scram.h"

namespace pgswitch::proxy {

CancelRegistry::Entry CancelRegistry::add(CancelSlot* slot) {
  Entry e;
  e.pid = nextPid_.fetch_add(1);
  std::array<std::byte, 4> r;
  protocol::randomBytes(r);
  std::memcpy(&e.key, r.data(), 4);
  std::lock_guard g(mu_);
  map_[k(e.pid, e.key)] = slot;
  return e;
}

void CancelRegistry::remove(int32_t pid, int32_t key) {
  std::lock_guard g(mu_);
  map_.erase(k(pid, key));
}

bool CancelRegistry::read(int32_t pid, int32_t key, Busy& out) const {
  std::lock_guard g(mu_);
  auto it = map_.find(k(pid, key));
  if (it == map_.end() || !it->second->get(out.backend, out.serverPid, out.serverKey))
    return false;
  out.request = it->second->inFlight();
  return true;
}

uint64_t CancelRegistry::inFlight(int32_t pid, int32_t key) const {
  std::lock_guard g(mu_);
  auto it = map_.find(k(pid, key));
  return it == map_.end() ? 0 : it->second->inFlight();
}

namespace {

uint64_t steadyMs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

}  // namespace

Runtime::FailoverCounts Runtime::failoverCounts() const {
  return {replays.attempted.load(),     replays.succeeded.load(), replays.mismatched.load(),
          replays.abandoned.load(),     replays.tooLarge.load(),  replays.commitInFlight.load(),
          replays.notReplayable.load(), sessionsRebuilt.load(),   sessionsUnmovable.load()};
}

void Runtime::noteFailover(std::string newPrimary) {
  std::lock_guard g(failoverMu_);
  failoverReportAtMs_ = steadyMs() + kFailoverReportMs;
  failoverPrimary_ = std::move(newPrimary);
}

void Runtime::reportFailoverClients() {
  health::Event e;
  {
    std::lock_guard g(failoverMu_);
    if (failoverReportAtMs_ == 0 || steadyMs() < failoverReportAtMs_ || !health) return;
    failoverReportAtMs_ = 0;
    // Since the previous report: clients lose their servers before the health checks see
    // the primary go, so a baseline taken at the move would miss them.
    FailoverCounts now = failoverCounts();
    const FailoverCounts b = std::exchange(failoverBaseline_, now);
    e.type = health::EventType::FailoverClients;
    e.name = failoverPrimary_;
    e.detail = "transactions replayed " + std::to_string(now.succeeded - b.succeeded) + " of " +
               std::to_string(now.attempted - b.attempted) + " (answers differed " +
               std::to_string(now.mismatched - b.mismatched) + ", given up " +
               std::to_string(now.abandoned - b.abandoned) +
               "); not replayed: COMMIT in flight " +
               std::to_string(now.commitInFlight - b.commitInFlight) + ", too large " +
               std::to_string(now.tooLarge - b.tooLarge) + ", other " +
               std::to_string(now.notReplayable - b.notReplayable) + "; sessions rebuilt " +
               std::to_string(now.rebuilt - b.rebuilt) + ", ended for unmovable state " +
               std::to_string(now.unmovable - b.unmovable);
  }
  health->addEvent(std::move(e));
}

}  // namespace pgswitch::proxy
