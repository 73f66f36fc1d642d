// The failover statements. Why each step is the way it is:
// - positions are read fresh right before choosing: the health samples may predate the
//   primary's last acknowledged commits (with synchronous replication they must be kept);
// - pg_promote(false) and a 10 ms poll of pg_is_in_recovery(), rather than pg_promote(true),
//   which only looks every 100 ms: the write outage ends as soon as recovery does;
// - switchover catch-up: see catchUp().
#include "health/failover_runner.h"

#include <spdlog/spdlog.h>

#include <charconv>
#include <thread>

#include "health/pg_sync.h"
#include "health/probe_query.h"

namespace pgswitch::health {

const char* toString(OpKind k) {
  switch (k) {
    case OpKind::AutoFailover:
      return "failover";
    case OpKind::Promote:
      return "promote";
    case OpKind::Switchover:
      return "switchover";
  }
  return "?";
}

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr int kPositionTimeoutMs = 2000;  // a replica the checks just saw up answers fast
constexpr auto kPromotePoll = milliseconds(10);
constexpr auto kCatchUpPoll = milliseconds(5);

constexpr const char* kPositionSql =
    "SELECT pg_is_in_recovery(), pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn(),"
    " w.status, w.sender_host, w.sender_port,"
    " (extract(epoch FROM now() - w.last_msg_receipt_time) * 1000)::int8"
    " FROM (SELECT 1) x LEFT JOIN pg_stat_wal_receiver w ON true";

constexpr const char* kUpstreamSql =
    "SELECT current_setting('primary_conninfo'), w.status, w.sender_host, w.sender_port"
    " FROM (SELECT 1) x LEFT JOIN pg_stat_wal_receiver w ON true";

// xmin = xmax: no transaction holds an xid; the flush LSN; who holds one (for the message).
constexpr const char* kSnapshotSql =
    "SELECT pg_snapshot_xmin(s), pg_snapshot_xmax(s), pg_current_wal_flush_lsn(),"
    " (SELECT count(*) FROM pg_stat_activity WHERE backend_xid IS NOT NULL"
    " AND pid <> pg_backend_pid())"
    " FROM pg_current_snapshot() s";

// Autocommit: takes the next xid and writes a record, so that the commit is flushed.
constexpr const char* kMarkerSql =
    "SELECT pg_current_xact_id(), pg_logical_emit_message(true, 'pgswitch', 'switchover')";

int64_t msSince(Clock::time_point t) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - t).count();
}

template <typename T>
bool toNumber(const std::optional<std::string>& s, T& out) {
  if (!s) return false;
  auto [p, ec] = std::from_chars(s->data(), s->data() + s->size(), out);
  return ec == std::errc() && p == s->data() + s->size();
}

uint64_t toLsn(const std::optional<std::string>& s) {
  if (!s) return 0;
  return parseLsn(*s).value_or(0);
}

bool sleepUnless(const std::atomic<bool>& cancel, Clock::duration d) {
  std::this_thread::sleep_for(d);
  return !cancel.load();
}

ReplicaPosition readPosition(const PlanBackend& b, const std::atomic<bool>& cancel, int timeoutMs) {
  ReplicaPosition p;
  p.index = b.index;
  p.name = b.name;
  p.eligible = b.eligible;
  p.excluded = b.excluded;
  p.priority = b.priority;
  auto deadline = Clock::now() + milliseconds(std::min(timeoutMs, kPositionTimeoutMs));
  SyncConn c(cancel);
  if (!c.connect(b.conninfo, deadline)) {
    p.error = c.error();
    return p;
  }
  auto r = c.exec(kPositionSql, deadline);
  if (!r.ok || r.rows.size() != 1) {
    p.error = r.ok ? "no row" : r.error;
    return p;
  }
  p.answered = true;
  p.inRecovery = r.at(0, 0) == std::optional<std::string>("t");
  p.receiveLsn = toLsn(r.at(0, 1));
  p.replayLsn = toLsn(r.at(0, 2));
  p.streaming = r.at(0, 3) == std::optional<std::string>("streaming");
  p.senderHost = r.at(0, 4).value_or("");
  toNumber(r.at(0, 5), p.senderPort);
  if (!toNumber(r.at(0, 6), p.msgAgeMs)) p.msgAgeMs = -1;
  return p;
}

// pg_promote(false), then poll until the candidate has left recovery.
bool promote(const FailoverPlan& plan, const PlanBackend& b, const std::atomic<bool>& cancel,
             std::string& detail) {
  auto t0 = Clock::now();
  SyncConn c(cancel);
  if (!c.connect(b.conninfo, t0 + milliseconds(plan.statementTimeoutMs))) {
    detail = "cannot connect to " + b.name + ": " + c.error();
    return false;
  }
  auto r = c.exec("SELECT pg_promote(false)", t0 + milliseconds(plan.statementTimeoutMs));
  if (!r.ok || r.at() != std::optional<std::string>("t")) {
    detail = "pg_promote() on " + b.name + " failed: " + (r.ok ? "returned false" : r.error);
    return false;
  }
  auto deadline = t0 + milliseconds(plan.promoteTimeoutMs);
  for (;;) {
    r = c.exec("SELECT pg_is_in_recovery()", deadline);
    if (!r.ok) {
      detail = "waiting for " + b.name + " to leave recovery: " + r.error;
      return false;
    }
    if (r.at() == std::optional<std::string>("f")) break;
    if (Clock::now() + kPromotePoll >= deadline || !sleepUnless(cancel, kPromotePoll)) {
      detail = b.name + " still in recovery " + std::to_string(msSince(t0)) +
               " ms after pg_promote() (promote_timeout_ms)";
      return false;
    }
  }
  detail = b.name + " left recovery " + std::to_string(msSince(t0)) + " ms after pg_promote()";
  return true;
}

// Switchover: waits until the candidate has received everything the old primary
// acknowledged. Writes are held by the proxy meanwhile; transactions already running finish.
// Quiescent point B: no transaction holds an xid (snapshot xmin = xmax = N), so every commit
// so far has its commit record in WAL. Our marker (a logical message, so that its commit is
// flushed even when the cluster runs synchronous_commit = off; an xid alone writes nothing
// and commits asynchronously) must get xid N: nobody was given one since B. Its flush covers
// every earlier commit record; the candidate must receive up to that flush LSN. xmin = xmax =
// N + 1 afterwards proves no other transaction committed meanwhile.
bool catchUp(const FailoverPlan& plan, const PlanBackend& cand, const std::atomic<bool>& cancel,
             std::string& detail) {
  auto t0 = Clock::now();
  auto deadline = t0 + milliseconds(plan.catchUpTimeoutMs);
  auto stmt = [&] {
    return std::min(deadline, Clock::now() + milliseconds(plan.statementTimeoutMs));
  };
  SyncConn p(cancel), c(cancel);
  if (!p.connect(plan.oldConninfo, stmt())) {
    detail = "cannot connect to " + plan.oldName + ": " + p.error();
    return false;
  }
  if (!c.connect(cand.conninfo, stmt())) {
    detail = "cannot connect to " + cand.name + ": " + c.error();
    return false;
  }
  auto r = p.exec("SET synchronous_commit = local", stmt());  // durable here, no standby wait
  if (!r.ok) {
    detail = plan.oldName + ": " + r.error;
    return false;
  }
  struct Snap {
    uint64_t xmin = 0, xmax = 0, flush = 0;
    int64_t writers = 0;
  };
  auto snap = [&](Snap& out) {
    r = p.exec(kSnapshotSql, stmt());
    if (!r.ok || !toNumber(r.at(0, 0), out.xmin) || !toNumber(r.at(0, 1), out.xmax) ||
        !toNumber(r.at(0, 3), out.writers)) {
      detail = plan.oldName + ": " + (r.ok ? "unexpected snapshot row" : r.error);
      return false;
    }
    out.flush = toLsn(r.at(0, 2));
    return true;
  };
  std::string why = "no attempt";
  while (!cancel.load() && Clock::now() < deadline) {
    Snap b, m, d;
    if (!snap(b)) return false;
    if (b.xmin != b.xmax) {
      why = std::to_string(b.writers) + " transaction(s) with an xid still open on " + plan.oldName;
      sleepUnless(cancel, kCatchUpPoll);
      continue;
    }
    r = p.exec(kMarkerSql, stmt());
    uint64_t xid = 0;
    if (!r.ok || !toNumber(r.at(), xid)) {
      detail = plan.oldName + ": marker commit failed: " + r.error;
      return false;
    }
    if (!snap(m)) return false;
    if (xid != b.xmax || m.xmin != xid + 1 || m.xmax != xid + 1) {
      why = "writes still arriving on " + plan.oldName;
      sleepUnless(cancel, kCatchUpPoll);
      continue;
    }
    uint64_t received = 0;
    for (;;) {
      auto q = c.exec("SELECT pg_is_in_recovery(), pg_last_wal_receive_lsn()", stmt());
      if (!q.ok) {
        detail = cand.name + ": " + q.error;
        return false;
      }
      if (q.at(0, 0) != std::optional<std::string>("t")) {
        detail = cand.name + " is no longer in recovery";
        return false;
      }
      received = toLsn(q.at(0, 1));
      if (received >= m.flush || Clock::now() >= deadline) break;
      sleepUnless(cancel, kCatchUpPoll);
    }
    if (received < m.flush) {
      why = cand.name + " received " + formatLsn(received) + " of " + formatLsn(m.flush);
      break;
    }
    if (!snap(d)) return false;
    if (d.xmin == xid + 1 && d.xmax == xid + 1) {
      detail = cand.name + " received " + formatLsn(m.flush) + " from " + plan.oldName + " in " +
               std::to_string(msSince(t0)) + " ms";
      return true;
    }
    why = "writes still arriving on " + plan.oldName;
  }
  detail = cancel.load() ? "cancelled"
                         : "not caught up after " + std::to_string(msSince(t0)) + " ms: " + why;
  return false;
}

void repointOthers(const FailoverPlan& plan, const PlanBackend& target, RunnerSink& sink,
                   const std::atomic<bool>& cancel) {
  for (const auto& b : plan.backends) {
    if (!b.upReplica || b.index == target.index || cancel.load()) continue;
    auto deadline = Clock::now() + milliseconds(plan.statementTimeoutMs);
    SyncConn c(cancel);
    if (!c.connect(b.conninfo, deadline)) {
      sink.repointed(b.index, false, "cannot connect: " + c.error());
      continue;
    }
    auto r = c.exec(kUpstreamSql, deadline);
    if (!r.ok || r.rows.size() != 1) {
      sink.repointed(b.index, false, r.ok ? "no row" : r.error);
      continue;
    }
    RepointInput in;
    in.name = b.name;
    in.currentConninfo = r.at(0, 0).value_or("");
    in.streaming = r.at(0, 1) == std::optional<std::string>("streaming");
    in.senderHost = r.at(0, 2).value_or("");
    toNumber(r.at(0, 3), in.senderPort);
    in.oldHost = plan.oldHost;
    in.oldPort = plan.oldPort;
    in.newHost = target.host;
    in.newPort = target.port;
    in.defaultUser = plan.replicationUser;
    RepointDecision d = decideRepoint(in);
    if (d.failed) {
      sink.repointed(b.index, false, d.reason);
      continue;
    }
    if (!d.repoint) {
      spdlog::info("failover: {} left alone: {}", b.name, d.reason);
      continue;
    }
    r = c.exec("ALTER SYSTEM SET primary_conninfo = " + c.literal(d.conninfo), deadline);
    if (r.ok) r = c.exec("SELECT pg_reload_conf()", deadline);
    if (!r.ok) {
      sink.repointed(b.index, false, r.error);
      continue;
    }
    // The conninfo may hold a password: name only where it now streams from.
    sink.repointed(b.index, true,
                   "primary_conninfo now names " + target.name + " (" + target.host + ":" +
                       std::to_string(target.port) + "); it " + d.reason);
  }
}

}  // namespace

void runFailoverPlan(const FailoverPlan& plan, RunnerSink& sink, const std::atomic<bool>& cancel) {
  auto t0 = Clock::now();
  int cand = plan.candidate;
  if (plan.kind == OpKind::AutoFailover) {
    CandidateInput in;
    in.oldPrimaryName = plan.oldName;
    in.oldPrimaryHost = plan.oldHost;
    in.oldPrimaryPort = plan.oldPort;
    in.oldPrimaryLsn = plan.oldPrimaryLsn;
    in.maxLagBytes = plan.maxLagBytes;
    in.refuseIfPromoted = plan.refuseIfPromoted;
    // In parallel: each read is a fresh connection (fork + authentication on the server).
    std::vector<const PlanBackend*> asked;
    for (const auto& b : plan.backends) {
      if (b.upReplica) asked.push_back(&b);
    }
    in.replicas.resize(asked.size());
    std::vector<std::thread> readers;
    for (size_t k = 0; k < asked.size(); ++k) {
      readers.emplace_back(
          [&, k] { in.replicas[k] = readPosition(*asked[k], cancel, plan.statementTimeoutMs); });
    }
    for (auto& t : readers) t.join();
    in.sinceFailureMs = plan.haveFailedAt ? msSince(plan.failedAt) : -1;
    CandidateChoice choice = chooseCandidate(in);
    if (choice.index < 0) {
      sink.refused(choice.refusal, choice.detail);
      return;
    }
    cand = choice.index;
    sink.chosen(cand, choice.detail);
  }
  const PlanBackend* c = nullptr;
  for (const auto& b : plan.backends) {
    if (b.index == cand) c = &b;
  }
  if (c == nullptr) {
    sink.failed("no such candidate");
    return;
  }
  std::string detail;
  if (plan.kind == OpKind::Switchover) {
    if (!catchUp(plan, *c, cancel, detail)) {
      sink.failed(detail);
      return;
    }
    spdlog::info("switchover: {}", detail);
    if (plan.repoint) repointOthers(plan, *c, sink, cancel);
  }
  if (!promote(plan, *c, cancel, detail)) {
    sink.failed(detail);
    return;
  }
  sink.promoted(cand, detail);
  if (plan.repoint && plan.kind != OpKind::Switchover) repointOthers(plan, *c, sink, cancel);
  sink.finished(cand, c->name + " is the new primary, " + std::to_string(msSince(t0)) +
                          " ms after the " + toString(plan.kind) + " started");
}

}  // namespace pgswitch::health
