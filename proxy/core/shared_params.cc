// Interning ParameterStatus sets: a hash to find the candidates, a full compare to be sure.
#include "proxy/core/shared_params.h"

#include <xxhash.h>

namespace pgswitch::proxy {

namespace {

uint64_t hashParams(const ServerParams& p) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a over name, value, with separators
  auto mix = [&h](const std::string& s, unsigned char end) {
    for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
    h = (h ^ end) * 1099511628211ull;
  };
  for (const auto& [k, v] : p) {
    mix(k, 0xff);
    mix(v, 0xfe);
  }
  return h;
}

}  // namespace

uint64_t toldDigest(const ServerParams& p) {
  uint64_t h = 0x9e3779b97f4a7c15ull;
  for (const auto& [k, v] : p) {
    if (k == "in_hot_standby") continue;
    h = XXH3_64bits_withSeed(k.data(), k.size(), h);
    h = XXH3_64bits_withSeed(v.data(), v.size(), h ^ 0x5bd1e995ull);
  }
  return h;
}

SharedParams ParamsInterner::intern(const ServerParams& p) {
  const uint64_t h = hashParams(p);
  auto [first, last] = table_.equal_range(h);
  for (auto it = first; it != last; ++it)
    if (*it->second == p) return it->second;
  auto copy = std::make_shared<ServerParams>(p);
  table_.emplace(h, copy);
  return copy;
}

void ParamsInterner::sweep() {
  for (auto it = table_.begin(); it != table_.end();) {
    if (it->second.use_count() == 1) {
      it = table_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace pgswitch::proxy
