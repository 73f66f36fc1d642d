// ClientHandle: what a worker needs from a client session it accepted — the periodic checks,
// shutdown, and the SHOW CLIENTS row — so that core/ does not depend on session/. The
// session behind it is created by the worker's SessionFactory (installed by main).
#pragma once

#include <uv.h>

#include <cstdint>
#include <string_view>

#include "proxy/core/stats.h"

namespace pgswitch::proxy {

class Worker;

// Objects destroyed on a later loop turn, never inside their own callback.
class Retirable {
 public:
  virtual ~Retirable() = default;
};

class ClientHandle : public Retirable {
 public:
  // Once a second: idle and login timeouts, the hold deadline.
  virtual void janitor(uint64_t nowMs) = 0;
  // The topology changed while the session waited for a usable backend.
  virtual void retryHold() = 0;
  // Waiting for a replica to replay far enough (Worker::addReplicaWaiter): a position was
  // learned, or a deadline passed. `nowMs` is health::ReplayWatcher::nowMs().
  virtual void replicaWaitCheck(uint64_t nowMs) = 0;
  // Ends the session now with a FATAL (shutdown, admin kill).
  virtual void terminate(std::string_view sqlstate, std::string_view message) = 0;
  // Closes the socket without a word (shutdown grace expired).
  virtual void abort() = 0;
  // Whether SHUTDOWN WAIT may end the session now (between transactions, nothing in flight).
  virtual bool quiescent() const = 0;
  virtual ClientInfo info(uint64_t nowMs) const = 0;

 private:
  friend class Worker;
  // Where the worker keeps it in its client list (Worker::addClient): removal is O(1), not a
  // scan of every client (10,000 idle clients made each logout a 10,000-entry scan).
  uint32_t workerIndex_ = UINT32_MAX;
};

// Starts the session of a socket `fd` accepted on worker `w` (which now belongs to the
// session); the session registers itself with Worker::addClient. Failures close the socket
// quietly.
using SessionFactory = void (*)(Worker& w, int fd);

}  // namespace pgswitch::proxy
