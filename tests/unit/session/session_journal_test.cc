// SessionJournal fed statements and Parse/Close messages: what a failover rebuilds, in order,
// and when it cannot.
#include "proxy/session/session_journal.h"

#include <gtest/gtest.h>

#include "protocol/builder.h"
#include "routing/session_sql.h"

namespace pgswitch::proxy {
namespace {

std::string kinds(const SessionJournal& j) {
  std::string out;
  for (const auto& e : j.entries()) {
    out += e.kind == SessionJournal::Entry::Kind::Listen    ? "L:"
           : e.kind == SessionJournal::Entry::Kind::Prepare ? "P:"
                                                            : "B:";
    out += e.name + " ";
  }
  return out;
}

std::span<const std::byte> b(const std::string& s) { return std::as_bytes(std::span(s)); }

TEST(SessionJournal, FollowsListenAndPrepareInOrder) {
  SessionJournal j;
  j.statement("LISTEN jobs");
  j.statement("PREPARE q(int) AS SELECT $1");
  j.statement("listen \"Mixed\"");
  j.statement("LISTEN jobs");  // again: once, at its new place
  EXPECT_EQ(kinds(j), "P:q L:Mixed L:jobs ");
  j.statement("UNLISTEN jobs");
  j.statement("DEALLOCATE PREPARE q");
  EXPECT_EQ(kinds(j), "L:Mixed ");
  j.statement("UNLISTEN *");
  EXPECT_TRUE(j.empty());
  EXPECT_TRUE(j.complete());
}

TEST(SessionJournal, ParseAndSqlShareOneNamespace) {
  SessionJournal j;
  std::string parse;
  protocol::appendParse(parse, "s1", "SELECT 1");
  j.parse("s1", b(parse));
  j.statement("PREPARE s1 AS SELECT 2");  // 42P05 on the server: the Parse stays
  EXPECT_EQ(kinds(j), "B:s1 ");
  EXPECT_EQ(j.entries()[0].bytes, parse);
  j.statement("DEALLOCATE s1");
  EXPECT_TRUE(j.empty());
  j.parse("s2", b(parse));
  j.closeStatement("s2");
  EXPECT_TRUE(j.empty());
}

TEST(SessionJournal, DiscardAndDeallocateAll) {
  SessionJournal j;
  j.statement("LISTEN a");
  j.statement("PREPARE p AS SELECT 1");
  j.deallocateAll();
  EXPECT_EQ(kinds(j), "L:a ");
  j.discardAll();
  EXPECT_TRUE(j.empty());
}

TEST(SessionJournal, WhatItCannotFollowMakesItIncomplete) {
  SessionJournal j;
  j.statement("LISTEN a; LISTEN b");
  EXPECT_FALSE(j.complete());
  SessionJournal k;
  k.confirm("a LISTEN");  // a tag without its statement: it arrived in pieces
  EXPECT_FALSE(k.complete());
  SessionJournal m;
  m.statement("LISTEN a");
  m.confirm("a LISTEN");
  EXPECT_TRUE(m.complete());
  m.statement("PREPARE TRANSACTION 'x'");  // two-phase commit: not a statement name
  EXPECT_TRUE(m.complete());
  EXPECT_EQ(kinds(m), "L:a ");
}

TEST(SessionSqlObjects, Names) {
  bool unsure = false;
  auto o = routing::sessionObject("  Prepare FooBar (int) AS SELECT $1", unsure);
  EXPECT_EQ(o.kind, routing::SessionObject::Kind::Prepare);
  EXPECT_EQ(o.name, "foobar");
  o = routing::sessionObject("DEALLOCATE ALL", unsure);
  EXPECT_EQ(o.kind, routing::SessionObject::Kind::DeallocateAll);
  o = routing::sessionObject("UNLISTEN *", unsure);
  EXPECT_EQ(o.kind, routing::SessionObject::Kind::UnlistenAll);
  o = routing::sessionObject("LISTEN \"a\"\"b\"", unsure);
  EXPECT_EQ(o.name, "a\"b");
  o = routing::sessionObject("SELECT 1", unsure);
  EXPECT_EQ(o.kind, routing::SessionObject::Kind::None);
  EXPECT_FALSE(unsure);
  o = routing::sessionObject("LISTEN", unsure);
  EXPECT_TRUE(unsure);
}

}  // namespace
}  // namespace pgswitch::proxy
