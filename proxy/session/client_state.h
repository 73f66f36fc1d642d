// The client session's states and the edges between them, in one place: ClientSession checks
// every transition against legalTransition() (a failed check is a bug: assert in debug builds,
// logged in release builds), tests walk the table, docs/architecture.md draws it.
#pragma once

#include <cstdint>

namespace pgswitch::proxy {

enum class ClientState : uint8_t {
  Startup,    // waiting for the StartupMessage (SSLRequest answered on the way)
  Auth,       // authentication exchange with the client
  Queued,     // in a pool's queue for a server connection (at login or for a request)
  Holding,    // no usable backend (failover, PAUSE): waits for the topology to change
  AwaitReplica,  // a read waits, no server yet, for its replica to replay what it must see
                 // (strong / read_your_writes; the ReplayWatcher asks, up to max_wait_ms)
  Configure,  // server linked, being brought to the client's settings
  Active,     // server linked, relaying
  OwnQuery,   // server linked, pgswitch's own query runs after the client's transaction
              // (commit LSN, read-back of a SET; the client's next request waits)
  Idle,       // transaction mode: logged in, between transactions, no server linked
  Console,    // the admin console answers; no server
  Closing,    // everything released; the socket closes
};

constexpr bool legalTransition(ClientState from, ClientState to) {
  using S = ClientState;
  if (to == S::Closing) return from != S::Closing;
  switch (from) {
    case S::Startup:
      return to == S::Auth;
    case S::Auth:
      return to == S::Queued || to == S::Holding || to == S::Console;
    case S::Queued:
      return to == S::Configure || to == S::Holding || to == S::Idle;
    case S::Holding:
      return to == S::Queued || to == S::Idle;
    case S::AwaitReplica:  // Queued: the replica (or the primary) it goes to; Holding: no
                           // primary to fall back to; Idle: fallback = "error"
      return to == S::Queued || to == S::Holding || to == S::Idle;
    case S::Configure:
      return to == S::Active || to == S::Idle;  // Idle: server lost, retry
    case S::Active:
      return to == S::Idle || to == S::OwnQuery;
    case S::OwnQuery:
      return to == S::Active || to == S::Idle;
    case S::Idle:
      return to == S::Queued || to == S::Holding || to == S::AwaitReplica;
    case S::Console:
    case S::Closing:
      return false;
  }
  return false;
}

// Not authenticated yet: counted against max_login_clients, closed after
// client_login_timeout_ms.
constexpr bool loggingIn(ClientState s) {
  return s == ClientState::Startup || s == ClientState::Auth;
}

constexpr const char* toString(ClientState s) {
  switch (s) {
    case ClientState::Startup:
      return "startup";
    case ClientState::Auth:
      return "auth";
    case ClientState::Queued:
      return "queued";
    case ClientState::Holding:
      return "holding";
    case ClientState::AwaitReplica:
      return "await-replica";
    case ClientState::Configure:
      return "configure";
    case ClientState::Active:
      return "active";
    case ClientState::OwnQuery:
      return "own-query";
    case ClientState::Idle:
      return "idle";
    case ClientState::Console:
      return "console";
    case ClientState::Closing:
      return "closing";
  }
  return "?";
}

}  // namespace pgswitch::proxy
