// ProxyControl: the running process as the console and the HTTP endpoint see it. It gathers
// Snapshots from every worker and implements ConsoleActions on top of the Controller (reload,
// enable/disable/drain/attach), the shared PAUSE state, SET (a copy of the config with one
// value changed) and SHUTDOWN (handed to the main loop). One per process; callable from any
// thread.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "proxy/config/config.h"
#include "proxy/admin/console_commands.h"
#include "proxy/core/stats.h"

namespace pgswitch::proxy {

class Controller;
class Runtime;
class Worker;

class ProxyControl final : public ConsoleActions {
 public:
  ProxyControl(Runtime& rt, Controller& ctl, std::vector<Worker*> workers);

  // main installs how SHUTDOWN reaches the main loop (wait = SHUTDOWN WAIT). Before start.
  void setShutdownHandler(std::function<void(bool wait)> fn) { shutdown_ = std::move(fn); }

  // Collects a Snapshot from every worker; `done` runs on `home`'s thread (dropped if home is
  // shutting down). Never blocks the calling worker.
  void gather(Worker& home, std::function<void(Snapshot)> done);
  // For threads that are not workers (the main thread serving /metrics): waits at most
  // `timeout`; parts of workers that did not answer in time are missing.
  Snapshot gatherBlocking(std::chrono::milliseconds timeout);

  // ConsoleActions (run on the console session's worker thread)
  std::string pause(std::string_view db) override;
  std::string resume(std::string_view db) override;
  std::string reload() override;
  std::string enableBackend(std::string_view name) override;
  std::string disableBackend(std::string_view name) override;
  std::string drainBackend(std::string_view name) override;
  std::string attachBackend(std::string_view name) override;
  std::string promoteBackend(std::string_view name) override;
  std::string switchoverTo(std::string_view name) override;
  SetResult set(std::string_view key, std::string_view value) override;
  std::string shutdown(bool wait) override;

  // PROMOTE and SWITCHOVER take seconds, and a worker must not wait for them. The action
  // only checks the request and records it (per thread: actions run synchronously inside
  // runConsole on the console's worker); the console session then takes it, starts it, and
  // answers when `done` arrives, posted back to `home`: "" or why it failed.
  struct PendingOp {
    bool switchover = false;
    int backend = -1;
    std::string name;
  };
  std::optional<PendingOp> takePending();
  void runPending(const PendingOp& op, Worker& home, std::function<void(std::string)> done);

 private:
  Snapshot base() const;  // what is not per worker
  int index(std::string_view name, std::string& err) const;
  std::string checkPromotable(std::string_view name, int& i) const;
  void retryHeldSessions();

  Runtime& rt_;
  Controller& ctl_;
  std::vector<Worker*> workers_;
  std::function<void(bool)> shutdown_;
  std::mutex setMu_;  // SET is read-modify-write of the config
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

// `cfg` with one setting (its SHOW CONFIG key, e.g. "pool.pool_size") changed to the text
// `value`, validated as the config file would be, plus the guard rails only SET needs (an
// admin_users that would lock every admin out); on failure `cfg` is unchanged and the result
// says why (config_set.cc).
SetResult trySetting(Config& cfg, std::string_view key, std::string_view value);
// The same, only the reason: "" or why not.
inline std::string applySetting(Config& cfg, std::string_view key, std::string_view value) {
  return trySetting(cfg, key, value).error;
}

}  // namespace pgswitch::proxy
