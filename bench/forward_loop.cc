// forward_loop: a minimal one-thread TCP relay (client <-> upstream PostgreSQL, byte for byte,
// one upstream connection per client) with two interchangeable event loops, epoll + read()/write()
// and io_uring, so bench/uring_vs_epoll.py can measure what io_uring saves per transaction on
// the forwarding path alone (issue 14). A measuring tool, not part of pgswitch.
//
//   forward_loop --listen PORT --upstream PORT --mode epoll|uring
//                [--recv multishot|single] [--no-defer-taskrun]
#include <arpa/inet.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

namespace {

struct Options {
  int listenPort = 0;
  int upstreamPort = 0;
  bool uring = false;
  bool multishot = true;     // --recv single: one recv per SQE, re-armed after each completion
  bool deferTaskrun = true;  // IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN
};

[[noreturn]] void die(const char* what, int err) {
  std::fprintf(stderr, "forward_loop: %s: %s\n", what, std::strerror(err));
  std::exit(1);
}

void setNoDelay(int fd) {
  // Both PgBouncer and libuv-based proxies set TCP_NODELAY; without it Nagle would delay the
  // second small message of a round trip and the comparison would measure timers, not CPU.
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

sockaddr_in loopback(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

int listenOn(int port, bool nonblocking) {
  int fd = socket(AF_INET, SOCK_STREAM | (nonblocking ? SOCK_NONBLOCK : 0), 0);
  if (fd < 0) die("socket", errno);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a = loopback(port);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) die("bind", errno);
  if (listen(fd, 1024) < 0) die("listen", errno);
  return fd;
}

// A blocking connect in both modes: on loopback it completes inside the call, it happens once
// per client connection (not per transaction), and it keeps both loops to the forwarding path.
int connectUpstream(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -errno;
  sockaddr_in a = loopback(port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) {
    int e = errno;
    close(fd);
    return -e;
  }
  setNoDelay(fd);
  return fd;
}

// ---------------------------------------------------------------------------------------------
// epoll: level-triggered, one read() per readiness event, then write() straight to the peer
// (uv_try_write); what the peer does not take waits, and reading that side stops until it
// drained — the syscall pattern of a libuv proxy (2 reads + 2 writes per round trip).

constexpr size_t kReadSize = 64 * 1024;

struct EpollPair;
struct Endpoint {
  EpollPair* pair;
  int side;  // 0 = client, 1 = upstream
};

struct EpollPair {
  int fd[2] = {-1, -1};
  std::string pending[2];  // pending[i]: read from side i, not yet written to side 1 - i
  uint32_t interest[2] = {EPOLLIN, EPOLLIN};
  Endpoint ep[2];
  bool closed = false;
};

class EpollLoop {
 public:
  explicit EpollLoop(const Options& o) : opt_(o), buf_(kReadSize) {
    epfd_ = epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0) die("epoll_create1", errno);
    listenFd_ = listenOn(o.listenPort, true);
    epoll_event ev{EPOLLIN, {.ptr = nullptr}};
    epoll_ctl(epfd_, EPOLL_CTL_ADD, listenFd_, &ev);
  }

  void run() {
    std::vector<epoll_event> events(1024);  // libuv's batch size
    for (;;) {
      int n = epoll_wait(epfd_, events.data(), static_cast<int>(events.size()), -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        die("epoll_wait", errno);
      }
      for (int k = 0; k < n; ++k) {
        auto* e = static_cast<Endpoint*>(events[k].data.ptr);
        if (e == nullptr) {
          acceptAll();
          continue;
        }
        EpollPair* p = e->pair;
        if (p->closed) continue;  // closed by an earlier event of this batch
        uint32_t got = events[k].events;
        if (got & EPOLLOUT) onWritable(p, e->side);
        if (p->closed || !(got & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
        if (p->pending[e->side].empty()) {
          onReadable(p, e->side);
        } else if (got & (EPOLLHUP | EPOLLERR)) {
          // Reading this side is paused (its earlier bytes still wait), but HUP/ERR are
          // reported regardless and would repeat forever: end the relay.
          closePair(p);
        }
      }
      // Freed only after the batch: later events of the same batch may still point here.
      for (EpollPair* p : dead_) delete p;
      dead_.clear();
    }
  }

 private:
  void acceptAll() {
    for (;;) {
      int c = accept4(listenFd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (c < 0) return;  // EAGAIN, or an error we leave to the next readiness
      setNoDelay(c);
      int u = connectUpstream(opt_.upstreamPort);
      if (u < 0) {
        close(c);
        continue;
      }
      fcntl(u, F_SETFL, fcntl(u, F_GETFL) | O_NONBLOCK);
      auto* p = new EpollPair;
      p->fd[0] = c;
      p->fd[1] = u;
      for (int i = 0; i < 2; ++i) {
        p->ep[i] = {p, i};
        epoll_event ev{EPOLLIN, {.ptr = &p->ep[i]}};
        epoll_ctl(epfd_, EPOLL_CTL_ADD, p->fd[i], &ev);
      }
    }
  }

  // Reading side i is allowed while nothing read from it waits; writing to it is wanted while
  // bytes from the other side wait.
  void updateInterest(EpollPair* p, int i) {
    uint32_t want = (p->pending[i].empty() ? EPOLLIN : 0u) |
                    (p->pending[1 - i].empty() ? 0u : EPOLLOUT);
    if (want == p->interest[i]) return;
    p->interest[i] = want;
    epoll_event ev{want, {.ptr = &p->ep[i]}};
    epoll_ctl(epfd_, EPOLL_CTL_MOD, p->fd[i], &ev);
  }

  void onReadable(EpollPair* p, int i) {
    ssize_t n = read(p->fd[i], buf_.data(), buf_.size());
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) return closePair(p);  // EOF or error: the relay ends for both sides
    ssize_t w = write(p->fd[1 - i], buf_.data(), static_cast<size_t>(n));
    if (w < 0) {
      if (errno != EAGAIN) return closePair(p);
      w = 0;
    }
    if (w < n) {
      p->pending[i].assign(buf_.data() + w, static_cast<size_t>(n - w));
      updateInterest(p, i);
      updateInterest(p, 1 - i);
    }
  }

  void onWritable(EpollPair* p, int j) {
    std::string& out = p->pending[1 - j];
    if (out.empty()) return;
    ssize_t w = write(p->fd[j], out.data(), out.size());
    if (w < 0) {
      if (errno == EAGAIN) return;
      return closePair(p);
    }
    out.erase(0, static_cast<size_t>(w));
    if (out.empty()) {
      updateInterest(p, j);
      updateInterest(p, 1 - j);
    }
  }

  void closePair(EpollPair* p) {
    close(p->fd[0]);  // close() also drops the descriptors from the epoll set
    close(p->fd[1]);
    p->closed = true;
    dead_.push_back(p);
  }

  Options opt_;
  int epfd_ = -1;
  int listenFd_ = -1;
  std::vector<char> buf_;
  std::vector<EpollPair*> dead_;
};

// ---------------------------------------------------------------------------------------------
// io_uring: one ring; a multishot accept; per socket one (multishot) recv that picks its
// buffer from a provided-buffer ring, so no buffer is pinned to an idle connection; each
// received buffer is sent to the peer with a send SQE and goes back to the buffer ring when the
// send completed. At most one send per direction is in flight, which keeps the byte order and
// makes partial sends a simple re-submit of the rest. SQEs queued while handling completions
// are submitted by the next io_uring_submit_and_wait: one system call per loop turn.

constexpr unsigned kBufCount = 4096;  // power of two (buffer ring size)
constexpr unsigned kBufSize = 16 * 1024;
constexpr int kBgid = 0;
constexpr uint64_t kAcceptTag = 1;  // user_data below 8: never a (8-aligned) pair pointer
constexpr uint64_t kIgnoreTag = 2;  // cancel requests

struct Chunk {
  uint16_t bid;
  uint32_t len;
  uint32_t off;
};

struct UringPair {
  int fd[2] = {-1, -1};
  std::deque<Chunk> out[2];  // out[i]: received from side i, to send to side 1 - i
  bool sending[2] = {false, false};
  int inflight = 0;  // SQEs whose final CQE has not arrived; the pair lives until it is 0
  bool closing = false;
};

// user_data of a pair's operation: the pointer with the side in bit 0 and send/recv in bit 1.
uint64_t tag(UringPair* p, int side, bool send) {
  return reinterpret_cast<uint64_t>(p) | static_cast<uint64_t>(side) | (send ? 2u : 0u);
}

class UringLoop {
 public:
  explicit UringLoop(const Options& o) : opt_(o) {
    io_uring_params params{};
    if (o.deferTaskrun) {
      // Completion work runs when we ask for events, not as interrupts of the loop: the
      // cheapest mode for a one-thread loop (kernel >= 6.1).
      params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    }
    int r = io_uring_queue_init_params(4096, &ring_, &params);
    if (r < 0) die("io_uring_queue_init_params", -r);
    setupBuffers();
    listenFd_ = listenOn(o.listenPort, false);
    armAccept();
    std::fprintf(stderr, "forward_loop: io_uring, %s recv, defer_taskrun %s\n",
                 o.multishot ? "multishot" : "single-shot", o.deferTaskrun ? "on" : "off");
  }

  void run() {
    for (;;) {
      int r = io_uring_submit_and_wait(&ring_, 1);
      if (r < 0 && r != -EINTR) die("io_uring_submit_and_wait", -r);
      unsigned head;
      unsigned seen = 0;
      io_uring_cqe* cqe;
      io_uring_for_each_cqe(&ring_, head, cqe) {
        handle(cqe);
        ++seen;
      }
      io_uring_cq_advance(&ring_, seen);
    }
  }

 private:
  void setupBuffers() {
    // liburing 2.3 has no io_uring_setup_buf_ring(): map the ring ourselves and register it.
    size_t ringBytes = kBufCount * sizeof(io_uring_buf);
    void* mem = mmap(nullptr, ringBytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE,
                     -1, 0);
    if (mem == MAP_FAILED) die("mmap", errno);
    bufRing_ = static_cast<io_uring_buf_ring*>(mem);
    io_uring_buf_ring_init(bufRing_);
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<uint64_t>(mem);
    reg.ring_entries = kBufCount;
    reg.bgid = kBgid;
    int r = io_uring_register_buf_ring(&ring_, &reg, 0);
    if (r < 0) die("io_uring_register_buf_ring (kernel >= 5.19 needed)", -r);
    bufs_.resize(static_cast<size_t>(kBufCount) * kBufSize);
    for (unsigned b = 0; b < kBufCount; ++b) {
      io_uring_buf_ring_add(bufRing_, bufAt(static_cast<uint16_t>(b)), kBufSize,
                            static_cast<uint16_t>(b), io_uring_buf_ring_mask(kBufCount),
                            static_cast<int>(b));
    }
    io_uring_buf_ring_advance(bufRing_, static_cast<int>(kBufCount));
  }

  char* bufAt(uint16_t bid) { return bufs_.data() + static_cast<size_t>(bid) * kBufSize; }

  // Gives a buffer back to the kernel once its bytes were sent (or dropped at close).
  void recycle(uint16_t bid) {
    io_uring_buf_ring_add(bufRing_, bufAt(bid), kBufSize, bid,
                          io_uring_buf_ring_mask(kBufCount), 0);
    io_uring_buf_ring_advance(bufRing_, 1);
    if (!starved_.empty()) {  // a recv that ended for want of buffers can go again now
      std::vector<std::pair<UringPair*, int>> starved;
      starved.swap(starved_);
      for (auto [p, side] : starved) armRecv(p, side);
    }
  }

  io_uring_sqe* sqe() {
    io_uring_sqe* s = io_uring_get_sqe(&ring_);
    if (s == nullptr) {  // the SQ is full: hand it to the kernel and take a fresh entry
      io_uring_submit(&ring_);
      s = io_uring_get_sqe(&ring_);
    }
    return s;
  }

  void armAccept() {
    io_uring_sqe* s = sqe();
    io_uring_prep_multishot_accept(s, listenFd_, nullptr, nullptr, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(s, kAcceptTag);
  }

  void armRecv(UringPair* p, int side) {
    if (p->closing) return;
    io_uring_sqe* s = sqe();
    if (opt_.multishot) {
      io_uring_prep_recv_multishot(s, p->fd[side], nullptr, 0, 0);
    } else {
      io_uring_prep_recv(s, p->fd[side], nullptr, 0, 0);
    }
    s->flags |= IOSQE_BUFFER_SELECT;
    s->buf_group = kBgid;
    io_uring_sqe_set_data64(s, tag(p, side, false));
    ++p->inflight;
  }

  void armSend(UringPair* p, int side) {
    const Chunk& c = p->out[side].front();
    io_uring_sqe* s = sqe();
    io_uring_prep_send(s, p->fd[1 - side], bufAt(c.bid) + c.off, c.len - c.off, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(s, tag(p, side, true));
    p->sending[side] = true;
    ++p->inflight;
  }

  void handle(io_uring_cqe* cqe) {
    uint64_t ud = io_uring_cqe_get_data64(cqe);
    if (ud == kIgnoreTag) return;
    if (ud == kAcceptTag) return onAccept(cqe);
    auto* p = reinterpret_cast<UringPair*>(ud & ~uint64_t{7});
    int side = static_cast<int>(ud & 1);
    if (ud & 2) {
      onSent(p, side, cqe->res);
    } else {
      onRecv(p, side, cqe);
    }
  }

  void onAccept(io_uring_cqe* cqe) {
    if (!(cqe->flags & IORING_CQE_F_MORE)) armAccept();  // the multishot accept ended
    if (cqe->res < 0) return;
    int c = cqe->res;
    setNoDelay(c);
    int u = connectUpstream(opt_.upstreamPort);
    if (u < 0) {
      close(c);
      return;
    }
    auto* p = new UringPair;
    p->fd[0] = c;
    p->fd[1] = u;
    armRecv(p, 0);
    armRecv(p, 1);
  }

  void onRecv(UringPair* p, int side, io_uring_cqe* cqe) {
    bool more = cqe->flags & IORING_CQE_F_MORE;
    if (!more) --p->inflight;
    if (cqe->res > 0 && (cqe->flags & IORING_CQE_F_BUFFER)) {
      auto bid = static_cast<uint16_t>(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
      if (p->closing) {
        recycle(bid);
      } else {
        p->out[side].push_back({bid, static_cast<uint32_t>(cqe->res), 0});
        if (!p->sending[side]) armSend(p, side);
      }
    }
    if (p->closing) return maybeFree(p);
    if (cqe->res == -ENOBUFS) {
      // Every buffer is queued behind a slow peer: wait for one to come back (backpressure).
      if (!more) starved_.emplace_back(p, side);
      return;
    }
    if (cqe->res <= 0) return closePair(p);  // EOF or error
    if (!more) armRecv(p, side);  // single-shot, or the kernel ended the multishot recv
  }

  void onSent(UringPair* p, int side, int res) {
    --p->inflight;
    p->sending[side] = false;
    if (p->closing) return maybeFree(p);
    if (res < 0) return closePair(p);
    Chunk& c = p->out[side].front();
    c.off += static_cast<uint32_t>(res);
    if (c.off == c.len) {
      uint16_t bid = c.bid;
      p->out[side].pop_front();
      recycle(bid);
    }
    if (!p->out[side].empty()) armSend(p, side);  // the rest of a partial send, or the next
  }

  // Cancel what is in flight on both sockets; the pair is freed once every one of its SQEs has
  // posted its last CQE, so no completion can point to freed memory.
  void closePair(UringPair* p) {
    p->closing = true;
    for (int i = 0; i < 2; ++i) {
      io_uring_sqe* s = sqe();
      io_uring_prep_cancel_fd(s, p->fd[i], IORING_ASYNC_CANCEL_ALL);
      io_uring_sqe_set_data64(s, kIgnoreTag);
    }
    maybeFree(p);
  }

  void maybeFree(UringPair* p) {
    if (p->inflight > 0) return;
    for (auto& q : p->out) {
      for (const Chunk& c : q) recycle(c.bid);
    }
    std::erase_if(starved_, [p](const auto& s) { return s.first == p; });
    close(p->fd[0]);
    close(p->fd[1]);
    delete p;
  }

  Options opt_;
  io_uring ring_{};
  io_uring_buf_ring* bufRing_ = nullptr;
  std::vector<char> bufs_;
  std::vector<std::pair<UringPair*, int>> starved_;
  int listenFd_ = -1;
};

int usage() {
  std::fprintf(stderr,
               "usage: forward_loop --listen PORT --upstream PORT --mode epoll|uring "
               "[--recv multishot|single] [--no-defer-taskrun]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  std::string mode;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    bool hasValue = i + 1 < argc;
    if (a == "--listen" && hasValue) {
      o.listenPort = std::atoi(argv[++i]);
    } else if (a == "--upstream" && hasValue) {
      o.upstreamPort = std::atoi(argv[++i]);
    } else if (a == "--mode" && hasValue) {
      mode = argv[++i];
    } else if (a == "--recv" && hasValue) {
      std::string_view v = argv[++i];
      if (v != "multishot" && v != "single") return usage();
      o.multishot = v == "multishot";
    } else if (a == "--no-defer-taskrun") {
      o.deferTaskrun = false;
    } else {
      return usage();
    }
  }
  if (o.listenPort <= 0 || o.upstreamPort <= 0 || (mode != "epoll" && mode != "uring")) {
    return usage();
  }
  std::signal(SIGPIPE, SIG_IGN);  // a write to a closed peer is an error value, not a signal
  if (mode == "epoll") {
    EpollLoop(o).run();
  } else {
    o.uring = true;
    UringLoop(o).run();
  }
}
