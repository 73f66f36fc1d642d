// Unit tests for the admin console (proxy/console_*.cc): every command's output decoded from
// the wire bytes (columns, rows, tags), argument errors with their SQLSTATEs, and the calls
// made on a fake ConsoleActions.
#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "proxy/admin/console_commands.h"

namespace pgswitch::proxy {
namespace {

// ---- a small decoder for backend messages ----

struct Response {
  char kind = 0;  // 'T' result set, 'C' command complete only, 'E' error, 'I' empty query
  std::vector<std::string> columns;
  std::vector<uint32_t> oids;
  std::vector<std::vector<std::optional<std::string>>> rows;
  std::string tag;
  std::map<char, std::string> error;  // field code -> value

  // Row whose first column equals key.
  const std::vector<std::optional<std::string>>* find(std::string_view key) const {
    for (const auto& r : rows) {
      if (!r.empty() && r[0] && *r[0] == key) return &r;
    }
    return nullptr;
  }
  int col(std::string_view name) const {
    for (size_t i = 0; i < columns.size(); ++i) {
      if (columns[i] == name) return static_cast<int>(i);
    }
    return -1;
  }
  std::string at(std::string_view key, std::string_view column) const {
    auto* r = find(key);
    int c = col(column);
    if (!r || c < 0 || !(*r)[c]) return "<null-or-missing>";
    return *(*r)[c];
  }
};

class Reader {
 public:
  explicit Reader(std::string_view b) : b_(b) {}
  bool done() const { return pos_ >= b_.size(); }
  uint32_t u32() {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(b_.at(pos_++));
    return v;
  }
  uint16_t u16() {
    uint16_t v = static_cast<uint16_t>(static_cast<uint8_t>(b_.at(pos_)) << 8 |
                                       static_cast<uint8_t>(b_.at(pos_ + 1)));
    pos_ += 2;
    return v;
  }
  char u8() { return b_.at(pos_++); }
  std::string cstr() {
    size_t end = b_.find('\0', pos_);
    EXPECT_NE(end, std::string_view::npos);
    std::string s(b_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return s;
  }
  std::string bytes(size_t n) {
    std::string s(b_.substr(pos_, n));
    EXPECT_EQ(s.size(), n);
    pos_ += n;
    return s;
  }
  size_t pos() const { return pos_; }

 private:
  std::string_view b_;
  size_t pos_ = 0;
};

std::vector<Response> decode(std::string_view bytes) {
  std::vector<Response> out;
  Reader r(bytes);
  Response* open = nullptr;  // result set waiting for its CommandComplete
  while (!r.done()) {
    char type = r.u8();
    uint32_t len = r.u32();
    size_t end = r.pos() + len - 4;
    switch (type) {
      case 'T': {
        EXPECT_EQ(open, nullptr) << "RowDescription inside a result set";
        out.push_back({});
        open = &out.back();
        open->kind = 'T';
        uint16_t n = r.u16();
        for (uint16_t i = 0; i < n; ++i) {
          open->columns.push_back(r.cstr());
          r.u32();  // table oid
          r.u16();  // attnum
          open->oids.push_back(r.u32());
          r.u16();  // typlen
          r.u32();  // typmod
          EXPECT_EQ(r.u16(), 0) << "text format";
        }
        break;
      }
      case 'D': {
        EXPECT_NE(open, nullptr) << "DataRow outside a result set";
        if (!open) return out;
        uint16_t n = r.u16();
        EXPECT_EQ(n, open->columns.size());
        std::vector<std::optional<std::string>> row;
        for (uint16_t i = 0; i < n; ++i) {
          uint32_t l = r.u32();
          if (l == 0xffffffffu) {
            row.push_back(std::nullopt);
          } else {
            row.push_back(r.bytes(l));
          }
        }
        open->rows.push_back(std::move(row));
        break;
      }
      case 'C': {
        if (open) {
          open->tag = r.cstr();
          open = nullptr;
        } else {
          out.push_back({});
          out.back().kind = 'C';
          out.back().tag = r.cstr();
        }
        break;
      }
      case 'E': {
        EXPECT_EQ(open, nullptr);
        out.push_back({});
        out.back().kind = 'E';
        while (true) {
          char code = r.u8();
          if (code == 0) break;
          out.back().error[code] = r.cstr();
        }
        break;
      }
      case 'I':
        out.push_back({});
        out.back().kind = 'I';
        break;
      default:
        ADD_FAILURE() << "unexpected message type " << type;
        return out;
    }
    EXPECT_EQ(r.pos(), end) << "message " << type << " length mismatch";
  }
  EXPECT_EQ(open, nullptr) << "result set without CommandComplete";
  return out;
}

// ---- fake actions ----

struct FakeActions : ConsoleActions {
  std::vector<std::string> calls;
  std::string failWith;  // returned by every action when set

  std::string rec(std::string c) {
    calls.push_back(std::move(c));
    return failWith;
  }
  std::string pause(std::string_view db) override { return rec("pause(" + std::string(db) + ")"); }
  std::string resume(std::string_view db) override {
    return rec("resume(" + std::string(db) + ")");
  }
  std::string reload() override { return rec("reload()"); }
  std::string enableBackend(std::string_view n) override {
    return rec("enable(" + std::string(n) + ")");
  }
  std::string disableBackend(std::string_view n) override {
    return rec("disable(" + std::string(n) + ")");
  }
  std::string drainBackend(std::string_view n) override {
    return rec("drain(" + std::string(n) + ")");
  }
  std::string attachBackend(std::string_view n) override {
    return rec("attach(" + std::string(n) + ")");
  }
  std::string promoteBackend(std::string_view n) override {
    return rec("promote(" + std::string(n) + ")");
  }
  std::string switchoverTo(std::string_view n) override {
    return rec("switchover(" + std::string(n) + ")");
  }
  SetResult set(std::string_view k, std::string_view v) override {
    return {rec("set(" + std::string(k) + "=" + std::string(v) + ")"), badValue};
  }
  bool badValue = false;  // set(): failWith is about the value
  std::string shutdown(bool wait) override { return rec(wait ? "shutdown(wait)" : "shutdown()"); }
};

// ---- a hand-built snapshot ----

Snapshot makeSnapshot() {
  auto cfg = std::make_shared<Config>();
  cfg->path = "/etc/pgswitch.toml";
  cfg->adminUsers = {"admin"};
  cfg->poolSize = 25;
  cfg->health.password = "hunter2";
  cfg->backends = {{"pg1", "10.0.0.1", 5432, 1, {}},
                   {"pg2", "10.0.0.2", 5433, 2, {"reporting", "eu"}},
                   {"Pg3", "10.0.0.3", 5434, 1, {}}};
  UserConfig u;
  u.name = "app";
  u.password = "secret";
  cfg->users.push_back(u);

  auto topo = std::make_shared<routing::Topology>();
  topo->version = 7;
  topo->primary = 0;
  for (const auto& b : cfg->backends) {
    routing::BackendInfo bi;
    bi.name = b.name;
    bi.host = b.host;
    bi.port = b.port;
    bi.weight = b.weight;
    bi.tags = b.tags;
    bi.role = routing::Role::Replica;
    bi.timeline = 3;
    topo->backends.push_back(bi);
  }
  topo->backends[0].role = routing::Role::Primary;
  topo->backends[1].lagBytes = 4096;
  topo->backends[1].lagMs = 120;
  topo->backends[2].state = routing::BackendState::Down;

  Snapshot s;
  s.config = cfg;
  s.topology = topo;
  s.pools.push_back(PoolInfo{.backend = "pg1",
                             .database = "appdb",
                             .user = "app",
                             .mode = "transaction",
                             .clientsActive = 3,
                             .clientsWaiting = 1,
                             .serversActive = 2,
                             .serversIdle = 4,
                             .serversConnecting = 1,
                             .serversTotal = 7,
                             .maxWaitMs = 15,
                             .poolSize = 25});
  ClientInfo c1;
  c1.worker = 1;
  c1.id = 42;
  c1.user = "app";
  c1.database = "appdb";
  c1.applicationName = "psql";
  c1.addr = "127.0.0.1:50000";
  c1.state = "active";
  c1.connectedMs = 1234;
  c1.serverId = 9;
  c1.pinned = true;
  c1.pinReason = "LISTEN";
  ClientInfo c2 = c1;
  c2.id = 43;
  c2.serverId = 0;
  c2.pinned = false;
  c2.pinReason = "";
  s.clients = {c1, c2};
  ServerInfo s1;
  s1.id = 9;
  s1.backend = "pg1";
  s1.user = "app";
  s1.database = "appdb";
  s1.state = "active";
  s1.txnStatus = 'T';
  s1.clientId = 42;
  s1.backendPid = 777;
  s1.preparedStatements = 5;
  ServerInfo s2 = s1;
  s2.id = 10;
  s2.clientId = 0;
  s2.state = "idle";
  ServerInfo s3 = s1;
  s3.id = 11;
  s3.backend = "pg2";
  s.servers = {s1, s2, s3};
  s.perBackend.resize(3);
  s.perBackend[0].transactions = 10;
  s.perBackend[0].queries = 20;
  s.perBackend[0].writes = 20;
  s.perBackend[0].bytesIn = 1000;
  s.perBackend[0].bytesOut = 2000;
  s.perBackend[0].latency.add(100);
  s.perBackend[0].latency.add(300);
  s.perBackend[1].transactions = 5;
  s.perBackend[1].queries = 6;
  s.perBackend[1].reads = 6;
  s.perBackend[1].bytesIn = 10;
  s.perBackend[1].bytesOut = 20;
  s.events.push_back({1714564800123, "backend_down", "Pg3", "connection refused"});
  s.uptimeMs = 60000;
  s.clientsTotal = 2;
  return s;
}

class ConsoleTest : public ::testing::Test {
 protected:
  std::vector<Response> run(std::string_view q) {
    last_ = runConsole(q, snap_, actions_);
    return decode(last_.messages);
  }
  Response one(std::string_view q) {
    auto r = run(q);
    EXPECT_EQ(r.size(), 1u) << q;
    return r.empty() ? Response{} : r[0];
  }
  Snapshot snap_ = makeSnapshot();
  FakeActions actions_;
  ConsoleReply last_;
};

using Row = std::vector<std::optional<std::string>>;

TEST_F(ConsoleTest, Help) {
  Response r = one("HELP");
  ASSERT_EQ(r.kind, 'T');
  EXPECT_EQ(r.columns, (std::vector<std::string>{"command", "description"}));
  EXPECT_EQ(r.tag, "SHOW");
  EXPECT_EQ(r.rows.size(), consoleHelp().size());
  for (std::string_view cmd : {"SHOW BACKENDS",
                               "SHOW POOLS",
                               "SHOW CLIENTS",
                               "SHOW SERVERS",
                               "SHOW STATS",
                               "SHOW CONFIG",
                               "SHOW EVENTS",
                               "SHOW COORDINATION",
                               "SHOW VERSION",
                               "PAUSE [db]",
                               "RESUME [db]",
                               "RELOAD",
                               "ENABLE backend",
                               "DISABLE backend",
                               "DRAIN backend",
                               "ATTACH backend",
                               "PROMOTE backend",
                               "SWITCHOVER TO backend",
                               "SET key = value",
                               "SHUTDOWN [WAIT]",
                               "HELP"}) {
    auto* row = r.find(cmd);
    ASSERT_NE(row, nullptr) << cmd;
    EXPECT_FALSE((*row)[1]->empty()) << cmd;
  }
}

TEST_F(ConsoleTest, ShowBackends) {
  Response r = one("SHOW BACKENDS");
  ASSERT_EQ(r.kind, 'T');
  EXPECT_EQ(r.columns, (std::vector<std::string>{"name", "host", "port", "role", "state", "weight",
                                                 "tags", "lag_bytes", "lag_ms", "timeline",
                                                 "server_connections", "reads", "writes"}));
  EXPECT_EQ(r.oids[0], 25u);
  EXPECT_EQ(r.oids[2], 23u);
  EXPECT_EQ(r.oids[7], 20u);
  ASSERT_EQ(r.rows.size(), 3u);
  EXPECT_EQ(r.rows[0], (Row{"pg1", "10.0.0.1", "5432", "primary", "up", "1", "", "0", "0", "3", "2",
                            "0", "20"}));
  EXPECT_EQ(r.rows[1], (Row{"pg2", "10.0.0.2", "5433", "replica", "up", "2", "reporting,eu", "4096",
                            "120", "3", "1", "6", "0"}));
  EXPECT_EQ(r.at("Pg3", "state"), "down");
  EXPECT_EQ(r.at("Pg3", "server_connections"), "0");
  EXPECT_EQ(r.tag, "SHOW");
}

// A backend a reload removed keeps its slot (counters) but is gone for everything else.
TEST_F(ConsoleTest, RemovedBackendIsNotShownOrAccepted) {
  auto topo = std::make_shared<routing::Topology>(*snap_.topology);
  topo->backends[1].state = routing::BackendState::Removed;
  topo->backends[1].role = routing::Role::Unknown;
  snap_.topology = topo;
  Response r = one("SHOW BACKENDS");
  ASSERT_EQ(r.rows.size(), 2u);
  EXPECT_EQ(r.rows[0][0], "pg1");
  EXPECT_EQ(r.rows[1][0], "Pg3");
  Response d = one("DISABLE pg2");
  EXPECT_EQ(d.error['C'], "42704");
  EXPECT_EQ(d.error['H'], "backends: pg1, Pg3");
  EXPECT_TRUE(actions_.calls.empty());
  EXPECT_EQ(one("SHOW STATS").at("pg2", "queries"), "6");  // its counters stay
}

TEST_F(ConsoleTest, ShowBackendsBeforeFirstHealthCheck) {
  snap_.topology = nullptr;
  Response r = one("show backends");
  ASSERT_EQ(r.rows.size(), 3u);
  EXPECT_EQ(r.at("pg2", "role"), "unknown");
  EXPECT_EQ(r.at("pg2", "lag_bytes"), "<null-or-missing>");
  EXPECT_EQ(r.at("pg2", "tags"), "reporting,eu");
}

TEST_F(ConsoleTest, ShowPools) {
  Response r = one("SHOW POOLS");
  EXPECT_EQ(r.columns,
            (std::vector<std::string>{"database", "user", "backend", "pool_mode", "cl_active",
                                      "cl_waiting", "sv_active", "sv_idle", "sv_connecting",
                                      "sv_total", "pool_size", "maxwait_ms"}));
  ASSERT_EQ(r.rows.size(), 1u);
  EXPECT_EQ(r.rows[0],
            (Row{"appdb", "app", "pg1", "transaction", "3", "1", "2", "4", "1", "7", "25", "15"}));
}

TEST_F(ConsoleTest, ShowClients) {
  Response r = one("SHOW CLIENTS");
  EXPECT_EQ(r.columns, (std::vector<std::string>{"id", "worker", "user", "database",
                                                 "application_name", "addr", "state", "age_ms",
                                                 "server_id", "pinned", "pin_reason"}));
  ASSERT_EQ(r.rows.size(), 2u);
  EXPECT_EQ(r.rows[0], (Row{"42", "1", "app", "appdb", "psql", "127.0.0.1:50000", "active", "1234",
                            "9", "t", "LISTEN"}));
  EXPECT_EQ(r.rows[1][8], std::nullopt);  // no server linked
  EXPECT_EQ(r.rows[1][9], "f");
  EXPECT_EQ(r.oids[9], 16u);
}

TEST_F(ConsoleTest, ShowServers) {
  Response r = one("SHOW SERVERS");
  EXPECT_EQ(r.columns,
            (std::vector<std::string>{"id", "worker", "backend", "database", "user", "state",
                                      "txn_status", "age_ms", "idle_ms", "client_id", "backend_pid",
                                      "prepared_statements"}));
  ASSERT_EQ(r.rows.size(), 3u);
  EXPECT_EQ(r.rows[0],
            (Row{"9", "0", "pg1", "appdb", "app", "active", "T", "0", "0", "42", "777", "5"}));
  EXPECT_EQ(r.rows[1][9], std::nullopt);
  EXPECT_EQ(r.at("11", "backend"), "pg2");
}

TEST_F(ConsoleTest, ShowStatsHasTotal) {
  Response r = one("SHOW STATS");
  EXPECT_EQ(r.columns, (std::vector<std::string>{"backend", "transactions", "queries", "reads",
                                                 "writes", "bytes_in", "bytes_out",
                                                 "avg_latency_us", "p99_latency_us"}));
  ASSERT_EQ(r.rows.size(), 4u);
  EXPECT_EQ(r.rows[0], (Row{"pg1", "10", "20", "0", "20", "1000", "2000", "200", "511"}));
  EXPECT_EQ(r.at("Pg3", "queries"), "0");
  EXPECT_EQ(r.rows[3], (Row{"total", "15", "26", "6", "20", "1010", "2020", "200", "511"}));
}

TEST_F(ConsoleTest, ShowConfigMasksPasswords) {
  Response r = one("SHOW CONFIG");
  EXPECT_EQ(r.columns, (std::vector<std::string>{"key", "value", "reloadable"}));
  EXPECT_EQ(r.at("pool.pool_size", "value"), "25");
  EXPECT_EQ(r.at("pool.pool_size", "reloadable"), "t");
  EXPECT_EQ(r.at("server.listen", "value"), "127.0.0.1:6432");
  EXPECT_EQ(r.at("server.listen", "reloadable"), "f");
  EXPECT_EQ(r.at("server.pool_mode", "value"), "session");
  EXPECT_EQ(r.at("server.admin_users", "value"), "admin");
  EXPECT_EQ(r.at("health.password", "value"), "********");
  EXPECT_EQ(r.at("user.app.password", "value"), "********");
  EXPECT_EQ(r.at("user.app.auth", "value"), "scram-sha-256");
  EXPECT_EQ(r.at("backend.pg2.tags", "value"), "reporting, eu");
  EXPECT_EQ(r.at("failover.auto_failover", "value"), "false");
  EXPECT_EQ(r.at("config_file", "value"), "/etc/pgswitch.toml");
  for (const auto& row : r.rows) {
    EXPECT_EQ(row[1]->find("hunter2"), std::string::npos);
    EXPECT_EQ(row[1]->find("secret"), std::string::npos);
  }
}

TEST_F(ConsoleTest, ShowEventsAndVersion) {
  Response e = one("SHOW EVENTS");
  EXPECT_EQ(e.columns, (std::vector<std::string>{"time", "type", "backend", "detail"}));
  ASSERT_EQ(e.rows.size(), 1u);
  EXPECT_EQ(e.rows[0],
            (Row{"2024-05-01T12:00:00.123Z", "backend_down", "Pg3", "connection refused"}));
  Response v = one("SHOW VERSION");
  EXPECT_EQ(v.columns, (std::vector<std::string>{"version"}));
  ASSERT_EQ(v.rows.size(), 1u);
  EXPECT_EQ(v.rows[0][0], "pgswitch 0.1.0");
}

TEST_F(ConsoleTest, ShowCoordination) {
  Response off = one("SHOW COORDINATION");
  EXPECT_EQ(off.columns, (std::vector<std::string>{"key", "value"}));
  ASSERT_EQ(off.rows.size(), 1u);
  EXPECT_EQ(off.rows[0], (Row{"enabled", "no"}));
  snap_.coordination = {true, false, "pgs2:6432",
                        "coordination: not the coordination leader (leader: pgs1:6432)",
                        R"({"primary":"pg2","seq":1})"};
  Response on = one("SHOW COORDINATION");
  ASSERT_EQ(on.rows.size(), 5u);
  EXPECT_EQ(on.at("instance", "value"), "pgs2:6432");
  EXPECT_EQ(on.at("leader", "value"), "no");
  EXPECT_EQ(on.at("may_promote", "value"),
            "no: coordination: not the coordination leader (leader: pgs1:6432)");
  EXPECT_EQ(on.at("last_decision", "value"), R"({"primary":"pg2","seq":1})");
  snap_.coordination.leader = true;
  snap_.coordination.blocker.clear();
  EXPECT_EQ(one("SHOW COORDINATION").at("may_promote", "value"), "yes");
}

TEST_F(ConsoleTest, SyntaxIsForgiving) {
  for (std::string_view q : {"show version", "  Show   Version ;  ", "SHOW VERSION;;",
                             "-- comment\nSHOW VERSION", "/* c */ SHOW /* d */ VERSION;\n"}) {
    Response r = one(q);
    EXPECT_EQ(r.kind, 'T') << q;
    EXPECT_EQ(r.columns, (std::vector<std::string>{"version"})) << q;
  }
}

TEST_F(ConsoleTest, SeveralCommandsAnsweredInTurn) {
  auto r = run("SHOW VERSION; PAUSE; RESUME appdb;");
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0].kind, 'T');
  EXPECT_EQ(r[1].tag, "PAUSE");
  EXPECT_EQ(r[2].tag, "RESUME");
  EXPECT_EQ(actions_.calls, (std::vector<std::string>{"pause()", "resume(appdb)"}));
}

TEST_F(ConsoleTest, ErrorEndsTheQueryString) {
  auto r = run("PAUSE; BOGUS; RESUME");
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].tag, "PAUSE");
  EXPECT_EQ(r[1].kind, 'E');
  EXPECT_EQ(actions_.calls, (std::vector<std::string>{"pause()"}));
}

TEST_F(ConsoleTest, EmptyQuery) {
  for (std::string_view q : {"", "   ", ";", " ; ;\n", "-- only a comment"}) {
    Response r = one(q);
    EXPECT_EQ(r.kind, 'I') << q;
  }
}

TEST_F(ConsoleTest, UnknownCommand) {
  Response r = one("FROBNICATE now");
  ASSERT_EQ(r.kind, 'E');
  EXPECT_EQ(r.error['S'], "ERROR");
  EXPECT_EQ(r.error['C'], "42601");
  EXPECT_NE(r.error['M'].find("unknown command"), std::string::npos);
  EXPECT_NE(r.error['M'].find("FROBNICATE"), std::string::npos);
  EXPECT_EQ(r.error['H'], "try HELP");
  Response s = one("SHOW NOTHING");
  EXPECT_EQ(s.error['C'], "42601");
  EXPECT_FALSE(last_.closeAfter);
}

TEST_F(ConsoleTest, SelectIsRefused) {
  Response r = one("SELECT 1");
  ASSERT_EQ(r.kind, 'E');
  EXPECT_EQ(r.error['C'], "42601");
  EXPECT_FALSE(r.error['H'].empty());
}

TEST_F(ConsoleTest, UnterminatedQuote) {
  Response r = one("PAUSE 'appdb");
  EXPECT_EQ(r.error['C'], "42601");
  EXPECT_TRUE(actions_.calls.empty());
}

TEST_F(ConsoleTest, ExtraArgumentsAreErrors) {
  for (std::string_view q : {"SHOW POOLS extra", "RELOAD now", "HELP me", "PAUSE a b",
                             "ENABLE pg1 pg2", "SHUTDOWN NOW", "SHUTDOWN WAIT WAIT"}) {
    Response r = one(q);
    EXPECT_EQ(r.kind, 'E') << q;
    EXPECT_EQ(r.error['C'], "42601") << q;
  }
  EXPECT_TRUE(actions_.calls.empty());
}

TEST_F(ConsoleTest, PauseResumeReload) {
  PoolInfo other = snap_.pools[0];
  other.database = "AppDb";
  snap_.pools.push_back(other);
  EXPECT_EQ(one("PAUSE").tag, "PAUSE");
  EXPECT_EQ(one("pause \"AppDb\"").tag, "PAUSE");
  EXPECT_EQ(one("RESUME").tag, "RESUME");
  EXPECT_EQ(one("reload;").tag, "RELOAD");
  EXPECT_EQ(actions_.calls,
            (std::vector<std::string>{"pause()", "pause(AppDb)", "resume()", "reload()"}));
}

// stats_users look (every SHOW, HELP) but cannot act: 42501, and nothing reaches the proxy.
TEST_F(ConsoleTest, StatsRoleMayOnlyShow) {
  for (std::string_view q : {"SHOW BACKENDS", "SHOW POOLS", "SHOW CLIENTS", "SHOW SERVERS",
                             "SHOW STATS", "SHOW TOTALS", "SHOW CONFIG", "SHOW EVENTS",
                             "SHOW VERSION", "HELP"}) {
    auto r = decode(runConsole(q, snap_, actions_, ConsoleRole::Stats).messages);
    ASSERT_EQ(r.size(), 1u) << q;
    EXPECT_EQ(r[0].kind, 'T') << q;
  }
  for (std::string_view q : {"PAUSE", "RESUME", "RELOAD", "DISABLE pg1", "SET pool_size = 3",
                             "SHUTDOWN", "PROMOTE pg2", "SWITCHOVER TO pg2"}) {
    auto r = decode(runConsole(q, snap_, actions_, ConsoleRole::Stats).messages);
    ASSERT_EQ(r.size(), 1u) << q;
    EXPECT_EQ(r[0].kind, 'E') << q;
    EXPECT_EQ(r[0].error['C'], "42501") << q;
    EXPECT_EQ(r[0].error['M'].rfind("permission denied to run ", 0), 0u) << r[0].error['M'];
  }
  // The first refused command ends the string, as any error does.
  auto r = decode(runConsole("SHOW VERSION; PAUSE; SHOW VERSION", snap_, actions_,
                             ConsoleRole::Stats).messages);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[1].kind, 'E');
  EXPECT_TRUE(actions_.calls.empty());
}

// A database is known by its pools, its clients, or a routing rule; anything else is a typo.
TEST_F(ConsoleTest, PauseRefusesEmptyAndUnknownDatabases) {
  Response empty = one("PAUSE \"\"");
  EXPECT_EQ(empty.error['C'], "42601");
  EXPECT_EQ(empty.error['M'], "zero-length delimited identifier at or near \"\"\"\"");
  EXPECT_EQ(one("RESUME \"\"").error['C'], "42601");
  Response unknown = one("PAUSE nosuchdb");
  EXPECT_EQ(unknown.error['C'], "3D000");
  EXPECT_EQ(unknown.error['M'], "database \"nosuchdb\" does not exist");
  EXPECT_EQ(unknown.error['H'], "known databases: appdb");
  EXPECT_EQ(one("PAUSE AppDB").error['C'], "3D000");  // names are case-sensitive
  EXPECT_EQ(one("PAUSE pgswitch").error['C'], "55000");
  EXPECT_TRUE(actions_.calls.empty());
  // RESUME of an unknown name: only when it is paused (the fake says it was not).
  actions_.failWith = "database \"nosuchdb\" is not paused";
  EXPECT_EQ(one("RESUME nosuchdb").error['C'], "3D000");
  actions_.failWith.clear();
  EXPECT_EQ(one("RESUME gone").tag, "RESUME");
  // Known: from a client, from a routing rule.
  snap_.pools.clear();
  EXPECT_EQ(one("PAUSE appdb").tag, "PAUSE");  // its clients are still connected
  snap_.clients.clear();
  EXPECT_EQ(one("PAUSE appdb").error['C'], "3D000");
  auto cfg = std::make_shared<Config>(*snap_.config);
  cfg->routing.rules.push_back(RouteRule{"reports", "", "", "reporting"});
  snap_.config = cfg;
  EXPECT_EQ(one("PAUSE reports").tag, "PAUSE");
  EXPECT_EQ(one("PAUSE").tag, "PAUSE");
  EXPECT_EQ(actions_.calls,
            (std::vector<std::string>{"resume(nosuchdb)", "resume(gone)", "pause(appdb)",
                                      "pause(reports)", "pause()"}));
}

TEST_F(ConsoleTest, BackendCommands) {
  EXPECT_EQ(one("ENABLE pg2").tag, "ENABLE");
  EXPECT_EQ(one("DISABLE \"pg2\"").tag, "DISABLE");
  EXPECT_EQ(one("DRAIN pg1").tag, "DRAIN");
  EXPECT_EQ(one("ATTACH pg3").tag, "ATTACH");  // bare names match ignoring case when unique
  EXPECT_EQ(one("PROMOTE Pg3").tag, "PROMOTE");
  EXPECT_EQ(one("SWITCHOVER TO pg2").tag, "SWITCHOVER");
  EXPECT_EQ(one("switchover pg2").tag, "SWITCHOVER");
  EXPECT_EQ(actions_.calls,
            (std::vector<std::string>{"enable(pg2)", "disable(pg2)", "drain(pg1)", "attach(Pg3)",
                                      "promote(Pg3)", "switchover(pg2)", "switchover(pg2)"}));
  EXPECT_FALSE(last_.closeAfter);
}

TEST_F(ConsoleTest, UnknownBackend) {
  for (std::string_view q : {"ENABLE pg9", "DISABLE \"PG1\"", "SWITCHOVER TO nope", "PROMOTE x"}) {
    Response r = one(q);
    ASSERT_EQ(r.kind, 'E') << q;
    EXPECT_EQ(r.error['S'], "ERROR");
    EXPECT_EQ(r.error['C'], "42704") << q;
    EXPECT_NE(r.error['M'].find("does not exist"), std::string::npos);
    EXPECT_EQ(r.error['H'], "backends: pg1, pg2, Pg3");
  }
  Response missing = one("DRAIN");
  EXPECT_EQ(missing.error['C'], "42601");
  EXPECT_EQ(missing.error['H'], "backends: pg1, pg2, Pg3");
  EXPECT_TRUE(actions_.calls.empty());
}

TEST_F(ConsoleTest, BadSetValuesAre22023) {
  actions_.failWith = "invalid value for server.admin_users: must name at least one user";
  actions_.badValue = true;
  Response r = one("SET admin_users = ''");
  EXPECT_EQ(r.error['C'], "22023");
  EXPECT_EQ(r.error['M'], actions_.failWith);
  actions_.badValue = false;
  EXPECT_EQ(one("SET pool_size = 3").error['C'], "55000");  // the proxy refused
}

TEST_F(ConsoleTest, ActionErrorsAre55000) {
  actions_.failWith = "pg2 is not a replica";
  Response r = one("PROMOTE pg2");
  ASSERT_EQ(r.kind, 'E');
  EXPECT_EQ(r.error['S'], "ERROR");
  EXPECT_EQ(r.error['C'], "55000");
  EXPECT_EQ(r.error['M'], "pg2 is not a replica");
  Response s = one("SHUTDOWN");
  EXPECT_EQ(s.error['C'], "55000");
  EXPECT_FALSE(last_.closeAfter);
}

TEST_F(ConsoleTest, SetSettings) {
  EXPECT_EQ(one("SET pool_size = 30").tag, "SET");
  EXPECT_EQ(one("set pool.pool_size to '31'").tag, "SET");
  EXPECT_EQ(one("SET server.log_level='debug'").tag, "SET");
  EXPECT_EQ(one("SET pool.server_reset_query = 'DISCARD ALL; SELECT 1'").tag, "SET");
  EXPECT_EQ(actions_.calls,
            (std::vector<std::string>{"set(pool.pool_size=30)", "set(pool.pool_size=31)",
                                      "set(server.log_level=debug)",
                                      "set(pool.server_reset_query=DISCARD ALL; SELECT 1)"}));
}

TEST_F(ConsoleTest, SetErrors) {
  Response unknown = one("SET nonsense = 1");
  EXPECT_EQ(unknown.error['C'], "42704");
  Response healthUser = one("SET user = 'x'");  // health.user: user.* entries are not settable
  EXPECT_EQ(healthUser.kind, 'C');
  Response fixed = one("SET server.listen = '0.0.0.0:1'");
  EXPECT_EQ(fixed.error['C'], "55000");
  Response noValue = one("SET pool_size");
  EXPECT_EQ(noValue.error['C'], "42601");
  Response twoValues = one("SET pool_size = 1, 2");
  EXPECT_EQ(twoValues.error['C'], "42601");
  Response perBackend = one("SET backend.pg1.weight = 3");
  EXPECT_EQ(perBackend.error['C'], "42704");
  EXPECT_EQ(actions_.calls, (std::vector<std::string>{"set(health.user=x)"}));
}

TEST_F(ConsoleTest, DriverSessionSettingsAreAccepted) {
  for (std::string_view q :
       {"SET client_encoding = 'UTF8'", "SET application_name = 'psql'", "SET DateStyle = ISO, MDY",
        "SET extra_float_digits = 3", "SET SESSION TimeZone TO 'UTC'"}) {
    Response r = one(q);
    EXPECT_EQ(r.kind, 'C') << q;
    EXPECT_EQ(r.tag, "SET") << q;
  }
  EXPECT_TRUE(actions_.calls.empty());
}

TEST_F(ConsoleTest, Shutdown) {
  auto r = run("SHUTDOWN; SHOW VERSION");
  ASSERT_EQ(r.size(), 1u);  // nothing runs after SHUTDOWN
  EXPECT_EQ(r[0].tag, "SHUTDOWN");
  EXPECT_TRUE(last_.closeAfter);
  EXPECT_EQ(one("shutdown wait").tag, "SHUTDOWN");
  EXPECT_TRUE(last_.closeAfter);
  EXPECT_EQ(actions_.calls, (std::vector<std::string>{"shutdown()", "shutdown(wait)"}));
}

TEST_F(ConsoleTest, EmptySnapshot) {
  Snapshot empty;
  for (std::string_view q : {"SHOW BACKENDS", "SHOW POOLS", "SHOW CLIENTS", "SHOW SERVERS",
                             "SHOW STATS", "SHOW CONFIG", "SHOW EVENTS"}) {
    auto r = decode(runConsole(q, empty, actions_).messages);
    ASSERT_EQ(r.size(), 1u) << q;
    EXPECT_EQ(r[0].kind, 'T') << q;
  }
  auto stats = decode(runConsole("SHOW STATS", empty, actions_).messages);
  ASSERT_EQ(stats[0].rows.size(), 1u);
  EXPECT_EQ(stats[0].rows[0][0], "total");
  auto e = decode(runConsole("ENABLE pg1", empty, actions_).messages);
  EXPECT_EQ(e[0].error['C'], "42704");
}

}  // namespace
}  // namespace pgswitch::proxy
