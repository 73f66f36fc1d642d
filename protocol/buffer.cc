// Chunk pool, input ByteQueue and output SliceQueue. Why chunks: a read lands once in memory
// and every later stage (framing, forwarding, writing) refers to those bytes by range.
#include "protocol/buffer.h"

#include <algorithm>
#include <cstring>
#include <new>

namespace pgswitch::protocol {

ChunkPool::~ChunkPool() {
  while (free_) {
    Chunk* c = free_;
    free_ = c->nextFree;
    delete c;
  }
}

Chunk* ChunkPool::acquire() {
  Chunk* c = free_;
  if (c) {
    free_ = c->nextFree;
    --freeCount_;
  } else {
    c = new Chunk;
  }
  c->refs = 0;
  c->pool = this;
  c->nextFree = nullptr;
  ++live_;
  return c;
}

void ChunkPool::release(Chunk* c) {
  --live_;
  if (freeCount_ >= maxFree_) {
    delete c;
    return;
  }
  c->nextFree = free_;
  free_ = c;
  ++freeCount_;
}

void ChunkPool::trim(size_t keep) {
  while (freeCount_ > keep) {
    Chunk* c = free_;
    free_ = c->nextFree;
    --freeCount_;
    delete c;
  }
}

// ---- ByteQueue ----

std::span<std::byte> ByteQueue::writable(size_t minFree) {
  if (!segs_.empty()) {
    Seg& tail = segs_.back();
    // An empty tail chunk that nobody else references can be rewound and reused whole.
    if (tail.begin == tail.end && tail.chunk->refs == 1) tail.begin = tail.end = 0;
    size_t room = Chunk::kSize - tail.end;
    if (room >= minFree || (room > 0 && minFree > Chunk::kSize)) {
      return {tail.chunk->data + tail.end, room};
    }
  }
  Seg s;
  s.chunk = ChunkRef(pool_->acquire());
  segs_.push_back(std::move(s));
  return {segs_.back().chunk->data, Chunk::kSize};
}

void ByteQueue::commit(size_t n) {
  if (n == 0 || segs_.empty()) return;
  Seg& tail = segs_.back();
  tail.end += static_cast<uint32_t>(n);
  size_ += n;
}

void ByteQueue::adopt(Chunk* c, size_t n) {
  Seg s;
  s.chunk = ChunkRef(c);
  s.end = static_cast<uint32_t>(n);
  segs_.push_back(std::move(s));
  size_ += n;
}

void ByteQueue::append(std::span<const std::byte> bytes) {
  while (!bytes.empty()) {
    auto w = writable(1);
    size_t n = std::min(w.size(), bytes.size());
    std::memcpy(w.data(), bytes.data(), n);
    commit(n);
    bytes = bytes.subspan(n);
  }
}

bool ByteQueue::copyOutAcross(size_t offset, std::span<std::byte> dst) const {
  if (offset + dst.size() > size_) return false;
  if (dst.empty()) return true;
  size_t out = 0;
  for (const Seg& s : segs_) {
    size_t len = s.end - s.begin;
    if (offset >= len) {
      offset -= len;
      continue;
    }
    size_t n = std::min(len - offset, dst.size() - out);
    std::memcpy(dst.data() + out, s.chunk->data + s.begin + offset, n);
    out += n;
    offset = 0;
    if (out == dst.size()) break;
  }
  return true;
}

std::span<const std::byte> ByteQueue::contiguous(size_t n, std::vector<std::byte>& scratch) const {
  if (n > size_) return {};
  for (const Seg& s : segs_) {
    if (s.end == s.begin) continue;
    if (s.end - s.begin >= n) return {s.chunk->data + s.begin, n};
    break;
  }
  scratch.resize(n);
  copyOut(0, scratch);
  return {scratch.data(), n};
}

void ByteQueue::sliceFront(size_t n, std::vector<Slice>& out) const {
  for (const Seg& s : segs_) {
    if (n == 0) break;
    size_t len = s.end - s.begin;
    if (len == 0) continue;
    size_t take = std::min(len, n);
    out.push_back(Slice{s.chunk, s.begin, static_cast<uint32_t>(take)});
    n -= take;
  }
}

size_t ByteQueue::moveTo(SliceQueue& to, size_t n) {
  n = std::min(n, size_);
  if (n == 0) return 0;
  size_t left = n;
  for (const Seg& s : segs_) {
    if (left == 0) break;
    const uint32_t take = static_cast<uint32_t>(std::min<size_t>(s.end - s.begin, left));
    to.push(s.chunk, s.begin, take);
    left -= take;
  }
  consume(n);
  return n;
}

void ByteQueue::consume(size_t n) {
  n = std::min(n, size_);
  if (tap_) {
    size_t left = n;
    for (const Seg& s : segs_) {
      if (left == 0) break;
      size_t take = std::min<size_t>(s.end - s.begin, left);
      tap_->consumed(std::span<const std::byte>(s.chunk->data + s.begin, take));
      left -= take;
    }
  }
  size_ -= n;
  consumedTotal_ += n;
  size_t drop = 0;
  for (Seg& s : segs_) {
    size_t len = s.end - s.begin;
    size_t take = std::min(len, n);
    s.begin += static_cast<uint32_t>(take);
    n -= take;
    if (s.begin == s.end) {
      ++drop;
    } else {
      break;
    }
  }
  // Drained chunks go back to the pool. The last one too when nothing else refers to it, so
  // an idle connection holds no buffer (issue 14: memory per idle client); the pool's free
  // list is LIFO, so the next read usually gets the same, still cached, chunk back. While
  // its bytes still wait in a peer's output queue it stays: the next read goes into its
  // free tail, and the two ranges leave in one iovec.
  if (drop == segs_.size() && drop > 0 && segs_.back().chunk->refs > 1) --drop;
  if (drop) segs_.erase(segs_.begin(), segs_.begin() + static_cast<std::ptrdiff_t>(drop));
}

void ByteQueue::releaseUnused() {
  if (!segs_.empty() && segs_.back().begin == segs_.back().end) segs_.pop_back();
}

void ByteQueue::releaseDrained() {
  if (size_ == 0 && segs_.size() == 1 && segs_.back().chunk->refs == 1) segs_.clear();
}

void ByteQueue::shrink() {
  releaseDrained();
  if (segs_.empty()) std::vector<Seg>().swap(segs_);
}

// ---- SliceQueue ----

bool SliceQueue::absorb(const Chunk* chunk, uint32_t& offset, uint32_t& length) {
  if (length == 0) return true;
  if (tap_) {
    size_t drop = std::min<size_t>(tap_->pushing(std::span(chunk->data + offset, length)), length);
    offset += static_cast<uint32_t>(drop);
    length -= static_cast<uint32_t>(drop);
    if (length == 0) return true;
  }
  bytes_ += length;
  // Adjacent ranges of the same chunk merge into one iovec.
  if (q_.size() > head_) {
    Slice& last = q_.back();
    if (last.chunk.get() == chunk && last.offset + last.length == offset) {
      last.length += length;
      return true;
    }
  }
  return false;
}

void SliceQueue::push(Slice s) {
  if (!absorb(s.chunk.get(), s.offset, s.length)) q_.push_back(std::move(s));
}

void SliceQueue::push(const ChunkRef& chunk, uint32_t offset, uint32_t length) {
  if (!absorb(chunk.get(), offset, length)) q_.push_back(Slice{chunk, offset, length});
}

void SliceQueue::pushSlices(std::vector<Slice>& slices) {
  for (Slice& s : slices) push(std::move(s));
  slices.clear();
}

void SliceQueue::pushCopy(std::span<const std::byte> bytes) {
  while (!bytes.empty()) {
    if (!copyChunk_ || copyUsed_ == Chunk::kSize) {
      copyChunk_ = ChunkRef(pool_->acquire());
      copyUsed_ = 0;
    }
    size_t n = std::min<size_t>(Chunk::kSize - copyUsed_, bytes.size());
    std::memcpy(copyChunk_->data + copyUsed_, bytes.data(), n);
    push(Slice{copyChunk_, copyUsed_, static_cast<uint32_t>(n)});
    copyUsed_ += static_cast<uint32_t>(n);
    bytes = bytes.subspan(n);
  }
}

std::span<std::byte> SliceQueue::copySpace() {
  if (!copyChunk_ || copyUsed_ == Chunk::kSize) {
    copyChunk_ = ChunkRef(pool_->acquire());
    copyUsed_ = 0;
  }
  return {copyChunk_->data + copyUsed_, Chunk::kSize - copyUsed_};
}

void SliceQueue::commitCopy(size_t n) {
  if (n == 0 || !copyChunk_) return;
  n = std::min<size_t>(n, Chunk::kSize - copyUsed_);
  push(Slice{copyChunk_, copyUsed_, static_cast<uint32_t>(n)});
  copyUsed_ += static_cast<uint32_t>(n);
}

size_t SliceQueue::gather(std::span<IoVec> out) const {
  size_t n = 0;
  for (size_t i = head_; i < q_.size() && n < out.size(); ++i, ++n) {
    out[n] = IoVec{q_[i].data(), q_[i].length};
  }
  return n;
}

void SliceQueue::consume(size_t n) {
  n = std::min(n, bytes_);
  bytes_ -= n;
  while (n > 0 && head_ < q_.size()) {
    Slice& s = q_[head_];
    if (n >= s.length) {
      n -= s.length;
      s.chunk.reset();
      ++head_;
    } else {
      s.offset += static_cast<uint32_t>(n);
      s.length -= static_cast<uint32_t>(n);
      n = 0;
    }
  }
  if (head_ == q_.size()) {
    q_.clear();
    head_ = 0;
    // Nothing queued: the copy chunk goes back to the pool (or stays with the slices a
    // peer still holds), so an idle connection holds no buffer.
    copyChunk_.reset();
    copyUsed_ = 0;
  } else if (head_ > 64 && head_ * 2 > q_.size()) {
    q_.erase(q_.begin(), q_.begin() + static_cast<std::ptrdiff_t>(head_));
    head_ = 0;
  }
}

void SliceQueue::clear() {
  q_.clear();
  head_ = 0;
  bytes_ = 0;
  copyChunk_.reset();
  copyUsed_ = 0;
}

void SliceQueue::shrink() {
  if (bytes_ == 0 && head_ == q_.size()) {
    std::vector<Slice>().swap(q_);
    head_ = 0;
  }
}

}  // namespace pgswitch::protocol
