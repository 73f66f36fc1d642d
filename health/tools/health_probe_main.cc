// health_probe_tool: runs a HealthMonitor against backends given on the command line and
// prints every published topology and every event as one JSON line on stdout (for the
// integration tests and for poking at a cluster by hand). Commands on stdin: recheck N,
// fence N, attach N, disable N, enable N, drain N, undrain N, promote N,
// switchover N [TIMEOUT_MS], quit (EOF quits too). Promote and switchover answer with a
// {"type":"result",...} line.
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "health/health_monitor.h"

using namespace pgswitch;
using namespace pgswitch::health;

namespace {

std::mutex outMu;

void emit(const std::string& line) {
  std::lock_guard g(outMu);
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

// Invalid UTF-8 in a name or a server's message becomes U+FFFD rather than an exception.
std::string jsonLine(const nlohmann::ordered_json& j) {
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

std::string topologyJson(const routing::Topology& t) {
  nlohmann::ordered_json backends = nlohmann::ordered_json::array();
  for (const auto& b : t.backends) {
    backends.push_back({{"name", b.name},
                        {"host", b.host},
                        {"port", b.port},
                        {"role", routing::toString(b.role)},
                        {"state", routing::toString(b.state)},
                        {"timeline", b.timeline},
                        {"lag_bytes", b.lagBytes},
                        {"lag_ms", b.lagMs},
                        {"replay_lsn", b.replayLsn},
                        {"weight", b.weight}});
  }
  return jsonLine({{"type", "topology"},
                   {"version", t.version},
                   {"primary", t.primary},
                   {"writes_refused", t.writesRefused},
                   {"writes_paused", t.writesPaused},
                   {"backends", std::move(backends)}});
}

std::string eventJson(const Event& e) {
  return jsonLine({{"type", "event"},
                   {"event", toString(e.type)},
                   {"index", e.backend},
                   {"backend", e.name},
                   {"host", e.host},
                   {"port", e.port},
                   {"role", e.role},
                   {"detail", e.detail},
                   {"time_ms", e.timeMs}});
}

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "health_probe_tool: %s\n"
               "usage: health_probe_tool --backend NAME=HOST:PORT [--backend ...]\n"
               "  [--period-ms N] [--connect-timeout-ms N] [--query-timeout-ms N]\n"
               "  [--fall N] [--rise N] [--user U] [--password P] [--database D]\n"
               "  [--max-lag-bytes N] [--max-lag-ms N] [--on-event CMD] [--log-level L]\n"
               "  [--auto-failover 0|1] [--failover-after N] [--max-failover-lag-bytes N]\n"
               "  [--repoint-replicas 0|1] [--promote-timeout-ms N] [--failover-user U]\n"
               "  [--failover-password P] [--no-promote NAME] [--priority NAME=N]\n"
               "  [--patroni-url URL [--patroni-url ...]] [--patroni-period-ms N]\n",
               why);
  std::exit(2);
}

void onSignal(int) {}  // only interrupts the blocking read of stdin

}  // namespace

int main(int argc, char** argv) {
  HealthSettings s;
  FailoverSettings f;
  PatroniSettings patroni;
  std::vector<BackendSpec> backends;
  std::vector<std::string> noPromote;
  std::vector<std::pair<std::string, int>> priorities;
  std::string logLevel = "info";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) usage(("missing value for " + a).c_str());
    std::string v = argv[++i];
    try {
      if (a == "--backend") {
        auto eq = v.find('='), colon = v.rfind(':');
        if (eq == std::string::npos || colon == std::string::npos || colon < eq) {
          usage("--backend wants NAME=HOST:PORT");
        }
        BackendSpec b;
        b.name = v.substr(0, eq);
        b.host = v.substr(eq + 1, colon - eq - 1);
        b.port = std::stoi(v.substr(colon + 1));
        backends.push_back(b);
      } else if (a == "--period-ms") {
        s.periodMs = std::stoi(v);
      } else if (a == "--connect-timeout-ms") {
        s.connectTimeoutMs = std::stoi(v);
      } else if (a == "--query-timeout-ms") {
        s.queryTimeoutMs = std::stoi(v);
      } else if (a == "--fall") {
        s.fall = std::stoi(v);
      } else if (a == "--rise") {
        s.rise = std::stoi(v);
      } else if (a == "--user") {
        s.login.user = v;
      } else if (a == "--password") {
        s.login.password = v;
      } else if (a == "--database") {
        s.login.database = v;
      } else if (a == "--max-lag-bytes") {
        s.maxLagBytes = std::stoull(v);
      } else if (a == "--max-lag-ms") {
        s.maxLagMs = std::stoull(v);
      } else if (a == "--on-event") {
        s.onEvent = v;
      } else if (a == "--log-level") {
        logLevel = v;
      } else if (a == "--auto-failover") {
        f.autoFailover = std::stoi(v) != 0;
      } else if (a == "--failover-after") {
        f.failoverAfter = std::stoi(v);
      } else if (a == "--max-failover-lag-bytes") {
        f.maxFailoverLagBytes = std::stoull(v);
      } else if (a == "--repoint-replicas") {
        f.repointReplicas = std::stoi(v) != 0;
      } else if (a == "--promote-timeout-ms") {
        f.promoteTimeoutMs = std::stoi(v);
      } else if (a == "--failover-user") {
        f.user = v;
      } else if (a == "--failover-password") {
        f.password = v;
      } else if (a == "--patroni-url") {
        patroni.urls.push_back(v);
      } else if (a == "--patroni-period-ms") {
        patroni.periodMs = std::stoi(v);
      } else if (a == "--no-promote") {
        noPromote.push_back(v);
      } else if (a == "--priority") {
        auto eq = v.find('=');
        if (eq == std::string::npos) usage("--priority wants NAME=N");
        priorities.emplace_back(v.substr(0, eq), std::stoi(v.substr(eq + 1)));
      } else {
        usage(("unknown argument " + a).c_str());
      }
    } catch (const std::exception&) {
      usage(("bad value for " + a).c_str());
    }
  }
  if (backends.empty()) usage("no --backend given");
  for (auto& b : backends) {
    for (auto& n : noPromote) {
      if (n == b.name) b.tags.push_back("no_promote");
    }
    for (auto& [n, pr] : priorities) {
      if (n == b.name) b.priority = pr;
    }
  }

  spdlog::set_default_logger(spdlog::stderr_color_mt("health"));
  spdlog::set_level(spdlog::level::from_str(logLevel));
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %l [%t] %v");

  struct sigaction sa {};
  sa.sa_handler = onSignal;  // no SA_RESTART: the read of stdin returns
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  HealthMonitor mon(s, backends, [](routing::TopologyPtr t) { emit(topologyJson(*t)); });
  mon.setEventListener([](const Event& e) { emit(eventJson(e)); });
  mon.setFailover(f);
  mon.setPatroni(patroni);
  mon.start();
  auto answer = [](const char* op) {
    return [op](const OperationResult& r) {
      emit(jsonLine({{"type", "result"},
                     {"op", op},
                     {"ok", r.ok},
                     {"new_primary", r.newPrimary},
                     {"error", r.error},
                     {"detail", r.detail}}));
    };
  };

  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string cmd;
    int idx = -1;
    in >> cmd >> idx;
    if (cmd == "quit") break;
    if (cmd == "recheck") {
      mon.recheck(idx);
    } else if (cmd == "fence") {
      mon.fence(idx);
    } else if (cmd == "attach") {
      mon.attach(idx);
    } else if (cmd == "disable") {
      mon.setDisabled(idx, true);
    } else if (cmd == "enable") {
      mon.setDisabled(idx, false);
    } else if (cmd == "drain") {
      mon.setDraining(idx, true);
    } else if (cmd == "undrain") {
      mon.setDraining(idx, false);
    } else if (cmd == "promote") {
      mon.promote(idx, answer("promote"));
    } else if (cmd == "switchover") {
      int timeoutMs = 0;
      in >> timeoutMs;
      mon.switchover(idx, timeoutMs, answer("switchover"));
    } else if (!cmd.empty()) {
      spdlog::warn("unknown command: {}", line);
    }
  }
  mon.stop();
  bool clean = mon.stoppedCleanly();
  emit(jsonLine({{"type", "exit"}, {"clean", clean}}));
  spdlog::shutdown();
  return clean ? 0 : 3;
}
