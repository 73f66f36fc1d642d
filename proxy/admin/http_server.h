// A minimal HTTP/1.1 server on a libuv loop for the observability endpoints: GET /metrics
// (Prometheus), GET /status (JSON), GET / (the status page). One request per connection
// (Connection: close), requests capped at 8 KiB; not a general-purpose web server.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <string>
#include <unordered_map>

#include "proxy/core/stats.h"

namespace pgswitch::proxy {

class HttpServer {
 public:
  // Gathering a Snapshot may need other threads: the provider is handed a continuation it
  // calls with the Snapshot, later, on this server's loop thread (or right away). A
  // continuation that arrives after its connection closed (client gone, timeout, close()) is
  // ignored, so the provider needs no cancellation.
  using Reply = std::function<void(Snapshot)>;
  using SnapshotProvider = std::function<void(Reply)>;

  static constexpr size_t kMaxRequestBytes = 8 * 1024;
  static constexpr uint64_t kConnectionTimeoutMs = 10000;  // whole exchange, incl. slow clients
  static constexpr size_t kMaxConnections = 128;           // beyond: accepted and closed

  HttpServer(uv_loop_t* loop, SnapshotProvider provider);
  // Destroy only after close()'s done ran (or if listen() was never called).
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and listens. host is an IPv4 or IPv6 literal ("[::1]" accepted); port 0 picks a
  // free one (see port()). Returns 0 or a libuv error code (uv_strerror explains it).
  int listen(const std::string& host, int port);
  int port() const;  // the bound port, 0 when not listening

  // Stops listening and closes every connection; done runs (on the loop) once every handle's
  // close callback has run, possibly before close() returns when nothing was open.
  void close(std::function<void()> done);

 private:
  struct Conn;
  static void onConnection(uv_stream_t* s, int status) noexcept;
  static void onListenerClosed(uv_handle_t* h) noexcept;
  static void onAlloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf) noexcept;
  static void onRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) noexcept;
  static void onWrite(uv_write_t* w, int status) noexcept;
  static void onShutdown(uv_shutdown_t* r, int status) noexcept;
  static void onTimeout(uv_timer_t* t) noexcept;
  static void onConnClosed(uv_handle_t* h) noexcept;

  void handleRequest(Conn& c);
  void respond(Conn& c, int status, std::string_view contentType, std::string body,
               std::string_view extraHeaders = {});
  void closeConn(Conn& c);
  void maybeDone();

  uv_loop_t* loop_;
  SnapshotProvider provider_;
  uv_tcp_t listener_{};
  bool listenerOpen_ = false;  // initialised and not yet closed
  bool closing_ = false;
  std::function<void()> done_;
  // Connections are shared only so that a late snapshot continuation can tell (weak_ptr)
  // whether its connection still exists; the map is the owner.
  std::unordered_map<Conn*, std::shared_ptr<Conn>> conns_;
};

}  // namespace pgswitch::proxy
