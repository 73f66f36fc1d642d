// pgswitch entry point: arguments, config load (or --check), logging, worker threads, and
// the main loop that turns signals into shutdown (SIGINT/SIGTERM) and reload (SIGHUP).
#include <signal.h>
#include <sys/resource.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <uv.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <thread>

#include "health/static_topology.h"
#include "proxy/config.h"
#include "proxy/controller.h"
#include "proxy/runtime.h"
#include "proxy/worker.h"

using namespace pgswitch;
using namespace pgswitch::proxy;

namespace {

void usage() {
  std::puts(
      "usage: pgswitch --config FILE [--check]\n"
      "  --config FILE  TOML configuration (see README.md)\n"
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
  std::vector<std::unique_ptr<Worker>>* workers = nullptr;
  Controller* controller = nullptr;
  bool stopping = false;
};

void onStopSignal(uv_signal_t* h, int signum) {
  auto* m = static_cast<MainLoop*>(h->data);
  if (m->stopping) return;
  m->stopping = true;
  spdlog::info("received signal {}, shutting down", signum);
  for (auto& w : *m->workers) w->stop();
  uv_close(reinterpret_cast<uv_handle_t*>(&m->sigint), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&m->sigterm), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&m->sighup), nullptr);
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
  if (configPath.empty()) {
    usage();
    return 2;
  }
  auto loaded = loadConfig(configPath);
  if (!loaded) {
    std::fputs(loaded.error().joined().c_str(), stderr);
    return 1;
  }
  std::shared_ptr<const Config> cfg = *loaded;
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
    Runtime rt(cfg, health::staticTopology(backendInfos(*cfg)));
    int n = cfg->workers > 0 ? cfg->workers
                             : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    std::vector<std::unique_ptr<Worker>> workers;
    int port = cfg->listenPort;
    for (int i = 0; i < n; ++i) {
      auto w = std::make_unique<Worker>(i, rt);
      w->setWorkerCount(n);
      w->listen(cfg->listenHost, port);
      if (port == 0) port = w->boundPort();
      workers.push_back(std::move(w));
    }
    spdlog::info("pgswitch listening on {}:{} ({} workers, pool_mode={}, {} backends)",
                 cfg->listenHost, port, n, toString(cfg->poolMode), cfg->backends.size());

    Controller controller(rt, configPath, workers);
    controller.start();
    MainLoop m;
    uv_loop_init(&m.loop);
    m.workers = &workers;
    m.controller = &controller;
    for (auto* s : {&m.sigint, &m.sigterm, &m.sighup}) {
      uv_signal_init(&m.loop, s);
      s->data = &m;
    }
    uv_signal_start(&m.sigint, onStopSignal, SIGINT);
    uv_signal_start(&m.sigterm, onStopSignal, SIGTERM);
    uv_signal_start(&m.sighup, onHup, SIGHUP);
    for (auto& w : workers) w->start();
    uv_run(&m.loop, UV_RUN_DEFAULT);
    for (auto& w : workers) w->join();
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
