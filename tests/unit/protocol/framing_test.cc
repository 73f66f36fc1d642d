// Unit tests for protocol/framing: the three outcomes for typed and startup frames, length
// limits checked from the header alone, and message streams split at every byte boundary
// (including headers that straddle two chunks of a ByteQueue).
#include "protocol/framing.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "protocol/builder.h"

namespace pgswitch::protocol {
namespace {

using namespace std::string_literals;

std::span<const std::byte> bytesOf(std::string_view s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

std::string be32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}

// A typed message header: type byte and length field.
std::string header(char type, uint32_t length) { return std::string(1, type) + be32(length); }

// A typed message with the given body.
std::string typedMsg(char type, std::string_view body) {
  return std::string(1, type) + be32(static_cast<uint32_t>(body.size() + 4)) + std::string(body);
}

struct Seen {
  char type;
  std::string bytes;  // the whole message
  bool operator==(const Seen&) const = default;
};

std::ostream& operator<<(std::ostream& o, const Seen& s) {
  return o << "'" << s.type << "' (" << s.bytes.size() << " bytes)";
}

// Pulls every complete frame out of q the way a session does: the first one as a startup
// packet while startupPending. Returns false on Invalid.
bool drain(ByteQueue& q, bool& startupPending, std::vector<Seen>& out) {
  std::vector<std::byte> scratch;
  for (;;) {
    size_t before = q.size();
    Frame f =
        startupPending ? readStartupFrame(q, kMaxStartupPacket) : readFrame(q, kDefaultMaxMessage);
    if (f.status == FrameStatus::Invalid) return false;
    if (f.status == FrameStatus::NeedMore) {
      EXPECT_EQ(q.size(), before);  // NeedMore consumes nothing
      return true;
    }
    EXPECT_LE(f.total, q.size());
    auto whole = q.contiguous(f.total, scratch);
    out.push_back(
        Seen{f.type, std::string(reinterpret_cast<const char*>(whole.data()), whole.size())});
    q.consume(f.total);
    startupPending = false;
  }
}

// ---- typed frames ----

TEST(Framing, TypedCompleteNeedMoreInvalid) {
  std::string m = typedMsg('Q', "SELECT 1"s + '\0');
  Frame f = readFrame(bytesOf(m), kDefaultMaxMessage);
  EXPECT_EQ(f.status, FrameStatus::Complete);
  EXPECT_EQ(f.type, 'Q');
  EXPECT_EQ(f.length, m.size() - 1);
  EXPECT_EQ(f.total, m.size());
  EXPECT_EQ(f.error, nullptr);

  // Extra bytes after the message do not matter.
  std::string two = m + typedMsg('S', "");
  f = readFrame(bytesOf(two), kDefaultMaxMessage);
  EXPECT_EQ(f.status, FrameStatus::Complete);
  EXPECT_EQ(f.total, m.size());

  // Every strict prefix needs more.
  for (size_t n = 0; n < m.size(); ++n) {
    Frame p = readFrame(bytesOf(m).first(n), kDefaultMaxMessage);
    EXPECT_EQ(p.status, FrameStatus::NeedMore) << n;
  }
  // Once the header is there, total is known even before the body.
  f = readFrame(bytesOf(m).first(5), kDefaultMaxMessage);
  EXPECT_EQ(f.total, m.size());

  // Zero-body messages (Sync) are complete at 5 bytes.
  std::string sync = typedMsg('S', "");
  f = readFrame(bytesOf(sync), kDefaultMaxMessage);
  EXPECT_EQ(f.status, FrameStatus::Complete);
  EXPECT_EQ(f.total, 5u);
}

TEST(Framing, TypedLengthBelowFourIsInvalid) {
  for (uint32_t len : {0u, 1u, 2u, 3u}) {
    std::string m = header('Q', len) + "xxxxxxxx";
    Frame f = readFrame(bytesOf(m), kDefaultMaxMessage);
    EXPECT_EQ(f.status, FrameStatus::Invalid) << len;
    EXPECT_NE(f.error, nullptr);
  }
  // Lengths with the top bit set (negative int32) are invalid too, not huge.
  std::string neg = header('D', 0x80000000u);
  EXPECT_EQ(readFrame(bytesOf(neg), kDefaultMaxMessage).status, FrameStatus::Invalid);
  std::string ff = header('D', 0xffffffffu);
  EXPECT_EQ(readFrame(bytesOf(ff), kDefaultMaxMessage).status, FrameStatus::Invalid);
}

TEST(Framing, TypedOverMaxIsInvalidFromTheHeaderAlone) {
  constexpr uint32_t kMax = 1000;
  std::string atMax = header('D', kMax);  // header only: the body has not arrived
  EXPECT_EQ(readFrame(bytesOf(atMax), kMax).status, FrameStatus::NeedMore);
  std::string over = header('D', kMax + 1);
  Frame f = readFrame(bytesOf(over), kMax);
  EXPECT_EQ(f.status, FrameStatus::Invalid);
  EXPECT_NE(f.error, nullptr);

  ChunkPool pool;
  ByteQueue q(pool);
  q.append(over);
  EXPECT_EQ(readFrame(q, kMax).status, FrameStatus::Invalid);
  EXPECT_EQ(q.size(), 5u);
}

TEST(Framing, TypedOverByteQueue) {
  ChunkPool pool;
  ByteQueue q(pool);
  std::string m = typedMsg('P', "\0SELECT $1\0\0\0"s);
  for (size_t n = 0; n < m.size(); ++n) {
    Frame f = readFrame(q, kDefaultMaxMessage);
    EXPECT_EQ(f.status, FrameStatus::NeedMore) << n;
    EXPECT_EQ(q.size(), n);
    q.append(std::string_view(m).substr(n, 1));
  }
  Frame f = readFrame(q, kDefaultMaxMessage);
  EXPECT_EQ(f.status, FrameStatus::Complete);
  EXPECT_EQ(f.type, 'P');
  EXPECT_EQ(f.total, m.size());
  std::string bad = header('Q', 3);
  ByteQueue q2(pool);
  q2.append(bad);
  EXPECT_EQ(readFrame(q2, kDefaultMaxMessage).status, FrameStatus::Invalid);
}

// ---- startup frames ----

TEST(Framing, StartupCompleteNeedMoreInvalid) {
  std::string startup;
  std::vector<std::pair<std::string, std::string>> params{{"user", "app"}, {"database", "db"}};
  appendStartup(startup, params);
  Frame f = readStartupFrame(bytesOf(startup), kMaxStartupPacket);
  EXPECT_EQ(f.status, FrameStatus::Complete);
  EXPECT_EQ(f.type, 0);
  EXPECT_EQ(f.length, startup.size());
  EXPECT_EQ(f.total, startup.size());
  for (size_t n = 0; n < startup.size(); ++n) {
    EXPECT_EQ(readStartupFrame(bytesOf(startup).first(n), kMaxStartupPacket).status,
              FrameStatus::NeedMore)
        << n;
  }

  std::string ssl;
  appendSslRequest(ssl);
  f = readStartupFrame(bytesOf(ssl), kMaxStartupPacket);
  EXPECT_EQ(f.status, FrameStatus::Complete);
  EXPECT_EQ(f.total, 8u);  // the smallest valid startup packet

  std::string cancel;
  appendCancelRequest(cancel, 1, 2);
  f = readStartupFrame(bytesOf(cancel), kMaxStartupPacket);
  EXPECT_EQ(f.status, FrameStatus::Complete);
  EXPECT_EQ(f.total, 16u);
}

TEST(Framing, StartupLengthBelowEightIsInvalid) {
  for (uint32_t len = 0; len < 8; ++len) {
    std::string m = be32(len) + "xxxxxxxx";
    Frame f = readStartupFrame(bytesOf(m), kMaxStartupPacket);
    EXPECT_EQ(f.status, FrameStatus::Invalid) << len;
    EXPECT_NE(f.error, nullptr);
  }
  // Invalid is known from the 4 length bytes alone.
  std::string m = be32(7);
  EXPECT_EQ(readStartupFrame(bytesOf(m), kMaxStartupPacket).status, FrameStatus::Invalid);
}

TEST(Framing, StartupOverMaxIsInvalidFromTheHeaderAlone) {
  std::string atMax = be32(kMaxStartupPacket);
  EXPECT_EQ(readStartupFrame(bytesOf(atMax), kMaxStartupPacket).status, FrameStatus::NeedMore);
  std::string over = be32(kMaxStartupPacket + 1);
  EXPECT_EQ(readStartupFrame(bytesOf(over), kMaxStartupPacket).status, FrameStatus::Invalid);
  std::string huge = be32(0xffffffffu);
  EXPECT_EQ(readStartupFrame(bytesOf(huge), kMaxStartupPacket).status, FrameStatus::Invalid);

  ChunkPool pool;
  ByteQueue q(pool);
  q.append(std::string_view(over).substr(0, 3));
  EXPECT_EQ(readStartupFrame(q, kMaxStartupPacket).status, FrameStatus::NeedMore);
  q.append(std::string_view(over).substr(3));
  EXPECT_EQ(readStartupFrame(q, kMaxStartupPacket).status, FrameStatus::Invalid);
  EXPECT_EQ(q.size(), 4u);
}

// ---- streams split at every byte boundary ----

// A client's side of a session: startup, then a simple query, an extended-protocol round and
// a message larger than one chunk.
std::string clientStream(std::vector<Seen>& expect) {
  std::string s, m;
  std::vector<std::pair<std::string, std::string>> params{{"user", "app"},
                                                          {"application_name", "t"}};
  appendStartup(m, params);
  expect.push_back({0, m});
  s += m;
  auto add = [&](std::string msg) {
    expect.push_back({msg[0], msg});
    s += msg;
  };
  m.clear();
  appendQuery(m, "SELECT 1");
  add(m);
  add(typedMsg('P', "s1\0SELECT $1\0\0\1\0\0\0\x17"s));
  add(typedMsg('B',
               "\0s1\0\0\0\0\1\0\0\0\1"
               "7\0\0"s));
  add(typedMsg('E', "\0\0\0\0\0"s));
  add(typedMsg('S', ""));
  m.clear();
  appendQuery(m, std::string(3 * 1024, 'x'));
  add(m);
  add(typedMsg('X', ""));
  return s;
}

std::string serverStream(std::vector<Seen>& expect) {
  std::string s;
  auto add = [&](std::string msg) {
    expect.push_back({msg[0], msg});
    s += msg;
  };
  std::string m;
  appendAuthOk(m);
  add(m);
  m.clear();
  appendParameterStatus(m, "server_version", "15.0");
  add(m);
  m.clear();
  appendBackendKeyData(m, 42, -7);
  add(m);
  m.clear();
  appendReadyForQuery(m, 'I');
  add(m);
  m.clear();
  appendError(m, ErrorSpec{"ERROR", "42601", "syntax error", "d", "h"});
  add(m);
  add(typedMsg('D', std::string(100, 'r')));
  add(typedMsg('C', "SELECT 1"s + '\0'));
  return s;
}

void checkEverySplit(const std::string& stream, const std::vector<Seen>& expect, bool startup) {
  ChunkPool pool;
  for (size_t split = 0; split <= stream.size(); ++split) {
    ByteQueue q(pool);
    bool pending = startup;
    std::vector<Seen> got;
    q.append(std::string_view(stream).substr(0, split));
    ASSERT_TRUE(drain(q, pending, got)) << split;
    q.append(std::string_view(stream).substr(split));
    ASSERT_TRUE(drain(q, pending, got)) << split;
    ASSERT_EQ(got, expect) << "split at " << split;
    EXPECT_TRUE(q.empty());
  }
  // One byte at a time.
  ByteQueue q(pool);
  bool pending = startup;
  std::vector<Seen> got;
  for (char c : stream) {
    q.append(std::string_view(&c, 1));
    ASSERT_TRUE(drain(q, pending, got));
  }
  EXPECT_EQ(got, expect);
}

TEST(Framing, ClientStreamSplitAtEveryByte) {
  std::vector<Seen> expect;
  std::string s = clientStream(expect);
  checkEverySplit(s, expect, true);
}

TEST(Framing, ServerStreamSplitAtEveryByte) {
  std::vector<Seen> expect;
  std::string s = serverStream(expect);
  checkEverySplit(s, expect, false);
}

TEST(Framing, StreamStraddlingChunkBoundaryAtEveryOffset) {
  // The stream starts s bytes before the end of a chunk, for every s, so every header and
  // body crosses the chunk boundary somewhere.
  std::vector<Seen> expect;
  std::string stream = serverStream(expect);
  ChunkPool pool;
  for (size_t s = 1; s <= stream.size(); ++s) {
    ByteQueue q(pool);
    q.append(std::string(Chunk::kSize - s, '\0'));
    q.append(stream);
    q.consume(Chunk::kSize - s);
    bool pending = false;
    std::vector<Seen> got;
    ASSERT_TRUE(drain(q, pending, got)) << s;
    ASSERT_EQ(got, expect) << "offset " << s;
  }
}

TEST(Framing, InvalidInTheMiddleOfAStream) {
  std::vector<Seen> expect;
  std::string stream = serverStream(expect) + "Z" + be32(2) + "I";
  ChunkPool pool;
  ByteQueue q(pool);
  q.append(stream);
  bool pending = false;
  std::vector<Seen> got;
  EXPECT_FALSE(drain(q, pending, got));
  EXPECT_EQ(got, expect);  // everything before the bad header was framed
}

}  // namespace
}  // namespace pgswitch::protocol
