// Conn: one TCP socket on a worker's loop, with its own input ByteQueue (reads land there,
// no allocation per read) and output SliceQueue (written with uv_try_write first, then one
// uv_write at a time). The queues exist while bytes move: made at first use, given back by
// shrinkIdle once both are empty. Conn never decides anything: it reports reads, drains, errors and
// closes to its Owner. Memory of the handle is released only after uv_close's callback.
// After startTls() the same queues hold plaintext: a TlsStream owned by the Conn sits between
// them and the socket, so what is above the Conn does not change.
// On a worker with a Ring (server.io_uring), reads are the ring's multishot receives and
// writes its sends, made once per loop turn (conn_ring.cc). There an accepted socket has no
// libuv handle at all: the Conn holds the descriptor and the ring closes it. A connection to a
// server still connects through libuv, so it has one.
#pragma once

#include <uv.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "protocol/buffer.h"
#include "proxy/core/ring.h"
#include "proxy/core/tls_stream.h"

namespace pgswitch::proxy {

class Worker;

class Conn {
 public:
  // Above kHighWater bytes queued for writing, the other side stops reading; below
  // kLowWater it resumes. Together with the 32 KiB read chunk this bounds a relay pair's
  // memory to well under 1 MiB whatever the result size.
  static constexpr size_t kHighWater = 256 * 1024;
  static constexpr size_t kLowWater = 64 * 1024;

  class Owner {
   public:
    virtual void onConnRead(Conn& c) noexcept = 0;
    // status < 0: read error or EOF (UV_EOF). The owner should close().
    virtual void onConnError(Conn& c, int status) noexcept = 0;
    virtual void onConnConnected(Conn& c, int status) noexcept {}
    // The write queue fell below kLowWater after being above it.
    virtual void onConnDrained(Conn& c) noexcept {}
    // The handle is closed; the owner may now destroy the Conn (not inside this call's
    // stack if it is itself being called from Conn: use Worker::deferDelete).
    virtual void onConnClosed(Conn& c) noexcept = 0;

   protected:
    ~Owner() = default;
  };

  Conn(Worker& w, Owner* owner);
  ~Conn();
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  // Takes over an accepted socket (the Conn closes it, also when this fails).
  int adopt(int fd);
  int connect(const sockaddr* addr);
  void setOwner(Owner* o) { owner_ = o; }

  void startReading();
  void stopReading();
  bool reading() const { return reading_; }
  // Nothing queued either way, nothing being written or connected, no tap attached: the
  // queues go back (issue 14: ~150 bytes an idle connection does not carry); the next read or
  // send makes them again. Otherwise their lists give back their capacity.
  void shrinkIdle() noexcept;
  // The input's drained chunk goes back (ByteQueue::releaseDrained), without making queues.
  void releaseDrainedInput() {
    if (moving_) moving_->in.releaseDrained();
  }

  protocol::ByteQueue& in() { return moving().in; }
  protocol::SliceQueue& out() { return moving().out; }
  bool inputEmpty() const { return !moving_ || moving_->in.empty(); }
  // Queues a copy of bytes built by the proxy.
  void send(std::string_view bytes) { out().pushCopy(bytes); }
  // Starts writing whatever is queued. Safe to call often.
  void flush() noexcept;
  // True when the producer feeding this connection should pause. Asking registers the
  // caller's interest: onConnDrained fires once the queue falls below kLowWater, however
  // the queue got there (uv_try_write, a completed uv_write, or a clear).
  bool aboveHighWater() const {
    if (pendingBytes() <= kHighWater) return false;
    drainWanted_ = true;
    return true;
  }
  size_t queuedBytes() const { return pendingBytes() + (moving_ ? moving_->inflight : 0); }

  // From now on the socket carries TLS: bytes read are decrypted into in(), bytes sent are
  // encrypted. The plaintext answer that precedes it ('S') must already be written and
  // nothing may be waiting in in() (bytes a client sent before the handshake must not be
  // taken as if they had come encrypted: CVE-2021-23214). Connect role starts the handshake.
  // AcceptDirect is the exception: what was read is the ClientHello and goes to TLS.
  // Returns "" or why not; on failure the caller closes.
  std::string startTls(SSL_CTX* ctx, TlsStream::Role role, std::string_view verifyHost = {},
                       std::string_view sni = {});
  bool encrypted() const { return tls_ != nullptr; }
  const TlsStream* tls() const { return tls_ ? tls_->stream.get() : nullptr; }

  // Flushes what is queued (best effort) and closes. Idempotent.
  void close() noexcept;
  bool closing() const { return closing_; }
  bool closed() const { return closed_; }
  // Close after the queued bytes are written (e.g. after a FATAL error message).
  void closeAfterFlush() noexcept;

  std::string peerName() const;
  Worker& worker() { return worker_; }

  // The Ring's side (conn_ring.cc): a completion of an operation of this Conn, and the
  // turn's send, prepared just before the ring submits.
  void onRingCompletion(Ring::Op op, int res, uint32_t flags) noexcept;
  // The ring's quiet end of a send that went whole (no completion posted): true if it was
  // still unreported here.
  bool onRingSendQuiet() noexcept;
  void ringSend() noexcept;

 private:
  static void onAlloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void onRead(uv_stream_t* s, ssize_t n, const uv_buf_t* buf);
  static void onWrite(uv_write_t* req, int status);
  static void onConnect(uv_connect_t* req, int status);
  static void onClose(uv_handle_t* h);
  // The socket is gone (libuv's close callback or the ring's close): tell the owner.
  void closed() noexcept;
  void uvInit();

  Worker& worker_;
  Owner* owner_;
  // The libuv handle, made by uvInit(); then closed through libuv. An accepted socket on a ring
  // worker has none (~250 bytes an idle client does not carry): its descriptor is rawFd_.
  std::unique_ptr<uv_tcp_t> tcp_;
  int rawFd_ = -1;
  // What only a connection with bytes moving (or a connect in progress) uses.
  struct Moving {
    explicit Moving(protocol::ChunkPool& pool) : in(pool), out(pool) {}
    protocol::ByteQueue in;
    protocol::SliceQueue out;
    size_t inflight = 0;  // bytes handed to uv_write, not yet completed
    // Only while a uv_write is in flight: taken from the worker's free list and given back
    // by onWrite (no allocation per write).
    uv_write_t* writeReq = nullptr;
    // Only while connecting (server connections): freed by onConnect, which libuv calls
    // before the close callback also when the connection closes first.
    std::unique_ptr<uv_connect_t> connectReq;
    // Only while the ring's send is in flight: what it sends from (Ring::takeSendSlot).
    Ring::SendSlot* ringSend = nullptr;
  };
  std::unique_ptr<Moving> moving_;
  Moving& moving() { return moving_ ? *moving_ : makeMoving(); }
  Moving& makeMoving();
  // Per write: a local array (uv_write copies it), not 1 KiB in every connection.
  static constexpr size_t kMaxIov = 64;
  bool writing_ = false;
  bool reading_ = false;
  bool closing_ = false;
  bool closed_ = false;
  bool closeWhenFlushed_ = false;
  mutable bool drainWanted_ = false;
  // With a Ring: which of this Conn's operations are in it, what arrived while it was not
  // reading (reported once it reads again), and a close waiting for the operations to end.
  struct RingState {
    uint8_t ops = 0;  // in the ring: receive, send or POLLOUT wait, delivery, a wanted send
    bool recvArmed : 1 = false;    // the multishot receive has not ended
    bool recvCancelled : 1 = false;
    bool sendWanted : 1 = false;   // on the ring's send list
    bool deliverQueued : 1 = false;
    bool heldInput : 1 = false;    // bytes came in while not reading
    bool closeWanted : 1 = false;  // close() waits for ops to reach 0
    bool closeStarted : 1 = false;  // uv_close or the ring's close has been asked for
    bool writeWait : 1 = false;    // the socket was full: a POLLOUT wait stands for the send
    bool sendInRing : 1 = false;   // a send not reported yet (its completion or the quiet end)
    int heldError = 0;             // EOF or an error that came while not reading
  } ring_;
  Ring* ring() const;
  int fd() const;
  // Smaller receives are copied behind bytes still queued rather than adopted (conn_ring.cc).
  static constexpr size_t kCopyBelow = 2048;
  bool wirePending() const;  // bytes the socket can write now (ciphertext with TLS)
  void ringStartReading();
  void ringStopReading();
  void ringFlush() noexcept;
  void ringClose() noexcept;
  void ringOpEnded() noexcept;
  void ringCloseSocket() noexcept;  // no operation is left: close the socket itself
  void onRingRecv(int res, uint32_t flags) noexcept;
  void onRingSent(int res) noexcept;
  void onRingWritable() noexcept;
  void onRingDeliver() noexcept;
  void deliverRead() noexcept;
  // A write (uv_write or the ring's send) failed with `status`.
  void writeFailed(int status) noexcept;
  // Writes from q with direct writes until the socket takes no more: 0, or the error.
  int tryWrite(protocol::SliceQueue& q) noexcept;
  void notifyDrainedIfLow() noexcept;
  // Plaintext not yet written plus, with TLS, ciphertext not yet written.
  size_t pendingBytes() const {
    return (moving_ ? moving_->out.bytes() : 0) + (tls_ ? tls_->wire.bytes() : 0);
  }
  bool pendingPlain() const { return moving_ && !moving_->out.empty(); }
  // The queue the socket writes from: out() in plaintext, the TLS records with TLS.
  protocol::SliceQueue& wireQueue() { return tls_ ? tls_->wire : out(); }
  void onTlsRead(size_t n) noexcept;
  bool tlsEncryptPending() noexcept;
  void tlsFailed(TlsStream::Status s) noexcept;

  // What only an encrypted connection needs, made by startTls() (a plaintext one does not
  // carry ~150 bytes of empty queues).
  struct TlsParts {
    explicit TlsParts(protocol::ChunkPool& pool) : cipherIn(pool), wire(pool) {}
    std::unique_ptr<TlsStream> stream;
    protocol::ByteQueue cipherIn;  // what the socket read, until the BIO takes it
    protocol::SliceQueue wire;     // records waiting for the socket
    std::vector<std::byte> scratch;
  };
  std::unique_ptr<TlsParts> tls_;  // null: plaintext
};

}  // namespace pgswitch::proxy
