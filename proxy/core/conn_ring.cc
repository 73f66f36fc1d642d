// A Conn's reads and writes through its worker's Ring (server.io_uring): what Conn's public
// calls do there, and the completions. Three differences from the libuv path shape this file:
// - A multishot receive can still deliver bytes after stopReading() asked to cancel it. They
//   are kept, not reported; startReading() has them reported in the next turn (a Deliver
//   completion), as an EOF or error that came meanwhile.
// - Sends leave once per loop turn (Ring::wantSend), so all a turn queued goes in one send.
// - A send never waits in the kernel (where Ring::send can say so): one that finds the socket
//   full comes back short or with EAGAIN, and a POLLOUT wait takes its place until there is
//   room (writing_ stays set). A quiet send (ringSend says when) that goes whole posts no
//   completion and is reported after the completions of the wait that submitted it
//   (onRingSendQuiet).
// - The socket is closed only once none of this Conn's operations is in the ring: the kernel
//   may still write into its buffers, and completions point to the Conn. An accepted socket
//   (no libuv handle) is closed by the ring itself, a server's through uv_close.
#include <cerrno>
#include <utility>

#include "proxy/core/conn.h"
#include "proxy/core/worker.h"

namespace pgswitch::proxy {

Ring* Conn::ring() const { return worker_.ring(); }

int Conn::fd() const {
  if (rawFd_ >= 0 || !tcp_) return rawFd_;
  uv_os_fd_t fd = -1;
  uv_fileno(reinterpret_cast<const uv_handle_t*>(tcp_.get()), &fd);
  return fd;
}

void Conn::ringStartReading() {
  reading_ = true;
  int f = ring_.recvArmed || ring_.heldError ? -1 : fd();
  if (f < 0 && !ring_.recvArmed && !ring_.heldError) ring_.heldError = UV_EBADF;
  if ((ring_.heldInput || ring_.heldError) && !ring_.deliverQueued) {
    ring_.deliverQueued = true;
    ++ring_.ops;
    ring()->deliver(this);
  }
  if (f < 0) return;  // armed already (a cancelled receive is re-armed at its end), or ended
  ring_.recvArmed = true;
  ++ring_.ops;
  ring()->recv(this, f);
}

void Conn::ringStopReading() {
  reading_ = false;
  if (ring_.recvArmed && !ring_.recvCancelled) {
    // Backpressure must reach TCP: a receive left running would take buffers from the ring
    // (shared by the worker's connections) as fast as the peer sends.
    ring_.recvCancelled = true;
    ring()->cancel(this, Ring::Op::Recv);
  }
}

bool Conn::wirePending() const {
  return tls_ ? !tls_->wire.empty() : pendingPlain();
}

void Conn::ringFlush() noexcept {
  if (writing_ || ring_.sendWanted) return;
  // Not pendingBytes(): during a TLS handshake plaintext waits that cannot go yet.
  if (!wirePending() && !closeWhenFlushed_) return;
  ring_.sendWanted = true;
  ++ring_.ops;
  ring()->wantSend(this);
}

void Conn::ringSend() noexcept {
  ring_.sendWanted = false;
  if (closed_ || ring_.closeWanted || (closing_ && !closeWhenFlushed_) || writing_) {
    return ringOpEnded();
  }
  if (!wirePending()) {
    if (closeWhenFlushed_) {
      closeWhenFlushed_ = false;
      closing_ = false;
      close();  // waits for this op: it ends just below
    }
    return ringOpEnded();
  }
  protocol::SliceQueue& q = wireQueue();
  Moving& m = moving();
  Ring::SendSlot* slot = m.ringSend = ring()->takeSendSlot();
  std::array<protocol::SliceQueue::IoVec, std::tuple_size_v<decltype(slot->iov)>> v;
  size_t cnt = q.gather(v);
  m.inflight = 0;
  for (size_t i = 0; i < cnt; ++i) {
    slot->iov[i].iov_base = const_cast<std::byte*>(v[i].base);
    slot->iov[i].iov_len = v[i].len;
    m.inflight += v[i].len;
  }
  slot->msg = msghdr{};
  slot->msg.msg_iov = slot->iov.data();
  slot->msg.msg_iovlen = cnt;
  writing_ = true;
  ring_.sendInRing = true;
  // Quiet: its completion, if whole, asks nothing of the loop (it carries the whole queue,
  // nobody waits for the queue to drain, no close waits for it), so the loop may sleep
  // through it and learn of it after the next news (Ring::wait).
  const bool quiet = !tls_ && !drainWanted_ && !closeWhenFlushed_ && m.inflight == q.bytes();
  // The wanted send becomes the send: ops stays as it is.
  ring()->send(this, fd(), &slot->msg, quiet);
}

void Conn::ringClose() noexcept {
  ring_.closeWanted = true;
  if (ring_.recvArmed && !ring_.recvCancelled) {  // close() stopped reading; this is the rest
    ring_.recvCancelled = true;
    ring()->cancel(this, Ring::Op::Recv);
  }
  if (writing_) {
    // A wait for room the peer does not make is cancelled, and so is a send still waiting
    // in the kernel (a kernel without quiet sends); its completion writes what is left, as
    // below.
    ring()->cancel(this, ring_.writeWait ? Ring::Op::Writable : Ring::Op::Send);
  } else if (wirePending()) {
    // What was queued just before the close (a Terminate, a last error) goes now, best
    // effort, as the epoll path's direct write sends it: the turn's send would be too late.
    tryWrite(wireQueue());
  }
  if (ring_.ops == 0) ringCloseSocket();
}

void Conn::ringOpEnded() noexcept {
  if (--ring_.ops == 0 && ring_.closeWanted) ringCloseSocket();
}

void Conn::ringCloseSocket() noexcept {
  if (ring_.closeStarted) return;
  ring_.closeStarted = true;
  if (tcp_) {
    uv_close(reinterpret_cast<uv_handle_t*>(tcp_.get()), &Conn::onClose);
    return;
  }
  // Its completion, in a later turn, tells the owner: never inside the close() call's stack.
  ++ring_.ops;
  ring()->close(this, std::exchange(rawFd_, -1));
}

void Conn::onRingCompletion(Ring::Op op, int res, uint32_t flags) noexcept {
  switch (op) {
    case Ring::Op::Recv:
      return onRingRecv(res, flags);
    case Ring::Op::Send:
      return onRingSent(res);
    case Ring::Op::Deliver:
      return onRingDeliver();
    case Ring::Op::Writable:
      return onRingWritable();
    case Ring::Op::Close:
      --ring_.ops;
      return closed();
    case Ring::Op::Accept:   // the Listener's, never a Conn's
    case Ring::Op::Message:  // the worker's (Worker::onRingMessage)
      return;
  }
}

void Conn::deliverRead() noexcept {
  ring_.heldInput = false;  // whatever was held is in the queue the owner reads now
  if (tls_) return onTlsRead(0);
  owner_->onConnRead(*this);
  // As in onRead: an emptied chunk goes back to the pool, not kept by an idle connection.
  releaseDrainedInput();
}

void Conn::onRingRecv(int res, uint32_t flags) noexcept {
  const bool more = flags & IORING_CQE_F_MORE;
  if (!more) {
    ring_.recvArmed = false;
    ring_.recvCancelled = false;
  }
  const bool gone = closed_ || ring_.closeWanted;
  if (res > 0) {
    protocol::Chunk* chunk =
        ring()->takeBuffer(static_cast<uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT));
    protocol::ChunkRef ref(chunk);
    if (!gone) {
      protocol::ByteQueue& q = tls_ ? tls_->cipherIn : in();
      const auto n = static_cast<size_t>(res);
      if (n <= kCopyBelow && q.tailRoom() >= n) {
        // Bytes still queued (a slow peer, pipelining): a small receive joins them by copy,
        // so a queue of many small messages does not hold a 32 KiB chunk per receive.
        q.append(std::span<const std::byte>(chunk->data, n));
      } else {
        q.adopt(chunk, n);
      }
      if (reading_ && !closing_) {
        deliverRead();
      } else {
        ring_.heldInput = true;
      }
    }
  } else if (res != -ENOBUFS && res != -ECANCELED && !gone) {
    // EOF (0) or an error: the receive has ended. Reported now if reading, else at the next
    // startReading, as libuv would.
    ring_.heldError = res == 0 ? UV_EOF : res;
    if (reading_ && !closing_ && ring_.heldInput) deliverRead();  // bytes before the EOF first
    if (reading_ && !closing_ && !ring_.closeWanted) {
      reading_ = false;
      owner_->onConnError(*this, ring_.heldError);
    }
  }
  // ENOBUFS: every buffer was taken in one turn; they are back now. A receive that ended while
  // reading (cancelled and wanted again, or ended by the kernel) goes again.
  if (!more) {
    if (reading_ && !closing_ && !ring_.closeWanted && !ring_.recvArmed && !ring_.heldError) {
      reading_ = false;
      ringStartReading();
    }
    ringOpEnded();
  }
}

bool Conn::onRingSendQuiet() noexcept {
  if (!ring_.sendInRing) return false;  // it posted a completion: short, full or failed
  onRingSent(static_cast<int>(moving_->inflight));
  return true;
}

void Conn::onRingSent(int res) noexcept {
  ring_.sendInRing = false;
  Moving& m = *moving_;  // kept while writing_ (shrinkIdle)
  ring()->giveSendSlot(std::exchange(m.ringSend, nullptr));
  writing_ = false;
  const size_t asked = std::exchange(m.inflight, 0);
  if (closed_ || ring_.closeWanted) {
    // Closing: what is left goes now, best effort (see ringClose); onClose drops the rest.
    if (res > 0 && !closed_) {
      wireQueue().consume(static_cast<size_t>(res));
      if (wirePending()) tryWrite(wireQueue());
    }
    return ringOpEnded();
  }
  const bool full = res == -EAGAIN;
  if (res < 0 && !full) {
    writeFailed(res);
    return ringOpEnded();
  }
  if (res > 0) wireQueue().consume(static_cast<size_t>(res));
  if (full || static_cast<size_t>(res) < asked) {
    // The socket is full (a short send says so too): wait for room, not send again at once.
    // The wait is this op's successor, so ops stays as it is.
    writing_ = true;
    ring_.writeWait = true;
    ring()->waitWritable(this, fd());
    if (res > 0) notifyDrainedIfLow();
    return;
  }
  flush();
  notifyDrainedIfLow();
  ringOpEnded();
}

void Conn::onRingWritable() noexcept {
  // Whatever the poll says (room, an error, a hang-up), the next send finds out.
  writing_ = false;
  ring_.writeWait = false;
  if (closed_ || ring_.closeWanted) {
    if (!closed_ && wirePending()) tryWrite(wireQueue());  // best effort, as in onRingSent
    return ringOpEnded();
  }
  flush();
  ringOpEnded();
}

void Conn::onRingDeliver() noexcept {
  ring_.deliverQueued = false;
  if (reading_ && !closing_ && !ring_.closeWanted && !closed_) {
    if (ring_.heldInput) {
      ring_.heldInput = false;
      deliverRead();
    }
    if (ring_.heldError && reading_ && !closing_) {
      reading_ = false;
      owner_->onConnError(*this, ring_.heldError);
    }
  }
  ringOpEnded();
}

}  // namespace pgswitch::proxy
