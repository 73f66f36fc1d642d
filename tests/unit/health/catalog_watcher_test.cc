// CatalogWatcher: the rows of the catalog query as a set, and the thread's behaviour without
// a reachable primary (nothing published, stop() bounded). Reads against a real PostgreSQL
// are covered by tests/integration/test_volatile_functions.py.
#include "health/catalog_watcher.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

namespace pgswitch::health {
namespace {

TEST(CatalogWatcher, RowsBecomeTheSet) {
  routing::VolatileFunctions v = volatileFunctionsFromRows({{std::string("my_write_fn")},
                                                            {std::nullopt},
                                                            {std::string("")},
                                                            {std::string("audit")},
                                                            {}});
  EXPECT_EQ(v.names, (std::unordered_set<std::string>{"my_write_fn", "audit"}));
}

TEST(CatalogWatcher, QueryLeavesOutBuiltinsAndProcedures) {
  const std::string q = kVolatileFunctionsQuery;
  EXPECT_NE(q.find("provolatile = 'v'"), std::string::npos);
  EXPECT_NE(q.find("prokind <> 'p'"), std::string::npos);
  EXPECT_NE(q.find("'pg_catalog', 'information_schema'"), std::string::npos);
}

routing::TopologyPtr topologyWithPrimaryAt(int port) {
  auto t = std::make_shared<routing::Topology>();
  routing::BackendInfo b;
  b.name = "pg1";
  b.host = "127.0.0.1";
  b.port = port;
  b.role = routing::Role::Primary;
  t->backends.push_back(b);
  t->primary = port > 0 ? 0 : -1;
  return t;
}

TEST(CatalogWatcher, NoPrimaryMeansNothingPublished) {
  int published = 0;
  CatalogWatcherSettings s;
  s.connectTimeoutMs = 200;
  CatalogWatcher w(
      s, [] { return topologyWithPrimaryAt(0); },
      [&published](routing::FunctionCatalogPtr) { ++published; });
  w.start();
  w.watch("appdb");
  w.markStale("appdb");
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  auto t0 = std::chrono::steady_clock::now();
  w.stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1));
  EXPECT_EQ(published, 0);
  EXPECT_EQ(w.reads(), 0u);
  EXPECT_EQ(w.snapshot()->find("appdb"), nullptr);
}

TEST(CatalogWatcher, UnreachablePrimaryIsRetriedQuietly) {
  CatalogWatcherSettings s;
  s.connectTimeoutMs = 200;
  s.refreshMs = 50;
  CatalogWatcher w(
      s, [] { return topologyWithPrimaryAt(1); }, [](routing::FunctionCatalogPtr) {});
  w.start();
  w.watch("appdb");
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  w.stop();
  EXPECT_EQ(w.reads(), 0u);
  EXPECT_EQ(w.snapshot()->find("appdb"), nullptr);
}

}  // namespace
}  // namespace pgswitch::health
