// The topology used before (or without) health checks: the first backend is the primary,
// the rest are replicas, all up. Backends that come in as Removed stay removed and are skipped.
#pragma once

#include <vector>

#include "routing/topology.h"

namespace pgswitch::health {

routing::TopologyPtr staticTopology(std::vector<routing::BackendInfo> backends);

}  // namespace pgswitch::health
