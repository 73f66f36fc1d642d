// libcurl multi driven by libuv (curl's own multi-uv.c example, with explicit ownership):
// libcurl owns the sockets; each watched socket has a SocketWatch (uv_poll_t) that libcurl
// keeps as its socket pointer and that is freed in the poll handle's close callback.
#include "health/http_client.h"

#include <curl/curl.h>

#include <mutex>
#include <vector>

namespace pgswitch::health {

namespace {

void globalInit() {
  // Thread-safe since curl 7.84, but once is enough.
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

CURLM* multiOf(void* m) { return static_cast<CURLM*>(m); }

}  // namespace

struct HttpClient::Transfer {
  CURL* easy = nullptr;
  Done done;
  std::string body;
  std::string request;
  std::string userpwd;
  curl_slist* headers = nullptr;
  char errbuf[CURL_ERROR_SIZE] = {};

  static size_t onData(char* p, size_t size, size_t n, void* ud) noexcept {
    auto* t = static_cast<Transfer*>(ud);
    size_t len = size * n;
    if (t->body.size() + len > kMaxBody) return 0;  // aborts with CURLE_WRITE_ERROR
    t->body.append(p, len);
    return len;
  }
  ~Transfer() {
    if (easy) curl_easy_cleanup(easy);
    if (headers) curl_slist_free_all(headers);
  }
};

struct HttpClient::SocketWatch {
  uv_poll_t poll;
  HttpClient* owner;
  curl_socket_t fd;
};

HttpClient::HttpClient(uv_loop_t* loop) : loop_(loop), timer_(loop, this) {
  globalInit();
  multi_ = curl_multi_init();
  curl_multi_setopt(multiOf(multi_), CURLMOPT_SOCKETFUNCTION, &HttpClient::onSocket);
  curl_multi_setopt(multiOf(multi_), CURLMOPT_SOCKETDATA, this);
  curl_multi_setopt(multiOf(multi_), CURLMOPT_TIMERFUNCTION, &HttpClient::onTimer);
  curl_multi_setopt(multiOf(multi_), CURLMOPT_TIMERDATA, this);
}

HttpClient::~HttpClient() { close(); }

void HttpClient::send(HttpRequest req, Done done) {
  // Both refusals answer at once: the caller is a loop callback that expects it.
  auto fail = [&](std::string why) {
    HttpResponse r;
    r.error = std::move(why);
    if (done) done(std::move(r));
  };
  if (closed_) return fail("client closed");
  CURL* easy = curl_easy_init();
  if (!easy) return fail("curl_easy_init failed");
  auto* t = new Transfer;
  t->easy = easy;
  t->done = std::move(done);
  CURL* e = t->easy;
  curl_easy_setopt(e, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(e, CURLOPT_PRIVATE, t);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &Transfer::onData);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(req.timeoutMs));
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(req.timeoutMs));
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);  // no SIGALRM: we are one thread among many
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  if (!req.caFile.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, req.caFile.c_str());
  if (!req.username.empty()) {
    t->userpwd = req.username + ":" + req.password;
    curl_easy_setopt(e, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    curl_easy_setopt(e, CURLOPT_USERPWD, t->userpwd.c_str());
  }
  if (req.method == "POST") {
    t->request = std::move(req.body);
    t->headers = curl_slist_append(nullptr, "Content-Type: application/json");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, t->request.c_str());
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, static_cast<long>(t->request.size()));
  }
  live_.insert(t);
  // The multi handle calls onTimer at once; the transfer starts from the timer callback.
  curl_multi_add_handle(multiOf(multi_), e);
}

int HttpClient::onSocket(void*, int fd, int what, void* userp, void* socketp) noexcept {
  auto* self = static_cast<HttpClient*>(userp);
  auto* w = static_cast<SocketWatch*>(socketp);
  if (what == CURL_POLL_REMOVE) {
    if (w) {
      self->watches_.erase(w);
      uv_poll_stop(&w->poll);
      uv_close(reinterpret_cast<uv_handle_t*>(&w->poll),
               [](uv_handle_t* h) { delete static_cast<SocketWatch*>(h->data); });
      curl_multi_assign(multiOf(self->multi_), fd, nullptr);
    }
    return 0;
  }
  if (!w) {
    w = new SocketWatch;
    w->owner = self;
    w->fd = fd;
    uv_poll_init_socket(self->loop_, &w->poll, fd);
    w->poll.data = w;
    self->watches_.insert(w);
    curl_multi_assign(multiOf(self->multi_), fd, w);
  }
  int events = 0;
  if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) events |= UV_READABLE;
  if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) events |= UV_WRITABLE;
  uv_poll_start(&w->poll, events, &HttpClient::onPoll);
  return 0;
}

int HttpClient::onTimer(void*, long timeoutMs, void* userp) noexcept {
  auto* self = static_cast<HttpClient*>(userp);
  if (timeoutMs < 0) {
    self->timer_.stop();
  } else {
    // 0 means "now": still through the timer, since libcurl must not be re-entered from
    // inside its own callback.
    self->timer_.start(&HttpClient::onTimeout, static_cast<uint64_t>(timeoutMs));
  }
  return 0;
}

void HttpClient::onTimeout(uv_timer_t* t) noexcept {
  static_cast<HttpClient*>(t->data)->drive(CURL_SOCKET_TIMEOUT, 0);
}

void HttpClient::onPoll(uv_poll_t* p, int status, int events) noexcept {
  auto* w = static_cast<SocketWatch*>(p->data);
  int flags = 0;
  if (status < 0) flags = CURL_CSELECT_ERR;
  if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  w->owner->drive(w->fd, flags);
}

void HttpClient::drive(int fd, int flags) {
  if (closed_) return;
  int running = 0;
  curl_multi_socket_action(multiOf(multi_), fd, flags, &running);
  finishDone();
}

void HttpClient::finishDone() {
  int left = 0;
  while (CURLMsg* m = curl_multi_info_read(multiOf(multi_), &left)) {
    if (m->msg != CURLMSG_DONE) continue;
    CURL* e = m->easy_handle;
    CURLcode code = m->data.result;
    Transfer* t = nullptr;
    curl_easy_getinfo(e, CURLINFO_PRIVATE, reinterpret_cast<char**>(&t));
    HttpResponse r;
    if (code == CURLE_OK) {
      r.ok = true;
      curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r.status);
      r.body = std::move(t->body);
    } else {
      r.error = t->errbuf[0] ? t->errbuf : curl_easy_strerror(code);
    }
    curl_multi_remove_handle(multiOf(multi_), e);
    live_.erase(t);
    Done done = std::move(t->done);
    delete t;
    if (done) done(std::move(r));
    if (closed_) return;  // the callback closed us: multi_ is gone
  }
}

void HttpClient::close() {
  if (closed_) return;
  closed_ = true;
  std::set<Transfer*> pending;
  pending.swap(live_);
  // Removing an easy handle makes libcurl release its sockets (CURL_POLL_REMOVE), which
  // closes their polls; any poll left after the cleanup is closed here.
  for (Transfer* t : pending) curl_multi_remove_handle(multiOf(multi_), t->easy);
  curl_multi_cleanup(multiOf(multi_));
  multi_ = nullptr;
  for (SocketWatch* w : watches_) {
    uv_poll_stop(&w->poll);
    uv_close(reinterpret_cast<uv_handle_t*>(&w->poll),
             [](uv_handle_t* h) { delete static_cast<SocketWatch*>(h->data); });
  }
  watches_.clear();
  timer_.close();
  for (Transfer* t : pending) {
    Done done = std::move(t->done);
    delete t;
    HttpResponse r;
    r.error = "client closed";
    if (done) done(std::move(r));
  }
}

}  // namespace pgswitch::health
