// Unit tests for routing/classifier: the statement table (statements.inc) through the lexer
// path, the cache and the libpg_query path; options; robustness on random bytes and prefixes.
#include "routing/classifier.h"

#include <gtest/gtest.h>

#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "routing/cache_key.h"
#include "routing/pg_parser_fallback.h"
#include "routing/write_functions.h"

namespace pgswitch::routing {
namespace {

using enum StatementKind;
constexpr bool WR = true;
constexpr bool RD = false;

struct Case {
  bool write;
  StatementKind kind;
  const char* flags;
  std::string_view sql;
};

const Case kCases[] = {
#include "statements.inc"
};

struct Expected {
  Classification c;
  bool parser = false;   // expect usedParser
  bool invalid = false;  // PostgreSQL rejects it; the lexer path decided anyway
};

Expected expectedFor(const Case& k) {
  Expected e;
  e.c.write = k.write;
  e.c.kind = k.kind;
  std::istringstream in(k.flags);
  std::string f;
  while (in >> f) {
    if (f == "temp")
      e.c.createsTempTable = true;
    else if (f == "listen")
      e.c.listen = true;
    else if (f == "unlisten")
      e.c.unlisten = true;
    else if (f == "adv")
      e.c.sessionAdvisoryLock = true;
    else if (f == "hold")
      e.c.withHoldCursor = true;
    else if (f == "setcfg")
      e.c.callsSetConfig = true;
    else if (f == "prep")
      e.c.sqlPrepare = true;
    else if (f == "deal")
      e.c.sqlDeallocate = true;
    else if (f == "disc")
      e.c.discard = true;
    else if (f == "multi")
      e.c.multiStatement = true;
    else if (f == "parser")
      e.parser = true;
    else if (f == "invalid")
      e.invalid = true;
    else if (f == "hint=primary")
      e.c.hint = Classification::Hint::Primary;
    else if (f == "hint=replica")
      e.c.hint = Classification::Hint::Replica;
    else if (f.rfind("tag=", 0) == 0)
      e.c.hintTag = f.substr(4);
    else if (f.rfind("set=", 0) == 0)
      e.c.setName = f.substr(4);
    else
      ADD_FAILURE() << "unknown flag " << f << " in: " << k.sql;
  }
  e.c.usedParser = e.parser;
  return e;
}

std::string describe(const Classification& c) {
  std::ostringstream o;
  o << "write=" << c.write << " kind=" << toString(c.kind) << " temp=" << c.createsTempTable
    << " listen=" << c.listen << " unlisten=" << c.unlisten << " adv=" << c.sessionAdvisoryLock
    << " hold=" << c.withHoldCursor << " setcfg=" << c.callsSetConfig
    << " prep=" << c.sqlPrepare << " deal=" << c.sqlDeallocate
    << " disc=" << c.discard << " set='" << c.setName << "' multi=" << c.multiStatement
    << " hint=" << static_cast<int>(c.hint) << " tag='" << c.hintTag << "' parser=" << c.usedParser;
  return o.str();
}

// The statement table checks routing and session effects; the function facts (which paths
// report with different detail: the parser resolves coalesce() and friends to expressions)
// have their own tests (called_functions_test.cc).
Classification withoutFunctionFacts(Classification c) {
  c.calledFunctions.clear();
  c.calledFunctionsTruncated = false;
  c.changesFunctions = false;
  return c;
}

// The fields that describe the statements (not the hints, not which path decided).
Classification statementFields(Classification c) {
  c = withoutFunctionFacts(std::move(c));
  c.hint = Classification::Hint::None;
  c.hintTag.clear();
  c.usedParser = false;
  return c;
}

}  // namespace

// gtest prints values with this instead of a byte dump.
void PrintTo(const Classification& c, std::ostream* os) { *os << describe(c); }

namespace {

TEST(Classifier, TableHasAtLeast300Statements) { EXPECT_GE(std::size(kCases), 300u); }

TEST(Classifier, StatementTable) {
  ClassifierOptions opts;
  for (const Case& k : kCases) {
    const Expected e = expectedFor(k);
    const Classification got = withoutFunctionFacts(classifyUncached(k.sql, opts));
    EXPECT_EQ(got, e.c) << "sql: " << k.sql << "\n got:  " << describe(got)
                        << "\n want: " << describe(e.c);
  }
}

TEST(Classifier, CachedEqualsUncached) {
  Classifier cached;
  ClassifierOptions opts;
  for (int round = 0; round < 3; ++round) {  // cached at the second miss, hit at the third
    for (const Case& k : kCases) {
      const Classification want = classifyUncached(k.sql, opts);
      // Copy the text so the cache cannot lean on the caller's buffer.
      std::string copy(k.sql);
      const Classification got = cached.classify(copy);
      copy.assign(copy.size(), 'x');
      EXPECT_EQ(got, want) << "round " << round << " sql: " << k.sql;
    }
  }
  EXPECT_GT(cached.cacheHits(), 0u);
}

// The cache files texts by their number-folded key (routing/cache_key.h): over the whole
// table, any other values in the folded places give the same key and the same classification,
// uncached and through the cache.
TEST(Classifier, FoldedNumbersNeverChangeTheClassification) {
  ClassifierOptions opts;
  Classifier cached;
  int folded = 0;
  for (const Case& k : kCases) {
    std::string key;
    if (!foldNumbers(k.sql, key) || key.find('\0') == std::string::npos) continue;
    ++folded;
    const Classification want = classifyUncached(k.sql, opts);
    cached.classify(k.sql);
    cached.classify(k.sql);  // cached at its second miss
    for (std::string_view value : {"2", "42", "10", "9999999999", "31415926535897932384626"}) {
      std::string variant;
      for (char c : key) {
        if (c == '\0') {
          variant.append(value);
        } else {
          variant.push_back(c);
        }
      }
      std::string variantKey;
      ASSERT_TRUE(foldNumbers(variant, variantKey)) << variant;
      EXPECT_EQ(variantKey, key) << variant;
      EXPECT_EQ(classifyUncached(variant, opts), want) << "sql: " << k.sql << "\nvariant: " << variant;
      EXPECT_EQ(cached.classify(variant), want) << "variant: " << variant;
    }
  }
  EXPECT_GE(folded, 50);
}

// The same rules through PostgreSQL's own grammar: every statement the lexer path decides must
// get the same answer from the parse tree (or be marked invalid).
TEST(Classifier, ParserPathAgreesWithTable) {
  ClassifierOptions opts;
  for (const Case& k : kCases) {
    const Expected e = expectedFor(k);
    Classification viaParser;
    const bool parsed = classifyWithParser(k.sql, opts, viaParser);
    if (e.invalid) {
      EXPECT_FALSE(parsed) << "marked invalid but parses: " << k.sql;
      continue;
    }
    if (!parsed) {
      EXPECT_TRUE(e.parser && e.c.write) << "PostgreSQL rejects: " << k.sql;
      continue;
    }
    EXPECT_EQ(statementFields(viaParser), statementFields(e.c))
        << "sql: " << k.sql << "\n parser: " << describe(viaParser)
        << "\n want:   " << describe(e.c);
  }
}

TEST(Classifier, ExtraWriteFunctions) {
  ClassifierOptions opts;
  opts.extraWriteFunctions = {"audit_touch", "App_Log"};
  EXPECT_TRUE(classifyUncached("SELECT audit_touch(1)", opts).write);
  EXPECT_TRUE(classifyUncached("SELECT app.APP_LOG('x')", opts).write);
  EXPECT_TRUE(classifyUncached("SELECT \"audit_touch\"(1)", opts).write);
  EXPECT_FALSE(classifyUncached("SELECT audit_touch FROM t", opts).write);
  EXPECT_FALSE(classifyUncached("SELECT audit_touch(1)", ClassifierOptions{}).write);
  // Through the parser path as well (the U& name sends it there).
  Classification c = classifyUncached("SELECT U&\"audit_touch\"(1)", opts);
  EXPECT_TRUE(c.usedParser);
  EXPECT_TRUE(c.write);
  Classifier classifier(opts);
  EXPECT_TRUE(classifier.classify("SELECT app_log(1)").write);
  EXPECT_FALSE(classifier.classify("SELECT app_logs(1)").write);
}

TEST(Classifier, BuiltinWriteFunctionsAreAllWrites) {
  for (std::string_view f : builtinWriteFunctions()) {
    const std::string sql = "SELECT " + std::string(f) + "(1)";
    EXPECT_TRUE(classifyUncached(sql, {}).write) << sql;
  }
  EXPECT_TRUE(classifyUncached("SELECT lo_anything_new(1)", {}).write);
}

TEST(Classifier, NulByteGoesToPrimary) {
  const std::string sql("SELECT 1\0; DELETE FROM t", 24);
  Classification c = classifyUncached(sql, {});
  EXPECT_TRUE(c.write);
  EXPECT_EQ(c.kind, StatementKind::Other);
}

TEST(Classifier, HintsSurviveTheCacheAndOwnTheirText) {
  Classifier classifier;
  std::string sql = "/* pgswitch: tag=reporting */ SET search_path TO app";
  Classification first = classifier.classify(sql);
  classifier.classify("SELECT 1");  // another text between: the last text does not answer
  classifier.classify(sql);         // cached at the second miss
  classifier.classify("SELECT 1");
  sql.assign(sql.size(), '?');
  Classification again =
      classifier.classify("/* pgswitch: tag=reporting */ SET search_path TO app");
  EXPECT_EQ(first.hintTag, "reporting");
  EXPECT_EQ(first.setName, "search_path");
  EXPECT_EQ(again, first);
  EXPECT_EQ(classifier.cacheHits(), 1u);
  EXPECT_EQ(classifier.cacheMisses(), 4u);
}

// The same text twice in a row (an extended-protocol client's Parse, a named statement's
// Bind) is answered by the last result, compared as written, and does not enter the cache.
TEST(Classifier, TheLastTextIsAnsweredWithoutTheCache) {
  Classifier classifier;
  std::string sql = "SELECT abalance FROM pgbench_accounts WHERE aid = $1";
  const Classification first = classifier.classify(sql);
  EXPECT_EQ(classifier.classify(sql), first);
  EXPECT_EQ(classifier.cacheHits(), 1u);
  EXPECT_EQ(classifier.cacheMisses(), 1u);
  sql.back() = '2';  // the caller's buffer changes: the kept text is a copy
  EXPECT_EQ(classifier.classify(sql), classifyUncached(sql, {}));
  EXPECT_EQ(classifier.cacheMisses(), 2u);
  EXPECT_TRUE(classifier.classify("DELETE FROM t").write);
  EXPECT_FALSE(classifier.classify("SELECT abalance FROM pgbench_accounts WHERE aid = $2").write);
  EXPECT_EQ(classifier.cacheHits(), 1u);
  EXPECT_EQ(classifier.cacheMisses(), 4u);  // the second miss of $2's text: cached now
  const std::string longText = "SELECT " + std::string(2000, 'x');
  classifier.classify(longText);
  classifier.classify(longText);  // too long to keep: the cache answers, at its second miss
  EXPECT_EQ(classifier.cacheHits(), 1u);
  EXPECT_EQ(classifier.classify(longText), classifyUncached(longText, {}));
  EXPECT_EQ(classifier.cacheHits(), 2u);
}

// Texts seen once (string literals in simple-protocol queries) are not cached; one that comes
// back is, at its second miss, even after many others.
TEST(Classifier, CachesATextWhenItComesBack) {
  Classifier classifier;
  const std::string repeated = "SELECT * FROM accounts WHERE id = $1";
  classifier.classify(repeated);
  for (int i = 0; i < 100; ++i)
    classifier.classify("SELECT * FROM users WHERE name = 'user" + std::to_string(i) + "'");
  EXPECT_EQ(classifier.cacheHits(), 0u);
  classifier.classify(repeated);
  EXPECT_EQ(classifier.cacheHits(), 0u);
  classifier.classify("SELECT 2");  // another text between: the cache answers, not the last text
  EXPECT_EQ(classifier.classify(repeated), classifyUncached(repeated, {}));
  EXPECT_EQ(classifier.cacheHits(), 1u);
  EXPECT_EQ(classifier.cacheMisses(), 103u);
}

// Number literals fold (routing/cache_key.h): simple-protocol pgbench -S is one cached text
// from its second query on.
TEST(Classifier, NumberLiteralsShareOneEntry) {
  Classifier classifier;
  for (int i = 2; i < 102; ++i) {
    const std::string sql =
        "SELECT abalance FROM pgbench_accounts WHERE aid = " + std::to_string(i * 7919) + ";";
    EXPECT_EQ(classifier.classify(sql), classifyUncached(sql, {})) << sql;
  }
  EXPECT_EQ(classifier.cacheMisses(), 2u);
  EXPECT_EQ(classifier.cacheHits(), 98u);
  // A NUL never reaches the cache (it is what a folded number becomes in a key).
  const std::string nul("SELECT abalance FROM pgbench_accounts WHERE aid = \0;", 52);
  EXPECT_EQ(classifier.classify(nul), classifyUncached(nul, {}));
  EXPECT_TRUE(classifier.classify(nul).write);
  EXPECT_EQ(classifier.cacheHits(), 98u);
}

TEST(Classifier, CacheDisabled) {
  ClassifierOptions opts;
  opts.cacheCapacity = 0;
  Classifier classifier(opts);
  EXPECT_TRUE(classifier.classify("DELETE FROM t").write);
  EXPECT_TRUE(classifier.classify("DELETE FROM t").write);
  EXPECT_EQ(classifier.cacheHits(), 0u);
}

TEST(Classifier, TinyCacheStaysCorrectUnderEviction) {
  ClassifierOptions opts;
  opts.cacheCapacity = 3;
  Classifier classifier(opts);
  for (int round = 0; round < 3; ++round) {
    for (const Case& k : kCases) {
      EXPECT_EQ(classifier.classify(k.sql), classifyUncached(k.sql, {})) << k.sql;
    }
  }
}

TEST(Classifier, DeepNestingIsBounded) {
  std::string with;
  for (int i = 0; i < 40; ++i) with += "WITH a AS (";
  with += "SELECT 1";
  for (int i = 0; i < 40; ++i) with += ") SELECT * FROM a";
  Classification c = classifyUncached(with, {});
  EXPECT_TRUE(c.usedParser);  // too deep for the lexer rules; the parser settles it
  EXPECT_FALSE(c.write);

  // The lexer matches parentheses without recursion...
  std::string parens(100000, '(');
  parens += "SELECT 1";
  parens += std::string(100000, ')');
  c = classifyUncached(parens, {});
  EXPECT_FALSE(c.usedParser);
  EXPECT_FALSE(c.write);
  // ...and libpg_query stops at its stack depth limit instead of overflowing.
  parens.resize(100000 + 8);
  c = classifyUncached(parens, {});
  EXPECT_TRUE(c.usedParser);
  EXPECT_TRUE(c.write);
}

// ---- robustness ----

std::string randomBytes(std::mt19937& rng, bool sqlish) {
  static constexpr std::string_view kSqlish[] = {"SELECT ",
                                                 "INSERT ",
                                                 "(",
                                                 ")",
                                                 "'",
                                                 "\"",
                                                 "$$",
                                                 "$a$",
                                                 "--",
                                                 "/*",
                                                 "*/",
                                                 ";",
                                                 " ",
                                                 "E'\\'",
                                                 "FOR UPDATE",
                                                 "INTO ",
                                                 "WITH x AS ",
                                                 "nextval(",
                                                 "BEGIN ",
                                                 "SET LOCAL ",
                                                 "x",
                                                 "/* pgswitch: replica */",
                                                 "EXPLAIN ANALYZE ",
                                                 "COPY t FROM ",
                                                 "U&\"",
                                                 "\n",
                                                 "1",
                                                 ","};
  std::string s;
  const int n = static_cast<int>(rng() % 64);
  for (int i = 0; i < n; ++i) {
    if (sqlish) {
      s += kSqlish[rng() % std::size(kSqlish)];
    } else {
      s.push_back(static_cast<char>(rng() & 0xff));
    }
  }
  return s;
}

TEST(ClassifierRobustness, RandomBytes) {
  std::mt19937 rng(20240521);
  Classifier classifier;
  ClassifierOptions opts;
  for (int i = 0; i < 2000; ++i) {
    const std::string s = randomBytes(rng, i % 2 == 1);
    const Classification want = classifyUncached(s, opts);
    EXPECT_EQ(classifier.classify(s), want) << i;
    EXPECT_EQ(classifier.classify(s), want) << i;  // the last text's answer (when kept)
    classifier.classify("SELECT 1");
    EXPECT_EQ(classifier.classify(s), want) << i;  // into the cache, at its second miss
    classifier.classify("SELECT 1");
    EXPECT_EQ(classifier.classify(s), want) << i;  // from the cache
  }
}

TEST(ClassifierRobustness, MutatedTableStatements) {
  std::mt19937 rng(7);
  for (const Case& k : kCases) {
    std::string s(k.sql);
    if (s.empty()) continue;
    s[rng() % s.size()] = static_cast<char>(rng() & 0xff);
    Classification c = classifyUncached(s, {});
    (void)c;
  }
}

TEST(ClassifierRobustness, EveryPrefixOfTrickyStatements) {
  const std::string_view tricky[] = {
      R"q(/* pgswitch: replica, tag=x */ WITH a AS (UPDATE t SET x = E'\'' RETURNING *) SELECT $$;$$, "q""q" FROM a FOR UPDATE; SELECT 1)q",
      R"q(BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY; SET LOCAL "A"."b" TO 'x'; COPY (SELECT nextval('s')) TO STDOUT; COMMIT)q",
      R"q(EXPLAIN (ANALYZE true) DECLARE c CURSOR WITH HOLD FOR SELECT * INTO TEMP t FROM u /* /* */ */ -- x)q",
      R"q(PREPARE p(int) AS SELECT U&"d\0061t"($1) FROM x; EXECUTE p(1); DEALLOCATE p; DISCARD ALL)q",
      R"q(CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END; SELECT $tag$x$tag$)q",
  };
  Classifier classifier;
  for (std::string_view sql : tricky) {
    for (size_t n = 0; n <= sql.size(); ++n) {
      const std::string prefix(sql.substr(0, n));
      EXPECT_EQ(classifier.classify(prefix), classifyUncached(prefix, {})) << prefix;
    }
  }
}

}  // namespace
}  // namespace pgswitch::routing
