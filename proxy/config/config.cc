// TOML loading with toml++ (Debian libtomlplusplus-dev). Every key is validated here so the
// rest of the proxy can trust the snapshot. Unknown keys are errors: a typo in a setting
// must not silently fall back to a default.
#include "proxy/config/config.h"

#include <toml++/toml.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

namespace pgswitch::proxy {

const char* toString(PoolMode m) {
  switch (m) {
    case PoolMode::Session: return "session";
    case PoolMode::Transaction: return "transaction";
  }
  return "?";
}

const char* toString(AuthMethod m) {
  switch (m) {
    case AuthMethod::ScramSha256: return "scram-sha-256";
    case AuthMethod::Md5: return "md5";
    case AuthMethod::Trust: return "trust";
  }
  return "?";
}

bool UserConfig::passwordIsScram() const { return password.rfind("SCRAM-SHA-256$", 0) == 0; }
bool UserConfig::passwordIsMd5() const {
  return password.size() == 35 && password.rfind("md5", 0) == 0;
}
bool UserConfig::passwordIsPlaintext() const { return !passwordIsScram() && !passwordIsMd5(); }

const UserConfig* Config::findUser(std::string_view name) const {
  for (const auto& u : users)
    if (u.name == name) return &u;
  return nullptr;
}

bool Config::isAdmin(std::string_view user) const {
  for (const auto& a : adminUsers)
    if (a == user) return true;
  return false;
}

std::string ConfigError::joined() const {
  std::string s;
  for (const auto& m : messages) {
    s += m;
    s += '\n';
  }
  return s;
}

namespace {

class Loader {
 public:
  Loader(const std::string& path) : path_(path) {}

  void error(const toml::node* n, const std::string& msg) {
    std::ostringstream o;
    o << path_ << ":" << (n ? n->source().begin.line : 0) << ": " << msg;
    errors_.push_back(o.str());
  }
  void error(const toml::source_region& r, const std::string& msg) {
    std::ostringstream o;
    o << path_ << ":" << r.begin.line << ": " << msg;
    errors_.push_back(o.str());
  }

  // Reports keys of a table that the loader does not know.
  void checkKeys(const toml::table& t, std::string_view section,
                 std::initializer_list<std::string_view> known) {
    for (auto& [k, v] : t) {
      bool ok = false;
      for (auto kk : known) ok |= (k.str() == kk);
      if (!ok) error(&v, "unknown key \"" + std::string(k.str()) + "\" in " + std::string(section));
    }
  }

  template <class T>
  void get(const toml::table& t, std::string_view key, T& out) {
    const toml::node* n = t.get(key);
    if (!n) return;
    if constexpr (std::is_same_v<T, std::string>) {
      if (auto v = n->value<std::string>()) {
        out = *v;
      } else {
        error(n, std::string(key) + " must be a string");
      }
    } else if constexpr (std::is_same_v<T, bool>) {
      if (auto v = n->value<bool>()) {
        out = *v;
      } else {
        error(n, std::string(key) + " must be true or false");
      }
    } else {
      if (auto v = n->value<int64_t>()) {
        if (*v < 0 || *v > INT32_MAX) {
          error(n, std::string(key) + " out of range");
        } else {
          out = static_cast<T>(*v);
        }
      } else {
        error(n, std::string(key) + " must be an integer");
      }
    }
  }

  // Non-negative 64-bit values (byte counts beyond 2 GiB).
  void getBytes(const toml::table& t, std::string_view key, uint64_t& out) {
    const toml::node* n = t.get(key);
    if (!n) return;
    if (auto v = n->value<int64_t>()) {
      if (*v < 0) {
        error(n, std::string(key) + " must not be negative");
      } else {
        out = static_cast<uint64_t>(*v);
      }
    } else {
      error(n, std::string(key) + " must be an integer");
    }
  }

  void getStrings(const toml::table& t, std::string_view key, std::vector<std::string>& out) {
    const toml::node* n = t.get(key);
    if (!n) return;
    const toml::array* a = n->as_array();
    if (!a) {
      error(n, std::string(key) + " must be an array of strings");
      return;
    }
    out.clear();
    for (auto& e : *a) {
      if (auto s = e.value<std::string>()) {
        out.push_back(*s);
      } else {
        error(&e, std::string(key) + " must contain only strings");
      }
    }
  }

  std::shared_ptr<Config> load(const toml::table& root) {
    auto cfg = std::make_shared<Config>();
    cfg->path = path_;
    checkKeys(root, "top level",
              {"server", "pool", "health", "backend", "user", "failover", "routing"});
    for (const char* sec : {"server", "pool", "health", "failover", "routing"}) {
      const toml::node* n = root.get(sec);
      if (n && !n->as_table()) error(n, std::string(sec) + " must be a table ([" + sec + "])");
    }
    if (auto* s = root["server"].as_table()) loadServer(*s, *cfg);
    if (auto* p = root["pool"].as_table()) loadPool(*p, *cfg);
    if (auto* h = root["health"].as_table()) loadHealth(*h, *cfg);
    if (auto* f = root["failover"].as_table()) loadFailover(*f, *cfg);
    if (auto* r = root["routing"].as_table()) loadRouting(*r, *cfg);

    if (const toml::node* b = root.get("backend")) {
      if (auto* arr = b->as_array()) {
        for (auto& e : *arr) {
          if (auto* t = e.as_table()) {
            loadBackend(*t, *cfg);
          } else {
            error(&e, "[[backend]] must be a table");
          }
        }
      } else {
        error(b, "backend must be written as [[backend]] tables");
      }
    }
    if (cfg->backends.empty()) error(static_cast<const toml::node*>(nullptr), "no [[backend]] configured");

    if (const toml::node* u = root.get("user")) {
      if (auto* arr = u->as_array()) {
        for (auto& e : *arr) {
          if (auto* t = e.as_table()) {
            loadUser(*t, *cfg);
          } else {
            error(&e, "[[user]] must be a table");
          }
        }
      } else {
        error(u, "user must be written as [[user]] tables");
      }
    }
    return cfg;
  }

  void loadServer(const toml::table& s, Config& c) {
    checkKeys(s, "[server]", {"listen", "pool_mode", "admin_users", "workers", "max_client_conn",
                              "log_level", "log_file", "max_message_bytes", "metrics_listen"});
    std::string listen = c.listenHost + ":" + std::to_string(c.listenPort);
    get(s, "listen", listen);
    if (!parseHostPort(listen, c.listenHost, c.listenPort))
      error(s.get("listen"), "listen must be \"host:port\" (IPv6 as \"[::1]:port\")");
    std::string mode = toString(c.poolMode);
    get(s, "pool_mode", mode);
    if (mode == "session") {
      c.poolMode = PoolMode::Session;
    } else if (mode == "transaction") {
      c.poolMode = PoolMode::Transaction;
    } else {
      error(s.get("pool_mode"), "pool_mode must be \"session\" or \"transaction\"");
    }
    getStrings(s, "admin_users", c.adminUsers);
    get(s, "workers", c.workers);
    if (c.workers > 256) error(s.get("workers"), "workers must be between 0 and 256");
    get(s, "max_client_conn", c.maxClientConn);
    get(s, "log_level", c.logLevel);
    static const std::set<std::string> levels{"trace", "debug", "info", "warn", "error",
                                              "critical", "off"};
    if (!levels.count(c.logLevel))
      error(s.get("log_level"), "log_level must be one of trace, debug, info, warn, error");
    get(s, "log_file", c.logFile);
    get(s, "max_message_bytes", c.maxMessageBytes);
    if (c.maxMessageBytes < 8192)
      error(s.get("max_message_bytes"), "max_message_bytes must be at least 8192");
    get(s, "metrics_listen", c.metricsListen);
  }

  void loadPool(const toml::table& p, Config& c) {
    checkKeys(p, "[pool]",
              {"pool_size", "min_pool_size", "reserve_pool_size", "reserve_pool_timeout_ms",
               "server_check_query", "query_wait_timeout_ms",
               "server_connect_timeout_ms", "server_login_retry_ms", "server_lifetime",
               "server_idle_timeout", "client_idle_timeout", "idle_transaction_timeout",
               "server_check_delay", "server_reset_query", "max_prepared_statements"});
    get(p, "pool_size", c.poolSize);
    get(p, "min_pool_size", c.minPoolSize);
    get(p, "reserve_pool_size", c.reservePoolSize);
    get(p, "reserve_pool_timeout_ms", c.reservePoolTimeoutMs);
    get(p, "server_check_query", c.serverCheckQuery);
    get(p, "query_wait_timeout_ms", c.queryWaitTimeoutMs);
    get(p, "server_connect_timeout_ms", c.serverConnectTimeoutMs);
    get(p, "server_login_retry_ms", c.serverLoginRetryMs);
    get(p, "server_lifetime", c.serverLifetimeS);
    get(p, "server_idle_timeout", c.serverIdleTimeoutS);
    get(p, "client_idle_timeout", c.clientIdleTimeoutS);
    get(p, "idle_transaction_timeout", c.idleTransactionTimeoutS);
    get(p, "server_check_delay", c.serverCheckDelayS);
    get(p, "server_reset_query", c.serverResetQuery);
    get(p, "max_prepared_statements", c.maxPreparedStatements);
    if (c.poolSize < 1) error(p.get("pool_size"), "pool_size must be at least 1");
    if (c.minPoolSize > c.poolSize)
      error(p.get("min_pool_size"), "min_pool_size must not exceed pool_size");
  }

  void loadHealth(const toml::table& h, Config& c) {
    checkKeys(h, "[health]", {"period_ms", "connect_timeout_ms", "query_timeout_ms", "fall",
                              "rise", "user", "password", "database", "max_lag_bytes",
                              "max_lag_ms", "on_event"});
    getBytes(h, "max_lag_bytes", c.health.maxLagBytes);
    getBytes(h, "max_lag_ms", c.health.maxLagMs);
    get(h, "on_event", c.health.onEvent);
    get(h, "period_ms", c.health.periodMs);
    get(h, "connect_timeout_ms", c.health.connectTimeoutMs);
    get(h, "query_timeout_ms", c.health.queryTimeoutMs);
    get(h, "fall", c.health.fall);
    get(h, "rise", c.health.rise);
    get(h, "user", c.health.user);
    get(h, "password", c.health.password);
    get(h, "database", c.health.database);
    if (c.health.periodMs < 10) error(h.get("period_ms"), "period_ms must be at least 10");
    if (c.health.fall < 1) error(h.get("fall"), "fall must be at least 1");
    if (c.health.rise < 1) error(h.get("rise"), "rise must be at least 1");
  }

  void loadRouting(const toml::table& r, Config& c) {
    checkKeys(r, "[routing]", {"read_write_split", "max_lag_bytes", "max_lag_ms", "fallback",
                               "consistency", "write_functions", "rule"});
    RoutingConfig& rc = c.routing;
    get(r, "read_write_split", rc.readWriteSplit);
    getBytes(r, "max_lag_bytes", rc.maxLagBytes);
    getBytes(r, "max_lag_ms", rc.maxLagMs);
    std::string fallback = "primary", consistency = "eventual";
    get(r, "fallback", fallback);
    get(r, "consistency", consistency);
    if (fallback == "primary" || fallback == "error") {
      rc.fallbackError = fallback == "error";
    } else {
      error(r.get("fallback"), "fallback must be \"primary\" or \"error\"");
    }
    if (consistency == "eventual") {
      rc.consistency = Consistency::Eventual;
    } else if (consistency == "read_your_writes") {
      rc.consistency = Consistency::ReadYourWrites;
    } else {
      error(r.get("consistency"), "consistency must be \"eventual\" or \"read_your_writes\"");
    }
    getStrings(r, "write_functions", rc.writeFunctions);
    const toml::node* rules = r.get("rule");
    if (!rules) return;
    const toml::array* arr = rules->as_array();
    if (!arr) {
      error(rules, "rules must be written as [[routing.rule]] tables");
      return;
    }
    for (auto& e : *arr) {
      const toml::table* t = e.as_table();
      if (!t) {
        error(&e, "[[routing.rule]] must be a table");
        continue;
      }
      checkKeys(*t, "[[routing.rule]]", {"database", "user", "application_name", "tag"});
      RouteRule rule;
      get(*t, "database", rule.database);
      get(*t, "user", rule.user);
      get(*t, "application_name", rule.applicationName);
      get(*t, "tag", rule.tag);
      if (rule.tag.empty()) error(&e, "[[routing.rule]] needs a tag");
      rc.rules.push_back(std::move(rule));
    }
  }

  void loadFailover(const toml::table& f, Config& c) {
    checkKeys(f, "[failover]", {"auto_failover", "failover_after", "max_failover_lag_bytes",
                                "failover_wait_ms", "repoint_replicas", "retry_safe_as", "user",
                                "password", "promote_timeout_ms", "switchover_timeout_ms"});
    get(f, "auto_failover", c.failover.autoFailover);
    get(f, "failover_after", c.failover.failoverAfter);
    getBytes(f, "max_failover_lag_bytes", c.failover.maxFailoverLagBytes);
    get(f, "user", c.failover.user);
    get(f, "password", c.failover.password);
    get(f, "promote_timeout_ms", c.failover.promoteTimeoutMs);
    get(f, "switchover_timeout_ms", c.failover.switchoverTimeoutMs);
    get(f, "failover_wait_ms", c.failover.failoverWaitMs);
    get(f, "repoint_replicas", c.failover.repointReplicas);
    get(f, "retry_safe_as", c.failover.retrySafeAs);
    if (!c.failover.retrySafeAs.empty() && c.failover.retrySafeAs.size() != 5)
      error(f.get("retry_safe_as"), "retry_safe_as must be a 5-character SQLSTATE such as \"40001\"");
    if (c.failover.failoverAfter < 1)
      error(f.get("failover_after"), "failover_after must be at least 1");
  }

  void loadBackend(const toml::table& t, Config& c) {
    checkKeys(t, "[[backend]]", {"name", "host", "port", "weight", "tags", "priority"});
    BackendConfig b;
    get(t, "name", b.name);
    get(t, "host", b.host);
    get(t, "port", b.port);
    get(t, "weight", b.weight);
    getStrings(t, "tags", b.tags);
    get(t, "priority", b.priority);
    if (b.host.empty()) error(&t, "[[backend]] needs a host");
    if (b.port < 1 || b.port > 65535) error(t.get("port"), "port must be between 1 and 65535");
    if (b.name.empty()) b.name = b.host + ":" + std::to_string(b.port);
    for (auto& o : c.backends)
      if (o.name == b.name) error(&t, "duplicate backend name \"" + b.name + "\"");
    c.backends.push_back(std::move(b));
  }

  void loadUser(const toml::table& t, Config& c) {
    checkKeys(t, "[[user]]", {"name", "password", "auth"});
    UserConfig u;
    get(t, "name", u.name);
    get(t, "password", u.password);
    std::string auth = "scram-sha-256";
    get(t, "auth", auth);
    if (auth == "scram-sha-256") {
      u.auth = AuthMethod::ScramSha256;
    } else if (auth == "md5") {
      u.auth = AuthMethod::Md5;
    } else if (auth == "trust") {
      u.auth = AuthMethod::Trust;
    } else {
      error(t.get("auth"), "auth must be \"scram-sha-256\", \"md5\" or \"trust\"");
    }
    if (u.name.empty()) error(&t, "[[user]] needs a name");
    for (auto& o : c.users)
      if (o.name == u.name) error(&t, "duplicate user \"" + u.name + "\"");
    if (u.passwordIsScram()) {
      u.scram = protocol::parseScramSecret(u.password);
      if (!u.scram) error(t.get("password"), "password is not a valid SCRAM-SHA-256 secret");
      if (u.auth == AuthMethod::Md5)
        error(t.get("auth"), "auth = \"md5\" needs a plaintext or md5 password, not a SCRAM secret");
    } else if (u.passwordIsMd5()) {
      if (u.auth == AuthMethod::ScramSha256)
        error(t.get("auth") ? t.get("auth") : static_cast<const toml::node*>(&t),
              "auth = \"scram-sha-256\" (the default) needs a plaintext or SCRAM password, "
              "not md5; set auth = \"md5\"");
    } else if (u.auth == AuthMethod::ScramSha256) {
      std::array<std::byte, 16> salt;
      protocol::randomBytes(salt);
      u.scram = protocol::makeScramSecret(
          u.password, std::string_view(reinterpret_cast<const char*>(salt.data()), salt.size()));
    }
    if (u.auth != AuthMethod::Trust && u.password.empty())
      error(&t, "user \"" + u.name + "\" needs a password (or auth = \"trust\")");
    c.users.push_back(std::move(u));
  }

  static bool parseHostPort(const std::string& s, std::string& host, int& port) {
    size_t colon = s.rfind(':');
    if (colon == std::string::npos || colon == 0) return false;
    std::string h = s.substr(0, colon);
    if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
    if (h.empty()) return false;
    try {
      size_t used = 0;
      std::string ps = s.substr(colon + 1);
      if (ps.empty() || !std::all_of(ps.begin(), ps.end(), ::isdigit)) return false;
      int p = std::stoi(ps, &used);
      if (used != s.size() - colon - 1 || p < 0 || p > 65535) return false;
      port = p;
    } catch (...) {
      return false;
    }
    host = h;
    return true;
  }

  std::vector<std::string> errors_;

 private:
  std::string path_;
};

}  // namespace

Result<std::shared_ptr<const Config>, ConfigError> parseConfig(std::string_view text,
                                                               const std::string& path) {
  Loader l(path);
  toml::table root;
  try {
    root = toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    l.error(e.source(), std::string(e.description()));
    return Err(ConfigError{l.errors_});
  }
  auto cfg = l.load(root);
  if (!l.errors_.empty()) return Err(ConfigError{l.errors_});
  return std::shared_ptr<const Config>(std::move(cfg));
}

Result<std::shared_ptr<const Config>, ConfigError> loadConfig(const std::string& path) {
  std::ifstream f(path);
  if (!f) return Err(ConfigError{{path + ":0: cannot open file"}});
  std::stringstream ss;
  ss << f.rdbuf();
  return parseConfig(ss.str(), path);
}

}  // namespace pgswitch::proxy
