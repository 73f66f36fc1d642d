// PoolBudget: the server connections of one (backend, database, user) over all workers, so
// that pool_size (and reserve_pool_size) are true totals however they divide: each worker's
// Pool takes a unit before it opens a connection and gives it back when the connection is
// gone. A worker that is short while another keeps idle connections raises `wanted`; the
// others then close an idle connection instead of keeping it, and a freed unit is announced
// to every worker (Pool::budgetFreed).
#pragma once

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

namespace pgswitch::proxy {

struct PoolBudget {
  std::atomic<int> open{0};
  std::atomic<bool> wanted{false};

  bool tryTake(int limit) {
    int n = open.load(std::memory_order_relaxed);
    while (n < limit)
      if (open.compare_exchange_weak(n, n + 1, std::memory_order_acq_rel)) return true;
    return false;
  }
  void give() { open.fetch_sub(1, std::memory_order_acq_rel); }

  // The workers that have a Pool of this key. min_pool_size divides over them, not over every
  // worker: with worker_fill, clients (and so pools) may be on one worker only, and its share
  // of all workers would keep fewer connections warm than the total asks for.
  void join(int worker) {
    std::lock_guard g(mu_);
    holders_.insert(std::lower_bound(holders_.begin(), holders_.end(), worker), worker);
  }
  void leave(int worker) {
    std::lock_guard g(mu_);
    auto it = std::lower_bound(holders_.begin(), holders_.end(), worker);
    if (it != holders_.end() && *it == worker) holders_.erase(it);
  }
  // `worker`'s part of `total` over the holders: the parts add up to the total exactly.
  int share(int worker, int total) {
    if (total <= 0) return 0;
    std::lock_guard g(mu_);
    auto it = std::lower_bound(holders_.begin(), holders_.end(), worker);
    const int n = static_cast<int>(holders_.size());
    if (n == 0 || it == holders_.end() || *it != worker) return 0;
    const int rank = static_cast<int>(it - holders_.begin());
    return total / n + (rank < total % n ? 1 : 0);
  }

 private:
  std::mutex mu_;
  std::vector<int> holders_;  // worker ids, sorted
};

using PoolKey = std::tuple<int, std::string, std::string>;  // backend, database, user

// The budgets of every pool key, shared by the workers' Pools of that key. An entry lives as
// long as some worker's Pool holds it.
class PoolBudgets {
 public:
  std::shared_ptr<PoolBudget> get(const PoolKey& key) {
    std::lock_guard g(mu_);
    auto& weak = map_[key];
    auto b = weak.lock();
    if (!b) {
      b = std::make_shared<PoolBudget>();
      weak = b;
    }
    // Forget entries no pool holds any more (pools of missing databases come and go).
    if (map_.size() > 2 * live_ + 64) {
      for (auto it = map_.begin(); it != map_.end();)
        it = it->second.expired() ? map_.erase(it) : std::next(it);
      live_ = map_.size();
    }
    return b;
  }

 private:
  std::mutex mu_;
  std::map<PoolKey, std::weak_ptr<PoolBudget>> map_;
  size_t live_ = 0;
};

}  // namespace pgswitch::proxy
