// Failover decisions on plain values: candidate choice (LSN, priority, exclusions, lag,
// liveness of the old primary), re-pointing a replica's primary_conninfo, and the writes
// pause of a switchover in the TopologyBuilder.
#include "health/failover_policy.h"

#include <gtest/gtest.h>

#include "health/topology_builder.h"

namespace pgswitch::health {
namespace {

ReplicaPosition replica(int index, uint64_t receive, uint64_t replay, int priority = 0) {
  ReplicaPosition r;
  r.index = index;
  r.name = "pg" + std::to_string(index + 1);
  r.answered = true;
  r.inRecovery = true;
  r.receiveLsn = receive;
  r.replayLsn = replay;
  r.priority = priority;
  return r;
}

CandidateInput input(std::vector<ReplicaPosition> rs, uint64_t oldLsn = 0) {
  CandidateInput in;
  in.replicas = std::move(rs);
  in.oldPrimaryName = "pg1";
  in.oldPrimaryHost = "10.0.0.1";
  in.oldPrimaryPort = 5432;
  in.oldPrimaryLsn = oldLsn;
  return in;
}

TEST(ChooseCandidate, HighestReceivedOrReplayedLsnWins) {
  auto c = chooseCandidate(input({replica(1, 1000, 900), replica(2, 800, 1200)}));
  EXPECT_EQ(c.index, 2);  // replayed 1200 beats received 1000
  EXPECT_EQ(c.lsn, 1200u);
  EXPECT_EQ(c.lagBytes, 0u);
  EXPECT_EQ(c.refusal, Refusal::None);
  c = chooseCandidate(input({replica(1, 1500, 900), replica(2, 800, 1200)}));
  EXPECT_EQ(c.index, 1);  // received WAL is replayed before recovery ends
  EXPECT_EQ(c.lsn, 1500u);
}

TEST(ChooseCandidate, PriorityBreaksTiesThenIndex) {
  auto c = chooseCandidate(input({replica(1, 1000, 1000, 0), replica(2, 1000, 1000, 5)}));
  EXPECT_EQ(c.index, 2);
  c = chooseCandidate(input({replica(1, 1000, 1000), replica(2, 1000, 1000)}));
  EXPECT_EQ(c.index, 1);
  // Priority never beats a higher LSN.
  c = chooseCandidate(input({replica(1, 1001, 1001, 0), replica(2, 1000, 1000, 9)}));
  EXPECT_EQ(c.index, 1);
}

TEST(ChooseCandidate, ExcludedUnansweredAndPromotedReplicasAreSkipped) {
  auto a = replica(1, 5000, 5000);
  a.eligible = false;
  a.excluded = "tagged no_promote";
  auto b = replica(2, 0, 0);
  b.answered = false;
  b.error = "connection refused";
  auto d = replica(3, 4000, 4000);
  d.inRecovery = false;
  auto e = replica(4, 3000, 3000);
  auto c = chooseCandidate(input({a, b, d, e}, 2000));
  EXPECT_EQ(c.index, 4);
  // The no_promote replica is ahead: the lag counts from it.
  EXPECT_EQ(c.lagBytes, 2000u);
  EXPECT_NE(c.detail.find("pg2: tagged no_promote"), std::string::npos) << c.detail;
  EXPECT_NE(c.detail.find("pg3: connection refused"), std::string::npos) << c.detail;
  EXPECT_NE(c.detail.find("pg4: not in recovery"), std::string::npos) << c.detail;
}

// [coordination]: a replica that left recovery meanwhile was promoted by another instance.
TEST(ChooseCandidate, CoordinatedRefusesWhenAReplicaWasPromotedMeanwhile) {
  auto promoted = replica(1, 4000, 4000);
  promoted.inRecovery = false;
  auto in = input({replica(2, 3000, 3000), promoted}, 2000);
  in.refuseIfPromoted = true;
  auto c = chooseCandidate(in);
  EXPECT_EQ(c.index, -1);
  EXPECT_EQ(c.refusal, Refusal::AlreadyPromoted);
  EXPECT_NE(c.detail.find("pg2 left recovery"), std::string::npos) << c.detail;
  in.refuseIfPromoted = false;
  EXPECT_EQ(chooseCandidate(in).index, 2);
}

TEST(ChooseCandidate, RefusedWithoutCandidates) {
  auto a = replica(1, 5000, 5000);
  a.eligible = false;
  a.excluded = "tagged no_promote";
  auto c = chooseCandidate(input({a}));
  EXPECT_EQ(c.index, -1);
  EXPECT_EQ(c.refusal, Refusal::NoCandidate);
  EXPECT_NE(c.detail.find("no replica can be promoted"), std::string::npos);
  EXPECT_EQ(chooseCandidate(input({})).refusal, Refusal::NoCandidate);
}

TEST(ChooseCandidate, LagAgainstOldPrimaryAndLimit) {
  auto in = input({replica(1, 1000, 1000)}, 1000 + 4096);
  in.maxLagBytes = 4096;
  auto c = chooseCandidate(in);
  EXPECT_EQ(c.index, 1);  // exactly at the limit is allowed
  EXPECT_EQ(c.lagBytes, 4096u);
  in.maxLagBytes = 4095;
  c = chooseCandidate(in);
  EXPECT_EQ(c.index, -1);
  EXPECT_EQ(c.refusal, Refusal::TooFarBehind);
  EXPECT_NE(c.detail.find("4096 bytes behind"), std::string::npos) << c.detail;
  in.maxLagBytes = 0;  // no limit
  EXPECT_EQ(chooseCandidate(in).index, 1);
}

TEST(ChooseCandidate, RefusedWhileAReplicaStillHearsFromTheOldPrimary) {
  auto r = replica(1, 1000, 1000);
  r.streaming = true;
  r.senderHost = "10.0.0.1";
  r.senderPort = 5432;
  r.msgAgeMs = 20;  // WAL 20 ms ago, pgswitch lost it 1500 ms ago
  auto in = input({r, replica(2, 900, 900)});
  in.sinceFailureMs = 1500;
  auto c = chooseCandidate(in);
  EXPECT_EQ(c.index, -1);
  EXPECT_EQ(c.refusal, Refusal::PrimaryAlive);
  // Heard from it only before pgswitch lost it (within the slack): it may well be dead.
  in.replicas[0].msgAgeMs = 1500 - kAliveSlackMs;
  EXPECT_EQ(chooseCandidate(in).index, 1);
  // Streaming from someone else (a cascade) proves nothing about the old primary.
  in.replicas[0].msgAgeMs = 20;
  in.replicas[0].senderPort = 5433;
  EXPECT_EQ(chooseCandidate(in).index, 1);
  // Liveness test off.
  in.replicas[0].senderPort = 5432;
  in.sinceFailureMs = -1;
  EXPECT_EQ(chooseCandidate(in).index, 1);
}

RepointInput repointInput(std::string conninfo) {
  RepointInput in;
  in.name = "pg3";
  in.currentConninfo = std::move(conninfo);
  in.oldHost = "10.0.0.1";
  in.oldPort = 5432;
  in.newHost = "10.0.0.2";
  in.newPort = 5433;
  in.defaultUser = "repl";
  return in;
}

TEST(DecideRepoint, FollowerOfTheOldPrimaryKeepsItsOtherKeys) {
  auto d = decideRepoint(repointInput(
      "user=postgres password='s3 cr\\'et' host=10.0.0.1 port=5432 application_name=node2 "
      "sslmode=prefer hostaddr=10.0.0.1"));
  ASSERT_TRUE(d.repoint) << d.reason;
  EXPECT_FALSE(d.failed);
  // Kept keys come in libpq's own order.
  EXPECT_EQ(d.conninfo,
            "host='10.0.0.2' port='5433' user='postgres' password='s3 cr\\'et' "
            "application_name='node2' sslmode='prefer'");
  EXPECT_EQ(d.reason, "followed the old primary");
}

TEST(DecideRepoint, DefaultPortAndSenderCount) {
  // No port in the conninfo: 5432.
  EXPECT_TRUE(decideRepoint(repointInput("host=10.0.0.1 user=x")).repoint);
  // The conninfo names another address, but the WAL sender is the old primary.
  auto in = repointInput("host=db1.example user=x");
  in.streaming = true;
  in.senderHost = "10.0.0.1";
  in.senderPort = 5432;
  EXPECT_TRUE(decideRepoint(in).repoint);
}

TEST(DecideRepoint, CascadeIsLeftAloneAndNotStreamingIsRepointed) {
  auto in = repointInput("host=10.0.0.7 port=5432 user=x");
  in.streaming = true;
  in.senderHost = "10.0.0.7";
  in.senderPort = 5432;
  auto d = decideRepoint(in);
  EXPECT_FALSE(d.repoint);
  EXPECT_NE(d.reason.find("streams from 10.0.0.7:5432"), std::string::npos) << d.reason;
  in.streaming = false;  // its upstream is gone too
  d = decideRepoint(in);
  EXPECT_TRUE(d.repoint);
  EXPECT_EQ(d.reason, "was not streaming");
}

TEST(DecideRepoint, AlreadyOnTheNewPrimary) {
  auto d = decideRepoint(repointInput("host=10.0.0.2 port=5433"));
  EXPECT_FALSE(d.repoint);
  EXPECT_FALSE(d.failed);
}

TEST(DecideRepoint, EmptyConninfoIsWrittenFromScratch) {
  auto d = decideRepoint(repointInput(""));
  ASSERT_TRUE(d.repoint);
  EXPECT_EQ(d.conninfo, "host='10.0.0.2' port='5433' user='repl' application_name='pg3'");
}

TEST(DecideRepoint, UnparsableConninfoIsReported) {
  auto d = decideRepoint(repointInput("host='unterminated"));
  EXPECT_FALSE(d.repoint);
  EXPECT_TRUE(d.failed);
  EXPECT_NE(d.reason.find("cannot parse"), std::string::npos);
}

ProbeResult sample(bool recovery, uint32_t tl, uint64_t lsn) {
  ProbeResult r;
  r.ok = true;
  r.inRecovery = recovery;
  r.timeline = tl;
  r.currentLsn = recovery ? 0 : lsn;
  r.receiveLsn = r.replayLsn = recovery ? lsn : 0;
  r.nowUs = 1;
  return r;
}

TEST(WritesPause, HeldUntilTheSnapshotThatNamesTheNewPrimary) {
  std::vector<BackendSpec> specs = {{"pg1", "h", 1, 1, {}}, {"pg2", "h", 2, 1, {}}};
  TopologyBuilder b(specs, BuilderThresholds{});
  b.record(0, sample(false, 1, 100));
  b.record(1, sample(true, 1, 100));
  EXPECT_FALSE(b.build(0).topology->writesPaused);
  b.pauseWrites(1);
  auto t = b.build(0).topology;
  EXPECT_TRUE(t->writesPaused);
  EXPECT_EQ(t->primary, 0);
  // Promoted and the old one fenced: still paused until a check shows pg2 as primary.
  b.fence(0, "switched over to pg2");
  t = b.build(0).topology;
  EXPECT_TRUE(t->writesPaused);
  EXPECT_EQ(t->primary, -1);
  b.record(1, sample(false, 2, 200));
  t = b.build(0).topology;
  EXPECT_EQ(t->primary, 1);
  EXPECT_FALSE(t->writesPaused);  // the same snapshot
  EXPECT_FALSE(b.writesPaused());
  // resumeWrites() lifts it whatever the primary.
  b.pauseWrites(0);
  EXPECT_TRUE(b.build(0).topology->writesPaused);
  b.resumeWrites();
  EXPECT_FALSE(b.build(0).topology->writesPaused);
}

}  // namespace
}  // namespace pgswitch::health
