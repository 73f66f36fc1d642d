// HealthMonitor's PROMOTE / SWITCHOVER entry points on the real loop, without PostgreSQL:
// requests that cannot run are answered with the reason, exactly once, also when the
// monitor is stopped or never started; under [patroni], refused as Patroni owns promotion.
// (Promotions themselves: tests/integration.)
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <future>

#include "health/health_monitor.h"

namespace pgswitch::health {
namespace {

using namespace std::chrono_literals;

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

HealthSettings settings() {
  HealthSettings s;
  s.periodMs = 50;
  s.connectTimeoutMs = 200;
  s.queryTimeoutMs = 200;
  s.fall = 1;
  s.login.user = "nobody";
  return s;
}

struct Answer {
  std::promise<OperationResult> p;
  int calls = 0;
  OperationDone done() {
    return [this](const OperationResult& r) {
      if (++calls == 1) p.set_value(r);
    };
  }
  OperationResult get() {
    auto f = p.get_future();
    EXPECT_EQ(f.wait_for(5s), std::future_status::ready);
    return f.get();
  }
};

TEST(FailoverMonitor, RequestsThatCannotRunAreAnswered) {
  int port = closedPort();
  HealthMonitor m(settings(),
                  {{"pg1", "127.0.0.1", port, 1, {}}, {"pg2", "127.0.0.1", port, 1, {}}},
                  [](routing::TopologyPtr) {});
  FailoverSettings f;
  f.autoFailover = true;
  m.setFailover(f);
  EXPECT_TRUE(m.failoverSettings().autoFailover);
  m.start();
  std::this_thread::sleep_for(300ms);  // every backend checked and down

  Answer a;
  m.promote(1, a.done());
  auto r = a.get();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, "pg2 is not up");

  Answer b;
  m.switchover(1, 1000, b.done());
  r = b.get();
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("no primary"), std::string::npos) << r.error;

  Answer c;
  m.promote(7, c.done());
  EXPECT_EQ(c.get().error, "no such backend");

  // Down from the first check: never seen as primary, so no automatic failover either.
  for (const auto& e : m.recentEvents()) {
    EXPECT_NE(e.type, EventType::FailoverStarted);
    EXPECT_NE(e.type, EventType::FailoverRefused);
  }
  m.stop();
  EXPECT_TRUE(m.stoppedCleanly());

  Answer d;
  m.promote(1, d.done());
  EXPECT_EQ(d.get().error, "health monitor stopped");
  EXPECT_EQ(a.calls + b.calls + c.calls + d.calls, 4);
}

TEST(FailoverMonitor, RequestOnAMonitorThatNeverStartedIsAnswered) {
  Answer a;
  {
    HealthMonitor m(settings(), {{"pg1", "127.0.0.1", 1, 1, {}}}, [](routing::TopologyPtr) {});
    m.switchover(0, 100, a.done());
  }
  EXPECT_EQ(a.get().error, "health monitor stopped");
  EXPECT_EQ(a.calls, 1);
}

}  // namespace
}  // namespace pgswitch::health

namespace pgswitch::health {
namespace {

// [patroni] with no REST API answering: one patroni_unreachable event, auto failover forced
// off, PROMOTE refused (Patroni owns promotion), SWITCHOVER refused until Patroni answered,
// and every handle (libcurl's included) closed at stop.
TEST(PatroniMonitor, UnreachableApiRefusesPromotionAndSwitchover) {
  int port = closedPort();
  HealthMonitor m(settings(),
                  {{"pg1", "127.0.0.1", port, 1, {}}, {"pg2", "127.0.0.1", port, 1, {}}},
                  [](routing::TopologyPtr) {});
  FailoverSettings f;
  f.autoFailover = true;
  m.setFailover(f);
  PatroniSettings p;
  p.urls = {"http://127.0.0.1:" + std::to_string(closedPort()),
            "http://127.0.0.1:" + std::to_string(closedPort()) + "/"};
  p.periodMs = 50;
  p.timeoutMs = 200;
  m.setPatroni(p);
  m.start();
  std::this_thread::sleep_for(400ms);  // several polls, every URL refused each time
  EXPECT_FALSE(m.failoverSettings().autoFailover);

  Answer a;
  m.promote(1, a.done());
  auto r = a.get();
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("Patroni manages this cluster"), std::string::npos) << r.error;

  Answer b;
  m.switchover(1, 1000, b.done());
  r = b.get();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, "no answer from Patroni's REST API yet");

  int unreachable = 0;
  for (const auto& e : m.recentEvents()) unreachable += e.type == EventType::PatroniUnreachable;
  EXPECT_EQ(unreachable, 1);  // once per outage, not once per poll
  m.stop();
  EXPECT_TRUE(m.stoppedCleanly());
  EXPECT_EQ(a.calls, 1);
  EXPECT_EQ(b.calls, 1);
}

}  // namespace
}  // namespace pgswitch::health
