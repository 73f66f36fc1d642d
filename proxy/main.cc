// pgswitch entry point: arguments, config load (or --check), logging, worker threads, and
// the main loop that turns signals into shutdown (SIGTERM now, SIGINT after the running
// transactions) and reload (SIGHUP), telling a service manager (systemd) as it goes.
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <uv.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "health/static_topology.h"
#include "proxy/config/config.h"
#include "proxy/admin/console_actions.h"
#include "proxy/core/controller.h"
#include "proxy/admin/http_server.h"
#include "proxy/core/runtime.h"
#include "proxy/core/service_notify.h"
#include "proxy/core/worker.h"
#include "proxy/session/client_session.h"

using namespace pgswitch;
using namespace pgswitch::proxy;

namespace {

// Where the Debian package (packaging/) puts the configuration; --config overrides it.
constexpr const char* kDefaultConfigPath = "/etc/pgswitch/pgswitch.toml";

void usage() {
  std::puts(
      "usage: pgswitch [--config FILE] [--check]\n"
      "  --config FILE  TOML configuration (see README.md); default /etc/pgswitch/pgswitch.toml\n"
      "  --check        validate the configuration and exit (non-zero on errors)\n"
      "  --version      print the version and exit");
}

void setupLogging(const Config& cfg) {
  std::shared_ptr<spdlog::logger> logger;
  if (!cfg.logFile.empty()) {
    logger = spdlog::basic_logger_mt("pgswitch", cfg.logFile);
  } else {
    logger = spdlog::stderr_color_mt("pgswitch");
  }
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(cfg.logLevel));
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ [%t] %v");
  spdlog::flush_every(std::chrono::seconds(1));
}

std::vector<routing::BackendInfo> backendInfos(const Config& cfg) {
  std::vector<routing::BackendInfo> v;
  for (auto& b : cfg.backends) {
    routing::BackendInfo i;
    i.name = b.name;
    i.host = b.host;
    i.port = b.port;
    i.weight = b.weight;
    i.tags = b.tags;
    v.push_back(std::move(i));
  }
  return v;
}

struct MainLoop {
  uv_loop_t loop;
  uv_signal_t sigint, sigterm, sighup;
  uv_async_t shutdownAsync;  // the console's SHUTDOWN [WAIT], from a worker thread
  uv_timer_t waitTimer;      // SHUTDOWN WAIT: polls for the workers to finish
  std::vector<std::unique_ptr<Worker>>* workers = nullptr;
  Controller* controller = nullptr;
  HttpServer* http = nullptr;
  std::mutex requestMu;
  int request = 0;  // 1 = SHUTDOWN WAIT, 2 = SHUTDOWN (under requestMu)
  bool asyncClosed = false;  // under requestMu
  bool stopping = false;     // handles closed, workers told to stop now
  bool draining = false;     // SHUTDOWN WAIT in progress
};

void closeHandle(void* h) {
  auto* handle = static_cast<uv_handle_t*>(h);
  if (!uv_is_closing(handle)) uv_close(handle, nullptr);
}

// Everything on the main loop closes, so uv_run returns once the workers are told to stop.
void closeMainHandles(MainLoop* m) {
  closeHandle(&m->sigint);
  closeHandle(&m->sigterm);
  closeHandle(&m->sighup);
  closeHandle(&m->waitTimer);
  {
    std::lock_guard g(m->requestMu);
    m->asyncClosed = true;
  }
  closeHandle(&m->shutdownAsync);
  if (m->http) m->http->close([] {});
}

void stopNow(MainLoop* m) {
  if (m->stopping) return;
  m->stopping = true;
  notifyServiceManager("STOPPING=1\nSTATUS=stopping: closing every session");
  for (auto& w : *m->workers) w->stop();
  closeMainHandles(m);
}

void onStopSignal(uv_signal_t* h, int signum) {
  auto* m = static_cast<MainLoop*>(h->data);
  spdlog::info("received signal {}, shutting down", signum);
  stopNow(m);
}

void onWaitTimer(uv_timer_t* t) {
  auto* m = static_cast<MainLoop*>(t->data);
  for (auto& w : *m->workers)
    if (!w->finished()) return;
  spdlog::info("SHUTDOWN WAIT: every session finished");
  m->stopping = true;
  closeMainHandles(m);
}

// Stop accepting and let the sessions finish their transactions; SIGTERM still forces.
void startDrain(MainLoop* m) {
  if (m->draining || m->stopping) return;
  m->draining = true;
  notifyServiceManager("STOPPING=1\nSTATUS=draining: waiting for running transactions");
  for (auto& w : *m->workers) w->stopGraceful();
  closeHandle(&m->sighup);
  if (m->http) m->http->close([] {});
  uv_timer_start(&m->waitTimer, onWaitTimer, 100, 100);
}

void onShutdownRequest(uv_async_t* a) {
  auto* m = static_cast<MainLoop*>(a->data);
  int req;
  {
    std::lock_guard g(m->requestMu);
    req = m->request;
  }
  if (req == 2) {
    stopNow(m);
    return;
  }
  if (req == 1) startDrain(m);
}

// SIGINT is SHUTDOWN WAIT, as in PgBouncer ("safe shutdown"): what `systemctl stop` sends
// (packaging/pgswitch.service, KillSignal=SIGINT). A second SIGINT, or SIGTERM, stops at once.
void onIntSignal(uv_signal_t* h, int) {
  auto* m = static_cast<MainLoop*>(h->data);
  if (m->draining) {
    spdlog::info("received SIGINT again, shutting down now");
    stopNow(m);
    return;
  }
  spdlog::info("received SIGINT: closing the listeners, sessions end after their transaction "
               "(SIGINT again or SIGTERM: at once)");
  startDrain(m);
}

bool splitHostPort(const std::string& s, std::string& host, int& port) {
  size_t colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 >= s.size()) return false;
  host = s.substr(0, colon);
  try {
    size_t used = 0;
    port = std::stoi(s.substr(colon + 1), &used);
    return used == s.size() - colon - 1 && port >= 0 && port <= 65535;
  } catch (...) {
    return false;
  }
}

void onHup(uv_signal_t* h, int) {
  static_cast<MainLoop*>(h->data)->controller->reload();
}

}  // namespace

int main(int argc, char** argv) {
  std::string configPath;
  bool check = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if ((a == "--config" || a == "-c") && i + 1 < argc) {
      configPath = argv[++i];
    } else if (a.rfind("--config=", 0) == 0) {
      configPath = a.substr(9);
    } else if (a == "--check") {
      check = true;
    } else if (a == "--version") {
      std::puts("pgswitch 0.1.0");
      return 0;
    } else if (a == "--help" || a == "-h") {
      usage();
      return 0;
    } else {
      std::fprintf(stderr, "pgswitch: unknown argument %s\n", a.c_str());
      usage();
      return 2;
    }
  }
  if (configPath.empty()) configPath = kDefaultConfigPath;
  auto loaded = loadConfig(configPath);
  if (!loaded) {
    std::fputs(loaded.error().joined().c_str(), stderr);
    return 1;
  }
  std::shared_ptr<const Config> cfg = *loaded;
  auto tls = buildTlsContexts(cfg->tls);
  if (!tls) {
    std::fprintf(stderr, "%s: %s\n", configPath.c_str(), tls.error().c_str());
    return 1;
  }
  if (check) {
    std::printf("%s: configuration is valid (%zu backends, %zu users)\n", configPath.c_str(),
                cfg->backends.size(), cfg->users.size());
    return 0;
  }

  try {
    setupLogging(*cfg);
    signal(SIGPIPE, SIG_IGN);
    // Every client and server connection is a descriptor: take the hard limit.
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
      rl.rlim_cur = rl.rlim_max;
      setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
        rl.rlim_cur < rlim_t(cfg->maxClientConn) + rlim_t(cfg->maxLoginClients) + 64) {
      spdlog::warn("the descriptor limit ({}) is below max_client_conn + max_login_clients "
                   "({} + {}) plus server connections: when it runs out, new clients get 53300 "
                   "(raise ulimit -n / LimitNOFILE)",
                   rl.rlim_cur, cfg->maxClientConn, cfg->maxLoginClients);
    }
    Runtime rt(cfg, health::staticTopology(backendInfos(*cfg)));
    rt.setTls(*tls);
    int n = cfg->workers > 0 ? cfg->workers
                             : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    std::vector<std::unique_ptr<Worker>> workers;
    int port = cfg->listenPort;
    for (int i = 0; i < n; ++i) {
      auto w = std::make_unique<Worker>(i, rt, &ClientSession::accept);
      w->setWorkerCount(n);
      workers.push_back(std::move(w));
    }
    workers.front()->listen(cfg->listenHost, port, cfg->tcpDeferAcceptS);  // Worker::listen
    if (port == 0) port = workers.front()->boundPort();
    for (auto& w : workers) rt.workers.push_back(w.get());
    spdlog::info("pgswitch listening on {}:{} ({} workers, pool_mode={}, {} backends)",
                 cfg->listenHost, port, n, toString(cfg->poolMode), cfg->backends.size());

    Controller controller(rt, configPath, workers);
    controller.start();
    std::vector<Worker*> workerPtrs;
    for (auto& w : workers) workerPtrs.push_back(w.get());
    ProxyControl control(rt, controller, workerPtrs);
    MainLoop m;
    uv_loop_init(&m.loop);
    m.workers = &workers;
    m.controller = &controller;
    for (auto* s : {&m.sigint, &m.sigterm, &m.sighup}) {
      uv_signal_init(&m.loop, s);
      s->data = &m;
    }
    uv_async_init(&m.loop, &m.shutdownAsync, onShutdownRequest);
    m.shutdownAsync.data = &m;
    uv_timer_init(&m.loop, &m.waitTimer);
    m.waitTimer.data = &m;
    control.setShutdownHandler([&m](bool wait) {
      std::lock_guard g(m.requestMu);
      if (m.asyncClosed) return;
      m.request = std::max(m.request, wait ? 1 : 2);
      uv_async_send(&m.shutdownAsync);
    });
    rt.control = &control;
    // /metrics, /status and the status page, served on the main loop: gathering a snapshot
    // there may wait for the workers, which never wait for the main thread.
    std::unique_ptr<HttpServer> http;
    if (!cfg->metricsListen.empty()) {
      std::string host;
      int mport = 0;
      if (!splitHostPort(cfg->metricsListen, host, mport)) {
        throw std::runtime_error("metrics_listen must be \"host:port\", got \"" +
                                 cfg->metricsListen + "\"");
      }
      http = std::make_unique<HttpServer>(&m.loop, [&control](HttpServer::Reply reply) {
        reply(control.gatherBlocking(std::chrono::milliseconds(2000)));
      });
      if (int rc = http->listen(host, mport); rc != 0) {
        throw std::runtime_error("cannot serve metrics on " + cfg->metricsListen + ": " +
                                 uv_strerror(rc));
      }
      m.http = http.get();
      spdlog::info("metrics and status page on http://{}:{}/", host, http->port());
    }
    uv_signal_start(&m.sigint, onIntSignal, SIGINT);
    uv_signal_start(&m.sigterm, onStopSignal, SIGTERM);
    uv_signal_start(&m.sighup, onHup, SIGHUP);
    for (auto& w : workers) w->start();
    // Controller::start() returned once the first real round of health checks was published
    // (or after its bounded wait), and the workers now accept: this is "ready" for systemd
    // (Type=notify), so units ordered after pgswitch start when clients can be served.
    notifyServiceManager("READY=1\nSTATUS=serving on " + cfg->listenHost + ":" +
                         std::to_string(port) + "\nMAINPID=" + std::to_string(getpid()));
    uv_run(&m.loop, UV_RUN_DEFAULT);
    for (auto& w : workers) w->join();
    rt.control = nullptr;
    controller.stop();
    workers.clear();
    uv_loop_close(&m.loop);
    spdlog::info("pgswitch stopped");
    spdlog::shutdown();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pgswitch: %s\n", e.what());
    return 1;
  }
  return 0;
}
