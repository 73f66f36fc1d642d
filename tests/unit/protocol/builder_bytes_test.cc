// Byte-identity of the extended-protocol builders against the bytes proxy/ wrote by hand
// before (literals and putLength assembly, reimplemented here as the reference), the Bind
// head length contract, and CommandComplete tag parsing and classification.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/builder.h"
#include "protocol/command_tag.h"
#include "protocol/framing.h"
#include "protocol/messages.h"

namespace pgswitch::protocol {
namespace {

using namespace std::literals;

// ---- the old hand assembly from proxy/relay_extended.cc, kept verbatim as reference ----

void putLength(std::string& b, size_t at) {
  uint32_t len = static_cast<uint32_t>(b.size() - at);
  for (int i = 0; i < 4; ++i) b[at + i] = static_cast<char>((len >> (24 - 8 * i)) & 0xff);
}

std::string oldParse(std::string_view name, std::string_view tail) {
  std::string build_;
  build_.push_back('P');
  build_.append(4, '\0');
  build_ += name;
  build_.push_back('\0');
  build_.append(tail);
  putLength(build_, 1);
  return build_;
}

std::string oldBindHead(std::string_view portal, std::string_view statement, size_t restLen) {
  std::string build_;
  build_.push_back('B');
  build_.append(4, '\0');
  build_.append(portal);
  build_.push_back('\0');
  build_ += statement;
  build_.push_back('\0');
  uint32_t len = static_cast<uint32_t>(build_.size() - 1 + restLen);
  for (int i = 0; i < 4; ++i) build_[1 + i] = static_cast<char>((len >> (24 - 8 * i)) & 0xff);
  return build_;
}

std::string oldDescribeOrClose(char type, std::string_view name) {
  std::string build_;
  MessageBuilder(build_).begin(type).u8('S').cstr(name).finish();
  return build_;
}

uint32_t readBe32(std::string_view s) {
  return (uint32_t(uint8_t(s[0])) << 24) | (uint32_t(uint8_t(s[1])) << 16) |
         (uint32_t(uint8_t(s[2])) << 8) | uint32_t(uint8_t(s[3]));
}
std::string be32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}

// Statement names as proxy/ makes them (pgsw_ + 16 hex digits) and as clients send them.
const std::vector<std::string> kNames = {
    "",
    "s",
    "pgsw_0123456789abcdef",
    "pgsw_ffffffffffffffff",
    "stmt with spaces",
    "\xc3\xa9t\xc3\xa9",  // UTF-8
    std::string(300, 'n'),
};

// Parse tails: query NUL int16 n, n x int32 OIDs.
std::vector<std::string> parseTails() {
  std::vector<std::string> t = {
      ""s,
      "SELECT 1\0\0\0"s,
      "SELECT $1::int, $2\0\0\2\0\0\0\x17\0\0\0\0"s,
      "\0\0\0"s,                                   // empty query
      "SELECT '\xff\x80'\0\0\1\xff\xff\xff\xff"s,  // high bytes
  };
  std::string big(70000, 'x');  // length needs more than two bytes
  big += "\0\0\0"s;
  t.push_back(big);
  return t;
}

// ---- fixed backend messages ----

TEST(BuilderBytes, FixedBackendMessagesMatchOldLiterals) {
  std::string m;
  appendParseComplete(m);
  EXPECT_EQ(m, std::string_view("1\0\0\0\4", 5));
  m.clear();
  appendBindComplete(m);
  EXPECT_EQ(m, std::string_view("2\0\0\0\4", 5));
  m.clear();
  appendCloseComplete(m);
  EXPECT_EQ(m, std::string_view("3\0\0\0\4", 5));
  m.clear();
  appendNoData(m);
  EXPECT_EQ(m, std::string_view("n\0\0\0\4", 5));
  m.clear();
  appendReadyForQuery(m, 'I');
  EXPECT_EQ(m, std::string_view("Z\0\0\0\5I", 6));
}

TEST(BuilderBytes, ParseCompleteThenReadyForQueryMatchesOldLiteral) {
  std::string m;
  appendParseComplete(m);
  appendReadyForQuery(m, 'I');
  EXPECT_EQ(m, std::string_view("1\0\0\0\4Z\0\0\0\5I", 11));
}

TEST(BuilderBytes, FixedMessagesAppendToExistingBytes) {
  std::string m = "prefix";
  appendBindComplete(m);
  appendNoData(m);
  EXPECT_EQ(m, "prefix2\0\0\0\4n\0\0\0\4"s);
}

// ---- Parse ----

TEST(BuilderBytes, ParseMatchesOldAssembly) {
  for (const std::string& name : kNames) {
    for (const std::string& tail : parseTails()) {
      std::string m;
      appendParse(m, name, tail);
      EXPECT_EQ(m, oldParse(name, tail)) << "name '" << name << "' tail size " << tail.size();
    }
  }
}

TEST(BuilderBytes, ParseAppendsAfterExistingBytes) {
  // proxy/ cleared its buffer first; the builder appends, so a prior message stays intact.
  std::string m;
  appendClose(m, 'S', "pgsw_0000000000000001");
  std::string before = m;
  appendParse(m, "pgsw_0000000000000002", "SELECT 1\0\0\0"s);
  EXPECT_EQ(m, before + oldParse("pgsw_0000000000000002", "SELECT 1\0\0\0"s));
}

TEST(BuilderBytes, ParseReadsBackWithItsParser) {
  std::string tail = "SELECT $1::int, $2\0\0\2\0\0\0\x17\0\0\0\0"s;
  std::string m;
  appendParse(m, "pgsw_0123456789abcdef", tail);
  ASSERT_EQ(readBe32(std::string_view(m).substr(1)), m.size() - 1);
  auto pv = parseParse(asBytes(std::string_view(m).substr(5)));
  ASSERT_TRUE(pv.ok()) << pv.error();
  EXPECT_EQ(pv->name, "pgsw_0123456789abcdef");
  EXPECT_EQ(pv->sql, "SELECT $1::int, $2");
  EXPECT_EQ(pv->paramCount, 2);
}

// ---- Bind head ----

TEST(BuilderBytes, BindHeadMatchesOldAssembly) {
  const std::vector<std::string> portals = {"", "p", "portal_1", std::string(200, 'q')};
  const std::vector<size_t> restLens = {0, 2, 6, 12, 255, 256, 70000, size_t(1) << 30};
  for (const std::string& portal : portals) {
    for (const std::string& stmt : kNames) {
      for (size_t restLen : restLens) {
        std::string m;
        ASSERT_TRUE(appendBindHead(m, portal, stmt, restLen));
        EXPECT_EQ(m, oldBindHead(portal, stmt, restLen))
            << "portal '" << portal << "' statement '" << stmt << "' restLen " << restLen;
      }
    }
  }
}

TEST(BuilderBytes, BindHeadLengthCountsRestLen) {
  std::string m;
  ASSERT_TRUE(appendBindHead(m, "p", "pgsw_0123456789abcdef", 1234));
  // Only the head is written; the length field covers the head plus the 1234 bytes to follow.
  EXPECT_EQ(m.size(), 1u + 4 + 2 + 22);
  EXPECT_EQ(readBe32(std::string_view(m).substr(1)), m.size() - 1 + 1234);
}

TEST(BuilderBytes, BindHeadAppendsAfterExistingBytes) {
  std::string m = "xyz";
  ASSERT_TRUE(appendBindHead(m, "", "s", 10));
  EXPECT_EQ(m, "xyz" + oldBindHead("", "s", 10));
}

TEST(BuilderBytes, BindHeadPlusForwardedRestIsOneValidBind) {
  // The client's Bind: portal, its own statement name, then the rest the proxy forwards.
  std::string rest = "\0\1\0\0\0\2\0\0\0\3abc\0\0\0\2xy\0\1\0\1"s;  // 1 fmt, 2 params, 1 fmt
  std::string head;
  ASSERT_TRUE(appendBindHead(head, "portal", "pgsw_00000000000000aa", rest.size()));
  std::string wire = head + rest;
  Frame f = readFrame(asBytes(wire), kDefaultMaxMessage);
  ASSERT_EQ(f.status, FrameStatus::Complete) << (f.error ? f.error : "");
  EXPECT_EQ(f.total, wire.size());
  auto bh = parseBindHead(asBytes(std::string_view(wire).substr(5)));
  ASSERT_TRUE(bh.ok()) << bh.error();
  EXPECT_EQ(bh->portal, "portal");
  EXPECT_EQ(bh->statement, "pgsw_00000000000000aa");
  EXPECT_EQ(wire.substr(5 + bh->restOffset), rest);
}

TEST(BuilderBytes, BindHeadRefusesLengthBeyondInt32) {
  const std::string portal = "p", stmt = "s";
  const size_t head = 4 + 2 + 2;  // length field + "p\0" + "s\0"
  const size_t maxRest = size_t(INT32_MAX) - head;

  std::string m = "keep";
  ASSERT_TRUE(appendBindHead(m, portal, stmt, maxRest));
  EXPECT_EQ(readBe32(std::string_view(m).substr(5)), uint32_t(INT32_MAX));

  for (size_t restLen :
       {maxRest + 1, size_t(INT32_MAX), size_t(UINT32_MAX), size_t(UINT32_MAX) + 5, SIZE_MAX}) {
    std::string n = "keep";
    EXPECT_FALSE(appendBindHead(n, portal, stmt, restLen)) << restLen;
    EXPECT_EQ(n, "keep") << "out must be untouched on refusal";
  }
}

// ---- Describe / Close ----

TEST(BuilderBytes, DescribeAndCloseMatchOldMessageBuilderCalls) {
  for (const std::string& name : kNames) {
    std::string d, c;
    appendDescribe(d, 'S', name);
    appendClose(c, 'S', name);
    EXPECT_EQ(d, oldDescribeOrClose('D', name)) << name;
    EXPECT_EQ(c, oldDescribeOrClose('C', name)) << name;
  }
}

TEST(BuilderBytes, DescribeAndCloseReadBackWithBothKinds) {
  for (char kind : {'S', 'P'}) {
    for (const std::string& name : kNames) {
      std::string d, c;
      appendDescribe(d, kind, name);
      appendClose(c, kind, name);
      EXPECT_EQ(d, "D"s + be32(4 + 1 + name.size() + 1) + kind + name + '\0');
      EXPECT_EQ(c, "C"s + be32(4 + 1 + name.size() + 1) + kind + name + '\0');
      auto dv = parseDescribeClose(asBytes(std::string_view(d).substr(5)));
      ASSERT_TRUE(dv.ok()) << dv.error();
      EXPECT_EQ(dv->kind, kind);
      EXPECT_EQ(dv->name, name);
    }
  }
}

// ---- CommandComplete tags ----

TEST(CommandTagKind, ExactTagsTheProxyActsOn) {
  EXPECT_EQ(commandTagKind("SET"), CommandTag::Set);
  EXPECT_EQ(commandTagKind("DISCARD ALL"), CommandTag::DiscardAll);
  EXPECT_EQ(commandTagKind("DEALLOCATE ALL"), CommandTag::DeallocateAll);
  EXPECT_EQ(commandTagKind("PREPARE"), CommandTag::Prepare);
  EXPECT_EQ(commandTagKind("LISTEN"), CommandTag::Listen);
}

TEST(CommandTagKind, EverythingElseIsOther) {
  for (std::string_view t : {""sv, "set"sv, "SET "sv, " SET"sv, "SETX"sv, "RESET"sv, "DISCARD"sv,
                             "DISCARD PLANS"sv, "DISCARD ALL "sv, "discard all"sv, "DEALLOCATE"sv,
                             "DEALLOCATE ALL\0"sv, "PREPARE TRANSACTION"sv, "UNLISTEN"sv,
                             "LISTEN x"sv, "INSERT 0 1"sv, "SELECT 1"sv, "DECLARE CURSOR"sv}) {
    EXPECT_EQ(commandTagKind(t), CommandTag::Other) << "'" << t << "'";
  }
}

TEST(CommandComplete, ParsesBuiltMessages) {
  for (std::string_view tag : {"SET"sv, "DISCARD ALL"sv, "INSERT 0 1"sv, ""sv}) {
    std::string m;
    appendCommandComplete(m, tag);
    auto t = parseCommandComplete(asBytes(std::string_view(m).substr(5)));
    ASSERT_TRUE(t.ok()) << t.error();
    EXPECT_EQ(*t, tag);
  }
  std::string m;
  appendCommandComplete(m, "DEALLOCATE ALL");
  auto t = parseCommandComplete(asBytes(std::string_view(m).substr(5)));
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(commandTagKind(*t), CommandTag::DeallocateAll);
}

TEST(CommandComplete, RejectsMalformedBodies) {
  for (std::string_view body : {""sv, "SET"sv, "SET\0x"sv, "SET\0\0"sv}) {
    EXPECT_FALSE(parseCommandComplete(asBytes(body)).ok()) << body.size();
  }
}

TEST(CommandComplete, EveryTruncationAndSeededRandomBytes) {
  std::string body = "DISCARD ALL\0"s;
  for (size_t n = 0; n < body.size(); ++n) {
    EXPECT_FALSE(parseCommandComplete(asBytes(std::string_view(body).substr(0, n))).ok()) << n;
  }
  EXPECT_TRUE(parseCommandComplete(asBytes(body)).ok());

  std::mt19937 rng(20240601);
  for (int i = 0; i < 2000; ++i) {
    std::string b(rng() % 24, '\0');
    for (char& c : b) c = static_cast<char>(rng() % 4 == 0 ? 0 : rng());
    auto t = parseCommandComplete(asBytes(b));
    // Valid exactly when the only NUL is the last byte.
    bool valid = !b.empty() && b.find('\0') == b.size() - 1;
    EXPECT_EQ(t.ok(), valid);
    if (t.ok()) {
      EXPECT_EQ(*t, std::string_view(b).substr(0, b.size() - 1));
    }
  }
}

}  // namespace
}  // namespace pgswitch::protocol
