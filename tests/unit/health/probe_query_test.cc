// Probe statement data: LSN parsing, connection-string quoting, result-row parsing; and the
// rendering of events for logs and hook environments.
#include "health/probe_query.h"

#include <gtest/gtest.h>

#include "health/events.h"

namespace pgswitch::health {
namespace {

using Row = std::vector<std::optional<std::string>>;

TEST(Lsn, ParseAndFormat) {
  EXPECT_EQ(parseLsn("0/0"), 0u);
  EXPECT_EQ(parseLsn("16/B374D848"), 0x16B374D848ull);
  EXPECT_EQ(parseLsn("FFFFFFFF/FFFFFFFF"), 0xFFFFFFFFFFFFFFFFull);
  EXPECT_EQ(parseLsn("0/30000d8"), 0x30000D8u);
  for (const char* bad :
       {"", "/", "1/", "/1", "12", "1/2/3", "G/1", "123456789/0", " 1/2", "1/2 ", "-1/2"}) {
    EXPECT_FALSE(parseLsn(bad).has_value()) << bad;
  }
  EXPECT_EQ(formatLsn(0x16B374D848ull), "16/B374D848");
  EXPECT_EQ(formatLsn(0), "0/0");
}

// An insert position right after a page header (nothing on the page yet) is the page
// boundary for a replica's replay LSN; anything else is left alone.
TEST(Lsn, InsertPositionAsRecordEnd) {
  EXPECT_EQ(insertLsnAsRecordEnd(0x4000028), 0x4000000u);  // segment start: long header
  EXPECT_EQ(insertLsnAsRecordEnd(0x4002018), 0x4002000u);  // page start: short header
  EXPECT_EQ(insertLsnAsRecordEnd(0x4002000), 0x4002000u);
  EXPECT_EQ(insertLsnAsRecordEnd(0x4002030), 0x4002030u);
  EXPECT_EQ(insertLsnAsRecordEnd(0x16B374D848ull), 0x16B374D848ull);
}

TEST(ConnString, QuotesEveryValue) {
  EXPECT_EQ(quoteConnValue(""), "''");
  EXPECT_EQ(quoteConnValue("a b"), "'a b'");
  EXPECT_EQ(quoteConnValue("it's"), "'it\\'s'");
  EXPECT_EQ(quoteConnValue("back\\slash"), "'back\\\\slash'");
  PgLogin s = PgLogin::as("mon itor", "db");
  s.password = "p'w\\d";
  EXPECT_EQ(connectionString(s, "10.0.0.1", 6543),
            "host='10.0.0.1' port='6543' user='mon itor' password='p\\'w\\\\d' dbname='db' "
            "application_name='pgswitch_health'");
  s.password.clear();
  EXPECT_EQ(connectionString(s, "10.0.0.1", 6543).find("password"), std::string::npos);
  s.sslmode = "verify-full";
  s.sslrootcert = "/etc/ca.pem";
  EXPECT_EQ(connectionString(s, "h", 1, "pgswitch_auth"),
            "host='h' port='1' user='mon itor' dbname='db' application_name='pgswitch_auth' "
            "sslmode='verify-full' sslrootcert='/etc/ca.pem'");
}

TEST(ProbeRow, Primary) {
  auto r = parseProbeRow(
      Row{"f", "2", "0/30001B8", std::nullopt, std::nullopt, std::nullopt, "1700000000123456"});
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_FALSE(r.inRecovery);
  EXPECT_EQ(r.timeline, 2u);
  EXPECT_EQ(r.currentLsn, 0x30001B8u);
  EXPECT_EQ(r.receiveLsn, 0u);
  EXPECT_EQ(r.replayLsn, 0u);
  EXPECT_FALSE(r.hasReplayTimestamp);
  EXPECT_EQ(r.nowUs, 1700000000123456);
}

TEST(ProbeRow, Replica) {
  auto r = parseProbeRow(Row{"t", "1", std::nullopt, "0/3000200", "0/3000100", "1699999999000000",
                             "1700000000000000"});
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_TRUE(r.inRecovery);
  EXPECT_EQ(r.currentLsn, 0u);
  EXPECT_EQ(r.receiveLsn, 0x3000200u);
  EXPECT_EQ(r.replayLsn, 0x3000100u);
  EXPECT_TRUE(r.hasReplayTimestamp);
  EXPECT_EQ(r.lastReplayUs, 1699999999000000);
}

TEST(ProbeRow, Malformed) {
  const Row good{"t", "1", std::nullopt, "0/1", "0/1", std::nullopt, "1"};
  EXPECT_TRUE(parseProbeRow(good).ok);
  EXPECT_FALSE(parseProbeRow(Row{"t", "1"}).ok);
  for (int col = 0; col < kProbeColumns; ++col) {
    Row bad = good;
    bad[col] = "x";
    EXPECT_FALSE(parseProbeRow(bad).ok) << "column " << col;
  }
  Row noNow = good;
  noNow[6] = std::nullopt;
  EXPECT_FALSE(parseProbeRow(noNow).ok);
  Row noTl = good;
  noTl[1] = std::nullopt;
  EXPECT_FALSE(parseProbeRow(noTl).ok);
  Row primaryNoLsn{"f", "1", std::nullopt, std::nullopt, std::nullopt, std::nullopt, "1"};
  auto r = parseProbeRow(primaryNoLsn);
  EXPECT_FALSE(r.ok);
  EXPECT_FALSE(r.error.empty());
}

TEST(ProbeQuery, GuardsPrimaryOnlyFunctions) {
  std::string q = kProbeQuery;
  EXPECT_NE(q.find("pg_is_in_recovery()"), std::string::npos);
  EXPECT_NE(q.find("CASE WHEN r.rec THEN NULL ELSE pg_current_wal_lsn() END"), std::string::npos);
  EXPECT_NE(q.find("pg_stat_wal_receiver"), std::string::npos);
}

Event sample() {
  Event e;
  e.type = EventType::BackendDown;
  e.backend = 1;
  e.name = "pg2";
  e.host = "127.0.0.1";
  e.port = 5433;
  e.role = "replica";
  e.detail = "3 consecutive failed checks: said \"no\"\nand left";
  e.timeMs = 1700000000123;
  return e;
}

TEST(Events, Names) {
  EXPECT_STREQ(toString(EventType::BackendUp), "backend_up");
  EXPECT_STREQ(toString(EventType::BackendDown), "backend_down");
  EXPECT_STREQ(toString(EventType::RoleChanged), "role_changed");
  EXPECT_STREQ(toString(EventType::SplitBrain), "split_brain");
  EXPECT_STREQ(toString(EventType::Fenced), "fenced");
  EXPECT_STREQ(toString(EventType::LagExceeded), "lag_exceeded");
}

TEST(Events, Logfmt) {
  EXPECT_EQ(formatLogfmt(sample()),
            "event=backend_down backend=pg2 host=127.0.0.1 port=5433 role=replica "
            "detail=\"3 consecutive failed checks: said \\\"no\\\"\\nand left\"");
  Event e = sample();
  e.name = "";
  e.detail = "plain";
  EXPECT_EQ(formatLogfmt(e),
            "event=backend_down backend=\"\" host=127.0.0.1 port=5433 role=replica detail=plain");
}

TEST(Events, TimeAndEnvironment) {
  EXPECT_EQ(formatTimeUtc(1700000000123), "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(formatTimeUtc(0), "1970-01-01T00:00:00.000Z");
  auto env = eventEnvironment(sample());
  std::vector<std::string> want = {
      "PGSWITCH_EVENT=backend_down",
      "PGSWITCH_BACKEND=pg2",
      "PGSWITCH_HOST=127.0.0.1",
      "PGSWITCH_PORT=5433",
      "PGSWITCH_ROLE=replica",
      "PGSWITCH_DETAIL=3 consecutive failed checks: said \"no\"\nand left",
      "PGSWITCH_TIME=2023-11-14T22:13:20.123Z",
  };
  EXPECT_EQ(env, want);
}

}  // namespace
}  // namespace pgswitch::health
