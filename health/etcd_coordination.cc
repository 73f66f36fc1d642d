// One round per period, one call at a time: renew (or grant) the lease, campaign for the
// leader key (the same transaction tells a holder it still holds it), read the decision. The
// promotion gate counts the lease's age from when the last successful renewal was *sent*:
// etcd restarted its TTL no earlier than that, so a holder never believes in a lease etcd has
// already expired, whatever happened to the answers since.
#include "health/etcd_coordination.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace pgswitch::health {

namespace {

std::string trimSlash(std::string s) {
  while (!s.empty() && s.back() == '/') s.pop_back();
  return s;
}

std::string describe(const etcd::Decision& d) {
  std::string s = "seq " + std::to_string(d.seq) + ": primary " + d.primary + " (" + d.host + ":" +
                  std::to_string(d.port);
  if (d.timeline) s += ", timeline " + std::to_string(d.timeline);
  s += ")";
  if (!d.fenced.empty()) s += ", " + d.fenced + " fenced";
  return s + ", decided by " + d.by;
}

}  // namespace

EtcdCoordination::EtcdCoordination(uv_loop_t* loop, CoordinationSettings settings, Host& host)
    : loop_(loop),
      s_(std::move(settings)),
      host_(host),
      http_(std::make_unique<HttpClient>(loop)),
      timer_(loop, this) {
  for (auto& u : s_.endpoints) u = trimSlash(u);
  s_.prefix = trimSlash(s_.prefix.empty() ? "/pgswitch/default" : s_.prefix);
  s_.leaseTtlMs = std::max(1000, s_.leaseTtlMs);
  s_.timeoutMs = std::max(1, s_.timeoutMs);
  s_.periodMs = std::max(10, s_.periodMs);
  leaderKey_ = s_.prefix + "/leader";
  decisionKey_ = s_.prefix + "/decision";
}

EtcdCoordination::~EtcdCoordination() { close(); }

void EtcdCoordination::start() {
  spdlog::info("coordination: instance {} campaigns for {} on {} etcd endpoint(s), lease {} ms",
               s_.name, leaderKey_, s_.endpoints.size(), s_.leaseTtlMs);
  timer_.start(&EtcdCoordination::onTimer, 0, static_cast<uint64_t>(s_.periodMs));
}

void EtcdCoordination::close() {
  if (closed_) return;
  closed_ = true;
  timer_.close();
  http_->close();
}

void EtcdCoordination::onTimer(uv_timer_t* t) noexcept {
  static_cast<EtcdCoordination*>(t->data)->round();
}

Event EtcdCoordination::event(EventType t, std::string detail) const {
  Event e;
  e.type = t;
  e.detail = std::move(detail);
  return e;
}

std::string EtcdCoordination::blocker() const {
  if (!leader_) {
    if (unreachable_) return "coordination: etcd unreachable (" + lastError_ + ")";
    return "coordination: not the coordination leader (leader: " +
           (holder_.empty() ? std::string("none yet") : holder_) + ")";
  }
  const uint64_t age = now() - renewedAt_;
  if (age >= static_cast<uint64_t>(s_.leaseTtlMs)) {
    return "coordination: etcd unreachable, lease not renewed for " + std::to_string(age) +
           " ms (" + lastError_ + ")";
  }
  return "";
}

void EtcdCoordination::setLeader(bool on, const std::string& detail) {
  if (on == leader_) return;
  leader_ = on;
  host_.report(
      event(on ? EventType::CoordinationLeader : EventType::CoordinationLost,
            s_.name + (on ? " holds " : " no longer holds ") + leaderKey_ + ": " + detail));
}

void EtcdCoordination::round() {
  if (closed_) return;
  // Checked every period, even while a round hangs on a timeout.
  const uint64_t age = now() - renewedAt_;
  if (leader_ && age >= static_cast<uint64_t>(s_.leaseTtlMs)) {
    setLeader(false, "lease not renewed for " + std::to_string(age) + " ms (" + lastError_ +
                         "); no promotion from here");
  }
  if (busy_) return;
  busy_ = true;
  keepLease();
}

void EtcdCoordination::keepLease() {
  const uint64_t sent = now();
  if (lease_ == 0) {
    const int ttlS = (s_.leaseTtlMs + 999) / 1000;
    call(etcd::leaseGrant(ttlS),
         [this, sent](std::optional<std::string> body, const std::string& why) {
           std::string err = why;
           auto id = body ? etcd::parseLeaseGrant(*body, &err) : std::nullopt;
           if (!id) return endRound(false, "lease grant: " + err);
           lease_ = *id;
           renewedAt_ = sent;
           campaign();
         });
    return;
  }
  call(etcd::leaseKeepAlive(lease_),
       [this, sent](std::optional<std::string> body, const std::string& why) {
         std::string err = why;
         auto ttl = body ? etcd::parseKeepAlive(*body, &err) : std::nullopt;
         if (!ttl) return endRound(false, "lease keep-alive: " + err);
         if (*ttl <= 0) {
           lease_ = 0;
           setLeader(false, "its lease expired");
           return keepLease();  // a new lease at once
         }
         renewedAt_ = sent;
         campaign();
       });
}

void EtcdCoordination::campaign() {
  call(etcd::campaign(leaderKey_, s_.name, lease_),
       [this](std::optional<std::string> body, const std::string& why) {
         std::string err = why;
         auto a = body ? etcd::parseCampaign(*body, &err) : std::nullopt;
         if (!a) {
           // Our lease vanished between keep-alive and campaign: a new one next round.
           if (err.find("lease not found") != std::string::npos) lease_ = 0;
           return endRound(false, "campaign: " + err);
         }
         const bool mine = a->won || (!a->holder.key.empty() && a->holder.lease == lease_);
         holder_ = mine ? s_.name : a->holder.value;
         setLeader(mine, mine ? "lease " + std::to_string(lease_) + " (ttl " +
                                    std::to_string(s_.leaseTtlMs) + " ms)"
                              : "held by " + (holder_.empty() ? std::string("nobody") : holder_));
         readDecision();
       });
}

void EtcdCoordination::readDecision() {
  call(etcd::range(decisionKey_), [this](std::optional<std::string> body, const std::string& why) {
    std::string err = why;
    auto kv = body ? etcd::parseRange(*body, &err) : std::nullopt;
    if (!kv) return endRound(false, "reading the decision: " + err);
    const bool news = haveBaseline_ && !kv->key.empty() && kv->modRevision > seenRevision_;
    if (!haveBaseline_ || news) {
      // The decision present when this instance starts is history: its own checks show
      // what holds now. Only later ones are adopted.
      seenRevision_ = kv->modRevision;
      std::optional<etcd::Decision> d;
      if (!kv->key.empty()) d = etcd::parseDecision(kv->value, &err);
      if (!kv->key.empty() && !d) spdlog::warn("coordination: {}: {}", decisionKey_, err);
      if (d) {
        lastSeq_ = std::max(lastSeq_, d->seq);
        last_ = d;
        if (news && d->by != s_.name) host_.onDecision(*d);
      }
      haveBaseline_ = true;
    }
    endRound(true, "");
  });
}

void EtcdCoordination::endRound(bool ok, const std::string& why) {
  busy_ = false;
  if (!ok) {
    lastError_ = why;
    if (!unreachable_) {
      unreachable_ = true;
      host_.report(event(EventType::EtcdUnreachable,
                         "coordination: etcd unreachable (" + why +
                             "); this instance does not promote until etcd answers"));
    }
    return;
  }
  if (unreachable_) {
    unreachable_ = false;
    host_.report(event(EventType::EtcdReachable, s_.endpoints[cur_] + " answered"));
  }
  sendPending();
}

void EtcdCoordination::writeDecision(etcd::Decision d) {
  d.by = s_.name;
  pending_ = std::move(d);
  sendPending();
}

void EtcdCoordination::sendPending() {
  if (!pending_ || writing_ || closed_) return;
  if (!leader_) {
    spdlog::warn("coordination: decision ({}) not written: this instance is no longer the leader",
                 describe(*pending_));
    pending_.reset();
    return;
  }
  etcd::Decision d = *pending_;
  d.seq = lastSeq_ + 1;
  writing_ = true;
  call(etcd::putIfHolder(leaderKey_, lease_, decisionKey_, etcd::toJson(d)),
       [this, d](std::optional<std::string> body, const std::string& why) {
         writing_ = false;
         std::string err = why;
         auto ok = body ? etcd::parseTxnSucceeded(*body, &err) : std::nullopt;
         if (!ok) {
           spdlog::warn("coordination: writing the decision failed ({}); retried next round", err);
           return;
         }
         pending_.reset();
         if (!*ok) {
           spdlog::warn("coordination: decision ({}) not written: {} is not held by lease {}",
                        describe(d), leaderKey_, lease_);
           return;
         }
         lastSeq_ = d.seq;
         last_ = d;
         host_.report(event(EventType::DecisionWritten, describe(d)));
       });
}

void EtcdCoordination::call(etcd::Call c, Answer done, size_t attempt) {
  HttpRequest req;
  const std::string url = s_.endpoints[cur_] + c.path;
  req.url = url;
  req.method = "POST";
  req.body = c.body;
  req.timeoutMs = s_.timeoutMs;
  http_->send(std::move(req), [this, c = std::move(c), done = std::move(done), attempt,
                               url](HttpResponse r) mutable {
    if (closed_) return;
    // An HTTP answer from etcd (even a 4xx with its error) is etcd speaking; only a transport
    // failure or a 5xx makes the next endpoint be tried.
    if (r.ok && r.status < 500) return done(std::move(r.body), "");
    std::string why = url + ": " + (r.ok ? "HTTP " + std::to_string(r.status) : r.error);
    if (attempt + 1 < s_.endpoints.size()) {
      cur_ = (cur_ + 1) % s_.endpoints.size();
      return call(std::move(c), std::move(done), attempt + 1);
    }
    done(std::nullopt, why);
  });
}

}  // namespace pgswitch::health
