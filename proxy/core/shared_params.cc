// The keys of ParameterStatus sets: the interner's (hashParams) and a client's told values'
// (toldDigest).
#include "proxy/core/shared_params.h"

#include <xxhash.h>

namespace pgswitch::proxy {

namespace {

uint64_t digest(const ServerParams& p, std::string_view skip) {
  uint64_t h = 0x9e3779b97f4a7c15ull;
  for (const auto& [k, v] : p) {
    if (k == skip) continue;
    h = XXH3_64bits_withSeed(k.data(), k.size(), h);
    h = XXH3_64bits_withSeed(v.data(), v.size(), h ^ 0x5bd1e995ull);
  }
  return h;
}

}  // namespace

uint64_t hashParams(const ServerParams& p) { return digest(p, {}); }

uint64_t toldDigest(const ServerParams& p) { return digest(p, "in_hot_standby"); }

}  // namespace pgswitch::proxy
