// Unit tests for routing/route_policy: statement targets, and backend choice over topology
// tables (lag limits, tags, read-your-writes, fallback, holds, weights).
#include "routing/route_policy.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace pgswitch::routing {
namespace {

Target target(std::string_view sql, bool readOnlySession = false) {
  return targetFor(classifyUncached(sql, {}), readOnlySession);
}

TEST(RoutePolicy, StatementTargets) {
  EXPECT_EQ(target("SELECT * FROM t"), Target::Replica);
  EXPECT_EQ(target("select 1; select 2"), Target::Replica);
  EXPECT_EQ(target("INSERT INTO t VALUES (1)"), Target::Primary);
  EXPECT_EQ(target("SELECT * FROM t FOR UPDATE"), Target::Primary);
  EXPECT_EQ(target("SELECT nextval('s')"), Target::Primary);
  EXPECT_EQ(target("BEGIN"), Target::Primary);
  EXPECT_EQ(target("BEGIN"), Target::Primary);
  EXPECT_EQ(target("BEGIN", true), Target::Replica);
  EXPECT_EQ(target("BEGIN READ ONLY"), Target::Replica);
  EXPECT_EQ(target("START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"),
            Target::Replica);
  EXPECT_EQ(target("BEGIN; SELECT 1"), Target::Primary);
  EXPECT_EQ(target("SET search_path = x"), Target::Primary);
  EXPECT_EQ(target("DECLARE c CURSOR WITH HOLD FOR SELECT 1"), Target::Primary);
  EXPECT_EQ(target("LISTEN ch"), Target::Primary);
  EXPECT_EQ(target("CREATE TEMP TABLE x (a int)"), Target::Primary);
  EXPECT_EQ(target("SELECT pg_advisory_lock(1)"), Target::Primary);
  EXPECT_EQ(target("/* pgswitch: primary */ SELECT 1"), Target::Primary);
  EXPECT_EQ(target("/* pgswitch: replica */ INSERT INTO t VALUES (1)"), Target::Primary);
  EXPECT_EQ(target("/* pgswitch: replica */ BEGIN"), Target::Replica);
  EXPECT_EQ(target("COMMIT"), Target::Primary);
  EXPECT_EQ(target("not sql at all"), Target::Primary);
}

// session_reads: transactions and session state stay on the session's own primary server.
TEST(RoutePolicy, SessionReadsTargets) {
  auto t = [](std::string_view sql, bool readOnlySession = false) {
    return sessionReadsTargetFor(classifyUncached(sql, {}), readOnlySession);
  };
  EXPECT_EQ(t("SELECT * FROM t"), Target::Replica);
  EXPECT_EQ(t("select 1; select 2"), Target::Replica);
  EXPECT_EQ(t("SHOW search_path"), Target::Replica);
  EXPECT_EQ(t("INSERT INTO t VALUES (1)"), Target::Primary);
  EXPECT_EQ(t("BEGIN READ ONLY"), Target::Primary);
  EXPECT_EQ(t("BEGIN", true), Target::Primary);
  EXPECT_EQ(t("/* pgswitch: replica */ BEGIN"), Target::Primary);
  EXPECT_EQ(t("BEGIN READ ONLY; SELECT 1"), Target::Primary);
  EXPECT_EQ(t("SELECT set_config('search_path', 'x', false)"), Target::Primary);
  EXPECT_EQ(t("/* pgswitch: replica */ SELECT set_config('a.b', 'x', true)"), Target::Primary);
  EXPECT_EQ(t("SET search_path = x"), Target::Primary);
  EXPECT_EQ(t("DECLARE c CURSOR WITH HOLD FOR SELECT 1"), Target::Primary);
  EXPECT_EQ(t("PREPARE p AS SELECT 1"), Target::Primary);
  EXPECT_EQ(t("CREATE TEMP TABLE x (a int)"), Target::Primary);
  EXPECT_EQ(t("DISCARD ALL"), Target::Primary);
}

BackendInfo backend(Role role, int weight = 1, std::vector<std::string> tags = {}) {
  BackendInfo b;
  b.role = role;
  b.weight = weight;
  b.tags = std::move(tags);
  return b;
}

Topology cluster() {
  Topology t;
  t.backends = {backend(Role::Primary), backend(Role::Replica), backend(Role::Replica)};
  t.primary = 0;
  return t;
}

RouteRequest read(std::string_view tag = {}, uint64_t lsn = 0) {
  RouteRequest r;
  r.target = Target::Replica;
  r.tag = tag;
  r.minReplayLsn = lsn;
  return r;
}

TEST(RoutePolicy, WritesGoToThePrimaryOrHold) {
  Topology t = cluster();
  RouteRequest w;
  auto p = pickBackend(t, {}, w, {}, 1);
  EXPECT_EQ(p.outcome, RoutePick::Outcome::Backend);
  EXPECT_EQ(p.index, 0);
  t.writesPaused = true;
  EXPECT_EQ(pickBackend(t, {}, w, {}, 1).outcome, RoutePick::Outcome::Hold);
  t.writesPaused = false;
  t.writesRefused = true;
  EXPECT_EQ(pickBackend(t, {}, w, {}, 1).outcome, RoutePick::Outcome::Hold);
  t.writesRefused = false;
  t.primary = -1;
  EXPECT_EQ(pickBackend(t, {}, w, {}, 1).outcome, RoutePick::Outcome::Hold);
  // Reads keep flowing to replicas while there is no primary.
  EXPECT_EQ(pickBackend(t, {}, read(), {}, 1).outcome, RoutePick::Outcome::Backend);
}

TEST(RoutePolicy, ReadsSkipUnusableAndLaggingReplicas) {
  Topology t = cluster();
  t.backends[1].state = BackendState::Down;
  t.backends[2].lagBytes = 1000;
  RoutePolicy p;
  p.maxLagBytes = 100;
  auto r = pickBackend(t, p, read(), {}, 7);
  EXPECT_EQ(r.index, 0);
  EXPECT_TRUE(r.fellBack);
  p.fallback = Fallback::Error;
  EXPECT_EQ(pickBackend(t, p, read(), {}, 7).outcome, RoutePick::Outcome::Refuse);
  p.maxLagBytes = 0;
  EXPECT_EQ(pickBackend(t, p, read(), {}, 7).index, 2);
  t.backends[2].lagMs = 5000;
  p.maxLagMs = 1000;
  EXPECT_EQ(pickBackend(t, p, read(), {}, 7).outcome, RoutePick::Outcome::Refuse);
  for (auto st : {BackendState::Fenced, BackendState::Draining, BackendState::Disabled}) {
    Topology u = cluster();
    u.backends[1].state = st;
    u.backends[2].state = st;
    EXPECT_EQ(pickBackend(u, {}, read(), {}, 3).index, 0);
  }
}

// Strong consistency: a replica not known to have replayed the floor is picked only to be
// waited for (verify), and only when no replica is known to have it and its lag is within the
// wait.
TEST(RoutePolicy, FloorVerifiedOnReplicasCloseBehind) {
  Topology t = cluster();
  t.backends[1].replayLsn = 100;
  t.backends[2].replayLsn = 50;
  RoutePolicy p;
  p.verifyMaxLagMs = 10;
  RouteRequest r = read({}, 120);
  auto pick = pickBackend(t, p, r, {}, 3);  // nobody known: ask one
  EXPECT_TRUE(pick.verify);
  EXPECT_TRUE(pick.index == 1 || pick.index == 2);
  std::vector<uint64_t> learned = {0, 0, 130};  // replica 2 told a session it has 130
  r.learnedReplayLsn = learned;
  for (uint64_t i = 0; i < 400; ++i) {
    auto q = pickBackend(t, p, r, {}, i);
    EXPECT_EQ(q.index, 2);  // the replica known to be there; none waits for the other
    EXPECT_FALSE(q.verify);
  }
  r.learnedReplayLsn = {};
  t.backends[1].lagMs = 500;  // far behind at the last check: not worth asking
  t.backends[2].lagMs = 500;
  pick = pickBackend(t, p, r, {}, 3);
  EXPECT_EQ(pick.index, 0);
  EXPECT_TRUE(pick.fellBack);
  EXPECT_FALSE(pick.verify);
  t.backends[1].lagMs = t.backends[2].lagMs = 0;
  p.verifyMaxLagMs = -1;  // eventual: never asked
  EXPECT_EQ(pickBackend(t, p, r, {}, 3).index, 0);
  p.verifyMaxLagMs = 10;
  r.minReplayLsn = UINT64_MAX;  // floor unknown: the primary, without asking
  pick = pickBackend(t, p, r, {}, 3);
  EXPECT_EQ(pick.index, 0);
  EXPECT_FALSE(pick.verify);
}

TEST(RoutePolicy, TagsAndReadYourWrites) {
  Topology t = cluster();
  t.backends[2].tags = {"reporting"};
  for (uint64_t i = 0; i < 50; ++i) EXPECT_EQ(pickBackend(t, {}, read("reporting"), {}, i).index, 2);
  t.backends[1].replayLsn = 100;
  t.backends[2].replayLsn = 50;
  for (uint64_t i = 0; i < 50; ++i) EXPECT_EQ(pickBackend(t, {}, read({}, 80), {}, i).index, 1);
  auto r = pickBackend(t, {}, read({}, 200), {}, 1);
  EXPECT_EQ(r.index, 0);
  EXPECT_TRUE(r.fellBack);
  // A tag only the primary carries: its reads go there even with fallback = error.
  Topology u = cluster();
  u.backends[0].tags = {"big"};
  RoutePolicy p;
  p.fallback = Fallback::Error;
  EXPECT_EQ(pickBackend(u, p, read("big"), {}, 1).index, 0);
}

TEST(RoutePolicy, WeightsSplitReadsWhenLoadIsEven) {
  Topology t = cluster();
  t.backends[1].weight = 3;
  t.backends[2].weight = 1;
  std::mt19937_64 rng(42);
  int hits[3] = {0, 0, 0};
  const int n = 40000;
  for (int i = 0; i < n; ++i) hits[pickBackend(t, {}, read(), {}, rng()).index]++;
  EXPECT_EQ(hits[0], 0);
  EXPECT_NEAR(hits[1] / double(n), 0.75, 0.02);
}

TEST(RoutePolicy, LoadSteersAwayFromABusyReplica) {
  Topology t = cluster();
  std::vector<int> outstanding = {0, 10, 0};
  std::mt19937_64 rng(1);
  int hits[3] = {0, 0, 0};
  for (int i = 0; i < 1000; ++i) hits[pickBackend(t, {}, read(), outstanding, rng()).index]++;
  EXPECT_GT(hits[2], 700);
}

}  // namespace
}  // namespace pgswitch::routing
