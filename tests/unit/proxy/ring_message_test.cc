// Ring::message, the way a worker passes an accepted socket to another worker's loop: the
// completion lands in the other ring with the sender's word and value, and one the kernel
// refuses comes back to the sender. Real io_uring rings (skipped where the kernel or a
// seccomp profile refuses them), no sockets.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <vector>

#include "proxy/core/ring.h"

namespace pgswitch::proxy {
namespace {

struct Heard {
  uint64_t data;
  int res;
};

void record(void* ctx, uint64_t data, int res) {
  static_cast<std::vector<Heard>*>(ctx)->push_back({data, res});
}

constexpr uint64_t word(uint64_t payload) {
  return payload << 3 | static_cast<uint64_t>(Ring::Op::Message);
}

TEST(RingMessage, ReachesTheOtherRingAndOnlyIt) {
  protocol::ChunkPool chunks;
  std::string why;
  auto sender = Ring::make(chunks, why);
  if (!sender) GTEST_SKIP() << "io_uring unavailable: " << why;
  auto receiver = Ring::make(chunks, why);
  ASSERT_TRUE(receiver) << why;
  std::vector<Heard> atSender, atReceiver;
  sender->onMessage(&record, &atSender);
  receiver->onMessage(&record, &atReceiver);

  sender->message(receiver->fd(), word(0x1234), 77);
  sender->message(receiver->fd(), word(0x5678), 0);
  sender->wait(0);  // submits; a message that went through posts nothing here
  EXPECT_TRUE(atSender.empty());
  receiver->wait(0);
  ASSERT_EQ(atReceiver.size(), 2u);
  EXPECT_EQ(atReceiver[0].data, word(0x1234));
  EXPECT_EQ(atReceiver[0].res, 77);
  EXPECT_EQ(atReceiver[1].data, word(0x5678));
  EXPECT_EQ(atReceiver[1].res, 0);
  EXPECT_EQ(sender->pending(), 0u);  // messages are not operations the loop waits for
  EXPECT_EQ(receiver->pending(), 0u);
}

TEST(RingMessage, ARefusedMessageComesBackToTheSender) {
  protocol::ChunkPool chunks;
  std::string why;
  auto sender = Ring::make(chunks, why);
  if (!sender) GTEST_SKIP() << "io_uring unavailable: " << why;
  std::vector<Heard> atSender;
  sender->onMessage(&record, &atSender);
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  sender->message(p[0], word(42), 5);  // not a ring: the other worker's ring already closed
  sender->wait(0);
  ::close(p[0]);
  ::close(p[1]);
  ASSERT_EQ(atSender.size(), 1u);
  EXPECT_EQ(atSender[0].data, word(42));
  EXPECT_LT(atSender[0].res, 0);
}

}  // namespace
}  // namespace pgswitch::proxy
