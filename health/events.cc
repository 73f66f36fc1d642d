// Rendering of health events for logs and hook environments.
#include "health/events.h"

#include <ctime>

namespace pgswitch::health {

const char* toString(EventType t) {
  switch (t) {
    case EventType::BackendUp:
      return "backend_up";
    case EventType::BackendDown:
      return "backend_down";
    case EventType::RoleChanged:
      return "role_changed";
    case EventType::SplitBrain:
      return "split_brain";
    case EventType::Fenced:
      return "fenced";
    case EventType::LagExceeded:
      return "lag_exceeded";
    case EventType::FailoverStarted:
      return "failover_started";
    case EventType::FailoverRefused:
      return "failover_refused";
    case EventType::FailoverFailed:
      return "failover_failed";
    case EventType::Promoted:
      return "promoted";
    case EventType::Repointed:
      return "repointed";
    case EventType::RepointFailed:
      return "repoint_failed";
    case EventType::FailoverDone:
      return "failover_done";
    case EventType::SwitchoverStarted:
      return "switchover_started";
    case EventType::SwitchoverFailed:
      return "switchover_failed";
    case EventType::SwitchoverDone:
      return "switchover_done";
    case EventType::PatroniUnreachable:
      return "patroni_unreachable";
    case EventType::PatroniReachable:
      return "patroni_reachable";
    case EventType::CoordinationLeader:
      return "coordination_leader";
    case EventType::CoordinationLost:
      return "coordination_lost";
    case EventType::EtcdUnreachable:
      return "etcd_unreachable";
    case EventType::EtcdReachable:
      return "etcd_reachable";
    case EventType::DecisionWritten:
      return "decision_written";
    case EventType::DecisionAdopted:
      return "decision_adopted";
    case EventType::FailoverClients:
      return "failover_clients";
  }
  return "?";
}

bool isWarning(EventType t) {
  switch (t) {
    case EventType::BackendDown:
    case EventType::SplitBrain:
    case EventType::Fenced:
    case EventType::LagExceeded:
    case EventType::FailoverStarted:
    case EventType::FailoverRefused:
    case EventType::FailoverFailed:
    case EventType::RepointFailed:
    case EventType::SwitchoverFailed:
    case EventType::PatroniUnreachable:
    case EventType::CoordinationLost:
    case EventType::EtcdUnreachable:
      return true;
    case EventType::BackendUp:
    case EventType::RoleChanged:
    case EventType::Promoted:
    case EventType::Repointed:
    case EventType::FailoverDone:
    case EventType::SwitchoverStarted:
    case EventType::SwitchoverDone:
    case EventType::PatroniReachable:
    case EventType::CoordinationLeader:
    case EventType::EtcdReachable:
    case EventType::DecisionWritten:
    case EventType::DecisionAdopted:
    case EventType::FailoverClients:
      return false;
  }
  return false;
}

namespace {

// logfmt: bare when the value is a simple token, else double-quoted with \" and \\ escaped.
void appendValue(std::string& out, const std::string& v) {
  bool bare = !v.empty();
  for (char c : v) {
    if (c == ' ' || c == '"' || c == '=' || c == '\\' || static_cast<unsigned char>(c) < 0x21) {
      bare = false;
      break;
    }
  }
  if (bare) {
    out += v;
    return;
  }
  out += '"';
  for (char c : v) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';
    } else {
      out += c;
    }
  }
  out += '"';
}

}  // namespace

std::string formatLogfmt(const Event& e) {
  std::string out = "event=";
  out += toString(e.type);
  out += " backend=";
  appendValue(out, e.name);
  out += " host=";
  appendValue(out, e.host);
  out += " port=" + std::to_string(e.port);
  out += " role=";
  appendValue(out, e.role);
  out += " detail=";
  appendValue(out, e.detail);
  return out;
}

std::string formatTimeUtc(int64_t epochMs) {
  time_t secs = static_cast<time_t>(epochMs / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[40];
  size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + n, sizeof buf - n, ".%03dZ", static_cast<int>(epochMs % 1000));
  return buf;
}

std::vector<std::string> eventEnvironment(const Event& e) {
  return {
      std::string("PGSWITCH_EVENT=") + toString(e.type),
      "PGSWITCH_BACKEND=" + e.name,
      "PGSWITCH_HOST=" + e.host,
      "PGSWITCH_PORT=" + std::to_string(e.port),
      "PGSWITCH_ROLE=" + e.role,
      "PGSWITCH_DETAIL=" + e.detail,
      "PGSWITCH_TIME=" + formatTimeUtc(e.timeMs),
  };
}

}  // namespace pgswitch::health
