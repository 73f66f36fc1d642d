// SessionState fed classifications, tags and statuses, no sockets: which settings follow the
// client, what pins it, what is read back, the SQL that configures a server.
#include "proxy/session/session_state.h"

#include <gtest/gtest.h>

#include "routing/classifier.h"

namespace pgswitch::proxy {
namespace {

using protocol::CommandTag;

routing::Classification classify(std::string_view sql) {
  return routing::classifyUncached(sql, {});
}

// Runs one statement the way the relay does: classified, then its tag, then ReadyForQuery.
void run(SessionState& s, std::string_view sql, CommandTag tag, const ServerParams& reported = {},
         bool carry = true) {
  s.noteStatement(classify(sql), sql, reported, carry);
  s.onCommandTag(tag, carry);
}

const ServerParams kReported = {{"application_name", "app"}, {"client_encoding", "UTF8"},
                                {"DateStyle", "ISO, MDY"}, {"TimeZone", "UTC"}};

TEST(SessionState, StartupSettingsAndHash) {
  SessionState s;
  s.start({{"application_name", "a"}, {"search_path", "x,public"}});
  EXPECT_EQ(s.setting("search_path"), "x,public");
  EXPECT_EQ(s.setting("nope"), "");
  uint64_t h = s.settingsHash();
  EXPECT_NE(h, 0u);
  SessionState t;
  t.start({{"application_name", "a"}, {"search_path", "x,public"}});
  EXPECT_EQ(t.settingsHash(), h);
  t.onParameterStatus("application_name", "b");
  EXPECT_NE(t.settingsHash(), h);
}

TEST(SessionState, ConfigureSqlSetsWhatDiffersAndResetsLeftovers) {
  SessionState s;
  s.start({{"search_path", "a,public"}, {"client_encoding", "UTF8"}});
  std::map<std::string, std::string> applied = {{"work_mem", "64MB"}};
  std::string sql, bad;
  ASSERT_TRUE(s.configureSql(applied, kReported, sql, bad));
  // client_encoding is already what the server reports: no SET for it.
  EXPECT_EQ(sql, "SELECT set_config('search_path', 'a,public', false);RESET work_mem;");
  EXPECT_EQ(applied.size(), 1u);
  EXPECT_EQ(applied["search_path"], "a,public");
  sql.clear();
  ASSERT_TRUE(s.configureSql(applied, kReported, sql, bad));
  EXPECT_EQ(sql, "") << "a server already configured needs nothing";
}

TEST(SessionState, ConfigureSqlRefusesBadNames) {
  SessionState s;
  s.start({{"bad name;drop", "x"}});
  std::map<std::string, std::string> applied;
  std::string sql, bad;
  EXPECT_FALSE(s.configureSql(applied, kReported, sql, bad));
  EXPECT_EQ(bad, "bad name;drop");
}

TEST(SessionState, ReportedSettingFollowsTheClient) {
  SessionState s;
  s.start({});
  run(s, "SET application_name = 'x'", CommandTag::Set, kReported);
  EXPECT_TRUE(s.onParameterStatus("application_name", "x"));
  s.onReadyForQuery();
  EXPECT_FALSE(s.pinned());
  EXPECT_EQ(s.setting("application_name"), "x");
  EXPECT_FALSE(s.readbackDue());
}

TEST(SessionState, UnreportedSessionSetIsReadBackInTransactionMode) {
  SessionState s;
  s.start({});
  run(s, "SET work_mem = '8MB'", CommandTag::Set, kReported);
  s.onReadyForQuery();
  EXPECT_FALSE(s.pinned());
  ASSERT_TRUE(s.readbackDue());
  EXPECT_EQ(s.nextReadback(), "work_mem");
  s.onReadback(true, "8MB");
  EXPECT_FALSE(s.readbackDue());
  EXPECT_EQ(s.setting("work_mem"), "8MB");
}

TEST(SessionState, FailedReadbackPins) {
  SessionState s;
  s.start({});
  run(s, "SET work_mem = '8MB'", CommandTag::Set, kReported);
  s.onReadyForQuery();
  s.onReadback(false, "");
  EXPECT_TRUE(s.pinned());
  EXPECT_EQ(s.pinReason(), "SET of work_mem (its value could not be read back)");
}

TEST(SessionState, ReadbackLostWithItsServerPins) {
  SessionState s;
  s.start({});
  run(s, "SET work_mem = '8MB'", CommandTag::Set, kReported);
  s.readbackLost();
  EXPECT_TRUE(s.pinned());
  EXPECT_EQ(s.pinReason(), "SET whose value was lost with its server");
}

TEST(SessionState, UnreportedSetPinsInSessionMode) {
  SessionState s;
  s.start({});
  run(s, "SET work_mem = '8MB'", CommandTag::Set, kReported, /*carry=*/false);
  s.onReadyForQuery();
  EXPECT_TRUE(s.pinned());
  EXPECT_EQ(s.pinReason(), "SET of a parameter PostgreSQL does not report");
}

TEST(SessionState, TransactionScopedAndHarmlessSetsDoNotPin) {
  SessionState s;
  s.start({});
  run(s, "SET LOCAL work_mem = '8MB'", CommandTag::Set, kReported);
  run(s, "SET TRANSACTION READ ONLY", CommandTag::Set, kReported);
  run(s, "SET extra_float_digits = 3", CommandTag::Set, kReported);
  s.onReadyForQuery();
  EXPECT_FALSE(s.pinned());
  EXPECT_FALSE(s.readbackDue());
  run(s, "SET extra_float_digits = 0", CommandTag::Set, kReported, /*carry=*/false);
  s.onReadyForQuery();
  EXPECT_TRUE(s.pinned()) << "0 changes float output: it is real session state";
}

TEST(SessionState, SessionStateStatementsPin) {
  for (auto [sql, reason] : std::vector<std::pair<std::string, std::string>>{
           {"CREATE TEMP TABLE t (a int)", "temporary table"},
           {"SELECT pg_advisory_lock(1)", "session advisory lock"},
           {"DECLARE c CURSOR WITH HOLD FOR SELECT 1", "WITH HOLD cursor"}}) {
    SessionState s;
    s.start({});
    run(s, sql, CommandTag::Other);
    EXPECT_TRUE(s.pinned()) << sql;
    EXPECT_EQ(s.pinReason(), reason) << sql;
  }
}

TEST(SessionState, TagsThatPin) {
  SessionState s;
  s.onCommandTag(CommandTag::Prepare, true);
  EXPECT_EQ(s.pinReason(), "SQL-level PREPARE");
  SessionState l;
  l.onCommandTag(CommandTag::Listen, false);
  EXPECT_EQ(l.pinReason(), "LISTEN") << "session mode: a failover cannot carry it either";
}

TEST(SessionState, PinKeepsTheFirstReason) {
  SessionState s;
  s.pin("LISTEN");
  s.pin("temporary table");
  EXPECT_EQ(s.pinReason(), "LISTEN");
}

TEST(SessionState, PinOnLink) {
  SessionState s;
  s.pinOnLink("temporary table");
  EXPECT_FALSE(s.pinned());
  s.linked();
  EXPECT_TRUE(s.pinned());
  SessionState t;
  t.pinOnLink("temporary table");
  t.pinOnLink(nullptr);  // the next request was routed without it
  t.linked();
  EXPECT_FALSE(t.pinned());
}

TEST(SessionState, DiscardAllReturnsToStartupSettings) {
  SessionState s;
  s.start({{"search_path", "a"}});
  s.onParameterStatus("search_path", "b");
  run(s, "SET work_mem = '8MB'", CommandTag::Set, kReported);
  EXPECT_EQ(s.onCommandTag(CommandTag::DiscardAll, true),
            SessionState::TagEffect::ForgetAllStatements);
  EXPECT_EQ(s.setting("search_path"), "a");
  EXPECT_FALSE(s.readbackDue());
  EXPECT_EQ(s.onCommandTag(CommandTag::DiscardAll, false),
            SessionState::TagEffect::ForgetServerStatements);
  EXPECT_EQ(s.onCommandTag(CommandTag::DeallocateAll, true),
            SessionState::TagEffect::ForgetAllStatements);
}

// The settings and the startup copy are one until the first change; a server confirming a
// value the client already has changes nothing; DISCARD ALL shares the startup copy again.
TEST(SessionState, SettingsShareTheStartupCopyUntilAChange) {
  SessionState s;
  EXPECT_TRUE(s.settings().empty());
  s.start({{"application_name", "a"}, {"search_path", "x"}});
  const Settings* first = &s.settings();
  s.onParameterStatus("application_name", "a");
  EXPECT_EQ(&s.settings(), first);
  s.onParameterStatus("application_name", "b");
  EXPECT_NE(&s.settings(), first);
  EXPECT_EQ(s.setting("application_name"), "b");
  EXPECT_EQ(s.setting("search_path"), "x");
  s.onCommandTag(CommandTag::DiscardAll, true);
  EXPECT_EQ(&s.settings(), first);
  EXPECT_EQ(s.setting("application_name"), "a");
  SessionState none;
  none.start({});
  none.onParameterStatus("TimeZone", "UTC");
  EXPECT_EQ(none.setting("timezone"), "UTC");
}

TEST(SessionState, ParamsToldOnceAndAfterChanges) {
  SessionState s;
  std::string out;
  s.appendAllParams(std::make_shared<ServerParams>(kReported), out);
  EXPECT_FALSE(out.empty());
  out.clear();
  s.appendChangedParams(1, 1, toldDigest(kReported), kReported, out);
  EXPECT_TRUE(out.empty()) << "the client already has these values";
  ServerParams other = kReported;
  other["TimeZone"] = "Europe/Paris";
  other["in_hot_standby"] = "on";  // a property of the server: never sent
  s.appendChangedParams(2, 1, toldDigest(other), other, out);
  EXPECT_NE(out.find("Europe/Paris"), std::string::npos);
  EXPECT_EQ(out.find("in_hot_standby"), std::string::npos);
  out.clear();
  s.appendChangedParams(2, 1, toldDigest(other), other, out);
  EXPECT_TRUE(out.empty()) << "same server, same generation: nothing compared";
}

TEST(SessionState, ClientsToldTheSameShareOneCopyUntilOneChanges) {
  ParamsInterner interner;
  SessionState a, b;
  std::string out;
  a.appendAllParams(interner.intern(kReported), out);
  b.appendAllParams(interner.intern(kReported), out);
  EXPECT_EQ(interner.size(), 1u);
  // a is told another TimeZone (its own SET): its copy becomes its own, b's is untouched.
  EXPECT_FALSE(a.onParameterStatus("TimeZone", "Europe/Paris"));
  ServerParams other = kReported;
  other["TimeZone"] = "Europe/Paris";
  out.clear();
  b.appendChangedParams(7, 1, toldDigest(other), other, out);
  EXPECT_NE(out.find("Europe/Paris"), std::string::npos) << "b was still told UTC";
  out.clear();
  a.appendChangedParams(7, 1, toldDigest(other), other, out);
  EXPECT_TRUE(out.empty()) << "a already has Europe/Paris";
  // A server whose values are those c was told (the digests agree): nothing to tell.
  SessionState c;
  SharedParams same = interner.intern(kReported);
  c.appendAllParams(same, out);
  out.clear();
  ServerParams sameValues = kReported;
  sameValues["in_hot_standby"] = "off";  // not told: does not count
  c.appendChangedParams(8, 1, toldDigest(sameValues), sameValues, out);
  EXPECT_TRUE(out.empty());
  c = SessionState();
  same.reset();
  // Nobody holds the interned copy now: the sweep forgets it.
  interner.sweep();
  EXPECT_EQ(interner.size(), 0u);
}

TEST(ParamsInterner, EqualValuesOneCopyDifferentValuesTwo) {
  ParamsInterner interner;
  SharedParams x = interner.intern(kReported);
  SharedParams y = interner.intern(ServerParams(kReported));
  EXPECT_EQ(x.get(), y.get());
  ServerParams other = kReported;
  other["TimeZone"] = "Europe/Paris";
  SharedParams z = interner.intern(other);
  EXPECT_NE(x.get(), z.get());
  EXPECT_EQ(interner.size(), 2u);
  z.reset();
  interner.sweep();
  EXPECT_EQ(interner.size(), 1u);
  EXPECT_EQ(interner.intern(kReported).get(), x.get());
}

// A fleet's clients log in with the same startup settings: one copy on the worker, and a
// session that changes a setting copies it first (the shared copy, and the other clients' view
// of it, stay as they were).
TEST(SettingsInterner, SessionsShareTheStartupSettingsUntilOneChangesThem) {
  SettingsInterner interner;
  const Settings startup = {{"application_name", "app"}, {"DateStyle", "ISO"}};
  SessionState a, b;
  a.startShared(interner.intern(startup));
  b.startShared(interner.intern(Settings(startup)));
  EXPECT_EQ(&a.settings(), &b.settings());
  EXPECT_EQ(interner.size(), 1u);
  run(a, "SET application_name = 'other'", CommandTag::Set, kReported);
  a.onParameterStatus("application_name", "other");  // what the server reports
  EXPECT_EQ(a.setting("application_name"), "other");
  EXPECT_EQ(b.setting("application_name"), "app");
  EXPECT_EQ(interner.intern(startup)->front().second, "app");
  a = SessionState();
  b = SessionState();
  interner.sweep();
  EXPECT_EQ(interner.size(), 0u);
}

TEST(ClientNamesInterner, OneCopyPerUserAndDatabase) {
  ClientNamesInterner interner;
  auto x = interner.intern({"alice", "shop"});
  EXPECT_EQ(x.get(), interner.intern({"alice", "shop"}).get());
  // The pair, not its concatenation, is the key.
  auto y = interner.intern({"alices", "hop"});
  EXPECT_NE(x.get(), y.get());
  EXPECT_EQ(y->user, "alices");
  y.reset();
  interner.sweep();
  EXPECT_EQ(interner.size(), 1u);
}

}  // namespace
}  // namespace pgswitch::proxy

namespace pgswitch::proxy {
namespace {

// CREATE FUNCTION inside a transaction is seen here (not by the request's routing): the
// session asks for a fresh catalog read once, after that transaction.
TEST(SessionState, FunctionDdlInsideATransactionIsReportedOnce) {
  SessionState s;
  const std::string_view create =
      "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'";
  s.noteStatement(classify("CREATE TABLE t (a int)"), "CREATE TABLE t (a int)", {}, true);
  EXPECT_FALSE(s.takeFunctionsChanged());
  s.noteStatement(classify(create), create, {}, true);
  EXPECT_TRUE(s.takeFunctionsChanged());
  EXPECT_FALSE(s.takeFunctionsChanged());
}

}  // namespace
}  // namespace pgswitch::proxy
