// TxnReplay on bytes: what the taps record, the replayed input put back in front of the
// client's, the digest comparison (match, mismatch, short), the limit, and a second loss
// while verifying.
#include "proxy/session/txn_replay.h"

#include <gtest/gtest.h>

#include <string>

namespace pgswitch::proxy {
namespace {

using namespace protocol;

std::string text(const ByteQueue& q) {
  std::string s(q.size(), '\0');
  q.copyOut(0, std::as_writable_bytes(std::span(s.data(), s.size())));
  return s;
}

// A client connection's two queues with the replay's taps on them, as Relay attaches them.
struct Client {
  ChunkPool pool;
  ByteQueue in{pool};
  SliceQueue out{pool};
  TxnReplay r;
  explicit Client(size_t limit = 1024) : r(limit) {}
  void attach() {
    r.start();
    in.setConsumeTap(&r);
    out.setPushTap(&r);
  }
  void detach() {
    in.setConsumeTap(nullptr);
    out.setPushTap(nullptr);
  }
  // The client sends `req`; the relay consumes it; the server answers `ans`.
  void exchange(std::string_view req, std::string_view ans) {
    in.append(req);
    in.consume(req.size());
    out.pushCopy(ans);
  }
};

TEST(TxnReplay, RecordsWhatWasConsumedAndSent) {
  Client c;
  c.attach();
  c.exchange("BEGIN", "ok1");
  c.exchange("UPDATE", "ok2");
  EXPECT_EQ(c.r.inBytes(), 11u);
  EXPECT_EQ(c.r.outBytes(), 6u);
  EXPECT_EQ(c.out.bytes(), 6u);  // recording drops nothing
}

TEST(TxnReplay, MatchingReplayIsDroppedThenPassesTheRest) {
  Client c;
  c.attach();
  c.exchange("BEGIN", "ok1");
  c.exchange("UPDATE", "ok2");
  c.in.append("SELECT");  // in flight: not consumed yet... then lost
  c.in.consume(6);
  c.in.append("NEXT");  // what the client sends meanwhile
  c.detach();
  uint64_t outBefore = c.out.bytes();
  c.r.replay(c.in);
  EXPECT_EQ(text(c.in), "BEGINUPDATESELECTNEXT");
  EXPECT_EQ(c.r.inputLeft(), 17u);
  EXPECT_TRUE(c.r.verifying());

  c.attach();  // the new server is configured
  c.in.consume(5);
  c.out.pushCopy("ok1");
  c.in.consume(6);
  EXPECT_FALSE(c.r.holdsInput());
  c.in.consume(6);
  EXPECT_TRUE(c.r.holdsInput());  // NEXT waits for the verdict
  c.out.pushCopy("ok2rows");      // the last answer crosses what the client had got
  EXPECT_EQ(c.r.verdict(), TxnReplay::Verdict::Match);
  EXPECT_EQ(c.out.bytes(), outBefore + 4);  // only "rows" reached the client
  c.r.finish(c.in);
  EXPECT_FALSE(c.r.replaying());
  EXPECT_EQ(text(c.in), "NEXT");
  // Recorded again as it ran: a second loss could replay it once more.
  EXPECT_EQ(c.r.inBytes(), 17u);
  EXPECT_EQ(c.r.outBytes(), 10u);
}

TEST(TxnReplay, DifferentAnswerIsAMismatchAndReachesNobody) {
  Client c;
  c.attach();
  c.exchange("BEGIN", "ok1");
  c.exchange("SELECT now()", "12:00:00");
  c.in.append("NEXT");
  c.detach();
  uint64_t outBefore = c.out.bytes();
  c.r.replay(c.in);
  c.attach();
  c.in.consume(5);
  c.out.pushCopy("ok1");
  c.in.consume(12);
  c.out.pushCopy("12:00:01");
  EXPECT_EQ(c.r.verdict(), TxnReplay::Verdict::Mismatch);
  c.out.pushCopy("more");  // nothing of a diverged replay reaches the client
  EXPECT_EQ(c.out.bytes(), outBefore);
  c.detach();
  c.r.finish(c.in);
  EXPECT_EQ(text(c.in), "NEXT");
  EXPECT_EQ(c.r.spoiled(), TxnReplay::Spoiled::Diverged);
}

TEST(TxnReplay, NothingSeenYetMatchesAtOnce) {
  Client c;
  c.attach();
  c.in.append("BEGIN");
  c.in.consume(5);  // lost before any answer
  c.detach();
  c.r.replay(c.in);
  EXPECT_EQ(c.r.verdict(), TxnReplay::Verdict::Match);
  EXPECT_EQ(text(c.in), "BEGIN");
}

TEST(TxnReplay, OverTheLimitIsSpoiledUntilIdle) {
  Client c(10);
  c.attach();
  c.exchange("BEGIN", "ok");
  c.exchange("UPDATE x", "ok");
  EXPECT_EQ(c.r.spoiled(), TxnReplay::Spoiled::TooLarge);
  c.r.restart();  // the server is idle again
  c.exchange("BEGIN", "ok");
  EXPECT_EQ(c.r.spoiled(), TxnReplay::Spoiled::No);
  EXPECT_EQ(c.r.inBytes(), 5u);
}

TEST(TxnReplay, DisabledRecordsNothing) {
  Client c(0);
  c.attach();
  EXPECT_FALSE(c.r.recording());
  c.exchange("BEGIN", "ok");
  EXPECT_EQ(c.r.inBytes(), 0u);
}

TEST(TxnReplay, LostAgainWhileVerifyingStartsOver) {
  Client c;
  c.attach();
  c.exchange("BEGIN", "ok1");
  c.exchange("UPDATE", "ok2");
  c.detach();
  c.r.replay(c.in);
  c.attach();
  c.in.consume(5);  // BEGIN sent again, then lost
  c.out.pushCopy("ok1");
  c.detach();
  c.r.again(c.in);
  EXPECT_EQ(text(c.in), "BEGINUPDATE");
  EXPECT_EQ(c.r.inputLeft(), 11u);
  EXPECT_EQ(c.r.attempts(), 2);
  c.attach();
  c.in.consume(11);
  c.out.pushCopy("ok1ok2");
  EXPECT_EQ(c.r.verdict(), TxnReplay::Verdict::Match);
}

TEST(TxnReplay, ShortReplayStaysPending) {
  Client c;
  c.attach();
  c.exchange("BEGIN", "ok1");
  c.exchange("UPDATE", "ok2");
  c.detach();
  c.r.replay(c.in);
  c.attach();
  c.in.consume(11);
  c.out.pushCopy("ok1");
  // All input sent again, fewer answers: the session calls it a mismatch when nothing more
  // is owed.
  EXPECT_TRUE(c.r.holdsInput());
  EXPECT_EQ(c.r.verdict(), TxnReplay::Verdict::Pending);
}

TEST(TxnReplay, StopGivesTheLogBack) {
  Client c;
  c.attach();
  c.exchange("BEGIN", "ok");
  c.r.stop();
  EXPECT_FALSE(c.r.recording());
  EXPECT_EQ(c.r.inBytes(), 0u);
  c.detach();
}

}  // namespace
}  // namespace pgswitch::proxy

namespace pgswitch::proxy {
namespace {

TEST(TxnReplay, AttemptsCountUntilTheTransactionEnds) {
  Client c;
  c.attach();
  c.exchange("BEGIN", "ok1");
  c.detach();
  c.r.replay(c.in);
  c.attach();
  c.in.consume(5);
  c.out.pushCopy("ok1");
  ASSERT_EQ(c.r.verdict(), TxnReplay::Verdict::Match);
  c.r.finish(c.in);
  EXPECT_EQ(c.r.attempts(), 1);  // a server dying at the same point is not fed forever
  c.detach();
  c.r.replay(c.in);
  EXPECT_EQ(c.r.attempts(), 2);
  c.r.finish(c.in);
  c.r.restart();  // the transaction is over
  EXPECT_EQ(c.r.attempts(), 0);
}

}  // namespace
}  // namespace pgswitch::proxy
