// etcd v3 JSON gateway requests and answers (samples taken from etcd 3.4.23), the decision's
// JSON, and HealthMonitor with [coordination] and no etcd answering: one etcd_unreachable
// event, no promotion allowed, every handle closed at stop.
#include "health/etcd_protocol.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "health/health_monitor.h"

namespace pgswitch::health::etcd {
namespace {

using nlohmann::json;

TEST(EtcdBase64, RoundTripsEveryLength) {
  EXPECT_EQ(base64(""), "");
  EXPECT_EQ(base64("/pgswitch/default/leader"), "L3Bnc3dpdGNoL2RlZmF1bHQvbGVhZGVy");
  EXPECT_EQ(base64("me"), "bWU=");
  std::string raw;
  for (int n = 0; n < 40; ++n) {
    EXPECT_EQ(unbase64(base64(raw)), raw) << n;
    raw.push_back(static_cast<char>(n * 37));  // binary bytes too, NUL included
  }
  EXPECT_EQ(unbase64("bWU"), std::nullopt);   // not a multiple of 4
  EXPECT_EQ(unbase64("b!U="), std::nullopt);  // not base64
}

TEST(EtcdRequests, CampaignIsACompareAndSwapOnTheCreateRevision) {
  Call c = campaign("/p/leader", "pgswitch-a", 7587862398419744261);
  EXPECT_EQ(c.path, "/v3/kv/txn");
  json j = json::parse(c.body);
  EXPECT_EQ(j["compare"][0]["key"], base64("/p/leader"));
  EXPECT_EQ(j["compare"][0]["target"], "CREATE");
  EXPECT_EQ(j["compare"][0]["create_revision"], "0");
  EXPECT_EQ(j["success"][0]["request_put"]["value"], base64("pgswitch-a"));
  EXPECT_EQ(j["success"][0]["request_put"]["lease"], "7587862398419744261");
  EXPECT_EQ(j["failure"][0]["request_range"]["key"], base64("/p/leader"));
}

TEST(EtcdRequests, DecisionIsWrittenOnlyWhileTheLeaseHoldsTheLeaderKey) {
  Call c = putIfHolder("/p/leader", 42, "/p/decision", "{}");
  json j = json::parse(c.body);
  EXPECT_EQ(j["compare"][0]["target"], "LEASE");
  EXPECT_EQ(j["compare"][0]["lease"], "42");
  EXPECT_EQ(j["success"][0]["request_put"]["key"], base64("/p/decision"));
  EXPECT_FALSE(j["success"][0]["request_put"].contains("lease"));  // outlives the leader
  EXPECT_EQ(leaseGrant(3).body, R"({"TTL":"3"})");
  EXPECT_EQ(leaseKeepAlive(5).path, "/v3/lease/keepalive");
  EXPECT_EQ(range("/p/decision").body, R"({"key":")" + base64("/p/decision") + R"("})");
}

constexpr const char* kHeader =
    R"("header":{"cluster_id":"324952591200643719","member_id":"3319814642761637952",)"
    R"("revision":"2","raft_term":"2"})";

TEST(EtcdAnswers, LeaseGrantAndKeepAlive) {
  std::string err;
  EXPECT_EQ(parseLeaseGrant(
                std::string("{") + kHeader + R"(,"ID":"2324035825956989189","TTL":"2"})", &err),
            2324035825956989189);
  EXPECT_EQ(parseLeaseGrant(R"({"error":"etcdserver: too many requests","code":14})", &err),
            std::nullopt);
  EXPECT_EQ(err, "etcd: etcdserver: too many requests");
  // The keep-alive is a stream: each answer is wrapped in "result"; an expired lease has no TTL.
  EXPECT_EQ(parseKeepAlive(std::string(R"({"result":{)") + kHeader +
                               R"(,"ID":"2324035825956989191","TTL":"3"}})" + "\n",
                           &err),
            3);
  EXPECT_EQ(parseKeepAlive(std::string(R"({"result":{)") + kHeader + R"(,"ID":"12345"}})", &err),
            0);
  EXPECT_EQ(parseKeepAlive("<html>", &err), std::nullopt);
}

TEST(EtcdAnswers, CampaignWonOrHeldBySomeone) {
  std::string err;
  auto won = parseCampaign(
      std::string("{") + kHeader +
          R"(,"succeeded":true,"responses":[{"response_put":{"header":{"revision":"2"}}}]})",
      &err);
  ASSERT_TRUE(won);
  EXPECT_TRUE(won->won);
  auto held = parseCampaign(
      std::string("{") + kHeader +
          R"(,"responses":[{"response_range":{"header":{"revision":"2"},"kvs":[{"key":"L3Bnc3dpdGNoL2RlZmF1bHQvbGVhZGVy","create_revision":"2","mod_revision":"2","version":"1","value":"bWU=","lease":"2324035825956989191"}],"count":"1"}}]})",
      &err);
  ASSERT_TRUE(held) << err;
  EXPECT_FALSE(held->won);
  EXPECT_EQ(held->holder.key, "/pgswitch/default/leader");
  EXPECT_EQ(held->holder.value, "me");
  EXPECT_EQ(held->holder.lease, 2324035825956989191);
  EXPECT_EQ(held->holder.modRevision, 2);
  // Expired between compare and range: nobody holds it.
  auto gone = parseCampaign(
      std::string("{") + kHeader + R"(,"responses":[{"response_range":{"header":{}}}]})", &err);
  ASSERT_TRUE(gone);
  EXPECT_FALSE(gone->won);
  EXPECT_TRUE(gone->holder.key.empty());
}

TEST(EtcdAnswers, TxnAndRange) {
  std::string err;
  EXPECT_EQ(parseTxnSucceeded(std::string("{") + kHeader + R"(,"succeeded":true})", &err), true);
  EXPECT_EQ(parseTxnSucceeded(std::string("{") + kHeader + "}", &err), false);
  auto kv = parseRange(
      std::string("{") + kHeader +
          R"(,"kvs":[{"key":"L3Bnc3dpdGNoL2RlZmF1bHQvZGVjaXNpb24=","create_revision":"3","mod_revision":"3","version":"1","value":"bWU="}],"count":"1"})",
      &err);
  ASSERT_TRUE(kv) << err;
  EXPECT_EQ(kv->key, "/pgswitch/default/decision");
  EXPECT_EQ(kv->value, "me");
  EXPECT_EQ(kv->modRevision, 3);
  EXPECT_EQ(kv->lease, 0);
  auto none = parseRange(std::string("{") + kHeader + "}", &err);
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->key.empty());
  EXPECT_EQ(parseRange(R"({"kvs":[{"key":"***","value":""}]})", &err), std::nullopt);
}

TEST(EtcdDecision, RoundTripsAndNeedsAnAddress) {
  Decision d;
  d.seq = 3;
  d.primary = "pg2";
  d.host = "127.0.0.1";
  d.port = 5433;
  d.timeline = 2;
  d.fenced = "pg1";
  d.fencedHost = "127.0.0.1";
  d.fencedPort = 5432;
  d.by = "host-a:6432";
  d.timeMs = 1700000000000;
  std::string err;
  auto back = parseDecision(toJson(d), &err);
  ASSERT_TRUE(back) << err;
  EXPECT_EQ(back->seq, 3u);
  EXPECT_EQ(back->primary, "pg2");
  EXPECT_EQ(back->port, 5433);
  EXPECT_EQ(back->timeline, 2u);
  EXPECT_EQ(back->fenced, "pg1");
  EXPECT_EQ(back->fencedPort, 5432);
  EXPECT_EQ(back->by, "host-a:6432");
  EXPECT_EQ(back->timeMs, 1700000000000);
  EXPECT_EQ(parseDecision(R"({"primary":"pg2"})", &err), std::nullopt);
  EXPECT_EQ(parseDecision("[]", &err), std::nullopt);
}

int closedPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

TEST(CoordinatedMonitor, UnreachableEtcdMeansNoPromotion) {
  using namespace std::chrono_literals;
  HealthSettings hs;
  hs.periodMs = 50;
  hs.connectTimeoutMs = 200;
  hs.queryTimeoutMs = 200;
  hs.login.user = "nobody";
  int port = closedPort();
  HealthMonitor m(hs, {{"pg1", "127.0.0.1", port, 1, {}}}, [](routing::TopologyPtr) {});
  CoordinationSettings c;
  c.endpoints = {"http://127.0.0.1:" + std::to_string(closedPort()),
                 "http://127.0.0.1:" + std::to_string(closedPort()) + "/"};
  c.name = "test:1";
  c.periodMs = 50;
  c.timeoutMs = 200;
  m.setCoordination(c);
  m.start();
  std::this_thread::sleep_for(400ms);
  int unreachable = 0;
  for (const auto& e : m.recentEvents()) unreachable += e.type == EventType::EtcdUnreachable;
  EXPECT_EQ(unreachable, 1);  // once per outage, not once per round
  auto st = m.coordinationStatus();
  EXPECT_TRUE(st.enabled);
  EXPECT_FALSE(st.leader);
  EXPECT_EQ(st.name, "test:1");
  EXPECT_NE(st.blocker.find("coordination: etcd unreachable"), std::string::npos) << st.blocker;
  m.stop();
  EXPECT_TRUE(m.stoppedCleanly());
}

}  // namespace
}  // namespace pgswitch::health::etcd
