// HTTP server handle lifetime: each connection owns a uv_tcp_t and a uv_timer_t and is freed
// only after both close callbacks ran. After the response is written the write side is shut
// down and the rest of the input drained until EOF, so that unread request bytes do not turn
// the close into a reset that could discard the response at the client.
#include "proxy/admin/http_server.h"

#include <algorithm>
#include <cassert>
#include <string_view>
#include <utility>

#include "proxy/admin/http_render.h"

namespace pgswitch::proxy {

struct HttpServer::Conn {
  HttpServer* server = nullptr;
  uv_tcp_t tcp{};
  uv_timer_t timer{};
  uv_write_t write{};
  uv_shutdown_t shutdown{};
  char buf[kMaxRequestBytes];
  size_t used = 0;
  bool requestDone = false;  // a response is on its way; further input is drained
  bool closing = false;
  int handlesOpen = 0;
  std::string response;  // lives until the write callback
};

namespace {

uv_handle_t* asHandle(auto* h) { return reinterpret_cast<uv_handle_t*>(h); }
uv_stream_t* asStream(auto* h) { return reinterpret_cast<uv_stream_t*>(h); }

const char* reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 503:
      return "Service Unavailable";
  }
  return "Error";
}

// End of the header block, or npos. Bare LF line ends are accepted as well.
size_t headerEnd(std::string_view s) {
  size_t crlf = s.find("\r\n\r\n");
  size_t lf = s.find("\n\n");
  if (crlf == std::string_view::npos) return lf;
  if (lf == std::string_view::npos) return crlf;
  return std::min(crlf, lf);
}

}  // namespace

HttpServer::HttpServer(uv_loop_t* loop, SnapshotProvider provider)
    : loop_(loop), provider_(std::move(provider)) {}

HttpServer::~HttpServer() {
  // Handles still registered with the loop would point into freed memory.
  assert(!listenerOpen_ && conns_.empty() && "HttpServer destroyed before close() finished");
}

int HttpServer::listen(const std::string& hostIn, int port) {
  if (listenerOpen_ || closing_) return UV_EINVAL;
  std::string host = hostIn;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  sockaddr_storage addr{};
  int rc = uv_ip4_addr(host.c_str(), port, reinterpret_cast<sockaddr_in*>(&addr));
  if (rc != 0) rc = uv_ip6_addr(host.c_str(), port, reinterpret_cast<sockaddr_in6*>(&addr));
  if (rc != 0) return rc;
  rc = uv_tcp_init(loop_, &listener_);
  if (rc != 0) return rc;
  listenerOpen_ = true;  // from here on close() must close it, whatever happens below
  listener_.data = this;
  rc = uv_tcp_bind(&listener_, reinterpret_cast<const sockaddr*>(&addr), 0);
  if (rc != 0) return rc;
  return uv_listen(asStream(&listener_), 128, &HttpServer::onConnection);
}

int HttpServer::port() const {
  if (!listenerOpen_) return 0;
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (uv_tcp_getsockname(&listener_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return 0;
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return 0;
}

void HttpServer::close(std::function<void()> done) {
  if (closing_) return;
  closing_ = true;
  done_ = std::move(done);
  if (listenerOpen_) uv_close(asHandle(&listener_), &HttpServer::onListenerClosed);
  // closeConn does not erase from the map (that happens in the close callbacks).
  for (auto& [raw, conn] : conns_) closeConn(*raw);
  maybeDone();
}

void HttpServer::maybeDone() {
  if (!closing_ || listenerOpen_ || !conns_.empty() || !done_) return;
  auto done = std::move(done_);
  done_ = nullptr;
  done();  // may destroy *this: nothing after it
}

void HttpServer::onListenerClosed(uv_handle_t* h) noexcept {
  auto* self = static_cast<HttpServer*>(h->data);
  self->listenerOpen_ = false;
  self->maybeDone();
}

void HttpServer::onConnection(uv_stream_t* s, int status) noexcept {
  auto* self = static_cast<HttpServer*>(s->data);
  if (status < 0 || self->closing_) return;
  auto conn = std::make_shared<Conn>();
  Conn& c = *conn;
  c.server = self;
  if (uv_tcp_init(self->loop_, &c.tcp) != 0) return;
  uv_timer_init(self->loop_, &c.timer);
  c.tcp.data = &c;
  c.timer.data = &c;
  c.handlesOpen = 2;
  self->conns_.emplace(&c, std::move(conn));
  if (uv_accept(s, asStream(&c.tcp)) != 0 || self->conns_.size() > kMaxConnections) {
    self->closeConn(c);
    return;
  }
  uv_timer_start(&c.timer, &HttpServer::onTimeout, kConnectionTimeoutMs, 0);
  if (uv_read_start(asStream(&c.tcp), &HttpServer::onAlloc, &HttpServer::onRead) != 0) {
    self->closeConn(c);
  }
}

void HttpServer::onAlloc(uv_handle_t* h, size_t, uv_buf_t* buf) noexcept {
  auto* c = static_cast<Conn*>(h->data);
  // Once answered, input is only drained: reuse the whole buffer.
  if (c->requestDone) {
    *buf = uv_buf_init(c->buf, sizeof c->buf);
  } else {
    *buf = uv_buf_init(c->buf + c->used, static_cast<unsigned>(sizeof c->buf - c->used));
  }
}

void HttpServer::onRead(uv_stream_t* s, ssize_t nread, const uv_buf_t*) noexcept {
  auto* c = static_cast<Conn*>(s->data);
  HttpServer* self = c->server;
  if (nread < 0) {  // EOF or error: nothing more to answer or drain
    self->closeConn(*c);
    return;
  }
  if (c->requestDone) return;  // draining after the response
  c->used += static_cast<size_t>(nread);
  std::string_view seen(c->buf, c->used);
  if (headerEnd(seen) != std::string_view::npos) {
    uv_read_stop(s);
    c->requestDone = true;
    self->handleRequest(*c);
  } else if (c->used == sizeof c->buf) {
    uv_read_stop(s);
    c->requestDone = true;
    self->respond(*c, 400, "text/plain; charset=utf-8", "request too large\n");
  }
}

void HttpServer::handleRequest(Conn& c) {
  std::string_view req(c.buf, c.used);
  std::string_view line = req.substr(0, req.find('\n'));
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp1 == 0 || sp2 == std::string_view::npos || sp2 == sp1 + 1 ||
      line.find(' ', sp2 + 1) != std::string_view::npos) {
    respond(c, 400, "text/plain; charset=utf-8", "bad request line\n");
    return;
  }
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  if (version.rfind("HTTP/1.", 0) != 0 || target.front() != '/') {
    respond(c, 400, "text/plain; charset=utf-8", "bad request line\n");
    return;
  }
  if (method != "GET") {
    respond(c, 405, "text/plain; charset=utf-8", "only GET is supported\n", "Allow: GET\r\n");
    return;
  }
  std::string_view path = target.substr(0, target.find_first_of("?#"));
  if (path == "/" || path == "/index.html") {
    respond(c, 200, "text/html; charset=utf-8", std::string(statusPageHtml()));
    return;
  }
  bool metrics = path == "/metrics";
  if (!metrics && path != "/status") {
    respond(c, 404, "text/plain; charset=utf-8", "not found; try /, /status or /metrics\n");
    return;
  }
  std::weak_ptr<Conn> weak = conns_.at(&c);
  provider_([weak, metrics](Snapshot snap) {
    std::shared_ptr<Conn> conn = weak.lock();
    if (!conn || conn->closing) return;
    if (metrics) {
      conn->server->respond(*conn, 200, "text/plain; version=0.0.4; charset=utf-8",
                            renderMetrics(snap));
    } else {
      conn->server->respond(*conn, 200, "application/json", renderStatusJson(snap));
    }
  });
}

void HttpServer::respond(Conn& c, int status, std::string_view contentType, std::string body,
                         std::string_view extraHeaders) {
  if (c.closing || !c.response.empty()) return;
  std::string& r = c.response;
  r.reserve(body.size() + 256);
  r += "HTTP/1.1 ";
  r += std::to_string(status);
  r += ' ';
  r += reason(status);
  r += "\r\nContent-Type: ";
  r += contentType;
  r += "\r\nContent-Length: ";
  r += std::to_string(body.size());
  r += "\r\nCache-Control: no-store\r\nConnection: close\r\n";
  r += extraHeaders;
  r += "\r\n";
  r += body;
  uv_buf_t b = uv_buf_init(r.data(), static_cast<unsigned>(r.size()));
  if (uv_write(&c.write, asStream(&c.tcp), &b, 1, &HttpServer::onWrite) != 0) closeConn(c);
}

void HttpServer::onWrite(uv_write_t* w, int status) noexcept {
  auto* c = static_cast<Conn*>(w->handle->data);
  if (status < 0 || c->closing) {
    c->server->closeConn(*c);
    return;
  }
  if (uv_shutdown(&c->shutdown, asStream(&c->tcp), &HttpServer::onShutdown) != 0) {
    c->server->closeConn(*c);
  }
}

void HttpServer::onShutdown(uv_shutdown_t* r, int status) noexcept {
  auto* c = static_cast<Conn*>(r->handle->data);
  if (status < 0 || c->closing) {
    c->server->closeConn(*c);
    return;
  }
  // Drain until the client closes its side (or the timer fires).
  if (uv_read_start(asStream(&c->tcp), &HttpServer::onAlloc, &HttpServer::onRead) != 0) {
    c->server->closeConn(*c);
  }
}

void HttpServer::onTimeout(uv_timer_t* t) noexcept {
  auto* c = static_cast<Conn*>(t->data);
  c->server->closeConn(*c);
}

void HttpServer::closeConn(Conn& c) {
  if (c.closing) return;
  c.closing = true;
  uv_close(asHandle(&c.tcp), &HttpServer::onConnClosed);
  uv_close(asHandle(&c.timer), &HttpServer::onConnClosed);
}

void HttpServer::onConnClosed(uv_handle_t* h) noexcept {
  auto* c = static_cast<Conn*>(h->data);
  if (--c->handlesOpen > 0) return;
  HttpServer* self = c->server;
  self->conns_.erase(c);  // frees the connection (no continuation can hold it: same thread)
  self->maybeDone();
}

}  // namespace pgswitch::proxy
