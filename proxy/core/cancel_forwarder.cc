// Cancel forwarding. The backend answers a CancelRequest by closing the socket, so the
// forwarder only writes and waits for EOF.
#include "proxy/core/cancel_forwarder.h"

#include <spdlog/spdlog.h>

#include <cstring>

#include "protocol/builder.h"

namespace pgswitch::proxy {

CancelForwarder::CancelForwarder(Worker& w, const CancelTarget& t) : worker_(w), target_(t) {
  conn_ = std::make_unique<Conn>(w, this);
}

void CancelForwarder::start(Worker& w, const CancelTarget& t) {
  auto* f = new CancelForwarder(w, t);
  sockaddr_storage addr{};
  std::string host = t.host == "localhost" ? "127.0.0.1" : t.host;
  int rc = uv_ip4_addr(host.c_str(), t.port, reinterpret_cast<sockaddr_in*>(&addr));
  if (rc != 0) rc = uv_ip6_addr(host.c_str(), t.port, reinterpret_cast<sockaddr_in6*>(&addr));
  if (rc == 0) rc = f->conn_->connect(reinterpret_cast<sockaddr*>(&addr));
  if (rc != 0) {
    spdlog::warn("cannot forward cancel request to {}:{}", t.host, t.port);
    f->conn_->close();
  }
}

void CancelForwarder::onConnConnected(Conn& c, int status) noexcept {
  if (status != 0) {
    c.close();
    return;
  }
  if (worker_.runtime().cancels().inFlight(target_.clientPid, target_.clientKey) !=
      target_.request) {
    // The request ended while we connected: this cancel must not hit the next one.
    spdlog::debug("cancel request dropped: its request ended meanwhile");
    c.close();
    return;
  }
  std::string out;
  protocol::appendCancelRequest(out, target_.pid, target_.key);
  c.send(out);
  c.flush();
  c.startReading();
}

void CancelForwarder::onConnRead(Conn& c) noexcept { c.in().clear(); }
void CancelForwarder::onConnError(Conn& c, int) noexcept { c.close(); }
void CancelForwarder::onConnClosed(Conn&) noexcept { worker_.retire(this); }

}  // namespace pgswitch::proxy
