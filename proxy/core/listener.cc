#include "proxy/core/listener.h"

#include <fcntl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "protocol/builder.h"
#include "proxy/core/ring.h"

namespace pgswitch::proxy {

namespace {

int openReserve() { return ::open("/dev/null", O_RDONLY | O_CLOEXEC); }

}  // namespace

void refuseConnection(int fd, AcceptCounters& counters) {
  // What PostgreSQL says when it is full. The client has not been read from: its startup
  // packet, if already sent, is discarded with the socket.
  static const std::string kTooMany = [] {
    std::string s;
    protocol::appendError(s, {"FATAL", "53300", "sorry, too many clients already"});
    return s;
  }();
  refuseWith(fd, kTooMany);
  ++counters.turnedAway;
}

void refuseWith(int fd, std::string_view errorResponse) {
  (void)::send(fd, errorResponse.data(), errorResponse.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  ::close(fd);
}

std::string peerHost(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  char ip[INET6_ADDRSTRLEN] = "?";
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return ip;
  if (ss.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&ss)->sin_addr, ip, sizeof(ip));
  } else if (ss.ss_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr, ip, sizeof(ip));
  }
  return ip;
}

Listener::Listener(uv_loop_t* loop, AcceptCounters& counters, OnAccept onAccept, void* ctx)
    : loop_(loop), counters_(counters), onAccept_(onAccept), ctx_(ctx) {}

Listener::~Listener() {
  if (reserveFd_ >= 0) ::close(reserveFd_);
  if (closeAfterAccept_ >= 0) ::close(closeAfterAccept_);
}

void Listener::open(const std::string& host, int port, int deferAcceptS) {
  sockaddr_storage addr{};
  int rc = uv_ip4_addr(host.c_str(), port, reinterpret_cast<sockaddr_in*>(&addr));
  if (rc != 0) rc = uv_ip6_addr(host.c_str(), port, reinterpret_cast<sockaddr_in6*>(&addr));
  if (rc != 0) throw std::runtime_error("invalid listen address " + host);
  int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) throw std::runtime_error(std::string("socket() failed: ") + strerror(errno));
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  // Linux gives an accepted socket the listening socket's TCP_NODELAY: set once here, it
  // saves a setsockopt() per login (Conn::adopt relies on it).
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (deferAcceptS > 0) {
    ::setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &deferAcceptS, sizeof(deferAcceptS));
  }
  socklen_t len = addr.ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0 || ::listen(fd, 1024) != 0) {
    int e = errno;
    ::close(fd);
    throw std::runtime_error("cannot listen on " + host + ":" + std::to_string(port) + ": " +
                             strerror(e));
  }
  fd_ = fd;
  reserveFd_ = openReserve();
  uv_poll_init(loop_, &poll_, fd_);
  poll_.data = this;
  uv_timer_init(loop_, &resume_);
  resume_.data = this;
  handlesInit_ = true;
  if (ring_) return armRing();
  uv_poll_start(&poll_, UV_READABLE, &Listener::onReadable);
}

void Listener::close() {
  if (!handlesInit_) return;
  handlesInit_ = false;
  // The ring's accept holds its own reference to the socket, so close() alone would leave it
  // listening (and in the SO_REUSEPORT group, taking clients another instance could serve)
  // until the cancel is processed. shutdown() stops the listening now and ends the accept; a
  // client it still took meanwhile is closed (onRingAccept).
  // The descriptor itself stays open until that accept's last completion: an accept not yet
  // submitted must not meet its number reused by another thread.
  if (ringArmed_) {
    ::shutdown(fd_, SHUT_RDWR);
    ring_->cancelAccept(this);
    closeAfterAccept_ = fd_;
  } else {
    ::close(fd_);  // uv_poll never owns the descriptor
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&poll_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&resume_), nullptr);
  fd_ = -1;
}

int Listener::boundPort() const {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (fd_ < 0 || ::getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return 0;
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
}

void Listener::useRing(Ring* ring) {
  ring_ = ring;
  if (!ring_ || !handlesInit_ || paused_) return;
  uv_poll_stop(&poll_);
  armRing();
}

void Listener::armRing() {
  ringArmed_ = true;
  ring_->accept(this, fd_);
}

void Listener::onRingAccept(int res, uint32_t flags) noexcept {
  const bool more = flags & IORING_CQE_F_MORE;
  if (!more) {
    ringArmed_ = false;
    if (closeAfterAccept_ >= 0) ::close(std::exchange(closeAfterAccept_, -1));
  }
  if (res >= 0) {
    if (fd_ < 0) {
      ::close(res);  // accepted between close() and the cancel
    } else {
      onAccept_(ctx_, res);
    }
  } else if (fd_ >= 0 && res != -ECANCELED && res != -EAGAIN && !acceptFailed(-res) &&
             !paused_) {
    pause();  // an error that would come back at once: not in a loop
  }
  // The kernel ends a multishot accept on some errors: it goes on unless paused or closed.
  if (!more && !ringArmed_ && fd_ >= 0 && !paused_) armRing();
}

void Listener::onReadable(uv_poll_t* p, int status, int) {
  auto* l = static_cast<Listener*>(p->data);
  if (status < 0) return;
  l->acceptBatch();
}

void Listener::acceptBatch() {
  for (int i = 0; i < kBatch && fd_ >= 0 && !paused_; ++i) {
    int fd = ::accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      onAccept_(ctx_, fd);
      continue;
    }
    int e = errno;
    if (e == EAGAIN || e == EWOULDBLOCK) return;
    if (!acceptFailed(e)) return;
  }
}

bool Listener::acceptFailed(int e) {
  if (e == EINTR || e == ECONNABORTED || e == EPROTO) return true;  // that client gave up
  if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
    outOfDescriptors(e);
  } else {
    spdlog::warn("accept failed: {}", strerror(e));
  }
  return false;
}

// No descriptor for a new client. Refuse the ones waiting (each through the reserve
// descriptor, which another thread may grab in between: then they wait in the backlog),
// and stop polling for a moment: retrying at once would only spin.
void Listener::outOfDescriptors(int err) {
  int refused = 0;
  for (int i = 0; i < kBatch && reserveFd_ >= 0 && turnAwayOne(); ++i) ++refused;
  if (reserveFd_ < 0) reserveFd_ = openReserve();
  // The ring's accept takes a descriptor number before it looks for a client, so it fails
  // this way whenever none is free, client or not: there it counts only with a client waiting.
  pollfd waiting{fd_, POLLIN, 0};
  if (ring_ && refused == 0 && ::poll(&waiting, 1, 0) <= 0) return pause();
  ++counters_.fdExhausted;
  ++failuresSinceLog_;
  uint64_t now = uv_now(loop_);
  if (lastLogMs_ == 0 || now - lastLogMs_ >= kLogEveryMs) {
    spdlog::error(
        "cannot accept new clients: {} ({} times since the last report); refusing waiting "
        "connections with 53300 and pausing accept for {} ms. Raise the descriptor limit "
        "(ulimit -n / LimitNOFILE) or lower max_client_conn and max_login_clients",
        strerror(err), failuresSinceLog_, kPauseMs);
    lastLogMs_ = now;
    failuresSinceLog_ = 0;
  }
  pause();
}

bool Listener::turnAwayOne() {
  ::close(reserveFd_);
  int fd = ::accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd >= 0) refuseConnection(fd, counters_);
  reserveFd_ = openReserve();
  return fd >= 0;  // false: nothing waits any more, or the descriptor went elsewhere
}

void Listener::pause() {
  if (paused_ || !handlesInit_) return;
  paused_ = true;
  if (ringArmed_) {
    ring_->cancelAccept(this);
  } else if (!ring_) {
    uv_poll_stop(&poll_);
  }
  uv_timer_start(&resume_, &Listener::onResume, kPauseMs, 0);
}

void Listener::onResume(uv_timer_t* t) {
  auto* l = static_cast<Listener*>(t->data);
  if (!l->handlesInit_) return;
  l->paused_ = false;
  if (l->ring_) {
    if (!l->ringArmed_) l->armRing();  // else its last completion, still to come, re-arms it
    return;
  }
  uv_poll_start(&l->poll_, UV_READABLE, &Listener::onReadable);
}

}  // namespace pgswitch::proxy
