#include "proxy/core/login_facts.h"

#include <xxhash.h>

namespace pgswitch::proxy {

namespace {

uint64_t mix(uint64_t h, const std::string& s) { return XXH3_64bits_withSeed(s.data(), s.size(), h); }

}  // namespace

uint64_t hashNames(const ClientNames& n) { return mix(mix(0x9e3779b97f4a7c15ull, n.user), n.database); }

uint64_t hashSettings(const Settings& s) {
  uint64_t h = 0x9e3779b97f4a7c15ull;
  for (const auto& [k, v] : s) h = mix(mix(h, k), v) ^ 0x5bd1e995ull;
  return h;
}

}  // namespace pgswitch::proxy
