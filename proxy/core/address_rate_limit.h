// AddressRateLimit: how many new connections one client address may open per second
// (server.max_connections_per_second_per_address), shared by every worker's accept path. A
// token bucket per address: `perSecond` tokens come back each second and a burst of up to
// `perSecond` is admitted at once. Time is a parameter (unit-tested without clocks).
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace pgswitch::proxy {

class AddressRateLimit {
 public:
  // True: a connection from `address` (the IP as text) at `nowMs` is admitted, and counted.
  // perSecond <= 0 admits everything and remembers nothing.
  bool admit(std::string_view address, uint64_t nowMs, int perSecond);
  size_t tracked() const;

  // Buckets kept at most. Full buckets (quiet for a second) are dropped once a second when
  // there are more than kSweepAbove; an address that finds the table full is admitted
  // untracked, so a flood from many addresses costs bounded memory (and is max_login_clients'
  // and the firewall's business).
  static constexpr size_t kMaxTracked = 65536;
  static constexpr size_t kSweepAbove = 1024;

 private:
  struct Bucket {
    double tokens = 0;
    uint64_t lastMs = 0;
  };
  void sweep(uint64_t nowMs);

  mutable std::mutex mu_;
  std::unordered_map<std::string, Bucket> buckets_;
  uint64_t lastSweepMs_ = 0;
};

}  // namespace pgswitch::proxy
