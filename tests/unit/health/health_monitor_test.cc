// HealthMonitor on its real loop against sockets on 127.0.0.1 that are not PostgreSQL: a
// closed port (refused), a listener that never answers (connect timeout); commands, the
// on_event hook, and a clean shutdown (every handle closed).
#include "health/health_monitor.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <sstream>

namespace pgswitch::health {
namespace {

using namespace std::chrono_literals;
using routing::BackendState;

// A bound socket on 127.0.0.1; listening (connections complete, nothing is ever answered) or
// closed again at once (connections are refused).
struct LocalPort {
  int fd = -1;
  int port = 0;
  explicit LocalPort(bool listening) {
    fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
    if (listening) {
      listen(fd, 16);
    } else {
      close(fd);
      fd = -1;
    }
  }
  ~LocalPort() {
    if (fd >= 0) close(fd);
  }
};

class Collector {
 public:
  void add(routing::TopologyPtr t) {
    std::lock_guard g(mu_);
    all_.push_back(std::move(t));
    cv_.notify_all();
  }
  // Waits until a published topology satisfies pred; returns it (nullptr on timeout).
  template <typename Pred>
  routing::TopologyPtr waitFor(Pred pred, std::chrono::milliseconds timeout = 5000ms) {
    std::unique_lock g(mu_);
    routing::TopologyPtr found;
    cv_.wait_for(g, timeout, [&] {
      for (auto& t : all_) {
        if (pred(*t)) {
          found = t;
          return true;
        }
      }
      return false;
    });
    return found;
  }
  size_t count() const {
    std::lock_guard g(mu_);
    return all_.size();
  }
  routing::TopologyPtr first() const {
    std::lock_guard g(mu_);
    return all_.empty() ? nullptr : all_.front();
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<routing::TopologyPtr> all_;
};

HealthSettings fastSettings() {
  HealthSettings s;
  s.periodMs = 50;
  s.connectTimeoutMs = 200;
  s.queryTimeoutMs = 200;
  s.fall = 2;
  s.rise = 2;
  s.login.user = "nobody";
  s.login.password = "x";
  return s;
}

BackendSpec spec(const std::string& name, int port) {
  return BackendSpec{name, "127.0.0.1", port, 1, {}};
}

TEST(HealthMonitor, InitialTopologyThenDownAndCleanStop) {
  LocalPort closed(false);
  Collector c;
  HealthMonitor m(fastSettings(), {spec("pg1", closed.port), spec("pg2", closed.port)},
                  [&](routing::TopologyPtr t) { c.add(std::move(t)); });
  EXPECT_EQ(m.snapshot()->primary, 0);
  m.start();
  ASSERT_GE(c.count(), 1u);  // published synchronously by start()
  EXPECT_EQ(c.first()->version, 1u);
  EXPECT_EQ(c.first()->primary, 0);
  EXPECT_EQ(c.first()->backends[0].state, BackendState::Up);
  auto down = c.waitFor([](const routing::Topology& t) {
    return t.backends[0].state == BackendState::Down && t.backends[1].state == BackendState::Down;
  });
  ASSERT_NE(down, nullptr);
  EXPECT_EQ(down->primary, -1);
  EXPECT_EQ(m.snapshot()->primary, -1);
  auto events = m.recentEvents();
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(events[0].type, EventType::BackendDown);
  auto st = m.backendStatus();
  ASSERT_EQ(st.size(), 2u);
  EXPECT_NE(st[0].lastError.find("refused"), std::string::npos) << st[0].lastError;
  m.stop();
  EXPECT_TRUE(m.stoppedCleanly());
  m.stop();  // idempotent
}

TEST(HealthMonitor, ConnectTimeoutIsEnforced) {
  LocalPort silent(true);
  HealthSettings s = fastSettings();
  s.periodMs = 1000;
  s.connectTimeoutMs = 150;
  Collector c;
  HealthMonitor m(s, {spec("pg1", silent.port)},
                  [&](routing::TopologyPtr t) { c.add(std::move(t)); });
  auto t0 = std::chrono::steady_clock::now();
  m.start();
  auto down = c.waitFor(
      [](const routing::Topology& t) { return t.backends[0].state == BackendState::Down; });
  auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_NE(down, nullptr);
  EXPECT_GE(took, 140ms);
  EXPECT_LT(took, 900ms);  // well before the next period
  EXPECT_NE(m.backendStatus()[0].lastError.find("connect timeout"), std::string::npos)
      << m.backendStatus()[0].lastError;
  m.stop();
  EXPECT_TRUE(m.stoppedCleanly());
}

TEST(HealthMonitor, CommandsTakeEffectAtOnce) {
  LocalPort closed(false);
  HealthSettings s = fastSettings();
  s.periodMs = 10000;  // only the first round: everything after comes from commands
  Collector c;
  HealthMonitor m(s, {spec("pg1", closed.port), spec("pg2", closed.port)},
                  [&](routing::TopologyPtr t) { c.add(std::move(t)); });
  m.fence(1);  // queued before start, applied on the first loop turn
  m.start();
  ASSERT_NE(c.waitFor([](const routing::Topology& t) {
    return t.backends[1].state == BackendState::Fenced;
  }),
            nullptr);
  m.attach(1);
  ASSERT_NE(c.waitFor([](const routing::Topology& t) {
    return t.version > 2 && t.backends[1].state == BackendState::Down;
  }),
            nullptr);
  m.setDisabled(0, true);
  ASSERT_NE(c.waitFor([](const routing::Topology& t) {
    return t.backends[0].state == BackendState::Disabled;
  }),
            nullptr);
  m.setDisabled(0, false);
  ASSERT_NE(c.waitFor([](const routing::Topology& t) {
    return t.backends[0].state == BackendState::Down && t.backends[1].state == BackendState::Down &&
           t.version > 5;
  }),
            nullptr);
  // A recheck runs a check right away (fall=2: the second failure is not needed to stay
  // down, but the check must be counted).
  int before = m.backendStatus()[0].failStreak;
  m.recheck(0);
  m.recheck(99);  // ignored
  auto deadline = std::chrono::steady_clock::now() + 3s;
  while (m.backendStatus()[0].failStreak == before && std::chrono::steady_clock::now() < deadline) {
    m.fence(1);  // forces snapshots (status is refreshed with them)
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_GT(m.backendStatus()[0].failStreak, before);
  m.stop();
  EXPECT_TRUE(m.stoppedCleanly());
  m.fence(0);  // after stop: ignored, no crash
}

TEST(HealthMonitor, OnEventHookGetsTheEnvironment) {
  LocalPort closed(false);
  std::string out = ::testing::TempDir() + "/pgswitch_hook_" + std::to_string(getpid());
  unlink(out.c_str());
  HealthSettings s = fastSettings();
  s.onEvent =
      "echo \"$PGSWITCH_EVENT|$PGSWITCH_BACKEND|$PGSWITCH_HOST|$PGSWITCH_PORT|"
      "$PGSWITCH_ROLE|$PGSWITCH_TIME\" >> '" +
      out + "'; echo to-stdout";
  HealthMonitor m(s, {spec("pg7", closed.port)}, [](routing::TopologyPtr) {});
  m.start();
  std::string content;
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (content.empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
    std::ifstream f(out);
    std::stringstream ss;
    ss << f.rdbuf();
    content = ss.str();
  }
  m.stop();
  EXPECT_TRUE(m.stoppedCleanly());
  unlink(out.c_str());
  std::string want = "backend_down|pg7|127.0.0.1|" + std::to_string(closed.port) + "|unknown|";
  EXPECT_EQ(content.rfind(want, 0), 0u) << content;
  EXPECT_NE(content.find("Z\n"), std::string::npos) << content;
}

TEST(HealthMonitor, StopWithoutStartAndDestructorStops) {
  LocalPort closed(false);
  { HealthMonitor m(fastSettings(), {spec("pg1", closed.port)}, nullptr); }
  {
    HealthMonitor m(fastSettings(), {spec("pg1", closed.port)}, nullptr);
    m.stop();
  }
  {
    HealthMonitor m(fastSettings(), {spec("pg1", closed.port)}, nullptr);
    m.start();
    std::this_thread::sleep_for(120ms);
  }  // ~HealthMonitor joins
  {
    HealthMonitor m(fastSettings(), {}, nullptr);  // no backends at all
    m.start();
    std::this_thread::sleep_for(60ms);
    m.stop();
    EXPECT_TRUE(m.stoppedCleanly());
  }
}

TEST(HealthMonitor, CarriedEventsComeFirstAndAreBounded) {
  LocalPort closed(false);
  std::vector<Event> older(HealthMonitor::kRecentEvents + 10);
  for (size_t i = 0; i < older.size(); ++i) older[i].detail = std::to_string(i);
  HealthMonitor m(fastSettings(), {spec("pg1", closed.port)}, nullptr);
  m.carryEvents(older);
  auto ev = m.recentEvents();
  ASSERT_EQ(ev.size(), HealthMonitor::kRecentEvents);  // the newest of the older ones
  EXPECT_EQ(ev.front().detail, "10");
  EXPECT_EQ(ev.back().detail, std::to_string(older.size() - 1));
  m.start();
  for (int i = 0; i < 100 && m.recentEvents().back().type != EventType::BackendDown; ++i)
    std::this_thread::sleep_for(20ms);
  ev = m.recentEvents();
  EXPECT_EQ(ev.back().type, EventType::BackendDown);  // its own come after
  EXPECT_EQ(ev.size(), HealthMonitor::kRecentEvents);
  m.stop();
}

}  // namespace
}  // namespace pgswitch::health
