// Observability data: per-worker counters kept without locks on the hot path, and the
// snapshot the console, /metrics and /status are rendered from (gathered from every
// worker on request; see Runtime::gather in proxy/).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/config/config.h"
#include "routing/topology.h"

namespace pgswitch::proxy {

// Latency histogram with power-of-two microsecond buckets: bucket i counts durations in
// [2^i, 2^(i+1)) µs; good enough for p50/p99 within a factor of two, and mergeable.
struct LatencyHistogram {
  static constexpr int kBuckets = 32;
  std::array<uint64_t, kBuckets> buckets{};
  uint64_t count = 0;
  uint64_t sumUs = 0;
  void add(uint64_t us);
  void merge(const LatencyHistogram& o);
  uint64_t percentileUs(double p) const;  // upper bound of the bucket holding p
  uint64_t averageUs() const { return count ? sumUs / count : 0; }
};

// Counters per backend, owned by one worker (plain integers: one thread writes).
struct BackendCounters {
  uint64_t transactions = 0;  // server released / ReadyForQuery 'I' after work
  uint64_t queries = 0;       // ReadyForQuery received
  uint64_t reads = 0;         // requests routed as reads
  uint64_t writes = 0;        // requests routed as writes (to the primary)
  uint64_t bytesIn = 0;       // client -> server
  uint64_t bytesOut = 0;      // server -> client
  LatencyHistogram latency;   // request to ReadyForQuery
  void merge(const BackendCounters& o);
};

struct ClientInfo {
  int worker = 0;
  int32_t id = 0;  // the cancel pid pgswitch gave the client
  std::string user, database, applicationName, addr, state;
  uint64_t connectedMs = 0;  // age
  uint64_t serverId = 0;     // 0 = none linked
  // session_reads: the client's own primary server while it is parked (the client is idle or
  // reads on a replica); SHOW SERVERS names the client for it too. 0 = none.
  uint64_t parkedServerId = 0;
  bool pinned = false;
  std::string pinReason;
};

struct ServerInfo {
  int worker = 0;
  uint64_t id = 0;
  std::string backend, user, database, state;
  char txnStatus = 'I';
  uint64_t ageMs = 0, idleMs = 0;
  int32_t clientId = 0;  // 0 = none
  int32_t backendPid = 0;
  size_t preparedStatements = 0;
};

struct PoolInfo {
  std::string backend, database, user, mode;
  int clientsActive = 0, clientsWaiting = 0;
  int serversActive = 0, serversIdle = 0, serversConnecting = 0, serversTotal = 0;
  uint64_t maxWaitMs = 0;
  int poolSize = 0;  // configured total
};

struct EventRecord {
  uint64_t unixMs = 0;
  std::string type, backend, detail;
};

// [coordination] as the health thread last saw it (SHOW COORDINATION).
struct CoordinationInfo {
  bool enabled = false;
  bool leader = false;
  std::string name, blocker, lastDecision;
};

// Everything the console and the HTTP endpoints show, at one moment.
struct Snapshot {
  std::shared_ptr<const Config> config;
  routing::TopologyPtr topology;
  std::vector<PoolInfo> pools;
  std::vector<ClientInfo> clients;
  std::vector<ServerInfo> servers;
  std::vector<BackendCounters> perBackend;  // index = topology backend index
  std::vector<EventRecord> events;          // most recent last
  CoordinationInfo coordination;
  uint64_t uptimeMs = 0;
  uint64_t authFailures = 0;
  uint64_t failovers = 0;
  uint64_t clientsTotal = 0;  // connected now
  uint64_t loginClients = 0;  // accepted, not logged in yet
  uint64_t loginRefused = 0;
  uint64_t loginTimeouts = 0;
  uint64_t stalledClients = 0;
  uint64_t accessRefused = 0;
  uint64_t rateLimited = 0;
  uint64_t clientsHandedOver = 0;
  uint64_t acceptFdExhausted = 0;
  uint64_t acceptTurnedAway = 0;
  uint64_t poolsDropped = 0;
  uint64_t readonlyRetries = 0;
  uint64_t replicaWaits = 0;
  uint64_t replicaWaitFallbacks = 0;
  uint64_t readsOnPrimary = 0;
  uint64_t replicaPositionQuestions = 0;
  uint64_t recoveryConflictRetries = 0;
  uint64_t volatileFunctionRoutes = 0;
  uint64_t sessionReads = 0;
  struct Replays {
    uint64_t attempted = 0, succeeded = 0, mismatched = 0, abandoned = 0, tooLarge = 0,
             commitInFlight = 0, notReplayable = 0;
  } replays;
  uint64_t sessionsRebuilt = 0;
  uint64_t sessionsUnmovable = 0;
  uint64_t sessionReadsFallbacks = 0;
  uint64_t functionCatalogReads = 0;
  uint64_t authLookups = 0;
  uint64_t authLookupFailures = 0;
  uint64_t workerAllocations = 0;
  uint64_t ioUringWorkers = 0;
  uint64_t serversOpened = 0;
  bool paused = false;

  // Backend names by index (the topology's; the configuration's while none is known), then
  // "#<i>" for each counter slot past them (a backend taken out since): one per slot.
  std::vector<std::string> backendNames() const;
  // perBackend[i], zeros past its end.
  const BackendCounters& counters(size_t i) const;
  // The server connections open to the backend named `backend`.
  uint64_t serversOf(std::string_view backend) const;
};

}  // namespace pgswitch::proxy
