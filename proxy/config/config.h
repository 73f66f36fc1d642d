// The configuration: an immutable snapshot loaded from a TOML file. Loading validates
// everything and reports all problems at once, each with file, line and reason; a running
// process keeps its old snapshot when a reload fails.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "protocol/scram.h"

namespace pgswitch::proxy {

enum class PoolMode { Session, Transaction };
enum class AuthMethod { ScramSha256, Md5, Trust };

const char* toString(PoolMode m);
const char* toString(AuthMethod m);

struct BackendConfig {
  std::string name;
  std::string host;
  int port = 5432;
  int weight = 1;
  std::vector<std::string> tags;  // "no_promote": never chosen by an automatic failover
  int priority = 0;               // failover candidates with equal LSNs: higher wins
};

struct UserConfig {
  std::string name;
  std::string password;  // as configured: plaintext, "md5..." or "SCRAM-SHA-256$..."
  AuthMethod auth = AuthMethod::ScramSha256;
  // SCRAM secret clients are checked against: parsed from password when it is a secret,
  // else derived from the plaintext with a random salt at load time.
  std::optional<protocol::ScramSecret> scram;
  bool passwordIsPlaintext() const;
  bool passwordIsMd5() const;
  bool passwordIsScram() const;
};

struct HealthConfig {
  int periodMs = 1000;
  int connectTimeoutMs = 2000;
  int queryTimeoutMs = 2000;
  int fall = 3;
  int rise = 2;
  std::string user = "postgres";
  std::string password;
  std::string database = "postgres";
  uint64_t maxLagBytes = 0;  // lag_exceeded event threshold (0 = off)
  uint64_t maxLagMs = 0;
  std::string onEvent;  // shell command run for every event
};

struct FailoverConfig {
  bool autoFailover = false;        // off: an external manager (Patroni, repmgr, ...) promotes
  int failoverAfter = 3;            // consecutive failed checks of the primary
  uint64_t maxFailoverLagBytes = 16u * 1024 * 1024;
  int failoverWaitMs = 30000;       // how long work that needs a primary waits for one
  bool repointReplicas = false;     // ALTER SYSTEM SET primary_conninfo on the other replicas
  std::string retrySafeAs;          // SQLSTATE for "failed before COMMIT, safe to retry" ("" = 08006)
  std::string user, password;       // runs pg_promote()/ALTER SYSTEM ("" = the health user)
  int promoteTimeoutMs = 10000;
  int switchoverTimeoutMs = 10000;
};

struct RouteRule {
  // Empty fields match anything; a session matching every given field reads from backends
  // carrying `tag`.
  std::string database, user, applicationName;
  std::string tag;
};

enum class Consistency { Eventual, ReadYourWrites };

struct RoutingConfig {
  bool readWriteSplit = true;  // transaction mode: reads to replicas
  uint64_t maxLagBytes = 16u * 1024 * 1024;  // replicas further behind get no reads (0 = off)
  uint64_t maxLagMs = 0;
  bool fallbackError = false;  // no replica qualifies: false = primary, true = ErrorResponse
  Consistency consistency = Consistency::Eventual;
  std::vector<std::string> writeFunctions;  // user functions that write (besides built-ins)
  std::vector<RouteRule> rules;
};

struct Config {
  std::string path;

  // [server]
  std::string listenHost = "127.0.0.1";
  int listenPort = 6432;
  PoolMode poolMode = PoolMode::Session;
  std::vector<std::string> adminUsers;
  int workers = 0;  // 0 = number of CPUs
  int maxClientConn = 10000;
  std::string logLevel = "info";
  std::string logFile;
  uint32_t maxMessageBytes = 64u * 1024 * 1024;
  std::string metricsListen;

  // [pool]
  int poolSize = 20;
  int minPoolSize = 0;
  int reservePoolSize = 0;
  int reservePoolTimeoutMs = 5000;
  int queryWaitTimeoutMs = 120000;
  int serverConnectTimeoutMs = 5000;
  int serverLoginRetryMs = 1000;
  int serverLifetimeS = 3600;
  int serverIdleTimeoutS = 600;
  int clientIdleTimeoutS = 0;
  int idleTransactionTimeoutS = 0;
  int serverCheckDelayS = 30;
  std::string serverResetQuery = "DISCARD ALL";
  std::string serverCheckQuery = "SELECT 1";
  int maxPreparedStatements = 200;

  HealthConfig health;
  FailoverConfig failover;
  RoutingConfig routing;
  std::vector<BackendConfig> backends;
  std::vector<UserConfig> users;

  const UserConfig* findUser(std::string_view name) const;
  bool isAdmin(std::string_view user) const;
};

struct ConfigError {
  std::vector<std::string> messages;  // "file:line: reason"
  std::string joined() const;
};

// Parses and validates; on failure returns every error found.
Result<std::shared_ptr<const Config>, ConfigError> loadConfig(const std::string& path);
Result<std::shared_ptr<const Config>, ConfigError> parseConfig(std::string_view text,
                                                               const std::string& path);

}  // namespace pgswitch::proxy
