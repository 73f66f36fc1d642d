// Failover decisions as pure functions: which replica to promote (highest LSN among the
// allowed ones, then priority), whether to refuse (lag, old primary still alive), and how
// to re-point a replica's primary_conninfo. No I/O: the failover runner feeds them what it
// just read from the servers, and the unit tests feed them plain values.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "health/settings.h"

namespace pgswitch::health {

inline constexpr const char* kNoPromoteTag = "no_promote";

// How a PROMOTE or SWITCHOVER ended (HealthMonitor::promote / switchover).
struct OperationResult {
  bool ok = false;
  std::string error;    // why it failed or was refused
  int newPrimary = -1;  // the promoted backend when ok
  std::string detail;   // what happened, when ok
};
using OperationDone = std::function<void(const OperationResult&)>;
bool hasTag(const BackendSpec& b, const std::string& tag);

// One replica as the failover runner found it right before choosing.
struct ReplicaPosition {
  int index = -1;
  std::string name;
  bool answered = false;  // the position query succeeded
  std::string error;      // why not, when !answered
  bool inRecovery = true;
  uint64_t receiveLsn = 0;  // pg_last_wal_receive_lsn()
  uint64_t replayLsn = 0;   // pg_last_wal_replay_lsn()
  bool eligible = true;     // false: no_promote, disabled, draining (see `excluded`)
  std::string excluded;
  int priority = 0;
  // Its WAL receiver, to tell a dead primary from one only pgswitch cannot reach.
  bool streaming = false;  // pg_stat_wal_receiver.status = 'streaming'
  std::string senderHost;
  int senderPort = 0;
  int64_t msgAgeMs = -1;  // now() - last_msg_receipt_time, on the replica's clock; -1 unknown

  // What a promotion keeps: everything received is replayed before recovery ends.
  uint64_t position() const { return receiveLsn > replayLsn ? receiveLsn : replayLsn; }
};

struct CandidateInput {
  std::vector<ReplicaPosition> replicas;
  std::string oldPrimaryName;
  std::string oldPrimaryHost;
  int oldPrimaryPort = 0;
  uint64_t oldPrimaryLsn = 0;  // last pg_current_wal_lsn() seen on it, 0 = unknown
  uint64_t maxLagBytes = 0;    // refuse when the best candidate is further behind; 0 = no limit
  // Time since pgswitch's first failed check of the old primary ended, measured now; -1
  // skips the liveness test.
  int64_t sinceFailureMs = -1;
  // [coordination]: a replica that left recovery since the plan was made was promoted by
  // another instance (a leader that died right after pg_promote()): refuse (AlreadyPromoted)
  // rather than promote a second one. Off: it is skipped like any non-candidate.
  bool refuseIfPromoted = false;
};

// A replica that heard from the old primary this much after pgswitch's first failed check
// proves the primary alive (the slack covers reading the two clocks at different moments).
inline constexpr int64_t kAliveSlackMs = 250;

// NotCoordinated: [coordination] is set and this instance may not promote now (not the
// leader, or etcd unreachable); decided before any replica is asked. AlreadyPromoted: see
// CandidateInput::refuseIfPromoted.
enum class Refusal {
  None,
  NoCandidate,
  PrimaryAlive,
  TooFarBehind,
  NotCoordinated,
  AlreadyPromoted
};
const char* toString(Refusal r);

struct CandidateChoice {
  int index = -1;  // the backend to promote; -1 = refused
  Refusal refusal = Refusal::None;
  uint64_t lsn = 0;
  uint64_t lagBytes = 0;  // behind max(old primary's last LSN, most advanced replica)
  std::string detail;     // the choice explained, or why it was refused
};

// Highest position() among answered, eligible replicas still in recovery; equal positions go
// to the higher priority, then the lower index. Refused when there is none, when the old
// primary is demonstrably alive (a replica still streams from it and heard from it after
// pgswitch lost it), or when the lag exceeds maxLagBytes.
CandidateChoice chooseCandidate(const CandidateInput& in);

// One replica to re-point at a new upstream.
struct RepointInput {
  std::string name;             // the replica's backend name
  std::string currentConninfo;  // its primary_conninfo ("" = none)
  bool streaming = false;       // its WAL receiver streams right now
  std::string senderHost;
  int senderPort = 0;
  std::string oldHost;  // the primary that is going away
  int oldPort = 0;
  std::string newHost;  // where it should stream from
  int newPort = 0;
  std::string defaultUser;  // for a conninfo written from scratch
};

struct RepointDecision {
  bool repoint = false;
  bool failed = false;   // cannot decide (unparsable conninfo): leave it and report
  std::string conninfo;  // the new primary_conninfo when repoint
  std::string reason;
};

// Re-point when it follows the old primary (its conninfo or its WAL sender names it) or
// streams from nobody; leave a replica that streams from elsewhere (a cascade) alone. The new
// conninfo keeps every key of the old one (user, password, application_name, sslmode, ...)
// except host, hostaddr and port.
RepointDecision decideRepoint(const RepointInput& in);

}  // namespace pgswitch::health
