// What a read must see, and what each replica has shown it has, shared by all workers for
// consistency = "strong" (docs/routing.md).
//
// WriteFloor: per database, the highest commit LSN pgswitch has acknowledged to any client.
// It is raised before the commit's ReadyForQuery is forwarded, so a read that starts after
// an application saw its commit finds the floor already moved. "Blind" means a commit was
// acknowledged whose LSN is not known: reads of that database go to the primary until the
// blind period ends.
//
// ReplayPositions: per backend slot, the newest replay LSN a session learned by asking the
// replica itself (fresher than the health checks' period). Slots are reset when the backend
// stops being an Up replica, so a server rebuilt in the same slot cannot inherit a position.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace pgswitch::proxy {

class WriteFloor {
 public:
  void raise(uint64_t lsn) {
    uint64_t cur = lsn_.load(std::memory_order_relaxed);
    while (cur < lsn && !lsn_.compare_exchange_weak(cur, lsn, std::memory_order_release,
                                                    std::memory_order_relaxed)) {
    }
  }
  uint64_t lsn() const { return lsn_.load(std::memory_order_acquire); }
  // A commit was acknowledged without its LSN (its server died first, or there was no
  // replica to track it for): reads go to the primary until `untilMs`, and the first read
  // after that raises the floor to the primary's LSN of a health check taken after the
  // commit (caughtUp()), which covers it.
  void unknownCommit(uint64_t untilMs) {
    uint64_t cur = blindUntilMs_.load(std::memory_order_relaxed);
    while (cur < untilMs && !blindUntilMs_.compare_exchange_weak(
                                cur, untilMs, std::memory_order_release, std::memory_order_relaxed)) {
    }
    needsPrimaryLsn_.store(true, std::memory_order_release);
  }
  bool blind(uint64_t nowMs) const {
    return nowMs < blindUntilMs_.load(std::memory_order_acquire);
  }
  // After the blind period: `primaryLsn` is from a health check taken since.
  void caughtUp(uint64_t primaryLsn) {
    if (!needsPrimaryLsn_.load(std::memory_order_acquire)) return;
    raise(primaryLsn);
    needsPrimaryLsn_.store(false, std::memory_order_release);
  }

 private:
  std::atomic<uint64_t> lsn_{0};
  std::atomic<uint64_t> blindUntilMs_{0};
  std::atomic<bool> needsPrimaryLsn_{false};
};

// One floor per database name, made on first use and never freed (a process serves a
// handful of databases; sessions keep the pointer for their lifetime).
class WriteFloors {
 public:
  WriteFloor& of(std::string_view database) {
    std::lock_guard g(mu_);
    auto& f = floors_[std::string(database)];
    if (!f) f = std::make_unique<WriteFloor>();
    return *f;
  }

 private:
  std::mutex mu_;
  std::unordered_map<std::string, std::unique_ptr<WriteFloor>> floors_;
};

class ReplayPositions {
 public:
  static constexpr int kSlots = 256;  // backends beyond this rely on the health checks alone
  void learn(int backend, uint64_t lsn) {
    if (backend < 0 || backend >= kSlots) return;
    std::atomic<uint64_t>& a = lsn_[backend];
    uint64_t cur = a.load(std::memory_order_relaxed);
    while (cur < lsn &&
           !a.compare_exchange_weak(cur, lsn, std::memory_order_release, std::memory_order_relaxed)) {
    }
  }
  uint64_t get(int backend) const {
    if (backend < 0 || backend >= kSlots) return 0;
    return lsn_[backend].load(std::memory_order_acquire);
  }
  void forget(int backend) {
    if (backend >= 0 && backend < kSlots) lsn_[backend].store(0, std::memory_order_release);
  }

 private:
  std::atomic<uint64_t> lsn_[kSlots] = {};
};

}  // namespace pgswitch::proxy
