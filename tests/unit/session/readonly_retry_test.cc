// ReadOnlyRetry fed server message sequences, and RequestRoute's retry on the primary: a lone
// read that wrote on a replica (25006) is taken back only while nothing reached the client.
#include "proxy/session/readonly_retry.h"

#include <gtest/gtest.h>

#include "protocol/builder.h"
#include "protocol/messages.h"
#include "proxy/config/config.h"
#include "proxy/core/prepared_statements.h"
#include "proxy/session/request_route.h"
#include "proxy/session/session_state.h"
#include "routing/classifier.h"

namespace pgswitch::proxy {
namespace {

using namespace protocol;
using Step = ReadOnlyRetry::Step;

// One message: type, SQLSTATE (errors), ReadyForQuery status, whether the request is alone.
struct Msg {
  char type;
  std::string_view code = {};
  char ready = 0;
  bool alone = true;
  size_t total = 20;
  bool complete = true;
};

// The steps as a string: F forward, H hold, R release, X retry.
std::string feed(ReadOnlyRetry& r, std::initializer_list<Msg> msgs) {
  std::string out;
  for (const Msg& m : msgs) {
    Step s = r.onMessage(m.type, m.complete, m.total, m.code, m.ready, m.alone);
    out += s == Step::Forward   ? 'F'
           : s == Step::Hold    ? 'H'
           : s == Step::Release ? 'R'
                                : 'X';
  }
  return out;
}

TEST(ReadOnlyRetry, OffForwardsEverything) {
  ReadOnlyRetry r;
  EXPECT_EQ(
      feed(r, {{be::RowDescription}, {be::ErrorResponse, "25006"}, {be::ReadyForQuery, {}, 'I'}}),
      "FFF");
}

TEST(ReadOnlyRetry, ReadThatWroteIsRetried) {
  ReadOnlyRetry r;
  r.arm();
  EXPECT_EQ(
      feed(r, {{be::RowDescription}, {be::ErrorResponse, "25006"}, {be::ReadyForQuery, {}, 'I'}}),
      "HHX");
  EXPECT_FALSE(r.active());
  r.arm();  // without a RowDescription (a statement that returns no rows)
  EXPECT_EQ(feed(r, {{be::ErrorResponse, "25006"}, {be::ReadyForQuery, {}, 'I'}}), "HX");
}

TEST(ReadOnlyRetry, RecoveryConflictBeforeRowsIsRetried) {
  ReadOnlyRetry r;
  r.arm();
  EXPECT_EQ(
      feed(r, {{be::RowDescription}, {be::ErrorResponse, "40001"}, {be::ReadyForQuery, {}, 'I'}}),
      "HHX");
  EXPECT_TRUE(r.recoveryConflict());
  r.arm();  // after rows: the client sees the conflict, as on PostgreSQL
  EXPECT_EQ(feed(r, {{be::RowDescription}, {be::DataRow}, {be::ErrorResponse, "40001"},
                     {be::ReadyForQuery, {}, 'I'}}),
            "HRFF");
  r.arm();
  EXPECT_EQ(feed(r, {{be::ErrorResponse, "25006"}, {be::ReadyForQuery, {}, 'I'}}), "HX");
  EXPECT_FALSE(r.recoveryConflict());
}


TEST(ReadOnlyRetry, RowsReleaseTheHeldDescription) {
  ReadOnlyRetry r;
  r.arm();
  std::string t;
  appendReadyForQuery(t, 'I');  // any bytes
  EXPECT_EQ(feed(r, {{be::RowDescription}}), "H");
  r.hold(asBytes(t));
  EXPECT_EQ(feed(r, {{be::DataRow}}), "R");
  EXPECT_EQ(r.held(), t);
  EXPECT_FALSE(r.active());
  EXPECT_EQ(feed(r, {{be::ErrorResponse, "25006"}, {be::ReadyForQuery, {}, 'I'}}), "FF");
}

TEST(ReadOnlyRetry, OtherErrorsAndNoticesGoThrough) {
  ReadOnlyRetry r;
  r.arm();
  EXPECT_EQ(feed(r, {{be::ErrorResponse, "42P01"}, {be::ReadyForQuery, {}, 'I'}}), "FF");
  r.arm();
  EXPECT_EQ(feed(r, {{be::NoticeResponse}, {be::ErrorResponse, "25006"}}), "FF");
  r.arm();  // nothing held yet: the first message is forwarded as usual
  EXPECT_EQ(feed(r, {{be::CommandComplete}}), "F");
}

TEST(ReadOnlyRetry, ErrorReleasedWhenItCannotBeTakenBack) {
  ReadOnlyRetry r;
  r.arm();  // inside a transaction the client opened in the same Query
  EXPECT_EQ(feed(r, {{be::ErrorResponse, "25006"}, {be::ReadyForQuery, {}, 'E'}}), "HR");
  r.arm();  // a pipelined request is owed on the same server
  EXPECT_EQ(feed(r, {{be::ErrorResponse, "25006"}, {be::ReadyForQuery, {}, 'I', false}}), "HR");
  r.arm();  // something between the error and its ReadyForQuery
  EXPECT_EQ(feed(r, {{be::ErrorResponse, "25006"}, {be::NoticeResponse}}), "HR");
}

TEST(ReadOnlyRetry, ReleaseSendsEverythingHeldInOrder) {
  ReadOnlyRetry r;
  r.arm();
  std::string t = "T-bytes", e = "E-bytes";
  EXPECT_EQ(feed(r, {{be::RowDescription}}), "H");
  r.hold(asBytes(t));
  EXPECT_EQ(feed(r, {{be::ErrorResponse, "25006"}}), "H");
  r.hold(asBytes(e));
  EXPECT_EQ(feed(r, {{be::ReadyForQuery, {}, 'T'}}), "R");
  EXPECT_EQ(r.held(), t + e);
  r.arm();
  EXPECT_TRUE(r.held().empty());
}

TEST(ReadOnlyRetry, LargeOrPartialDescriptionIsNotHeld) {
  ReadOnlyRetry r;
  r.arm();
  Msg big{be::RowDescription};
  big.total = ReadOnlyRetry::kHoldLimit + 1;
  EXPECT_EQ(feed(r, {big}), "F");
  EXPECT_FALSE(r.active());
  r.arm();
  Msg part{be::RowDescription};
  part.complete = false;
  EXPECT_EQ(feed(r, {part}), "F");
  r.arm();  // a second RowDescription (multi-statement Query) releases the first
  EXPECT_EQ(feed(r, {{be::RowDescription}, {be::RowDescription}}), "HR");
}

TEST(RequestRoute, ReadThatWroteGoesToThePrimaryOnce) {
  Config cfg;
  cfg.poolMode = PoolMode::Transaction;
  cfg.routing.readWriteSplit = true;
  routing::Classifier classifier;
  ClientStatements names;
  SessionState state;
  RequestRoute route;
  ChunkPool pool;
  ByteQueue in(pool);
  std::string q;
  appendQuery(q, "select my_write_fn()");
  in.append(q);
  ASSERT_TRUE(route.decide(in, cfg, classifier, names, state, 0));
  EXPECT_FALSE(route.forWrite());
  EXPECT_TRUE(route.canRetryOnPrimary());
  in.consume(in.size());  // forwarded to the replica
  std::string next;
  appendQuery(next, "select 2");
  in.append(next);   // the client's next request, not forwarded yet
  route.answered();  // the replica answered (its 25006): the copy stays usable
  ASSERT_TRUE(route.retryOnPrimary(in));
  EXPECT_EQ(in.size(), q.size() + next.size());
  ASSERT_TRUE(route.decide(in, cfg, classifier, names, state, 0));
  EXPECT_TRUE(route.forWrite());  // forced to the primary
  EXPECT_FALSE(route.canRetryOnPrimary());
  EXPECT_FALSE(route.retryOnPrimary(in));  // never twice
  in.consume(q.size());
  ASSERT_TRUE(route.decide(in, cfg, classifier, names, state, 0));
  EXPECT_FALSE(route.forWrite());  // the next read is routed as usual
  // A read whose replica did not catch up in time goes to the primary as a read (no commit
  // LSN after it).
  route.readOnPrimary();
  routing::Topology topo;
  topo.backends.resize(2);
  topo.primary = 0;
  topo.backends[0].role = routing::Role::Primary;
  topo.backends[1].role = routing::Role::Replica;
  ReplayPositions learned;
  auto pick = route.pick(topo, cfg, learned, {}, 1);
  EXPECT_EQ(pick.index, 0);
  EXPECT_FALSE(route.forWrite());
  EXPECT_FALSE(route.wantsCommitLsn(cfg));
}

TEST(RequestRoute, WritesAndExtendedProtocolKeepNoCopy) {
  Config cfg;
  cfg.poolMode = PoolMode::Transaction;
  cfg.routing.readWriteSplit = true;
  routing::Classifier classifier;
  ClientStatements names;
  SessionState state;
  RequestRoute route;
  ChunkPool pool;
  ByteQueue in(pool);
  std::string q;
  appendQuery(q, "insert into t values (1)");
  in.append(q);
  ASSERT_TRUE(route.decide(in, cfg, classifier, names, state, 0));
  EXPECT_TRUE(route.forWrite());
  EXPECT_FALSE(route.canRetryOnPrimary());
}

}  // namespace
}  // namespace pgswitch::proxy
