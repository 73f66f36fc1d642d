// The SHOW commands: each renders one part of the Snapshot as a result set psql prints as a
// table. Numbers are typed int4/int8 so clients align and parse them as numbers.
#include <string>

#include "health/events.h"
#include "proxy/admin/console_internal.h"
#include "proxy/admin/totals.h"

namespace pgswitch::proxy::console {
namespace {

using RS = ResultSet;

std::string joinTags(const std::vector<std::string>& tags) {
  std::string s;
  for (const auto& t : tags) {
    if (!s.empty()) s += ',';
    s += t;
  }
  return s;
}

}  // namespace

Outcome showBackends(const Context& c) {
  if (!noArgs(c, "SHOW BACKENDS")) return Outcome::Error;
  RS rs({{"name", RS::kText},
         {"host", RS::kText},
         {"port", RS::kInt4},
         {"role", RS::kText},
         {"state", RS::kText},
         {"weight", RS::kInt4},
         {"tags", RS::kText},
         {"lag_bytes", RS::kInt8},
         {"lag_ms", RS::kInt8},
         {"timeline", RS::kInt8},
         {"server_connections", RS::kInt8},
         {"reads", RS::kInt8},
         {"writes", RS::kInt8}});
  const Snapshot& s = c.snap;
  if (s.topology) {
    const auto& bs = s.topology->backends;
    for (size_t i = 0; i < bs.size(); ++i) {
      const routing::BackendInfo& b = bs[i];
      if (b.state == routing::BackendState::Removed) continue;  // a reload took it out
      const BackendCounters& k = s.counters(i);
      rs.row()
          .add(b.name)
          .add(b.host)
          .add(b.port)
          .add(routing::toString(b.role))
          .add(routing::toString(b.state))
          .add(b.weight)
          .add(joinTags(b.tags))
          .add(b.lagBytes)
          .add(b.lagMs)
          .add(static_cast<uint64_t>(b.timeline))
          .add(s.serversOf(b.name))
          .add(k.reads)
          .add(k.writes);
    }
  } else if (s.config) {
    // No health result yet: what the configuration says, with nothing known.
    for (size_t i = 0; i < s.config->backends.size(); ++i) {
      const BackendConfig& b = s.config->backends[i];
      const BackendCounters& k = s.counters(i);
      rs.row()
          .add(b.name)
          .add(b.host)
          .add(b.port)
          .add("unknown")
          .add("unknown")
          .add(b.weight)
          .add(joinTags(b.tags))
          .null()
          .null()
          .null()
          .add(s.serversOf(b.name))
          .add(k.reads)
          .add(k.writes);
    }
  }
  rs.write(c.out);
  return Outcome::Ok;
}

Outcome showPools(const Context& c) {
  if (!noArgs(c, "SHOW POOLS")) return Outcome::Error;
  RS rs({{"database", RS::kText},
         {"user", RS::kText},
         {"backend", RS::kText},
         {"pool_mode", RS::kText},
         {"cl_active", RS::kInt4},
         {"cl_waiting", RS::kInt4},
         {"sv_active", RS::kInt4},
         {"sv_idle", RS::kInt4},
         {"sv_connecting", RS::kInt4},
         {"sv_total", RS::kInt4},
         {"pool_size", RS::kInt4},
         {"maxwait_ms", RS::kInt8}});
  for (const PoolInfo& p : c.snap.pools) {
    rs.row()
        .add(p.database)
        .add(p.user)
        .add(p.backend)
        .add(p.mode)
        .add(p.clientsActive)
        .add(p.clientsWaiting)
        .add(p.serversActive)
        .add(p.serversIdle)
        .add(p.serversConnecting)
        .add(p.serversTotal)
        .add(p.poolSize)
        .add(p.maxWaitMs);
  }
  rs.write(c.out);
  return Outcome::Ok;
}

Outcome showClients(const Context& c) {
  if (!noArgs(c, "SHOW CLIENTS")) return Outcome::Error;
  RS rs({{"id", RS::kInt4},
         {"worker", RS::kInt4},
         {"user", RS::kText},
         {"database", RS::kText},
         {"application_name", RS::kText},
         {"addr", RS::kText},
         {"state", RS::kText},
         {"age_ms", RS::kInt8},
         {"server_id", RS::kInt8},
         {"pinned", RS::kBool},
         {"pin_reason", RS::kText}});
  for (const ClientInfo& ci : c.snap.clients) {
    rs.row()
        .add(ci.id)
        .add(ci.worker)
        .add(ci.user)
        .add(ci.database)
        .add(ci.applicationName)
        .add(ci.addr)
        .add(ci.state)
        .add(ci.connectedMs);
    if (ci.serverId) {
      rs.add(ci.serverId);
    } else {
      rs.null();
    }
    rs.add(ci.pinned).add(ci.pinReason);
  }
  rs.write(c.out);
  return Outcome::Ok;
}

Outcome showServers(const Context& c) {
  if (!noArgs(c, "SHOW SERVERS")) return Outcome::Error;
  RS rs({{"id", RS::kInt8},
         {"worker", RS::kInt4},
         {"backend", RS::kText},
         {"database", RS::kText},
         {"user", RS::kText},
         {"state", RS::kText},
         {"txn_status", RS::kText},
         {"age_ms", RS::kInt8},
         {"idle_ms", RS::kInt8},
         {"client_id", RS::kInt4},
         {"backend_pid", RS::kInt4},
         {"prepared_statements", RS::kInt8}});
  for (const ServerInfo& si : c.snap.servers) {
    rs.row()
        .add(si.id)
        .add(si.worker)
        .add(si.backend)
        .add(si.database)
        .add(si.user)
        .add(si.state)
        .add(std::string(1, si.txnStatus))
        .add(si.ageMs)
        .add(si.idleMs);
    if (si.clientId) {
      rs.add(si.clientId);
    } else {
      rs.null();
    }
    rs.add(si.backendPid).add(static_cast<uint64_t>(si.preparedStatements));
  }
  rs.write(c.out);
  return Outcome::Ok;
}

Outcome showStats(const Context& c) {
  if (!noArgs(c, "SHOW STATS")) return Outcome::Error;
  RS rs({{"backend", RS::kText},
         {"transactions", RS::kInt8},
         {"queries", RS::kInt8},
         {"reads", RS::kInt8},
         {"writes", RS::kInt8},
         {"bytes_in", RS::kInt8},
         {"bytes_out", RS::kInt8},
         {"avg_latency_us", RS::kInt8},
         {"p99_latency_us", RS::kInt8}});
  auto addRow = [&](const std::string& name, const BackendCounters& k) {
    rs.row()
        .add(name)
        .add(k.transactions)
        .add(k.queries)
        .add(k.reads)
        .add(k.writes)
        .add(k.bytesIn)
        .add(k.bytesOut)
        .add(k.latency.averageUs())
        .add(k.latency.percentileUs(0.99));
  };
  // A counter slot with no backend name (topology shrank since) is kept, numbered.
  std::vector<std::string> names = c.snap.backendNames();
  BackendCounters total;
  for (size_t i = 0; i < names.size(); ++i) {
    const BackendCounters& k = c.snap.counters(i);
    addRow(names[i], k);
    total.merge(k);
  }
  addRow("total", total);
  rs.write(c.out);
  return Outcome::Ok;
}

Outcome showConfig(const Context& c) {
  if (!noArgs(c, "SHOW CONFIG")) return Outcome::Error;
  RS rs({{"key", RS::kText}, {"value", RS::kText}, {"reloadable", RS::kBool}});
  if (c.snap.config) {
    for (const ConfigEntry& e : configEntries(*c.snap.config)) {
      rs.row().add(e.key).add(e.value).add(e.reloadable);
    }
  }
  rs.write(c.out);
  return Outcome::Ok;
}

Outcome showEvents(const Context& c) {
  if (!noArgs(c, "SHOW EVENTS")) return Outcome::Error;
  RS rs({{"time", RS::kText}, {"type", RS::kText}, {"backend", RS::kText}, {"detail", RS::kText}});
  for (const EventRecord& e : c.snap.events) {
    rs.row()
        .add(health::formatTimeUtc(static_cast<int64_t>(e.unixMs)))
        .add(e.type)
        .add(e.backend)
        .add(e.detail);
  }
  rs.write(c.out);
  return Outcome::Ok;
}

Outcome showCoordination(const Context& c) {
  if (!noArgs(c, "SHOW COORDINATION")) return Outcome::Error;
  const CoordinationInfo& k = c.snap.coordination;
  RS rs({{"key", RS::kText}, {"value", RS::kText}});
  rs.row().add("enabled").add(k.enabled ? "yes" : "no");
  if (k.enabled) {
    rs.row().add("instance").add(k.name);
    rs.row().add("leader").add(k.leader ? "yes" : "no");
    rs.row().add("may_promote").add(k.blocker.empty() ? std::string("yes") : "no: " + k.blocker);
    rs.row().add("last_decision").add(k.lastDecision);
  }
  rs.write(c.out);
  return Outcome::Ok;
}

Outcome showTotals(const Context& c) {
  if (!noArgs(c, "SHOW TOTALS")) return Outcome::Error;
  RS rs({{"name", RS::kText}, {"value", RS::kInt8}});
  for (const Total& t : totals(c.snap)) rs.row().add(t.name).add(t.value);
  rs.write(c.out);
  return Outcome::Ok;
}

Outcome showVersion(const Context& c) {
  if (!noArgs(c, "SHOW VERSION")) return Outcome::Error;
  RS rs({{"version", RS::kText}});
  rs.row().add("pgswitch " + std::string(kPgswitchVersion));
  rs.write(c.out);
  return Outcome::Ok;
}

}  // namespace pgswitch::proxy::console
