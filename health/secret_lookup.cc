// One thread answers lookups in arrival order, several waiters of one (database, user) with
// one query. Queries go to the primary: a role just created there may not have reached a
// replica yet. A connection per database is kept while lookups for it keep arriving and
// closed when the queue runs dry, so a burst of new users costs one login of the auth user.
#include "health/secret_lookup.h"

#include <spdlog/spdlog.h>

#include "health/pg_sync.h"
#include "health/probe_query.h"

namespace pgswitch::health {

SecretAnswer secretFromRows(const std::vector<std::vector<std::optional<std::string>>>& rows) {
  SecretAnswer a;
  if (rows.empty()) {
    a.kind = SecretAnswer::Kind::NoPassword;
    return a;
  }
  if (rows.size() > 1) {
    a.error = "auth.query returned more than one row";
    return a;
  }
  if (rows[0].size() < 2) {
    a.error = "auth.query must return two columns (user name, password)";
    return a;
  }
  const std::optional<std::string>& pw = rows[0][1];
  if (!pw || pw->empty()) {
    a.kind = SecretAnswer::Kind::NoPassword;
    return a;
  }
  a.kind = SecretAnswer::Kind::Found;
  a.secret = *pw;
  return a;
}

std::optional<SecretAnswer> SecretCache::find(const std::string& database, const std::string& user,
                                              Clock::time_point now) const {
  auto it = entries_.find({database, user});
  if (it == entries_.end() || it->second.expires <= now) return std::nullopt;
  return it->second.answer;
}

void SecretCache::store(const std::string& database, const std::string& user,
                        const SecretAnswer& a, Clock::time_point now,
                        std::chrono::milliseconds ttl) {
  if (a.kind == SecretAnswer::Kind::Failed) return;
  if (a.kind == SecretAnswer::Kind::NoPassword)
    ttl = std::min<std::chrono::milliseconds>(ttl, kNoPasswordTtl);
  if (ttl.count() <= 0) {
    entries_.erase({database, user});
    return;
  }
  entries_[{database, user}] = Entry{a, now + ttl};
}

void SecretCache::prune(Clock::time_point now) {
  std::erase_if(entries_, [now](const auto& e) { return e.second.expires <= now; });
}

SecretLookup::SecretLookup(SecretLookupSettings settings, TopologySource topology)
    : topology_(std::move(topology)), settings_(std::move(settings)) {}

SecretLookup::~SecretLookup() { stop(); }

void SecretLookup::start() {
  std::lock_guard g(mu_);
  if (thread_.joinable() || stopping_) return;
  thread_ = std::thread([this] { run(); });
}

void SecretLookup::stop() {
  std::deque<Pending> orphans;
  {
    std::lock_guard g(mu_);
    stopping_ = true;
    orphans.swap(pending_);
    waiting_ = 0;
  }
  cancel_ = true;
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  SecretAnswer a;
  a.error = "shutting down";
  for (Pending& p : orphans)
    for (Done& d : p.waiters) d(a);
}

void SecretLookup::setSettings(SecretLookupSettings settings) {
  std::lock_guard g(mu_);
  settings_ = std::move(settings);
  cache_.clear();
}

void SecretLookup::lookup(const std::string& clientDatabase, const std::string& user, Done done) {
  SecretAnswer immediate;
  {
    std::lock_guard g(mu_);
    const std::string& database =
        settings_.login.database.empty() ? clientDatabase : settings_.login.database;
    if (stopping_ || settings_.login.user.empty()) {
      immediate.error = stopping_ ? "shutting down" : "auth.user is not set";
    } else if (auto hit = cache_.find(database, user, SecretCache::Clock::now())) {
      immediate = std::move(*hit);
    } else if (waiting_ >= kMaxPending) {
      immediate.error = "too many logins waiting for a password lookup";
    } else {
      ++waiting_;
      for (Pending& p : pending_) {
        if (p.database == database && p.user == user) {
          p.waiters.push_back(std::move(done));
          return;
        }
      }
      pending_.push_back(Pending{database, user, {}});
      pending_.back().waiters.push_back(std::move(done));
      cv_.notify_all();
      return;
    }
  }
  done(immediate);
}

void SecretLookup::run() {
  std::unique_lock l(mu_);
  while (!stopping_) {
    if (pending_.empty()) {
      if (conn_) {  // the burst is over
        l.unlock();
        conn_.reset();
        l.lock();
        continue;
      }
      cv_.wait(l);
      continue;
    }
    Pending& front = pending_.front();
    const std::string database = front.database, user = front.user;
    const SecretLookupSettings s = settings_;
    l.unlock();
    SecretAnswer a = queryOne(database, user, s);
    queries_.fetch_add(1, std::memory_order_relaxed);
    l.lock();
    if (stopping_) break;  // stop() answered the waiters
    std::vector<Done> waiters;
    for (auto it = pending_.begin(); it != pending_.end(); ++it) {
      if (it->database == database && it->user == user) {
        waiters = std::move(it->waiters);
        pending_.erase(it);
        break;
      }
    }
    waiting_ -= waiters.size();
    const auto now = SecretCache::Clock::now();
    if (s == settings_) {  // not changed meanwhile (a reload may point elsewhere)
      cache_.prune(now);
      cache_.store(database, user, a, now, std::chrono::milliseconds(s.cacheMs));
    }
    if (a.kind == SecretAnswer::Kind::Failed)
      spdlog::warn("auth: cannot look up the password of user \"{}\" in database {}: {}", user,
                   database, a.error);
    l.unlock();
    for (Done& d : waiters) d(a);
    l.lock();
  }
}

SecretAnswer SecretLookup::queryOne(const std::string& database, const std::string& user,
                                    const SecretLookupSettings& s) {
  SecretAnswer a;
  routing::TopologyPtr topo = topology_ ? topology_() : nullptr;
  if (!topo || topo->primary < 0 || topo->primary >= static_cast<int>(topo->backends.size())) {
    a.error = "no primary";
    return a;
  }
  const routing::BackendInfo& p = topo->backends[topo->primary];
  PgLogin login = s.login;
  login.database = database;
  const std::string conninfo = connectionString(login, p.host, p.port, "pgswitch_auth");
  // Reused while lookups keep coming for the same server and database.
  if (!conn_ || connInfo_ != conninfo || !conn_->connected()) {
    conn_ = std::make_unique<SyncConn>(cancel_);
    connInfo_ = conninfo;
    if (!conn_->connect(conninfo, SyncConn::Clock::now() +
                                      std::chrono::milliseconds(std::max(1, s.connectTimeoutMs)))) {
      a.error = "auth user \"" + s.login.user + "\": " + conn_->error();
      conn_.reset();
      return a;
    }
  }
  SyncConn::Result r =
      conn_->exec(s.query, {user},
                  SyncConn::Clock::now() + std::chrono::milliseconds(std::max(1, s.queryTimeoutMs)));
  if (!r.ok) {
    a.error = r.error.empty() ? std::string("auth.query failed") : r.error;
    if (!conn_->connected()) conn_.reset();
    return a;
  }
  return secretFromRows(r.rows);
}

}  // namespace pgswitch::health
