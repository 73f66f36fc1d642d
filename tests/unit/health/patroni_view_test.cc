// Patroni's /cluster parsed and matched to backends, /switchover bodies, and the topology
// builder's Patroni gate (only the leader may be the primary; noloadbalance = no reads), on
// JSON samples taken from Patroni 3.0.2.
#include "health/patroni_view.h"

#include <gtest/gtest.h>

#include "health/topology_builder.h"

namespace pgswitch::health {
namespace {

using routing::BackendState;
using routing::Role;

// Patroni 3.0.2's GET /cluster, three members, with tags added to node2.
constexpr const char* kCluster = R"({
 "members": [
  {"name": "node0", "role": "leader", "state": "running",
   "api_url": "http://127.0.0.1:45903/patroni", "host": "127.0.0.1", "port": 44089,
   "timeline": 1},
  {"name": "node1", "role": "replica", "state": "streaming",
   "api_url": "http://127.0.0.1:43683/patroni", "host": "127.0.0.1", "port": 56377,
   "timeline": 1, "lag": 0},
  {"name": "node2", "role": "sync_standby", "state": "running",
   "api_url": "http://127.0.0.1:35363/patroni", "host": "127.0.0.1", "port": 50225,
   "timeline": 1, "lag": "unknown", "tags": {"nofailover": true, "noloadbalance": "true"}}
 ],
 "scope": "pgswitch"
})";

// Named and addressed, the rest left at its defaults.
BackendSpec backend(std::string name, std::string host, int port) {
  BackendSpec b;
  b.name = std::move(name);
  b.host = std::move(host);
  b.port = port;
  return b;
}

PatroniMember member(std::string name, std::string host, int port) {
  PatroniMember m;
  m.name = std::move(name);
  m.host = std::move(host);
  m.port = port;
  return m;
}

std::vector<BackendSpec> backends() {
  return {backend("pg1", "127.0.0.1", 44089), backend("pg2", "127.0.0.1", 56377),
          backend("pg3", "127.0.0.1", 50225)};
}

TEST(PatroniView, ParsesMembersRolesTagsAndLag) {
  std::string err;
  auto ms = parsePatroniCluster(kCluster, &err);
  ASSERT_TRUE(ms) << err;
  ASSERT_EQ(ms->size(), 3u);
  EXPECT_EQ((*ms)[0].name, "node0");
  EXPECT_EQ((*ms)[0].role, PatroniRole::Leader);
  EXPECT_EQ((*ms)[0].port, 44089);
  EXPECT_EQ((*ms)[0].timeline, 1u);
  EXPECT_FALSE((*ms)[0].lagBytes);
  EXPECT_EQ((*ms)[0].apiUrl, "http://127.0.0.1:45903/patroni");
  EXPECT_EQ((*ms)[1].role, PatroniRole::Replica);
  EXPECT_EQ((*ms)[1].state, "streaming");
  ASSERT_TRUE((*ms)[1].lagBytes);
  EXPECT_EQ(*(*ms)[1].lagBytes, 0u);
  EXPECT_FALSE((*ms)[1].noLoadBalance);
  EXPECT_EQ((*ms)[2].role, PatroniRole::Replica);  // sync_standby
  EXPECT_FALSE((*ms)[2].lagBytes);                 // "unknown"
  EXPECT_TRUE((*ms)[2].noFailover);
  EXPECT_TRUE((*ms)[2].noLoadBalance);
}

TEST(PatroniView, OlderRoleNamesAndStandbyLeader) {
  auto ms = parsePatroniCluster(
      R"({"members":[{"name":"a","role":"master","host":"h","port":1},
                     {"name":"b","role":"standby_leader","host":"h","port":2},
                     {"name":"c","role":"uninitialized","host":"h","port":3}]})",
      nullptr);
  ASSERT_TRUE(ms);
  EXPECT_EQ((*ms)[0].role, PatroniRole::Leader);
  EXPECT_EQ((*ms)[1].role, PatroniRole::StandbyLeader);
  EXPECT_EQ((*ms)[2].role, PatroniRole::Other);
}

TEST(PatroniView, RejectsMalformedBodiesWithoutThrowing) {
  const char* bad[] = {"",
                       "{",
                       "[]",
                       "null",
                       R"({"members": 3})",
                       R"({"x": []})",
                       "{\"members\": [1, \"x\", null]}"};
  for (const char* b : bad) {
    std::string err;
    auto ms = parsePatroniCluster(b, &err);
    if (ms) {
      EXPECT_TRUE(ms->empty()) << b;  // the last one: members that are not objects are skipped
    } else {
      EXPECT_FALSE(err.empty()) << b;
    }
  }
  // Wrong types in fields: the member is skipped or the field ignored, never an exception.
  auto ms = parsePatroniCluster(
      R"({"members":[{"name":1,"host":"h","port":1},{"name":"a","host":"h","port":"5432"},
                     {"name":"b","host":"h","port":99999},
                     {"name":"c","host":"h","port":5,"timeline":"x","lag":-1,"tags":[1],
                      "role":7}]})",
      nullptr);
  ASSERT_TRUE(ms);
  ASSERT_EQ(ms->size(), 1u);
  EXPECT_EQ((*ms)[0].name, "c");
  EXPECT_EQ((*ms)[0].timeline, 0u);
  EXPECT_FALSE((*ms)[0].lagBytes);
  EXPECT_EQ((*ms)[0].role, PatroniRole::Other);
}

TEST(PatroniView, MatchesBackendsByHostAndPort) {
  auto specs = backends();
  specs.push_back(backend("other", "LOCALHOST", 1));
  auto ms = parsePatroniCluster(kCluster, nullptr);
  ASSERT_TRUE(ms);
  ms->push_back(member("node9", "10.0.0.9", 5432));
  ms->push_back(member("node8", "localhost", 1));
  PatroniView v = matchPatroniMembers(*ms, specs);
  ASSERT_EQ(v.memberOf.size(), 4u);
  EXPECT_EQ(v.memberOf[0], 0);
  EXPECT_EQ(v.memberOf[1], 1);
  EXPECT_EQ(v.memberOf[2], 2);
  EXPECT_EQ(v.memberOf[3], 4);  // host compared without case
  EXPECT_EQ(v.leader, 0);
  EXPECT_EQ(v.leaderName, "node0");
  ASSERT_EQ(v.unmatched.size(), 1u);
  EXPECT_EQ(v.unmatched[0], "node9");
}

TEST(PatroniView, LeaderOutsideTheConfigIsNamedButNotMatched) {
  auto ms = parsePatroniCluster(kCluster, nullptr);
  auto specs = backends();
  specs[0].port = 1;  // node0 is at no backend's address
  PatroniView v = matchPatroniMembers(*ms, specs);
  EXPECT_EQ(v.leader, -1);
  EXPECT_EQ(v.leaderName, "node0");
}

TEST(PatroniView, SwitchoverBody) {
  EXPECT_EQ(patroniSwitchoverBody("node0", "node1"), R"({"candidate":"node1","leader":"node0"})");
  EXPECT_EQ(patroniSwitchoverBody("a\"b", ""), R"({"leader":"a\"b"})");
}

// ---- the builder under Patroni ---------------------------------------------------------------

ProbeResult sample(bool inRecovery, uint32_t tl, uint64_t lsn) {
  ProbeResult r;
  r.ok = true;
  r.inRecovery = inRecovery;
  r.timeline = tl;
  r.currentLsn = inRecovery ? 0 : lsn;
  r.receiveLsn = r.replayLsn = inRecovery ? lsn : 0;
  return r;
}

PatroniView viewWithLeader(int leaderIndex, bool noLoadBalanceOn2 = false) {
  std::vector<PatroniMember> ms;
  const int ports[] = {44089, 56377, 50225};
  for (int i = 0; i < 3; ++i) {
    PatroniMember m;
    m.name = "node" + std::to_string(i);
    m.host = "127.0.0.1";
    m.port = ports[i];
    m.role = i == leaderIndex ? PatroniRole::Leader : PatroniRole::Replica;
    m.state = "running";
    m.noLoadBalance = noLoadBalanceOn2 && i == 2;
    ms.push_back(m);
  }
  return matchPatroniMembers(ms, backends());
}

TEST(PatroniGate, BeforeTheFirstAnswerOwnProbesDecide) {
  TopologyBuilder b(backends(), {});
  b.setPatroniManaged();
  b.record(0, sample(false, 1, 100));
  b.record(1, sample(true, 1, 100));
  b.record(2, sample(true, 1, 100));
  EXPECT_EQ(b.build(0).topology->primary, 0);
}

TEST(PatroniGate, OnlyPatronisLeaderIsThePrimary) {
  TopologyBuilder b(backends(), {});
  b.setPatroniManaged();
  EXPECT_TRUE(b.setPatroniView(viewWithLeader(0)));
  b.record(0, sample(false, 1, 100));
  b.record(1, sample(true, 1, 100));
  b.record(2, sample(true, 1, 100));
  auto t = b.build(0).topology;
  EXPECT_EQ(t->primary, 0);
  // pg2 leaves recovery (promoted behind Patroni's back, or Patroni is promoting it and
  // /cluster still names node0): it gets no writes, no split brain, no fence.
  b.record(1, sample(false, 2, 200));
  auto out = b.build(0);
  EXPECT_EQ(out.topology->primary, 0);
  EXPECT_FALSE(out.topology->writesRefused);
  EXPECT_EQ(out.topology->backends[1].state, BackendState::Up);
  EXPECT_EQ(out.topology->backends[1].role, Role::Primary);  // so no reads either
  for (const auto& e : out.events) {
    EXPECT_NE(e.type, EventType::SplitBrain);
    EXPECT_NE(e.type, EventType::Fenced);
  }
  // Patroni now names node1 leader: the old primary, still out of recovery on timeline 1 in
  // its last sample (it is being demoted), is not a claimant and is not fenced either.
  EXPECT_TRUE(b.setPatroniView(viewWithLeader(1)));
  out = b.build(0);
  EXPECT_EQ(out.topology->primary, 1);
  EXPECT_EQ(out.topology->backends[0].state, BackendState::Up);
  EXPECT_FALSE(b.track(0).fenced);
  // It rejoins as a replica (pg_rewind): reads again.
  b.record(0, sample(true, 2, 200));
  out = b.build(0);
  EXPECT_EQ(out.topology->backends[0].role, Role::Replica);
  EXPECT_EQ(out.topology->backends[0].state, BackendState::Up);
}

TEST(PatroniGate, LeaderStillInRecoveryMeansNoPrimaryYet) {
  TopologyBuilder b(backends(), {});
  b.setPatroniManaged();
  b.setPatroniView(viewWithLeader(2));
  b.record(0, sample(false, 1, 100));  // the old primary, not yet demoted
  b.record(1, sample(true, 1, 100));
  b.record(2, sample(true, 1, 100));  // Patroni's new leader, promotion pending
  EXPECT_EQ(b.build(0).topology->primary, -1);
  b.record(2, sample(false, 2, 150));
  EXPECT_EQ(b.build(0).topology->primary, 2);
}

TEST(PatroniGate, NoLeaderInTheViewMeansNoPrimary) {
  TopologyBuilder b(backends(), {});
  b.setPatroniManaged();
  b.setPatroniView(viewWithLeader(-1));
  b.record(0, sample(false, 1, 100));
  EXPECT_EQ(b.build(0).topology->primary, -1);
}

TEST(PatroniGate, NoLoadBalanceMembersGetWeightZero) {
  TopologyBuilder b(backends(), {});
  b.setPatroniManaged();
  b.setPatroniView(viewWithLeader(0, true));
  for (int i = 0; i < 3; ++i) b.record(i, sample(i != 0, 1, 100));
  auto t = b.build(0).topology;
  EXPECT_EQ(t->backends[1].weight, 1);
  EXPECT_EQ(t->backends[2].weight, 0);
  EXPECT_TRUE(b.track(2).noLoadBalance);
  // The tag removed again: reads come back; the view change is worth a snapshot.
  EXPECT_TRUE(b.setPatroniView(viewWithLeader(0, false)));
  EXPECT_EQ(b.build(0).topology->backends[2].weight, 1);
  EXPECT_FALSE(b.setPatroniView(viewWithLeader(0, false)));
}

TEST(PatroniGate, WithoutPatroniTheViewIsIgnored) {
  TopologyBuilder b(backends(), {});
  b.setPatroniView(viewWithLeader(1));  // not managed: no gate
  b.record(0, sample(false, 1, 100));
  b.record(1, sample(true, 1, 100));
  EXPECT_EQ(b.build(0).topology->primary, 0);
}

}  // namespace
}  // namespace pgswitch::health
