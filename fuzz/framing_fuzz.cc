// Frame reader over a ByteQueue fed the input in pieces of fuzzer-chosen sizes (through the
// alloc/commit path a socket read uses, so messages straddle chunks), checked against the
// span reader on a flat copy: same outcome, lengths within what is buffered, NeedMore
// consumes nothing, and a Complete frame's bytes read back intact via contiguous/sliceFront.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstring>
#include <optional>
#include <vector>

#include "fuzz_check.h"
#include "protocol/buffer.h"
#include "protocol/framing.h"

using namespace pgswitch::protocol;

namespace {

bool sameFrame(const Frame& a, const Frame& b) {
  return a.status == b.status && a.type == b.type && a.length == b.length && a.total == b.total;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  const bool startupPhase = in.ConsumeBool();
  const uint32_t maxLength = in.ConsumeBool() ? kMaxStartupPacket
                                              : in.ConsumeIntegralInRange<uint32_t>(0, 70000);
  ChunkPool pool(4);
  std::optional<ByteQueue> holder(std::in_place, pool);
  ByteQueue& q = *holder;
  std::vector<std::byte> flat;  // what q holds, as one span
  std::vector<std::byte> scratch;
  std::vector<Slice> slices;

  bool invalid = false;
  while (!invalid && in.remaining_bytes() > 0) {
    // One "read": ask for space (sometimes forcing a fresh chunk), commit part of it.
    size_t minFree = in.ConsumeIntegralInRange<size_t>(1, Chunk::kSize);
    size_t want = in.ConsumeIntegralInRange<size_t>(0, 64);
    std::vector<uint8_t> piece = in.ConsumeBytes<uint8_t>(want);
    std::span<std::byte> space = q.writable(minFree);
    FUZZ_CHECK(space.size() >= std::min(minFree, Chunk::kSize));
    size_t n = std::min(piece.size(), space.size());
    if (n) std::memcpy(space.data(), piece.data(), n);
    q.commit(n);
    for (size_t i = 0; i < n; ++i) flat.push_back(std::byte(piece[i]));
    FUZZ_CHECK(q.size() == flat.size());

    for (;;) {
      Frame f = startupPhase ? readStartupFrame(q, maxLength) : readFrame(q, maxLength);
      Frame g = startupPhase ? readStartupFrame(flat, maxLength) : readFrame(flat, maxLength);
      FUZZ_CHECK(sameFrame(f, g));
      if (f.status == FrameStatus::NeedMore) {
        FUZZ_CHECK(q.size() == flat.size());
        break;
      }
      if (f.status == FrameStatus::Invalid) {
        FUZZ_CHECK(f.error != nullptr);
        invalid = true;
        break;  // the connection would be closed
      }
      // Complete.
      FUZZ_CHECK(f.total <= q.size());
      FUZZ_CHECK(f.length <= maxLength);
      if (startupPhase) {
        FUZZ_CHECK(f.length >= 8 && f.total == f.length && f.type == 0);
      } else {
        FUZZ_CHECK(f.length >= 4 && f.total == size_t(f.length) + 1);
        FUZZ_CHECK(f.type == static_cast<char>(flat[0]));
      }
      std::span<const std::byte> whole = q.contiguous(f.total, scratch);
      FUZZ_CHECK(whole.size() == f.total);
      FUZZ_CHECK(std::memcmp(whole.data(), flat.data(), f.total) == 0);
      slices.clear();
      q.sliceFront(f.total, slices);
      size_t off = 0;
      for (const Slice& s : slices) {
        FUZZ_CHECK(off + s.length <= f.total);
        FUZZ_CHECK(std::memcmp(s.data(), flat.data() + off, s.length) == 0);
        off += s.length;
      }
      FUZZ_CHECK(off == f.total);
      slices.clear();
      q.consume(f.total);
      flat.erase(flat.begin(), flat.begin() + f.total);
      FUZZ_CHECK(q.size() == flat.size());
    }
  }
  q.clear();
  FUZZ_CHECK(q.size() == 0 && q.empty());
  holder.reset();
  FUZZ_CHECK(pool.liveChunks() == 0);
  return 0;
}
