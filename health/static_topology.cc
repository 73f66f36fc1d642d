// Static topology: first backend primary, the rest replicas.
#include "health/static_topology.h"

namespace pgswitch::health {

routing::TopologyPtr staticTopology(std::vector<routing::BackendInfo> backends) {
  auto t = std::make_shared<routing::Topology>();
  t->backends = std::move(backends);
  for (size_t i = 0; i < t->backends.size(); ++i) {
    t->backends[i].role = i == 0 ? routing::Role::Primary : routing::Role::Replica;
    t->backends[i].state = routing::BackendState::Up;
  }
  t->primary = t->backends.empty() ? -1 : 0;
  t->version = 1;
  return t;
}

}  // namespace pgswitch::health
