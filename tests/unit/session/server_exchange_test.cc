// ServerExchange fed message sequences, no sockets: what is owed, when the server is idle,
// what an error makes the server skip, where pgswitch adds or swallows responses, COPY.
#include "proxy/session/server_exchange.h"

#include <gtest/gtest.h>

#include "protocol/messages.h"

namespace pgswitch::proxy {
namespace {

using namespace protocol;
using V = ServerExchange::Verdict;

void send(ServerExchange& x, std::string_view types) {
  for (char t : types) x.forwarded(t);
}

// Feeds backend types; returns the verdicts as a string: F forward, S swallow, D desync.
std::string answer(ServerExchange& x, std::string_view types) {
  std::string out;
  for (char t : types) {
    V v = x.onResponse(t).verdict;
    out += v == V::Forward ? 'F' : v == V::Swallow ? 'S' : 'D';
  }
  return out;
}

TEST(ServerExchange, SimpleQueryOwesUntilReadyForQuery) {
  ServerExchange x;
  EXPECT_TRUE(x.idle());
  send(x, "Q");
  EXPECT_FALSE(x.idle());
  EXPECT_TRUE(x.owesReadyForQuery());
  EXPECT_EQ(answer(x, "TDDC"), "FFFF");  // RowDescription, DataRows, CommandComplete
  EXPECT_FALSE(x.idle());
  EXPECT_EQ(answer(x, "Z"), "F");
  EXPECT_TRUE(x.idle());
}

TEST(ServerExchange, PipelinedQueriesPopInOrder) {
  ServerExchange x;
  send(x, "QQQ");
  EXPECT_EQ(x.pending(), 3u);
  EXPECT_EQ(answer(x, "CZ"), "FF");
  EXPECT_EQ(x.pending(), 2u);
  EXPECT_EQ(answer(x, "IZCZ"), "FFFF");  // EmptyQueryResponse
  EXPECT_TRUE(x.idle());
}

TEST(ServerExchange, ExtendedBatchEndsAtSync) {
  ServerExchange x;
  send(x, "PBDE");
  EXPECT_TRUE(x.owed());
  EXPECT_FALSE(x.owesReadyForQuery());
  EXPECT_EQ(answer(x, "12TDC"), "FFFFF");
  EXPECT_EQ(x.pending(), 0u);
  EXPECT_FALSE(x.idle()) << "no Sync yet: the batch is open";
  send(x, "S");
  EXPECT_EQ(answer(x, "Z"), "F");
  EXPECT_TRUE(x.idle());
}

TEST(ServerExchange, FlushEndedBatchKeepsTheServer) {
  // asyncpg prepares with Parse/Describe/Flush and sends the next command later.
  ServerExchange x;
  send(x, "PDH");
  EXPECT_EQ(answer(x, "1tT"), "FFF");  // ParseComplete, ParameterDescription, RowDescription
  EXPECT_EQ(x.pending(), 0u);
  EXPECT_TRUE(x.owed()) << "unsynced: a Flush does not end the batch";
  EXPECT_FALSE(x.quiet());
  EXPECT_FALSE(x.idle());
  send(x, "BES");
  EXPECT_EQ(answer(x, "2CZ"), "FFF");
  EXPECT_TRUE(x.idle());
}

TEST(ServerExchange, FlushAskedUntilTheNextRequest) {
  // pgswitch asks once for the answers of a batch left open; any request sent after that,
  // forwarded or rewritten, needs asking again.
  ServerExchange x;
  send(x, "P");
  EXPECT_FALSE(x.flushAsked());
  x.flushSent();
  EXPECT_TRUE(x.flushAsked());
  x.expect(Expect(Expect::Kind::FakeParse, 7));  // a Parse the statement map answers
  EXPECT_FALSE(x.flushAsked());
  x.flushSent();
  send(x, "B");
  EXPECT_FALSE(x.flushAsked());
  send(x, "H");
  EXPECT_TRUE(x.flushAsked()) << "the client's own Flush asks too";
  x.reset();
  EXPECT_FALSE(x.flushAsked());
}

TEST(ServerExchange, ErrorMidPipelineSkipsToSyncAndUndoesNames) {
  ServerExchange x;
  ClientStatements names;
  ServerStatementCache cache;
  StaleStatements stale;
  // Parse s1 (forwarded with hash 11), Bind, Execute, Sync, then a second batch.
  names.put("s1", ClientStatement{11, "select 1", {}});
  cache.add(11, 10);
  x.expect({Expect::Kind::Parse, 11, "s1"});
  x.batchOpened();
  send(x, "BES");
  send(x, "PBES");
  // The Parse failed: everything up to the first Sync is skipped by the server.
  x.error("42601", StatementBooks{names, &cache, &stale});
  EXPECT_EQ(names.find("s1"), nullptr) << "a failed Parse forgets the client's name";
  EXPECT_FALSE(cache.contains(11));
  EXPECT_TRUE(x.owesReadyForQuery());
  EXPECT_EQ(answer(x, "Z"), "F");  // the first batch's Sync
  EXPECT_EQ(answer(x, "12CZ"), "FFFF");
  EXPECT_TRUE(x.idle());
}

TEST(ServerExchange, ErrorWithNothingAfterItDiscardsUntilSync) {
  ServerExchange x;
  ClientStatements names;
  send(x, "PBE");
  x.error("22012", StatementBooks{names});
  EXPECT_TRUE(x.discarding()) << "no Sync sent yet: the server skips what comes next";
  EXPECT_FALSE(x.idle());
  send(x, "S");
  EXPECT_FALSE(x.discarding());
  EXPECT_EQ(answer(x, "Z"), "F");
  EXPECT_TRUE(x.idle());
}

TEST(ServerExchange, ErrorInSimpleQueryWaitsForReadyForQuery) {
  ServerExchange x;
  ClientStatements names;
  send(x, "Q");
  x.error("42P01", StatementBooks{names});
  EXPECT_FALSE(x.discarding());
  EXPECT_EQ(x.pending(), 1u);
  EXPECT_EQ(answer(x, "Z"), "F");
  EXPECT_TRUE(x.idle());
}

// A client's names, a server's statement cache holding statement 7, the worker's stale set.
struct Books {
  ClientStatements names;
  ServerStatementCache cache;
  StaleStatements stale;
  Books() { cache.add(7, 10, stale.epoch()); }
  StatementBooks all() { return StatementBooks{names, &cache, &stale}; }
};

TEST(ServerExchange, StaleAndMissingStatementsOnBindErrors) {
  ServerExchange x;
  Books b;
  x.expect({Expect::Kind::Bind, 7});
  send(x, "ES");
  x.error("0A000", b.all());  // cached plan changed type
  EXPECT_TRUE(b.stale.isStale(7, b.cache.preparedAt(7)));
  EXPECT_EQ(answer(x, "Z"), "F");
  x.expect({Expect::Kind::Bind, 7});
  send(x, "ES");
  x.error("26000", b.all());  // the server does not have it
  EXPECT_FALSE(b.cache.contains(7));
}

TEST(ServerExchange, ShapeQuestionEndsWithItsAnswerOrAnError) {
  ServerExchange x;
  Books b;
  x.expect({Expect::Kind::HiddenDescribe, 7});
  x.batchOpened();
  EXPECT_TRUE(x.askingShape());
  EXPECT_EQ(answer(x, "tn"), "SS") << "parameters and NoData of pgswitch's own Describe";
  EXPECT_FALSE(x.askingShape());
  // Its Parse failed: the server skips the Describe, and the question is over.
  x.expect({Expect::Kind::HiddenParse, 8});
  x.expect({Expect::Kind::HiddenDescribe, 8});
  EXPECT_TRUE(x.askingShape());
  x.error("42P01", b.all());
  EXPECT_FALSE(x.askingShape());
  EXPECT_TRUE(x.discarding());
  x.reset();
  // A Bind sent to fail: its 26000 leaves this server's copy alone.
  Expect e(Expect::Kind::Bind, 7);
  e.resultTypeChanged = true;
  x.expect(std::move(e));
  send(x, "ES");
  EXPECT_TRUE(x.failingForShape());
  EXPECT_EQ(x.describing(), nullptr);
  x.error("26000", b.all());
  EXPECT_TRUE(b.cache.contains(7));
  EXPECT_EQ(answer(x, "Z"), "F");
}

TEST(ServerExchange, FakeAndHiddenResponses) {
  ServerExchange x;
  ClientStatements names;
  // FakeParse (statement already on the server), then a hidden Parse of pgswitch's own and a
  // forwarded Bind.
  x.expect({Expect::Kind::FakeParse, 5, "a"});
  x.expect({Expect::Kind::HiddenParse, 6});
  x.expect({Expect::Kind::Bind, 6});
  x.batchOpened();
  std::string out;
  x.appendFakes(out, names);
  EXPECT_EQ(out, std::string("1\0\0\0\4", 5));
  auto r = x.onResponse(be::ParseComplete);
  EXPECT_EQ(r.verdict, V::Swallow);
  EXPECT_EQ(r.parsed, 6u) << "a confirmed parse is remembered by hash";
  EXPECT_EQ(answer(x, "2"), "F");
}

TEST(ServerExchange, FakeCloseAnsweredInOrderAndUndoneByError) {
  ServerExchange x;
  ClientStatements names;
  names.put("a", ClientStatement{1, "select 1", {}});
  send(x, "B");
  names.close("a");
  x.expect({Expect::Kind::FakeClose});
  EXPECT_TRUE(x.closePending());
  std::string out;
  x.appendFakes(out, names);
  EXPECT_TRUE(out.empty()) << "the Bind's answer comes first";
  x.error("22012", StatementBooks{names});  // the Bind failed: the Close was skipped
  EXPECT_NE(names.find("a"), nullptr) << "a skipped Close leaves the name";
  EXPECT_FALSE(x.closePending());
}

TEST(ServerExchange, HiddenCloseRestoredWhenSkipped) {
  ServerExchange x;
  ClientStatements names;
  ServerStatementCache cache;
  x.expect({Expect::Kind::HiddenClose, 9});
  send(x, "B");
  x.error("22012", StatementBooks{names, &cache});
  EXPECT_TRUE(cache.contains(9)) << "the eviction did not happen: the server still has it";
}

TEST(ServerExchange, CopyInAndOut) {
  ServerExchange x;
  send(x, "Q");
  EXPECT_EQ(answer(x, "G"), "F");  // CopyInResponse
  EXPECT_TRUE(x.inCopy());
  send(x, "dc");  // CopyData, CopyDone: no answers of their own
  EXPECT_EQ(x.pending(), 1u);
  EXPECT_EQ(answer(x, "CZ"), "FF");
  EXPECT_FALSE(x.inCopy());
  EXPECT_TRUE(x.idle());
  send(x, "Q");
  EXPECT_EQ(answer(x, "Hdc"), "FFF");  // CopyOutResponse, CopyData, CopyDone
  EXPECT_TRUE(x.inCopy());
  EXPECT_FALSE(x.idle());
  EXPECT_EQ(answer(x, "CZ"), "FF");
  EXPECT_TRUE(x.idle());
}

// PostgreSQL ignores Sync and Flush while in COPY IN (libpq sends a Sync right behind an
// extended-protocol COPY FROM STDIN, and another after CopyDone): only the second is answered.
TEST(ServerExchange, SyncBehindAnExtendedCopyInIsIgnored) {
  ServerExchange x;
  send(x, "PBES");
  EXPECT_EQ(answer(x, "12G"), "FFF");  // ParseComplete, BindComplete, CopyInResponse
  EXPECT_TRUE(x.copyInOpen());
  EXPECT_EQ(x.pending(), 1u) << "the Sync sent behind the COPY is not answered";
  send(x, "dHSdcS");  // Flush and Sync inside the copy are ignored too
  EXPECT_FALSE(x.copyInOpen());
  EXPECT_EQ(x.readyForQueriesOwed(), 1);
  EXPECT_EQ(answer(x, "CZ"), "FF");
  EXPECT_TRUE(x.idle());
}

TEST(ServerExchange, CommitBehindAnIgnoredSyncIsAnsweredByTheNextReadyForQuery) {
  ServerExchange x;
  send(x, "PBESdc");
  x.commitSent(true);  // then a COMMIT: two ReadyForQuery messages away, it seems
  send(x, "Q");
  EXPECT_EQ(answer(x, "12G"), "FFF");
  EXPECT_EQ(answer(x, "C"), "F");  // the COPY's CommandComplete
  EXPECT_TRUE(x.commitInFlight());
  EXPECT_EQ(answer(x, "CZ"), "FF") << "the Sync inside the copy was ignored";
  EXPECT_FALSE(x.commitInFlight());
}

TEST(ServerExchange, SyncsPipelinedAcrossACopyCountFromItsEnd) {
  ServerExchange x;
  send(x, "PBESdcSQ");  // all sent before the CopyInResponse arrives
  EXPECT_EQ(answer(x, "12G"), "FFF");
  EXPECT_FALSE(x.copyInOpen());
  EXPECT_EQ(x.readyForQueriesOwed(), 2) << "the Sync after CopyDone and the Query";
  EXPECT_EQ(answer(x, "CZCZ"), "FFFF");
  EXPECT_TRUE(x.idle());

  send(x, "QSS");  // simple-protocol COPY, two Syncs before its CopyDone
  EXPECT_EQ(answer(x, "G"), "F");
  send(x, "dc");
  EXPECT_EQ(answer(x, "CZ"), "FF");
  EXPECT_TRUE(x.idle());
}

// Any other message ends a COPY IN with an error and is discarded (PostgreSQL's "unexpected
// message type during COPY from stdin"): nothing is owed for it.
TEST(ServerExchange, OtherMessageInCopyInIsDiscarded) {
  ServerExchange x;
  ClientStatements names;
  send(x, "Q");
  EXPECT_EQ(answer(x, "G"), "F");
  send(x, "dQ");
  EXPECT_FALSE(x.copyInOpen());
  EXPECT_EQ(x.pending(), 1u);
  x.error("08P01", StatementBooks{names});
  EXPECT_EQ(answer(x, "Z"), "F");
  EXPECT_TRUE(x.idle());

  send(x, "QdPQ");  // the same, sent before the CopyInResponse arrived
  EXPECT_EQ(answer(x, "G"), "F");
  EXPECT_EQ(x.pending(), 2u) << "the Parse ended the copy; the Query after it runs";
  x.error("08P01", StatementBooks{names});
  EXPECT_EQ(answer(x, "ZCZ"), "FFF");
  // The discarded Parse still counts as an open batch: the server is let go after the
  // client's next Sync (hostile input only; nothing is owed meanwhile).
  EXPECT_EQ(x.pending(), 0u);
  send(x, "S");
  EXPECT_EQ(answer(x, "Z"), "F");
  EXPECT_TRUE(x.idle());
}

TEST(ServerExchange, ErrorInExtendedCopyInSkipsToTheSyncAfterIt) {
  ServerExchange x;
  ClientStatements names;
  send(x, "PBES");
  EXPECT_EQ(answer(x, "12G"), "FFF");
  send(x, "ddcS");
  x.error("22P02", StatementBooks{names});  // a bad row
  EXPECT_EQ(x.pending(), 1u);
  EXPECT_EQ(answer(x, "Z"), "F");
  EXPECT_TRUE(x.idle());
}

TEST(ServerExchange, UnexpectedResponsesAreADesync) {
  ServerExchange x;
  EXPECT_EQ(answer(x, "Z"), "D");
  EXPECT_EQ(answer(x, "1"), "D");
  send(x, "Q");
  EXPECT_EQ(answer(x, "2"), "D");
  EXPECT_EQ(answer(x, "N"), "F") << "notices may come at any time";
  EXPECT_EQ(answer(x, "A"), "F") << "so may notifications";
}

TEST(ServerExchange, CommitInFlightClearedByReadyForQuery) {
  ServerExchange x;
  x.commitSent(true);  // as the relay does: before the Query is counted as sent
  send(x, "Q");
  EXPECT_TRUE(x.commitInFlight());
  EXPECT_EQ(answer(x, "CZ"), "FF");
  EXPECT_FALSE(x.commitInFlight());
}

TEST(ServerExchange, PipelinedCommitStaysInFlightUntilItsOwnReadyForQuery) {
  ServerExchange x;
  send(x, "Q");  // BEGIN
  send(x, "Q");  // INSERT
  x.commitSent(true);
  send(x, "Q");  // COMMIT
  x.commitSent(false);  // a later request that is no COMMIT changes nothing
  send(x, "Q");
  EXPECT_EQ(answer(x, "CZ"), "FF");
  EXPECT_TRUE(x.commitInFlight());
  EXPECT_EQ(answer(x, "CZ"), "FF");
  EXPECT_TRUE(x.commitInFlight());
  EXPECT_EQ(answer(x, "CZ"), "FF");
  EXPECT_FALSE(x.commitInFlight());
}

TEST(ServerExchange, ResetForgetsEverything) {
  ServerExchange x;
  send(x, "PBEQ");
  x.commitSent(true);
  x.reset();
  EXPECT_TRUE(x.idle());
  EXPECT_FALSE(x.commitInFlight());
  EXPECT_EQ(x.pending(), 0u);
}

}  // namespace
}  // namespace pgswitch::proxy
