// HttpClient (libcurl multi on libuv) on a real loop: a canned HTTP server on 127.0.0.1:0
// (a plain thread), a refused port, a silent server (timeout), POST with basic auth, close()
// with a request in flight; every test ends with uv_loop_close() == 0.
#include "health/http_client.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>

namespace pgswitch::health {
namespace {

// Accepts one connection, reads the request head (and body, by Content-Length), answers
// `reply` unless it is empty (then stays silent until stopped).
class OneShotServer {
 public:
  explicit OneShotServer(std::string reply) : reply_(std::move(reply)) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    listen(fd_, 4);
    socklen_t len = sizeof a;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~OneShotServer() {
    shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  int port() const { return port_; }
  std::string request() const { return request_; }

 private:
  void serve() {
    int c = accept(fd_, nullptr, nullptr);
    if (c < 0) return;
    char buf[4096];
    std::string req;
    size_t want = std::string::npos;
    while (true) {
      ssize_t n = read(c, buf, sizeof buf);
      if (n <= 0) break;
      req.append(buf, size_t(n));
      size_t head = req.find("\r\n\r\n");
      if (head == std::string::npos) continue;
      if (want == std::string::npos) {
        size_t cl = req.find("Content-Length: ");
        want = head + 4 + (cl == std::string::npos ? 0 : std::stoul(req.substr(cl + 16)));
      }
      if (req.size() >= want) break;
    }
    request_ = req;
    if (!reply_.empty()) {
      (void)!write(c, reply_.data(), reply_.size());
      ::close(c);
    } else {
      char b;
      (void)!read(c, &b, 1);  // until the client gives up
      ::close(c);
    }
  }
  int fd_ = -1;
  int port_ = 0;
  std::string reply_;
  std::string request_;
  std::thread thread_;
};

struct Loop {
  uv_loop_t loop;
  Loop() { uv_loop_init(&loop); }
  void run() { uv_run(&loop, UV_RUN_DEFAULT); }
  int close() { return uv_loop_close(&loop); }
};

TEST(HttpClient, GetsABody) {
  OneShotServer srv(
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n"
      "Connection: close\r\n\r\n{\"members\": []}");
  Loop l;
  HttpClient c(&l.loop);
  int calls = 0;
  HttpResponse got;
  HttpRequest req;
  req.url = "http://127.0.0.1:" + std::to_string(srv.port()) + "/cluster";
  c.send(req, [&](HttpResponse r) {
    ++calls;
    got = std::move(r);
    c.close();
  });
  EXPECT_EQ(c.inFlight(), 1);
  l.run();
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(got.ok) << got.error;
  EXPECT_EQ(got.status, 200);
  EXPECT_EQ(got.body, "{\"members\": []}");
  EXPECT_NE(srv.request().find("GET /cluster HTTP/1.1"), std::string::npos);
  EXPECT_EQ(l.close(), 0);
}

TEST(HttpClient, PostsJsonWithBasicAuth) {
  OneShotServer srv("HTTP/1.1 412 Precondition Failed\r\nContent-Length: 4\r\n\r\nnope");
  Loop l;
  HttpClient c(&l.loop);
  HttpResponse got;
  HttpRequest req;
  req.url = "http://127.0.0.1:" + std::to_string(srv.port()) + "/switchover";
  req.method = "POST";
  req.body = R"({"leader":"a"})";
  req.username = "u";
  req.password = "p";
  c.send(req, [&](HttpResponse r) {
    got = std::move(r);
    c.close();
  });
  l.run();
  EXPECT_TRUE(got.ok);
  EXPECT_EQ(got.status, 412);
  EXPECT_EQ(got.body, "nope");
  const std::string rq = srv.request();
  EXPECT_NE(rq.find("POST /switchover"), std::string::npos);
  EXPECT_NE(rq.find("Authorization: Basic dTpw"), std::string::npos);  // u:p
  EXPECT_NE(rq.find("Content-Type: application/json"), std::string::npos);
  EXPECT_NE(rq.find(R"({"leader":"a"})"), std::string::npos);
  EXPECT_EQ(l.close(), 0);
}

TEST(HttpClient, RefusedPortIsATransportError) {
  int port;
  {
    OneShotServer probe("x");
    port = probe.port();
  }  // closed: nothing listens there now
  Loop l;
  HttpClient c(&l.loop);
  HttpResponse got;
  got.ok = true;
  HttpRequest req;
  req.url = "http://127.0.0.1:" + std::to_string(port) + "/cluster";
  c.send(req, [&](HttpResponse r) {
    got = std::move(r);
    c.close();
  });
  l.run();
  EXPECT_FALSE(got.ok);
  EXPECT_FALSE(got.error.empty());
  EXPECT_EQ(l.close(), 0);
}

TEST(HttpClient, SilentServerTimesOut) {
  OneShotServer srv("");
  Loop l;
  HttpClient c(&l.loop);
  HttpResponse got;
  got.ok = true;
  HttpRequest req;
  req.url = "http://127.0.0.1:" + std::to_string(srv.port()) + "/cluster";
  req.timeoutMs = 200;
  auto t0 = uv_hrtime();
  c.send(req, [&](HttpResponse r) {
    got = std::move(r);
    c.close();
  });
  l.run();
  double ms = double(uv_hrtime() - t0) / 1e6;
  EXPECT_FALSE(got.ok);
  EXPECT_GE(ms, 150);
  EXPECT_LT(ms, 3000);
  EXPECT_EQ(l.close(), 0);
}

TEST(HttpClient, CloseAnswersRequestsInFlightOnce) {
  OneShotServer srv("");
  Loop l;
  HttpClient c(&l.loop);
  int calls = 0;
  std::string err;
  HttpRequest req;
  req.url = "http://127.0.0.1:" + std::to_string(srv.port()) + "/cluster";
  req.timeoutMs = 5000;
  c.send(req, [&](HttpResponse r) {
    ++calls;
    err = r.error;
  });
  uv_timer_t t;
  uv_timer_init(&l.loop, &t);
  t.data = &c;
  uv_timer_start(
      &t,
      [](uv_timer_t* h) {
        static_cast<HttpClient*>(h->data)->close();
        uv_close(reinterpret_cast<uv_handle_t*>(h), nullptr);
      },
      100, 0);
  l.run();
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(err, "client closed");
  // After close, send answers at once.
  c.send(req, [&](HttpResponse r) {
    ++calls;
    err = r.error;
  });
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(l.close(), 0);
}

}  // namespace
}  // namespace pgswitch::health
