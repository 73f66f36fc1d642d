// The health decisions as a pure state machine: check outcomes in, Topology snapshots and
// events out. Hysteresis (fall/rise), roles, split brain, fencing and lag live here, with
// no sockets and no clocks (wall time is a parameter), so every rule is unit-tested.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "health/events.h"
#include "health/patroni_view.h"
#include "health/probe_query.h"
#include "health/settings.h"
#include "routing/topology.h"

namespace pgswitch::health {

struct BuilderThresholds {
  int fall = 3;
  int rise = 2;
  uint64_t maxLagBytes = 0;  // 0 = off
  uint64_t maxLagMs = 0;     // 0 = off
};

enum class Health { Unknown, Up, Down };
const char* toString(Health h);

// Everything known about one backend; readable for status displays (SHOW SERVERS).
struct BackendTrack {
  BackendSpec spec;
  Health health = Health::Unknown;  // Unknown until the first check: that one decides alone
  int okStreak = 0;
  int failStreak = 0;
  bool haveSample = false;
  ProbeResult sample;  // the last successful check
  std::string lastError;
  bool fenced = false;  // sticky until attach()
  std::string fenceReason;
  bool disabled = false;
  bool draining = false;
  routing::Role role = routing::Role::Unknown;
  // [patroni]: what the last /cluster said about this backend (patroniMember false: not
  // listed, or no answer yet).
  bool patroniMember = false;
  PatroniRole patroniRole = PatroniRole::Other;
  std::string patroniState;
  bool noLoadBalance = false;  // Patroni tag: no reads (published with weight 0)
  bool noFailover = false;     // Patroni tag, shown only: Patroni decides promotions
  uint64_t lagBytes = 0;
  uint64_t lagMs = 0;
  bool lagExceeded = false;
};

class TopologyBuilder {
 public:
  TopologyBuilder(std::vector<BackendSpec> backends, BuilderThresholds thresholds);

  // The snapshot to use before any check finished: the first backend is the primary, the
  // rest replicas, all up (version 1).
  routing::TopologyPtr initial() const;

  // Feeds the outcome of one check. Returns true when something a router cares about changed
  // (up/down, recovery state, timeline), i.e. a snapshot is worth publishing now rather than
  // at the end of the round. Ignored for a removed backend (BackendSpec::removed), which is
  // published as BackendState::Removed and never claims the primary.
  bool record(int i, const ProbeResult& r);

  // Operator actions. A fenced backend is never routed to until attach(), even if healthy.
  void fence(int i, const std::string& reason);
  void attach(int i);
  void setDisabled(int i, bool on);
  void setDraining(int i, bool on);

  // Planned switchover: every snapshot says writesPaused until the first one whose primary
  // is `resumeWhenPrimary` (that one already says false, so held work goes to the new
  // primary), or until resumeWrites().
  void pauseWrites(int resumeWhenPrimary);
  void resumeWrites();
  bool writesPaused() const { return paused_; }

  // [patroni]: from now on the primary can only be Patroni's leader (once a /cluster answer
  // came; before it, the rules above alone decide). A backend that claims primary without
  // being the leader gets no writes and no reads, and is not fenced: Patroni rewinds it.
  void setPatroniManaged() { patroniManaged_ = true; }
  bool patroniManaged() const { return patroniManaged_; }
  // Applies a /cluster answer. Returns true when the leader, a member's role or a tag changed
  // (worth a snapshot now).
  bool setPatroniView(const PatroniView& v);
  int patroniLeader() const { return patroniLeader_; }
  bool havePatroniView() const { return haveView_; }

  struct Output {
    routing::TopologyPtr topology;
    std::vector<Event> events;  // raised since the previous build, stamped with wallMs
  };
  // Decides roles, fencing, the primary and lag from everything recorded so far.
  Output build(int64_t wallMs);

  size_t size() const { return tracks_.size(); }
  const BackendTrack& track(int i) const { return tracks_[i]; }
  // The highest timeline any (unfenced) backend has reported; a claimant below it is stale.
  uint32_t highestTimeline() const { return highestTimeline_; }

 private:
  bool valid(int i) const { return i >= 0 && i < static_cast<int>(tracks_.size()); }
  void raise(EventType type, int i, std::string detail);
  void measureLag(int primary);

  // When the primary was first seen at each WAL position (its now(), in its samples): a
  // replica misses only WAL written after the last of these at or below its replay
  // position (measureLag). Reset when the primary or its timeline changes.
  struct WalSeen {
    uint64_t lsn;
    int64_t atUs;
  };
  static constexpr size_t kWalHistory = 256;
  std::deque<WalSeen> walHistory_;
  int historyOf_ = -1;
  uint32_t historyTimeline_ = 0;

  std::vector<BackendTrack> tracks_;
  BuilderThresholds th_;
  uint32_t highestTimeline_ = 0;
  uint64_t version_ = 1;
  std::vector<int> lastClaimants_;
  std::vector<Event> pending_;
  bool paused_ = false;
  int resumeWhenPrimary_ = -1;
  bool patroniManaged_ = false;
  bool haveView_ = false;
  int patroniLeader_ = -1;
};

}  // namespace pgswitch::health
