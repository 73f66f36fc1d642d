// HttpClient: HTTP requests on a libuv loop through libcurl's multi interface (the documented
// curl_multi_socket_action pattern: libcurl tells us which sockets to watch with uv_poll_t and
// when to time out with one uv_timer_t). One instance per loop, used by the health thread to
// read Patroni's REST API; never blocks the loop.
#pragma once

#include <uv.h>

#include <functional>
#include <set>
#include <string>

#include "health/heap_timer.h"

namespace pgswitch::health {

struct HttpResponse {
  bool ok = false;    // a response arrived (any status); false: transport error
  long status = 0;    // HTTP status when ok
  std::string body;   // capped at kMaxBody
  std::string error;  // transport error text when !ok
};

struct HttpRequest {
  std::string url;
  std::string method = "GET";      // GET or POST
  std::string body;                // POST body (sent as application/json)
  int timeoutMs = 2000;            // the whole request, connect included
  std::string username, password;  // HTTP basic auth when username is set
  std::string caFile;              // https: CA bundle ("" = the system's)
};

class HttpClient {
 public:
  using Done = std::function<void(HttpResponse)>;
  static constexpr size_t kMaxBody = 1 << 20;

  explicit HttpClient(uv_loop_t* loop);
  ~HttpClient();  // close() must have been called and the loop run since
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Starts a request; `done` runs exactly once on the loop (later, never inside send()),
  // unless close() comes first: then it runs from close() with "client closed".
  void send(HttpRequest req, Done done);
  // Number of requests in flight.
  int inFlight() const { return static_cast<int>(live_.size()); }
  // Abandons every request and closes the handles (their close callbacks free them).
  void close();

  struct Transfer;     // one request (libcurl easy handle, body, callback)
  struct SocketWatch;  // one uv_poll_t for a socket libcurl asked us to watch

 private:
  static int onSocket(void* easy, int fd, int what, void* userp, void* socketp) noexcept;
  static int onTimer(void* multi, long timeoutMs, void* userp) noexcept;
  static void onTimeout(uv_timer_t* t) noexcept;
  static void onPoll(uv_poll_t* p, int status, int events) noexcept;
  void drive(int fd, int flags);
  void finishDone();

  uv_loop_t* loop_;
  void* multi_ = nullptr;           // CURLM*
  HeapTimer timer_;
  std::set<Transfer*> live_;        // added to the multi handle, not finished
  std::set<SocketWatch*> watches_;  // polls libcurl asked for and has not removed
  bool closed_ = false;
};

}  // namespace pgswitch::health
