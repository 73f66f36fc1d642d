// etcd v3 through its JSON gateway (pure): the request bodies pgswitch sends to agree between
// instances (lease grant and keep-alive, a compare-and-swap transaction on the leader key, the
// decision written only while the writer's lease still holds that key, reading it back) and
// their answers parsed. Keys and values are base64, int64s are JSON strings. No I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace pgswitch::health::etcd {

std::string base64(std::string_view raw);
std::optional<std::string> unbase64(std::string_view text);  // nullopt: not base64

// One call: POST `path` (appended to an endpoint URL) with `body`.
struct Call {
  std::string path;
  std::string body;
};

Call leaseGrant(int ttlSeconds);
Call leaseKeepAlive(int64_t lease);
Call leaseRevoke(int64_t lease);
// Takes `key` bound to `lease` with `value` if nobody holds it (create_revision == 0);
// otherwise reads who does.
Call campaign(const std::string& key, const std::string& value, int64_t lease);
// Puts key = value only while `guardKey` is held by `lease` (the writer is still the leader).
Call putIfHolder(const std::string& guardKey, int64_t lease, const std::string& key,
                 const std::string& value);
Call range(const std::string& key);

// A key as etcd returns it (value decoded).
struct KeyValue {
  std::string key;
  std::string value;
  int64_t modRevision = 0;
  int64_t lease = 0;  // 0: not bound to a lease
};

// /v3/lease/grant: the lease id, or nullopt (error says why).
std::optional<int64_t> parseLeaseGrant(std::string_view body, std::string* error);
// /v3/lease/keepalive: the remaining TTL in seconds (0: the lease is gone), or nullopt.
std::optional<int64_t> parseKeepAlive(std::string_view body, std::string* error);

struct CampaignAnswer {
  bool won = false;  // this call put the key
  KeyValue holder;   // when !won: who holds it (key empty: nobody, it expired meanwhile)
};
std::optional<CampaignAnswer> parseCampaign(std::string_view body, std::string* error);
// putIfHolder: whether the put happened.
std::optional<bool> parseTxnSucceeded(std::string_view body, std::string* error);
// /v3/kv/range of one key: the key, or a KeyValue with an empty key when it does not exist.
std::optional<KeyValue> parseRange(std::string_view body, std::string* error);

// What the leader writes to <prefix>/decision after a promotion: the new primary, the
// backend it replaced (fenced everywhere), the timeline and a sequence number.
struct Decision {
  uint64_t seq = 0;
  std::string primary;  // backend name
  std::string host;
  int port = 0;
  uint32_t timeline = 0;  // 0: not known when written
  std::string fenced;     // the old primary's name, "" = none
  std::string fencedHost;
  int fencedPort = 0;
  std::string by;  // the instance that decided
  int64_t timeMs = 0;
};
std::string toJson(const Decision& d);
std::optional<Decision> parseDecision(std::string_view json, std::string* error);

}  // namespace pgswitch::health::etcd
