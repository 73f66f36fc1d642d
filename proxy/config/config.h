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
#include "proxy/config/hba_rules.h"

namespace pgswitch::proxy {

enum class PoolMode { Session, Transaction };
enum class AuthMethod { ScramSha256, Md5, Trust };
enum class ClientTls { Disable, Allow, Require };
enum class ServerSslMode { Disable, Prefer, Require, VerifyCa, VerifyFull };

const char* toString(PoolMode m);
const char* toString(AuthMethod m);
// libpq's name ("verify-full").
const char* toString(ServerSslMode m);

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

// A user auth.query found, with the password as the database stores it: a SCRAM secret
// (clients use SCRAM; backends get the ClientKey they prove), an md5 hash (clients use md5)
// or, from old setups, plaintext (SCRAM). Null when the text is none of these.
std::shared_ptr<const UserConfig> lookedUpUser(std::string name, std::string stored);

// The sections below hold the settings of the table in settings.h, which also gives their
// defaults, ranges and TOML names: Config() fills every one of them from it. Fields start as
// {} only so that nothing is left indeterminate.

struct HealthConfig {
  int periodMs{};
  int connectTimeoutMs{};
  int queryTimeoutMs{};
  int fall{};
  int rise{};
  std::string user;
  std::string password;
  std::string database;
  uint64_t maxLagBytes{};  // lag_exceeded event threshold (0 = off)
  uint64_t maxLagMs{};
  std::string onEvent;  // shell command run for every event
};

struct FailoverConfig {
  bool autoFailover{};  // off: an external manager (Patroni, repmgr, ...) promotes
  int failoverAfter{};  // consecutive failed checks of the primary
  uint64_t maxFailoverLagBytes{};
  int failoverWaitMs{};        // how long work that needs a primary waits for one
  int replayBufferBytes{};      // a transaction's client bytes kept for a replay; 0 = off
  bool repointReplicas{};      // ALTER SYSTEM SET primary_conninfo on the other replicas
  std::string retrySafeAs;     // SQLSTATE for "failed before COMMIT, safe to retry" ("" = 08006)
  std::string user, password;  // runs pg_promote()/ALTER SYSTEM ("" = the health user)
  int promoteTimeoutMs{};
  int switchoverTimeoutMs{};
};

// [patroni]: follow Patroni's REST API instead of promoting (docs/patroni.md).
struct PatroniConfig {
  std::vector<std::string> urls;   // REST API bases ("http://10.0.0.1:8008"); empty = off
  int periodMs{};                  // GET /cluster every period
  int timeoutMs{};                 // per request
  int switchoverTimeoutMs{};       // POST /switchover
  std::string username, password;  // restapi.authentication (POST /switchover)
  std::string caFile;              // https: CA bundle
};

// [coordination]: several pgswitch instances agree through etcd (docs/deploy.md).
struct CoordinationConfig {
  std::vector<std::string> etcd;  // etcd client URLs ("http://10.0.0.1:2379"); empty = off
  std::string prefix;             // key prefix; "" = "/pgswitch/default"
  std::string name;               // this instance's id; "" = hostname:listen port
  int leaseTtlMs{};
  int timeoutMs{};
};

// [tls]: client side (clients connecting to pgswitch) and server side (pgswitch connecting
// to backends: pooled connections, health checks and failover). docs/tls.md.
struct TlsConfig {
  std::string certFile, keyFile;  // pgswitch's certificate for clients (PEM)
  std::string caFile;             // client certificates are verified against it when sent
  ClientTls clientTls{};          // "allow" without cert_file/key_file offers no TLS
  ServerSslMode serverSslMode{};
  std::string serverCaFile;                   // verify-ca / verify-full
  std::string serverCertFile, serverKeyFile;  // pgswitch's client certificate for backends
  bool clientTlsOffered() const {
    return clientTls != ClientTls::Disable && !certFile.empty() && !keyFile.empty();
  }
};

// [auth]: passwords of users without a [[user]] entry, read from the database (PgBouncer's
// auth_user / auth_query). docs/auth.md.
struct AuthConfig {
  std::string user;      // the login that runs `query`; "" = off
  std::string password;
  std::string query;     // $1 = the user name; returns (name, password as stored)
  std::string database;  // where `query` runs; "" = the database the client asked for
  int cacheMs{};         // a looked-up password is used this long before it is read again
  bool enabled() const { return !user.empty(); }
};

struct RouteRule {
  // Empty fields match anything; a session matching every given field reads from backends
  // carrying `tag`.
  std::string database, user, applicationName;
  std::string tag;
};

enum class Consistency { Eventual, ReadYourWrites, Strong };

struct RoutingConfig {
  bool readWriteSplit{};   // transaction mode: reads to replicas
  // Session mode: autocommit reads to replicas, the rest to the session's own primary server.
  bool sessionReads{};
  uint64_t maxLagBytes{};  // replicas further behind get no reads (0 = off)
  uint64_t maxLagMs{};
  bool fallbackError{};  // no replica qualifies: false = primary, true = ErrorResponse
  Consistency consistency{};
  uint64_t maxWaitMs{};  // strong / read_your_writes: how long a read waits for a replica
  std::vector<std::string> writeFunctions;  // user functions that write (besides built-ins)
  // Volatile functions trusted not to write: a read calling them may still go to a replica.
  std::vector<std::string> readOnlyFunctions;
  int functionRefreshMs{};  // how often each database's volatile functions are read (0 = off)
  std::vector<RouteRule> rules;             // [[routing.rule]], loaded by hand (config.cc)
};

struct Config {
  Config();  // every setting at its default (settings.cc)

  std::string path;

  // [server]
  std::string listenHost;  // listen = "host:port"
  int listenPort{};
  PoolMode poolMode{};
  std::vector<std::string> adminUsers;
  std::vector<std::string> statsUsers;  // console: SHOW and HELP only
  std::string hbaFile;                  // "" = no access rules beyond [[user]]
  // The rules of hbaFile, read and parsed by loadConfig with the rest of the file (a reload
  // that cannot read or parse it keeps the running configuration); null without hba_file.
  std::shared_ptr<const HbaRules> hba;
  int workers{};  // 0 = number of CPUs
  int workerFill{};  // new clients fill the first worker up to this many; 0 = kernel spread
  bool ioUring{};  // sockets through io_uring where the kernel allows it (proxy/core/ring.h)
  int tcpDeferAcceptS{};  // TCP_DEFER_ACCEPT on the listening sockets; 0 = off
  int maxClientConn{};
  int maxLoginClients{};
  int clientLoginTimeoutMs{};
  int clientStallTimeoutMs{};
  int maxConnectionsPerSecondPerAddress{};  // 0 = no limit
  std::string logLevel;
  std::string logFile;
  uint32_t maxMessageBytes{};
  std::string metricsListen;

  // [pool]
  int poolSize{};
  int minPoolSize{};
  int reservePoolSize{};
  int reservePoolTimeoutMs{};
  int queryWaitTimeoutMs{};
  int serverConnectTimeoutMs{};
  int serverLoginRetryMs{};
  int serverLifetimeS{};
  int serverIdleTimeoutS{};
  int clientIdleTimeoutS{};
  int idleTransactionTimeoutS{};
  int serverCheckDelayS{};
  std::string serverResetQuery;
  std::string serverCheckQuery;
  int maxPreparedStatements{};

  HealthConfig health;
  FailoverConfig failover;
  PatroniConfig patroni;
  CoordinationConfig coordination;
  RoutingConfig routing;
  TlsConfig tls;
  AuthConfig auth;
  std::vector<BackendConfig> backends;  // [[backend]], loaded by hand (config.cc)
  std::vector<UserConfig> users;        // [[user]], loaded by hand (config.cc)

  // [[user]] entries only; users found by auth.query are the session's (lookedUpUser).
  const UserConfig* findUser(std::string_view name) const;
  bool isAdmin(std::string_view user) const;
  // Session mode with routing.session_reads: a client keeps its own primary server and reads
  // outside transactions go to replicas (docs/routing.md, "Read scaling in session mode").
  bool sessionReads() const { return poolMode == PoolMode::Session && routing.sessionReads; }
  // Each request is routed on its own: transaction mode, or session mode with session_reads.
  bool routesRequests() const { return poolMode == PoolMode::Transaction || sessionReads(); }
  bool isStatsUser(std::string_view user) const;
};

struct ConfigError {
  std::vector<std::string> messages;  // "file:line: reason"
  std::string joined() const;
};

// Parses and validates; on failure returns every error found. loadConfig also reads the
// files the configuration names as part of it (hba_file); parseConfig reads nothing.
Result<std::shared_ptr<const Config>, ConfigError> loadConfig(const std::string& path);
Result<std::shared_ptr<const Config>, ConfigError> parseConfig(std::string_view text,
                                                               const std::string& path);

}  // namespace pgswitch::proxy
