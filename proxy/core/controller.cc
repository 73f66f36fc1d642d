// Controller: config -> health settings, the health thread's lifetime, topology fan-out to
// the workers, and reload.
#include "proxy/core/controller.h"

#include <spdlog/spdlog.h>

#include <unistd.h>

#include <chrono>

#include "proxy/config/settings.h"
#include "proxy/core/service_notify.h"
#include "proxy/core/worker.h"

namespace pgswitch::proxy {

Controller::Controller(Runtime& rt, std::string configPath,
                       std::vector<std::unique_ptr<Worker>>& workers)
    : rt_(rt), configPath_(std::move(configPath)), workers_(workers) {}

Controller::~Controller() { stop(); }

health::FailoverSettings Controller::failoverSettings(const Config& c) {
  health::FailoverSettings f;
  f.autoFailover = c.failover.autoFailover;
  f.failoverAfter = c.failover.failoverAfter;
  f.maxFailoverLagBytes = c.failover.maxFailoverLagBytes;
  f.repointReplicas = c.failover.repointReplicas;
  f.user = c.failover.user;
  f.password = c.failover.password;
  f.promoteTimeoutMs = c.failover.promoteTimeoutMs;
  f.switchoverTimeoutMs = c.failover.switchoverTimeoutMs;
  return f;
}

health::PatroniSettings Controller::patroniSettings(const Config& c) {
  health::PatroniSettings p;
  p.urls = c.patroni.urls;
  p.periodMs = c.patroni.periodMs;
  p.timeoutMs = c.patroni.timeoutMs;
  p.switchoverTimeoutMs = c.patroni.switchoverTimeoutMs;
  p.username = c.patroni.username;
  p.password = c.patroni.password;
  p.caFile = c.patroni.caFile;
  return p;
}

health::CoordinationSettings Controller::coordinationSettings(const Config& c) {
  health::CoordinationSettings s;
  s.endpoints = c.coordination.etcd;
  s.prefix = c.coordination.prefix.empty() ? "/pgswitch/default" : c.coordination.prefix;
  s.name = c.coordination.name;
  if (s.name.empty()) {
    char host[256] = {};
    if (gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
    s.name = std::string(host[0] ? host : "pgswitch") + ":" + std::to_string(c.listenPort);
  }
  s.leaseTtlMs = c.coordination.leaseTtlMs;
  s.timeoutMs = c.coordination.timeoutMs;
  // A few renewals per TTL, and no slower than the health checks that may need the answer.
  s.periodMs = std::max(50, std::min(c.health.periodMs, c.coordination.leaseTtlMs / 3));
  return s;
}

health::HealthSettings Controller::healthSettings(const Config& c) {
  health::HealthSettings s;
  s.periodMs = c.health.periodMs;
  s.connectTimeoutMs = c.health.connectTimeoutMs;
  s.queryTimeoutMs = c.health.queryTimeoutMs;
  s.fall = c.health.fall;
  s.rise = c.health.rise;
  s.login = pgLogin(c, c.health.user, c.health.password, c.health.database);
  s.maxLagBytes = c.health.maxLagBytes;
  s.maxLagMs = c.health.maxLagMs;
  s.onEvent = c.health.onEvent;
  return s;
}

health::PgLogin Controller::pgLogin(const Config& c, const std::string& user,
                                    const std::string& password, const std::string& database) {
  health::PgLogin l = health::PgLogin::as(user, database);
  l.password = password;
  // The same TLS as the pooled connections (docs/tls.md).
  l.sslmode = toString(c.tls.serverSslMode);
  l.sslrootcert = c.tls.serverCaFile;
  l.sslcert = c.tls.serverCertFile;
  l.sslkey = c.tls.serverKeyFile;
  return l;
}

health::CatalogWatcherSettings Controller::catalogSettings(const Config& c) {
  health::CatalogWatcherSettings s;
  s.login = pgLogin(c, c.health.user, c.health.password, "");  // the database is the one read
  s.connectTimeoutMs = c.health.connectTimeoutMs;
  s.queryTimeoutMs = c.health.queryTimeoutMs;
  s.refreshMs = c.routing.functionRefreshMs;
  return s;
}

health::SecretLookupSettings Controller::secretSettings(const Config& c) {
  health::SecretLookupSettings s;
  s.login = pgLogin(c, c.auth.user, c.auth.password, c.auth.database);
  s.query = c.auth.query;
  s.cacheMs = c.auth.cacheMs;
  s.connectTimeoutMs = c.health.connectTimeoutMs;
  s.queryTimeoutMs = c.health.queryTimeoutMs;
  return s;
}

// Slots are matched by name: a renamed backend is a removal plus an addition, and a name that
// comes back takes its old slot (and index) again, as a new backend.
bool Controller::mergeSlotsLocked(const Config& c) {
  bool changed = false;
  const bool starting = slots_.empty();
  std::vector<bool> seen(slots_.size(), false);
  for (const BackendConfig& b : c.backends) {
    health::BackendSpec spec{b.name, b.host, b.port, b.weight, b.tags, b.priority};
    size_t i = 0;
    while (i < slots_.size() && slots_[i].spec.name != b.name) ++i;
    if (i == slots_.size()) {
      slots_.push_back(Slot{spec});
      seen.push_back(true);
      changed = true;
      if (!starting) spdlog::info("reload: backend {} added (slot {})", logValue(b.name), i);
      continue;
    }
    seen[i] = true;
    Slot& s = slots_[i];
    if (s.removed) spdlog::info("reload: backend {} back in slot {}", logValue(b.name), i);
    if (s.removed || s.spec.host != spec.host || s.spec.port != spec.port ||
        s.spec.weight != spec.weight || s.spec.tags != spec.tags ||
        s.spec.priority != spec.priority) {
      changed = true;
    }
    s.spec = spec;
    s.removed = false;
  }
  for (size_t i = 0; i < slots_.size(); ++i) {
    Slot& s = slots_[i];
    if (seen[i] || s.removed) continue;
    // Operator states belong to the backend that was removed, not to whatever comes back.
    s.removed = true;
    s.disabled = false;
    s.draining = false;
    changed = true;
    spdlog::info(
        "reload: backend {} removed (slot {}): no more checks or new work, its server "
        "connections close as their clients release them",
        logValue(s.spec.name), i);
  }
  for (Slot& s : slots_) s.spec.removed = s.removed;
  return changed;
}

void Controller::start() {
  auto cfg = rt_.config();
  {
    std::lock_guard g(mu_);
    mergeSlotsLocked(*cfg);
    startHealthLocked(*cfg, false);
    // Workers start after this and register databases as their pools appear; each new
    // catalog snapshot is handed to every worker like a topology.
    catalog_ = std::make_unique<health::CatalogWatcher>(
        catalogSettings(*cfg), [this] { return rt_.topology(); },
        [this](routing::FunctionCatalogPtr c) {
          for (auto& w : workers_) {
            Worker* wp = w.get();
            wp->post([wp, c] { wp->setFunctionCatalog(c); });
          }
        });
    rt_.catalog = catalog_.get();
    catalog_->start();
    secrets_ = std::make_unique<health::SecretLookup>(secretSettings(*cfg),
                                                      [this] { return rt_.topology(); });
    rt_.secrets = secrets_.get();
    secrets_->start();
  }
  // The initial snapshot is a guess (first backend primary). Wait briefly for the first real
  // round so that a restarted pgswitch does not send a write to a demoted primary.
  auto limit = std::chrono::milliseconds(cfg->health.connectTimeoutMs + cfg->health.queryTimeoutMs +
                                         200);
  std::unique_lock l(firstMu_);
  if (!firstCv_.wait_for(l, limit, [this] { return firstRound_; })) {
    spdlog::warn("health: no complete round of checks within {} ms; starting with the "
                 "configured order (first backend = primary) until one completes",
                 limit.count());
  }
}

void Controller::startHealthLocked(const Config& c, bool keepCurrentTopology) {
  std::vector<health::Event> history;
  if (health_) {
    health_->stop();
    history = health_->recentEvents();
    health_.reset();
  }
  settings_ = healthSettings(c);
  std::vector<health::BackendSpec> specs;
  for (const Slot& s : slots_) specs.push_back(s.spec);
  uint64_t gen = ++generation_;
  health_ = std::make_unique<health::HealthMonitor>(
      settings_, std::move(specs), [this, gen, keepCurrentTopology](routing::TopologyPtr t) {
        onPublish(gen, keepCurrentTopology, std::move(t));
      });
  health_->setFailover(failoverSettings(c));
  health_->setPatroni(patroniSettings(c));
  health_->setCoordination(coordinationSettings(c));
  health_->carryEvents(history);
  rt_.health = health_.get();
  health_->start();
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (slots_[i].disabled) health_->setDisabled(static_cast<int>(i), true);
    if (slots_[i].draining) health_->setDraining(static_cast<int>(i), true);
  }
  watchReplaysLocked(c);
}

// The replay watcher asks replicas with the health checks' credentials; it connects to a
// replica only once a read waits for it (never with consistency = "eventual").
void Controller::watchReplaysLocked(const Config& c) {
  if (!replayWatcher_) {
    replayWatcher_ = std::make_unique<health::ReplayWatcher>([this](int b, uint64_t lsn) {
      rt_.replay.learn(b, lsn);
      for (auto& w : workers_) w->replayLearned();
    });
    rt_.replayWatcher = replayWatcher_.get();
    replayWatcher_->start();
  }
  // Only strong and read_your_writes reads wait for a replica; otherwise no connection.
  const bool needed = c.routing.readWriteSplit && c.routing.consistency != Consistency::Eventual;
  std::vector<std::string> conninfos;
  for (const Slot& s : slots_)
    conninfos.push_back(s.removed || !needed
                            ? std::string()
                            : health::connectionString(settings_.login, s.spec.host, s.spec.port,
                                                       "pgswitch_replay"));
  replayWatcher_->setBackends(std::move(conninfos));
}

void Controller::onPublish(uint64_t generation, bool skipGuess, routing::TopologyPtr t) {
  if (generation != generation_.load()) return;  // from a monitor being replaced
  // Version 1 is a new monitor's guess, and until it has checked every backend once it
  // reports the unchecked ones as down: after a reload the previous real snapshot is better
  // (each check ends within connect + query timeout, so this waits no longer than that).
  if (skipGuess && (t->version <= 1 || !t->settled)) return;
  // A failover or switchover moved the primary (possibly through snapshots with none). By
  // address: a backend renamed by a reload is the same server, not a failover.
  if (t->version > 1 && t->primary >= 0) {
    const routing::BackendInfo& p = t->backends[t->primary];
    std::string where = p.host + ":" + std::to_string(p.port);
    if (!lastPrimary_.empty() && where != lastPrimary_) {
      ++rt_.failovers;
      rt_.noteFailover(p.name);
    }
    lastPrimary_ = where;
  }
  // A position learned from a server holds only while it stays an Up replica in its slot.
  for (int i = 0; i < ReplayPositions::kSlots; ++i) {
    if (i >= static_cast<int>(t->backends.size()) || i == t->primary || !t->usable(i) ||
        t->backends[i].role != routing::Role::Replica)
    {
      rt_.replay.forget(i);
      if (replayWatcher_) replayWatcher_->forget(i);
    }
  }
  rt_.setTopology(t);
  if (t->version > 1) {
    std::lock_guard l(firstMu_);
    if (!firstRound_) {
      firstRound_ = true;
      firstCv_.notify_all();
    }
  }
  postToWorkers(&Worker::onTopologyChanged);
}

void Controller::postToWorkers(void (Worker::*fn)()) {
  for (auto& w : workers_) {
    Worker* wp = w.get();
    wp->post([wp, fn] { (wp->*fn)(); });
  }
}

void Controller::stop() {
  std::lock_guard g(mu_);
  if (catalog_) catalog_->stop();  // rt_.catalog stays valid: workers may still mark stale
  if (secrets_) secrets_->stop();  // so does rt_.secrets: later lookups are answered at once
  if (replayWatcher_) replayWatcher_->stop();  // later want()s are ignored; waits time out
  if (!health_) return;
  ++generation_;
  rt_.health = nullptr;
  health_->stop();
  health_.reset();
}

std::string Controller::reload() {
  // systemd shows the unit "reloading" between the two; READY=1 also when the file was
  // refused, since the running configuration goes on serving (the STATUS line says which).
  notifyReloading();
  std::string refused = reloadFromFile();
  notifyServiceManager(refused.empty()
                           ? "READY=1\nSTATUS=configuration reloaded"
                           : "READY=1\nSTATUS=reload refused, running configuration kept");
  return refused;
}

std::string Controller::reloadFromFile() {
  auto r = loadConfig(configPath_);
  if (!r) {
    // Error lines quote names and keys from the file, which may be of any length.
    std::string logged;
    for (const std::string& m : r.error().messages)
      logged += "\n" + logValue(m, 2 * kLogValueLimit);
    spdlog::error("reload refused, keeping the running configuration:{}", logged);
    return r.error().joined();
  }
  std::shared_ptr<const Config> next = *r;
  // Certificates and keys are read again on every reload, also when the file names did not
  // change (a renewed certificate under the same name).
  auto tls = buildTlsContexts(next->tls);
  if (!tls) {
    spdlog::error("reload refused, keeping the running configuration: {}",
                  logValue(tls.error(), 2 * kLogValueLimit));
    return tls.error();
  }
  auto prev = rt_.config();
  std::string restartOnly;  // the settings table says which are read only at start-up
  for (const Setting* s : restartOnlyChanges(*prev, *next))
    restartOnly += (restartOnly.empty() ? "" : ", ") + std::string(s->key);
  if (!restartOnly.empty())
    spdlog::warn("reload: {} take effect only after a restart", restartOnly);
  std::lock_guard g(mu_);
  rt_.setTls(*tls);
  applyLocked(next);
  spdlog::info("configuration reloaded from {}", configPath_);
  return "";
}

void Controller::apply(std::shared_ptr<const Config> next) {
  std::lock_guard g(mu_);
  applyLocked(std::move(next));
}

void Controller::applyLocked(std::shared_ptr<const Config> next) {
  bool backendsChanged = mergeSlotsLocked(*next);
  auto prev = rt_.config();
  rt_.setConfig(next);
  spdlog::set_level(spdlog::level::from_str(next->logLevel));
  bool failoverChanged = failoverSettings(*next) != failoverSettings(*prev) ||
                         patroniSettings(*next) != patroniSettings(*prev) ||
                         coordinationSettings(*next) != coordinationSettings(*prev);
  if (catalog_ && catalogSettings(*next) != catalogSettings(*prev)) {
    catalog_->setSettings(catalogSettings(*next));
  }
  if (secrets_ && secretSettings(*next) != secretSettings(*prev)) {
    secrets_->setSettings(secretSettings(*next));
  }
  if (backendsChanged || failoverChanged || healthSettings(*next) != settings_) {
    spdlog::info("reload: restarting health checks ({} backend slots)", slots_.size());
    startHealthLocked(*next, true);
  } else {
    watchReplaysLocked(*next);  // consistency may have changed
  }
}

int Controller::backendIndex(std::string_view name) const {
  std::lock_guard g(mu_);
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (slots_[i].spec.name == name && !slots_[i].removed) return static_cast<int>(i);
  }
  return -1;
}

std::string Controller::setDisabled(int i, bool on) {
  std::lock_guard g(mu_);
  if (i < 0 || i >= static_cast<int>(slots_.size()) || slots_[i].removed) return "no such backend";
  slots_[i].disabled = on;
  if (health_) health_->setDisabled(i, on);
  return "";
}

std::string Controller::attach(int i) {
  std::lock_guard g(mu_);
  if (i < 0 || i >= static_cast<int>(slots_.size()) || slots_[i].removed) return "no such backend";
  if (!health_) return "health checks are not running";
  health_->attach(i);
  return "";
}

void Controller::promote(int i, health::OperationDone done) {
  std::lock_guard g(mu_);
  if (!health_) {
    done(health::OperationResult{false, "health checks are not running", -1, {}});
    return;
  }
  health_->promote(i, std::move(done));
}

void Controller::switchover(int i, health::OperationDone done) {
  std::lock_guard g(mu_);
  if (!health_) {
    done(health::OperationResult{false, "health checks are not running", -1, {}});
    return;
  }
  health_->switchover(i, 0, std::move(done));
}

std::vector<health::Event> Controller::recentEvents() const {
  std::lock_guard g(mu_);
  return health_ ? health_->recentEvents() : std::vector<health::Event>{};
}

health::HealthMonitor::CoordinationStatus Controller::coordinationStatus() const {
  std::lock_guard g(mu_);
  return health_ ? health_->coordinationStatus() : health::HealthMonitor::CoordinationStatus{};
}

std::string Controller::setDraining(int i, bool on) {
  std::lock_guard g(mu_);
  if (i < 0 || i >= static_cast<int>(slots_.size()) || slots_[i].removed) return "no such backend";
  slots_[i].draining = on;
  if (health_) health_->setDraining(i, on);
  return "";
}

}  // namespace pgswitch::proxy
