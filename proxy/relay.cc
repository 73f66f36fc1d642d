// The relay: moves messages between a client and its server by byte range. Only the 5-byte
// header of each message is read; a message body is assembled only for the few types the
// proxy must understand (ReadyForQuery, ParameterStatus, Terminate). Everything else is
// forwarded as slices of the chunks it was read into, even before the whole message arrived,
// so a 1 GB row never sits in pgswitch's memory.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "protocol/framing.h"
#include "protocol/messages.h"
#include "proxy/client_session.h"

namespace pgswitch::proxy {

using namespace protocol;

namespace {

// Moves up to n bytes from the front of `from` to `to` without copying; returns how many.
size_t forward(ByteQueue& from, Conn& to, size_t n, std::vector<Slice>& tmp) {
  n = std::min(n, from.size());
  if (n == 0) return 0;
  from.sliceFront(n, tmp);
  to.out().pushSlices(tmp);
  from.consume(n);
  return n;
}

}  // namespace

void ClientSession::relayClientToServer() {
  if (state_ != State::Active || !server_) return;
  ByteQueue& in = client_->in();
  Conn& sc = server_->conn();
  while (!in.empty()) {
    if (c2sPassthrough_ > 0) {
      c2sPassthrough_ -= forward(in, sc, c2sPassthrough_, slices_);
      continue;
    }
    Frame f = readFrame(in, cfg_->maxMessageBytes);
    if (f.status == FrameStatus::Invalid) {
      sc.flush();
      fatal("08P01", std::string("invalid frontend message: ") + f.error);
      releaseServer();
      return;
    }
    if (f.total == 0) break;  // not even a header yet
    switch (f.type) {
      case fe::Terminate:
        if (f.status != FrameStatus::Complete) goto done;
        in.consume(f.total);
        sc.flush();
        releaseServer();
        transitionTo(State::Closing);
        client_->close();
        return;
      case fe::Query:
      case fe::Sync:
      case fe::FunctionCall:
        ++pendingSyncs_;
        break;
      default:
        break;
    }
    size_t n = forward(in, sc, f.total, slices_);
    c2sPassthrough_ = f.total - n;
  }
done:
  sc.flush();
  if (sc.aboveHighWater()) client_->stopReading();
}

void ClientSession::relayServerToClient() {
  if (!server_) return;
  ByteQueue& in = server_->conn().in();
  Conn& cc = *client_;
  while (!in.empty()) {
    if (s2cPassthrough_ > 0) {
      s2cPassthrough_ -= forward(in, cc, s2cPassthrough_, slices_);
      continue;
    }
    Frame f = readFrame(in, 0x7fffffff);
    if (f.status == FrameStatus::Invalid) {
      spdlog::warn("server {} sent an invalid message: {}", server_->id(), f.error);
      ServerConn* s = server_;
      server_ = nullptr;
      s->conn().in().clear();
      pool_->release(*s, false, false);
      fatal("08P01", "invalid message from server");
      return;
    }
    if (f.total == 0) break;
    switch (f.type) {
      case be::ReadyForQuery: {
        if (f.status != FrameStatus::Complete) goto done;
        auto msg = in.contiguous(f.total, scratch_);
        auto st = parseReadyForQuery(msg.subspan(5));
        server_->setTxnStatus(st ? *st : 'E');
        if (pendingSyncs_ > 0) --pendingSyncs_;
        inCopy_ = false;
        break;
      }
      case be::ParameterStatus: {
        if (f.status != FrameStatus::Complete) goto done;
        auto msg = in.contiguous(f.total, scratch_);
        auto ps = parseParameterStatus(msg.subspan(5));
        if (ps) {
          server_->setParam(ps->name, ps->value);
          sentParams_[std::string(ps->name)] = std::string(ps->value);
        }
        break;
      }
      case be::CopyInResponse:
      case be::CopyOutResponse:
      case be::CopyBothResponse:
        inCopy_ = true;
        break;
      default:
        break;
    }
    size_t n = forward(in, cc, f.total, slices_);
    s2cPassthrough_ = f.total - n;
  }
done:
  cc.flush();
  if (cc.aboveHighWater() && server_) server_->conn().stopReading();
}

void ClientSession::onConnRead(Conn& c) noexcept {
  switch (state_) {
    case State::Startup:
      handleStartup();
      return;
    case State::Auth:
      handleAuthMessage();
      return;
    case State::WaitServer:
    case State::Configure:
      // Pipelined early queries wait in the buffer; stop reading until we can relay.
      client_->stopReading();
      return;
    case State::Active:
      relayClientToServer();
      return;
    case State::Closing:
      client_->in().clear();
      return;
  }
}

void ClientSession::onServerRead(ServerConn& s) noexcept {
  if (state_ == State::Active) relayServerToClient();
}

// The client's write queue drained: let the server talk again.
void ClientSession::onConnDrained(Conn& c) noexcept {
  if (state_ != State::Active || !server_) return;
  server_->conn().startReading();
  if (!server_->conn().in().empty()) relayServerToClient();
}

// The server's write queue drained: let the client talk again.
void ClientSession::onServerDrained(ServerConn& s) noexcept {
  if (state_ != State::Active) return;
  client_->startReading();
  if (!client_->in().empty()) relayClientToServer();
}

}  // namespace pgswitch::proxy
