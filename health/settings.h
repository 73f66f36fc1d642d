// Plain inputs of the health subsystem: how to probe (HealthSettings), what to probe
// (BackendSpec) and whether and how to fail over (FailoverSettings). proxy/ maps its Config
// onto these; health/ never sees proxy types.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace pgswitch::health {

// Who one of pgswitch's libpq connections logs in as, and its TLS. The checks, the failover's
// statements, the catalog reads, auth_query and the proxy's replay watcher each have one;
// proxy/ gives them all the TLS of the pooled connections (docs/tls.md): only the login differs.
struct PgLogin {
  std::string user;
  std::string password;
  std::string database;
  // libpq's TLS keywords ("" = libpq's default).
  std::string sslmode;
  std::string sslrootcert;
  std::string sslcert;
  std::string sslkey;

  static PgLogin as(std::string user, std::string database) {
    PgLogin l;
    l.user = std::move(user);
    l.database = std::move(database);
    return l;
  }
  bool operator==(const PgLogin&) const = default;
};

struct HealthSettings {
  int periodMs = 1000;          // one round of checks every period
  int connectTimeoutMs = 2000;  // PQconnectStart .. CONNECTION_OK
  int queryTimeoutMs = 2000;    // PQsendQuery .. last PQgetResult
  int fall = 3;                 // consecutive failures before a backend is down
  int rise = 2;                 // consecutive successes before a down backend is up again
  // The checks' login; the failover's too, unless FailoverSettings names another user.
  PgLogin login = PgLogin::as("postgres", "postgres");
  uint64_t maxLagBytes = 0;  // lag_exceeded threshold, 0 = off
  uint64_t maxLagMs = 0;     // lag_exceeded threshold, 0 = off
  std::string onEvent;       // shell command run for every event, empty = none

  bool operator==(const HealthSettings&) const = default;
};

// Automatic failover and the statements pgswitch runs to promote, re-point and switch over.
struct FailoverSettings {
  bool autoFailover = false;  // off: an external manager (Patroni, repmgr, ...) promotes
  int failoverAfter = 3;      // consecutive failed checks of the primary before failing over
  // Refuse an automatic failover when the best candidate is further behind than this
  // (0 = no limit). Measured against the last LSN seen on the old primary and the most
  // advanced replica, so it is a lower bound of what is lost.
  uint64_t maxFailoverLagBytes = 16u * 1024 * 1024;
  bool repointReplicas = false;     // ALTER SYSTEM SET primary_conninfo on the other replicas
  int promoteTimeoutMs = 10000;     // pg_promote() until the candidate leaves recovery
  int switchoverTimeoutMs = 10000;  // default wait for the candidate to catch up (writes paused)
  int statementTimeoutMs = 5000;    // connect / statement deadline of every failover statement
  int retryAfterMs = 10000;  // after a failed automatic attempt, wait this long before the next
  // Who runs pg_promote(), ALTER SYSTEM and reads pg_stat_activity: a superuser, or a role
  // granted those. Empty user = the health user and password.
  std::string user;
  std::string password;
  // User written into a primary_conninfo that a replica did not have yet (re-pointing keeps
  // every other key of the existing one). Empty = the failover user.
  std::string replicationUser;

  bool operator==(const FailoverSettings&) const = default;
};

// [patroni]: follow Patroni's REST API (docs/patroni.md). With urls set, Patroni's leader is
// the only backend that may be the primary, pgswitch never promotes by itself, and
// SWITCHOVER asks Patroni.
struct PatroniSettings {
  std::vector<std::string> urls;    // REST API bases, "http://host:8008"; tried in turn
  int periodMs = 1000;              // GET /cluster every period
  int timeoutMs = 2000;             // per request, connect included
  int switchoverTimeoutMs = 60000;  // POST /switchover: Patroni answers once it is done
  std::string username, password;   // restapi.authentication, for POST /switchover
  std::string caFile;               // https: CA bundle ("" = the system's)
  bool enabled() const { return !urls.empty(); }

  bool operator==(const PatroniSettings&) const = default;
};

// [coordination]: several pgswitch instances agree through etcd (docs/deploy.md). With
// endpoints set, only the instance holding the leader key promotes; its decision is written to
// etcd and the others adopt it at once.
struct CoordinationSettings {
  std::vector<std::string> endpoints;  // etcd client URLs, "http://10.0.0.1:2379"; tried in turn
  std::string prefix;                  // key prefix, "/pgswitch/default"
  std::string name;                    // this instance's id, written into the leader key
  int leaseTtlMs = 3000;               // the leader key lives this long without a keep-alive
  int timeoutMs = 1000;                // per HTTP call, connect included
  int periodMs = 1000;                 // keep-alive, campaign and decision poll
  bool enabled() const { return !endpoints.empty(); }

  bool operator==(const CoordinationSettings&) const = default;
};

struct BackendSpec {
  std::string name;
  std::string host;
  int port = 5432;
  int weight = 1;
  std::vector<std::string> tags;  // "no_promote": never chosen by an automatic failover
  int priority = 0;               // failover candidates with equal LSNs: the higher priority wins
  // Taken out of the configuration by a reload: the slot keeps its index (the proxy keys pools
  // and counters by it) but is not checked, never a primary, replica or failover candidate.
  bool removed = false;
};

}  // namespace pgswitch::health
