// Cancel keys: allocation, the per-client slot written at link/unlink, reads and removal.
#include <gtest/gtest.h>

#include <set>

#include "proxy/core/runtime.h"

namespace pgswitch::proxy {
namespace {

TEST(CancelRegistry, KeysAreUniqueAndReadTheirSlot) {
  CancelRegistry r;
  CancelSlot sa, sb;
  auto a = r.add(&sa);
  auto b = r.add(&sb);
  EXPECT_NE(a.pid, b.pid);
  CancelRegistry::Busy busy;
  EXPECT_FALSE(r.read(a.pid, a.key, busy));  // known, but no server linked
  sa.set(1, 4242, 99);
  sa.requestStarted();
  ASSERT_TRUE(r.read(a.pid, a.key, busy));
  EXPECT_EQ(busy.backend, 1);
  EXPECT_EQ(busy.serverPid, 4242);
  EXPECT_EQ(busy.serverKey, 99);
  EXPECT_NE(busy.request, 0u);
  EXPECT_EQ(r.inFlight(a.pid, a.key), busy.request);
  EXPECT_FALSE(r.read(a.pid, a.key ^ 1, busy));  // right pid, wrong key
  EXPECT_FALSE(r.read(999999, a.key, busy));
  EXPECT_EQ(r.inFlight(a.pid, a.key ^ 1), 0u);
  sa.requestEnded();
  EXPECT_EQ(r.inFlight(a.pid, a.key), 0u);
  sa.requestStarted();  // a new request: a cancel meant for the old one must not match
  EXPECT_NE(r.inFlight(a.pid, a.key), busy.request);
  r.remove(a.pid, a.key);
  EXPECT_FALSE(r.read(a.pid, a.key, busy));
  EXPECT_EQ(r.inFlight(a.pid, a.key), 0u);
  sb.set(0, 7, 8);
  EXPECT_TRUE(r.read(b.pid, b.key, busy));
}

TEST(CancelSlot, EmptyUntilLinkedAndAfterUnlink) {
  CancelSlot s;
  int backend = -5;
  int32_t pid = 0, key = 0;
  EXPECT_FALSE(s.get(backend, pid, key));
  s.set(2, 4242, -7);  // keys are any 32-bit value, negative included
  ASSERT_TRUE(s.get(backend, pid, key));
  EXPECT_EQ(backend, 2);
  EXPECT_EQ(pid, 4242);
  EXPECT_EQ(key, -7);
  s.set(0, 17, 0);
  ASSERT_TRUE(s.get(backend, pid, key));
  EXPECT_EQ(backend, 0);
  EXPECT_EQ(pid, 17);
  EXPECT_EQ(key, 0);
  s.clear();
  EXPECT_FALSE(s.get(backend, pid, key));
}

}  // namespace
}  // namespace pgswitch::proxy
