// Unit tests for routing/classify_cache (bounds, CLOCK second chance, length as part of the key)
// and routing/json_tree (the reader for libpg_query's output).
#include "routing/classify_cache.h"

#include <gtest/gtest.h>

#include "routing/json_tree.h"

namespace pgswitch::routing {
namespace {

Classification withSet(std::string name) {
  Classification c;
  c.setName = std::move(name);
  return c;
}

TEST(ClassifyCache, CapacityIsBoundedAndRounded) {
  EXPECT_EQ(ClassifyCache(16384).capacity(), 16384u);
  EXPECT_EQ(ClassifyCache(1000).capacity(), 512u);  // 8 ways x bit_floor(125) sets
  EXPECT_EQ(ClassifyCache(3).capacity(), 3u);
  EXPECT_EQ(ClassifyCache(1).capacity(), 1u);
}

TEST(ClassifyCache, FindInsertAndLengthCheck) {
  ClassifyCache cache(64);
  EXPECT_EQ(cache.find(42, 10), nullptr);
  cache.insert(42, 10, withSet("a"));
  ASSERT_NE(cache.find(42, 10), nullptr);
  EXPECT_EQ(cache.find(42, 10)->setName, "a");
  EXPECT_EQ(cache.find(42, 11), nullptr);  // same hash, other length: a different text
  EXPECT_EQ(cache.size(), 1u);
}

TEST(ClassifyCache, ClockGivesReferencedEntriesASecondChance) {
  ClassifyCache cache(8);  // one set of 8 ways: every hash collides into it
  for (uint64_t h = 0; h < 8; ++h) cache.insert(h, 1, withSet(std::to_string(h)));
  EXPECT_EQ(cache.size(), 8u);
  ASSERT_NE(cache.find(0, 1), nullptr);  // referenced: survives the next eviction
  cache.insert(100, 1, withSet("new"));
  EXPECT_NE(cache.find(0, 1), nullptr);
  EXPECT_EQ(cache.find(1, 1), nullptr);  // the first unreferenced way went
  EXPECT_NE(cache.find(100, 1), nullptr);
  EXPECT_EQ(cache.size(), 8u);
  for (uint64_t h = 200; h < 1000; ++h) cache.insert(h, 1, Classification{});
  EXPECT_EQ(cache.size(), 8u);
}

TEST(ClassifyCache, EntriesOwnTheirHeapStringsAndAnEmptyWayMatchesNothing) {
  // Strings past the small-string buffer and a vector: a missing or doubled construction or
  // destruction shows under ASan/LeakSanitizer (the entries live in raw mapped storage).
  const std::string longName(40, 'x');
  ClassifyCache cache(8);
  EXPECT_EQ(cache.find(0, 0), nullptr);  // empty ways are zero bytes: hash 0, length 0
  for (uint64_t h = 0; h < 8; ++h) {
    Classification c = withSet(longName + std::to_string(h));
    c.calledFunctions = {longName, longName + "2"};
    cache.insert(h, 0, c);
  }
  ASSERT_NE(cache.find(3, 0), nullptr);
  EXPECT_EQ(cache.find(3, 0)->setName, longName + "3");
  EXPECT_EQ(cache.find(3, 0)->calledFunctions.size(), 2u);
  cache.insert(100, 0, withSet(longName + "new"));  // replaces an entry in place
  ASSERT_NE(cache.find(100, 0), nullptr);
  EXPECT_EQ(cache.find(100, 0)->setName, longName + "new");
  EXPECT_TRUE(cache.find(100, 0)->calledFunctions.empty());
  EXPECT_EQ(cache.size(), 8u);
}

TEST(JsonTree, ParsesPgQueryShapes) {
  json::Document d;
  ASSERT_TRUE(d.parse(R"({"version":150001,"stmts":[{"stmt":{"SelectStmt":{"op":"SETOP_NONE",)"
                      R"("x":[1,-2.5e3,true,null,"a\"b\u00e4"]}},"stmt_len":3}]})"));
  const uint32_t stmts = d.member(d.root(), "stmts");
  ASSERT_NE(stmts, 0u);
  const uint32_t first = d.firstChild(stmts);
  ASSERT_NE(first, 0u);
  EXPECT_EQ(d[first].next, 0u);
  const uint32_t sel = d.path(first, {"stmt", "SelectStmt"});
  ASSERT_NE(sel, 0u);
  EXPECT_EQ(d[d.member(sel, "op")].text, "SETOP_NONE");
  const uint32_t arr = d.member(sel, "x");
  int n = 0;
  for (uint32_t c = d.firstChild(arr); c != 0; c = d[c].next) ++n;
  EXPECT_EQ(n, 5);
  uint32_t last = d.firstChild(arr);
  while (d[last].next != 0) last = d[last].next;
  EXPECT_EQ(json::unescape(d[last].text), "a\"b\xc3\xa4");
  EXPECT_EQ(d.path(first, {"stmt", "Nope"}), 0u);
  EXPECT_EQ(d[d.member(first, "stmt_len")].type, json::Type::Number);
}

TEST(JsonTree, RejectsMalformedAndTooDeep) {
  json::Document d;
  for (const char* bad : {"", "{", "{\"a\"}", "[1,]", "{\"a\":1,}", "\"open", "[1] x", "tru"}) {
    EXPECT_FALSE(d.parse(bad)) << bad;
  }
  EXPECT_TRUE(d.parse("[]"));
  EXPECT_TRUE(d.parse("{}"));
  std::string deep(50, '[');
  deep += std::string(50, ']');
  EXPECT_TRUE(d.parse(deep, 60));
  EXPECT_FALSE(d.parse(deep, 40));
}

}  // namespace
}  // namespace pgswitch::routing
