// The Topology snapshot: which backend is the primary, which are replicas, and how healthy
// and how far behind each one is. Immutable once published; sessions hold a shared_ptr.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace pgswitch::routing {

enum class Role { Unknown, Primary, Replica };
// Removed: a RELOAD took the backend out of the configuration. Its slot (index) stays, since
// pools and counters are keyed by it, but it is never checked, never routed to, never a
// primary, and displays leave it out.
enum class BackendState { Up, Down, Fenced, Draining, Disabled, Removed };

const char* toString(Role r);
const char* toString(BackendState s);

struct BackendInfo {
  std::string name;
  std::string host;
  int port = 0;
  int weight = 1;
  std::vector<std::string> tags;
  Role role = Role::Unknown;
  BackendState state = BackendState::Up;
  uint32_t timeline = 0;
  uint64_t lagBytes = 0;
  uint64_t lagMs = 0;
  uint64_t replayLsn = 0;
};

struct Topology {
  uint64_t version = 0;
  std::vector<BackendInfo> backends;
  int primary = -1;  // index into backends, -1 while no primary is known
  bool writesRefused = false;  // split brain that could not be decided
  bool writesPaused = false;   // planned switchover in progress: new writes wait
  // Every backend has been checked at least once. A health monitor that just (re)started
  // reports the ones it has not reached yet as down; after a reload the proxy keeps the
  // previous snapshot until this holds, so that healthy backends do not flap.
  bool settled = true;

  bool usable(int i) const {
    return i >= 0 && i < static_cast<int>(backends.size()) &&
           backends[i].state == BackendState::Up;
  }
};

using TopologyPtr = std::shared_ptr<const Topology>;

}  // namespace pgswitch::routing
