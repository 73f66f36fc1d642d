// Ring: a worker's io_uring (issue 14, `server.io_uring`). With it, every Conn of the worker
// reads and writes through one ring: the sends and re-armed receives of a loop turn go to the
// kernel in one io_uring_enter, which also collects their completions, where the epoll path
// makes one read() and one write() per message per hop and an epoll_wait per turn.
//
// Reads are multishot receives into buffers the kernel takes from a ring of this worker's
// chunks, so an idle connection holds no buffer; the chunk a receive filled joins the
// connection's ByteQueue as it is (no copy) and a fresh chunk takes its place in the ring.
//
// The worker's listener accepts through the ring too (one multishot accept), and an accepted
// client's socket is the ring's alone: no libuv handle (no descriptor set-up, no epoll
// registration to undo), closed by the ring. libuv keeps the rest (the connects to servers,
// timers, cross-thread posts): the worker polls libuv's own epoll descriptor through the ring
// and runs libuv's loop without blocking when that poll fires or a timer is due
// (Worker::runRing).
//
// Completions name their Conn (or Listener) and operation in user_data: the object's address
// with the operation in its low bits. A Conn is not destroyed while an operation of its is in
// the ring (Conn::close waits for them), so a completion never reaches freed memory. The
// Listener belongs to the worker, and the loop does not end while its accept is in the ring.
#pragma once

#include <liburing.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "protocol/buffer.h"

namespace pgswitch::proxy {

class Conn;
class Listener;

class Ring {
 public:
  enum class Op : uint8_t {
    Recv = 1,
    Send = 2,
    Deliver = 3,
    Close = 4,
    Accept = 5,
    Writable = 6,
    Message = 7,  // message(): user_data is the sender's own word, not an object's address
  };

  // Null, with the reason in `why`, where the kernel (or a seccomp profile) refuses
  // io_uring or the flags it is set up with (Linux >= 6.1). Call on the thread that runs the
  // loop: the ring is single-issuer.
  static std::unique_ptr<Ring> make(protocol::ChunkPool& chunks, std::string& why);
  ~Ring();
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  // Preparing operations; they reach the kernel at the next wait().
  void recv(Conn* c, int fd);                  // multishot, into the ring's buffers
  // m must live until the completion. Where the kernel allows (quietSends_), the send never
  // waits for room: it completes in the submission, short or with EAGAIN when the socket is
  // full. A quiet send (its owner has nothing to do when it goes whole) then posts nothing:
  // Conn::onRingSendQuiet reports it after the completions of the wait() that submitted it.
  void send(Conn* c, int fd, const msghdr* m, bool quiet);
  void waitWritable(Conn* c, int fd);           // one-shot POLLOUT, completes as Writable
  void cancel(Conn* c, Op op);                  // its completion is dropped
  void deliver(Conn* c);                        // a completion for c in the next turn
  void close(Conn* c, int fd);                  // closes fd (-1: none), then completes
  void poll(int fd);                            // one-shot POLLIN, completes as pollFired
  // A completion in another ring (its descriptor: fd()) with user_data `data` (Op::Message
  // in its low three bits) and res `value` (>= 0), posted by the kernel and waking that
  // ring's loop if it sleeps: no eventfd, no libuv turn. Should the kernel refuse it (the
  // other ring gone or its completion queue full), the same `data` completes here with the
  // error in res; a message that goes through posts nothing here. Both reach the function
  // given to onMessage.
  void message(int ringFd, uint64_t data, unsigned value);
  using MessageFn = void (*)(void* ctx, uint64_t data, int res);
  void onMessage(MessageFn fn, void* ctx) {
    messageFn_ = fn;
    messageCtx_ = ctx;
  }
  int fd() const { return ring_.ring_fd; }
  // Multishot accept of non-blocking, close-on-exec sockets, each handed to
  // Listener::onRingAccept; cancelAccept ends it (a last completion, without IORING_CQE_F_MORE).
  void accept(Listener* l, int fd);
  void cancelAccept(Listener* l);
  // c has output to send: Conn::ringSend runs for it before the next submission, so that
  // everything a turn queued for one connection leaves in one send.
  void wantSend(Conn* c) { sendList_.push_back(c); }
  // Prepares the sends wanted so far (wait() does too). The loop calls it before it asks libuv
  // for its timeout: a send can end a connection, whose close libuv must then run.
  void runSends();

  // What a send is made from (the kernel reads it until the completion): taken by a Conn
  // for its one send in flight, given back at the completion; reused LIFO, so neither an idle
  // nor a busy connection carries ~300 bytes for it.
  struct SendSlot {
    msghdr msg{};
    std::array<iovec, 16> iov{};
    SendSlot* next = nullptr;
  };
  SendSlot* takeSendSlot() {
    if (!freeSlots_) return new SendSlot;
    return std::exchange(freeSlots_, freeSlots_->next);
  }
  void giveSendSlot(SendSlot* s) { s->next = std::exchange(freeSlots_, s); }

  struct Turn {
    bool pollFired = false;  // the descriptor given to poll() is readable
  };
  // Prepares the sends wanted, submits everything, waits up to timeoutMs (-1: no limit, 0: do
  // not wait) for one completion beyond the cancels' (which nobody acts on), hands each
  // completion to its Conn, then reports the quiet sends that went whole.
  Turn wait(int timeoutMs);
  // The chunk receive buffer `bid` is: it leaves the ring (a fresh one takes its place) and
  // the caller gives it its first reference.
  protocol::Chunk* takeBuffer(uint16_t bid);
  // Operations of Conns and the Listener in the ring (the poll of libuv's descriptor not
  // counted).
  size_t pending() const { return pending_; }

 private:
  Ring(protocol::ChunkPool& chunks) : chunks_(chunks) {}
  io_uring_sqe* sqe();
  void put(uint16_t bid, protocol::Chunk* c);
  static bool sendsCompleteInSubmission(io_uring& ring);
  void reap(Turn& t);  // hands each completion in the queue to its Conn
  static constexpr int kSendFlags = MSG_NOSIGNAL | MSG_DONTWAIT | MSG_WAITALL;

  static constexpr unsigned kEntries = 1024;
  static constexpr unsigned kCqEntries = 4096;
  static constexpr uint16_t kBuffers = 64;  // 2 MiB of 32 KiB chunks
  static constexpr uint16_t kGroup = 1;
  static constexpr uint64_t kIgnore = 0;
  static constexpr uint64_t kPoll = 1;

  protocol::ChunkPool& chunks_;
  io_uring ring_{};
  bool ringUp_ = false;
  io_uring_buf_ring* bufRing_ = nullptr;
  size_t bufRingBytes_ = 0;
  std::vector<protocol::Chunk*> buffers_;  // by buffer id
  SendSlot* freeSlots_ = nullptr;
  MessageFn messageFn_ = nullptr;
  void* messageCtx_ = nullptr;
  std::vector<Conn*> sendList_;
  std::vector<Conn*> sending_;  // runSends' copy, reused
  size_t pending_ = 0;
  unsigned ignorable_ = 0;        // cancels' completions (nobody acts on them) not yet taken
  bool quietSends_ = false;       // sends complete in the submission, whole ones silently
  struct QuietSend {
    Conn* conn;
    unsigned sqeEnd;  // the submission queue's tail just after the send's entry
  };
  std::vector<QuietSend> quiet_;      // sends not known to be complete yet
  std::vector<QuietSend> quietDone_;  // wait()'s copy, reused
};

}  // namespace pgswitch::proxy
