// Unit tests for health/secret_lookup: auth.query's rows read as an answer, and what the cache
// keeps for how long (time passed in, no database).
#include "health/secret_lookup.h"

#include <gtest/gtest.h>

namespace pgswitch::health {
namespace {

using Rows = std::vector<std::vector<std::optional<std::string>>>;
using std::chrono::milliseconds;

TEST(SecretFromRows, FoundMissingNullAndMalformed) {
  SecretAnswer a = secretFromRows(Rows{{"app", "SCRAM-SHA-256$4096:..."}});
  EXPECT_EQ(a.kind, SecretAnswer::Kind::Found);
  EXPECT_EQ(a.secret, "SCRAM-SHA-256$4096:...");
  EXPECT_EQ(secretFromRows(Rows{}).kind, SecretAnswer::Kind::NoPassword);
  EXPECT_EQ(secretFromRows(Rows{{"app", std::nullopt}}).kind, SecretAnswer::Kind::NoPassword);
  SecretAnswer two = secretFromRows(Rows{{"a", "x"}, {"a", "y"}});
  EXPECT_EQ(two.kind, SecretAnswer::Kind::Failed);
  EXPECT_NE(two.error.find("more than one row"), std::string::npos);
  EXPECT_EQ(secretFromRows(Rows{{"only one column"}}).kind, SecretAnswer::Kind::Failed);
}

TEST(SecretCache, KeepsFoundForTtlAndMissingForASecondAtMost) {
  SecretCache c;
  const auto t0 = SecretCache::Clock::now();
  SecretAnswer found{SecretAnswer::Kind::Found, "md5abc", ""};
  SecretAnswer missing{SecretAnswer::Kind::NoPassword, "", ""};
  SecretAnswer failed{SecretAnswer::Kind::Failed, "", "no primary"};
  c.store("db", "app", found, t0, milliseconds(60000));
  c.store("db", "ghost", missing, t0, milliseconds(60000));
  c.store("db", "broken", failed, t0, milliseconds(60000));
  EXPECT_TRUE(c.find("db", "app", t0 + milliseconds(59000)).has_value());
  EXPECT_FALSE(c.find("db", "app", t0 + milliseconds(60000)).has_value());
  EXPECT_FALSE(c.find("other", "app", t0).has_value());  // per database
  EXPECT_TRUE(c.find("db", "ghost", t0 + milliseconds(500)).has_value());
  EXPECT_FALSE(c.find("db", "ghost", t0 + milliseconds(1000)).has_value());
  EXPECT_FALSE(c.find("db", "broken", t0).has_value());  // failures are asked again
  EXPECT_EQ(c.size(), 2u);
  c.prune(t0 + milliseconds(2000));
  EXPECT_EQ(c.size(), 1u);
  c.store("db", "app", found, t0, milliseconds(0));  // cache_ms = 0: nothing kept
  EXPECT_EQ(c.size(), 0u);
}

}  // namespace
}  // namespace pgswitch::health
