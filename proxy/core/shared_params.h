// SharedParams: one immutable copy of a set of ParameterStatus values, shared by every client
// of a worker that was told the same values (issue 14: a per-client std::map of ~14 strings
// was ~1.4 KiB of every idle client; nearly all clients of a pool are told the same).
// ParamsInterner hands the copies out and forgets those no client holds any more.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>

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

class ParamsInterner {
 public:
  // The worker's copy of these values, made on first use; the same object for equal values.
  SharedParams intern(const ServerParams& p);
  // Drops copies that only the interner holds (the worker's janitor, once a second).
  void sweep();
  size_t size() const { return table_.size(); }

 private:
  // Keyed by a hash of the names and values; equal hashes are compared in full.
  std::unordered_multimap<uint64_t, SharedParams> table_;
};

}  // namespace pgswitch::proxy
