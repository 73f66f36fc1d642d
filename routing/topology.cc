// Names for topology enums (console, logs, metrics).
#include "routing/topology.h"

namespace pgswitch::routing {

const char* toString(Role r) {
  switch (r) {
    case Role::Unknown: return "unknown";
    case Role::Primary: return "primary";
    case Role::Replica: return "replica";
  }
  return "?";
}

const char* toString(BackendState s) {
  switch (s) {
    case BackendState::Up: return "up";
    case BackendState::Down: return "down";
    case BackendState::Fenced: return "fenced";
    case BackendState::Draining: return "draining";
    case BackendState::Disabled: return "disabled";
    case BackendState::Removed: return "removed";
  }
  return "?";
}

}  // namespace pgswitch::routing
