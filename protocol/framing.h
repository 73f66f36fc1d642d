// Message framing over a ByteQueue or a contiguous span. Three outcomes: Complete (a whole
// message is present), NeedMore (consume nothing, wait for bytes), Invalid (the peer is
// broken or hostile: close it). Lengths are checked against a cap before anything is
// allocated or forwarded.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "protocol/buffer.h"

namespace pgswitch::protocol {

enum class FrameStatus { Complete, NeedMore, Invalid };

struct Frame {
  FrameStatus status = FrameStatus::NeedMore;
  char type = 0;          // 0 for startup-phase packets, which have no type byte
  uint32_t length = 0;    // the wire length field: counts itself, not the type byte
  size_t total = 0;       // bytes the whole message occupies (type byte + length)
  const char* error = nullptr;  // why, when Invalid
};

// Typed message ('Q', 'D', ...): 1 type byte + int32 length (>= 4).
Frame readFrame(std::span<const std::byte> bytes, uint32_t maxLength);
Frame readFrame(const ByteQueue& q, uint32_t maxLength);

// Startup-phase packet (StartupMessage, SSLRequest, CancelRequest): int32 length (>= 8).
Frame readStartupFrame(std::span<const std::byte> bytes, uint32_t maxLength);
Frame readStartupFrame(const ByteQueue& q, uint32_t maxLength);

// PostgreSQL's own limits: a startup packet may be at most 10000 bytes
// (MAX_STARTUP_PACKET_LENGTH); other messages are bounded by configuration.
inline constexpr uint32_t kMaxStartupPacket = 10000;
inline constexpr uint32_t kDefaultMaxMessage = 256u * 1024 * 1024;

}  // namespace pgswitch::protocol
