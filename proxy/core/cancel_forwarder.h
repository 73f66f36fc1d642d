// CancelForwarder: a one-shot connection to a backend that delivers a CancelRequest for
// the server connection a client is using, then goes away.
#pragma once

#include "proxy/core/conn.h"
#include "proxy/core/runtime.h"
#include "proxy/core/worker.h"

namespace pgswitch::proxy {

class CancelForwarder final : public Conn::Owner, public Retirable {
 public:
  static void start(Worker& w, const CancelTarget& t);

  void onConnRead(Conn& c) noexcept override;
  void onConnError(Conn& c, int status) noexcept override;
  void onConnConnected(Conn& c, int status) noexcept override;
  void onConnClosed(Conn& c) noexcept override;

 private:
  CancelForwarder(Worker& w, const CancelTarget& t);
  Worker& worker_;
  CancelTarget target_;
  std::unique_ptr<Conn> conn_;
};

}  // namespace pgswitch::proxy
