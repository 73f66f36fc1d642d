// Cancel-key registry. Keys are random so that a client cannot guess another's key.
#include "proxy/core/runtime.h"

#include <array>
#include <cstring>

#include "protocol/scram.h"

namespace pgswitch::proxy {

CancelRegistry::Entry CancelRegistry::allocate() {
  Entry e;
  e.pid = nextPid_.fetch_add(1);
  std::array<std::byte, 4> r;
  protocol::randomBytes(r);
  std::memcpy(&e.key, r.data(), 4);
  e.slot = std::make_shared<CancelSlot>();
  std::lock_guard g(mu_);
  map_[k(e.pid, e.key)] = e.slot;
  return e;
}

void CancelRegistry::remove(int32_t pid, int32_t key) {
  std::lock_guard g(mu_);
  map_.erase(k(pid, key));
}

std::shared_ptr<const CancelSlot> CancelRegistry::find(int32_t pid, int32_t key) const {
  std::lock_guard g(mu_);
  auto it = map_.find(k(pid, key));
  return it == map_.end() ? nullptr : it->second;
}

}  // namespace pgswitch::proxy
