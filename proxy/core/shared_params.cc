// Interning ParameterStatus sets: a hash to find the candidates, a full compare to be sure.
#include "proxy/core/shared_params.h"

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
