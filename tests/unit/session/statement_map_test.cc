// StatementMap and local answers on bytes: client names become pgsw_<hash> on servers,
// prepared lazily, answered by pgswitch when the server already has them; the requests
// pgswitch answers itself; the client session's transition table.
#include "proxy/session/statement_map.h"

#include <gtest/gtest.h>

#include "protocol/builder.h"
#include "protocol/framing.h"
#include "protocol/messages.h"
#include "proxy/session/client_state.h"
#include "proxy/session/local_answers.h"

namespace pgswitch::proxy {
namespace {

using namespace protocol;

std::string parseMsg(std::string_view name, std::string_view sql) {
  std::string tail(sql);
  tail.push_back('\0');
  tail.append(2, '\0');  // no parameter types
  std::string out;
  appendParse(out, name, tail);
  return out;
}

std::string bindMsg(std::string_view portal, std::string_view stmt) {
  std::string rest("\0\0\0\0\0\0", 6);  // no formats, no parameters, no result formats
  std::string out;
  EXPECT_TRUE(appendBindHead(out, portal, stmt, rest.size()));
  return out + rest;
}

struct Fixture {
  ChunkPool pool;
  ByteQueue in{pool};
  std::string toServer;
  ServerStatementCache cache;
  StaleStatements stale;
  ServerExchange exchange;
  StatementMap map;
  std::vector<std::byte> scratch;
  StatementTarget target{toServer, cache, stale, 100, exchange, scratch};

  StatementMap::Result feed(std::string_view msg) {
    in.clear();
    in.append(msg);
    StatementMap::Result r;
    switch (msg[0]) {
      case 'P': r = map.parse(in, msg.size(), target); break;
      case 'B': r = map.bind(in, msg.size(), target); break;
      case 'D': r = map.describe(in, msg.size(), target); break;
      default: r = map.close(in, msg.size(), target); break;
    }
    return r;
  }
};

TEST(StatementMap, NamedParseIsRenamedAndPreparedOnce) {
  Fixture f;
  auto r = f.feed(parseMsg("s1", "select 1"));
  EXPECT_EQ(r.outcome, StatementMap::Outcome::Rewritten);
  EXPECT_EQ(r.sql, "select 1");
  uint64_t h = f.map.names().find("s1")->hash;
  EXPECT_EQ(f.toServer.substr(5, 5), "pgsw_");
  EXPECT_NE(f.toServer.find(serverStatementName(h)), std::string::npos);
  EXPECT_TRUE(f.cache.contains(h));
  EXPECT_EQ(f.exchange.onResponse(be::ParseComplete).verdict, ServerExchange::Verdict::Forward);
  // The same text under another name: the server has it, pgswitch answers ParseComplete.
  f.toServer.clear();
  f.feed(parseMsg("s2", "select 1"));
  EXPECT_TRUE(f.toServer.empty());
  std::string fakes;
  f.exchange.appendFakes(fakes, f.map.names());
  EXPECT_EQ(fakes, std::string("1\0\0\0\4", 5));
}

TEST(StatementMap, UnnamedParseIsForwarded) {
  Fixture f;
  auto r = f.feed(parseMsg("", "SET x = 1"));
  EXPECT_EQ(r.outcome, StatementMap::Outcome::Forward);
  EXPECT_EQ(r.sql, "SET x = 1");
  EXPECT_TRUE(f.toServer.empty());
}

TEST(StatementMap, BindRewritesTheNameAndForwardsParametersByReference) {
  Fixture f;
  f.feed(parseMsg("s1", "select $1"));
  uint64_t h = f.map.names().find("s1")->hash;
  f.toServer.clear();
  std::string bind = bindMsg("", "s1");
  auto r = f.feed(bind);
  EXPECT_EQ(r.outcome, StatementMap::Outcome::Partial);
  EXPECT_EQ(r.passthrough, 6u);
  EXPECT_EQ(r.sql, "select $1");
  // The new head announces the parameters that follow it.
  Frame fr = readFrame(asBytes(f.toServer + std::string(6, '\0')), 1 << 20);
  EXPECT_EQ(fr.status, FrameStatus::Complete);
  EXPECT_NE(f.toServer.find(serverStatementName(h)), std::string::npos);
}

TEST(StatementMap, BindOnAnotherServerPreparesFirst) {
  Fixture f;
  f.feed(parseMsg("s1", "select 1"));
  f.cache.clear();  // the client moved to a server without it
  f.toServer.clear();
  f.feed(bindMsg("", "s1"));
  EXPECT_EQ(f.toServer[0], 'P') << "a hidden Parse goes ahead of the Bind";
  EXPECT_NE(f.toServer.find('B'), std::string::npos);
}

std::string describeMsg(std::string_view name) {
  std::string d;
  appendDescribe(d, 'S', name);
  return d;
}

// The names of the statements in a run of Parse/Bind/Describe/Close messages, in order (the
// last may be a Bind head without its parameters).
std::vector<std::string> namesIn(std::string_view bytes) {
  std::vector<std::string> out;
  while (bytes.size() >= 5) {
    Frame fr = readFrame(asBytes(bytes), 1 << 20);
    if (fr.total < 5) break;
    fr.total = std::min(fr.total, bytes.size());
    std::string_view body = bytes.substr(5, fr.total - 5);
    auto cstr = [](std::string_view v) { return std::string(v.substr(0, v.find('\0'))); };
    if (fr.type == 'B') out.push_back(cstr(body.substr(body.find('\0') + 1)));
    if (fr.type == 'D' || fr.type == 'C') out.push_back(cstr(body.substr(1)));
    if (fr.type == 'P') out.push_back(cstr(body));
    if (fr.type == 'H') out.emplace_back("flush");
    bytes.remove_prefix(fr.total);
  }
  return out;
}

TEST(StatementMap, ResultShapeOfACopyIsCheckedAgainstWhatTheClientWasTold) {
  Fixture f;
  f.feed(parseMsg("s1", "select * from t"));
  const uint64_t h = f.map.names().find("s1")->hash;
  const std::string server = serverStatementName(h);
  // Never described: the copy runs whatever its shape, as before.
  f.toServer.clear();
  EXPECT_EQ(f.feed(bindMsg("", "s1")).outcome, StatementMap::Outcome::Partial);
  // The client was told a shape; a copy made afresh (cache cleared: another server) is asked
  // for its own first, with a Flush, and the Bind waits.
  f.map.names().setShape("s1", h, {42, 5});
  f.cache.clear();
  f.toServer.clear();
  f.exchange.reset();
  EXPECT_EQ(f.feed(bindMsg("", "s1")).outcome, StatementMap::Outcome::AwaitShape);
  EXPECT_EQ(namesIn(f.toServer), (std::vector<std::string>{server, server, "flush"}));
  EXPECT_TRUE(f.exchange.askingShape());
  EXPECT_EQ(f.exchange.onResponse(be::ParseComplete).verdict, ServerExchange::Verdict::Swallow);
  ASSERT_NE(f.exchange.describing(), nullptr);
  EXPECT_EQ(f.exchange.describing()->hash, h);
  EXPECT_EQ(f.exchange.onResponse(be::ParameterDescription).verdict,
            ServerExchange::Verdict::Swallow);
  EXPECT_EQ(f.exchange.onResponse(be::RowDescription).verdict, ServerExchange::Verdict::Swallow);
  EXPECT_FALSE(f.exchange.askingShape());
  // The same shape: the Bind goes to the copy.
  f.cache.setShape(h, {42, 6});
  f.toServer.clear();
  EXPECT_EQ(f.feed(bindMsg("", "s1")).outcome, StatementMap::Outcome::Partial);
  EXPECT_EQ(namesIn(f.toServer), std::vector<std::string>{server});
  // Another shape, learned before the client's: the copy predates a change the client was
  // told of. It is closed and prepared again, and asked for its shape.
  f.cache.setShape(h, {43, 4});
  f.toServer.clear();
  f.exchange.reset();
  EXPECT_EQ(f.feed(bindMsg("", "s1")).outcome, StatementMap::Outcome::AwaitShape);
  EXPECT_EQ(namesIn(f.toServer), (std::vector<std::string>{server, server, server, "flush"}))
      << "Close, Parse, Describe";
  EXPECT_EQ(f.cache.shape(h).shape, 0u);
  // Another shape, learned after the client's (DDL since the client was told): the Bind goes
  // under a name no server has, marked so that its error reaches the client as 0A000.
  f.cache.setShape(h, {43, 9});
  f.toServer.clear();
  f.exchange.reset();
  EXPECT_EQ(f.feed(bindMsg("", "s1")).outcome, StatementMap::Outcome::Partial);
  EXPECT_EQ(namesIn(f.toServer), std::vector<std::string>{"pgsw_result_type_changed"});
  EXPECT_TRUE(f.exchange.failingForShape());
  // A Describe of it: the copy's parameter types first (PostgreSQL sends them before its
  // error), then the failing Describe.
  f.exchange.reset();
  f.toServer.clear();
  EXPECT_EQ(f.feed(describeMsg("s1")).outcome, StatementMap::Outcome::Rewritten);
  EXPECT_EQ(namesIn(f.toServer), (std::vector<std::string>{server, "pgsw_result_type_changed"}));
  EXPECT_EQ(f.exchange.onResponse(be::ParameterDescription).verdict,
            ServerExchange::Verdict::Forward);
  EXPECT_EQ(f.exchange.onResponse(be::RowDescription).verdict, ServerExchange::Verdict::Swallow);
  EXPECT_TRUE(f.exchange.failingForShape());
  // In a failed transaction the server refuses the Bind itself (25P02), as PostgreSQL does.
  f.target.txnStatus = 'E';
  f.exchange.reset();
  f.toServer.clear();
  EXPECT_EQ(f.feed(bindMsg("", "s1")).outcome, StatementMap::Outcome::Partial);
  EXPECT_EQ(namesIn(f.toServer), std::vector<std::string>{server});
}

TEST(StatementMap, DescribeAnswerTellsTheClientTheShape) {
  Fixture f;
  f.feed(parseMsg("s1", "select 1"));
  const uint64_t h = f.map.names().find("s1")->hash;
  f.exchange.reset();
  f.feed(describeMsg("s1"));
  const Expect* d = f.exchange.describing();
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->clientName, "s1");
  f.map.names().setShape(d->clientName, d->hash, {42, 1});
  EXPECT_EQ(f.map.names().find("s1")->shape.shape, 42u);
  // A name that now stands for another statement keeps its own shape.
  f.map.names().setShape("s1", h + 1, {7, 2});
  EXPECT_EQ(f.map.names().find("s1")->shape.shape, 42u);
}

TEST(StatementMap, UnknownNamesGoThroughUnchanged) {
  Fixture f;
  EXPECT_EQ(f.feed(bindMsg("", "nope")).outcome, StatementMap::Outcome::Forward);
  std::string d;
  MessageBuilder(d).begin('D').u8('S').cstr("nope").finish();
  EXPECT_EQ(f.feed(d).outcome, StatementMap::Outcome::Forward);
}

TEST(StatementMap, CloseIsAnsweredByPgswitch) {
  Fixture f;
  f.feed(parseMsg("s1", "select 1"));
  f.exchange.onResponse(be::ParseComplete);
  std::string c;
  appendClose(c, 'S', "s1");
  EXPECT_EQ(f.feed(c).outcome, StatementMap::Outcome::Rewritten);
  EXPECT_EQ(f.map.names().find("s1"), nullptr);
  std::string fakes;
  f.exchange.appendFakes(fakes, f.map.names());
  EXPECT_EQ(fakes, std::string("3\0\0\0\4", 5));
}

TEST(StatementMap, MalformedMessagesAreInvalid) {
  Fixture f;
  std::string bad("P\0\0\0\6x", 6);  // name without its NUL
  EXPECT_EQ(f.feed(bad).outcome, StatementMap::Outcome::Invalid);
}

TEST(LocalAnswers, TxnEndOutsideATransaction) {
  ChunkPool pool;
  ByteQueue in(pool);
  std::string q;
  appendQuery(q, "/* pgswitch: primary */ commit");
  in.append(q);
  std::string out;
  EXPECT_TRUE(answerTxnEnd(in, 1 << 20, out));
  EXPECT_TRUE(in.empty());
  EXPECT_NE(out.find("25P01"), std::string::npos);
  EXPECT_EQ(out.substr(out.size() - 6), std::string("Z\0\0\0\5I", 6));
  in.clear();
  q.clear();
  appendQuery(q, "COMMIT AND CHAIN");
  in.append(q);
  EXPECT_FALSE(answerTxnEnd(in, 1 << 20, out));
  EXPECT_FALSE(in.empty());
}

TEST(LocalAnswers, DeallocateOfAClientStatement) {
  ChunkPool pool;
  ByteQueue in(pool);
  ClientStatements names;
  names.put("s1", ClientStatement{1, "select 1", {}});
  std::string q;
  appendQuery(q, "DEALLOCATE s1");
  in.append(q);
  std::vector<std::byte> scratch;
  std::string out;
  EXPECT_TRUE(answerDeallocate(in, 1 << 20, names, 'T', scratch, out));
  EXPECT_EQ(names.find("s1"), nullptr);
  EXPECT_EQ(out.substr(out.size() - 6), std::string("Z\0\0\0\5T", 6));
  q.clear();
  appendQuery(q, "DEALLOCATE ALL");
  in.append(q);
  EXPECT_FALSE(answerDeallocate(in, 1 << 20, names, 'I', scratch, out));
}

TEST(LocalAnswers, DeallocateInAnUnnamedParseBatch) {
  ChunkPool pool;
  ByteQueue in(pool);
  ClientStatements names;
  names.put("s1", ClientStatement{1, "select 1", {}});
  names.put("s2", ClientStatement{2, "select 2", {}});
  const std::string execute("E\0\0\0\x09\0\0\0\0\0", 10);  // portal "", no row limit
  std::string sync;
  appendSync(sync);
  auto batch = [&](std::string_view name, std::string_view sql) {
    return parseMsg(name, sql) + bindMsg("", "") + execute + sync;
  };
  std::vector<std::byte> scratch;
  std::string out;
  // Whitespace and a comment before the word pass the first-byte filter.
  in.append(batch("", "\n /* psycopg */ DEALLOCATE s1"));
  EXPECT_TRUE(answerDeallocate(in, 1 << 20, names, 'I', scratch, out));
  EXPECT_TRUE(in.empty());
  EXPECT_EQ(names.find("s1"), nullptr);
  EXPECT_EQ(out[0], '1');  // ParseComplete first
  EXPECT_NE(out.find("DEALLOCATE"), std::string::npos);
  EXPECT_EQ(out.substr(out.size() - 6), std::string("Z\0\0\0\5I", 6));
  // Another statement, and a DEALLOCATE prepared under a name, are left to the server.
  for (auto [name, sql] : {std::pair{"", "SELECT 1"}, std::pair{"n", "DEALLOCATE s2"}}) {
    in.clear();
    out.clear();
    in.append(batch(name, sql));
    const size_t before = in.size();
    EXPECT_FALSE(answerDeallocate(in, 1 << 20, names, 'I', scratch, out)) << sql;
    EXPECT_EQ(in.size(), before);
    EXPECT_TRUE(out.empty());
  }
  EXPECT_NE(names.find("s2"), nullptr);
}

TEST(LocalAnswers, ParseSyncOfAKnownStatement) {
  ChunkPool pool;
  ByteQueue in(pool);
  ClientStatements names;
  std::string m = parseMsg("s1", "select 1");
  appendSync(m);
  in.append(m);
  std::vector<std::byte> scratch;
  std::string out;
  EXPECT_FALSE(answerParse(in, 1 << 20, names, [](uint64_t) { return false; }, scratch, out))
      << "never parsed on any server: the server must see it";
  EXPECT_TRUE(answerParse(in, 1 << 20, names, [](uint64_t) { return true; }, scratch, out));
  EXPECT_TRUE(in.empty());
  EXPECT_EQ(out, std::string("1\0\0\0\4Z\0\0\0\5I", 11));
  EXPECT_NE(names.find("s1"), nullptr);
}

TEST(LocalAnswers, DropRequestUpToItsEnd) {
  ChunkPool pool;
  ByteQueue in(pool);
  std::string m = parseMsg("", "select 1") + bindMsg("", "");
  in.append(m);
  EXPECT_FALSE(dropRequest(in, 1 << 20));
  EXPECT_TRUE(in.empty());
  std::string s;
  appendSync(s);
  appendQuery(s, "select 2");
  in.append(s);
  EXPECT_TRUE(dropRequest(in, 1 << 20));
  EXPECT_FALSE(in.empty()) << "the next request stays";
}

TEST(ClientStateTable, EveryStateCanCloseAndClosingIsFinal) {
  using S = ClientState;
  const S all[] = {S::Startup, S::Auth,     S::Queued, S::Holding, S::Configure,
                   S::Active,  S::OwnQuery, S::Idle,   S::Console, S::Closing};
  for (S s : all) {
    EXPECT_EQ(legalTransition(s, S::Closing), s != S::Closing) << toString(s);
    if (s != S::Closing) {
      EXPECT_FALSE(legalTransition(S::Closing, s)) << toString(s);
    }
  }
  EXPECT_TRUE(legalTransition(S::Idle, S::Queued));
  EXPECT_TRUE(legalTransition(S::Active, S::OwnQuery));
  EXPECT_FALSE(legalTransition(S::Idle, S::Active)) << "a server is linked through Configure";
  EXPECT_FALSE(legalTransition(S::Console, S::Queued));
  EXPECT_FALSE(legalTransition(S::Startup, S::Active));
}

}  // namespace
}  // namespace pgswitch::proxy
