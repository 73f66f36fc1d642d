// Cancel keys: allocation, the per-client slot written at link/unlink, lookup and removal.
#include <gtest/gtest.h>

#include <set>

#include "proxy/core/runtime.h"

namespace pgswitch::proxy {
namespace {

TEST(CancelRegistry, KeysAreUniqueAndFindTheirSlot) {
  CancelRegistry r;
  auto a = r.allocate();
  auto b = r.allocate();
  EXPECT_NE(a.pid, b.pid);
  EXPECT_EQ(r.find(a.pid, a.key), a.slot);
  EXPECT_EQ(r.find(b.pid, b.key), b.slot);
  EXPECT_EQ(r.find(a.pid, a.key ^ 1), nullptr);  // right pid, wrong key
  EXPECT_EQ(r.find(999999, a.key), nullptr);
  r.remove(a.pid, a.key);
  EXPECT_EQ(r.find(a.pid, a.key), nullptr);
  EXPECT_EQ(r.find(b.pid, b.key), b.slot);
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
