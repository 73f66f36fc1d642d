// Unit tests for the statements transaction replay must recognise (routing/session_sql.h):
// a commit whose outcome is uncertain, a lone BEGIN, a text that may hold several statements.
#include "routing/session_sql.h"

#include <gtest/gtest.h>

namespace pgswitch::routing {
namespace {

TEST(SessionSqlReplay, PrepareTransactionIsAsUncertainAsCommit) {
  EXPECT_TRUE(routing::isCommit("PREPARE TRANSACTION 'tx-1'"));
  EXPECT_TRUE(routing::isCommit("  prepare /* c */ transaction 'x'"));
  EXPECT_FALSE(routing::isCommit("PREPARE stmt AS SELECT 1"));
  EXPECT_FALSE(routing::isCommit("PREPARE transactions AS SELECT 1"));
}

TEST(SessionSqlReplay, LoneBegin) {
  EXPECT_TRUE(routing::isLoneBegin("BEGIN"));
  EXPECT_TRUE(routing::isLoneBegin("begin;"));
  EXPECT_TRUE(routing::isLoneBegin(" START TRANSACTION ISOLATION LEVEL SERIALIZABLE ; ;\n"));
  EXPECT_TRUE(routing::isLoneBegin("/* app */ BEGIN READ WRITE"));
  EXPECT_FALSE(routing::isLoneBegin("BEGIN; INSERT INTO t VALUES (1)"));
  EXPECT_FALSE(routing::isLoneBegin("BEGIN; INSERT INTO t VALUES (1); COMMIT"));
  EXPECT_FALSE(routing::isLoneBegin("BEGIN /* ; */"));  // unsure: no
  EXPECT_FALSE(routing::isLoneBegin("INSERT INTO t VALUES (1)"));
  EXPECT_FALSE(routing::isLoneBegin("COMMIT"));
  EXPECT_FALSE(routing::isLoneBegin(""));
}

TEST(SessionSqlReplay, SeveralStatements) {
  EXPECT_FALSE(routing::mayHoldSeveralStatements("UPDATE t SET v = 1"));
  EXPECT_FALSE(routing::mayHoldSeveralStatements("UPDATE t SET v = 1;  ;\n"));
  EXPECT_TRUE(routing::mayHoldSeveralStatements("UPDATE t SET v = 1; COMMIT"));
  EXPECT_TRUE(routing::mayHoldSeveralStatements("SELECT ';'"));  // unsure: several
}

}  // namespace
}  // namespace pgswitch::routing
