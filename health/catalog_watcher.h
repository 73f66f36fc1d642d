// CatalogWatcher: reads which user functions are volatile (pg_proc.provolatile = 'v') in each
// database clients use, on the primary, with the health credentials; again every refresh
// period and soon after function DDL passed through the proxy. Publishes an immutable
// routing::FunctionCatalog snapshot. Its own small thread with deadline-bound libpq (SyncConn):
// a slow catalog never delays a health check, and a few databases need no event loop.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "health/settings.h"
#include "routing/topology.h"
#include "routing/volatile_functions.h"

namespace pgswitch::health {

struct CatalogWatcherSettings {
  PgLogin login = PgLogin::as("postgres", "");  // the health checks'; database: the one read
  int connectTimeoutMs = 2000;
  int queryTimeoutMs = 2000;
  int refreshMs = 30000;  // 0: never read (no function is considered volatile)

  bool operator==(const CatalogWatcherSettings&) const = default;
};

// The statement that lists a database's volatile functions (one text column), and its rows
// turned into the set. Pure; here so that tests and docs see the one definition.
extern const char* const kVolatileFunctionsQuery;
routing::VolatileFunctions volatileFunctionsFromRows(
    const std::vector<std::vector<std::optional<std::string>>>& rows);

class CatalogWatcher {
 public:
  using TopologySource = std::function<routing::TopologyPtr()>;
  // Called on the watcher's thread with every new snapshot. Must be quick.
  using Publish = std::function<void(routing::FunctionCatalogPtr)>;

  CatalogWatcher(CatalogWatcherSettings settings, TopologySource topology, Publish publish);
  ~CatalogWatcher();  // stop()
  CatalogWatcher(const CatalogWatcher&) = delete;
  CatalogWatcher& operator=(const CatalogWatcher&) = delete;

  void start();
  void stop();  // bounded: a read in progress gives up within ~50 ms
  void setSettings(CatalogWatcherSettings settings);

  // Thread-safe. A database clients use (a pool for it was made): read it now if it is new.
  void watch(std::string_view database);
  // Thread-safe. Function DDL passed through the proxy for `database`: read it again shortly
  // (once after kSettleMs, when an autocommit statement has committed, and once more a second
  // later, for a short transaction).
  void markStale(std::string_view database);

  routing::FunctionCatalogPtr snapshot() const;
  uint64_t reads() const;  // successful reads, all databases

  static constexpr int kSettleMs = 100;
  static constexpr int kFollowUpMs = 1000;
  static constexpr int kNoPrimaryRetryMs = 1000;
  static constexpr int kMinRefreshMs = 100;

 private:
  using Clock = std::chrono::steady_clock;
  struct Database {
    Clock::time_point due;
    int staleReads = 0;   // reads still owed to markStale()
    bool warned = false;  // the failure was logged; quiet until a read succeeds
    bool reading = false;
  };

  void run();
  // One read of `database`; the error when it failed.
  std::optional<std::string> readOne(const std::string& database, const CatalogWatcherSettings& s,
                                     routing::VolatileFunctions& out);

  TopologySource topology_;
  Publish publish_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  CatalogWatcherSettings settings_;
  std::map<std::string, Database, std::less<>> databases_;
  routing::FunctionCatalogPtr current_;
  uint64_t reads_ = 0;
  bool stopping_ = false;
  std::atomic<bool> cancel_{false};
  std::thread thread_;
};

}  // namespace pgswitch::health
