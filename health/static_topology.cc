// Static topology: first backend primary, the rest replicas.
#include "health/static_topology.h"

namespace pgswitch::health {

routing::TopologyPtr staticTopology(std::vector<routing::BackendInfo> backends) {
  auto t = std::make_shared<routing::Topology>();
  t->backends = std::move(backends);
  for (size_t i = 0; i < t->backends.size(); ++i) {
    routing::BackendInfo& b = t->backends[i];
    if (b.state == routing::BackendState::Removed) {
      b.role = routing::Role::Unknown;
      continue;
    }
    b.role = t->primary < 0 ? routing::Role::Primary : routing::Role::Replica;
    b.state = routing::BackendState::Up;
    if (t->primary < 0) t->primary = static_cast<int>(i);
  }
  t->version = 1;
  return t;
}

}  // namespace pgswitch::health
