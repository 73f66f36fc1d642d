// Socket I/O for one connection. Why uv_try_write first: most small responses fit in the
// kernel buffer, so no write request is needed at all; only the remainder goes to uv_write.
#include "proxy/core/conn.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include "proxy/core/worker.h"

namespace pgswitch::proxy {

Conn::Conn(Worker& w, Owner* owner)
    : worker_(w), owner_(owner), in_(w.chunks()), out_(w.chunks()) {
  uv_tcp_init(w.loop(), &tcp_);
  tcp_.data = this;
}

Conn::~Conn() = default;

int Conn::adopt(int fd) {
  int rc = uv_tcp_open(&tcp_, fd);
  if (rc != 0) {
    ::close(fd);
    return rc;
  }
  uv_tcp_nodelay(&tcp_, 1);
  return 0;
}

int Conn::connect(const sockaddr* addr) {
  connectReq_.data = this;
  return uv_tcp_connect(&connectReq_, &tcp_, addr, &Conn::onConnect);
}

void Conn::onConnect(uv_connect_t* req, int status) {
  Conn* c = static_cast<Conn*>(req->data);
  if (c->closing_) return;
  if (status == 0) uv_tcp_nodelay(&c->tcp_, 1);
  c->owner_->onConnConnected(*c, status);
}

void Conn::startReading() {
  if (reading_ || closing_) return;
  if (uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), &Conn::onAlloc, &Conn::onRead) == 0)
    reading_ = true;
}

void Conn::stopReading() {
  if (!reading_) return;
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
  reading_ = false;
}

void Conn::onAlloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  Conn* c = static_cast<Conn*>(h->data);
  auto span = c->in_.writable();
  buf->base = reinterpret_cast<char*>(span.data());
  buf->len = span.size();
}

void Conn::onRead(uv_stream_t* s, ssize_t n, const uv_buf_t*) {
  Conn* c = static_cast<Conn*>(s->data);
  if (n > 0) {
    c->in_.commit(static_cast<size_t>(n));
    if (!c->closing_) c->owner_->onConnRead(*c);
  } else if (n < 0) {
    c->stopReading();
    if (!c->closing_) c->owner_->onConnError(*c, static_cast<int>(n));
  }
}

void Conn::flush() noexcept {
  if (writing_ || closed_ || out_.empty()) return;
  if (closing_ && !closeWhenFlushed_) return;
  auto* stream = reinterpret_cast<uv_stream_t*>(&tcp_);
  // Bounded: at most a few rounds of try_write, then hand the rest to uv_write.
  for (int round = 0; round < 4 && !out_.empty(); ++round) {
    std::array<protocol::SliceQueue::IoVec, kMaxIov> v;
    size_t cnt = out_.gather(v);
    for (size_t i = 0; i < cnt; ++i) {
      iov_[i] = uv_buf_init(const_cast<char*>(reinterpret_cast<const char*>(v[i].base)),
                            static_cast<unsigned>(v[i].len));
    }
    int w = uv_try_write(stream, iov_.data(), static_cast<unsigned>(cnt));
    if (w > 0) {
      out_.consume(static_cast<size_t>(w));
      continue;
    }
    if (w == UV_EAGAIN) break;
    if (w < 0) {
      // The peer is gone; reading reports the error to the owner.
      out_.clear();
      if (!closing_) owner_->onConnError(*this, w);
      return;
    }
  }
  if (!out_.empty()) {
    std::array<protocol::SliceQueue::IoVec, kMaxIov> v;
    size_t cnt = out_.gather(v);
    inflight_ = 0;
    for (size_t i = 0; i < cnt; ++i) {
      iov_[i] = uv_buf_init(const_cast<char*>(reinterpret_cast<const char*>(v[i].base)),
                            static_cast<unsigned>(v[i].len));
      inflight_ += v[i].len;
    }
    writeReq_.data = this;
    int rc = uv_write(&writeReq_, stream, iov_.data(), static_cast<unsigned>(cnt), &Conn::onWrite);
    if (rc == 0) {
      writing_ = true;
    } else {
      inflight_ = 0;
      out_.clear();
      if (!closing_) owner_->onConnError(*this, rc);
      return;
    }
  }
  if (!writing_ && out_.empty() && closeWhenFlushed_) {
    closeWhenFlushed_ = false;
    closing_ = false;
    close();
    return;
  }
  notifyDrainedIfLow();
}

void Conn::notifyDrainedIfLow() noexcept {
  if (!drainWanted_ || closing_ || closed_ || out_.bytes() >= kLowWater) return;
  drainWanted_ = false;
  owner_->onConnDrained(*this);
}

void Conn::onWrite(uv_write_t* req, int status) {
  Conn* c = static_cast<Conn*>(req->data);
  c->writing_ = false;
  // The slices stay referenced in out_ until now: consume releases the chunks.
  c->out_.consume(c->inflight_);
  c->inflight_ = 0;
  if (c->closed_) return;
  if (status < 0) {
    c->out_.clear();
    if (c->closeWhenFlushed_) {
      c->closeWhenFlushed_ = false;
      c->closing_ = false;
      c->close();
    } else if (!c->closing_) {
      c->owner_->onConnError(*c, status);
    }
    return;
  }
  c->flush();
  c->notifyDrainedIfLow();  // flush returns early when nothing is left to write
}

void Conn::closeAfterFlush() noexcept {
  if (closing_ || closed_) return;
  if (out_.empty() && !writing_) {  // nothing to wait for (flush() would not close)
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
  auto* h = reinterpret_cast<uv_handle_t*>(&tcp_);
  if (!uv_is_closing(h)) uv_close(h, &Conn::onClose);
}

void Conn::onClose(uv_handle_t* h) {
  Conn* c = static_cast<Conn*>(h->data);
  c->closed_ = true;
  // A pending uv_write completes with UV_ECANCELED before this callback, so the slices it
  // referenced are already released; drop what is left.
  c->out_.clear();
  c->in_.clear();
  c->owner_->onConnClosed(*c);
}

std::string Conn::peerName() const {
  sockaddr_storage ss{};
  int len = sizeof(ss);
  if (uv_tcp_getpeername(&tcp_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
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
