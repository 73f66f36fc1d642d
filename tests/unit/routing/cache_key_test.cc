// foldNumbers: the classifier cache's key. Numbers fold to one NUL byte each, except the ones
// a rule could read as a boolean ("1", leading zeros); everything that is not a number, and
// every text the scan could lose its place in, is kept or refused.
#include "routing/cache_key.h"

#include <gtest/gtest.h>

#include <string>

namespace pgswitch::routing {
namespace {

std::string fold(std::string_view sql) {
  std::string key;
  EXPECT_TRUE(foldNumbers(sql, key)) << sql;
  return key;
}

bool refused(std::string_view sql) {
  std::string key;
  return !foldNumbers(sql, key);
}

using namespace std::string_literals;

TEST(CacheKey, PgbenchReadsShareOneKey) {
  const std::string a = fold("SELECT abalance FROM pgbench_accounts WHERE aid = 48213;");
  EXPECT_EQ(a, "SELECT abalance FROM pgbench_accounts WHERE aid = \0;"s);
  EXPECT_EQ(fold("SELECT abalance FROM pgbench_accounts WHERE aid = 7;"), a);
  EXPECT_EQ(fold("UPDATE t SET v = v + -4277 WHERE id = 81924"), "UPDATE t SET v = v + -\0 WHERE id = \0"s);
  EXPECT_EQ(fold("SELECT 3.25, 10.5"), "SELECT \0.\0, \0.\0"s);
}

TEST(CacheKey, NumbersARuleCouldReadAsABooleanAreKept) {
  EXPECT_EQ(fold("SET transaction_read_only = 1"), "SET transaction_read_only = 1");
  EXPECT_EQ(fold("SET transaction_read_only = 0"), "SET transaction_read_only = 0");
  EXPECT_EQ(fold("SET transaction_read_only = 01"), "SET transaction_read_only = 01");
  EXPECT_EQ(fold("EXPLAIN (ANALYZE 1) SELECT 1"), "EXPLAIN (ANALYZE 1) SELECT 1");
  EXPECT_NE(fold("SET transaction_read_only = 1"), fold("SET transaction_read_only = 2"));
  EXPECT_EQ(fold("SELECT 0.5"), "SELECT 0.\0"s);
}

TEST(CacheKey, WhatIsNotANumberIsKept) {
  const std::string_view kept[] = {
      "SELECT t1.c2 FROM t1",                  // identifiers
      "SELECT $1, $23",                        // parameters
      "SELECT 'abc 123', 'it''s 42'",          // strings
      "SELECT \"col 42\" FROM \"t\"\"9\"",     // quoted identifiers
      "/* pgswitch: tag=r42 */ SELECT x",      // hints live in comments
      "SELECT x -- 42\n",                      // line comment
      "SELECT x /* 1 /* 42 */ 43 */ FROM t",   // nested block comment
      "SELECT 1e5, 0x1F, 1_000",               // "1", leading zero, then identifier characters
      "SELECT café42",                         // non-ASCII continues an identifier
      "SELECT a$1",                            // a word's $ and digits
  };
  for (std::string_view sql : kept) EXPECT_EQ(fold(sql), sql);
  EXPECT_EQ(fold("SELECT 'x' || 42 -- 7\n, 8"), "SELECT 'x' || \0 -- 7\n, \0"s);
}

// The scan copies runs of plain bytes whole and stops at what its state must look at: each
// state's ends, and what follows them, are where a run-at-a-time scan could go wrong.
TEST(CacheKey, StateBoundariesWithinAndAtTheEndsOfRuns) {
  EXPECT_EQ(fold("42"), "\0"s);
  EXPECT_EQ(fold("SELECT 42"), "SELECT \0"s);
  EXPECT_EQ(fold("x-7 - 8/9-"), "x-\0 - \0/\0-"s);
  EXPECT_EQ(fold("x--42\n7"), "x--42\n\0"s);
  EXPECT_EQ(fold("x--42\r7"), "x--42\r\0"s);
  EXPECT_EQ(fold("'a''b 3'42"), "'a''b 3'\0"s);
  EXPECT_EQ(fold("\"a\"\"b 3\"42"), "\"a\"\"b 3\"\0"s);
  EXPECT_EQ(fold("/*/**/ 3 * / */7"), "/*/**/ 3 * / */\0"s);
  EXPECT_EQ(fold("/* 5 */"), "/* 5 */");
  EXPECT_EQ(fold("'unterminated 42"), "'unterminated 42");
  EXPECT_EQ(fold("t9 9t $9 9"), "t9 \0t $9 \0"s);
  EXPECT_TRUE(refused("SELECT 'a\\'"));     // a backslash inside a string
  EXPECT_TRUE(refused("-- \\\nSELECT 1"));  // and inside a comment
}

TEST(CacheKey, TextsTheScanCouldMisreadGetNoKey) {
  EXPECT_TRUE(refused("SELECT E'it\\'s 42'"));      // backslash escapes
  EXPECT_TRUE(refused("DO $$ BEGIN PERFORM 42; END $$"));
  EXPECT_TRUE(refused("SELECT $tag$ 42 $tag$"));
  EXPECT_TRUE(refused("SELECT a$b FROM t"));
  EXPECT_TRUE(refused("SELECT 42\0; DELETE FROM t"s));
  EXPECT_FALSE(refused(""));
  EXPECT_FALSE(refused("SELECT '"));  // unterminated: the classifier decides what it is
}

}  // namespace
}  // namespace pgswitch::routing
