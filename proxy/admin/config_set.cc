// The console's SET: one setting of a Config copy changed from text, with the same checks the
// file loader applies (proxy/config.cc), so a SET can never produce a config that a RELOAD of
// the same values would refuse.
#include <algorithm>
#include <cctype>
#include <climits>
#include <functional>
#include <string>

#include "proxy/admin/console_actions.h"

namespace pgswitch::proxy {

namespace {

std::string lower(std::string_view s) {
  std::string r(s);
  for (char& c : r) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return r;
}

std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

bool parseInt(std::string_view v, int64_t& out) {
  std::string t = trim(v);
  if (t.empty() || t.size() > 12 || !std::all_of(t.begin(), t.end(), ::isdigit)) return false;
  out = std::stoll(t);
  return out <= INT32_MAX;
}

bool parseBool(std::string_view v, bool& out) {
  std::string t = lower(trim(v));
  if (t == "true" || t == "on" || t == "yes" || t == "1") {
    out = true;
  } else if (t == "false" || t == "off" || t == "no" || t == "0") {
    out = false;
  } else {
    return false;
  }
  return true;
}

std::vector<std::string> parseList(std::string_view v) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= v.size()) {
    size_t comma = v.find(',', start);
    if (comma == std::string_view::npos) comma = v.size();
    std::string item = trim(v.substr(start, comma - start));
    if (!item.empty()) out.push_back(std::move(item));
    start = comma + 1;
  }
  return out;
}

using Setter = std::function<std::string(Config&, std::string_view)>;

template <class T>
Setter integer(T Config::*field, int64_t min = 0) {
  return [field, min](Config& c, std::string_view v) -> std::string {
    int64_t n = 0;
    if (!parseInt(v, n)) return "must be a non-negative integer";
    if (n < min) return "must be at least " + std::to_string(min);
    c.*field = static_cast<T>(n);
    return "";
  };
}

template <class T>
Setter healthInt(T HealthConfig::*field, int64_t min = 0) {
  return [field, min](Config& c, std::string_view v) -> std::string {
    int64_t n = 0;
    if (!parseInt(v, n)) return "must be a non-negative integer";
    if (n < min) return "must be at least " + std::to_string(min);
    c.health.*field = static_cast<T>(n);
    return "";
  };
}

template <class T>
Setter failoverInt(T FailoverConfig::*field, int64_t min = 0) {
  return [field, min](Config& c, std::string_view v) -> std::string {
    int64_t n = 0;
    if (!parseInt(v, n)) return "must be a non-negative integer";
    if (n < min) return "must be at least " + std::to_string(min);
    c.failover.*field = static_cast<T>(n);
    return "";
  };
}

Setter text(std::string Config::*field) {
  return [field](Config& c, std::string_view v) -> std::string {
    c.*field = std::string(v);
    return "";
  };
}

Setter healthText(std::string HealthConfig::*field) {
  return [field](Config& c, std::string_view v) -> std::string {
    c.health.*field = std::string(v);
    return "";
  };
}

struct Entry {
  std::string_view key;
  Setter set;
};

const std::vector<Entry>& setters() {
  static const std::vector<Entry> kSetters = {
      {"server.pool_mode",
       [](Config& c, std::string_view v) -> std::string {
         std::string m = lower(trim(v));
         if (m == "session") {
           c.poolMode = PoolMode::Session;
         } else if (m == "transaction") {
           c.poolMode = PoolMode::Transaction;
         } else {
           return "must be session or transaction";
         }
         return "";
       }},
      {"server.admin_users",
       [](Config& c, std::string_view v) -> std::string {
         c.adminUsers = parseList(v);
         return "";
       }},
      {"server.max_client_conn", integer(&Config::maxClientConn)},
      {"server.log_level",
       [](Config& c, std::string_view v) -> std::string {
         static constexpr std::string_view kLevels[] = {"trace", "debug", "info",    "warn",
                                                        "error", "critical", "off"};
         std::string l = lower(trim(v));
         if (std::find(std::begin(kLevels), std::end(kLevels), l) == std::end(kLevels))
           return "must be one of trace, debug, info, warn, error";
         c.logLevel = l;
         return "";
       }},
      {"server.max_message_bytes", integer(&Config::maxMessageBytes, 8192)},
      {"pool.pool_size", integer(&Config::poolSize, 1)},
      {"pool.min_pool_size", integer(&Config::minPoolSize)},
      {"pool.reserve_pool_size", integer(&Config::reservePoolSize)},
      {"pool.reserve_pool_timeout_ms", integer(&Config::reservePoolTimeoutMs)},
      {"pool.query_wait_timeout_ms", integer(&Config::queryWaitTimeoutMs)},
      {"pool.server_connect_timeout_ms", integer(&Config::serverConnectTimeoutMs)},
      {"pool.server_login_retry_ms", integer(&Config::serverLoginRetryMs)},
      {"pool.server_lifetime", integer(&Config::serverLifetimeS)},
      {"pool.server_idle_timeout", integer(&Config::serverIdleTimeoutS)},
      {"pool.client_idle_timeout", integer(&Config::clientIdleTimeoutS)},
      {"pool.idle_transaction_timeout", integer(&Config::idleTransactionTimeoutS)},
      {"pool.server_check_delay", integer(&Config::serverCheckDelayS)},
      {"pool.server_reset_query", text(&Config::serverResetQuery)},
      {"pool.server_check_query", text(&Config::serverCheckQuery)},
      {"pool.max_prepared_statements", integer(&Config::maxPreparedStatements)},
      {"health.period_ms", healthInt(&HealthConfig::periodMs, 10)},
      {"health.connect_timeout_ms", healthInt(&HealthConfig::connectTimeoutMs)},
      {"health.query_timeout_ms", healthInt(&HealthConfig::queryTimeoutMs)},
      {"health.fall", healthInt(&HealthConfig::fall, 1)},
      {"health.rise", healthInt(&HealthConfig::rise, 1)},
      {"health.user", healthText(&HealthConfig::user)},
      {"health.password", healthText(&HealthConfig::password)},
      {"health.database", healthText(&HealthConfig::database)},
      {"health.max_lag_bytes", healthInt(&HealthConfig::maxLagBytes)},
      {"health.max_lag_ms", healthInt(&HealthConfig::maxLagMs)},
      {"health.on_event", healthText(&HealthConfig::onEvent)},
      {"failover.auto_failover",
       [](Config& c, std::string_view v) -> std::string {
         return parseBool(v, c.failover.autoFailover) ? "" : "must be true or false";
       }},
      {"failover.failover_after", failoverInt(&FailoverConfig::failoverAfter, 1)},
      {"failover.max_failover_lag_bytes", failoverInt(&FailoverConfig::maxFailoverLagBytes)},
      {"failover.failover_wait_ms", failoverInt(&FailoverConfig::failoverWaitMs)},
      {"failover.repoint_replicas",
       [](Config& c, std::string_view v) -> std::string {
         return parseBool(v, c.failover.repointReplicas) ? "" : "must be true or false";
       }},
      {"failover.retry_safe_as",
       [](Config& c, std::string_view v) -> std::string {
         std::string s = trim(v);
         if (!s.empty() && s.size() != 5) return "must be a 5-character SQLSTATE such as 40001";
         c.failover.retrySafeAs = s;
         return "";
       }},
  };
  return kSetters;
}

}  // namespace

std::string applySetting(Config& cfg, std::string_view key, std::string_view value) {
  for (const Entry& e : setters()) {
    if (e.key != key) continue;
    std::string err = e.set(cfg, value);
    if (err.empty() && cfg.minPoolSize > cfg.poolSize) {
      err = "would make min_pool_size (" + std::to_string(cfg.minPoolSize) +
            ") exceed pool_size (" + std::to_string(cfg.poolSize) + ")";
    }
    if (!err.empty()) return "invalid value for " + std::string(key) + ": " + err;
    return "";
  }
  return "setting \"" + std::string(key) +
         "\" cannot be changed with SET: edit the configuration file and RELOAD";
}

}  // namespace pgswitch::proxy
