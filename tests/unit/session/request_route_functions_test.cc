// RequestRoute with a database's volatile functions: a read calling one goes to the primary
// (counted), trusted names and unknown catalogs keep reads on replicas, and function DDL asks
// for a fresh read of the catalog (at once and again at the next request).
#include <gtest/gtest.h>

#include "protocol/builder.h"
#include "proxy/config/config.h"
#include "proxy/core/prepared_statements.h"
#include "proxy/session/request_route.h"
#include "proxy/session/session_state.h"
#include "routing/classifier.h"
#include "routing/volatile_functions.h"

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
  routing::VolatileFunctions fns;

  explicit Fixture(routing::ClassifierOptions opts = {}) : classifier(std::move(opts)) {
    cfg.poolMode = PoolMode::Transaction;
    cfg.routing.readWriteSplit = true;
    fns.names = {"my_write_fn", "random_user_fn"};
  }
  // Decides one simple Query; true when it goes to the primary.
  bool query(std::string_view sql, const routing::VolatileFunctions* f) {
    std::string q;
    appendQuery(q, sql);
    in.append(q);
    EXPECT_TRUE(route.decide(in, cfg, classifier, names, state, 0, f));
    in.consume(in.size());
    return route.forWrite();
  }
};

TEST(RequestRouteFunctions, VolatileCallGoesToThePrimary) {
  Fixture f;
  EXPECT_TRUE(f.query("SELECT my_write_fn()", &f.fns));
  EXPECT_TRUE(f.route.takeFunctionNotes().toPrimary);
  EXPECT_FALSE(f.route.canRetryOnPrimary());  // on the primary: no 25006 retry needed
  EXPECT_TRUE(f.query("select app.MY_WRITE_FN(1) from t where id in (select 1)", &f.fns));
  EXPECT_TRUE(f.route.takeFunctionNotes().toPrimary);
  EXPECT_FALSE(f.route.takeFunctionNotes().toPrimary);  // taken: cleared
}

TEST(RequestRouteFunctions, OtherReadsStayOnReplicas) {
  Fixture f;
  EXPECT_FALSE(f.query("SELECT lower(name) FROM users", &f.fns));
  EXPECT_FALSE(f.route.takeFunctionNotes().toPrimary);
  // Not known yet: as before the lookup existed (the 25006 retry is the net).
  EXPECT_FALSE(f.query("SELECT my_write_fn()", nullptr));
  EXPECT_TRUE(f.route.canRetryOnPrimary());
  // The client's explicit replica hint wins.
  EXPECT_FALSE(f.query("/* pgswitch: replica */ SELECT my_write_fn()", &f.fns));
}

TEST(RequestRouteFunctions, TrustedFunctionsStayOnReplicas) {
  routing::ClassifierOptions opts;
  opts.readOnlyFunctions = {"random_user_fn"};
  Fixture f(opts);
  EXPECT_FALSE(f.query("SELECT random_user_fn()", &f.fns));
  EXPECT_TRUE(f.query("SELECT random_user_fn(), my_write_fn()", &f.fns));
}

TEST(RequestRouteFunctions, WritesAreNotCountedAsVolatileRoutes) {
  Fixture f;
  EXPECT_TRUE(f.query("INSERT INTO t VALUES (my_write_fn())", &f.fns));
  EXPECT_FALSE(f.route.takeFunctionNotes().toPrimary);
  f.cfg.routing.readWriteSplit = false;
  EXPECT_TRUE(f.query("SELECT my_write_fn()", &f.fns));
  EXPECT_FALSE(f.route.takeFunctionNotes().toPrimary);
}

TEST(RequestRouteFunctions, ExtendedProtocolBatch) {
  Fixture f;
  std::string b;
  appendParse(b, "", std::string("SELECT my_write_fn()\0\0\0", 23));
  appendSync(b);
  f.in.append(b);
  ASSERT_TRUE(f.route.decide(f.in, f.cfg, f.classifier, f.names, f.state, 0, &f.fns));
  EXPECT_TRUE(f.route.forWrite());
  EXPECT_TRUE(f.route.takeFunctionNotes().toPrimary);
}

TEST(RequestRouteFunctions, FunctionDdlAsksForAFreshCatalog) {
  Fixture f;
  f.query(
      "CREATE OR REPLACE FUNCTION my_write_fn() RETURNS int LANGUAGE plpgsql AS "
      "$$ BEGIN INSERT INTO t DEFAULT VALUES; RETURN 1; END $$",
      nullptr);
  EXPECT_TRUE(f.route.takeFunctionNotes().catalogChanged);
  // Its transaction is over once the next request is decided: once more, then no longer.
  f.query("SELECT 1", nullptr);
  EXPECT_TRUE(f.route.takeFunctionNotes().catalogChanged);
  f.query("SELECT 1", nullptr);
  EXPECT_FALSE(f.route.takeFunctionNotes().catalogChanged);
  f.query("DROP TABLE t", nullptr);
  EXPECT_FALSE(f.route.takeFunctionNotes().catalogChanged);
}

}  // namespace
}  // namespace pgswitch::proxy

namespace pgswitch::proxy {
namespace {

// A request pipelined behind a read on a replica is forwarded there only if it is a read;
// one calling a volatile function waits and is routed afresh (to the primary).
TEST(RequestRouteFunctions, PipelinedVolatileCallCountsAsAWrite) {
  Fixture f;
  std::string q;
  protocol::appendQuery(q, "SELECT my_write_fn()");
  f.in.append(q);
  EXPECT_EQ(f.route.firstStatementWrites(f.in, f.cfg, f.classifier, f.names), 0);
  EXPECT_EQ(f.route.firstStatementWrites(f.in, f.cfg, f.classifier, f.names, &f.fns), 1);
  f.in.consume(f.in.size());
  q.clear();
  protocol::appendQuery(q, "SELECT lower('A')");
  f.in.append(q);
  EXPECT_EQ(f.route.firstStatementWrites(f.in, f.cfg, f.classifier, f.names, &f.fns), 0);
}

}  // namespace
}  // namespace pgswitch::proxy
