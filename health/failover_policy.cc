// Candidate choice and re-pointing. See docs/health.md, "Failover".
#include "health/failover_policy.h"

#include <libpq-fe.h>

#include <algorithm>
#include <cstdlib>
#include <memory>

#include "health/probe_query.h"

namespace pgswitch::health {

bool hasTag(const BackendSpec& b, const std::string& tag) {
  return std::find(b.tags.begin(), b.tags.end(), tag) != b.tags.end();
}

const char* toString(Refusal r) {
  switch (r) {
    case Refusal::None:
      return "none";
    case Refusal::NoCandidate:
      return "no_candidate";
    case Refusal::PrimaryAlive:
      return "primary_alive";
    case Refusal::TooFarBehind:
      return "too_far_behind";
    case Refusal::NotCoordinated:
      return "not_coordinated";
    case Refusal::AlreadyPromoted:
      return "already_promoted";
  }
  return "?";
}

CandidateChoice chooseCandidate(const CandidateInput& in) {
  CandidateChoice out;
  uint64_t reference = in.oldPrimaryLsn;
  const ReplicaPosition* best = nullptr;
  std::string skipped;
  auto skip = [&skipped](const ReplicaPosition& r, const std::string& why) {
    if (!skipped.empty()) skipped += ", ";
    skipped += r.name + ": " + why;
  };
  for (const auto& r : in.replicas) {
    if (!r.answered) {
      skip(r, r.error.empty() ? "no answer" : r.error);
      continue;
    }
    if (!r.inRecovery) {
      if (in.refuseIfPromoted) {
        out.detail = r.name + " left recovery since the failover was planned (promoted by " +
                     "another instance?); not promoting a second replica";
        out.refusal = Refusal::AlreadyPromoted;
        return out;
      }
      skip(r, "not in recovery");
      continue;
    }
    reference = std::max(reference, r.position());
    // Liveness: a replica streaming from the old primary that heard from it after pgswitch
    // lost it means the primary runs and only pgswitch cannot reach it.
    if (in.sinceFailureMs >= 0 && r.streaming && r.msgAgeMs >= 0 &&
        r.senderHost == in.oldPrimaryHost && r.senderPort == in.oldPrimaryPort &&
        r.msgAgeMs + kAliveSlackMs < in.sinceFailureMs) {
      out.detail = in.oldPrimaryName + " is alive: " + r.name + " received WAL from it " +
                   std::to_string(r.msgAgeMs) + " ms ago, after pgswitch lost it " +
                   std::to_string(in.sinceFailureMs) + " ms ago";
      out.refusal = Refusal::PrimaryAlive;
      return out;
    }
    if (!r.eligible) {
      skip(r, r.excluded.empty() ? "excluded" : r.excluded);
      continue;
    }
    if (best == nullptr || r.position() > best->position() ||
        (r.position() == best->position() && r.priority > best->priority)) {
      best = &r;
    }
  }
  if (best == nullptr) {
    out.detail = "no replica can be promoted";
    if (!skipped.empty()) out.detail += " (" + skipped + ")";
    out.refusal = Refusal::NoCandidate;
    return out;
  }
  out.lsn = best->position();
  out.lagBytes = reference > out.lsn ? reference - out.lsn : 0;
  if (in.maxLagBytes > 0 && out.lagBytes > in.maxLagBytes) {
    out.detail = "best candidate " + best->name + " at " + formatLsn(out.lsn) + " is " +
                 std::to_string(out.lagBytes) +
                 " bytes behind, over max_failover_lag_bytes=" + std::to_string(in.maxLagBytes);
    out.refusal = Refusal::TooFarBehind;
    return out;
  }
  out.index = best->index;
  out.detail = best->name + " at " + formatLsn(out.lsn) + ", " + std::to_string(out.lagBytes) +
               " bytes behind";
  if (in.oldPrimaryLsn == 0) out.detail += " (old primary's LSN unknown)";
  if (!skipped.empty()) out.detail += "; not chosen: " + skipped;
  return out;
}

namespace {

struct ConninfoFree {
  void operator()(PQconninfoOption* o) const { PQconninfoFree(o); }
};

}  // namespace

RepointDecision decideRepoint(const RepointInput& in) {
  RepointDecision d;
  std::string host, port, user;
  std::vector<std::pair<std::string, std::string>> keep;
  if (!in.currentConninfo.empty()) {
    char* err = nullptr;
    std::unique_ptr<PQconninfoOption, ConninfoFree> opts(
        PQconninfoParse(in.currentConninfo.c_str(), &err));
    if (!opts) {
      d.failed = true;
      d.reason = "cannot parse its primary_conninfo: " + std::string(err ? err : "out of memory");
      if (err) PQfreemem(err);
      return d;
    }
    for (PQconninfoOption* o = opts.get(); o->keyword != nullptr; ++o) {
      if (o->val == nullptr) continue;
      std::string k = o->keyword;
      if (k == "host") {
        host = o->val;
      } else if (k == "port") {
        port = o->val;
      } else if (k != "hostaddr") {
        if (k == "user") user = o->val;
        keep.emplace_back(k, o->val);
      }
    }
  }
  const int confPort = port.empty() ? 5432 : std::atoi(port.c_str());
  const std::string upstream = host + ":" + (port.empty() ? "5432" : port);
  if (host == in.newHost && confPort == in.newPort) {
    d.reason = "already streams from " + in.newHost + ":" + std::to_string(in.newPort);
    return d;
  }
  const bool namesOld = host == in.oldHost && confPort == in.oldPort;
  const bool sendsOld = in.streaming && in.senderHost == in.oldHost && in.senderPort == in.oldPort;
  if (!namesOld && !sendsOld && in.streaming) {
    d.reason =
        "streams from " +
        (in.senderHost.empty() ? upstream : in.senderHost + ":" + std::to_string(in.senderPort));
    return d;
  }
  d.repoint = true;
  d.reason = namesOld || sendsOld ? "followed the old primary" : "was not streaming";
  std::string out =
      "host=" + quoteConnValue(in.newHost) + " port=" + quoteConnValue(std::to_string(in.newPort));
  if (user.empty() && !in.defaultUser.empty()) out += " user=" + quoteConnValue(in.defaultUser);
  bool haveAppName = false;
  for (auto& [k, v] : keep) {
    out += " " + k + "=" + quoteConnValue(v);
    haveAppName = haveAppName || k == "application_name";
  }
  // The name a synchronous_standby_names list would use for it.
  if (!haveAppName && !in.name.empty()) out += " application_name=" + quoteConnValue(in.name);
  d.conninfo = std::move(out);
  return d;
}

}  // namespace pgswitch::health
