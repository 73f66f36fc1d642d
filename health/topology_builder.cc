// Health decisions: hysteresis, roles, split brain and fencing, lag. See docs/health.md.
#include "health/topology_builder.h"

#include <algorithm>
#include <iterator>

#include "health/static_topology.h"

namespace pgswitch::health {

const char* toString(Health h) {
  switch (h) {
    case Health::Unknown:
      return "unknown";
    case Health::Up:
      return "up";
    case Health::Down:
      return "down";
  }
  return "?";
}

TopologyBuilder::TopologyBuilder(std::vector<BackendSpec> backends, BuilderThresholds thresholds)
    : th_(thresholds) {
  th_.fall = std::max(1, th_.fall);
  th_.rise = std::max(1, th_.rise);
  tracks_.reserve(backends.size());
  for (auto& b : backends) {
    BackendTrack t;
    t.spec = std::move(b);
    tracks_.push_back(std::move(t));
  }
}

routing::TopologyPtr TopologyBuilder::initial() const {
  std::vector<routing::BackendInfo> infos;
  for (auto& t : tracks_) {
    routing::BackendInfo b;
    b.name = t.spec.name;
    b.host = t.spec.host;
    b.port = t.spec.port;
    b.weight = t.spec.weight;
    b.tags = t.spec.tags;
    if (t.spec.removed) b.state = routing::BackendState::Removed;
    infos.push_back(std::move(b));
  }
  return staticTopology(std::move(infos));
}

void TopologyBuilder::raise(EventType type, int i, std::string detail) {
  Event e;
  e.type = type;
  e.backend = i;
  if (valid(i)) {
    const auto& t = tracks_[i];
    e.name = t.spec.name;
    e.host = t.spec.host;
    e.port = t.spec.port;
    e.role = routing::toString(t.role);
  }
  e.detail = std::move(detail);
  pending_.push_back(std::move(e));
}

bool TopologyBuilder::record(int i, const ProbeResult& r) {
  if (!valid(i) || tracks_[i].spec.removed) return false;
  auto& t = tracks_[i];
  bool changed = false;
  if (r.ok) {
    ++t.okStreak;
    t.failStreak = 0;
    changed =
        !t.haveSample || t.sample.inRecovery != r.inRecovery || t.sample.timeline != r.timeline;
    t.sample = r;
    t.haveSample = true;
    if (t.health == Health::Unknown) {
      t.health = Health::Up;
      changed = true;
    } else if (t.health == Health::Down && t.okStreak >= th_.rise) {
      t.health = Health::Up;
      changed = true;
      raise(EventType::BackendUp, i, std::to_string(t.okStreak) + " consecutive successful checks");
    }
  } else {
    ++t.failStreak;
    t.okStreak = 0;
    t.lastError = r.error;
    if (t.health == Health::Unknown) {
      t.health = Health::Down;
      changed = true;
      raise(EventType::BackendDown, i, "first check failed: " + r.error);
    } else if (t.health == Health::Up && t.failStreak >= th_.fall) {
      t.health = Health::Down;
      changed = true;
      raise(EventType::BackendDown, i,
            std::to_string(t.failStreak) + " consecutive failed checks: " + r.error);
    }
  }
  return changed;
}

void TopologyBuilder::fence(int i, const std::string& reason) {
  if (!valid(i) || tracks_[i].fenced) return;
  tracks_[i].fenced = true;
  tracks_[i].fenceReason = reason;
  raise(EventType::Fenced, i, reason);
}

void TopologyBuilder::attach(int i) {
  if (!valid(i)) return;
  tracks_[i].fenced = false;
  tracks_[i].fenceReason.clear();
}

void TopologyBuilder::setDisabled(int i, bool on) {
  if (valid(i)) tracks_[i].disabled = on;
}

void TopologyBuilder::setDraining(int i, bool on) {
  if (valid(i)) tracks_[i].draining = on;
}

void TopologyBuilder::pauseWrites(int resumeWhenPrimary) {
  paused_ = true;
  resumeWhenPrimary_ = resumeWhenPrimary;
}

void TopologyBuilder::resumeWrites() {
  paused_ = false;
  resumeWhenPrimary_ = -1;
}

bool TopologyBuilder::setPatroniView(const PatroniView& v) {
  bool changed = !haveView_ || v.leader != patroniLeader_;
  haveView_ = true;
  patroniLeader_ = v.leader;
  for (size_t i = 0; i < tracks_.size(); ++i) {
    auto& t = tracks_[i];
    const int m = i < v.memberOf.size() ? v.memberOf[i] : -1;
    const PatroniMember* p = m >= 0 ? &v.members[m] : nullptr;
    PatroniRole role = p ? p->role : PatroniRole::Other;
    bool nlb = p && p->noLoadBalance;
    changed |= t.patroniMember != (p != nullptr) || t.patroniRole != role || t.noLoadBalance != nlb;
    t.patroniMember = p != nullptr;
    t.patroniRole = role;
    t.patroniState = p ? p->state : std::string();
    t.noLoadBalance = nlb;
    t.noFailover = p && p->noFailover;
  }
  return changed;
}

namespace {

std::string claimantList(const std::vector<BackendTrack>& tracks, const std::vector<int>& ids) {
  std::string s;
  for (int i : ids) {
    if (!s.empty()) s += ", ";
    s += tracks[i].spec.name + " (timeline " + std::to_string(tracks[i].sample.timeline) + ")";
  }
  return s;
}

}  // namespace

// lagMs bounds from above how long ago the oldest write the replica has not replayed was
// made: everything missing was written after the primary's last check at or below the
// replica's replay position (from the history of its checks), and after the newest commit
// the replica replayed (pg_last_xact_replay_timestamp()). The later of the two decides, both
// on the primary's clock. So a replica that only misses a write made after a quiet spell is
// at most about one check period behind, not as far as the quiet spell was long; under a
// steady write load the replayed commit is the closer bound, and a replica delayed on
// purpose shows its delay. An upper bound, because strong reads wait only for a replica that
// may catch up within max_wait_ms.
void TopologyBuilder::measureLag(int primary) {
  auto& p = tracks_[primary];
  const uint64_t primaryLsn = p.sample.currentLsn;
  if (historyOf_ != primary || historyTimeline_ != p.sample.timeline) {
    walHistory_.clear();
    historyOf_ = primary;
    historyTimeline_ = p.sample.timeline;
  }
  if (walHistory_.empty() || primaryLsn > walHistory_.back().lsn) {
    walHistory_.push_back({primaryLsn, p.sample.nowUs});
    if (walHistory_.size() > kWalHistory) walHistory_.pop_front();
  }
  p.lagBytes = 0;
  p.lagMs = 0;
  for (int i = 0; i < static_cast<int>(tracks_.size()); ++i) {
    auto& t = tracks_[i];
    if (i == primary || !t.haveSample || !t.sample.inRecovery) continue;
    const uint64_t replay = t.sample.replayLsn;
    t.lagBytes = primaryLsn > replay ? primaryLsn - replay : 0;
    t.lagMs = 0;
    if (replay >= primaryLsn) continue;
    auto past = std::upper_bound(walHistory_.begin(), walHistory_.end(), replay,
                                 [](uint64_t lsn, const WalSeen& w) { return lsn < w.lsn; });
    int64_t since = INT64_MIN;  // the missing WAL was written after this (µs, primary clock)
    if (past != walHistory_.begin()) since = std::prev(past)->atUs;
    if (t.sample.hasReplayTimestamp) since = std::max(since, t.sample.lastReplayUs);
    if (since == INT64_MIN) continue;  // nothing to measure against yet: lagBytes tells
    const int64_t d = (p.sample.nowUs - since) / 1000;
    t.lagMs = d > 0 ? static_cast<uint64_t>(d) : 0;
  }
}

TopologyBuilder::Output TopologyBuilder::build(int64_t wallMs) {
  const int n = static_cast<int>(tracks_.size());

  // A backend's timeline can only be as high as some primary's has been, so the highest one
  // reported anywhere (replicas included) bounds what a legitimate primary claims.
  for (auto& t : tracks_) {
    if (t.haveSample && !t.fenced) highestTimeline_ = std::max(highestTimeline_, t.sample.timeline);
  }

  for (int i = 0; i < n; ++i) {
    auto& t = tracks_[i];
    if (!t.haveSample) continue;
    routing::Role role = t.sample.inRecovery ? routing::Role::Replica : routing::Role::Primary;
    if (role != t.role) {
      routing::Role old = t.role;
      t.role = role;
      if (old != routing::Role::Unknown) {
        raise(EventType::RoleChanged, i,
              std::string(routing::toString(old)) + " -> " + routing::toString(role) +
                  ", timeline " + std::to_string(t.sample.timeline));
      }
    }
  }

  // Claimants: reachable, unfenced backends that are not in recovery. A removed one never is:
  // after a rename its old name points at the same server as the new one, and counting both
  // would be a split brain with itself.
  // Under Patroni only its leader may claim: Patroni holds the leader key, so a second
  // backend out of recovery is one it is demoting or rewinding (or a stale sample of the old
  // leader during a switchover), never a primary to write to.
  const bool patroniGate = patroniManaged_ && haveView_;
  std::vector<int> claimants;
  for (int i = 0; i < n; ++i) {
    const auto& t = tracks_[i];
    if (t.spec.removed) continue;
    if (patroniGate && i != patroniLeader_) continue;
    if (t.health == Health::Up && t.haveSample && !t.fenced && !t.sample.inRecovery) {
      claimants.push_back(i);
    }
  }
  std::vector<int> winners;
  std::vector<int> losers;
  for (int i : claimants) {
    // Patroni's leader is never fenced for its timeline: the gate already keeps every other
    // backend from writes, and Patroni, not a sample, decides who leads.
    bool stale = !patroniGate && tracks_[i].sample.timeline < highestTimeline_;
    (stale ? losers : winners).push_back(i);
  }
  if (claimants.size() >= 2 && claimants != lastClaimants_) {
    std::string detail = "primaries claimed by " + claimantList(tracks_, claimants);
    int subject = claimants.front();
    if (winners.size() == 1) {
      detail += "; " + tracks_[winners[0]].spec.name + " wins on the higher timeline";
      subject = winners[0];
    } else if (winners.size() >= 2) {
      detail += "; equal timelines, writes refused until resolved";
    } else {
      detail += "; all below timeline " + std::to_string(highestTimeline_);
    }
    raise(EventType::SplitBrain, subject, detail);
  }
  lastClaimants_ = claimants;
  for (int i : losers) {
    fence(i, "claims primary on timeline " + std::to_string(tracks_[i].sample.timeline) +
                 ", below timeline " + std::to_string(highestTimeline_));
  }

  auto topo = std::make_shared<routing::Topology>();
  topo->version = ++version_;
  topo->primary = winners.size() == 1 ? winners[0] : -1;
  topo->writesRefused = winners.size() >= 2;
  if (paused_ && resumeWhenPrimary_ >= 0 && topo->primary == resumeWhenPrimary_) resumeWrites();
  topo->writesPaused = paused_;
  // Removed backends are never checked, so they stay Unknown and must not hold this back.
  topo->settled = std::none_of(tracks_.begin(), tracks_.end(), [](const BackendTrack& t) {
    return !t.spec.removed && t.health == Health::Unknown;
  });

  if (topo->primary >= 0) measureLag(topo->primary);
  // else: no primary to measure against; lag keeps its last known value

  for (int i = 0; i < n; ++i) {
    auto& t = tracks_[i];
    if (t.health != Health::Up || t.fenced || t.role != routing::Role::Replica) continue;
    bool over = (th_.maxLagBytes > 0 && t.lagBytes > th_.maxLagBytes) ||
                (th_.maxLagMs > 0 && t.lagMs > th_.maxLagMs);
    if (over && !t.lagExceeded) {
      raise(EventType::LagExceeded, i,
            "lag " + std::to_string(t.lagBytes) + " bytes / " + std::to_string(t.lagMs) +
                " ms exceeds max_lag_bytes=" + std::to_string(th_.maxLagBytes) +
                " max_lag_ms=" + std::to_string(th_.maxLagMs));
    }
    t.lagExceeded = over;
  }

  topo->backends.reserve(n);
  for (int i = 0; i < n; ++i) {
    const auto& t = tracks_[i];
    routing::BackendInfo b;
    b.name = t.spec.name;
    b.host = t.spec.host;
    b.port = t.spec.port;
    // Patroni's noloadbalance: no reads, the way weight 0 already means it to the router.
    b.weight = t.noLoadBalance ? 0 : t.spec.weight;
    b.tags = t.spec.tags;
    b.role = t.role;
    if (t.spec.removed) {
      b.state = routing::BackendState::Removed;
    } else if (t.fenced) {
      b.state = routing::BackendState::Fenced;
    } else if (t.disabled) {
      b.state = routing::BackendState::Disabled;
    } else if (t.health != Health::Up) {
      b.state = routing::BackendState::Down;
    } else if (t.draining) {
      b.state = routing::BackendState::Draining;
    } else {
      b.state = routing::BackendState::Up;
    }
    if (t.haveSample) {
      b.timeline = t.sample.timeline;
      b.replayLsn = t.sample.inRecovery ? t.sample.replayLsn : t.sample.currentLsn;
    }
    b.lagBytes = t.lagBytes;
    b.lagMs = t.lagMs;
    topo->backends.push_back(std::move(b));
  }

  Output out;
  out.topology = std::move(topo);
  out.events = std::move(pending_);
  pending_.clear();
  for (auto& e : out.events) e.timeMs = wallMs;
  return out;
}

}  // namespace pgswitch::health
