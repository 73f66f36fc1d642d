// Health and failover events (backend_up, backend_down, role_changed, split_brain, fenced,
// lag_exceeded; failover_*, promoted, repointed, switchover_*; patroni_*; coordination_*,
// etcd_*, decision_*): the value type, its logfmt rendering for the log and the environment
// handed to on_event.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pgswitch::health {

enum class EventType {
  BackendUp,
  BackendDown,
  RoleChanged,
  SplitBrain,
  Fenced,
  LagExceeded,
  FailoverStarted,     // a candidate was chosen (or named by PROMOTE) and is being promoted
  FailoverRefused,     // automatic failover wanted but not done (no candidate, lag, primary alive)
  FailoverFailed,      // a promotion was attempted and failed
  Promoted,            // the candidate left recovery
  Repointed,           // a replica's primary_conninfo now names the new primary
  RepointFailed,       // re-pointing a replica failed (it keeps its old upstream)
  FailoverDone,        // failover or PROMOTE finished
  SwitchoverStarted,   // writes paused, waiting for the candidate to catch up
  SwitchoverFailed,    // switchover abandoned; writes resumed on the old primary
  SwitchoverDone,      // switchover finished, writes resumed on the new primary
  PatroniUnreachable,  // no [patroni] url answered /cluster: the last known view is kept
  PatroniReachable,    // /cluster answered again after PatroniUnreachable
  CoordinationLeader,  // [coordination]: this instance holds the etcd leader key (may promote)
  CoordinationLost,    // it no longer does (another took it, or its lease could not be kept)
  EtcdUnreachable,     // no [coordination] etcd endpoint answered: this instance cannot promote
  EtcdReachable,       // etcd answered again after EtcdUnreachable
  DecisionWritten,     // the leader wrote its promotion to etcd for the other instances
  DecisionAdopted,     // another instance's decision was applied here (new primary, fence)
  FailoverClients,     // a few seconds after the primary moved: what its clients went through
                       // (transactions replayed or not, sessions rebuilt), raised by the proxy
};

// Whether an event reports trouble (logged as a warning) rather than progress.
bool isWarning(EventType t);

const char* toString(EventType t);

struct Event {
  EventType type = EventType::BackendUp;
  int backend = -1;  // index into the backend list
  std::string name;
  std::string host;
  int port = 0;
  std::string role;    // the backend's role when the event was raised
  std::string detail;  // human-readable, e.g. "3 consecutive failures: connection refused"
  int64_t timeMs = 0;  // wall clock, milliseconds since the Unix epoch
};

// `event=backend_down backend=pg2 host=127.0.0.1 port=5433 role=replica detail="..."`
std::string formatLogfmt(const Event& e);

// "2024-05-01T12:00:00.123Z"
std::string formatTimeUtc(int64_t epochMs);

// PGSWITCH_EVENT, PGSWITCH_BACKEND, PGSWITCH_HOST, PGSWITCH_PORT, PGSWITCH_ROLE,
// PGSWITCH_DETAIL, PGSWITCH_TIME as "NAME=value" strings.
std::vector<std::string> eventEnvironment(const Event& e);

}  // namespace pgswitch::health
