// SharedParams: one immutable copy of a set of ParameterStatus values, shared by every client
// of a worker that was told the same values (issue 14: a per-client std::map of ~14 strings
// was ~1.4 KiB of every idle client; nearly all clients of a pool are told the same).
// ParamsInterner (interner.h) hands the copies out and forgets those no client holds any more.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "proxy/core/interner.h"

namespace pgswitch::proxy {

// Parameter name -> value, as a server reported them (ParameterStatus).
using ServerParams = std::map<std::string, std::string>;
// Never written while anyone else holds it (use_count() > 1): a holder that must change its
// values copies them first (SessionState::toldForWrite). Single-threaded (one worker's).
using SharedParams = std::shared_ptr<ServerParams>;

// A digest of the values a client is told (all but in_hot_standby, a property of the server
// that is never passed on): equal digests mean equal values (XXH3, 64 bits). Lets a session
// see that a server it links to has the values its client was told without comparing them.
uint64_t toldDigest(const ServerParams& p);

// The key the interner finds a set of values by (names and values, XXH3).
uint64_t hashParams(const ServerParams& p);
using ParamsInterner = Interner<ServerParams, hashParams>;

}  // namespace pgswitch::proxy
