// TopologyBuilder: hysteresis, roles, promotion, split brain, fencing and lag, on plain
// probe results (no sockets).
#include "health/topology_builder.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace pgswitch::health {
namespace {

using routing::BackendState;
using routing::Role;

constexpr int64_t kNow = 1'700'000'000'000;

ProbeResult primary(uint32_t tl, uint64_t lsn) {
  ProbeResult r;
  r.ok = true;
  r.inRecovery = false;
  r.timeline = tl;
  r.currentLsn = lsn;
  r.nowUs = kNow * 1000;
  return r;
}

ProbeResult replica(uint32_t tl, uint64_t replay, int64_t replayAgoMs = 0) {
  ProbeResult r;
  r.ok = true;
  r.inRecovery = true;
  r.timeline = tl;
  r.receiveLsn = replay;
  r.replayLsn = replay;
  r.nowUs = kNow * 1000;
  r.hasReplayTimestamp = true;
  r.lastReplayUs = (kNow - replayAgoMs) * 1000;
  return r;
}

ProbeResult failed() { return probeFailure("connection refused"); }

std::vector<BackendSpec> specs(int n) {
  std::vector<BackendSpec> v;
  for (int i = 0; i < n; ++i) {
    v.push_back(BackendSpec{"pg" + std::to_string(i + 1), "127.0.0.1", 5432 + i, 1 + i, {"t"}});
  }
  return v;
}

int count(const std::vector<Event>& evs, EventType t) {
  return static_cast<int>(
      std::count_if(evs.begin(), evs.end(), [t](const Event& e) { return e.type == t; }));
}

const Event* find(const std::vector<Event>& evs, EventType t) {
  for (auto& e : evs) {
    if (e.type == t) return &e;
  }
  return nullptr;
}

class BuilderTest : public ::testing::Test {
 protected:
  TopologyBuilder b{specs(4), BuilderThresholds{3, 2, 0, 0}};

  TopologyBuilder::Output round(std::vector<ProbeResult> rs) {
    for (size_t i = 0; i < rs.size(); ++i) b.record(int(i), rs[i]);
    return b.build(kNow);
  }
  TopologyBuilder::Output healthyRound(uint32_t tl = 1) {
    return round({primary(tl, 1000), replica(tl, 1000), replica(tl, 1000), replica(tl, 1000)});
  }
};

TEST_F(BuilderTest, InitialIsStaticFirstPrimary) {
  auto t = b.initial();
  EXPECT_EQ(t->version, 1u);
  EXPECT_EQ(t->primary, 0);
  ASSERT_EQ(t->backends.size(), 4u);
  EXPECT_EQ(t->backends[0].role, Role::Primary);
  EXPECT_EQ(t->backends[3].role, Role::Replica);
  EXPECT_EQ(t->backends[3].port, 5435);
  EXPECT_EQ(t->backends[3].weight, 4);
  for (auto& x : t->backends) EXPECT_EQ(x.state, BackendState::Up);
}

TEST_F(BuilderTest, FirstRoundFillsTheTopology) {
  auto out = healthyRound();
  auto& t = *out.topology;
  EXPECT_EQ(t.version, 2u);
  EXPECT_EQ(t.primary, 0);
  EXPECT_FALSE(t.writesRefused);
  EXPECT_EQ(t.backends[0].role, Role::Primary);
  EXPECT_EQ(t.backends[1].role, Role::Replica);
  EXPECT_EQ(t.backends[1].timeline, 1u);
  EXPECT_EQ(t.backends[0].replayLsn, 1000u);  // a primary reports its current LSN
  EXPECT_EQ(t.backends[2].tags, std::vector<std::string>{"t"});
  for (auto& x : t.backends) EXPECT_EQ(x.state, BackendState::Up);
  EXPECT_TRUE(out.events.empty());  // no backend_up for the first sight of a healthy one
}

TEST_F(BuilderTest, ConfiguredOrderDoesNotDecideThePrimary) {
  auto out = round({replica(1, 10), primary(1, 10), replica(1, 10), replica(1, 10)});
  EXPECT_EQ(out.topology->primary, 1);
  EXPECT_EQ(count(out.events, EventType::RoleChanged), 0);  // first sight: no change event
}

TEST_F(BuilderTest, FirstFailureIsDownAtOnce) {
  auto out = round({primary(1, 10), failed(), replica(1, 10), replica(1, 10)});
  EXPECT_EQ(out.topology->backends[1].state, BackendState::Down);
  EXPECT_EQ(out.topology->backends[1].role, Role::Unknown);
  ASSERT_EQ(count(out.events, EventType::BackendDown), 1);
  EXPECT_EQ(find(out.events, EventType::BackendDown)->name, "pg2");
  EXPECT_EQ(find(out.events, EventType::BackendDown)->timeMs, kNow);
}

TEST_F(BuilderTest, FallAndRiseHysteresis) {
  healthyRound();
  for (int k = 1; k <= 2; ++k) {
    auto out = round({primary(1, 10), replica(1, 10), failed(), replica(1, 10)});
    EXPECT_EQ(out.topology->backends[2].state, BackendState::Up) << "failure " << k;
    EXPECT_TRUE(out.events.empty());
  }
  auto out = round({primary(1, 10), replica(1, 10), failed(), replica(1, 10)});
  EXPECT_EQ(out.topology->backends[2].state, BackendState::Down);
  EXPECT_EQ(out.topology->backends[2].role, Role::Replica);  // last known role is kept
  ASSERT_EQ(count(out.events, EventType::BackendDown), 1);
  EXPECT_NE(find(out.events, EventType::BackendDown)->detail.find("3 consecutive"),
            std::string::npos);
  EXPECT_EQ(find(out.events, EventType::BackendDown)->role, "replica");

  out = round({primary(1, 10), replica(1, 10), replica(1, 10), replica(1, 10)});
  EXPECT_EQ(out.topology->backends[2].state, BackendState::Down);  // 1 of rise=2
  out = round({primary(1, 10), replica(1, 10), failed(), replica(1, 10)});
  out = round({primary(1, 10), replica(1, 10), replica(1, 10), replica(1, 10)});
  EXPECT_EQ(out.topology->backends[2].state, BackendState::Down);  // streak restarted
  out = round({primary(1, 10), replica(1, 10), replica(1, 10), replica(1, 10)});
  EXPECT_EQ(out.topology->backends[2].state, BackendState::Up);
  EXPECT_EQ(count(out.events, EventType::BackendUp), 1);
}

TEST_F(BuilderTest, RecordReportsSignificantChanges) {
  EXPECT_TRUE(b.record(1, replica(1, 10)));   // unknown -> up
  EXPECT_FALSE(b.record(1, replica(1, 20)));  // only LSNs moved
  EXPECT_TRUE(b.record(1, primary(2, 30)));   // promoted
  EXPECT_FALSE(b.record(1, failed()));        // 1 of fall=3
  EXPECT_FALSE(b.record(1, failed()));
  EXPECT_TRUE(b.record(1, failed()));  // down
}

TEST_F(BuilderTest, DownPrimaryLeavesNoPrimary) {
  healthyRound();
  for (int k = 0; k < 3; ++k) round({failed(), replica(1, 10), replica(1, 10), replica(1, 10)});
  auto t = b.build(kNow).topology;
  EXPECT_EQ(t->primary, -1);
  EXPECT_FALSE(t->writesRefused);
  EXPECT_EQ(t->backends[0].role, Role::Primary);
  EXPECT_EQ(t->backends[0].state, BackendState::Down);
}

TEST_F(BuilderTest, PromotionOnHigherTimelineIsAdoptedInOneRound) {
  healthyRound();
  for (int k = 0; k < 3; ++k)
    round({failed(), replica(1, 1000), replica(1, 1000), replica(1, 1000)});
  auto out = round({failed(), primary(2, 2000), replica(1, 1000), replica(2, 1500)});
  EXPECT_EQ(out.topology->primary, 1);
  EXPECT_EQ(out.topology->backends[1].role, Role::Primary);
  EXPECT_EQ(out.topology->backends[1].timeline, 2u);
  ASSERT_EQ(count(out.events, EventType::RoleChanged), 1);
  auto* e = find(out.events, EventType::RoleChanged);
  EXPECT_EQ(e->name, "pg2");
  EXPECT_EQ(e->role, "primary");
  EXPECT_NE(e->detail.find("replica -> primary"), std::string::npos);
  // Lag is now measured against the new primary, cascading replica included.
  EXPECT_EQ(out.topology->backends[2].lagBytes, 1000u);
  EXPECT_EQ(out.topology->backends[3].lagBytes, 500u);
}

TEST_F(BuilderTest, SplitBrainHigherTimelineWinsLoserStaysFenced) {
  healthyRound();
  auto out = round({primary(1, 1000), primary(2, 2000), replica(1, 1000), replica(2, 2000)});
  EXPECT_EQ(out.topology->primary, 1);
  EXPECT_FALSE(out.topology->writesRefused);
  EXPECT_EQ(out.topology->backends[0].state, BackendState::Fenced);
  EXPECT_EQ(count(out.events, EventType::SplitBrain), 1);
  EXPECT_EQ(find(out.events, EventType::SplitBrain)->name, "pg2");
  ASSERT_EQ(count(out.events, EventType::Fenced), 1);
  EXPECT_EQ(find(out.events, EventType::Fenced)->name, "pg1");
  EXPECT_TRUE(b.track(0).fenced);

  // Rebuilt as a healthy replica: still fenced, never routed to, no new events.
  for (int k = 0; k < 3; ++k) {
    out = round({replica(2, 2000), primary(2, 2000), replica(1, 1000), replica(2, 2000)});
    EXPECT_EQ(out.topology->backends[0].state, BackendState::Fenced);
    EXPECT_FALSE(out.topology->usable(0));
    EXPECT_EQ(count(out.events, EventType::SplitBrain), 0);
    EXPECT_EQ(count(out.events, EventType::Fenced), 0);
  }
  b.attach(0);
  out = b.build(kNow);
  EXPECT_EQ(out.topology->backends[0].state, BackendState::Up);
  EXPECT_EQ(out.topology->backends[0].role, Role::Replica);
  EXPECT_EQ(out.topology->primary, 1);
}

TEST_F(BuilderTest, AttachingAStaleClaimantFencesItAgain) {
  healthyRound();
  round({primary(1, 1000), primary(2, 2000), replica(1, 1000), replica(2, 2000)});
  b.attach(0);
  auto out = round({primary(1, 1000), primary(2, 2000), replica(1, 1000), replica(2, 2000)});
  EXPECT_EQ(out.topology->backends[0].state, BackendState::Fenced);
  EXPECT_EQ(count(out.events, EventType::Fenced), 1);
}

TEST_F(BuilderTest, EqualTimelinesRefuseWrites) {
  healthyRound(2);
  auto out = round({primary(2, 1000), replica(2, 900), primary(2, 1200), replica(2, 900)});
  EXPECT_EQ(out.topology->primary, -1);
  EXPECT_TRUE(out.topology->writesRefused);
  EXPECT_EQ(out.topology->backends[0].state, BackendState::Up);
  EXPECT_EQ(out.topology->backends[2].state, BackendState::Up);
  EXPECT_EQ(out.topology->backends[2].role, Role::Primary);
  EXPECT_EQ(count(out.events, EventType::SplitBrain), 1);
  EXPECT_EQ(count(out.events, EventType::Fenced), 0);
  EXPECT_NE(find(out.events, EventType::SplitBrain)->detail.find("writes refused"),
            std::string::npos);
  // Same claimants next round: no repeated event, still refused.
  out = round({primary(2, 1000), replica(2, 900), primary(2, 1200), replica(2, 900)});
  EXPECT_TRUE(out.topology->writesRefused);
  EXPECT_EQ(count(out.events, EventType::SplitBrain), 0);
  // An operator fences one of them: the other becomes the primary.
  b.fence(2, "fenced by operator");
  out = b.build(kNow);
  EXPECT_EQ(out.topology->primary, 0);
  EXPECT_FALSE(out.topology->writesRefused);
  EXPECT_EQ(count(out.events, EventType::Fenced), 1);
}

TEST_F(BuilderTest, OldPrimaryBackOnLowerTimelineIsFencedEvenAlone) {
  healthyRound();
  for (int k = 0; k < 3; ++k)
    round({failed(), replica(1, 1000), replica(1, 1000), replica(1, 1000)});
  round({failed(), primary(2, 2000), replica(1, 1000), replica(2, 2000)});
  // The new primary goes down too, then the old one comes back (rise=2) on timeline 1.
  for (int k = 0; k < 3; ++k) round({failed(), failed(), replica(1, 1000), replica(2, 2000)});
  auto out = round({primary(1, 1100), failed(), replica(1, 1000), replica(2, 2000)});
  EXPECT_EQ(out.topology->backends[0].state, BackendState::Down);  // 1 of rise=2
  out = round({primary(1, 1100), failed(), replica(1, 1000), replica(2, 2000)});
  EXPECT_EQ(out.topology->backends[0].state, BackendState::Fenced);
  EXPECT_EQ(out.topology->primary, -1);
  EXPECT_EQ(count(out.events, EventType::Fenced), 1);
  EXPECT_NE(find(out.events, EventType::Fenced)->detail.find("below timeline 2"),
            std::string::npos);
  EXPECT_EQ(b.highestTimeline(), 2u);
}

TEST_F(BuilderTest, ReplicaTimelineAloneRevealsAStalePrimary) {
  // Started after a promotion whose primary is unreachable: a replica streams timeline 3.
  auto out = round({primary(2, 500), failed(), replica(3, 400), replica(3, 400)});
  EXPECT_EQ(out.topology->primary, -1);
  EXPECT_EQ(out.topology->backends[0].state, BackendState::Fenced);
}

TEST_F(BuilderTest, LagBytesAndMilliseconds) {
  auto out = round({primary(1, 10'000), replica(1, 10'000, 5000), replica(1, 4'000, 1500),
                    replica(1, 12'000, 800)});
  auto& t = *out.topology;
  EXPECT_EQ(t.backends[0].lagBytes, 0u);
  EXPECT_EQ(t.backends[1].lagBytes, 0u);
  EXPECT_EQ(t.backends[1].lagMs, 0u);  // caught up: an idle primary is not lag
  EXPECT_EQ(t.backends[2].lagBytes, 6000u);
  EXPECT_EQ(t.backends[2].lagMs, 1500u);
  EXPECT_EQ(t.backends[3].lagBytes, 0u);  // sampled after the primary: clamped at 0
  EXPECT_EQ(t.backends[3].lagMs, 0u);
  EXPECT_EQ(t.backends[2].replayLsn, 4000u);
}

// A quiet primary writes once: the replica that has not replayed that write is at most as
// far behind as the last check that saw the primary at its position (200 ms), not as old as
// the previous commit it replayed (5 s).
TEST_F(BuilderTest, LagCountsFromTheLastCheckAtTheReplicasPosition) {
  auto at = [](ProbeResult r, int64_t ms) {
    r.nowUs = (kNow + ms) * 1000;
    return r;
  };
  round({at(primary(1, 10'000), 0), replica(1, 10'000), replica(1, 10'000), replica(1, 10'000)});
  auto out = round({at(primary(1, 12'000), 200), at(replica(1, 10'000, 5000), 200),
                    replica(1, 12'000), replica(1, 4'000, 7000)});
  EXPECT_EQ(out.topology->backends[1].lagBytes, 2000u);
  EXPECT_EQ(out.topology->backends[1].lagMs, 200u);
  // Behind what the history holds: the newest replayed commit (7 s before kNow) decides.
  EXPECT_EQ(out.topology->backends[3].lagMs, 7200u);
  out = round({at(primary(1, 12'000), 450), at(replica(1, 10'000, 5000), 450), replica(1, 12'000),
               replica(1, 4'000, 7000)});
  EXPECT_EQ(out.topology->backends[1].lagMs, 450u);
  // Under a steady load the newest replayed commit is the closer bound: 30 ms.
  out = round({at(primary(1, 14'000), 700), at(replica(1, 12'500, -670), 700), replica(1, 14'000),
               replica(1, 14'000)});
  EXPECT_EQ(out.topology->backends[1].lagMs, 30u);
  // A new primary (timeline 2) starts a new history: the replay timestamp decides again
  // (the newest replayed commit is from kNow - 100 ms, the primary's now() kNow + 800 ms).
  out = round({at(primary(2, 20'000), 800), at(replica(2, 12'000, 100), 800), replica(2, 20'000),
               replica(2, 20'000)});
  EXPECT_EQ(out.topology->backends[1].lagMs, 900u);
}

TEST_F(BuilderTest, LagWithoutReplayTimestamp) {
  ProbeResult r = replica(1, 100);
  r.hasReplayTimestamp = false;
  auto out = round({primary(1, 1000), r, replica(1, 1000), replica(1, 1000)});
  EXPECT_EQ(out.topology->backends[1].lagBytes, 900u);
  EXPECT_EQ(out.topology->backends[1].lagMs, 0u);
}

TEST_F(BuilderTest, LagKeepsLastValueWithoutPrimary) {
  round({primary(1, 1000), replica(1, 400, 300), replica(1, 1000), replica(1, 1000)});
  for (int k = 0; k < 3; ++k)
    round({failed(), replica(1, 500), replica(1, 1000), replica(1, 1000)});
  // Until fall is reached the primary's last sample still counts (1000 - 500), after that the
  // replica keeps the last value measured.
  round({failed(), replica(1, 700), replica(1, 1000), replica(1, 1000)});
  auto t = b.build(kNow).topology;
  EXPECT_EQ(t->primary, -1);
  EXPECT_EQ(t->backends[1].lagBytes, 500u);
}

TEST(BuilderLag, LagExceededOnCrossingOnly) {
  TopologyBuilder b(specs(2), BuilderThresholds{3, 2, 1000, 0});
  auto r = [&](uint64_t replay) {
    b.record(0, primary(1, 10'000));
    b.record(1, replica(1, replay));
    return b.build(kNow);
  };
  EXPECT_EQ(count(r(9'500).events, EventType::LagExceeded), 0);
  auto out = r(8'000);
  ASSERT_EQ(count(out.events, EventType::LagExceeded), 1);
  EXPECT_EQ(find(out.events, EventType::LagExceeded)->name, "pg2");
  EXPECT_EQ(count(r(7'000).events, EventType::LagExceeded), 0);  // still over: no repeat
  EXPECT_EQ(count(r(9'900).events, EventType::LagExceeded), 0);
  EXPECT_EQ(count(r(1'000).events, EventType::LagExceeded), 1);  // crossed again
}

TEST(BuilderLag, LagMsThreshold) {
  TopologyBuilder b(specs(2), BuilderThresholds{3, 2, 0, 2000});
  b.record(0, primary(1, 10'000));
  b.record(1, replica(1, 9'000, 1500));
  EXPECT_EQ(count(b.build(kNow).events, EventType::LagExceeded), 0);
  b.record(0, primary(1, 10'000));
  b.record(1, replica(1, 9'000, 2500));
  EXPECT_EQ(count(b.build(kNow).events, EventType::LagExceeded), 1);
}

TEST_F(BuilderTest, AdminStates) {
  healthyRound();
  b.setDisabled(1, true);
  b.setDraining(2, true);
  b.fence(3, "fenced by operator");
  auto out = b.build(kNow);
  EXPECT_EQ(out.topology->backends[1].state, BackendState::Disabled);
  EXPECT_EQ(out.topology->backends[2].state, BackendState::Draining);
  EXPECT_EQ(out.topology->backends[3].state, BackendState::Fenced);
  ASSERT_EQ(count(out.events, EventType::Fenced), 1);
  EXPECT_EQ(find(out.events, EventType::Fenced)->detail, "fenced by operator");
  b.fence(3, "again");  // already fenced: no second event
  EXPECT_EQ(count(b.build(kNow).events, EventType::Fenced), 0);
  b.setDisabled(1, false);
  b.setDraining(2, false);
  b.attach(3);
  out = b.build(kNow);
  for (auto& x : out.topology->backends) EXPECT_EQ(x.state, BackendState::Up);
  // A down backend that is also draining shows as down.
  b.setDraining(1, true);
  for (int k = 0; k < 3; ++k) round({primary(1, 1), failed(), replica(1, 1), replica(1, 1)});
  EXPECT_EQ(b.build(kNow).topology->backends[1].state, BackendState::Down);
}

TEST_F(BuilderTest, OutOfRangeIndicesAreIgnored) {
  EXPECT_FALSE(b.record(7, failed()));
  EXPECT_FALSE(b.record(-1, failed()));
  b.fence(9, "x");
  b.attach(-2);
  b.setDisabled(4, true);
  EXPECT_TRUE(b.build(kNow).events.empty());
}

TEST_F(BuilderTest, VersionsIncrease) {
  uint64_t last = b.initial()->version;
  for (int k = 0; k < 5; ++k) {
    auto v = healthyRound().topology->version;
    EXPECT_GT(v, last);
    last = v;
  }
}

TEST(BuilderSingle, FallOneRiseOne) {
  TopologyBuilder b(specs(1), BuilderThresholds{0, 0, 0, 0});  // clamped to 1
  b.record(0, primary(1, 1));
  EXPECT_EQ(b.build(kNow).topology->primary, 0);
  b.record(0, failed());
  EXPECT_EQ(b.build(kNow).topology->primary, -1);
  b.record(0, primary(1, 1));
  EXPECT_EQ(b.build(kNow).topology->primary, 0);
}

TEST(BuilderSettled, OnlyOnceEveryBackendWasChecked) {
  TopologyBuilder b{specs(3), BuilderThresholds{3, 2, 0, 0}};
  b.record(0, primary(1, 100));
  b.record(1, replica(1, 100));
  auto out = b.build(kNow);  // pg3's first check has not ended: it shows as down
  EXPECT_FALSE(out.topology->settled);
  EXPECT_EQ(out.topology->backends[2].state, BackendState::Down);
  b.record(2, failed());  // a failed check settles it too: down is now a finding
  out = b.build(kNow);
  EXPECT_TRUE(out.topology->settled);
  EXPECT_EQ(out.topology->backends[2].state, BackendState::Down);
}

// A reload renamed the primary's backend: slot 0 (the old name) is removed, slot 2 (the new
// name) has the same address. The old slot must not claim the primary next to the new one
// (a split brain with itself), nor hold back `settled`, nor be routed to.
TEST(BuilderRemoved, RenamedPrimaryIsNoSplitBrain) {
  auto s = specs(3);
  s[0].removed = true;
  s[2].host = s[0].host;
  s[2].port = s[0].port;
  TopologyBuilder b{s, BuilderThresholds{3, 2, 0, 0}};
  auto init = b.initial();
  EXPECT_EQ(init->primary, 1);  // the first backend that is not removed
  EXPECT_EQ(init->backends[0].state, BackendState::Removed);
  EXPECT_EQ(init->backends[0].role, Role::Unknown);
  EXPECT_EQ(init->backends[2].role, Role::Replica);
  EXPECT_FALSE(init->usable(0));

  EXPECT_FALSE(b.record(0, primary(1, 100)));  // ignored: nothing checks it anyway
  b.record(1, replica(1, 100));
  b.record(2, primary(1, 100));
  auto out = b.build(kNow);
  const auto& t = *out.topology;
  EXPECT_TRUE(t.settled);  // slot 0 is never checked and does not count
  EXPECT_EQ(t.primary, 2);
  EXPECT_FALSE(t.writesRefused);
  EXPECT_EQ(count(out.events, EventType::SplitBrain), 0);
  EXPECT_EQ(t.backends[0].state, BackendState::Removed);
  EXPECT_EQ(t.backends[0].role, Role::Unknown);
  EXPECT_FALSE(t.usable(0));
  EXPECT_EQ(t.backends[1].state, BackendState::Up);
  EXPECT_FALSE(b.track(0).haveSample);
}

TEST(BuilderRemoved, RemovedReplicaIsNeitherUpNorDown) {
  auto s = specs(3);
  s[1].removed = true;
  TopologyBuilder b{s, BuilderThresholds{3, 2, 0, 0}};
  b.record(0, primary(1, 100));
  b.record(2, replica(1, 100));
  auto out = b.build(kNow);
  EXPECT_TRUE(out.topology->settled);
  EXPECT_EQ(out.topology->backends[1].state, BackendState::Removed);
  EXPECT_TRUE(out.events.empty());  // no backend_down for something that is not ours
  EXPECT_STREQ(routing::toString(BackendState::Removed), "removed");
}

}  // namespace
}  // namespace pgswitch::health
