// Unit tests for protocol/buffer: chunk pool accounting, the input ByteQueue (reads, copies,
// contiguous views, slicing across 32 KiB chunks) and the output SliceQueue, ending with a
// seeded random round trip through both.
#include "protocol/buffer.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace pgswitch::protocol {
namespace {

constexpr size_t K = Chunk::kSize;

std::string textOf(std::span<const std::byte> b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

// Deterministic, position-dependent content so misplaced bytes show up.
std::string pattern(size_t n, size_t seed = 0) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + seed * 7 + i / 251) & 0xff);
  return s;
}

std::string gatherAll(const SliceQueue& q) {
  std::vector<SliceQueue::IoVec> iov(q.bytes() + 1);
  size_t n = q.gather(iov);
  std::string out;
  for (size_t i = 0; i < n; ++i) out.append(reinterpret_cast<const char*>(iov[i].base), iov[i].len);
  return out;
}

std::string queueText(const ByteQueue& q) {
  std::string s(q.size(), '\0');
  EXPECT_TRUE(q.copyOut(0, std::as_writable_bytes(std::span<char>(s.data(), s.size()))));
  return s;
}

bool pointsInto(const std::byte* p, const Chunk* c) {
  return p >= c->data && p < c->data + Chunk::kSize;
}

// ---- ChunkPool / ChunkRef ----

TEST(ChunkPool, AcquireReleaseCountsAndReuse) {
  ChunkPool pool;
  EXPECT_EQ(pool.liveChunks(), 0u);
  Chunk* a = pool.acquire();
  Chunk* b = pool.acquire();
  EXPECT_NE(a, b);
  EXPECT_EQ(a->pool, &pool);
  EXPECT_EQ(a->refs, 0u);
  EXPECT_EQ(pool.liveChunks(), 2u);
  EXPECT_EQ(pool.freeChunks(), 0u);
  pool.release(a);
  EXPECT_EQ(pool.liveChunks(), 1u);
  EXPECT_EQ(pool.freeChunks(), 1u);
  Chunk* c = pool.acquire();  // comes from the free list
  EXPECT_EQ(c, a);
  EXPECT_EQ(pool.freeChunks(), 0u);
  EXPECT_EQ(pool.liveChunks(), 2u);
  pool.release(b);
  pool.release(c);
  EXPECT_EQ(pool.liveChunks(), 0u);
  EXPECT_EQ(pool.freeChunks(), 2u);
}

TEST(ChunkPool, KeepsAtMostMaxFreeIdleChunks) {
  ChunkPool pool(2);
  std::vector<Chunk*> cs;
  for (int i = 0; i < 5; ++i) cs.push_back(pool.acquire());
  EXPECT_EQ(pool.liveChunks(), 5u);
  for (Chunk* c : cs) pool.release(c);
  EXPECT_EQ(pool.liveChunks(), 0u);
  EXPECT_EQ(pool.freeChunks(), 2u);
}

TEST(ChunkRef, CopyMoveAndLastReferenceReleases) {
  ChunkPool pool;
  {
    ChunkRef r(pool.acquire());
    EXPECT_EQ(r->refs, 1u);
    ChunkRef copy = r;
    EXPECT_EQ(r->refs, 2u);
    ChunkRef moved = std::move(copy);
    EXPECT_FALSE(copy);  // NOLINT(bugprone-use-after-move): moved-from is documented empty
    EXPECT_EQ(r->refs, 2u);
    ChunkRef other(pool.acquire());
    EXPECT_EQ(pool.liveChunks(), 2u);
    other = moved;  // drops other's chunk
    EXPECT_EQ(pool.liveChunks(), 1u);
    EXPECT_EQ(r->refs, 3u);
    moved.reset();
    other.reset();
    EXPECT_EQ(r->refs, 1u);
    EXPECT_EQ(pool.liveChunks(), 1u);
  }
  EXPECT_EQ(pool.liveChunks(), 0u);
}

// ---- ByteQueue ----

TEST(ByteQueue, WritableCommitAndSize) {
  ChunkPool pool;
  {
    ByteQueue q(pool);
    EXPECT_TRUE(q.empty());
    auto w = q.writable();
    EXPECT_EQ(w.size(), K);
    std::memcpy(w.data(), "hello", 5);
    q.commit(5);
    EXPECT_EQ(q.size(), 5u);
    EXPECT_EQ(queueText(q), "hello");

    // The rest of the same chunk is offered for the next read.
    auto w2 = q.writable();
    EXPECT_EQ(w2.data(), w.data() + 5);
    EXPECT_EQ(w2.size(), K - 5);
    std::memcpy(w2.data(), " world", 6);
    q.commit(6);
    EXPECT_EQ(queueText(q), "hello world");
    EXPECT_EQ(pool.liveChunks(), 1u);

    // Commit of nothing changes nothing.
    (void)q.writable();
    q.commit(0);
    EXPECT_EQ(q.size(), 11u);
  }
  EXPECT_EQ(pool.liveChunks(), 0u);
}

TEST(ByteQueue, WritableTakesFreshChunkWhenTailTooSmall) {
  ChunkPool pool;
  {
    ByteQueue q(pool);
    std::string fill = pattern(K - 100);
    q.append(fill);
    EXPECT_EQ(pool.liveChunks(), 1u);
    auto w = q.writable(50);  // 100 bytes left: enough
    EXPECT_EQ(w.size(), 100u);
    EXPECT_EQ(pool.liveChunks(), 1u);
    auto w2 = q.writable(1024);  // not enough: a new chunk
    EXPECT_EQ(w2.size(), K);
    EXPECT_EQ(pool.liveChunks(), 2u);
    std::memcpy(w2.data(), "xyz", 3);
    q.commit(3);
    EXPECT_EQ(q.size(), K - 100 + 3);
    EXPECT_EQ(queueText(q), fill + "xyz");
  }
  EXPECT_EQ(pool.liveChunks(), 0u);
}

TEST(ByteQueue, AppendSpansChunksAndCopyOut) {
  ChunkPool pool;
  {
    ByteQueue q(pool);
    std::string data = pattern(3 * K + 1234);
    q.append(std::string_view(data).substr(0, 10));
    q.append(std::string_view(data).substr(10));
    EXPECT_EQ(q.size(), data.size());
    EXPECT_EQ(pool.liveChunks(), 4u);
    EXPECT_EQ(queueText(q), data);

    // Ranges that start, end or straddle chunk boundaries.
    for (size_t off : {size_t{0}, K - 3, K, K + 1, 2 * K - 1, 3 * K, data.size() - 5}) {
      for (size_t len : {size_t{0}, size_t{1}, size_t{5}, K + 7}) {
        if (off + len > data.size()) continue;
        std::string out(len, '\0');
        ASSERT_TRUE(q.copyOut(off, std::as_writable_bytes(std::span<char>(out.data(), len))));
        EXPECT_EQ(out, data.substr(off, len)) << off << "+" << len;
      }
    }
    std::byte one[1];
    EXPECT_FALSE(q.copyOut(data.size(), one));
    std::vector<std::byte> big(data.size() + 1);
    EXPECT_FALSE(q.copyOut(0, big));
    // An empty span (its data pointer null): true anywhere up to the end, and no memcpy
    // with a null pointer (UBSan reports one even for 0 bytes).
    std::span<std::byte> none;
    for (size_t off : {size_t{0}, size_t{5}, K, data.size()}) EXPECT_TRUE(q.copyOut(off, none));
    EXPECT_FALSE(q.copyOut(data.size() + 1, none));
  }
  EXPECT_EQ(pool.liveChunks(), 0u);
}

TEST(ByteQueue, ContiguousPointsIntoChunkOrCopiesToScratch) {
  ChunkPool pool;
  {
    ByteQueue q(pool);
    std::string data = pattern(K + 500);
    q.append(data);
    std::vector<Slice> s;
    q.sliceFront(q.size(), s);
    ASSERT_EQ(s.size(), 2u);
    Chunk* first = s[0].chunk.get();
    Chunk* second = s[1].chunk.get();
    s.clear();

    std::vector<std::byte> scratch;
    auto v = q.contiguous(100, scratch);
    ASSERT_EQ(v.size(), 100u);
    EXPECT_TRUE(pointsInto(v.data(), first));
    EXPECT_TRUE(scratch.empty());
    EXPECT_EQ(textOf(v), data.substr(0, 100));

    auto whole = q.contiguous(K, scratch);  // exactly the first chunk
    EXPECT_TRUE(pointsInto(whole.data(), first));
    EXPECT_TRUE(scratch.empty());

    auto across = q.contiguous(K + 10, scratch);
    ASSERT_EQ(across.size(), K + 10);
    EXPECT_EQ(across.data(), scratch.data());
    EXPECT_EQ(textOf(across), data.substr(0, K + 10));

    EXPECT_TRUE(q.contiguous(data.size() + 1, scratch).empty());

    // After consuming part of the first chunk, a range still inside it is a view...
    q.consume(K - 20);
    auto tailView = q.contiguous(20, scratch);
    EXPECT_TRUE(pointsInto(tailView.data(), first));
    EXPECT_EQ(textOf(tailView), data.substr(K - 20, 20));
    // ...and one that crosses into the second chunk is copied.
    auto crossing = q.contiguous(21, scratch);
    EXPECT_EQ(crossing.data(), scratch.data());
    EXPECT_EQ(textOf(crossing), data.substr(K - 20, 21));

    // Once the first chunk is consumed it is released and views come from the second.
    q.consume(20);
    EXPECT_EQ(pool.liveChunks(), 1u);
    auto second500 = q.contiguous(500, scratch);
    EXPECT_TRUE(pointsInto(second500.data(), second));
    EXPECT_EQ(textOf(second500), data.substr(K, 500));
  }
  EXPECT_EQ(pool.liveChunks(), 0u);
}

TEST(ByteQueue, SliceFrontSharesChunksWithoutConsuming) {
  ChunkPool pool;
  {
    std::vector<Slice> slices;
    std::string data = pattern(2 * K + 10, 3);
    {
      ByteQueue q(pool);
      q.append(data);
      q.consume(5);
      q.sliceFront(K + 100, slices);
      EXPECT_EQ(q.size(), data.size() - 5);  // nothing consumed
      ASSERT_EQ(slices.size(), 2u);
      EXPECT_EQ(slices[0].offset, 5u);
      EXPECT_EQ(slices[0].length, K - 5);
      EXPECT_EQ(slices[1].offset, 0u);
      EXPECT_EQ(slices[1].length, 105u);
      EXPECT_EQ(slices[0].chunk->refs, 2u);
      std::string joined = textOf({slices[0].data(), slices[0].length}) +
                           textOf({slices[1].data(), slices[1].length});
      EXPECT_EQ(joined, data.substr(5, K + 100));

      std::vector<Slice> none;
      q.sliceFront(0, none);
      EXPECT_TRUE(none.empty());
      q.sliceFront(10 * K, none);  // more than present: only what is there
      size_t total = 0;
      for (auto& s : none) total += s.length;
      EXPECT_EQ(total, q.size());
    }
    // The slices keep their chunks alive after the queue is gone.
    EXPECT_EQ(pool.liveChunks(), 2u);
    EXPECT_EQ(textOf({slices[1].data(), slices[1].length}), data.substr(K, 105));
  }
  EXPECT_EQ(pool.liveChunks(), 0u);
}

TEST(ByteQueue, ConsumeReleasesEveryDrainedChunk) {
  ChunkPool pool;
  {
    ByteQueue q(pool);
    std::string data = pattern(3 * K);
    q.append(data);
    EXPECT_EQ(pool.liveChunks(), 3u);
    q.consume(K - 1);
    EXPECT_EQ(pool.liveChunks(), 3u);
    q.consume(1);
    EXPECT_EQ(pool.liveChunks(), 2u);
    EXPECT_EQ(queueText(q), data.substr(K));
    q.consume(10 * K);  // clamps to size
    EXPECT_TRUE(q.empty());
    // Drained and referenced by nobody else: back in the pool (an idle connection holds no
    // buffer), and the next read takes it from there.
    EXPECT_EQ(pool.liveChunks(), 0u);
    EXPECT_EQ(pool.freeChunks(), 3u);
    auto w = q.writable();
    EXPECT_EQ(w.size(), K);
    EXPECT_EQ(pool.liveChunks(), 1u);
    q.releaseUnused();  // the read found nothing
    EXPECT_EQ(pool.liveChunks(), 0u);
  }
  EXPECT_EQ(pool.liveChunks(), 0u);
}

TEST(ByteQueue, MoveToHandsOverRangesAcrossChunksAndConsumes) {
  ChunkPool pool;
  {
    std::string data = pattern(2 * K + 10, 5);
    ByteQueue in(pool);
    SliceQueue out(pool);
    in.append(data);
    EXPECT_EQ(in.moveTo(out, 0), 0u);
    EXPECT_TRUE(out.empty());
    EXPECT_EQ(in.moveTo(out, 7), 7u);
    EXPECT_EQ(in.moveTo(out, K), K);  // crosses into the second chunk
    EXPECT_EQ(in.size(), data.size() - 7 - K);
    EXPECT_EQ(out.bytes(), 7 + K);
    std::vector<SliceQueue::IoVec> iov(4);
    EXPECT_EQ(out.gather(iov), 2u);  // the first chunk's two ranges merged into one
    EXPECT_EQ(in.moveTo(out, 10 * K), data.size() - 7 - K);  // only what is there
    EXPECT_TRUE(in.empty());
    EXPECT_EQ(gatherAll(out), data);
  }
  EXPECT_EQ(pool.liveChunks(), 0u);
}

TEST(ByteQueue, DrainedChunkStillReferencedIsNotRewound) {
  // The relay forwards bytes by slice and consumes them from the input at once; the next
  // read must not overwrite bytes still waiting to be written.
  ChunkPool pool;
  {
    ByteQueue in(pool);
    SliceQueue out(pool);
    in.append(std::string_view("hello"));
    std::vector<Slice> s;
    in.sliceFront(5, s);
    out.pushSlices(s);
    EXPECT_TRUE(s.empty());
    in.consume(5);
    in.append(std::string_view("world"));
    EXPECT_EQ(gatherAll(out), "hello");
    in.sliceFront(5, s);
    out.pushSlices(s);
    // Adjacent ranges of the same chunk merge into one write.
    std::vector<SliceQueue::IoVec> iov(4);
    EXPECT_EQ(out.gather(iov), 1u);
    EXPECT_EQ(gatherAll(out), "helloworld");
    EXPECT_EQ(pool.liveChunks(), 1u);
  }
  EXPECT_EQ(pool.liveChunks(), 0u);
}

TEST(ByteQueue, ReleaseDrainedGivesBackTheChunkOnceThePeerWroteIt) {
  // An idle connection holds no chunk: the one its last read went into is kept only while a
  // peer's output still refers to it.
  ChunkPool pool;
  ByteQueue in(pool);
  SliceQueue out(pool);
  in.append(std::string_view("query"));
  in.releaseDrained();  // bytes still unread: kept
  EXPECT_EQ(pool.liveChunks(), 1u);
  std::vector<Slice> s;
  in.sliceFront(5, s);
  out.pushSlices(s);
  in.consume(5);
  in.releaseDrained();  // the peer has not written them yet: kept
  EXPECT_EQ(pool.liveChunks(), 1u);
  out.consume(5);  // written
  EXPECT_EQ(pool.liveChunks(), 1u);
  in.releaseDrained();
  EXPECT_EQ(pool.liveChunks(), 0u);
  EXPECT_EQ(pool.freeChunks(), 1u);  // back on the free list for the next read
  in.append(std::string_view("next"));
  EXPECT_EQ(in.size(), 4u);
  EXPECT_EQ(pool.liveChunks(), 1u);
}

TEST(ByteQueue, AdoptedChunkJoinsTheQueueWithoutACopyAndGoesBackWhenDrained) {
  // An io_uring receive filled a chunk of the pool (proxy/core/ring.h): the queue takes it as
  // it is, after what it already held, and the chunk returns to the pool like any other.
  ChunkPool pool;
  ByteQueue in(pool);
  in.append(std::string_view("ab"));
  Chunk* filled = pool.acquire();
  std::memcpy(filled->data, "cdef", 4);
  in.adopt(filled, 4);
  EXPECT_EQ(in.size(), 6u);
  EXPECT_EQ(pool.liveChunks(), 2u);
  EXPECT_EQ(in.tailRoom(), Chunk::kSize - 4);  // a small receive behind it is copied there
  std::vector<std::byte> scratch;
  auto all = in.contiguous(6, scratch);
  EXPECT_EQ(std::string_view(reinterpret_cast<const char*>(all.data()), all.size()), "abcdef");
  std::vector<Slice> s;
  in.sliceFront(6, s);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[1].data(), filled->data);  // the bytes the kernel wrote, not a copy
  s.clear();
  in.consume(6);
  in.releaseDrained();
  EXPECT_EQ(pool.liveChunks(), 0u);
}

TEST(ByteQueue, ShrinkKeepsQueuedBytesAndGivesBackAnEmptyQueuesMemory) {
  ChunkPool pool;
  ByteQueue in(pool);
  SliceQueue out(pool);
  in.append(std::string_view("query"));
  in.shrink();  // bytes unread: nothing changes
  out.shrink();
  ASSERT_EQ(in.size(), 5u);
  std::vector<Slice> s;
  in.sliceFront(5, s);
  out.pushSlices(s);
  in.consume(5);
  in.shrink();  // the peer still holds the chunk: kept
  out.shrink();  // queued: kept
  EXPECT_EQ(out.bytes(), 5u);
  EXPECT_EQ(pool.liveChunks(), 1u);
  out.consume(5);
  out.shrink();
  in.shrink();
  EXPECT_EQ(pool.liveChunks(), 0u);
  in.append(std::string_view("next"));  // usable again
  out.pushCopy(std::string_view("answer"));
  std::string got(4, '\0');
  ASSERT_TRUE(in.copyOut(0, std::as_writable_bytes(std::span(got.data(), got.size()))));
  EXPECT_EQ(got, "next");
  EXPECT_EQ(out.bytes(), 6u);
}

// ---- SliceQueue ----

TEST(SliceQueue, PushMergesOnlyAdjacentRangesOfOneChunk) {
  ChunkPool pool;
  {
    ByteQueue in(pool);
    std::string data = pattern(200);
    in.append(data);
    std::vector<Slice> all;
    in.sliceFront(200, all);
    ASSERT_EQ(all.size(), 1u);
    ChunkRef c = all[0].chunk;

    SliceQueue q(pool);
    q.push(Slice{c, 0, 10});
    q.push(Slice{c, 10, 20});  // adjacent: merged
    std::vector<SliceQueue::IoVec> iov(8);
    EXPECT_EQ(q.gather(iov), 1u);
    EXPECT_EQ(iov[0].len, 30u);
    q.push(Slice{c, 40, 10});  // gap: separate
    EXPECT_EQ(q.gather(iov), 2u);
    q.push(Slice{c, 50, 0});  // empty: ignored
    EXPECT_EQ(q.bytes(), 40u);

    ChunkRef other(pool.acquire());
    std::memcpy(other->data, data.data() + 50, 10);
    q.push(Slice{other, 0, 10});  // another chunk: separate even if offsets line up
    q.push(Slice{c, 50, 10});
    EXPECT_EQ(q.gather(iov), 4u);
    EXPECT_EQ(q.bytes(), 60u);
    EXPECT_EQ(gatherAll(q),
              data.substr(0, 30) + data.substr(40, 10) + data.substr(50, 10) + data.substr(50, 10));
  }
  EXPECT_EQ(pool.liveChunks(), 0u);
}

TEST(SliceQueue, PushCopySharesOneChunkAndSpansChunks) {
  ChunkPool pool;
  {
    SliceQueue q(pool);
    q.pushCopy(std::string_view("abc"));
    q.pushCopy(std::string_view("def"));
    EXPECT_EQ(pool.liveChunks(), 1u);
    std::vector<SliceQueue::IoVec> iov(8);
    EXPECT_EQ(q.gather(iov), 1u);
    EXPECT_EQ(gatherAll(q), "abcdef");

    std::string big = pattern(K + 10, 9);
    q.pushCopy(big);
    EXPECT_EQ(pool.liveChunks(), 2u);
    EXPECT_EQ(q.bytes(), 6 + big.size());
    EXPECT_EQ(q.gather(iov), 2u);
    EXPECT_EQ(gatherAll(q), "abcdef" + big);

    // gather never writes more entries than it is given.
    std::vector<SliceQueue::IoVec> one(1);
    EXPECT_EQ(q.gather(one), 1u);
    EXPECT_EQ(one[0].len, K);
    EXPECT_EQ(q.gather(std::span<SliceQueue::IoVec>()), 0u);

    q.clear();
    EXPECT_TRUE(q.empty());
    EXPECT_EQ(q.gather(iov), 0u);
    EXPECT_EQ(pool.liveChunks(), 0u);
    q.pushCopy(std::string_view("again"));
    EXPECT_EQ(gatherAll(q), "again");
  }
  EXPECT_EQ(pool.liveChunks(), 0u);
}

TEST(SliceQueue, DrainedQueueGivesItsCopyChunkBack) {
  // An idle connection holds no buffer: once everything built was written, the copy chunk
  // returns to the pool.
  ChunkPool pool;
  SliceQueue q(pool);
  q.pushCopy(std::string_view("ReadyForQuery"));
  EXPECT_EQ(pool.liveChunks(), 1u);
  q.consume(5);
  EXPECT_EQ(pool.liveChunks(), 1u);
  q.consume(q.bytes());
  EXPECT_EQ(pool.liveChunks(), 0u);
  q.pushCopy(std::string_view("again"));
  EXPECT_EQ(gatherAll(q), "again");
}

TEST(SliceQueue, ConsumePartialAndAcrossSlices) {
  ChunkPool pool;
  {
    SliceQueue q(pool);
    ChunkRef a(pool.acquire()), b(pool.acquire());
    std::memcpy(a->data, "0123456789", 10);
    std::memcpy(b->data, "abcdefghij", 10);
    q.push(Slice{a, 0, 10});
    q.push(Slice{b, 0, 10});
    a.reset();
    b.reset();
    EXPECT_EQ(pool.liveChunks(), 2u);

    q.consume(3);
    EXPECT_EQ(q.bytes(), 17u);
    EXPECT_EQ(gatherAll(q), "3456789abcdefghij");
    q.consume(7);  // exactly the first slice: its chunk goes back
    EXPECT_EQ(pool.liveChunks(), 1u);
    EXPECT_EQ(gatherAll(q), "abcdefghij");
    q.consume(4);
    EXPECT_EQ(gatherAll(q), "efghij");
    q.consume(100);  // clamps
    EXPECT_TRUE(q.empty());
    EXPECT_EQ(pool.liveChunks(), 0u);
    q.consume(1);  // on empty: no effect
    EXPECT_TRUE(q.empty());
  }
  EXPECT_EQ(pool.liveChunks(), 0u);
}

TEST(SliceQueue, ManySlicesConsumedOneByOne) {
  // Exercises the compaction of consumed entries at the head.
  ChunkPool pool;
  {
    SliceQueue q(pool);
    std::string expect;
    std::vector<ChunkRef> chunks;
    for (int i = 0; i < 300; ++i) {
      chunks.emplace_back(pool.acquire());
      char ch = static_cast<char>('a' + i % 26);
      std::memset(chunks.back()->data, ch, 3);
      q.push(Slice{chunks.back(), 0, 3});
      expect.append(3, ch);
    }
    chunks.clear();
    for (int i = 0; i < 250; ++i) {
      q.consume(2);
      expect.erase(0, 2);
      if (i % 37 == 0) {
        EXPECT_EQ(gatherAll(q), expect) << i;
      }
      q.pushCopy(std::string_view("z"));
      expect += "z";
    }
    EXPECT_EQ(gatherAll(q), expect);
    q.consume(q.bytes());
  }
  EXPECT_EQ(pool.liveChunks(), 0u);
}

// ---- Round trip ----

TEST(BufferRoundTrip, RandomPiecesThroughByteQueueAndSliceQueue) {
  for (uint32_t seed : {1u, 2u, 3u, 42u, 1234u}) {
    std::mt19937 rng(seed);
    ChunkPool pool(4);
    {
      std::string input(5 * K + rng() % K, '\0');
      for (auto& ch : input) ch = static_cast<char>(rng());

      ByteQueue in(pool);
      SliceQueue out(pool);
      std::string output;
      size_t appended = 0;
      std::vector<Slice> slices;
      std::vector<SliceQueue::IoVec> iov(1 + rng() % 8);
      auto pick = [&](size_t max) {
        // Mostly small pieces, sometimes large ones that cross chunk boundaries.
        return (rng() % 4 == 0) ? rng() % (2 * K) : rng() % max;
      };

      while (output.size() < input.size()) {
        switch (rng() % 3) {
          case 0: {  // a "read": directly into writable space or by append
            size_t n = std::min(pick(3000), input.size() - appended);
            if (rng() % 2) {
              in.append(std::string_view(input).substr(appended, n));
            } else {
              auto w = in.writable(1 + rng() % 2048);
              n = std::min(n, w.size());
              std::memcpy(w.data(), input.data() + appended, n);
              in.commit(n);
            }
            appended += n;
            break;
          }
          case 1: {  // forward a range by slices
            size_t n = std::min(pick(4000), in.size());
            in.sliceFront(n, slices);
            out.pushSlices(slices);
            ASSERT_TRUE(slices.empty());
            in.consume(n);
            break;
          }
          case 2: {  // a "write": gather, then consume part of what was gathered
            size_t k = out.gather(iov);
            size_t avail = 0;
            for (size_t i = 0; i < k; ++i) avail += iov[i].len;
            size_t n = avail ? rng() % (avail + 1) : 0;
            size_t left = n;
            for (size_t i = 0; i < k && left > 0; ++i) {
              size_t take = std::min(left, iov[i].len);
              output.append(reinterpret_cast<const char*>(iov[i].base), take);
              left -= take;
            }
            out.consume(n);
            break;
          }
        }
        ASSERT_EQ(appended, output.size() + out.bytes() + in.size()) << "seed " << seed;
        // Chunks in use stay bounded by the bytes held (no leak while running).
        ASSERT_LE(pool.liveChunks(), (in.size() + out.bytes()) / K * 2 + 4) << "seed " << seed;
      }
      ASSERT_EQ(output.size(), input.size());
      EXPECT_TRUE(output == input) << "seed " << seed;
      EXPECT_TRUE(in.empty());
      EXPECT_TRUE(out.empty());
    }
    EXPECT_EQ(pool.liveChunks(), 0u) << "seed " << seed;
  }
}

TEST(SliceQueue, CopySpaceWrittenInPlaceJoinsPushCopyBytes) {
  // What TLS records take: bytes written into copySpace() queue like pushCopy's, in order,
  // adjacent ones as one iovec, spilling into a fresh chunk when the tail is full.
  ChunkPool pool;
  SliceQueue q(pool);
  q.pushCopy(std::string_view("ab"));
  auto room = q.copySpace();
  ASSERT_EQ(room.size(), Chunk::kSize - 2);
  std::memcpy(room.data(), "cd", 2);
  q.commitCopy(2);
  std::array<SliceQueue::IoVec, 4> v;
  ASSERT_EQ(q.gather(v), 1u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(v[0].base), v[0].len), "abcd");
  room = q.copySpace();
  q.commitCopy(room.size());  // fill the chunk
  room = q.copySpace();
  EXPECT_EQ(room.size(), Chunk::kSize);  // a fresh one
  q.commitCopy(1);
  EXPECT_EQ(q.bytes(), Chunk::kSize + 1);
  EXPECT_EQ(pool.liveChunks(), 2u);
  q.consume(q.bytes());
  EXPECT_EQ(q.bytes(), 0u);
  q.commitCopy(0);
  EXPECT_TRUE(q.empty());
}

}  // namespace
}  // namespace pgswitch::protocol
