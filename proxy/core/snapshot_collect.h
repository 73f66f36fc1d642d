// Gathering a Snapshot from every worker without making any worker wait for another: a
// collect job is posted to each worker, each fills its own part on its own thread, and the
// last one to finish merges the parts and hands the Snapshot on.
#pragma once

#include <functional>
#include <vector>

#include "proxy/core/stats.h"

namespace pgswitch::proxy {

class Worker;

// One worker's share, filled by Worker::collectInto on that worker's thread.
struct WorkerPart {
  std::vector<ClientInfo> clients;
  std::vector<ServerInfo> servers;
  std::vector<PoolInfo> pools;  // per (backend, database, user) on this worker
  std::vector<BackendCounters> counters;
};

// Starts collecting. `base` carries what is not per worker (config, topology, events,
// process counters). `done` runs exactly once with the merged Snapshot: on the thread of the
// last worker to answer, or on the caller's thread when no worker could take the job (all
// shutting down). Workers that are shutting down are skipped.
void collectSnapshot(const std::vector<Worker*>& workers, Snapshot base,
                     std::function<void(Snapshot)> done);

// Merges the parts into base: clients and servers concatenated (ordered by worker, then
// id), pools of the same (backend, database, user) summed, counters added per backend.
Snapshot mergeParts(Snapshot base, std::vector<WorkerPart>& parts);

}  // namespace pgswitch::proxy
