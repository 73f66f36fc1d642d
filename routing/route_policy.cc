// Routing policy. Replica choice is weighted "power of two choices": two candidates drawn
// with probability proportional to weight, the one with less outstanding work per unit of
// weight wins. Drawing by weight keeps the long-run split at the weights when replicas are
// equally fast; comparing load per weight steers away from a replica that has fallen behind
// (slow disk, long query) without ever starving it.
#include "routing/route_policy.h"

#include <algorithm>
#include <array>

namespace pgswitch::routing {

Target targetFor(const Classification& c, bool sessionReadOnly) {
  if (c.write || c.hint == Classification::Hint::Primary) return Target::Primary;
  // Session state that pins the client to its server must be created on the primary, or the
  // client's later writes would land on a replica.
  if (c.createsTempTable || c.listen || c.sessionAdvisoryLock || c.withHoldCursor ||
      c.sqlPrepare) {
    return Target::Primary;
  }
  switch (c.kind) {
    case StatementKind::Read:
    case StatementKind::TxnBeginReadOnly:
      return Target::Replica;
    case StatementKind::TxnBegin:
      return sessionReadOnly || c.hint == Classification::Hint::Replica ? Target::Replica
                                                                         : Target::Primary;
    case StatementKind::Other:
      // Empty text, DISCARD, CLOSE, ...: harmless anywhere, but only a hint moves them.
      return c.hint == Classification::Hint::Replica ? Target::Replica : Target::Primary;
    case StatementKind::Write:
    case StatementKind::TxnEnd:
    case StatementKind::SetTxnReadOnly:
    case StatementKind::SessionSet:
    case StatementKind::LocalSet:
      return Target::Primary;
  }
  return Target::Primary;
}

Target sessionReadsTargetFor(const Classification& c, bool sessionReadOnly) {
  if (c.callsSetConfig || c.kind == StatementKind::TxnBegin ||
      c.kind == StatementKind::TxnBeginReadOnly) {
    return Target::Primary;
  }
  return targetFor(c, sessionReadOnly);
}

namespace {

bool hasTag(const BackendInfo& b, std::string_view tag) {
  return std::find(b.tags.begin(), b.tags.end(), tag) != b.tags.end();
}

uint64_t mix(uint64_t x) {  // splitmix64 finaliser: two independent draws from one value
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace

RoutePick pickBackend(const Topology& t, const RoutePolicy& p, const RouteRequest& r,
                      std::span<const int> outstanding, uint64_t random) {
  RoutePick pick;
  const bool primaryOk = !t.writesRefused && t.usable(t.primary);
  auto toPrimary = [&](bool fellBack) {
    if (!primaryOk || (t.writesPaused && !fellBack)) return pick;  // Hold
    pick.outcome = RoutePick::Outcome::Backend;
    pick.index = t.primary;
    pick.fellBack = fellBack;
    return pick;
  };
  if (r.target == Target::Primary) return toPrimary(false);

  // Candidates: usable replicas within the lag limits, carrying the tag. A replica not known
  // to have replayed minReplayLsn is a candidate only when it may have (close behind at the
  // last health check) and the caller can wait for it: "unsure".
  constexpr size_t kMax = 64;
  std::array<int, kMax> cand{};
  std::array<bool, kMax> unsure{};
  size_t n = 0;
  uint64_t totalWeight = 0;
  for (size_t i = 0; i < t.backends.size() && n < kMax; ++i) {
    const BackendInfo& b = t.backends[i];
    if (static_cast<int>(i) == t.primary || b.role != Role::Replica || !t.usable(int(i))) continue;
    if (b.weight <= 0 || static_cast<int>(i) == r.avoid) continue;
    if (p.maxLagBytes && b.lagBytes > p.maxLagBytes) continue;
    if (p.maxLagMs && b.lagMs > p.maxLagMs) continue;
    if (!r.tag.empty() && !hasTag(b, r.tag)) continue;
    bool behind = false;
    if (r.minReplayLsn) {
      uint64_t replay = b.replayLsn;
      if (i < r.learnedReplayLsn.size()) replay = std::max(replay, r.learnedReplayLsn[i]);
      if (replay < r.minReplayLsn) {
        if (p.verifyMaxLagMs < 0 || b.lagMs > uint64_t(p.verifyMaxLagMs) ||
            r.minReplayLsn == UINT64_MAX)
          continue;
        behind = true;
      }
    }
    unsure[n] = behind;
    cand[n++] = static_cast<int>(i);
    totalWeight += static_cast<uint64_t>(b.weight);
  }
  // A read sent to a replica not known to be far enough along waits for it; while another
  // is known to be there, that one serves (the replay watcher learns the other's position
  // without reads having to go there: routing.consistency in docs/routing.md).
  size_t sure = 0;
  for (size_t k = 0; k < n; ++k) sure += !unsure[k];
  if (sure > 0 && sure < n) {
    size_t m = 0;
    totalWeight = 0;
    for (size_t k = 0; k < n; ++k) {
      if (unsure[k]) continue;
      cand[m] = cand[k];
      unsure[m++] = false;
      totalWeight += static_cast<uint64_t>(t.backends[cand[k]].weight);
    }
    n = m;
  }
  if (n == 0) {
    // A tagged primary serves its tag's reads before falling back, e.g. a reporting tag on
    // a primary-only cluster.
    if (p.fallback == Fallback::Error &&
        !(primaryOk && !r.tag.empty() && hasTag(t.backends[t.primary], r.tag))) {
      pick.outcome = RoutePick::Outcome::Refuse;
      return pick;
    }
    return toPrimary(true);
  }
  auto draw = [&](uint64_t x) {  // a position in cand
    uint64_t w = x % totalWeight;
    for (size_t k = 0; k < n; ++k) {
      uint64_t bw = static_cast<uint64_t>(t.backends[cand[k]].weight);
      if (w < bw) return k;
      w -= bw;
    }
    return n - 1;
  };
  size_t a = draw(mix(random));
  size_t b = draw(mix(random ^ 0x5851f42d4c957f2dull));
  auto load = [&](size_t k) {
    int i = cand[k];
    int o = i < static_cast<int>(outstanding.size()) ? outstanding[i] : 0;
    return static_cast<double>(o) / t.backends[i].weight;
  };
  size_t k = load(b) < load(a) ? b : a;
  pick.outcome = RoutePick::Outcome::Backend;
  pick.index = cand[k];
  pick.verify = unsure[k];
  return pick;
}

}  // namespace pgswitch::routing
