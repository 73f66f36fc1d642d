// Zero-copy byte storage for the forwarding path: fixed-size reference-counted chunks that
// socket reads land in (ByteQueue), and slices of them queued for writing (SliceQueue).
// A message forwarded from client to server is never copied: its bytes stay in the chunk
// they were read into until the write that sends them completes. Single-threaded by design
// (each event-loop worker owns its ChunkPool), so reference counts are plain integers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>
#include <vector>

namespace pgswitch::protocol {

class ChunkPool;

// One block of kSize bytes. Owned by its pool; lives while any ChunkRef points to it.
struct Chunk {
  static constexpr size_t kSize = 32 * 1024;
  uint32_t refs = 0;
  ChunkPool* pool = nullptr;
  Chunk* nextFree = nullptr;
  alignas(16) std::byte data[kSize];
};

// Hands out chunks and takes them back when their last reference drops. Keeps at most
// `maxFree` idle chunks so a burst does not pin memory forever.
class ChunkPool {
 public:
  explicit ChunkPool(size_t maxFree = 256) : maxFree_(maxFree) {}
  ~ChunkPool();
  ChunkPool(const ChunkPool&) = delete;
  ChunkPool& operator=(const ChunkPool&) = delete;

  Chunk* acquire();
  void release(Chunk* c);
  // Frees idle chunks beyond `keep` (after a burst, so the memory can go back to the system).
  void trim(size_t keep);

  size_t liveChunks() const { return live_; }  // chunks referenced right now
  size_t freeChunks() const { return freeCount_; }

 private:
  Chunk* free_ = nullptr;
  size_t freeCount_ = 0;
  size_t maxFree_;
  size_t live_ = 0;
};

// Intrusive reference to a chunk.
class ChunkRef {
 public:
  ChunkRef() = default;
  explicit ChunkRef(Chunk* c) : c_(c) {
    if (c_) ++c_->refs;
  }
  ChunkRef(const ChunkRef& o) : c_(o.c_) {
    if (c_) ++c_->refs;
  }
  ChunkRef(ChunkRef&& o) noexcept : c_(o.c_) { o.c_ = nullptr; }
  ChunkRef& operator=(ChunkRef o) noexcept {
    std::swap(c_, o.c_);
    return *this;
  }
  ~ChunkRef() { reset(); }
  void reset() {
    if (c_ && --c_->refs == 0) c_->pool->release(c_);
    c_ = nullptr;
  }
  Chunk* get() const { return c_; }
  Chunk* operator->() const { return c_; }
  explicit operator bool() const { return c_ != nullptr; }

 private:
  Chunk* c_ = nullptr;
};

// A byte range inside a chunk, keeping the chunk alive.
struct Slice {
  ChunkRef chunk;
  uint32_t offset = 0;
  uint32_t length = 0;
  const std::byte* data() const { return chunk->data + offset; }
};

// Sees the bytes a ByteQueue gives up (consume), before they are gone: a transaction's
// client messages are kept this way for a replay (proxy/session/txn_replay.h), whichever
// path forwarded, rewrote or answered them.
class ConsumeTap {
 public:
  virtual void consumed(std::span<const std::byte> bytes) = 0;

 protected:
  ~ConsumeTap() = default;
};

class SliceQueue;

// Input side: bytes read from a socket, in arrival order, spread over chunks. The event loop
// asks for writable space (libuv alloc callback), then commits what the read delivered.
class ByteQueue {
 public:
  explicit ByteQueue(ChunkPool& pool) : pool_(&pool) {}

  // Space for the next read: the free tail of the last chunk if at least minFree bytes
  // remain, else a fresh chunk. Nothing is committed until commit().
  std::span<std::byte> writable(size_t minFree = 1024);
  void commit(size_t n);
  // Appends a chunk the kernel filled with n bytes (an io_uring receive into a provided
  // buffer, proxy/core/ring.h): it joins the queue as is, no copy. The queue takes the
  // chunk's first reference.
  void adopt(Chunk* c, size_t n);
  // Appends bytes by copying (used for builder output and tests).
  void append(std::span<const std::byte> bytes);
  void append(std::string_view s) { append(std::as_bytes(std::span(s.data(), s.size()))); }

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Free bytes after the last chunk's data: what append() can take without a new chunk.
  size_t tailRoom() const { return segs_.empty() ? 0 : Chunk::kSize - segs_.back().end; }

  // Copies bytes [offset, offset+dst.size()) into dst; false if not that many bytes.
  // Inline for the common case (headers and heads of messages read several times per
  // message), where the bytes lie in the first segment.
  bool copyOut(size_t offset, std::span<std::byte> dst) const {
    if (!segs_.empty()) {
      const Seg& s = segs_.front();
      if (offset + dst.size() <= s.end - s.begin) {
        // memcpy's pointers must not be null even for 0 bytes (an empty span's may be).
        if (!dst.empty()) std::memcpy(dst.data(), s.chunk->data + s.begin + offset, dst.size());
        return true;
      }
    }
    return copyOutAcross(offset, dst);
  }
  // The queue's first bytes as they lie in its first segment: all of them, or fewer when the
  // queue spans chunks (then copyOut or contiguous reads on). Where a message header is read.
  std::span<const std::byte> firstSegment() const {
    if (segs_.empty()) return {};
    const Seg& s = segs_.front();
    return {s.chunk->data + s.begin, s.end - s.begin};
  }
  // The first n bytes as one contiguous span: points into the chunk when they lie in one,
  // else they are copied into scratch (whose capacity is reused across calls).
  std::span<const std::byte> contiguous(size_t n, std::vector<std::byte>& scratch) const;
  // Appends slices covering the first n bytes to out (no copy, no consume).
  void sliceFront(size_t n, std::vector<Slice>& out) const;
  // Moves the first n bytes (at most size()) to `to` without copying them: what sliceFront,
  // SliceQueue::pushSlices and consume do together, without a slice list in between and
  // without a reference count taken for a range that joins `to`'s last slice. Returns how
  // many bytes moved.
  size_t moveTo(SliceQueue& to, size_t n);
  void consume(size_t n);
  void clear() { consume(size_); }
  // Bytes consumed (or moved out) since the queue was made: how far a reader has got.
  uint64_t consumedTotal() const { return consumedTotal_; }
  // consume() shows the bytes to `tap` first (null: none). clear() too.
  void setConsumeTap(ConsumeTap* tap) { tap_ = tap; }
  bool tapped() const { return tap_ != nullptr; }
  // Gives back a chunk taken by writable() that no read filled (a read that found nothing).
  void releaseUnused();
  // An empty queue gives back its last chunk once nothing else refers to it. consume() keeps
  // a drained chunk whose bytes still wait in a peer's output queue (the next read packs into
  // its free tail); after that write is done the chunk is only ours, and an idle connection
  // must not keep it (issue 14: ~4 KiB of RSS per idle client, the pages a read touched).
  void releaseDrained();
  // An empty queue that kept only its segment list's capacity gives that back too (a client
  // idle for a while; its next read allocates the list again).
  void shrink();

 private:
  struct Seg {
    ChunkRef chunk;
    uint32_t begin = 0;
    uint32_t end = 0;
  };
  bool copyOutAcross(size_t offset, std::span<std::byte> dst) const;
  ChunkPool* pool_;
  std::vector<Seg> segs_;
  size_t size_ = 0;
  uint64_t consumedTotal_ = 0;
  std::byte* pendingWrite_ = nullptr;
  ConsumeTap* tap_ = nullptr;
};

// Sees the bytes queued on a SliceQueue before they join it, and may keep the first of them
// out: a replayed transaction's answer is compared with what the client already has, not
// sent to it again (proxy/session/txn_replay.h). Returns how many leading bytes to drop.
class PushTap {
 public:
  virtual size_t pushing(std::span<const std::byte> bytes) = 0;

 protected:
  ~PushTap() = default;
};

// Output side: slices waiting to be written to a socket, plus bytes built by the proxy
// itself (copied once into a chunk of their own).
class SliceQueue {
 public:
  explicit SliceQueue(ChunkPool& pool) : pool_(&pool) {}

  void push(Slice s);
  void push(const ChunkRef& chunk, uint32_t offset, uint32_t length);  // the same, by range
  void pushSlices(std::vector<Slice>& slices);  // moves them in, clears the vector
  void pushCopy(std::span<const std::byte> bytes);
  void pushCopy(std::string_view s) { pushCopy(std::as_bytes(std::span(s.data(), s.size()))); }
  // pushCopy for a producer that writes in place (TLS records read out of OpenSSL's write
  // BIO): copySpace() is the free tail of the copy chunk (a fresh one when it is full);
  // commitCopy(n) queues the first n bytes written there.
  std::span<std::byte> copySpace();
  void commitCopy(size_t n);
  // Every push shows its bytes to `tap` first (null: none).
  void setPushTap(PushTap* tap) { tap_ = tap; }
  bool tapped() const { return tap_ != nullptr; }

  size_t bytes() const { return bytes_; }
  bool empty() const { return bytes_ == 0; }

  struct IoVec {
    const std::byte* base;
    size_t len;
  };
  // Fills out with the next slices to write, at most out.size(); returns how many.
  size_t gather(std::span<IoVec> out) const;
  // Drops n bytes from the front (after they were written).
  void consume(size_t n);
  void clear();
  // An empty queue gives back its slice list's capacity (see ByteQueue::shrink).
  void shrink();

 private:
  // What every push does before its range joins the list: shows it to the tap (which may
  // keep its first bytes out), counts it, and merges it into the last slice when it follows
  // that slice in the same chunk. True when nothing is left to append.
  bool absorb(const Chunk* chunk, uint32_t& offset, uint32_t& length);

  ChunkPool* pool_;
  std::vector<Slice> q_;
  size_t head_ = 0;  // index of the first live slice in q_
  size_t bytes_ = 0;
  // Tail chunk for pushCopy, so small built messages share one chunk.
  ChunkRef copyChunk_;
  uint32_t copyUsed_ = 0;
  PushTap* tap_ = nullptr;
};

}  // namespace pgswitch::protocol
