// Where a request goes: the pure half of read/write routing. targetFor() turns a statement's
// Classification into "primary" or "a replica will do"; pickBackend() chooses the backend
// from a Topology snapshot (lag limits, tags, read-your-writes LSN, weights, outstanding
// work). No I/O and no clocks: the proxy passes everything in, tests drive it with tables.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "routing/classifier.h"
#include "routing/topology.h"

namespace pgswitch::routing {

enum class Target { Primary, Replica };

// sessionReadOnly: the client's default_transaction_read_only is on, so a plain BEGIN opens
// a read-only transaction.
Target targetFor(const Classification& c, bool sessionReadOnly);

enum class Fallback { Primary, Error };

struct RoutePolicy {
  uint64_t maxLagBytes = 0;  // replicas further behind are skipped (0 = no limit)
  uint64_t maxLagMs = 0;
  Fallback fallback = Fallback::Primary;  // when no replica qualifies for a read
};

struct RouteRequest {
  Target target = Target::Primary;
  std::string_view tag;      // only backends carrying this tag ("" = any)
  uint64_t minReplayLsn = 0;  // read-your-writes: replicas must have replayed this far
  int avoid = -1;             // a replica that just failed this request (retry elsewhere)
};

struct RoutePick {
  enum class Outcome {
    Backend,  // index is set
    Hold,     // nothing usable now (no primary, writes paused or refused): wait for a change
    Refuse,   // a read found no replica and fallback = error
  };
  Outcome outcome = Outcome::Hold;
  int index = -1;
  bool fellBack = false;  // a read sent to the primary because no replica qualified
};

// outstanding[i]: requests this worker has in flight on backend i (may be shorter than the
// topology). random: any uniformly distributed 64-bit value (the proxy's per-worker PRNG).
RoutePick pickBackend(const Topology& t, const RoutePolicy& p, const RouteRequest& r,
                      std::span<const int> outstanding, uint64_t random);

}  // namespace pgswitch::routing
