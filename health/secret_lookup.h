// SecretLookup: the stored password of a user that has no [[user]] entry, read from the
// database with the auth user's login and auth.query (PgBouncer's auth_query), cached.
// Its own small thread with deadline-bound libpq (SyncConn), like the catalog watcher: a slow
// lookup never blocks an event loop, and logins that need one simply wait for the answer.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "health/settings.h"
#include "routing/topology.h"

namespace pgswitch::health {

class SyncConn;

struct SecretLookupSettings {
  PgLogin login;      // auth.user ("" = off); database "" = the client's
  std::string query;  // $1 = the user name
  int cacheMs = 60000;
  int connectTimeoutMs = 2000;
  int queryTimeoutMs = 2000;

  bool operator==(const SecretLookupSettings&) const = default;
};

struct SecretAnswer {
  enum class Kind {
    Found,       // `secret` is the stored password: "SCRAM-SHA-256$...", "md5..." or plaintext
    NoPassword,  // no such user, or its password is NULL: the login fails like a wrong one
    Failed,      // the lookup could not run (no primary, auth user refused): `error`
  };
  Kind kind = Kind::Failed;
  std::string secret;
  std::string error;
};

// The answer in auth.query's rows (name, password): pure, for tests.
SecretAnswer secretFromRows(const std::vector<std::vector<std::optional<std::string>>>& rows);

// What is remembered per (database, user), and for how long. Pure: time is passed in.
class SecretCache {
 public:
  using Clock = std::chrono::steady_clock;
  // A user that was not found may be created any moment: asked again after this at most.
  static constexpr auto kNoPasswordTtl = std::chrono::milliseconds(1000);

  std::optional<SecretAnswer> find(const std::string& database, const std::string& user,
                                   Clock::time_point now) const;
  // Failed answers are not kept: the next login asks again.
  void store(const std::string& database, const std::string& user, const SecretAnswer& a,
             Clock::time_point now, std::chrono::milliseconds ttl);
  void clear() { entries_.clear(); }
  // Drops expired entries, so names tried once (typos, scans) do not stay forever.
  void prune(Clock::time_point now);
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    SecretAnswer answer;
    Clock::time_point expires;
  };
  std::map<std::pair<std::string, std::string>, Entry> entries_;
};

class SecretLookup {
 public:
  using TopologySource = std::function<routing::TopologyPtr()>;
  // Called once per lookup(): on the lookup thread, or inside lookup() on a cache hit.
  using Done = std::function<void(const SecretAnswer&)>;

  // Lookups waiting beyond this are answered Failed at once (a flood of logins with made-up
  // names must not queue without bound).
  static constexpr size_t kMaxPending = 1024;

  SecretLookup(SecretLookupSettings settings, TopologySource topology);
  ~SecretLookup();  // stop()
  SecretLookup(const SecretLookup&) = delete;
  SecretLookup& operator=(const SecretLookup&) = delete;

  void start();
  void stop();  // bounded: a query in progress gives up within ~50 ms; waiters get Failed
  void setSettings(SecretLookupSettings settings);  // clears the cache

  // Thread-safe. `database` is the client's (auth.database, when set, replaces it).
  void lookup(const std::string& database, const std::string& user, Done done);

  uint64_t queries() const { return queries_.load(std::memory_order_relaxed); }

 private:
  struct Pending {
    std::string database, user;
    std::vector<Done> waiters;
  };
  void run();
  SecretAnswer queryOne(const std::string& database, const std::string& user,
                        const SecretLookupSettings& s);

  TopologySource topology_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  SecretLookupSettings settings_;
  SecretCache cache_;
  std::deque<Pending> pending_;
  size_t waiting_ = 0;  // waiters over all of pending_
  bool stopping_ = false;
  std::atomic<bool> cancel_{false};
  std::atomic<uint64_t> queries_{0};
  // Only the lookup thread touches these.
  std::unique_ptr<SyncConn> conn_;
  std::string connInfo_;
  std::thread thread_;
};

}  // namespace pgswitch::health
