// RequestRoute in session mode with routing.session_reads: autocommit reads may go to a replica,
// transactions (read-only ones too) and session state stay on the primary, set_config() pins
// the session there, and without the setting session mode routes nothing.
#include <gtest/gtest.h>

#include "protocol/builder.h"
#include "proxy/config/config.h"
#include "proxy/core/prepared_statements.h"
#include "proxy/session/request_route.h"
#include "proxy/session/session_state.h"
#include "routing/classifier.h"

namespace pgswitch::proxy {
namespace {

using namespace protocol;

struct Fixture {
  Config cfg;
  routing::Classifier classifier;
  ClientStatements names;
  SessionState state;
  RequestRoute route;
  ChunkPool pool;
  ByteQueue in{pool};

  explicit Fixture(bool sessionReads = true) {
    cfg.poolMode = PoolMode::Session;
    cfg.routing.readWriteSplit = true;
    cfg.routing.sessionReads = sessionReads;
  }
  // Decides one simple Query; true when it goes to the primary.
  bool query(std::string_view sql) {
    std::string q;
    appendQuery(q, sql);
    in.append(q);
    EXPECT_TRUE(route.decide(in, cfg, classifier, names, state, 0));
    in.consume(in.size());
    return route.forWrite();
  }
  // What the relay asks of a request pipelined behind one on a replica.
  int pipelinedWrites(std::string_view sql) {
    std::string q;
    appendQuery(q, sql);
    in.append(q);
    int w = route.firstStatementWrites(in, cfg, classifier, names);
    in.consume(in.size());
    return w;
  }
};

TEST(RequestRouteSessionReads, ConfigSaysWhoRoutes) {
  Config c;
  c.poolMode = PoolMode::Session;
  EXPECT_FALSE(c.sessionReads());
  EXPECT_FALSE(c.routesRequests());
  c.routing.sessionReads = true;
  EXPECT_TRUE(c.sessionReads());
  EXPECT_TRUE(c.routesRequests());
  c.poolMode = PoolMode::Transaction;
  EXPECT_FALSE(c.sessionReads());  // transaction mode routes anyway
  EXPECT_TRUE(c.routesRequests());
}

TEST(RequestRouteSessionReads, AutocommitReadsToReplicasTheRestToThePrimary) {
  Fixture f;
  EXPECT_FALSE(f.query("SELECT * FROM t"));
  EXPECT_TRUE(f.route.canRetryOnPrimary());  // a lone read: the 25006 retry is armed
  EXPECT_FALSE(f.query("SHOW search_path"));
  EXPECT_TRUE(f.query("INSERT INTO t VALUES (1)"));
  EXPECT_TRUE(f.query("BEGIN"));
  EXPECT_TRUE(f.query("BEGIN READ ONLY"));  // the transaction stays on the session's server
  EXPECT_TRUE(f.query("SET search_path = a"));
  EXPECT_TRUE(f.query("DECLARE c CURSOR WITH HOLD FOR SELECT 1"));
  EXPECT_FALSE(f.state.pinned());
}

TEST(RequestRouteSessionReads, ReadOnlySessionTransactionsStayOnThePrimary) {
  Fixture f;
  f.state.start({{"default_transaction_read_only", "on"}});
  EXPECT_TRUE(f.query("BEGIN"));
  EXPECT_FALSE(f.query("SELECT 1"));
}

TEST(RequestRouteSessionReads, SetConfigPinsTheSessionToThePrimary) {
  Fixture f;
  EXPECT_TRUE(f.query("SELECT set_config('app.tenant', '42', false)"));
  EXPECT_FALSE(f.state.pinned());
  f.state.linked();  // the server it runs on keeps the session from now on
  EXPECT_TRUE(f.state.pinned());
  EXPECT_EQ(f.state.pinReason(), "set_config()");
}

TEST(RequestRouteSessionReads, TransactionModeKeepsItsSetConfigBehaviour) {
  Fixture f;
  f.cfg.poolMode = PoolMode::Transaction;
  EXPECT_TRUE(f.query("SELECT set_config('app.tenant', '42', false)"));
  f.state.linked();
  EXPECT_FALSE(f.state.pinned());
  EXPECT_FALSE(f.query("BEGIN READ ONLY"));
}

TEST(RequestRouteSessionReads, PipelinedTransactionsAndStateWaitForThePrimary) {
  Fixture f;
  EXPECT_EQ(f.pipelinedWrites("SELECT 1"), 0);
  EXPECT_EQ(f.pipelinedWrites("BEGIN READ ONLY"), 1);
  EXPECT_EQ(f.pipelinedWrites("SET application_name = 'x'"), 1);
  EXPECT_EQ(f.pipelinedWrites("SELECT set_config('a.b', '1', false)"), 1);
  f.cfg.poolMode = PoolMode::Transaction;
  EXPECT_EQ(f.pipelinedWrites("BEGIN READ ONLY"), 0);
}

TEST(RequestRouteSessionReads, OffSessionModeIsNotRouted) {
  Fixture f(false);
  EXPECT_TRUE(f.query("SELECT * FROM t"));
  EXPECT_TRUE(f.query("SELECT 1"));
}

}  // namespace
}  // namespace pgswitch::proxy
