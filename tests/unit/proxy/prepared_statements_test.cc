// Unit tests for proxy/prepared_statements: the per-server LRU (eviction, touch, restoring an
// eviction the server skipped), stale statements (0A000) and a client's pending Closes
// (forgotten when answered, undone newest first when PostgreSQL skipped them after an error).
#include "proxy/core/prepared_statements.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

namespace pgswitch::proxy {
namespace {

ClientStatement stmt(std::string_view sql) {
  std::string tail(sql);
  tail.push_back('\0');
  tail.append(2, '\0');  // no parameter types
  auto bytes = std::as_bytes(std::span(tail.data(), tail.size()));
  return ClientStatement{statementHash(bytes), tail, {}};
}

TEST(StatementHash, NameIsStableAndDistinct) {
  auto a = stmt("SELECT 1"), b = stmt("SELECT 2");
  EXPECT_NE(a.hash, b.hash);
  EXPECT_EQ(a.hash, stmt("SELECT 1").hash);
  std::string name = serverStatementName(a.hash);
  EXPECT_EQ(name.size(), 21u);
  EXPECT_EQ(name.rfind("pgsw_", 0), 0u);
}

// A RowDescription body with one column per (name, table, column, type, typmod, format).
struct Col {
  std::string name;
  int32_t table, column, type, typmod, format;
};
std::string rowDescription(std::initializer_list<Col> cols) {
  std::string b;
  auto put = [&b](uint32_t v, int bytes) {
    for (int i = bytes - 1; i >= 0; --i) b.push_back(static_cast<char>(v >> (8 * i)));
  };
  put(static_cast<uint32_t>(cols.size()), 2);
  for (const Col& c : cols) {
    b += c.name;
    b.push_back('\0');
    put(c.table, 4);
    put(c.column, 2);
    put(c.type, 4);
    put(static_cast<uint32_t>(-1), 2);
    put(c.typmod, 4);
    put(c.format, 2);
  }
  return b;
}

uint64_t shapeOf(std::initializer_list<Col> cols) {
  std::string b = rowDescription(cols);
  auto s = resultShape(std::as_bytes(std::span(b.data(), b.size())));
  EXPECT_TRUE(s.has_value());
  return s.value_or(0);
}

TEST(ResultShape, NamesTypesAndModifiersCount) {
  const uint64_t a = shapeOf({{"a", 16384, 1, 23, -1, 0}});
  EXPECT_GT(a, kNoRowsShape) << "0 and 1 are kept for unknown and NoData";
  EXPECT_EQ(a, shapeOf({{"a", 16384, 1, 23, -1, 0}}));
  // A Describe of a portal fills in format codes; another source column is the same result.
  EXPECT_EQ(shapeOf({{"a", 16385, 2, 23, -1, 1}}), a);
  EXPECT_NE(shapeOf({{"b", 16384, 1, 23, -1, 0}}), a);  // renamed
  EXPECT_NE(shapeOf({{"a", 16384, 1, 20, -1, 0}}), a);  // int8
  EXPECT_NE(shapeOf({{"a", 16384, 1, 23, 8, 0}}), a);   // another modifier
  EXPECT_NE(shapeOf({{"a", 16384, 1, 23, -1, 0}, {"b", 16384, 2, 25, -1, 0}}), a);
  EXPECT_NE(shapeOf({}), a);
  std::string cut = rowDescription({{"a", 1, 1, 23, -1, 0}});
  cut.pop_back();
  EXPECT_FALSE(resultShape(std::as_bytes(std::span(cut.data(), cut.size()))));
}

TEST(ServerStatementCache, EvictsLeastRecentlyUsed) {
  ServerStatementCache c;
  EXPECT_FALSE(c.add(1, 2));
  EXPECT_FALSE(c.add(2, 2));
  c.touch(1);
  auto ev = c.add(3, 2);
  ASSERT_TRUE(ev);
  EXPECT_EQ(*ev, 2u);
  EXPECT_TRUE(c.contains(1));
  EXPECT_TRUE(c.contains(3));
  EXPECT_FALSE(c.contains(2));
  EXPECT_FALSE(c.add(3, 2));  // already there: no eviction
  EXPECT_EQ(c.size(), 2u);
}

TEST(ServerStatementCache, RestoreAfterSkippedEviction) {
  // add(3) evicted 1; the batch failed before the Close, so the Parse of 3 is undone and 1
  // comes back, as the least recently used entry.
  ServerStatementCache c;
  c.add(1, 2);
  c.add(2, 2);
  auto ev = c.add(3, 2);
  ASSERT_TRUE(ev);
  EXPECT_EQ(*ev, 1u);
  c.erase(3);
  c.restore(1);
  EXPECT_TRUE(c.contains(1));
  EXPECT_TRUE(c.contains(2));
  EXPECT_EQ(c.size(), 2u);
  auto next = c.add(4, 2);
  ASSERT_TRUE(next);
  EXPECT_EQ(*next, 1u);
  c.restore(2);  // already there: nothing changes
  EXPECT_EQ(c.size(), 2u);
}

TEST(StaleStatements, CopiesPreparedBeforeTheChangeAreStale) {
  StaleStatements st;
  ServerStatementCache a, b;
  a.add(7, 10, st.epoch());
  b.add(7, 10, st.epoch());
  b.add(8, 10, st.epoch());
  EXPECT_FALSE(st.isStale(7, a.preparedAt(7)));
  st.markStale(7);  // one server answered 0A000: every copy of 7 so far is unusable
  EXPECT_TRUE(st.isStale(7, a.preparedAt(7)));
  EXPECT_TRUE(st.isStale(7, b.preparedAt(7)));
  EXPECT_FALSE(st.isStale(8, b.preparedAt(8)));
  a.erase(7);  // closed and prepared again
  a.add(7, 10, st.epoch());
  EXPECT_FALSE(st.isStale(7, a.preparedAt(7)));
  EXPECT_TRUE(st.isStale(7, b.preparedAt(7)));
  st.markStale(7);  // the type changed again
  EXPECT_TRUE(st.isStale(7, a.preparedAt(7)));
}

TEST(StaleStatements, RestoredCopyOfAStaleStatementIsStale) {
  // The Close of a stale copy was skipped after an error: the server still has the old copy,
  // whose epoch is unknown.
  StaleStatements st;
  ServerStatementCache c;
  c.add(5, 10, st.epoch());
  c.add(6, 10, st.epoch());
  st.markStale(5);
  c.erase(5);
  c.restore(5);
  c.restore(6);  // still there: keeps its epoch
  EXPECT_TRUE(c.contains(5));
  EXPECT_EQ(c.preparedAt(5), 0u);
  EXPECT_TRUE(st.isStale(5, c.preparedAt(5)));
  EXPECT_FALSE(st.isStale(6, c.preparedAt(6)));
  EXPECT_EQ(c.preparedAt(99), 0u);
}

TEST(ClientStatements, AnsweredCloseIsForgotten) {
  ClientStatements s;
  s.put("a", stmt("SELECT 1"));
  s.close("a");
  EXPECT_EQ(s.find("a"), nullptr);
  s.forgetOldestClose();
  s.undoLastClose();  // nothing pending any more
  EXPECT_EQ(s.find("a"), nullptr);
}

TEST(ClientStatements, SkippedCloseIsUndone) {
  ClientStatements s;
  auto one = stmt("SELECT 1");
  s.put("a", one);
  s.close("a");
  s.undoLastClose();
  ASSERT_NE(s.find("a"), nullptr);
  EXPECT_EQ(s.find("a")->hash, one.hash);
}

TEST(ClientStatements, SkippedCloseAndReparseLeaveTheOldStatement) {
  // Batch: Close a; Parse a (new text); Close b (unknown); error before all of them. Undo
  // newest first: Close b, then the Parse, then Close a.
  ClientStatements s;
  auto old = stmt("SELECT 'old'");
  s.put("a", old);
  s.close("a");
  s.put("a", stmt("SELECT 'new'"));
  s.close("b");
  s.undoLastClose();
  EXPECT_EQ(s.find("b"), nullptr);
  s.erase("a");  // the skipped Parse
  s.undoLastClose();
  ASSERT_NE(s.find("a"), nullptr);
  EXPECT_EQ(s.find("a")->hash, old.hash);
}

TEST(ClientStatements, FirstCloseAnsweredSecondSkipped) {
  ClientStatements s;
  s.put("a", stmt("SELECT 1"));
  s.put("b", stmt("SELECT 2"));
  s.close("a");
  s.close("b");
  s.forgetOldestClose();  // CloseComplete for a went out
  s.undoLastClose();      // the Close of b was skipped
  EXPECT_EQ(s.find("a"), nullptr);
  EXPECT_NE(s.find("b"), nullptr);
}

TEST(ClientStatements, ClearDropsPendingCloses) {
  ClientStatements s;
  s.put("a", stmt("SELECT 1"));
  s.close("a");
  s.clear();  // DISCARD ALL / DEALLOCATE ALL
  s.undoLastClose();
  EXPECT_EQ(s.find("a"), nullptr);
  EXPECT_EQ(s.size(), 0u);
}

}  // namespace
}  // namespace pgswitch::proxy
