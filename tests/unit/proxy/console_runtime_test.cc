// The pure parts behind the console's runtime side: merging workers' snapshot parts, SET on a
// config copy, and the PAUSE state.
#include <gtest/gtest.h>

#include "proxy/admin/console_actions.h"
#include "proxy/core/pause.h"
#include "proxy/core/snapshot_collect.h"

namespace pgswitch::proxy {
namespace {

UserConfig userNamed(std::string name) {
  UserConfig u;
  u.name = std::move(name);
  return u;
}

PoolInfo pool(std::string backend, int active, int idle, uint64_t wait) {
  PoolInfo p;
  p.backend = std::move(backend);
  p.database = "appdb";
  p.user = "app";
  p.mode = "transaction";
  p.clientsActive = active;
  p.serversActive = active;
  p.serversIdle = idle;
  p.serversTotal = active + idle;
  p.maxWaitMs = wait;
  p.poolSize = 20;
  return p;
}

TEST(MergeParts, SumsPoolsAndCountersAndOrdersRows) {
  std::vector<WorkerPart> parts(2);
  parts[0].pools = {pool("pg1", 2, 1, 5)};
  parts[1].pools = {pool("pg1", 1, 3, 9), pool("pg2", 1, 0, 0)};
  parts[0].counters.resize(1);
  parts[0].counters[0].queries = 10;
  parts[0].counters[0].latency.add(100);
  parts[1].counters.resize(2);
  parts[1].counters[0].queries = 5;
  parts[1].counters[1].bytesOut = 7;
  ClientInfo a, b;
  a.worker = 1;
  a.id = 3;
  b.worker = 0;
  b.id = 9;
  parts[1].clients = {a};
  parts[0].clients = {b};
  ServerInfo s1, s2;
  s1.id = 8;
  s2.id = 2;
  parts[0].servers = {s1};
  parts[1].servers = {s2};

  Snapshot s = mergeParts(Snapshot{}, parts);
  ASSERT_EQ(s.pools.size(), 2u);
  EXPECT_EQ(s.pools[0].backend, "pg1");
  EXPECT_EQ(s.pools[0].clientsActive, 3);
  EXPECT_EQ(s.pools[0].serversIdle, 4);
  EXPECT_EQ(s.pools[0].serversTotal, 7);
  EXPECT_EQ(s.pools[0].maxWaitMs, 9u);
  EXPECT_EQ(s.pools[0].poolSize, 20);  // configured total, not summed
  ASSERT_EQ(s.perBackend.size(), 2u);
  EXPECT_EQ(s.perBackend[0].queries, 15u);
  EXPECT_EQ(s.perBackend[0].latency.count, 1u);
  EXPECT_EQ(s.perBackend[1].bytesOut, 7u);
  ASSERT_EQ(s.clients.size(), 2u);
  EXPECT_EQ(s.clients[0].id, 9);  // worker 0 first
  ASSERT_EQ(s.servers.size(), 2u);
  EXPECT_EQ(s.servers[0].id, 2u);
}

TEST(MergeParts, EveryBackendHasACounterRow) {
  auto topo = std::make_shared<routing::Topology>();
  topo->backends.resize(3);
  Snapshot base;
  base.topology = topo;
  std::vector<WorkerPart> parts(1);
  Snapshot s = mergeParts(base, parts);
  EXPECT_EQ(s.perBackend.size(), 3u);
}

TEST(ApplySetting, ChangesOneValueWithTheLoadersChecks) {
  Config c;
  EXPECT_EQ(applySetting(c, "pool.pool_size", "30"), "");
  EXPECT_EQ(c.poolSize, 30);
  EXPECT_NE(applySetting(c, "pool.pool_size", "0"), "");
  EXPECT_NE(applySetting(c, "pool.pool_size", "many"), "");
  EXPECT_NE(applySetting(c, "pool.pool_size", "-1"), "");
  EXPECT_EQ(c.poolSize, 30);
  EXPECT_EQ(applySetting(c, "server.pool_mode", "Transaction"), "");
  EXPECT_EQ(c.poolMode, PoolMode::Transaction);
  EXPECT_NE(applySetting(c, "server.pool_mode", "statement"), "");
  EXPECT_NE(applySetting(c, "server.admin_users", "admin, ops"), "");  // no such [[user]]
  c.users.push_back(userNamed("ops"));
  EXPECT_EQ(applySetting(c, "server.admin_users", "admin, ops"), "");
  EXPECT_EQ(c.adminUsers, (std::vector<std::string>{"admin", "ops"}));
  EXPECT_TRUE(trySetting(c, "server.admin_users", "").badValue);
  EXPECT_EQ(c.adminUsers, (std::vector<std::string>{"admin", "ops"}));
  EXPECT_FALSE(trySetting(c, "server.listen", "0.0.0.0:1").badValue);  // refused, not bad
  EXPECT_EQ(applySetting(c, "failover.auto_failover", "on"), "");
  EXPECT_TRUE(c.failover.autoFailover);
  EXPECT_NE(applySetting(c, "failover.retry_safe_as", "4000"), "");
  EXPECT_EQ(applySetting(c, "pool.server_reset_query", "DISCARD ALL"), "");
  EXPECT_EQ(c.serverResetQuery, "DISCARD ALL");
  EXPECT_NE(applySetting(c, "server.max_message_bytes", "100"), "");
  EXPECT_NE(applySetting(c, "health.period_ms", "5"), "");
  EXPECT_NE(applySetting(c, "server.log_level", "loud"), "");
  c.poolSize = 5;
  EXPECT_NE(applySetting(c, "pool.min_pool_size", "6"), "");
  EXPECT_NE(applySetting(c, "server.listen", "0.0.0.0:1"), "");  // not settable
}

TEST(PauseState, PauseAndResume) {
  PauseState p;
  EXPECT_FALSE(p.any());
  EXPECT_FALSE(p.paused("appdb"));
  p.pause("appdb");
  p.pause("appdb");  // twice is fine
  EXPECT_TRUE(p.paused("appdb"));
  EXPECT_FALSE(p.paused("other"));
  EXPECT_NE(p.resume("other"), "");
  EXPECT_EQ(p.resume("appdb"), "");
  EXPECT_FALSE(p.any());
  EXPECT_NE(p.resume(""), "");  // nothing paused
  p.pause("");
  EXPECT_TRUE(p.paused("anything"));
  EXPECT_NE(p.resume("appdb"), "");  // all paused: only RESUME resumes
  EXPECT_EQ(p.resume(""), "");
  EXPECT_FALSE(p.paused("anything"));
}

}  // namespace
}  // namespace pgswitch::proxy
