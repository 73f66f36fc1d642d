// Controller: the process-wide owner that is neither a worker nor the health thread. It
// turns the Config into health settings, runs the HealthMonitor, publishes each new
// Topology to the workers, and applies reloads (SIGHUP or the console). Callable from any
// thread: every entry point takes mu_; the health thread only ever calls onPublish.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "health/catalog_watcher.h"
#include "health/health_monitor.h"
#include "health/replay_watcher.h"
#include "proxy/config/config.h"
#include "proxy/core/runtime.h"

namespace pgswitch::proxy {

class Worker;

class Controller {
 public:
  Controller(Runtime& rt, std::string configPath, std::vector<std::unique_ptr<Worker>>& workers);
  ~Controller();
  Controller(const Controller&) = delete;
  Controller& operator=(const Controller&) = delete;

  // Starts the health thread for rt's config and waits (bounded by the connect timeout)
  // for its first real round, so the first client is not routed by a guess.
  void start();
  void stop();

  // Re-reads the config file. Returns "" or the reasons it was refused (the running
  // configuration stays).
  std::string reload();
  // Applies an already validated config (the console's SET), as reload() applies the file's.
  void apply(std::shared_ptr<const Config> next);

  health::HealthMonitor* health() { return health_.get(); }
  // Backend index by name in the current config, -1 if unknown.
  int backendIndex(std::string_view name) const;

  // Console controls that must survive a health restart (reload), by backend index.
  std::string setDisabled(int i, bool on);
  std::string setDraining(int i, bool on);
  std::string attach(int i);  // lift a fence
  // PROMOTE / SWITCHOVER by the health thread; `done` runs once, on the health thread (or
  // here when health checks are not running).
  void promote(int i, health::OperationDone done);
  void switchover(int i, health::OperationDone done);
  // The health thread's recent events, oldest first (empty while it is not running).
  std::vector<health::Event> recentEvents() const;
  // [coordination]: whether this instance leads, and why it may not promote (SHOW COORDINATION).
  health::HealthMonitor::CoordinationStatus coordinationStatus() const;

  static health::HealthSettings healthSettings(const Config& c);
  static health::FailoverSettings failoverSettings(const Config& c);
  static health::PatroniSettings patroniSettings(const Config& c);
  static health::CoordinationSettings coordinationSettings(const Config& c);
  static health::CatalogWatcherSettings catalogSettings(const Config& c);
  static health::SecretLookupSettings secretSettings(const Config& c);

 private:
  // A login for one of health/'s connections, with the pooled connections' TLS.
  static health::PgLogin pgLogin(const Config& c, const std::string& user,
                                 const std::string& password, const std::string& database);
  // Backend slots keep their index for the life of the process: pools and counters are
  // keyed by it. A backend removed from the file keeps its slot, marked removed (not checked,
  // never routed to: BackendState::Removed); a new name is appended; a name that comes back
  // takes its old slot again.
  struct Slot {
    health::BackendSpec spec;
    bool removed = false;
    bool disabled = false;
    bool draining = false;
  };
  std::string reloadFromFile();            // reload() without the service notifications
  bool mergeSlotsLocked(const Config& c);  // true when the backend list changed
  void startHealthLocked(const Config& c, bool keepCurrentTopology);
  void watchReplaysLocked(const Config& c);
  void onPublish(uint64_t generation, bool skipGuess, routing::TopologyPtr t);
  void postToWorkers(void (Worker::*fn)());
  void applyLocked(std::shared_ptr<const Config> next);

  std::vector<Slot> slots_;
  health::HealthSettings settings_;

  Runtime& rt_;
  std::string configPath_;
  std::vector<std::unique_ptr<Worker>>& workers_;
  mutable std::mutex mu_;
  std::unique_ptr<health::HealthMonitor> health_;
  // Volatile functions per database; lives from start() to stop(), across health restarts.
  std::unique_ptr<health::CatalogWatcher> catalog_;
  std::unique_ptr<health::SecretLookup> secrets_;
  // Replicas' replay positions while reads wait for them; from start() on, across reloads.
  std::unique_ptr<health::ReplayWatcher> replayWatcher_;
  // Publications of a replaced monitor are ignored; a new monitor's guessed initial
  // snapshot is ignored while a real one from its predecessor is in place.
  std::atomic<uint64_t> generation_{0};
  std::string lastPrimary_;  // host:port; onPublish only (one publisher at a time): failovers
  std::mutex firstMu_;
  std::condition_variable firstCv_;
  bool firstRound_ = false;
};

}  // namespace pgswitch::proxy
