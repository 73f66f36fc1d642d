// Strong consistency and read-your-writes, the session's part: a read whose replica is not
// known to have replayed what it must see waits for the replay watcher (AwaitReplica), and a
// commit that moved the floor starts the watcher's question before the reads come
// (docs/routing.md, "How strong works").
#include <spdlog/spdlog.h>

#include "health/replay_watcher.h"
#include "proxy/session/client_session.h"

namespace pgswitch::proxy {

// Strong consistency (or read-your-writes): the read must see a commit the replica is not
// known to have replayed. It waits here, holding no server, while the ReplayWatcher asks the
// replica (one question serves every read waiting for it); Worker::checkReplicaWaiters calls
// replicaWaitCheck when an answer came or the wait's max_wait_ms ran out.
void ClientSession::awaitReplica(int backend) {
  ++worker_.runtime().replicaWaits;
  awaitBackend_ = backend;
  awaitUntilMs_ = health::ReplayWatcher::nowMs() + cfg_->routing.maxWaitMs;
  transitionTo(State::AwaitReplica);
  if (auto* w = worker_.runtime().replayWatcher) w->want(backend, route_.replayNeeded(), awaitUntilMs_);
  replicaWaitCheck(health::ReplayWatcher::nowMs());  // learned before this read was listed
}

// A commit moved the floor: the reads that follow it, from any client, will wait for the
// replicas to replay it. Asking now, rather than when the first of them arrives, has the
// answer there sooner, and often before any read has to wait at all.
void ClientSession::watchReplicasReach(uint64_t lsn) {
  auto* w = worker_.runtime().replayWatcher;
  if (!w) return;
  auto topo = worker_.runtime().topology();
  const uint64_t until = health::ReplayWatcher::nowMs() + cfg_->routing.maxWaitMs;
  for (int i = 0; i < static_cast<int>(topo->backends.size()); ++i)
    if (i != topo->primary && topo->usable(i) && topo->backends[i].role == routing::Role::Replica)
      w->want(i, lsn, until);
}

void ClientSession::replicaWaitCheck(uint64_t nowMs) {
  if (state_ != State::AwaitReplica) return;
  if (worker_.runtime().replay.get(awaitBackend_) >= route_.replayNeeded()) {
    queueFor(awaitBackend_);
    return;
  }
  if (nowMs < awaitUntilMs_) return;
  ++worker_.runtime().replicaWaitFallbacks;
  spdlog::debug("client {}: replica backend {} has not replayed {:X} within {} ms; reading "
                "from the primary",
                cancelPid_, awaitBackend_, route_.replayNeeded(), cfg_->routing.maxWaitMs);
  route_.readOnPrimary();
  requestServer();
}

}  // namespace pgswitch::proxy
