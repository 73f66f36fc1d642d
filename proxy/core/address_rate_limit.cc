// Token buckets per client address for new connections.
#include "proxy/core/address_rate_limit.h"

#include <algorithm>

namespace pgswitch::proxy {

bool AddressRateLimit::admit(std::string_view address, uint64_t nowMs, int perSecond) {
  if (perSecond <= 0) return true;
  std::lock_guard g(mu_);
  if (buckets_.size() > kSweepAbove && nowMs - lastSweepMs_ >= 1000) sweep(nowMs);
  auto it = buckets_.find(std::string(address));
  if (it == buckets_.end()) {
    if (buckets_.size() >= kMaxTracked) return true;
    it = buckets_.emplace(std::string(address), Bucket{double(perSecond), nowMs}).first;
  }
  Bucket& b = it->second;
  // A clock that went back (it should not: the caller's is monotonic) refills nothing.
  uint64_t elapsed = nowMs > b.lastMs ? nowMs - b.lastMs : 0;
  b.tokens = std::min<double>(perSecond, b.tokens + double(elapsed) * perSecond / 1000.0);
  b.lastMs = nowMs;
  if (b.tokens < 1.0) return false;
  b.tokens -= 1.0;
  return true;
}

size_t AddressRateLimit::tracked() const {
  std::lock_guard g(mu_);
  return buckets_.size();
}

void AddressRateLimit::sweep(uint64_t nowMs) {
  lastSweepMs_ = nowMs;
  // A bucket quiet for a second is full again: forgetting it changes no answer.
  std::erase_if(buckets_, [&](const auto& kv) { return nowMs - kv.second.lastMs >= 1000; });
}

}  // namespace pgswitch::proxy
