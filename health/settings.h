// Plain inputs of the health subsystem: how to probe (HealthSettings) and what to probe
// (BackendSpec). proxy/ maps its Config onto these; health/ never sees proxy types.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pgswitch::health {

struct HealthSettings {
  int periodMs = 1000;          // one round of checks every period
  int connectTimeoutMs = 2000;  // PQconnectStart .. CONNECTION_OK
  int queryTimeoutMs = 2000;    // PQsendQuery .. last PQgetResult
  int fall = 3;                 // consecutive failures before a backend is down
  int rise = 2;                 // consecutive successes before a down backend is up again
  std::string user = "postgres";
  std::string password;
  std::string database = "postgres";
  uint64_t maxLagBytes = 0;  // lag_exceeded threshold, 0 = off
  uint64_t maxLagMs = 0;     // lag_exceeded threshold, 0 = off
  std::string onEvent;       // shell command run for every event, empty = none
};

struct BackendSpec {
  std::string name;
  std::string host;
  int port = 5432;
  int weight = 1;
  std::vector<std::string> tags;
};

}  // namespace pgswitch::health
