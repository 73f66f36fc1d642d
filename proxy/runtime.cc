// Cancel-key registry. Keys are random so that a client cannot guess another's key.
#include "proxy/runtime.h"

#include <array>
#include <cstring>

#include "protocol/scram.h"

namespace pgswitch::proxy {

std::pair<int32_t, int32_t> CancelRegistry::allocate() {
  int32_t pid = nextPid_.fetch_add(1);
  int32_t key = 0;
  std::array<std::byte, 4> r;
  protocol::randomBytes(r);
  std::memcpy(&key, r.data(), 4);
  std::lock_guard g(mu_);
  map_[k(pid, key)] = CancelTarget{};
  return {pid, key};
}

void CancelRegistry::setTarget(int32_t pid, int32_t key, const CancelTarget& t) {
  std::lock_guard g(mu_);
  map_[k(pid, key)] = t;
}

void CancelRegistry::clearTarget(int32_t pid, int32_t key) {
  std::lock_guard g(mu_);
  auto it = map_.find(k(pid, key));
  if (it != map_.end()) it->second = CancelTarget{};
}

void CancelRegistry::remove(int32_t pid, int32_t key) {
  std::lock_guard g(mu_);
  map_.erase(k(pid, key));
}

bool CancelRegistry::lookup(int32_t pid, int32_t key, CancelTarget& out) const {
  std::lock_guard g(mu_);
  auto it = map_.find(k(pid, key));
  if (it == map_.end() || it->second.port == 0) return false;
  out = it->second;
  return true;
}

}  // namespace pgswitch::proxy
