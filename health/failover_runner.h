// The statements of a failover, a PROMOTE or a switchover, run in order on a short-lived
// helper thread so the health loop never waits on them: read the replicas' positions and
// choose (automatic failover), wait for the candidate to catch up with writes held
// (switchover), pg_promote() and poll until recovery ends, re-point the other replicas.
// Progress goes back through a RunnerSink; the plan is a value, nothing is shared.
#pragma once

#include <atomic>
#include <chrono>
#include <string>
#include <vector>

#include "health/failover_policy.h"

namespace pgswitch::health {

enum class OpKind { AutoFailover, Promote, Switchover };
const char* toString(OpKind k);

struct PlanBackend {
  int index = -1;
  std::string name;
  std::string host;
  int port = 0;
  std::string conninfo;    // as the failover user
  bool upReplica = false;  // up, unfenced, in recovery when planned: asked, maybe re-pointed
  bool eligible = false;   // may be chosen by an automatic failover
  std::string excluded;    // why not
  int priority = 0;
};

struct FailoverPlan {
  using Clock = std::chrono::steady_clock;
  uint64_t id = 0;
  OpKind kind = OpKind::AutoFailover;
  int oldPrimary = -1;  // -1: none known
  std::string oldName, oldHost, oldConninfo;
  int oldPort = 0;
  uint64_t oldPrimaryLsn = 0;         // its last current LSN seen by the health checks
  int candidate = -1;                 // named by PROMOTE / SWITCHOVER; -1: choose
  std::vector<PlanBackend> backends;  // all but the old primary
  bool haveFailedAt = false;
  Clock::time_point failedAt;  // end of the first failed check of the old primary
  uint64_t maxLagBytes = 0;
  bool repoint = false;
  std::string replicationUser;
  int promoteTimeoutMs = 10000;
  int statementTimeoutMs = 5000;
  int catchUpTimeoutMs = 10000;   // switchover
  bool refuseIfPromoted = false;  // CandidateInput::refuseIfPromoted ([coordination])
};

// Called on the helper thread, in this order: chosen (automatic only), promoted, repointed*
// and then exactly one of refused / failed / finished, which ends the run. Switchovers
// re-point before promoting (the others then follow the candidate through its promotion
// and never see WAL the old primary wrote after it).
class RunnerSink {
 public:
  virtual ~RunnerSink() = default;
  virtual void chosen(int candidate, std::string detail) = 0;
  virtual void refused(Refusal why, std::string detail) = 0;
  virtual void failed(std::string detail) = 0;
  virtual void promoted(int candidate, std::string detail) = 0;
  virtual void repointed(int index, bool ok, std::string detail) = 0;
  virtual void finished(int candidate, std::string detail) = 0;
};

void runFailoverPlan(const FailoverPlan& plan, RunnerSink& sink, const std::atomic<bool>& cancel);

}  // namespace pgswitch::health
