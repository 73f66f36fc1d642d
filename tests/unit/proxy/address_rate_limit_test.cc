// Unit tests for AddressRateLimit (proxy/core/address_rate_limit.*): bursts, refill over time,
// addresses counted apart, "off", and the bounded table.
#include "proxy/core/address_rate_limit.h"

#include <gtest/gtest.h>

#include <string>

namespace pgswitch::proxy {
namespace {

TEST(AddressRateLimit, OffAdmitsEverythingAndKeepsNothing) {
  AddressRateLimit l;
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(l.admit("1.2.3.4", 0, 0));
  EXPECT_EQ(l.tracked(), 0u);
}

TEST(AddressRateLimit, BurstThenRefill) {
  AddressRateLimit l;
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(l.admit("1.2.3.4", 1000, 5)) << i;
  EXPECT_FALSE(l.admit("1.2.3.4", 1000, 5));
  EXPECT_FALSE(l.admit("1.2.3.4", 1100, 5));  // 0.5 tokens back
  EXPECT_TRUE(l.admit("1.2.3.4", 1200, 5));   // one token after 200 ms
  EXPECT_FALSE(l.admit("1.2.3.4", 1200, 5));
  // A second later the bucket is full again, never fuller.
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(l.admit("1.2.3.4", 5000, 5)) << i;
  EXPECT_FALSE(l.admit("1.2.3.4", 5000, 5));
}

TEST(AddressRateLimit, AddressesAreCountedApart) {
  AddressRateLimit l;
  EXPECT_TRUE(l.admit("10.0.0.1", 0, 1));
  EXPECT_FALSE(l.admit("10.0.0.1", 0, 1));
  EXPECT_TRUE(l.admit("10.0.0.2", 0, 1));
  EXPECT_TRUE(l.admit("::1", 0, 1));
  EXPECT_EQ(l.tracked(), 3u);
}

TEST(AddressRateLimit, QuietBucketsAreForgottenAndTheTableIsBounded) {
  AddressRateLimit l;
  for (size_t i = 0; i <= AddressRateLimit::kSweepAbove; ++i)
    EXPECT_TRUE(l.admit("a" + std::to_string(i), 0, 10));
  EXPECT_GT(l.tracked(), AddressRateLimit::kSweepAbove);
  EXPECT_TRUE(l.admit("late", 2000, 10));  // sweeps the quiet ones first
  EXPECT_EQ(l.tracked(), 1u);
  AddressRateLimit full;
  for (size_t i = 0; i < AddressRateLimit::kMaxTracked; ++i)
    full.admit("b" + std::to_string(i), 0, 10);
  EXPECT_EQ(full.tracked(), AddressRateLimit::kMaxTracked);
  EXPECT_TRUE(full.admit("new", 0, 10));  // admitted untracked
  EXPECT_EQ(full.tracked(), AddressRateLimit::kMaxTracked);
}

}  // namespace
}  // namespace pgswitch::proxy
