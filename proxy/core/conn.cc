// Socket I/O for one connection. Why uv_try_write first: most small responses fit in the
// kernel buffer, so no write request is needed at all; only the remainder goes to uv_write.
// With TLS the socket reads into tls_->cipherIn and writes from tls_->wire; the plaintext path
// touches neither.
#include "proxy/core/conn.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>

#include <utility>

#include "proxy/core/worker.h"

namespace pgswitch::proxy {

Conn::Conn(Worker& w, Owner* owner) : worker_(w), owner_(owner) {
  if (!w.ring()) uvInit();  // with a ring, only a connect needs the handle
}

// Closed before the owner destroys it; a descriptor still here was never handed to the loop.
Conn::~Conn() {
  if (rawFd_ >= 0) ::close(rawFd_);
}

void Conn::uvInit() {
  tcp_ = std::make_unique<uv_tcp_t>();
  uv_tcp_init(worker_.loop(), tcp_.get());
  tcp_->data = this;
}

Conn::Moving& Conn::makeMoving() {
  moving_ = std::make_unique<Moving>(worker_.chunks());
  return *moving_;
}

void Conn::shrinkIdle() noexcept {
  if (!moving_) return;
  Moving& m = *moving_;
  if (!writing_ && !m.connectReq && m.in.empty() && m.out.empty() && !m.in.tapped() &&
      !m.out.tapped()) {
    moving_.reset();  // the chunks they still referred to go back with them
    return;
  }
  m.in.shrink();
  if (!writing_) m.out.shrink();
}

// An accepted socket has TCP_NODELAY already: it inherits the listener's (Listener::open).
int Conn::adopt(int fd) {
  if (!tcp_) {
    // The ring's alone (accept4 made it non-blocking): no libuv set-up to pay for per login.
    rawFd_ = fd;
    return 0;
  }
  int rc = uv_tcp_open(tcp_.get(), fd);
  if (rc != 0) {
    ::close(fd);
    return rc;
  }
  return 0;
}

int Conn::connect(const sockaddr* addr) {
  if (!tcp_) uvInit();
  auto& req = moving().connectReq;
  req = std::make_unique<uv_connect_t>();
  req->data = this;
  int rc = uv_tcp_connect(req.get(), tcp_.get(), addr, &Conn::onConnect);
  if (rc != 0) req.reset();  // no callback will come
  return rc;
}

void Conn::onConnect(uv_connect_t* req, int status) {
  Conn* c = static_cast<Conn*>(req->data);
  c->moving_->connectReq.reset();  // req is gone from here on
  if (c->closing_) return;
  if (status == 0) uv_tcp_nodelay(c->tcp_.get(), 1);
  c->owner_->onConnConnected(*c, status);
}

void Conn::startReading() {
  if (reading_ || closing_) return;
  if (ring()) return ringStartReading();
  if (uv_read_start(reinterpret_cast<uv_stream_t*>(tcp_.get()), &Conn::onAlloc, &Conn::onRead) ==
      0) {
    reading_ = true;
  }
}

void Conn::stopReading() {
  if (!reading_) return;
  if (ring()) return ringStopReading();
  uv_read_stop(reinterpret_cast<uv_stream_t*>(tcp_.get()));
  reading_ = false;
}

void Conn::onAlloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  Conn* c = static_cast<Conn*>(h->data);
  auto span = c->tls_ ? c->tls_->cipherIn.writable() : c->in().writable();
  buf->base = reinterpret_cast<char*>(span.data());
  buf->len = span.size();
}

void Conn::onRead(uv_stream_t* s, ssize_t n, const uv_buf_t*) {
  Conn* c = static_cast<Conn*>(s->data);
  if (n > 0 && c->tls_) {
    c->tls_->cipherIn.commit(static_cast<size_t>(n));
    c->onTlsRead(static_cast<size_t>(n));
  } else if (n > 0) {
    c->in().commit(static_cast<size_t>(n));
    if (!c->closing_) c->owner_->onConnRead(*c);
    // What was read is forwarded and, usually, already written by the peer (uv_try_write):
    // the emptied chunk goes back to the pool rather than staying with an idle connection.
    c->releaseDrainedInput();
  } else if (n == 0) {
    (c->tls_ ? c->tls_->cipherIn : c->in()).releaseUnused();
  } else if (n < 0) {
    c->stopReading();
    if (!c->closing_) c->owner_->onConnError(*c, static_cast<int>(n));
  }
}

std::string Conn::startTls(SSL_CTX* ctx, TlsStream::Role role, std::string_view verifyHost,
                           std::string_view sni) {
  if (tls_) return "TLS is already on";
  bool direct = role == TlsStream::Role::AcceptDirect;
  if (!inputEmpty() && !direct) return "received unencrypted data after SSL request";
  // The plaintext answer must be on the wire before the first TLS byte: one byte, which
  // uv_try_write has written unless the socket is broken (with a ring it waits for the turn's
  // send, so it is written here).
  if (ring() && !writing_ && pendingBytes() != 0 && tryWrite(out()) < 0) out().clear();
  if (writing_ || pendingBytes() != 0) return "could not write the answer to SSLRequest";
  auto stream = TlsStream::make(ctx, role, verifyHost, sni);
  if (!stream) return "could not create a TLS session";
  tls_ = std::make_unique<TlsParts>(worker_.chunks());
  tls_->stream = std::move(stream);
  TlsStream& tls = *tls_->stream;
  if (role == TlsStream::Role::Connect) {
    if (tls.handshake() == TlsStream::Status::Failed) return tls.error();
    tls.drainTo(tls_->wire);
    flush();
  }
  if (direct && !inputEmpty()) {
    // The ClientHello (and whatever followed) was read as plaintext: it is ciphertext.
    protocol::ByteQueue& in = this->in();
    bool fed = tls.feed(in.contiguous(in.size(), tls_->scratch));
    in.clear();
    if (!fed) return "could not hand the ClientHello to TLS";
    size_t produced = 0;
    TlsStream::Status st = tls.readInto(in, produced);
    tls.drainTo(tls_->wire);
    flush();
    if (st == TlsStream::Status::Failed) return tls.error();
  }
  return "";
}

void Conn::onTlsRead(size_t) noexcept {
  // Everything read is handed to the BIO at once, so the queue holds one read: one chunk.
  TlsStream& tls = *tls_->stream;
  bool fed = tls.feed(tls_->cipherIn.contiguous(tls_->cipherIn.size(), tls_->scratch));
  tls_->cipherIn.clear();
  if (!fed) {
    tlsFailed(TlsStream::Status::Failed);
    return;
  }
  bool wasDone = tls.handshakeDone();
  size_t produced = 0;
  TlsStream::Status st = tls.readInto(in(), produced);
  // Handshake answers, alerts and tickets go out even when no plaintext came in; output the
  // owner queued before the handshake finished is encrypted now.
  if (st != TlsStream::Status::Failed || !wasDone) tls.drainTo(tls_->wire);
  if (!wireQueue().empty() || (!wasDone && tls.handshakeDone())) flush();
  if (closing_ || closed_) return;
  if (produced > 0) {
    owner_->onConnRead(*this);
    if (closing_ || closed_) return;
    releaseDrainedInput();  // as in onRead
  }
  if (st != TlsStream::Status::Ok) tlsFailed(st);
}

bool Conn::tlsEncryptPending() noexcept {
  TlsStream& tls = *tls_->stream;
  if (pendingPlain() && tls.handshakeDone() && tls.encrypt(out()) != TlsStream::Status::Ok) {
    out().clear();
    tlsFailed(TlsStream::Status::Failed);
    return false;
  }
  tls.drainTo(tls_->wire);
  return true;
}

void Conn::tlsFailed(TlsStream::Status s) noexcept {
  stopReading();
  if (!closing_) owner_->onConnError(*this, s == TlsStream::Status::Closed ? UV_EOF : UV_EPROTO);
}

void Conn::flush() noexcept {
  if (closed_) return;
  if (closing_ && !closeWhenFlushed_) return;
  if (tls_ && !tlsEncryptPending()) return;
  if (ring()) return ringFlush();
  protocol::SliceQueue& q = wireQueue();
  if (writing_) return;
  if (q.empty()) {
    if (closeWhenFlushed_) {
      closeWhenFlushed_ = false;
      closing_ = false;
      close();
    }
    return;
  }
  auto* stream = reinterpret_cast<uv_stream_t*>(tcp_.get());
  if (int w = tryWrite(q); w < 0) {
    // The peer is gone; reading reports the error to the owner.
    q.clear();
    out().clear();
    if (!closing_) owner_->onConnError(*this, w);
    return;
  }
  std::array<uv_buf_t, kMaxIov> iov;
  if (!q.empty()) {
    std::array<protocol::SliceQueue::IoVec, kMaxIov> v;
    size_t cnt = q.gather(v);
    Moving& m = moving();
    m.inflight = 0;
    for (size_t i = 0; i < cnt; ++i) {
      iov[i] = uv_buf_init(const_cast<char*>(reinterpret_cast<const char*>(v[i].base)),
                            static_cast<unsigned>(v[i].len));
      m.inflight += v[i].len;
    }
    m.writeReq = worker_.takeWriteReq();
    m.writeReq->data = this;
    int rc = uv_write(m.writeReq, stream, iov.data(), static_cast<unsigned>(cnt), &Conn::onWrite);
    if (rc == 0) {
      writing_ = true;
    } else {
      worker_.giveWriteReq(std::exchange(m.writeReq, nullptr));
      m.inflight = 0;
      q.clear();
      out().clear();
      if (!closing_) owner_->onConnError(*this, rc);
      return;
    }
  }
  if (!writing_ && q.empty() && closeWhenFlushed_) {
    closeWhenFlushed_ = false;
    closing_ = false;
    close();
    return;
  }
  notifyDrainedIfLow();
}

int Conn::tryWrite(protocol::SliceQueue& q) noexcept {
  // uv_buf_t has iovec's layout on Unix, which libuv relies on too.
  static_assert(sizeof(uv_buf_t) == sizeof(iovec) &&
                offsetof(uv_buf_t, len) == offsetof(iovec, iov_len));
  std::array<iovec, kMaxIov> iov;
  // Bounded: at most a few rounds; the caller hands the rest to uv_write or the ring.
  for (int round = 0; round < 4 && !q.empty(); ++round) {
    std::array<protocol::SliceQueue::IoVec, kMaxIov> v;
    size_t cnt = q.gather(v);
    for (size_t i = 0; i < cnt; ++i) {
      iov[i].iov_base = const_cast<std::byte*>(v[i].base);
      iov[i].iov_len = v[i].len;
    }
    int w;
    if (rawFd_ >= 0) {
      msghdr msg{};
      msg.msg_iov = iov.data();
      msg.msg_iovlen = cnt;
      ssize_t n;
      do {
        n = ::sendmsg(rawFd_, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
      } while (n < 0 && errno == EINTR);
      if (n >= 0) {
        w = static_cast<int>(n);
      } else {  // as uv_try_write: ENOBUFS is "try again later" too
        w = errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS ? UV_EAGAIN : -errno;
      }
      if (n == 0) break;
    } else if (!tcp_) {
      return UV_EBADF;  // the socket is gone
    } else {
      w = uv_try_write(reinterpret_cast<uv_stream_t*>(tcp_.get()),
                       reinterpret_cast<const uv_buf_t*>(iov.data()), static_cast<unsigned>(cnt));
    }
    if (w > 0) {
      q.consume(static_cast<size_t>(w));
      continue;
    }
    if (w == UV_EAGAIN) break;
    if (w < 0) return w;
  }
  return 0;
}

void Conn::writeFailed(int status) noexcept {
  // What was queued cannot reach the peer: drop it. A close waiting for it happens now;
  // otherwise the owner hears of the error.
  moving().out.clear();
  if (tls_) tls_->wire.clear();
  if (closeWhenFlushed_) {
    closeWhenFlushed_ = false;
    closing_ = false;
    close();
  } else if (!closing_) {
    owner_->onConnError(*this, status);
  }
}

void Conn::notifyDrainedIfLow() noexcept {
  if (!drainWanted_ || closing_ || closed_ || pendingBytes() >= kLowWater) return;
  drainWanted_ = false;
  owner_->onConnDrained(*this);
}

void Conn::onWrite(uv_write_t* req, int status) {
  Conn* c = static_cast<Conn*>(req->data);
  Conn::Moving& m = *c->moving_;  // kept while writing_ (shrinkIdle)
  c->worker_.giveWriteReq(std::exchange(m.writeReq, nullptr));
  c->writing_ = false;
  // The slices stay referenced in the queue until now: consume releases the chunks.
  c->wireQueue().consume(m.inflight);
  m.inflight = 0;
  if (c->closed_) return;
  if (status < 0) return c->writeFailed(status);
  c->flush();
  c->notifyDrainedIfLow();  // flush returns early when nothing is left to write
}

void Conn::closeAfterFlush() noexcept {
  if (closing_ || closed_) return;
  if (tls_) {
    // What is queued, then close_notify, as ciphertext; no error callbacks from here on.
    TlsStream& tls = *tls_->stream;
    if (tls.handshakeDone() && tls.encrypt(out()) == TlsStream::Status::Ok) tls.shutdown();
    out().clear();
    tls.drainTo(tls_->wire);
  }
  if (pendingBytes() == 0 && !writing_) {  // nothing to wait for
    close();
    return;
  }
  stopReading();
  closeWhenFlushed_ = true;
  closing_ = true;
  flush();
}

void Conn::close() noexcept {
  if (closing_ || closed_) {
    if (closeWhenFlushed_) {
      closeWhenFlushed_ = false;
    } else {
      return;
    }
  }
  closing_ = true;
  stopReading();
  if (ring()) return ringClose();
  auto* h = reinterpret_cast<uv_handle_t*>(tcp_.get());
  if (!uv_is_closing(h)) uv_close(h, &Conn::onClose);
}

void Conn::onClose(uv_handle_t* h) { static_cast<Conn*>(h->data)->closed(); }

void Conn::closed() noexcept {
  closed_ = true;
  // A pending uv_write completes with UV_ECANCELED before this callback (and a ring close
  // comes after the Conn's last operation), so the slices they referenced are already
  // released; drop what is left.
  if (moving_) {
    moving_->out.clear();
    moving_->in.clear();
  }
  if (tls_) {
    tls_->wire.clear();
    tls_->cipherIn.clear();
  }
  owner_->onConnClosed(*this);
}

std::string Conn::peerName() const {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getpeername(fd(), reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  char ip[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
    port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
    port = ntohs(a->sin6_port);
  }
  return std::string(ip) + ":" + std::to_string(port);
}

}  // namespace pgswitch::proxy
