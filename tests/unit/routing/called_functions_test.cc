// Unit tests for the function names a Classification reports (routing/called_functions.h),
// through the lexer path and through libpg_query, the function-DDL flag, and the volatility
// lookup (routing/volatile_functions.h).
#include "routing/called_functions.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "routing/classifier.h"
#include "routing/pg_parser_fallback.h"
#include "routing/volatile_functions.h"

namespace pgswitch::routing {
namespace {

using Names = std::vector<std::string>;

Names sorted(Names v) {
  std::sort(v.begin(), v.end());
  return v;
}

Names calls(std::string_view sql, const ClassifierOptions& opts = {}) {
  return sorted(classifyUncached(sql, opts).calledFunctions);
}

struct CallCase {
  std::string_view sql;
  Names want;
};

// Every case is decided by the lexer path, and libpg_query must report the same names.
const CallCase kCalls[] = {
    {"SELECT my_write_fn()", {"my_write_fn"}},
    {"select MY_WRITE_FN(1, 'x')", {"my_write_fn"}},
    {"SELECT app.my_fn(1)", {"my_fn"}},
    {"SELECT db.app.my_fn(1)", {"my_fn"}},
    {"SELECT \"MyFn\"(1)", {"myfn"}},
    {"SELECT \"app\".\"Audit\"(1)", {"audit"}},
    {"SELECT outer_fn(middle_fn(inner_fn(1)))", {"inner_fn", "middle_fn", "outer_fn"}},
    {"SELECT f(1), F(2), app.f(3)", {"f"}},
    {"SELECT * FROM t WHERE id IN (SELECT sub_fn(x) FROM u)", {"sub_fn"}},
    {"SELECT * FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.a = deep_fn(t.a))", {"deep_fn"}},
    {"WITH x AS (SELECT cte_fn() AS v) SELECT v FROM x", {"cte_fn"}},
    {"WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) "
     "SELECT step_fn(n) FROM r",
     {"step_fn"}},
    {"SELECT * FROM set_fn(3) AS t(a, b)", {"set_fn"}},
    {"SELECT lower(name), upper(name) FROM users", {"lower", "upper"}},
    {"SELECT count(*) FILTER (WHERE a > 0) OVER (PARTITION BY b) FROM t", {"count"}},
    {"SELECT string_agg(x, ',') WITHIN GROUP (ORDER BY x) FROM t", {"string_agg"}},
    {"SELECT (SELECT scalar_fn()) + 1", {"scalar_fn"}},
    {"SELECT a FROM t UNION (SELECT union_fn())", {"union_fn"}},
    {"DECLARE c CURSOR FOR SELECT cursor_fn()", {"cursor_fn"}},
    {"COPY (SELECT copy_fn()) TO STDOUT", {"copy_fn"}},
    {"EXPLAIN ANALYZE SELECT explained_fn()", {"explained_fn"}},
    {"SELECT a(); SELECT b()", {"a", "b"}},
    // Looks like a call, is not one.
    {"SELECT 1::numeric(10,2)", {}},
    {"SELECT CAST(x AS numeric(10, 2)) FROM t", {}},
    {"SELECT CAST(x AS varchar(20)), y::character varying(10) FROM t", {}},
    {"SELECT now()::timestamp(3)", {"now"}},
    {"SELECT * FROM t WHERE a IN (1, 2) AND b NOT IN (3)", {}},
    {"SELECT * FROM t WHERE EXISTS (SELECT 1)", {}},
    {"SELECT ROW(1, 2), ARRAY(SELECT 1)", {}},
    {"VALUES (1, 2), (3, 4)", {}},
    {"SELECT * FROM t JOIN u USING (id)", {}},
    {"SELECT a, sum(b) FROM t GROUP BY GROUPING SETS ((a), ()) LIMIT (5) OFFSET (1)", {"sum"}},
    {"SELECT 'my_fn(1)' AS s", {}},
    {"SELECT 1 -- my_fn(1)\n", {}},
    {"SELECT my_fn FROM t", {}},
    {"EXPLAIN SELECT not_run_fn()", {}},  // EXPLAIN without ANALYZE runs nothing
};

TEST(CalledFunctions, LexerPath) {
  for (const CallCase& k : kCalls) {
    const Classification c = classifyUncached(k.sql, {});
    EXPECT_FALSE(c.usedParser) << k.sql;
    EXPECT_EQ(sorted(c.calledFunctions), sorted(k.want)) << k.sql;
    EXPECT_FALSE(c.calledFunctionsTruncated) << k.sql;
  }
}

TEST(CalledFunctions, ParserPathAgrees) {
  for (const CallCase& k : kCalls) {
    Classification c;
    ASSERT_TRUE(classifyWithParser(k.sql, {}, c)) << k.sql;
    EXPECT_EQ(sorted(c.calledFunctions), sorted(k.want)) << k.sql;
  }
}

TEST(CalledFunctions, ThroughTheParserFallback) {
  // U&"..." sends the text to libpg_query; its names come from the parse tree.
  Classification c = classifyUncached("SELECT U&\"my_fn\"(1), other_fn(x::numeric(4,1))", {});
  EXPECT_TRUE(c.usedParser);
  EXPECT_EQ(sorted(c.calledFunctions), (Names{"my_fn", "other_fn"}));
}

TEST(CalledFunctions, WritesReportNone) {
  // The primary anyway: nothing to look up, and nothing extra in the classify cache.
  EXPECT_EQ(calls("SELECT nextval('s'), my_fn()"), Names{});
  EXPECT_EQ(calls("INSERT INTO t VALUES (my_fn())"), Names{});
  EXPECT_EQ(calls("SELECT my_fn() FOR UPDATE"), Names{});
  ClassifierOptions opts;
  opts.extraWriteFunctions = {"audit_fn"};
  EXPECT_EQ(calls("SELECT audit_fn(), my_fn()", opts), Names{});
}

TEST(CalledFunctions, TrustedNamesAreLeftOut) {
  ClassifierOptions opts;
  opts.readOnlyFunctions = {"Cached_Report", "gen_id"};
  EXPECT_EQ(calls("SELECT cached_report(1)", opts), Names{});
  EXPECT_EQ(calls("SELECT app.CACHED_REPORT(1), other_fn()", opts), Names{"other_fn"});
  EXPECT_EQ(calls("SELECT \"gen_id\"()", opts), Names{});
  Classifier classifier(opts);
  EXPECT_TRUE(classifier.classify("SELECT gen_id()").calledFunctions.empty());
  EXPECT_EQ(classifier.classify("SELECT gen_idx()").calledFunctions, Names{"gen_idx"});
}

TEST(CalledFunctions, ManyNamesAreCappedAndSaySo) {
  std::string sql = "SELECT ";
  for (size_t i = 0; i < kMaxCalledFunctions + 4; ++i) {
    sql += (i ? ", f" : "f") + std::to_string(i) + "()";
  }
  Classification c = classifyUncached(sql, {});
  EXPECT_EQ(c.calledFunctions.size(), kMaxCalledFunctions);
  EXPECT_TRUE(c.calledFunctionsTruncated);
  Classification viaParser;
  ASSERT_TRUE(classifyWithParser(sql, {}, viaParser));
  EXPECT_EQ(viaParser.calledFunctions.size(), kMaxCalledFunctions);
  EXPECT_TRUE(viaParser.calledFunctionsTruncated);
}

TEST(CalledFunctions, CachedResultsKeepTheirNames) {
  Classifier classifier;
  std::string sql = "SELECT cached_fn(1)";
  Classification first = classifier.classify(sql);
  classifier.classify("SELECT 1");  // not the same text twice in a row: the cache answers
  classifier.classify(sql);          // a text is cached when it misses the second time
  classifier.classify("SELECT 1");
  sql.assign(sql.size(), 'x');
  Classification again = classifier.classify("SELECT cached_fn(1)");
  EXPECT_EQ(first.calledFunctions, Names{"cached_fn"});
  EXPECT_EQ(again, first);
  EXPECT_EQ(classifier.cacheHits(), 1u);
}

TEST(CalledFunctions, FunctionDdlIsFlagged) {
  for (std::string_view sql : {
           "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
           "create or replace function app.f() returns int language plpgsql as $$ begin "
           "insert into t default values; return 1; end $$",
           "CREATE PROCEDURE p() LANGUAGE sql AS 'SELECT 1'",
           "ALTER FUNCTION f() VOLATILE",
           "ALTER ROUTINE f() RENAME TO g",
           "DROP FUNCTION IF EXISTS f(int)",
           "DROP PROCEDURE p",
           "CREATE EXTENSION IF NOT EXISTS pgcrypto",
           "ALTER EXTENSION pgcrypto UPDATE",
           "DROP EXTENSION pgcrypto",
           "DROP SCHEMA app CASCADE",
           "DO $$ BEGIN EXECUTE 'CREATE FUNCTION g() RETURNS int AS ''SELECT 1'' LANGUAGE sql'; "
           "END $$",
       }) {
    const Classification c = classifyUncached(sql, {});
    EXPECT_TRUE(c.changesFunctions) << sql;
    EXPECT_TRUE(c.write) << sql;
    Classification viaParser;
    ASSERT_TRUE(classifyWithParser(sql, {}, viaParser)) << sql;
    EXPECT_TRUE(viaParser.changesFunctions) << "parser: " << sql;
  }
  // BEGIN ATOMIC bodies go to the parser.
  Classification atomic = classifyUncached(
      "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC; SELECT 1; END", {});
  EXPECT_TRUE(atomic.usedParser);
  EXPECT_TRUE(atomic.changesFunctions);
  for (std::string_view sql : {"CREATE TABLE t (a int)", "DROP TABLE t", "ALTER TABLE t ADD b int",
                               "SELECT 1", "CREATE INDEX ON t (lower(a))"}) {
    EXPECT_FALSE(classifyUncached(sql, {}).changesFunctions) << sql;
    Classification viaParser;
    ASSERT_TRUE(classifyWithParser(sql, {}, viaParser)) << sql;
    EXPECT_FALSE(viaParser.changesFunctions) << "parser: " << sql;
  }
  EXPECT_TRUE(classifyUncached("SELECT 1; DROP FUNCTION f()", {}).changesFunctions);
}

TEST(VolatileFunctions, LookupByName) {
  VolatileFunctions fns;
  fns.names = {"my_write_fn", "audit"};
  Classification c = classifyUncached("SELECT app.My_Write_Fn()", {});
  EXPECT_TRUE(callsVolatileFunction(c, &fns));
  EXPECT_FALSE(callsVolatileFunction(c, nullptr));  // not known yet
  EXPECT_FALSE(callsVolatileFunction(classifyUncached("SELECT lower('A')", {}), &fns));
  EXPECT_FALSE(callsVolatileFunction(classifyUncached("SELECT 1", {}), &fns));
  Classification many;
  many.calledFunctionsTruncated = true;
  EXPECT_TRUE(callsVolatileFunction(many, &fns));
  EXPECT_FALSE(callsVolatileFunction(many, nullptr));
  VolatileFunctions none;
  EXPECT_FALSE(callsVolatileFunction(many, &none));
}

TEST(VolatileFunctions, CatalogFindsDatabases) {
  FunctionCatalog cat;
  auto app = std::make_shared<VolatileFunctions>();
  app->names = {"f"};
  cat.databases["appdb"] = app;
  EXPECT_EQ(cat.find("appdb"), app.get());
  EXPECT_EQ(cat.find("other"), nullptr);
}

}  // namespace
}  // namespace pgswitch::routing
