// Frame header checks, shared by the span and ByteQueue entry points.
#include "protocol/framing.h"

#include <array>

namespace pgswitch::protocol {
namespace {

uint32_t be32(const std::byte* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

Frame typed(const std::byte* hdr, size_t available, uint32_t maxLength) {
  Frame f;
  f.type = static_cast<char>(hdr[0]);
  f.length = be32(hdr + 1);
  if (f.length < 4) {
    f.status = FrameStatus::Invalid;
    f.error = "invalid message length";
    return f;
  }
  if (f.length > maxLength) {
    f.status = FrameStatus::Invalid;
    f.error = "message too large";
    return f;
  }
  f.total = size_t(f.length) + 1;
  f.status = available >= f.total ? FrameStatus::Complete : FrameStatus::NeedMore;
  return f;
}

Frame startup(const std::byte* hdr, size_t available, uint32_t maxLength) {
  Frame f;
  f.length = be32(hdr);
  if (f.length < 8 || f.length > maxLength) {
    f.status = FrameStatus::Invalid;
    f.error = "invalid length of startup packet";
    return f;
  }
  f.total = f.length;
  f.status = available >= f.total ? FrameStatus::Complete : FrameStatus::NeedMore;
  return f;
}

}  // namespace

Frame readFrame(std::span<const std::byte> bytes, uint32_t maxLength) {
  if (bytes.size() < 5) return Frame{};
  return typed(bytes.data(), bytes.size(), maxLength);
}

Frame readFrame(const ByteQueue& q, uint32_t maxLength) {
  if (auto first = q.firstSegment(); first.size() >= 5)
    return typed(first.data(), q.size(), maxLength);
  std::array<std::byte, 5> hdr;
  if (!q.copyOut(0, hdr)) return Frame{};
  return typed(hdr.data(), q.size(), maxLength);
}

Frame readStartupFrame(std::span<const std::byte> bytes, uint32_t maxLength) {
  if (bytes.size() < 4) return Frame{};
  return startup(bytes.data(), bytes.size(), maxLength);
}

Frame readStartupFrame(const ByteQueue& q, uint32_t maxLength) {
  std::array<std::byte, 4> hdr;
  if (!q.copyOut(0, hdr)) return Frame{};
  return startup(hdr.data(), q.size(), maxLength);
}

}  // namespace pgswitch::protocol
