// Loop tests for proxy/http_server on 127.0.0.1:0: the three endpoints, 400/404/405, the
// 8 KiB cap, an asynchronous snapshot provider, a continuation arriving after close(), and
// every handle closed at the end (uv_loop_close() == 0).
#include "proxy/admin/http_server.h"

#include <gtest/gtest.h>
#include <uv.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace pgswitch::proxy {
namespace {

// A libuv client on the same loop: connects, writes the request, reads until EOF.
struct Client {
  uv_tcp_t tcp{};
  uv_connect_t connect{};
  uv_write_t write{};
  std::string request;
  std::string response;
  bool finished = false;
  char buf[4096];

  void start(uv_loop_t* loop, int port, std::string req) {
    request = std::move(req);
    uv_tcp_init(loop, &tcp);
    tcp.data = this;
    sockaddr_in addr{};
    uv_ip4_addr("127.0.0.1", port, &addr);
    uv_tcp_connect(&connect, &tcp, reinterpret_cast<const sockaddr*>(&addr), &Client::onConnect);
  }
  static void onConnect(uv_connect_t* c, int status) {
    auto* self = static_cast<Client*>(c->handle->data);
    if (status < 0) return self->finish();
    uv_buf_t b = uv_buf_init(self->request.data(), static_cast<unsigned>(self->request.size()));
    uv_write(&self->write, c->handle, &b, 1, [](uv_write_t*, int) {});
    uv_read_start(
        c->handle,
        [](uv_handle_t* h, size_t, uv_buf_t* b) {
          auto* me = static_cast<Client*>(h->data);
          *b = uv_buf_init(me->buf, sizeof me->buf);
        },
        [](uv_stream_t* s, ssize_t n, const uv_buf_t* b) {
          auto* me = static_cast<Client*>(s->data);
          if (n < 0) return me->finish();
          me->response.append(b->base, static_cast<size_t>(n));
        });
  }
  void finish() {
    if (uv_is_closing(reinterpret_cast<uv_handle_t*>(&tcp))) return;
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp),
             [](uv_handle_t* h) { static_cast<Client*>(h->data)->finished = true; });
  }
  int status() const {
    if (response.rfind("HTTP/1.1 ", 0) != 0) return -1;
    return std::stoi(response.substr(9, 3));
  }
  std::string body() const {
    size_t p = response.find("\r\n\r\n");
    return p == std::string::npos ? "" : response.substr(p + 4);
  }
  std::string header(std::string_view name) const {
    std::string key = "\r\n" + std::string(name) + ": ";
    size_t p = response.find(key);
    if (p == std::string::npos) return "";
    p += key.size();
    return response.substr(p, response.find("\r\n", p) - p);
  }
};

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(uv_loop_init(&loop_), 0); }
  void TearDown() override {
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0) << "a handle was left open";
  }

  // Runs the loop until every client finished.
  void runClients(std::vector<std::unique_ptr<Client>>& clients) {
    auto allDone = [&] {
      for (auto& c : clients) {
        if (!c->finished) return false;
      }
      return true;
    };
    while (!allDone()) uv_run(&loop_, UV_RUN_ONCE);
  }

  void closeServer(HttpServer& server) {
    bool closed = false;
    server.close([&] { closed = true; });
    while (!closed) uv_run(&loop_, UV_RUN_ONCE);
  }

  uv_loop_t loop_{};
};

// Answers a little later, from a timer on the loop, as the real gatherer does.
struct DeferredProvider {
  uv_loop_t* loop;
  int calls = 0;
  void operator()(HttpServer::Reply reply) {
    ++calls;
    auto* t = new uv_timer_t;
    uv_timer_init(loop, t);
    t->data = new HttpServer::Reply(std::move(reply));
    uv_timer_start(
        t,
        [](uv_timer_t* h) {
          auto* r = static_cast<HttpServer::Reply*>(h->data);
          Snapshot s;
          s.clientsTotal = 7;
          (*r)(std::move(s));
          delete r;
          uv_close(reinterpret_cast<uv_handle_t*>(h),
                   [](uv_handle_t* hh) { delete reinterpret_cast<uv_timer_t*>(hh); });
        },
        1, 0);
  }
};

TEST_F(HttpServerTest, ServesEndpointsAndErrors) {
  DeferredProvider provider{&loop_};
  HttpServer server(&loop_, [&](HttpServer::Reply r) { provider(std::move(r)); });
  ASSERT_EQ(server.listen("127.0.0.1", 0), 0);
  int port = server.port();
  ASSERT_GT(port, 0);

  std::string huge = "GET / HTTP/1.1\r\nX-Pad: " + std::string(9000, 'a') + "\r\n\r\n";
  const std::vector<std::string> requests = {
      "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
      "GET /status?x=1 HTTP/1.1\r\nHost: x\r\n\r\n",
      "GET / HTTP/1.0\r\n\r\n",
      "GET /nope HTTP/1.1\r\n\r\n",
      "POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
      "garbage\r\n\r\n",
      huge,
  };
  std::vector<std::unique_ptr<Client>> clients;
  for (const auto& r : requests) {
    clients.push_back(std::make_unique<Client>());
    clients.back()->start(&loop_, port, r);
  }
  runClients(clients);

  const Client& metrics = *clients[0];
  EXPECT_EQ(metrics.status(), 200);
  EXPECT_EQ(metrics.header("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(metrics.header("Connection"), "close");
  EXPECT_EQ(metrics.header("Content-Length"), std::to_string(metrics.body().size()));
  EXPECT_NE(metrics.body().find("\npgswitch_clients 7\n"), std::string::npos);

  const Client& status = *clients[1];
  EXPECT_EQ(status.status(), 200);
  EXPECT_EQ(status.header("Content-Type"), "application/json");
  EXPECT_NE(status.body().find("\"clients\":7"), std::string::npos);

  const Client& page = *clients[2];
  EXPECT_EQ(page.status(), 200);
  EXPECT_EQ(page.header("Content-Type"), "text/html; charset=utf-8");
  EXPECT_EQ(page.body().rfind("<!DOCTYPE html>", 0), 0u);

  EXPECT_EQ(clients[3]->status(), 404);
  EXPECT_EQ(clients[4]->status(), 405);
  EXPECT_EQ(clients[4]->header("Allow"), "GET");
  EXPECT_EQ(clients[5]->status(), 400);
  EXPECT_EQ(clients[6]->status(), 400);
  EXPECT_EQ(provider.calls, 2);  // only /metrics and /status need a snapshot

  closeServer(server);
}

TEST_F(HttpServerTest, LateContinuationAfterCloseIsIgnored) {
  std::vector<HttpServer::Reply> pending;
  auto server = std::make_unique<HttpServer>(
      &loop_, [&](HttpServer::Reply r) { pending.push_back(std::move(r)); });
  ASSERT_EQ(server->listen("127.0.0.1", 0), 0);
  std::vector<std::unique_ptr<Client>> clients;
  clients.push_back(std::make_unique<Client>());
  clients.back()->start(&loop_, server->port(), "GET /status HTTP/1.1\r\n\r\n");
  while (pending.empty()) uv_run(&loop_, UV_RUN_ONCE);

  closeServer(*server);  // closes the waiting connection
  server.reset();
  for (auto& reply : pending) reply(Snapshot{});  // must not touch freed memory
  runClients(clients);
  EXPECT_EQ(clients[0]->response, "");
}

TEST_F(HttpServerTest, CloseWithoutListen) {
  HttpServer server(&loop_, [](HttpServer::Reply r) { r(Snapshot{}); });
  bool closed = false;
  server.close([&] { closed = true; });
  EXPECT_TRUE(closed);
}

TEST_F(HttpServerTest, ListenErrors) {
  HttpServer server(&loop_, [](HttpServer::Reply r) { r(Snapshot{}); });
  EXPECT_NE(server.listen("not-an-address", 0), 0);
  HttpServer v6(&loop_, [](HttpServer::Reply r) { r(Snapshot{}); });
  int rc = v6.listen("[::1]", 0);
  if (rc == 0) {
    EXPECT_GT(v6.port(), 0);  // IPv6 may be unavailable in the sandbox
  }
  closeServer(v6);
}

}  // namespace
}  // namespace pgswitch::proxy
