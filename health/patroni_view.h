// What Patroni says about the cluster (pure): its REST API's /cluster answer parsed into members
// (name, address, role, state, timeline, lag, tags) and matched to the configured backends by
// host:port, plus the body of a /switchover request. No I/O; unit-tested on JSON samples.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "health/settings.h"

namespace pgswitch::health {

// Patroni's member roles. "master" and "primary" (older Patroni) read as Leader;
// "sync_standby" as Replica. A standby cluster's leader is in recovery: never a primary.
enum class PatroniRole { Other, Leader, StandbyLeader, Replica };
const char* toString(PatroniRole r);

struct PatroniMember {
  std::string name;
  std::string host;
  int port = 0;
  PatroniRole role = PatroniRole::Other;
  std::string state;                 // running, streaming, stopped, starting, crashed, ...
  std::string apiUrl;                // "http://host:8008/patroni" (may be empty)
  uint32_t timeline = 0;             // 0 when not reported
  std::optional<uint64_t> lagBytes;  // absent for the leader or when "unknown"
  bool noFailover = false;
  bool noLoadBalance = false;
};

// Parses a /cluster body. On malformed JSON or a body without a "members" array returns
// nullopt and says why in `error`; members without a name, host or port are skipped.
std::optional<std::vector<PatroniMember>> parsePatroniCluster(std::string_view body,
                                                              std::string* error);

// The members matched to backends by host:port (exact, case-insensitive host).
struct PatroniView {
  std::vector<PatroniMember> members;
  std::vector<int> memberOf;           // per backend: index into members, -1 = not a member
  int leader = -1;                     // backend index of Patroni's leader, -1 = none matched
  std::string leaderName;              // Patroni's leader member name, even if unmatched
  std::vector<std::string> unmatched;  // members with no backend at their address
};
PatroniView matchPatroniMembers(std::vector<PatroniMember> members,
                                const std::vector<BackendSpec>& backends);

// The /switchover request body: {"leader": ..., "candidate": ...} (candidate optional).
std::string patroniSwitchoverBody(const std::string& leader, const std::string& candidate);

}  // namespace pgswitch::health
