// One thread, one connection per read (a read every refresh period per database does not
// justify keeping connections open). Reads go to the primary: a replica could still be
// replaying the CREATE FUNCTION that made the read necessary.
#include "health/catalog_watcher.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>

#include "health/pg_sync.h"
#include "health/probe_query.h"

namespace pgswitch::health {

// Procedures cannot be called from a SELECT (CALL is routed as a write). pg_catalog's
// volatile functions (random(), clock_timestamp(), ...) are read-only except the built-in
// writers routing/ already knows by name (nextval, setval, ...). Extension functions count:
// some write (pg_partman's maintenance), and routing.read_only_functions trusts the others.
const char* const kVolatileFunctionsQuery =
    "SELECT DISTINCT lower(p.proname) FROM pg_catalog.pg_proc p "
    "JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace "
    "WHERE p.provolatile = 'v' AND p.prokind <> 'p' "
    "AND n.nspname NOT IN ('pg_catalog', 'information_schema')";

routing::VolatileFunctions volatileFunctionsFromRows(
    const std::vector<std::vector<std::optional<std::string>>>& rows) {
  routing::VolatileFunctions v;
  for (const auto& row : rows) {
    if (!row.empty() && row[0] && !row[0]->empty()) v.names.insert(*row[0]);
  }
  return v;
}

CatalogWatcher::CatalogWatcher(CatalogWatcherSettings settings, TopologySource topology,
                               Publish publish)
    : topology_(std::move(topology)),
      publish_(std::move(publish)),
      settings_(std::move(settings)),
      current_(std::make_shared<routing::FunctionCatalog>()) {}

CatalogWatcher::~CatalogWatcher() { stop(); }

void CatalogWatcher::start() {
  std::lock_guard g(mu_);
  if (thread_.joinable() || stopping_) return;
  thread_ = std::thread([this] { run(); });
}

void CatalogWatcher::stop() {
  {
    std::lock_guard g(mu_);
    stopping_ = true;
  }
  cancel_ = true;
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void CatalogWatcher::setSettings(CatalogWatcherSettings settings) {
  routing::FunctionCatalogPtr cleared;
  {
    std::lock_guard g(mu_);
    const bool wasOff = settings_.refreshMs <= 0;
    settings_ = std::move(settings);
    const auto now = Clock::now();
    if (settings_.refreshMs <= 0) {
      // Off: forget what was read, so that nothing is routed by a catalog no longer kept fresh.
      if (!current_->databases.empty()) {
        auto next = std::make_shared<routing::FunctionCatalog>();
        next->version = current_->version + 1;
        current_ = cleared = next;
      }
    } else {
      for (auto& [name, db] : databases_) {
        const auto bound = wasOff ? now : now + std::chrono::milliseconds(settings_.refreshMs);
        db.due = std::min(db.due, bound);
      }
    }
  }
  cv_.notify_all();
  if (cleared && publish_) publish_(cleared);
}

void CatalogWatcher::watch(std::string_view database) {
  {
    std::lock_guard g(mu_);
    if (databases_.find(database) != databases_.end()) return;
    databases_.emplace(std::string(database), Database{Clock::now()});
  }
  cv_.notify_all();
}

void CatalogWatcher::markStale(std::string_view database) {
  {
    std::lock_guard g(mu_);
    auto it = databases_.find(database);
    if (it == databases_.end()) {
      it = databases_.emplace(std::string(database), Database{Clock::now()}).first;
    }
    it->second.staleReads = 2;
    it->second.due = std::min(it->second.due, Clock::now() + std::chrono::milliseconds(kSettleMs));
  }
  cv_.notify_all();
}

routing::FunctionCatalogPtr CatalogWatcher::snapshot() const {
  std::lock_guard g(mu_);
  return current_;
}

uint64_t CatalogWatcher::reads() const {
  std::lock_guard g(mu_);
  return reads_;
}

void CatalogWatcher::run() {
  std::unique_lock l(mu_);
  while (!stopping_) {
    if (settings_.refreshMs <= 0) {
      cv_.wait(l);
      continue;
    }
    const auto now = Clock::now();
    auto next = Clock::time_point::max();
    std::string due;
    for (auto& [name, db] : databases_) {
      if (db.reading) continue;
      if (db.due <= now) {
        due = name;
        break;
      }
      next = std::min(next, db.due);
    }
    if (due.empty()) {
      if (next == Clock::time_point::max()) {
        cv_.wait(l);
      } else {
        cv_.wait_until(l, next);
      }
      continue;
    }
    Database& db = databases_.find(due)->second;
    db.reading = true;
    db.staleReads = std::max(0, db.staleReads - 1);
    const CatalogWatcherSettings s = settings_;
    l.unlock();
    routing::VolatileFunctions fns;
    std::optional<std::string> error = readOne(due, s, fns);
    l.lock();
    Database& after = databases_.find(due)->second;
    after.reading = false;
    const auto done = Clock::now();
    // A few milliseconds would be a connection storm on the primary: 100 ms at least.
    auto again = done + std::chrono::milliseconds(std::max(kMinRefreshMs, s.refreshMs));
    if (after.staleReads > 0)
      again = std::min(again, done + std::chrono::milliseconds(kFollowUpMs));
    routing::FunctionCatalogPtr published;
    if (!error) {
      if (after.warned) spdlog::info("catalog: volatile functions of database {} read again", due);
      after.warned = false;
      ++reads_;
      if (settings_.refreshMs > 0) {  // not turned off meanwhile
        auto next = std::make_shared<routing::FunctionCatalog>(*current_);
        next->version = current_->version + 1;
        next->databases[due] = std::make_shared<const routing::VolatileFunctions>(std::move(fns));
        current_ = published = next;
      }
    } else if (*error == "no primary") {
      again = std::min(again, done + std::chrono::milliseconds(kNoPrimaryRetryMs));
    } else if (!after.warned && !stopping_) {
      after.warned = true;
      // The last set read stays in use; without one, reads calling a writing function rely on
      // the 25006 retry on the primary.
      spdlog::warn(
          "catalog: cannot read the volatile functions of database {} (as health user {}): {}; "
          "retrying every {} ms",
          due, s.login.user, *error, s.refreshMs);
    }
    after.due = std::min(after.due, again);
    if (after.due <= done) after.due = again;
    if (published && publish_) {
      l.unlock();
      publish_(published);
      l.lock();
    }
  }
}

std::optional<std::string> CatalogWatcher::readOne(const std::string& database,
                                                   const CatalogWatcherSettings& s,
                                                   routing::VolatileFunctions& out) {
  routing::TopologyPtr topo = topology_ ? topology_() : nullptr;
  if (!topo || topo->primary < 0 || topo->primary >= static_cast<int>(topo->backends.size()) ||
      topo->writesRefused) {
    return std::string("no primary");
  }
  const routing::BackendInfo& p = topo->backends[topo->primary];
  PgLogin login = s.login;
  login.database = database;
  SyncConn conn(cancel_);
  const auto start = SyncConn::Clock::now();
  if (!conn.connect(connectionString(login, p.host, p.port, "pgswitch_catalog"),
                    start + std::chrono::milliseconds(std::max(1, s.connectTimeoutMs)))) {
    return conn.error();
  }
  SyncConn::Result r =
      conn.exec(kVolatileFunctionsQuery,
                SyncConn::Clock::now() + std::chrono::milliseconds(std::max(1, s.queryTimeoutMs)));
  conn.close();
  if (!r.ok) return r.error.empty() ? std::string("query failed") : r.error;
  out = volatileFunctionsFromRows(r.rows);
  return std::nullopt;
}

}  // namespace pgswitch::health
