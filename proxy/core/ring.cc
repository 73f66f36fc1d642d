// The worker's io_uring: set-up, the provided-buffer ring of chunks, preparing operations
// and handing completions to their Conns. Written against liburing 2.3 (Debian 12), which has
// no io_uring_setup_buf_ring(): the buffer ring is mapped and registered here.
#include "proxy/core/ring.h"

#include <poll.h>
#include <sys/mman.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "proxy/core/conn.h"
#include "proxy/core/listener.h"

namespace pgswitch::proxy {
namespace {

uint64_t tag(const void* object, Ring::Op op) {
  return reinterpret_cast<uint64_t>(object) | static_cast<uint64_t>(op);
}

}  // namespace

std::unique_ptr<Ring> Ring::make(protocol::ChunkPool& chunks, std::string& why) {
  std::unique_ptr<Ring> r(new Ring(chunks));
  io_uring_params p{};
  // Completion work runs when the loop asks for events, not as interrupts of it (the cheapest
  // mode for a one-thread loop). Linux 6.1 has it, and multishot receives (6.0) with it.
  // SUBMIT_ALL: a bad entry does not leave the ones after it unsubmitted, so the completions
  // wait() counts on are all posted.
  p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE |
            IORING_SETUP_SUBMIT_ALL;
  p.cq_entries = kCqEntries;
  int rc = io_uring_queue_init_params(kEntries, &r->ring_, &p);
  if (rc < 0) {
    why = std::string("io_uring_setup: ") + std::strerror(-rc) +
          (rc == -EINVAL ? " (Linux 6.1 or later is needed)" : "");
    return nullptr;
  }
  r->ringUp_ = true;
  if (!(p.features & IORING_FEAT_EXT_ARG)) {
    why = "io_uring without IORING_FEAT_EXT_ARG";
    return nullptr;
  }
  r->bufRingBytes_ = kBuffers * sizeof(io_uring_buf);
  void* mem = mmap(nullptr, r->bufRingBytes_, PROT_READ | PROT_WRITE,
                   MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (mem == MAP_FAILED) {
    why = std::string("mmap: ") + std::strerror(errno);
    return nullptr;
  }
  r->bufRing_ = static_cast<io_uring_buf_ring*>(mem);
  io_uring_buf_ring_init(r->bufRing_);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uint64_t>(mem);
  reg.ring_entries = kBuffers;
  reg.bgid = kGroup;
  rc = io_uring_register_buf_ring(&r->ring_, &reg, 0);
  if (rc < 0) {
    why = std::string("io_uring_register_buf_ring: ") + std::strerror(-rc);
    return nullptr;
  }
  r->buffers_.resize(kBuffers);
  for (uint16_t b = 0; b < kBuffers; ++b) {
    r->buffers_[b] = chunks.acquire();
    io_uring_buf_ring_add(r->bufRing_, r->buffers_[b]->data, protocol::Chunk::kSize, b,
                          io_uring_buf_ring_mask(kBuffers), b);
  }
  io_uring_buf_ring_advance(r->bufRing_, kBuffers);
  r->quietSends_ = sendsCompleteInSubmission(r->ring_);
  if (!r->quietSends_) {
    spdlog::info("io_uring: this kernel's sends are not known to complete in the submission; "
                 "every send posts a completion (one more io_uring_enter per turn that sends)");
  }
  return r;
}

bool Ring::sendsCompleteInSubmission(io_uring& ring) {
  // What the quiet sends rely on, checked on a socket pair rather than assumed: a whole send
  // posts nothing (IOSQE_CQE_SKIP_SUCCESS); one that finds the socket full completes at once
  // with EAGAIN instead of waiting for room (MSG_DONTWAIT); a short one completes at once as
  // a failure that still says how much went (MSG_WAITALL; Linux 6.0 keeps the count).
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) return false;
  int small = 4096;
  ::setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  static char bytes[65536];  // static: a send left waiting (an older kernel) reads it later
  constexpr int kNothing = 1;  // no completion was posted (a send never completes as 1 here)
  auto sendOnce = [&ring, &sv](size_t len) {
    io_uring_sqe* s = io_uring_get_sqe(&ring);
    if (!s) return -EBUSY;
    io_uring_prep_send(s, sv[0], bytes, len, kSendFlags);
    s->flags |= IOSQE_CQE_SKIP_SUCCESS;
    io_uring_sqe_set_data64(s, kIgnore);
    if (io_uring_submit(&ring) != 1) return -EBUSY;
    io_uring_cqe* cqe = nullptr;
    if (io_uring_peek_cqe(&ring, &cqe) != 0 || !cqe) return kNothing;
    int res = cqe->res;
    io_uring_cqe_seen(&ring, cqe);
    return res;
  };
  bool ok = sendOnce(64) == kNothing;
  while (ok && ::send(sv[0], bytes, 1024, MSG_DONTWAIT) > 0) {
  }
  ok = ok && sendOnce(64) == -EAGAIN;
  if (ok) {  // room for part of the next send
    ssize_t n = ::recv(sv[1], bytes, 2048, MSG_DONTWAIT);
    int r = sendOnce(sizeof bytes);
    ok = n > 0 && r > 0 && static_cast<size_t>(r) < sizeof bytes;
  }
  ::close(sv[0]);  // a send still waiting ends with an error, its completion ignored
  ::close(sv[1]);
  return ok;
}

Ring::~Ring() {
  if (ringUp_) io_uring_queue_exit(&ring_);  // also drops the buffer ring's registration
  if (bufRing_) munmap(bufRing_, bufRingBytes_);
  for (protocol::Chunk* c : buffers_) chunks_.release(c);
  while (freeSlots_) delete std::exchange(freeSlots_, freeSlots_->next);
}

io_uring_sqe* Ring::sqe() {
  // The queue is full: hand it to the kernel now and take a fresh entry. A submission that
  // takes nothing (the kernel out of memory) is retried; a ring that stays full has lost its
  // invariants, and carrying on would drop a connection's read or write unnoticed.
  for (int attempt = 0; attempt < 100; ++attempt) {
    if (io_uring_sqe* s = io_uring_get_sqe(&ring_)) return s;
    int rc = io_uring_submit(&ring_);
    if (rc < 0 && rc != -EAGAIN && rc != -EINTR && rc != -EBUSY) break;
    if (rc <= 0) io_uring_get_events(&ring_);  // EBUSY: completions must be taken in first
  }
  spdlog::critical("io_uring submission queue stays full: aborting");
  std::abort();
}

void Ring::recv(Conn* c, int fd) {
  io_uring_sqe* s = sqe();
  io_uring_prep_recv_multishot(s, fd, nullptr, 0, 0);
  s->flags |= IOSQE_BUFFER_SELECT;
  s->buf_group = kGroup;
  io_uring_sqe_set_data64(s, tag(c, Op::Recv));
  ++pending_;
}

void Ring::send(Conn* c, int fd, const msghdr* m, bool quiet) {
  io_uring_sqe* s = sqe();
  const int flags = quietSends_ ? kSendFlags : MSG_NOSIGNAL;
  if (m->msg_iovlen == 1) {  // the usual case: the kernel need not copy a msghdr in
    io_uring_prep_send(s, fd, m->msg_iov[0].iov_base, m->msg_iov[0].iov_len, flags);
  } else {
    io_uring_prep_sendmsg(s, fd, m, flags);
  }
  io_uring_sqe_set_data64(s, tag(c, Op::Send));
  ++pending_;
  if (quietSends_ && quiet) {
    s->flags |= IOSQE_CQE_SKIP_SUCCESS;
    quiet_.push_back({c, ring_.sq.sqe_tail});
  }
}

void Ring::waitWritable(Conn* c, int fd) {
  io_uring_sqe* s = sqe();
  io_uring_prep_poll_add(s, fd, POLLOUT);
  io_uring_sqe_set_data64(s, tag(c, Op::Writable));
  ++pending_;
}

void Ring::cancel(Conn* c, Op op) {
  io_uring_sqe* s = sqe();
  io_uring_prep_cancel64(s, tag(c, op), 0);
  io_uring_sqe_set_data64(s, kIgnore);
  ++ignorable_;
}

void Ring::deliver(Conn* c) {
  io_uring_sqe* s = sqe();
  io_uring_prep_nop(s);
  io_uring_sqe_set_data64(s, tag(c, Op::Deliver));
  ++pending_;
}

void Ring::close(Conn* c, int fd) {
  io_uring_sqe* s = sqe();
  if (fd >= 0) {
    io_uring_prep_close(s, fd);
  } else {
    io_uring_prep_nop(s);
  }
  io_uring_sqe_set_data64(s, tag(c, Op::Close));
  ++pending_;
}

void Ring::accept(Listener* l, int fd) {
  io_uring_sqe* s = sqe();
  io_uring_prep_multishot_accept(s, fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  io_uring_sqe_set_data64(s, tag(l, Op::Accept));
  ++pending_;
}

void Ring::cancelAccept(Listener* l) {
  io_uring_sqe* s = sqe();
  io_uring_prep_cancel64(s, tag(l, Op::Accept), 0);
  io_uring_sqe_set_data64(s, kIgnore);
  ++ignorable_;
}

void Ring::poll(int fd) {
  io_uring_sqe* s = sqe();
  io_uring_prep_poll_add(s, fd, POLLIN);
  io_uring_sqe_set_data64(s, kPoll);
}

void Ring::message(int ringFd, uint64_t data, unsigned value) {
  io_uring_sqe* s = sqe();
  io_uring_prep_msg_ring(s, ringFd, value, data, 0);
  s->flags |= IOSQE_CQE_SKIP_SUCCESS;
  io_uring_sqe_set_data64(s, data);
}

void Ring::put(uint16_t bid, protocol::Chunk* c) {
  io_uring_buf_ring_add(bufRing_, c->data, protocol::Chunk::kSize, bid,
                        io_uring_buf_ring_mask(kBuffers), 0);
  io_uring_buf_ring_advance(bufRing_, 1);
}

protocol::Chunk* Ring::takeBuffer(uint16_t bid) {
  protocol::Chunk* c = buffers_[bid];
  buffers_[bid] = chunks_.acquire();
  put(bid, buffers_[bid]);
  return c;
}

void Ring::runSends() {
  // A send can queue more output for another connection (an error ends a session, which
  // hands its server on): run until the list stays empty.
  while (!sendList_.empty()) {
    sending_.swap(sendList_);
    for (Conn* c : sending_) c->ringSend();
    sending_.clear();
  }
}

Ring::Turn Ring::wait(int timeoutMs) {
  runSends();
  Turn t;
  // The completion queue is empty here (the last turn took all), so waiting for one more than
  // the completions nobody acts on (cancels', counted until they are taken) waits for news. A
  // quiet send that goes whole posts nothing, so a turn that sends sleeps in this one
  // io_uring_enter instead of waking for its own sends and entering again to sleep.
  const unsigned want = 1 + ignorable_;
  // Errors (EINTR, ETIME, a full completion queue) need nothing here: the completions there
  // are are taken below, and the next turn submits what is still queued.
  if (timeoutMs == 0) {
    io_uring_submit_and_get_events(&ring_);
  } else if (timeoutMs < 0) {
    io_uring_submit_and_wait(&ring_, want);
  } else {
    __kernel_timespec ts{};
    ts.tv_sec = timeoutMs / 1000;
    ts.tv_nsec = static_cast<long long>(timeoutMs % 1000) * 1000000;
    io_uring_cqe* first = nullptr;
    io_uring_submit_and_wait_timeout(&ring_, &first, want, &ts, nullptr);
  }
  reap(t);
  // Completions that found the queue full wait in the kernel's overflow list; a quiet send's
  // short one may be among them, so all are taken before a quiet send is called whole.
  while (io_uring_cq_has_overflow(&ring_)) {
    io_uring_get_events(&ring_);
    reap(t);
  }
  // The quiet sends submitted: each that posted nothing went whole. One the kernel has not
  // taken yet (a submission refused, EBUSY) waits for the next turn's.
  const unsigned taken = io_uring_smp_load_acquire(ring_.sq.khead);
  quietDone_.swap(quiet_);
  for (const QuietSend& q : quietDone_) {
    if (static_cast<int>(taken - q.sqeEnd) < 0) {
      quiet_.push_back(q);
    } else if (q.conn->onRingSendQuiet()) {
      --pending_;
    }
  }
  quietDone_.clear();
  return t;
}

void Ring::reap(Turn& t) {
  unsigned head;
  unsigned seen = 0;
  io_uring_cqe* cqe;
  io_uring_for_each_cqe(&ring_, head, cqe) {
    ++seen;
    uint64_t ud = io_uring_cqe_get_data64(cqe);
    if (ud == kIgnore) {
      if (ignorable_ > 0) --ignorable_;
      continue;
    }
    if (ud == kPoll) {
      t.pollFired = true;
      continue;
    }
    auto op = static_cast<Op>(ud & 7);
    if (op == Op::Message) {  // not counted in pending_: from another ring, or a failed send
      if (messageFn_) messageFn_(messageCtx_, ud, cqe->res);
      continue;
    }
    if (!(cqe->flags & IORING_CQE_F_MORE)) --pending_;  // a multishot's last, or a one-shot
    if (op == Op::Accept) {
      reinterpret_cast<Listener*>(ud & ~uint64_t{7})->onRingAccept(cqe->res, cqe->flags);
      continue;
    }
    reinterpret_cast<Conn*>(ud & ~uint64_t{7})->onRingCompletion(op, cqe->res, cqe->flags);
  }
  io_uring_cq_advance(&ring_, seen);
}

}  // namespace pgswitch::proxy
