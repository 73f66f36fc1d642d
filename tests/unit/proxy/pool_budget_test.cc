// PoolBudget: pool_size as a total over workers. Units are taken up to the limit (also from
// several threads at once) and given back; the registry hands every worker the same budget
// for a key and forgets budgets no pool holds.
#include "proxy/core/pool_budget.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace pgswitch::proxy {
namespace {

TEST(PoolBudget, TakesUpToTheLimitAndGivesBack) {
  PoolBudget b;
  EXPECT_TRUE(b.tryTake(2));
  EXPECT_TRUE(b.tryTake(2));
  EXPECT_FALSE(b.tryTake(2));   // pool_size 2 reached
  EXPECT_TRUE(b.tryTake(3));    // the reserve (pool_size + reserve_pool_size) allows one more
  EXPECT_FALSE(b.tryTake(3));
  b.give();
  EXPECT_TRUE(b.tryTake(3));
  EXPECT_EQ(b.open.load(), 3);
}

TEST(PoolBudget, ConcurrentTakersNeverExceedTheLimit) {
  PoolBudget b;
  constexpr int kLimit = 5;
  std::atomic<int> taken{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < 1000; ++i)
        if (b.tryTake(kLimit)) ++taken;
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(taken.load(), kLimit);
  EXPECT_EQ(b.open.load(), kLimit);
}

TEST(PoolBudgets, SameKeySameBudgetAcrossWorkers) {
  PoolBudgets r;
  auto a = r.get({0, "appdb", "app"});
  auto b = r.get({0, "appdb", "app"});
  auto other = r.get({1, "appdb", "app"});
  EXPECT_EQ(a.get(), b.get());
  EXPECT_NE(a.get(), other.get());
  EXPECT_TRUE(a->tryTake(1));
  EXPECT_FALSE(b->tryTake(1));  // the other worker's pool sees the unit taken
}

TEST(PoolBudgets, ForgetsBudgetsNoPoolHolds) {
  PoolBudgets r;
  auto kept = r.get({0, "appdb", "app"});
  kept->tryTake(10);
  for (int i = 0; i < 1000; ++i) r.get({0, "missing_" + std::to_string(i), "app"});
  // A budget that was dropped and asked for again starts empty; a held one keeps its count.
  EXPECT_EQ(r.get({0, "missing_1", "app"})->open.load(), 0);
  EXPECT_EQ(r.get({0, "appdb", "app"})->open.load(), 1);
}

// min_pool_size divides over the workers that have a pool of the key, whichever they are:
// the parts always add up to the total, also when workers join and leave.
TEST(PoolBudget, MinShareDividesOverTheWorkersThatHoldAPool) {
  PoolBudget b;
  EXPECT_EQ(b.share(0, 5), 0);  // not a holder
  b.join(0);
  EXPECT_EQ(b.share(0, 5), 5);  // worker_fill put every client on worker 0
  b.join(3);
  EXPECT_EQ(b.share(0, 5), 3);
  EXPECT_EQ(b.share(3, 5), 2);
  b.join(1);
  EXPECT_EQ(b.share(0, 5) + b.share(1, 5) + b.share(3, 5), 5);
  EXPECT_EQ(b.share(2, 5), 0);
  b.leave(0);
  EXPECT_EQ(b.share(1, 5) + b.share(3, 5), 5);
  EXPECT_EQ(b.share(1, 0), 0);
  b.leave(1);
  b.leave(1);  // twice: no effect
  EXPECT_EQ(b.share(3, 5), 5);
  EXPECT_EQ(b.share(3, 1), 1);
}

}  // namespace
}  // namespace pgswitch::proxy
