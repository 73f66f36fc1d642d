// The keys of ParameterStatus sets: the interner's (hashParams) and a client's told values'
// (toldDigest).
#include "proxy/core/shared_params.h"

namespace pgswitch::proxy {

uint64_t hashParams(const ServerParams& p) { return hashPairs(p); }

uint64_t toldDigest(const ServerParams& p) { return hashPairs(p, "in_hot_standby"); }

}  // namespace pgswitch::proxy
