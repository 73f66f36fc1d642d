// Where a request goes: the pure half of read/write routing. targetFor() turns a statement's
// Classification into "primary" or "a replica will do"; pickBackend() chooses the backend
// from a Topology snapshot (lag limits, tags, the replay LSN a read needs, weights, outstanding
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
// Session mode with session_reads: the session's own primary server holds its transactions
// (read-only ones too) and every kind of session state, so only what targetFor() sends to a
// replica and runs outside a transaction goes there. A replica cannot be left holding a
// transaction, a cursor or a setting the primary does not have.
Target sessionReadsTargetFor(const Classification& c, bool sessionReadOnly);

enum class Fallback { Primary, Error };

struct RoutePolicy {
  uint64_t maxLagBytes = 0;  // replicas further behind are skipped (0 = no limit)
  uint64_t maxLagMs = 0;
  Fallback fallback = Fallback::Primary;  // when no replica qualifies for a read
  // When no replica is known to have replayed minReplayLsn, one that may have (its lag at
  // the last health check at most this) is picked with RoutePick::verify set: the caller waits
  // it before sending the read. -1: never; go to the primary.
  int64_t verifyMaxLagMs = -1;
};

struct RouteRequest {
  Target target = Target::Primary;
  std::string_view tag;      // only backends carrying this tag ("" = any)
  uint64_t minReplayLsn = 0;  // replicas must have replayed this far (strong, read-your-writes)
  // Replay positions learned since the snapshot was taken, by backend index (may be shorter
  // than the topology, 0 = none): a replica counts as far as the larger of the two.
  std::span<const uint64_t> learnedReplayLsn;
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
  bool verify = false;    // the replica is not known to have reached minReplayLsn: wait for it
};

// outstanding[i]: requests this worker has in flight on backend i (may be shorter than the
// topology). random: any uniformly distributed 64-bit value (the proxy's per-worker PRNG).
RoutePick pickBackend(const Topology& t, const RoutePolicy& p, const RouteRequest& r,
                      std::span<const int> outstanding, uint64_t random);

}  // namespace pgswitch::routing
