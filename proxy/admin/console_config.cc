// The SHOW CONFIG table: every Config field under its TOML name, its current value, and
// whether a reload (RELOAD, SIGHUP, SET) applies it without a restart.
#include <string>
#include <vector>

#include "proxy/admin/console_internal.h"

namespace pgswitch::proxy::console {
namespace {

std::string joinList(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& e : v) {
    if (!s.empty()) s += ", ";
    s += e;
  }
  return s;
}

std::string secret(const std::string& pw) { return pw.empty() ? "" : "********"; }

std::string boolText(bool b) { return b ? "true" : "false"; }

}  // namespace

std::vector<ConfigEntry> configEntries(const Config& c) {
  std::vector<ConfigEntry> e;
  auto add = [&](std::string key, std::string value, bool reloadable = true) {
    e.push_back({std::move(key), std::move(value), reloadable, true});
  };
  auto num = [](auto v) { return std::to_string(v); };

  // Settings that shape sockets and threads are read once at start-up.
  add("config_file", c.path, false);
  bool v6 = c.listenHost.find(':') != std::string::npos;
  add("server.listen", (v6 ? "[" + c.listenHost + "]" : c.listenHost) + ":" + num(c.listenPort),
      false);
  add("server.pool_mode", toString(c.poolMode));
  add("server.admin_users", joinList(c.adminUsers));
  add("server.workers", num(c.workers), false);
  add("server.max_client_conn", num(c.maxClientConn));
  add("server.log_level", c.logLevel);
  add("server.log_file", c.logFile, false);
  add("server.max_message_bytes", num(c.maxMessageBytes));
  add("server.metrics_listen", c.metricsListen, false);

  add("pool.pool_size", num(c.poolSize));
  add("pool.min_pool_size", num(c.minPoolSize));
  add("pool.reserve_pool_size", num(c.reservePoolSize));
  add("pool.reserve_pool_timeout_ms", num(c.reservePoolTimeoutMs));
  add("pool.query_wait_timeout_ms", num(c.queryWaitTimeoutMs));
  add("pool.server_connect_timeout_ms", num(c.serverConnectTimeoutMs));
  add("pool.server_login_retry_ms", num(c.serverLoginRetryMs));
  add("pool.server_lifetime", num(c.serverLifetimeS));
  add("pool.server_idle_timeout", num(c.serverIdleTimeoutS));
  add("pool.client_idle_timeout", num(c.clientIdleTimeoutS));
  add("pool.idle_transaction_timeout", num(c.idleTransactionTimeoutS));
  add("pool.server_check_delay", num(c.serverCheckDelayS));
  add("pool.server_reset_query", c.serverResetQuery);
  add("pool.server_check_query", c.serverCheckQuery);
  add("pool.max_prepared_statements", num(c.maxPreparedStatements));

  const HealthConfig& h = c.health;
  add("health.period_ms", num(h.periodMs));
  add("health.connect_timeout_ms", num(h.connectTimeoutMs));
  add("health.query_timeout_ms", num(h.queryTimeoutMs));
  add("health.fall", num(h.fall));
  add("health.rise", num(h.rise));
  add("health.user", h.user);
  add("health.password", secret(h.password));
  add("health.database", h.database);
  add("health.max_lag_bytes", num(h.maxLagBytes));
  add("health.max_lag_ms", num(h.maxLagMs));
  add("health.on_event", h.onEvent);

  const FailoverConfig& f = c.failover;
  add("failover.auto_failover", boolText(f.autoFailover));
  add("failover.failover_after", num(f.failoverAfter));
  add("failover.max_failover_lag_bytes", num(f.maxFailoverLagBytes));
  add("failover.failover_wait_ms", num(f.failoverWaitMs));
  add("failover.repoint_replicas", boolText(f.repointReplicas));
  add("failover.retry_safe_as", f.retrySafeAs);

  // Backends and users change through the file (RELOAD), not through SET.
  for (const BackendConfig& b : c.backends) {
    std::string p = "backend." + b.name + ".";
    e.push_back({p + "host", b.host, false, false});
    e.push_back({p + "port", num(b.port), false, false});
    e.push_back({p + "weight", num(b.weight), true, false});
    e.push_back({p + "tags", joinList(b.tags), true, false});
  }
  for (const UserConfig& u : c.users) {
    std::string p = "user." + u.name + ".";
    e.push_back({p + "password", secret(u.password), true, false});
    e.push_back({p + "auth", toString(u.auth), true, false});
  }
  return e;
}

}  // namespace pgswitch::proxy::console
